"""Mutable variables and processes: whatever the placement, processes share no mutable state.

Owns: the rule for a Box (a variable that a closure captured and that `set` assigns) reached by
more than one process (docs/language.md, "Closures and messages"), and the copies it needs.
Must never: be on the path of an ordinary upvalue access. The loop and compiled code test one
attribute, `box.owner != <the running process's key>`, and call `touch` only when it differs.

A box's owner is one of:
- a pid key (int >= 0): the process that made the box (BOX), or claimed it; only it uses the box
  in place;
- UNCLAIMED: a copy inside a message or a spawn's function; the first process to touch it owns it;
- a template id (int < 0): the box is part of a global's value. A global holds a value, not a
  variable: `def`/`set` of a global stores a snapshot whose boxes are templates, which nothing
  ever writes. Each process that touches a template works on its own copy, made from the template
  at its first touch and kept in `Process.boxes` under the template's id (ids, not objects, so
  that the copy is found again after the process or the global crossed OS processes). The
  process that stored the value keeps its own variable: its copy of the new template is the box
  it already had.
A box owned by another process is only reached through a path that did not copy it (an error
value in an exit signal, say); it is copied on first touch too, so that nothing is shared.
"""

from __future__ import annotations

import os
from typing import Any

from . import values as _values
from .process import ctx
from .values import UNCLAIMED, Box, Closure, Cons, Map, Vec, map_of, note_box

__all__ = ["key_of", "touch", "touch_current", "for_global", "for_message", "BARE"]

BARE = "bare"  # the owner key of a process without a pid (macros run at compile time)


def _template_id() -> int:
    """A new template id, unique in the node without asking anyone: 62 random bits (a serial
    number would repeat in a forked scheduler, and an OS pid can be reused)."""
    return -1 - (int.from_bytes(os.urandom(8), "big") >> 2)


def key_of(proc: Any) -> Any:
    """The owner key of boxes made by `proc`."""
    return BARE if proc.pid is None else proc.pid.key


def touch(proc: Any, b: Box) -> Box:
    """The box that `proc` uses for variable `b` (the loop calls this when b.owner is not its
    key): `b` itself once claimed, or this process's own copy of a template or foreign box."""
    mine = proc.boxes
    if mine is not None:  # a template this process has touched before: the common case here
        own = mine.get(b.owner)
        if own is not None:
            return own
    return _touch(proc, b)


def _touch(proc: Any, b: Box) -> Box:
    key = key_of(proc)
    o = b.owner
    if o == key:
        return b
    if o == UNCLAIMED:
        b.owner = key
        note_box()  # messages from here on are scanned for closures with boxes
        return b
    mine = proc.boxes
    if mine is None:
        mine = proc.boxes = {}
    k = o if o.__class__ is int and o < 0 else b
    own = mine.get(k)
    if own is None:
        own = mine[k] = Box(b.v, key)
        note_box()
    return own


def touch_current(b: Box) -> Box:
    """touch() for compiled code, which knows the running process only through vm.process.ctx."""
    return touch(ctx.proc, b)


def _view(proc: Any, b: Box) -> Box | None:
    """The box `proc` would use for `b`, or None while `b` is a template it has not touched."""
    o = b.owner
    if o.__class__ is int and o < 0 and (proc.boxes is None or o not in proc.boxes):
        return None
    return touch(proc, b)


def for_global(proc: Any, x: Any, cell: Any = None) -> Any:
    """The value global `cell` gets when `proc` stores `x` with def or set: `x` itself when it
    holds no box, else a copy whose boxes are templates (see the module doc)."""
    if not _values.BOXES_MADE:
        return x
    if not _has_box(x, cell.boxfree if cell is not None else None):
        if cell is not None and x.__class__ in _CONTAINERS:
            cell.boxfree = x  # kept on the cell, so it goes when the run's globals go
        return x
    if cell is not None:
        cell.boxfree = None

    def template(b: Box, fill: list) -> Box:
        own = _view(proc, b)
        if own is None:
            return b  # an untouched template: already a snapshot, never written
        t = Box(None, _template_id())
        if proc.boxes is None:
            proc.boxes = {}
        proc.boxes[t.owner] = own  # the storing process keeps its variable
        fill.append((t, own.v))
        return t

    return _copy(x, template)


