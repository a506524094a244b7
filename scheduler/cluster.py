"""The node of several OS processes, as one scheduler OS process sees it (the hub or a worker).

Owns: ClusterNode, which puts together the parts each scheduler OS process has (transport.py:
its sockets; routing.py: where processes are, delivery in order; names.py: names and globals;
balance.py: moving work and the idle protocol) with what is left to it: the scheduler, the
node's membership (which schedulers are started, dead, greeted), applying each event read
(`handle`, after events.py's checks), device requests, crash reports, the main process's end,
and a peer's death. Also the worker node (scheduler k > 0) and its loop policy; the hub
(scheduler 0) is scheduler/hub.py, starting and reaping workers scheduler/workers.py. Must
never: run a process outside its scheduler's loop, trust an event before events.py checked it,
or let a peer's death end the node (only the hub's does).

The node (docs/processes.md, "Several OS processes"): scheduler 0 runs in the command's own OS
process and is the hub: it owns names, output, the exit status and the other schedulers'
lives. A program that never has two runnable processes never starts a second OS process; the
hub forks the next scheduler when CPU-bound work shows itself (scheduler/workers.py).
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

from ..vm import lbc
from ..vm.codec import CodecError
from ..vm.process import Globals, Process
from ..vm.state import VM
from ..vm.values import Pid
from .balance import CROWD, Balancing
from .clock import MonotonicClock
from .events import COUNTED, SHAPES, Refused
from .introspect import Introspection
from .kernel import Scheduler, Service, crash_line, main_end
from .names import Names
from .routing import NOCONNECTION, Routing
from .transport import GIVE_WAY, Link, Transport

__all__ = ["ClusterNode", "Worker"]


class ClusterNode(Transport, Routing, Names, Balancing, Introspection):
    """The node as one scheduler OS process sees it (the hub, or a worker)."""

    def __init__(self, sid: int, nsched: int, sockdir: str, module: lbc.Module, globals_: Globals,
                 argv: list[str], budget: int, trace: Any = None, main_pid: Pid | None = None,
                 vm: VM | None = None) -> None:
        self.sid = sid  # this scheduler's number
        self.nschedulers = nsched  # how many the node may have
        self.sockdir = sockdir  # where the schedulers' sockets live
        self.module = module
        self.globals = globals_
        self.argv = argv
        self.main_pid = main_pid  # the main process's pid (it runs on scheduler 0 and never moves)
        self.clock = MonotonicClock()
        self.sched = Scheduler(self, sid, budget, trace, self.clock, vm=vm)
        self.trace = trace
        self.chaos = self.sched.chaos  # LISPVM_CHAOS's choices, or None
        self.started: set[int] = {0}  # schedulers known to be running
        self.dead: set[int] = set()  # schedulers known to have died
        self.greeted: set[int] = set()  # peers whose hello came on a connection they made to us
        self.services: list[Service] = []  # the device client, once a request starts it
        self.stopping = False
        self.exit_code: int | None = None  # set when this scheduler's loop is to end
        self.started_any = sid != 0  # a worker exists: the hub must watch its listener
        self.asked_start: set[int] = set()  # peers this worker asked the hub to start
        self.forked: set[int] = set()  # (hub) workers forked with a copy of the node's state, before their hello
        self.init_transport()
        self.init_routing()
        self.init_names()
        self.init_balancing()
        self.init_introspection()

    def pending(self) -> bool:
        """Asked when a budget is spent: is there input? (Also a chance to flush.) Free until
        a second scheduler or the device process exists."""
        if not self.all_links and not self.started_any and len(self.poller.fds) == 1:
            return False  # (the one fd: the listener, with nobody to connect to it)
        got = self.poll(0)
        if self.idle_peers:
            self.balance()
            self.flush()  # the idle peer gets its share now, not after this scheduler's next slice
        if self.writing:
            self.backpressure()
        return got

    def request_service(self, sched: Scheduler, proc: Process) -> None:
        req = proc.request
        if req[0] is GIVE_WAY:  # (give_way) past the bound, this scheduler waits between slices as ever
            self.backpressure()
            sched.complete(proc, value=req[1])
            return
        if req[0] == "io":  # files, standard input, sockets, ports: this OS process's I/O service
            from .io import service

            service(sched).submit(sched, proc)
            return
        if req[0] == "info" or req[0] == "procs":  # sys/info, sys/processes (introspect.py)
            (self.ask_info if req[0] == "info" else self.ask_pids)(sched, proc)
            return
        from .device_client import client

        client(self).submit(sched, proc)

    def crash_report(self, sched: Scheduler, proc: Process) -> None:
        if proc.pid != self.main_pid:
            self.error_line(crash_line(proc, False))

    def process_ended(self, sched: Scheduler, proc: Process, reason: Any) -> None:
        if proc.pid == self.main_pid:
            self.main_done(*main_end(proc, reason))

    def halt(self, code: int) -> None:
        self.main_done(code, None)

    def handle(self, link: Link, ev: tuple) -> None:
        """Apply one event read from `link`. One of the wrong kind or shape for this scheduler,
        or any before a valid hello, raises Refused (never from our own peers: whoever sent it
        is cut off, _read), so that nothing a connection sends can crash the node."""
        kind = ev[0] if ev.__class__ is tuple and ev else None
        check = SHAPES.get(kind) if kind.__class__ is str else None
        if check is None:
            raise Refused("not an event")
        if link.peer is None:
            if kind != "hello":
                raise Refused(f"{kind} before a hello")
        elif kind == "hello":
            raise Refused("a second hello")
        why = check(self, ev)
        if why is None and kind in _BY_NAME and not hasattr(self, _BY_NAME[kind]):
            why = f"not sent to scheduler {self.sid}"  # (a stop to the hub, an out to a worker)
        if why is not None:
            raise Refused(f"{kind}: {why}")
        if kind in COUNTED:
            self.recvd += 1
        try:
            _HANDLERS[kind](self, link, ev)
        except CodecError as e:  # passing on a well-formed event whose envelope grew past the limit:
            # the peer did nothing wrong, so its connection stays; the event is reported, not hidden
            sys.stderr.write(f"lispvm: scheduler {self.sid}: a {kind} event could not be passed on ({e})\n")
        # pragma: no cover - the checks above come first; a handler's slip still never ends the node
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:  # pragma: no cover
            raise Refused(f"{kind}: {e.__class__.__name__}: {e}") from None

    def on_hello(self, link: Link, ev: tuple) -> None:
        self.greeted.add(ev[1])
        link.peer = ev[1]
        if ev[2] is not None:  # None: it cannot take a poke (see balance.install_poke)
            self.os_pids[ev[1]] = ev[2]
        self.links.setdefault(ev[1], link)

    def on_peer(self, link: Link, ev: tuple) -> None:
        k = ev[1]
        self.started.add(k)
        if k in self.pending_out:
            self.connect(k)
        if self.said_idle and k != self.sid:
            self.emit(k, ("idle", self.sid))  # it did not exist when this scheduler said so

    def on_start(self, link: Link, ev: tuple) -> None:
        self.start_worker(ev[1])

    def start_worker(self, k: int) -> None:  # pragma: no cover - only the hub starts workers
        pass

    def on_sched_down(self, link: Link, ev: tuple) -> None:
        if ev[1] not in self.dead:
            self.peer_died(ev[1])

    def peer_died(self, k: int) -> None:
        """Scheduler k is gone: its processes are lost; tell the links and monitors here."""
        self.dead.add(k)
        self.idle_peers.discard(k)
        self.links.pop(k, None)
        self.pending_out.pop(k, None)
        self.forked.discard(k)
        for proc in list(self.sched.procs.values()):
            if proc.links:
                for other in list(proc.links):
                    if self.where(other) == k:
                        proc.links.discard(other)
                        self.sched.exit_signal_to(proc, other, NOCONNECTION, linked=True)
            if proc.monitors:
                for ref, (role, other) in list(proc.monitors.items()):
                    if role == "of" and self.where(other) == k:
                        self._apply(proc, "s", ("down", ref, other, NOCONNECTION, proc.pid))
        self.introspection_peer_died(k)
        if self.sid == 0:
            self.worker_died(k)


class Worker(ClusterNode):
    """Scheduler k > 0, in its own OS process; the policy of its scheduler's loop."""

    hub_pid: int | None = None  # the hub's OS pid, if it handles POKE_SIGNAL

    def output(self, line: str) -> None:
        self.emit(0, ("out", line))

    def error_line(self, line: str) -> None:
        self.emit(0, ("err", line))

    def main_done(self, code: int, message: str | None) -> None:
        self.emit(0, ("main_done", code, message))

    def on_stop(self, link: Link, ev: tuple) -> None:
        self.stopping = True
        self.exit_code = 0

    def on_mainpid(self, link: Link, ev: tuple) -> None:
        self.main_pid = ev[1]

    def on_load(self, link: Link, ev: tuple) -> None:
        """A module compiled at lispvm repl: loaded before anything that uses it arrives."""
        from .repl import load_module_bytes

        load_module_bytes(ev[1], self.globals)

    def on_pids_ask(self, link: Link, ev: tuple) -> None:
        """The hub gathers sys/processes: this scheduler's live pids."""
        self.emit(0, ("pids", ev[1], tuple(self.sched.local_pids())))

    def peer_died(self, k: int) -> None:
        super().peer_died(k)
        if k == 0:
            self.exit_code = 1  # the hub is gone, and so is the node: this scheduler's loop ends

    def run(self) -> None:
        """Connect to the hub, say hello, and run this scheduler until the hub stops it or dies."""
        hub = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            hub.connect(self._path(0))
        except OSError:  # the hub died before this scheduler was ready: so has the node
            hub.close()
            self.dead.add(0)
            return
        link = self._add_link(hub, 0)
        if self.hub_pid is not None:  # None: the hub cannot take a poke (see balance.install_poke)
            self.os_pids[0] = self.hub_pid  # (the hub sends no hello: it uses this link)
        link.queue(("hello", self.sid, os.getpid() if self.pokeable else None, self.secret))
        # before the first slice: the hub queues what is meant for us until it reads this
        self._writing(link, link.flush())
        self.links[0] = link
        self.sched.loop(self)

    # --- the scheduler loop's policy (kernel.Policy) ----------------------------------------

    def wake(self) -> None:
        """Work again after being idle: the peers and the hub hear it before anything else."""
        self.not_idle()
        self.last_report = None

    def after_pass(self) -> None:
        if len(self.sched.runq) >= CROWD:
            if self.crowd_pass():
                self.poll(0)  # an idle peer's word may be waiting (Hub.after_pass)
        elif self.crowd_since is not None:
            self.crowd_over()
        self.balance()
        self.between_passes()

    def idle(self, deadline: float | None) -> float | None:
        """Spin briefly after a device request, wait a grace for a reply, then say idle to the
        peers and report to the hub; wait for input until the next timer."""
        if self.spin(deadline) or self.grace(deadline):
            return -1.0
        self.say_idle()
        self.report_idle(deadline)
        return self.sched.seconds_until(deadline)


