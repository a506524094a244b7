"""Balancing: moving processes to idle schedulers, and the idle protocol that says who is idle.

Owns: placing a spawned process (`spawn-on`), shipping a process to another scheduler and
adopting one shipped here, choosing which runnable processes may move (CPU-bound ones, and jobs
spawned with them), the idle protocol between schedulers (a grace before saying idle, `idle` and
`busy` events, poking busy peers with POKE_SIGNAL), the idle report a worker sends the hub and
the hub's test that the whole node is quiescent (deadlock detection), chaos mode's random
moves, and where the owners of sockets and ports run (pinned; `migrate` takes a caller with its
call to the scheduler that holds the resource, `pull`/`pulled` bring a new owner there:
docs/processes.md, "Sockets and ports"). Must never: move the main process, move a process that
is running or owns a socket, listener or port, or take a node for deadlocked while an event is in
flight, a socket holds unsent bytes, or a worker's last report is void.

A scheduler with two or more runnable processes ships an idle peer its share (push: idle
schedulers never poll for work). The process travels as plain data, prototypes by (module key,
index); the old scheduler keeps a forwarding entry (scheduler/routing.py). Processes that run
briefly, like a ring's nodes or a server, stay where they are: moving them would put every
message they exchange on a socket. `Balancing` is a mixin of cluster.ClusterNode: its state is
made by `init_balancing`.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import deque
from typing import Any

from ..vm.codec import TooLarge
from ..vm.errors import badarg
from ..vm.process import Process
from .clock import BusyWait
from .kernel import BLOCKED, RUNNABLE, WAITING, YIELDED, Scheduler
from .node import SERVICE_SPIN, spin_for_services
from .transport import Link

__all__ = ["CROWD", "CROWD_MS", "GRACE_SPIN", "IDLE_GRACE", "POKE_SIGNAL", "Balancing", "install_poke"]

POKE_SIGNAL = signal.SIGUSR1  # "a peer went idle": ends a slice of compiled code early (say_idle)
# The first part of the grace, in seconds, is spent polling without sleeping (clock.BusyWait): a
# reply from another scheduler usually comes sooner than this one would wake up from poll
# (docs/performance.md, "Messages between OS processes").
GRACE_SPIN = 100e-6
IDLE_GRACE = 0.002  # seconds without input before a scheduler says it is idle
# A crowd: CROWD or more processes runnable after every pass for CROWD_MS milliseconds. Many
# independent actors that each run briefly (fork-join jobs, a tree of fib processes, pairs that
# ping each other) never use up a budget, so the CPU-bound evidence never shows for them; a
# crowd is the evidence instead (crowd_pass). A ring's set-up (its nodes spawned at once) is a
# crowd for a pass or two, far shorter than CROWD_MS, and a ring then has one runnable process:
# moving its nodes put every hop on a socket (docs/performance.md, "Placement, wave 3 (X2)").
CROWD = 16
CROWD_MS = 3.0
# In a crowd, a process with this many messages waiting in its mailbox has work queued that is
# worth a move (a fork-join worker fed faster than it computes); one that holds a message or two
# (an actor of pairs that ping each other, a fib process waiting for its children) is not: each
# move costs tens of microseconds to encode, and its messages would cross sockets from then on.
BACKLOG = 16
# Processes with a BACKLOG shipped to an idle peer at a time (none of CPU-bound ones: they go by
# the share). A peer whose processes wait for messages from this scheduler says idle when they
# run out between two of its batches: half of this run queue at once (fork-join workers with
# hundreds of messages each) then overloaded it for the rest of the run, while this scheduler
# finished early and waited (fjthroughput: 24 workers of 32 there, 8 here).
BACKLOG_SHIP = 1


class Balancing:
    """Moving work, and who is idle (a mixin of cluster.ClusterNode)."""

    def init_balancing(self) -> None:
        """Nobody is known to be idle yet."""
        self.idle_peers: set[int] = set()  # peers that said they have nothing to run
        self.busy_wait = BusyWait(SERVICE_SPIN)  # after a device request (spin_for_services)
        self.grace_wait = BusyWait(GRACE_SPIN)  # the start of the idle grace
        self.said_idle = False  # announced idle and not busy since
        self.recvd = 0  # Lisp events received, for quiescence detection
        self.sent = 0  # Lisp events sent (or queued for a peer not connected yet)
        self.os_pids: dict[int, int] = {}  # scheduler -> its OS pid (to poke it, see say_idle)
        self.pokeable = True  # this OS process handles POKE_SIGNAL (run_cluster, worker_main)
        self.passes = 0  # passes over the run queue since the last poll for input
        self.cpu_bound = False  # a process used up a whole budget here since this scheduler was last idle
        self.last_report: tuple | None = None  # (worker) the idle report last sent to the hub
        self.pulls: dict[int, int] = {}  # pid key -> scheduler that asked for it (pull), until it can go
        self.crowd_since: float | None = None  # (clock ms) when the run queue last became a crowd
        self.crowded = False  # it has stayed a crowd for CROWD_MS: any runnable process may move

    def place(self, sched: Scheduler, proc: Process, where: int | None) -> None:
        if where is None:
            sched.add(proc)
            return
        k = where % self.nschedulers
        if k == self.sid:
            sched.add(proc)
        else:
            self.ship(proc, k)

    def ship(self, proc: Process, k: int) -> None:
        """Send a process (not running, not in the run queue) to scheduler k; one too large to
        travel (vm.codec.MAX_MESSAGE) stays here, runnable (a placement is not a pinning)."""
        was = proc.status
        try:
            # with the names freed here that k may not know of yet: a supervisor that saw the
            # DOWN here and is moved must find the name free there (causal order, as in Erlang)
            news = self.news_for(k)
            self.emit(k, ("proc", proc, was, news))
        except TooLarge:
            self.sched.add(proc)
            return
        if news:
            self.told.setdefault(k, {}).update(news)
        self.told_serial[k] = self.freed_serial
        self.handed_over(proc, k)

    def handed_over(self, proc: Process, k: int) -> None:
        """Scheduler k has `proc` now (shipped, or in the copy a fork gave it): forget it here."""
        key = proc.pid.key
        self.sched.procs.pop(key, None)
        self.moved[key] = k
        self.loc[key] = k
        proc.status = 0
        if self.trace is not None:
            self.trace.event(self.sched, "migrate", proc.pid, to=k)

    def adopt(self, proc: Process, was: int) -> None:
        """`proc` runs here from now on (shipped here, or handed over at this scheduler's fork)."""
        key = proc.pid.key
        self.moved.pop(key, None)
        self.loc[key] = self.sid
        self.sched.procs[key] = proc
        if proc.name is None and key in self.named:
            # registered while it travelled: the news reached this scheduler before the process
            # did, and the one it left had already shipped it (the name was then never freed)
            proc.name = self.named[key]
        if was == WAITING:
            proc.status = WAITING
            self.sched.trap_wait(proc)
        elif was == BLOCKED:  # moved with an I/O call on a resource held here (migrate): it runs here
            proc.status = BLOCKED
            self.request_service(self.sched, proc)
        else:
            proc.status = RUNNABLE
            self.sched.runq.append(proc)
        early = self.early.pop(key, None) if self.early else None
        if early:
            for ev in early:  # events that overtook it, in their senders' order (apply_ordered)
                self.apply_ordered(proc, ev[2], ev[3], ev[4], ev[5])
        tcp = sys.modules.get(__package__ + ".tcp")
        if tcp is not None and tcp.AWAITED:  # sockets or ports handed to it wait for it here
            tcp.owner_arrived(self.sched, proc)

    # --- processes that own sockets and ports (docs/processes.md, "Sockets and ports") -------

    def pinned(self, proc: Process) -> bool:
        """Does `proc` own a socket, listener or port here? Such a process never moves: its
        resources live in this OS process."""
        io = self.sched.io
        return io is not None and proc.pid.key in io.owned

    def migrate(self, sched: Scheduler, proc: Process, k: int) -> None:
        """`proc` (blocked in an I/O call) called tcp/ or port/ on a resource scheduler k
        holds: it goes there with its call, which runs on arrival (adopt). A process that owns
        resources here cannot leave them: its call fails."""
        io = sched.io
        if self.pinned(proc) or proc.pid == self.main_pid or k in self.dead or self.stopping:
            what = ("the main process never moves" if proc.pid == self.main_pid else
                    f"scheduler {k} is gone" if k in self.dead or self.stopping else
                    f"this process owns sockets or ports on scheduler {self.sid}")
            io.complete(proc, error=badarg(f"{proc.request[1]}: {proc.request[2]!r} is held by scheduler {k}, "
                                           f"and {what}").value)
            return
        io.blocked.pop(proc.pid.key, None)
        self.ship(proc, k)

    def pull(self, sched: Scheduler, sender: Process | None, pid: Any) -> None:
        """tcp/owner or port/owner named `pid`, which is on another scheduler: ask it to come
        here (a "pull" signal, in order after the messages `sender` sent it)."""
        self.signal(sched, sender, pid, ("pull", self.sid, pid))

    def pulled(self, proc: Process, k: int) -> None:
        """A pull signal for `proc`, here: ship it to scheduler k now, or once it is between
        slices and not blocked (a process that owns resources here, or the main process, stays:
        docs/processes.md says what then happens)."""
        if proc.pid == self.main_pid or self.pinned(proc) or k == self.sid or k in self.dead:
            return
        self.pulls[proc.pid.key] = k
        # not now: the signal is being applied (routing.apply_ordered), and a process shipped
        # before that ends would travel without the sequence number it has just used up
        from .io import service

        service(self.sched).call_soon_threadsafe(self.serve_pulls)

    def serve_pulls(self) -> None:
        """Ship the pulled processes that can go now: waiting, or runnable in the run queue."""
        sched = self.sched
        for key, k in list(self.pulls.items()):
            proc = sched.procs.get(key)
            if proc is None or self.pinned(proc) or k in self.dead:
                del self.pulls[key]
                continue
            if proc.status == WAITING:
                del self.pulls[key]
                self.ship(proc, k)
            elif proc.status == RUNNABLE and proc in sched.runq:
                del self.pulls[key]
                sched.runq.remove(proc)
                self.ship(proc, k)

    def on_proc(self, link: Link, ev: tuple) -> None:
        if ev[3]:
            self.learn_freed(ev[3])
        self.adopt(ev[1], ev[2])
        self.not_idle()

    def crowd_pass(self) -> bool:
        """After a pass that left CROWD or more processes runnable: whether the run queue has
        now stayed a crowd for CROWD_MS (then `crowded` is set: balance may give away any
        runnable process, not only CPU-bound ones). The pass that leaves fewer calls
        crowd_over instead; neither is called on a short run queue's passes, so a ring pays
        nothing."""
        now = self.clock.now_ms()
        since = self.crowd_since
        if since is None:
            self.crowd_since = now
            return False
        if now - since >= CROWD_MS:
            self.crowded = True
        return self.crowded

    def crowd_over(self) -> None:
        """A pass left fewer than CROWD processes runnable: the crowd, if any, is over."""
        self.crowd_since = None
        self.crowded = False

    def balance(self) -> None:
        """After a pass over the run queue: give an idle peer its share of the CPU-bound
        runnable processes at once: shipping one at a time left it under-loaded
        (docs/performance.md, "Scheduler decisions")."""
        if self.pulls:
            self.serve_pulls()
        runq = self.sched.runq
        while self.idle_peers and len(runq) >= 2:
            share = len(runq) // (len(self.idle_peers) + 1)
            k = min(self.idle_peers)
            procs = self.take_movable(runq, max(1, share))
            if not procs:
                return  # nothing CPU-bound yet: k stays idle, and gets work once something is
            self.idle_peers.discard(k)
            for proc in procs:
                self.ship(proc, k)

    def take_movable(self, runq: deque, n: int, fork: bool = False, spread: bool = False) -> list[Process]:
        """Up to n processes taken out of the run queue to run elsewhere: CPU-bound ones (they
        used up their last budget), and ones not started yet whose function is the function a
        CPU-bound one there started with (eight jobs spawned at once: moving only those that had
        had a first slice left the second scheduler waiting for this one's slices). In a crowd
        (crowd_pass), also ones with a BACKLOG of messages (BACKLOG_SHIP of them unless at a
        fork), and at a `fork` (which copies them for free) with CROWD or more runnable, those
        not started yet (fork-join jobs, the subtrees of a divide and conquer): the last ones, or
        with `spread` (a fork for a crowd) about half of them chosen by _SPREAD. Never the main
        process.

        Processes that only ever run briefly (a ring's nodes, servers) stay where they are:
        moving them would put every message they exchange on a socket."""
        origins = {_origin(p) for p in runq if p.sched is YIELDED}
        crowd = self.crowded or (fork and len(runq) >= CROWD)
        main = self.main_pid.key if self.main_pid is not None else None  # (an int: Pid.__eq__ is Python)
        owned = self.sched.io.owned if self.sched.io is not None else ()
        items = list(runq)
        taken: list[Process] = []
        kept: list[Process] = []  # (the ones looked at and left, the last first)
        backlogs = 0  # (taken for their backlog alone: BACKLOG_SHIP of them unless at a fork)
        i = len(items)
        while i and len(taken) < n:
            i -= 1
            p = items[i]
            key = p.pid.key
            if key == main or p.status != RUNNABLE or key in owned:
                kept.append(p)  # (a process that owns sockets or ports stays with them)
            elif (p.sched is YIELDED or (p.pc == 0 and len(p.frames) == 1 and p.cl.proto in origins)
                    or (crowd and fork and p.reds == 0 and (not spread or (i * _SPREAD >> 15) & 1))):
                taken.append(p)
            elif (crowd and p.mailbox is not None and len(p.mailbox) - p.mbhead >= BACKLOG
                  and (fork or backlogs < BACKLOG_SHIP)):
                taken.append(p)
                backlogs += 1
            else:
                kept.append(p)
        if taken:
            # the run queue rebuilt once, in its order: a `del` per process taken from its middle
            # (the spread above) is O(n) each (docs/performance.md, wave 5, P2)
            runq.clear()
            runq.extend(items[:i])
            kept.reverse()
            runq.extend(kept)
        return taken

    def on_idle(self, link: Link, ev: tuple) -> None:
        self.idle_peers.add(ev[1])

    def on_busy(self, link: Link, ev: tuple) -> None:
        self.idle_peers.discard(ev[1])

    def between_passes(self) -> None:
        """Input between two passes over the run queue: after a pass that used whole budgets
        (the poll is then cheap by comparison), or every 64 passes. Polling after every pass
        cost a message-passing ring a syscall per message; a long computation polls anyway
        whenever a budget runs out (pending). If nothing is runnable, the loop's idle and poll
        phases wait for input."""
        if self.sched.yields:
            self.cpu_bound = True
        if self.chaos is not None:
            self.chaos_migrate()
        if not self.sched.runq:
            return
        self.passes += 1
        if self.sched.yields or self.passes >= 64 or self.writing:  # (writing: the socket may take more now)
            self.passes = 0
            self.poll(0)
            if self.writing:
                self.backpressure()

    def chaos_migrate(self) -> None:
        """(LISPVM_CHAOS) Now and then move a runnable process, any but the main one, to another
        scheduler, started or not, whether or not that one said it is idle."""
        runq = self.sched.runq
        if self.nschedulers < 2 or not runq or not self.chaos.migrate():
            return
        proc = runq[self.chaos.pick(len(runq))]
        if proc.pid == self.main_pid or proc.status != RUNNABLE or self.pinned(proc):
            return
        k = self.chaos.pick(self.nschedulers - 1)
        k = k + 1 if k >= self.sid else k  # any scheduler but this one
        if k in self.dead or self.stopping:
            return
        runq.remove(proc)
        self.ship(proc, k)

    def spin(self, deadline: float | None) -> bool:
        """After a device request: poll without sleeping for a moment, never past the next
        timer's `deadline` (ms); whether input came."""
        delay = None if deadline is None else (deadline - self.clock.now_ms()) / 1000.0
        return spin_for_services(self.services, self.poll, self.busy_wait, delay) or bool(self.sched.runq)

    def grace(self, deadline: float | None) -> bool:
        """Wait briefly for input before telling anyone this scheduler is idle: a reply usually
        comes within tens of microseconds, and announcing every wait woke the peers for nothing
        (docs/performance.md, "Messages between OS processes"). True when input came or a
        process became runnable meanwhile."""
        if self.said_idle:
            return False
        if not self.sched.procs or self.cpu_bound:
            # no process here can get a reply, or this scheduler has just run out of CPU-bound
            # work (a budget was used up since it was last idle): say so at once, while a busy
            # peer still has work to share
            return self.poll(0) or bool(self.sched.runq)
        t = IDLE_GRACE
        if deadline is not None:
            t = min(t, max(0.0, (deadline - self.clock.now_ms()) / 1000.0))
        # Not when a timer falls due within the grace: poll() waits whole milliseconds, so a
        # spin before it makes every such timer fire one spin late (docs/performance.md).
        if t >= IDLE_GRACE and self.grace_wait.spin(lambda: self.poll(0) or bool(self.sched.runq), t):
            return True
        # A writable descriptor is not input to the poller, but its callback may have resumed a
        # process (a tcp/connect that completed, a drained tcp/send): that is work, not idleness.
        return self.poll(t) or bool(self.sched.runq)

    def not_idle(self) -> None:
        if self.said_idle:
            self.said_idle = False
            self.last_report = None  # the hub drops its copy on "busy": the next one must be sent
            for k in self.started:
                if k != self.sid and k not in self.dead:
                    self.emit(k, ("busy", self.sid))

    def say_idle(self) -> None:
        """Tell the peers this scheduler has nothing to run, and poke those not known to be idle
        themselves (POKE_SIGNAL): a peer running compiled code reads its input at its next
        CPU-time tick, 4 ms away where the kernel ticks at 250 Hz, and the poke ends its slice
        at once, so that it gives away work while there is still some to give."""
        self.cpu_bound = False
        if not self.said_idle:
            self.said_idle = True
            poke = []
            for k in self.started:
                if k != self.sid and k not in self.dead:
                    self.emit(k, ("idle", self.sid))
                    if k not in self.idle_peers and k in self.os_pids:
                        poke.append(self.os_pids[k])
            self.flush()  # the event first, so that the poked peer finds it
            for pid in poke:
                try:
                    os.kill(pid, POKE_SIGNAL)
                except OSError:
                    pass  # it has just exited: the link's EOF says so

    def report_idle(self, deadline: float | None) -> None:
        """(Worker) Nothing to run here: tell the hub, once per change, what it needs to decide
        that the node is deadlocked (the counts of Lisp events sent and received, and whether a
        timer, a device request or unsent bytes may still make work here)."""
        self.flush()  # so that bytes the sockets cannot take yet count as work (self.writing)
        busy = bool(deadline is not None or any(svc.outstanding() for svc in self.services) or self.writing)
        report = ("idle_report", self.sid, True, self.sent, self.recvd, busy, False)
        if report != self.last_report:  # (a wake-up only to write more says nothing new)
            self.last_report = report
            self.emit(0, report)

    def quiescent(self, deadline: float | None, reports: dict[int, tuple], workers: list[int]) -> bool:
        """(Hub) Is the whole node deadlocked? Only when nothing runs or waits here (no runnable
        process, no timer, no device request, no unsent or undelivered bytes), every started
        worker's last idle report (`reports`, voided by its next `busy`) says the same, and every
        Lisp event sent has been received (a node that looked idle while a message was in flight
        is not deadlocked)."""
        if deadline is not None or self.sched.runq or any(svc.outstanding() for svc in self.services):
            return False
        if not all(k in reports for k in workers) or self.pending_out or self.writing:
            return False
        if any(not r[0] or r[3] or r[4] for k, r in reports.items() if k not in self.dead):
            return False
        sent = self.sent + sum(r[1] for r in reports.values())
        recvd = self.recvd + sum(r[2] for r in reports.values())
        return sent == recvd


# A fork takes the processes not started yet whose place in the run queue hashes (Fibonacci
# hashing) to an odd bit: about half, in no order a program makes. The run queue's own order is
# not fair: a tree spawned a level per pass lies there larger subtree first (fib(n-1), then
# fib(n-2)), so that its last half, or every other one, holds 38% of the work. Only for a fork
# for a crowd (Hub.grow_for_crowd): a fork for a process that used up its budget (the main
# process spawning a ring of 2,000 nodes at once, each given its neighbour) takes the last half,
# a ring's one stretch: hashed places put every other hop on a socket (2.7 to 3.8 s of wall for
# 20,000 hops against 0.8 to 1.7, alternated, under load).
_SPREAD = 0x9E3779B1


def _origin(proc: Process) -> Any:
    """The prototype of the function a process started with (its oldest frame's)."""
    frames = proc.frames
    return (frames[1][0] if len(frames) > 1 else proc.cl).proto


def install_poke(jit: bool, vm: Any) -> Any:
    """Handle POKE_SIGNAL in this scheduler's OS process (its default action would kill it);
    returns the handler it replaced. Off the main thread (a run started from a thread, where
    the fast tier is off too) no handler can be set and no peer is told this process's pid."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return False
    previous = signal.getsignal(POKE_SIGNAL)
    signal.signal(POKE_SIGNAL, vm.fast.on_poke if jit and vm.fast is not None else signal.SIG_IGN)
    return previous
