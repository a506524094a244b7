"""Handles: the Lisp values that name an outside resource (a TCP socket, a listener, a port, a
file open for reading).

Owns: the Handle value (plain data: its kind, the scheduler that holds the resource, a serial
number), how it prints (`#<socket 0.7>`), and this OS process's table of live resources by
handle. Must never: import the scheduler, or hold anything but plain data in a Handle (a handle
travels in messages and with a moving process; the resource itself stays in the OS process of
its home scheduler, docs/processes.md, "Sockets and ports").

The resource objects in the table are the scheduler's (scheduler/tcp.py, scheduler/ports.py);
vm/net_builtins.py reaches them through `lookup` without importing the scheduler, and calls the
few methods they promise (their docstrings there).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Handle", "KINDS", "register", "lookup", "forget", "live", "adopt", "moved", "set_moved", "CLOSED_HERE"]

KINDS = ("socket", "listener", "port", "file")


class Handle:
    """A resource's name: `kind` (one of KINDS), `sched` (the scheduler whose OS process holds
    it) and `serial` (unique in that scheduler). Equal handles name the same resource."""

    __slots__ = ("kind", "sched", "serial")

    def __init__(self, kind: str, sched: int, serial: int) -> None:
        self.kind = kind
        self.sched = sched
        self.serial = serial

    def __repr__(self) -> str:
        return f"#<{self.kind} {self.sched}.{self.serial}>"

    def __eq__(self, other: object) -> bool:
        return (other.__class__ is Handle and self.serial == other.serial  # type: ignore[attr-defined]
                and self.sched == other.sched and self.kind == other.kind)  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.kind, self.sched, self.serial))

    @property
    def key(self) -> tuple[int, int]:
        """The table key: (home scheduler, serial)."""
        return (self.sched, self.serial)


_LIVE: dict[tuple[int, int], Any] = {}  # (sched, serial) -> the resource object, in this OS process
_MOVED: dict[tuple[int, int], int] = {}  # (sched, serial) -> the scheduler it was handed to, or CLOSED_HERE
CLOSED_HERE = -1  # (in _MOVED) a resource handed to this scheduler and closed here since
_serial = [0]


def register(kind: str, sched: int, resource: Any) -> Handle:
    """A new handle for `resource`, held by scheduler `sched` of this OS process."""
    _serial[0] += 1
    h = Handle(kind, sched, _serial[0])
    _LIVE[h.key] = resource
    return h


def lookup(h: Handle) -> Any:
    """The live resource `h` names in this OS process, or None (closed, or held elsewhere)."""
    return _LIVE.get((h.sched, h.serial))


def forget(h: Handle) -> None:
    """`h`'s resource is closed: it names nothing from now on."""
    _LIVE.pop((h.sched, h.serial), None)


def adopt(h: Handle, resource: Any, here: int) -> None:
    """`h`'s resource now lives in this OS process (scheduler `here`), handed over by the
    scheduler `h` names (a socket given to an owner here: scheduler/tcp.py). The handle keeps
    its name: it is a value the program holds."""
    _LIVE[h.key] = resource
    _MOVED.pop(h.key, None)
    if h.sched != here:
        _ADOPTED.add(h.key)


_ADOPTED: set[tuple[int, int]] = set()  # keys of resources adopted here from another scheduler


def moved(h: Handle) -> int | None:
    """Where `h`'s resource went from here: a scheduler, CLOSED_HERE (adopted here and closed
    since), or None (never here, still here, or closed by its own scheduler)."""
    return _MOVED.get(h.key)


def set_moved(h: Handle, where: int) -> None:
    """`h`'s resource left this OS process for scheduler `where` (CLOSED_HERE: it was adopted
    here and is closed now, so calls here fail instead of going back to where it came from).
    One small entry per moved socket stays for the node's life: a handle may be used late."""
    _MOVED[h.key] = where
    _ADOPTED.discard(h.key)


def was_adopted(h: Handle) -> bool:
    """Was `h`'s resource handed to this OS process by another scheduler (and is it live)?"""
    return h.key in _ADOPTED


def live() -> list[Any]:
    """Every live resource of this OS process (for the node's stop)."""
    return list(_LIVE.values())
