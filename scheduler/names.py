"""Names and globals across the node: each scheduler's copy, the hub's authority, and their news.

Owns: each scheduler's copy of the registered names (`names`, and `named`, its reverse index),
the names seen freed here and what each peer has been told of them (`freed`, `told`), the hub's
registers waiting for a name to be freed (`deferred`), and passing `def`/`set!` of globals to
every scheduler through the hub. Must never: decide where a process is (scheduler/routing.py),
or let a name outlive its process node-wide.

The hub's copy is the authority and the workers follow its changes in its order; a name is
carried by its process, so that its end frees it wherever it runs, and it is freed before any
DOWN or exit signal about that process is seen (docs/processes.md, "Names"). `Names` is a mixin
of cluster.ClusterNode: its state is made by `init_names`.
"""

from __future__ import annotations

from typing import Any

from ..vm.builtins import badarg
from ..vm.codec import TooLarge, Unsendable
from ..vm.errors import system_limit
from ..vm.values import Pid, Sym
from .framing import encode_event
from .kernel import Scheduler
from .transport import Link

__all__ = ["Names"]


class Names:
    """The node's names and globals as one scheduler sees them (a mixin of cluster.ClusterNode)."""

    def init_names(self) -> None:
        """No name is registered yet."""
        self.names: dict[Sym, Pid] = {}  # registered names (the hub's copy is the authority)
        self.named: dict[int, Sym] = {}  # pid key -> its name in `names` (the reverse index)
        self.deferred: dict[Sym, list[Pid]] = {}  # (hub) registers that came while the name was bound
        self.freed: dict[Sym, Pid] = {}  # name -> the last pid it was freed from here (that process ended)
        self.freed_serial = 0  # changes of `freed`, so that a move tells a peer only what is new
        self.told: dict[int, dict[Sym, Pid]] = {}  # peer -> the entries of `freed` sent to it with a process
        self.told_serial: dict[int, int] = {}  # peer -> freed_serial when it was last told

    def register(self, sched: Scheduler, name: Sym, pid: Pid) -> None:
        if name in self.names:
            raise badarg(f"register: {name.name} is already registered")
        proc = sched.procs.get(pid.key)
        if proc is not None:
            if proc.name is not None:
                raise badarg(f"register: process {pid!r} is already registered as {proc.name.name}")
            proc.name = name
        elif self.gone(pid):  # it ran here (or on a scheduler that died) and has ended
            raise badarg(f"register: process {pid!r} is not alive")
        self.bind(name, pid)
        # (with the holder this scheduler saw end: the hub may not have heard of that end yet)
        self.to_hub_or_all(("register", name, pid, self.freed.get(name)))

    def gone(self, pid: Pid) -> bool:
        """Known here to have ended: not here, and last seen here (never shipped away), or on a
        scheduler that died. (A process elsewhere may have ended too: that scheduler frees the
        name when the register reaches it, name_here.)"""
        if pid.key in self.sched.procs:
            return False
        k = self.where(pid)
        return k == self.sid or k in self.dead

    def bind(self, name: Sym, pid: Pid) -> None:
        """Bind `name` to `pid` in this scheduler's copy of the names (and the reverse index)."""
        old = self.names.get(name)
        if old is not None and old != pid:
            if self.named.get(old.key) is name:
                del self.named[old.key]
            proc = self.sched.procs.get(old.key)
            if proc is not None and proc.name is name:
                proc.name = None  # (the hub gave the name to another: see on_register)
        self.names[name] = pid
        self.named[pid.key] = name

    def unbind(self, name: Sym) -> None:
        """Remove `name` from this scheduler's copy of the names: its process has ended."""
        pid = self.names.pop(name, None)
        if pid is not None:
            self.freed[name] = pid
            self.freed_serial += 1
            if self.named.get(pid.key) is name:
                del self.named[pid.key]

    def unregister(self, name: Sym, pid: Pid) -> None:
        """`pid` has ended: free its name here and node-wide (through the hub)."""
        if self.names.get(name) == pid:
            self.unbind(name)
            self.to_hub_or_all(("unregister", name, pid))
            if self.sid == 0:
                self.next_deferred(name)
        elif self.sid == 0:
            self.undefer(name, pid)

    def news_for(self, k: int) -> tuple:
        """The names freed here that scheduler k has not been told of with a process yet."""
        if not self.freed or self.told_serial.get(k) == self.freed_serial:
            return ()
        told = self.told.get(k, {})
        return tuple((name, pid) for name, pid in self.freed.items() if told.get(name) != pid)

    def learn_freed(self, news: tuple) -> None:
        """Names a moved process's old scheduler had seen freed: freed here before it runs."""
        for name, pid in news:
            if self.names.get(name) == pid:
                self.unbind(name)
                if self.sid == 0:
                    self.tell_workers(("unregister", name, pid))
                    self.next_deferred(name)

    def whereis(self, name: Sym) -> Pid | None:
        return self.names.get(name)

    def to_hub_or_all(self, ev: tuple) -> None:
        """Node-wide state changes go through the hub, which tells everyone else."""
        if self.sid == 0:
            self.tell_workers(ev)
        else:
            self.emit(0, ev)

    def tell_workers(self, ev: tuple, skip: int | None = None) -> None:
        """(Hub) A node-wide change, to every worker but `skip`."""
        for k in self.started:
            if k != 0 and k != skip and k not in self.dead:
                self.emit(k, ev)
        if self.forked:  # not connected yet: queued for its hello (see Hub.on_hello), encoded
            # now so that what cannot be sent (a Python object) is refused here as for a started one
            frame = encode_event(ev)
            for k in self.forked:
                self.pending_out.setdefault(k, []).append(frame)

    def define(self, sched: Scheduler, name: str, value: Any) -> None:
        try:
            self.to_hub_or_all(("define", name, value))
        except Unsendable as e:  # a Python object (vm/python.py, docs/python.md)
            raise badarg(f"def {name}: {e}: keep it in the process that uses it") from None
        except TooLarge as e:
            raise system_limit(f"def {name}: the value is too large to reach the other schedulers ({e})") from None

    def on_define(self, link: Link, ev: tuple) -> None:
        _, name, value = ev
        self.globals.cell(name).v = value
        if self.sched.vm.fast is not None:
            self.sched.vm.fast.on_define(name)
        if self.sid == 0:
            self.tell_workers(ev, link.peer)

    def on_register(self, link: Link, ev: tuple) -> None:
        """A name bound or freed elsewhere. The hub's copy is the authority, and each worker's
        copy follows the hub's changes in the hub's order: a worker takes a register from the
        hub as it is; the hub takes one from a worker if the name is free there, and otherwise
        defers it until the name is freed. (A worker checks a register against its own copy,
        which may not have seen the old holder's unregister yet at the hub: a supervisor that
        got the DOWN, was moved, and registered the name again; refusing it there left the
        name unbound though its register had said true.)"""
        name, pid = ev[1], ev[2]
        hub = self.sid == 0
        if ev[0] == "register":
            if hub:
                held = self.names.get(name)
                if held is not None and held == ev[3]:
                    # the worker saw the holder end (its DOWN, or its unregister) before this
                    # scheduler did: the name is free, and its later messages must find the new pid
                    self.unbind(name)
                    self.tell_workers(("unregister", name, held))
                    held = None
                if held is not None and held != pid:
                    self.deferred.setdefault(name, []).append(pid)
                    return
                if held == pid:
                    return
            self.bind(name, pid)
            if hub:
                self.tell_workers(ev, link.peer)
            self.name_here(name, pid)
            return
        if self.names.get(name) == pid:
            self.unbind(name)
            if hub:
                self.tell_workers(ev, link.peer)
                self.next_deferred(name)
        elif hub:
            self.undefer(name, pid)

    def undefer(self, name: Sym, pid: Pid) -> None:
        """(Hub) `pid` ended before the name it was registered under was freed: forget that."""
        waiting = self.deferred.get(name)
        if waiting and pid in waiting:
            waiting.remove(pid)
            if not waiting:
                del self.deferred[name]

    def next_deferred(self, name: Sym) -> None:
        """(Hub) `name` was freed: give it to the first register that waited for it."""
        waiting = self.deferred.pop(name, None)
        if not waiting:
            return
        pid = waiting.pop(0)
        if waiting:
            self.deferred[name] = waiting
        self.bind(name, pid)
        self.tell_workers(("register", name, pid, None))
        self.name_here(name, pid)

    def name_here(self, name: Sym, pid: Pid) -> None:
        """A name was registered elsewhere for `pid`: if the process is here, it carries the
        name, so that its end frees the name node-wide (a name registered for a process on
        another scheduler was never freed: issue 12); if it has already ended here, free it now."""
        key = pid.key
        proc = self.sched.procs.get(key)
        if proc is not None:
            if proc.name is None:
                proc.name = name
        elif self.gone(pid):
            self.unregister(name, pid)  # it ran here, never left, and is gone