def _dispatch(name: str) -> Any:
    def h(node: ClusterNode, link: Link, ev: tuple) -> None:
        getattr(node, name)(link, ev)
    return h


_HANDLERS = {
    "ev": ClusterNode.on_ev, "moved": ClusterNode.on_moved,
    "proc": ClusterNode.on_proc, "define": ClusterNode.on_define, "register": ClusterNode.on_register,
    "unregister": ClusterNode.on_register, "idle": ClusterNode.on_idle,
    "peer": ClusterNode.on_peer, "sched_down": ClusterNode.on_sched_down, "start": ClusterNode.on_start,
}
# Events found by name on the receiving node: the hub's on_hello is its own, and events only
# one side takes (the hub, or a worker) are refused by a node without the method.
_BY_NAME = {"hello": "on_hello", "out": "on_out", "err": "on_err", "main_done": "on_main_done",
            "idle_report": "on_idle_report", "busy": "on_busy", "stop": "on_stop", "mainpid": "on_mainpid",
            "pids_gather": "on_pids_gather", "pids_ask": "on_pids_ask", "pids": "on_pids"}
_BY_NAME["load"] = "on_load"  # a module typed at lispvm repl (workers only)
for _ev, _m in _BY_NAME.items():
    _HANDLERS[_ev] = _dispatch(_m)


def _stdin_event(node: ClusterNode, link: Link, ev: tuple) -> None:
    from .io import on_stdin_event  # standard input across schedulers (scheduler/io.py)

    on_stdin_event(node, link, ev)


for _ev in ("stdin", "stdin_cancel", "stdin_line"):
    _HANDLERS[_ev] = _stdin_event
