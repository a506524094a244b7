"""The cluster's events: what schedulers send each other, and the checks every event read passes.

Owns: the kinds and shapes of the events the schedulers of a node exchange (`SHAPES`), which of
them count towards quiescence (`COUNTED`), and `Refused`, raised for an event that no scheduler
of the node sends. Must never: apply an event (scheduler/cluster.py dispatches them), read a
socket, or take a connection for a scheduler of the node before its hello carried the node's token.

Every event is a tuple whose first field is its kind (docs/processes.md, "Hostile connections").
A check takes the receiving node and the event, and returns None or why the event is refused.
"""

from __future__ import annotations

from _operator import _compare_digest  # hmac.compare_digest, without importing hashlib
from typing import Any

from ..vm.process import Process
from ..vm.values import Pid, Ref, Sym

__all__ = ["COUNTED", "SHAPES", "Refused"]

# Lisp events (and sys/processes' questions, which a process waits for): quiescence compares
# how many were sent and received
COUNTED = frozenset({"ev", "proc", "pids_gather", "pids_ask", "pids"})


class Refused(Exception):
    """An event that no scheduler of this node sends (ClusterNode.handle): its connection is cut."""


def _sid(node: Any, k: Any) -> bool:
    """`k` can be a scheduler number of this node."""
    return k.__class__ is int and 0 <= k < node.nschedulers


def _hello_bad(node: Any, ev: tuple) -> str | None:
    """A hello must come from another scheduler of this node that has not said hello before
    (a forged one made the node take a live scheduler for dead), with the node's token."""
    if len(ev) != 4 or not _sid(node, ev[1]) or not (ev[2] is None or (ev[2].__class__ is int and ev[2] > 0)):
        return "wrong shape"
    if ev[3].__class__ is not bytes or not _compare_digest(ev[3], node.secret):
        return "not this node's token"
    k = ev[1]
    if k == node.sid or k in node.greeted or k in node.dead:
        return f"scheduler {k} is connected already"
    return None


# Signals as the kernel and ClusterNode.signal make them: their fields' classes (None: any value).
_SIGNAL_SHAPES: dict[str, tuple] = {
    "exit": (Pid, None, Pid), "xsignal": (Pid, None, Pid), "down": (Ref, Pid, None, Pid),
    "link": (Pid, Pid), "unlink": (Pid, Pid), "monitor": (Ref, Pid, Pid), "demonitor": (Ref, Pid),
    "pull": (int, Pid),  # tcp/owner or port/owner asks the new owner to come (scheduler/balance.py)
    "reply": (Ref, None, Pid), "info": (Ref, Pid, Pid), "inforeply": (Ref, None, Pid),
}


def _ev_bad(node: Any, ev: tuple) -> str | None:
    if len(ev) != 6 or ev[1].__class__ is not Pid:
        return "wrong shape"
    skey, seq = ev[2], ev[3]
    if not ((skey is None and seq is None) or (skey.__class__ is int and seq.__class__ is int and seq >= 0)):
        return "wrong sequence"
    if ev[4] == "m":
        return None
    item = ev[5]
    if ev[4] != "s" or item.__class__ is not tuple or not item or item[0].__class__ is not str:
        return "neither a message nor a signal"
    fields = _SIGNAL_SHAPES.get(item[0])
    if fields is None or len(item) != len(fields) + 1 or any(
            c is not None and x.__class__ is not c for c, x in zip(fields, item[1:])):
        return "not a signal"
    return None


def _names_bad(news: Any) -> bool:
    return news.__class__ is not tuple or any(
        x.__class__ is not tuple or len(x) != 2 or x[0].__class__ is not Sym or x[1].__class__ is not Pid for x in news)


def _shape(*fields: Any) -> Any:
    """A check that the event has these fields after its kind: a class, a tuple of classes, a
    predicate taking (node, value), or None for any value."""
    def bad(node: Any, ev: tuple) -> str | None:
        if len(ev) != len(fields) + 1:
            return "wrong length"
        for f, x in zip(fields, ev[1:]):
            if f is None:
                continue
            if f.__class__ is type or f.__class__ is tuple:
                if x.__class__ not in (f if f.__class__ is tuple else (f,)):
                    return "wrong shape"
            elif not f(node, x):
                return "wrong shape"
        return None
    return bad


_NONE = type(None)
SHAPES: dict[str, Any] = {
    "hello": _hello_bad,
    "ev": _ev_bad,
    "moved": _shape(int, _sid),
    "proc": _shape(Process, int, lambda node, news: not _names_bad(news)),
    "define": _shape(str, None),
    "register": _shape(Sym, Pid, (Pid, _NONE)),
    "unregister": _shape(Sym, Pid),
    "idle": _shape(_sid),
    "busy": _shape(_sid),
    "peer": _shape(_sid),
    "sched_down": _shape(lambda node, k: _sid(node, k) and k != node.sid),
    "start": _shape(_sid),
    "out": _shape(str),
    "err": _shape(str),
    "main_done": _shape(int, (str, _NONE)),
    "idle_report": _shape(_sid, bool, int, int, bool, bool),
    "stop": _shape(),
    "mainpid": _shape(Pid),
    "load": _shape(bytes),  # (hub to worker) a module compiled at lispvm repl
    "pids_gather": _shape(int),
    "pids_ask": _shape(int),
    "pids": _shape(int, lambda node, pids: pids.__class__ is tuple and all(p.__class__ is Pid for p in pids)),
}
# Standard input: scheduler 0 reads fd 0 for the whole node, the others ask it (scheduler/io.py).
SHAPES["stdin"] = _shape(Pid)  # (worker to hub) a process here waits for a line
SHAPES["stdin_cancel"] = _shape(Pid)  # (worker to hub) it ended before its line came
SHAPES["stdin_line"] = _shape(Pid, (str, _NONE), None)  # (hub to worker) its line, nil at the end, or an error