def for_message(proc: Any, x: Any) -> Any:
    """`x` as another process receives it from `proc` (a message, a spawn's function and
    arguments, an exit reason): `x` itself when it holds no box, else a copy in which each box
    is a new unclaimed one holding the sender's current value (untouched templates stay)."""
    if not _has_box(x):
        return x

    def fresh(b: Box, fill: list) -> Box:
        own = _view(proc, b) if proc is not None else b
        if own is None:
            return b
        n = Box(None)
        fill.append((n, own.v))
        return n

    return _copy(x, fresh)


def _has_box(x: Any, free: Any = None) -> bool:
    """Is a Box reachable from `x`, not counting what is reachable from `free` (known to hold
    none)? Iterative (values nest deeply and lists are long)."""
    c = x.__class__
    if c is not Cons and c is not Vec and c is not Closure and c is not Map:
        return c is Box
    seen: set[int] = set() if free is None else {id(free)}
    stack = [x]
    while stack:
        n = stack.pop()
        c = n.__class__
        if c is Box:
            return True
        if c is Cons:
            while n.__class__ is Cons:
                if id(n) in seen:
                    break
                seen.add(id(n))
                h = n.head
                if h.__class__ in _CONTAINERS:
                    stack.append(h)
                n = n.tail
            if n.__class__ is not Cons and n.__class__ in _CONTAINERS:  # an improper tail
                stack.append(n)
        elif c is Vec or c is Closure or c is Map:
            if id(n) in seen:
                continue
            seen.add(id(n))
            for e in (n.items if c is Vec else n.upvals if c is Closure else _map_flat(n)):
                if e.__class__ in _CONTAINERS:
                    stack.append(e)
    return False


_CONTAINERS = frozenset({Cons, Vec, Closure, Box, Map})


def _map_flat(m: Map) -> list:
    """A map's keys and values, alternating (keys may hold closures too)."""
    return [e for kv in m.m.items() for e in kv]


def _copy(root: Any, boxmap: Any) -> Any:
    """A copy of `root` with each box replaced by boxmap(box, fill) (memoised: a box shared by
    two closures stays shared); `fill` collects (new box, old value) pairs whose values are
    copied after, so cycles (which always pass through a box) end. Iterative."""
    memo: dict[int, Any] = {}
    fill: list[tuple[Box, Any]] = []

    def build(x: Any) -> Any:
        out: list[Any] = []
        stack: list[tuple[Any, bool]] = [(x, False)]
        while stack:
            n, done = stack.pop()
            c = n.__class__
            if c not in _CONTAINERS or (c is Closure and not n.upvals):
                out.append(n)
                continue
            i = id(n)
            if not done and i in memo:
                out.append(memo[i])
                continue
            if c is Box:
                nb = memo[i] = boxmap(n, fill)
                out.append(nb)
                continue
            kids = ((n.head, n.tail) if c is Cons else n.items if c is Vec
                    else _map_flat(n) if c is Map else n.upvals)
            if not done:
                stack.append((n, True))
                stack.extend((k, False) for k in reversed(kids))
                continue
            k = len(kids)
            vals = out[len(out) - k:]
            del out[len(out) - k:]
            if c is Cons:
                new: Any = Cons(vals[0], vals[1])
            elif c is Vec:
                new = Vec(vals)
            elif c is Map:
                new = map_of(*vals)
            else:
                new = Closure(n.proto, tuple(vals), n.name)
            memo[i] = new
            out.append(new)
        return out[0]

    result = build(root)
    while fill:
        nb, v = fill.pop()
        nb.v = build(v)
    return result
