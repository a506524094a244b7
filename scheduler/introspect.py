"""Introspection across the node's OS processes: sys/info and sys/processes (LANGUAGE.md section 13).

Owns: asking another scheduler about a process, and gathering every scheduler's live pids.
Must never: wait (the asking process BLOCKs; the answer completes it), or read another
scheduler's state except through its events.

- `(sys/info pid)` for a process that is not on the asker's scheduler is a signal
  `("info", ref, asker, pid)` routed to the process like a link or monitor (routing.py: it
  follows a process that moved, waits with `early` events for one in flight, and a dead target
  answers nil). The process's scheduler answers with a signal `("inforeply", ref, items, asker)`
  (kernel.info_items: plain data), which completes the asker (kernel.receive_signal).
- `(sys/processes)` goes to the hub, the one scheduler that knows every worker, forked or
  started: it asks each for its live pids (`pids_ask`), gathers the answers (`pids`), and
  sends the list back (`pids` again) or completes its own asker. A scheduler that dies meanwhile
  counts as answered: its processes are gone. The list is not an atomic snapshot: a process
  moving between schedulers at that moment may be counted by neither.

Both work the same way between nodes (section 15): the signal is routed to wherever the pid
lives, and a gather asks each member. `Introspection` is a mixin of cluster.ClusterNode.
"""

from __future__ import annotations

from typing import Any

from ..vm.process import Block, Process
from ..vm.values import Pid, from_list
from .kernel import BLOCKED, Scheduler
from .transport import Link

__all__ = ["Introspection"]


class Introspection:
    """sys/info and sys/processes across schedulers (a mixin of cluster.ClusterNode)."""

    def init_introspection(self) -> None:
        """No question is open yet."""
        self.asked = 0  # serial numbers of this scheduler's sys/processes questions
        self.pid_waits: dict[int, Process] = {}  # question -> the process waiting for the answer
        # (hub) question -> [schedulers still to answer, pids so far, (scheduler, its question)]
        self.gathers: dict[int, list] = {}

    # --- sys/info ------------------------------------------------------------------------

    def info_elsewhere(self, sched: Scheduler, proc: Process, pid: Pid) -> Any:
        """A pid not on this scheduler: nil if it ended here or its scheduler died, else ask."""
        k = self.where(pid)
        if k == self.sid or k in self.dead:
            return None
        raise Block(("info", pid))

    def ask_info(self, sched: Scheduler, proc: Process) -> None:
        """Send the info signal for a process that has BLOCKed in sys/info."""
        pid = proc.request[1]
        ref = sched.make_ref()
        proc.request = ("info", pid, ref)
        self.signal(sched, proc, pid, ("info", ref, proc.pid, pid))

    # --- sys/processes -------------------------------------------------------------------

    def all_pids(self, sched: Scheduler, proc: Process) -> Any:
        raise Block(("procs",))

    def ask_pids(self, sched: Scheduler, proc: Process) -> None:
        """A process BLOCKed in sys/processes: the hub gathers the answer."""
        self.asked += 1
        q = self.asked
        self.pid_waits[q] = proc
        proc.request = ("procs", q)
        if self.sid == 0:
            self.gather(None, q)
        else:
            self.emit(0, ("pids_gather", q))

    def gather(self, sid: int | None, q: int) -> None:
        """(Hub) Ask every worker for its pids, for question `q` of scheduler `sid` (None: here)."""
        self.asked += 1
        mine = self.asked
        waiting = {k for k in self.workers if k not in self.dead}
        self.gathers[mine] = [waiting, self.sched.local_pids(), (sid, q)]
        for k in waiting:
            self.emit(k, ("pids_ask", mine))  # (queued for a forked worker until its hello)
        if not waiting:
            self.gathered(mine)

    def gathered(self, mine: int) -> None:
        """(Hub) Every worker answered: the list, each pid once, to whoever asked."""
        _, pids, (sid, q) = self.gathers.pop(mine)
        seen: dict[int, Pid] = {}
        for p in pids:
            seen.setdefault(p.key, p)
        out = tuple(seen[k] for k in sorted(seen))
        if sid is None:
            self.answer_pids(q, out)
        else:
            self.emit(sid, ("pids", q, out))

    def answer_pids(self, q: int, pids: tuple) -> None:
        proc = self.pid_waits.pop(q, None)
        if proc is not None and proc.status == BLOCKED:
            self.sched.complete(proc, from_list(pids))

    def on_pids(self, link: Link, ev: tuple) -> None:
        """A worker's pids (at the hub), or the gathered list (at the worker that asked)."""
        if self.sid != 0:
            self.answer_pids(ev[1], ev[2])
            return
        g = self.gathers.get(ev[1])
        if g is None or link.peer not in g[0]:
            return
        g[0].discard(link.peer)
        g[1].extend(ev[2])
        if not g[0]:
            self.gathered(ev[1])

    def introspection_peer_died(self, k: int) -> None:
        """Scheduler k is gone: it answers no question, and its processes are no more."""
        for mine, g in list(self.gathers.items()):
            if k in g[0]:
                g[0].discard(k)
                if not g[0]:
                    self.gathered(mine)
        for proc in list(self.sched.procs.values()):
            req = proc.request
            if proc.status == BLOCKED and req is not None and req[0] == "info" and self.where(req[1]) == k:
                self.sched.complete(proc, None)
