"""Handles: the Lisp values that name an outside resource (a TCP socket, a listener, a port).

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

__all__ = ["Handle", "KINDS", "register", "lookup", "forget", "live"]

KINDS = ("socket", "listener", "port")


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


def live() -> list[Any]:
    """Every live resource of this OS process (for the node's stop)."""
    return list(_LIVE.values())
