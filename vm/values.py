"""Lisp values as Python objects, and how they print.

Owns: the representation of every value of LANGUAGE.md section 2, structural equality, and the
two printed forms (`print` and `repr`). Must never: import numpy at module level (f32 arrays wrap
numpy lazily so that programs without `gpu/` calls never load it), or recurse in Python along the
spine of a list (lists can be a million cells long).

Representation, chosen so that the interpreter and the fast tier can use Python's own operators
without type guards wherever that is safe (docs/language.md, "Values"):

| Lisp            | Python                           | why |
|-----------------|----------------------------------|-----|
| integer, float  | int, float                       | arbitrary precision and IEEE doubles for free |
| string          | str                              | |
| nil / empty list| None                             | `x is None` is the cheapest test there is |
| true, false     | TRUE, FALSE (class Bool)         | Python's bools are ints: `True + 1 == 2`, `True == 1` |
| symbol          | Sym, interned                    | identity comparison |
| list            | Cons                             | O(1) cons/head/tail |
| vector          | Vec (tuple; PVector once updated)| cheap literals, O(log n) set/push; a bare tuple has `+` |
| map             | Map (wraps an immutables.Map)    | a persistent hash map (HAMT): O(log n) put/get |
| function        | Closure, Builtin                 | |
| pid, ref        | Pid, Ref                         | |
| f32 array       | F32Array (wraps numpy)           | a bare ndarray would broadcast `+` |

With this table, the only Lisp values that support Python's `+`, `*` or `%` are numbers and
strings, so arithmetic checks its result for `str` instead of checking both operands.
"""

from __future__ import annotations

import os
from functools import cmp_to_key
from typing import Any

from immutables import Map as _IMap

try:  # pyrsistent's C vector alone: the whole pyrsistent package is slow to import (start-up)
    from pvectorc import pvector
except ImportError:  # no C extension on this platform: pyrsistent's Python one
    from pyrsistent import pvector

from .registry import Builtin  # a function written in Python: defined with the table of builtins

# The C extension (vm/_speedups.c): Cons and the list walkers without a Python frame per cell, and
# cells the cyclic collector never walks. Optional: without it (no compiler at install) or with
# LISPVM_PURE=1 set, the pure-Python definitions below are the ones used.
_speedups: Any = None
# one reading of the switch for the cells and the codec (vm/codec.py): anything but "" and "0"
PURE = os.environ.get("LISPVM_PURE", "") not in ("", "0")
if not PURE:
    try:
        from . import _speedups
    except ImportError:
        _speedups = None
SPEEDUPS = _speedups is not None  # whether this process runs on the C cells

# CPython's limit on int <-> str conversion stays on: vm/errors.py sets it to MAX_INT_DIGITS
# (the conversion is quadratic, so an unlimited one blocks a scheduler for seconds).

__all__ = [
    "Bool", "TRUE", "FALSE", "Sym", "intern", "Cons", "Vec", "Box", "Closure", "Builtin",
    "Pid", "Ref", "F32Array", "UNDEF", "UNCLAIMED", "from_list", "to_pylist", "is_list", "lisp_eq",
    "to_str", "to_repr", "type_name", "truthy", "note_box", "Map", "map_of", "EMPTY_IMAP",
    "lisp_hash", "compare", "sort_key", "map_items_sorted", "PVector", "pvector", "persistent",
    "SPEEDUPS", "PyCons", "PyClosure", "list_reverse", "list_append", "list_length", "list_nth", "join_strs",
]


PVector = type(pvector())  # the C class (pyrsistent.PVector is an abstract base)


class Bool:
    """The two booleans; exactly two instances exist (TRUE and FALSE)."""

    __slots__ = ("value",)

    def __init__(self, value: bool) -> None:
        self.value = value  # the Python truth value, for printing only

    def __repr__(self) -> str:
        return "true" if self.value else "false"

    def __reduce__(self) -> tuple:
        return (_bool, (self.value,))


TRUE = Bool(True)
FALSE = Bool(False)


def _bool(v: bool) -> Bool:
    return TRUE if v else FALSE


def truthy(x: Any) -> bool:
    """Lisp truth: only false and nil are false."""
    return x is not FALSE and x is not None


class Sym:
    """An interned symbol. Compare with `is`; create only through `intern`."""

    __slots__ = ("name", "__weakref__")

    def __init__(self, name: str) -> None:
        self.name = name  # the symbol's text, e.g. "math/sin"

    def __repr__(self) -> str:
        return self.name

    def __reduce__(self) -> tuple:
        # Re-intern on load, so identity comparison works across OS processes.
        return (intern, (self.name,))


_SYMBOLS: dict[str, Sym] = {}


def intern(name: str) -> Sym:
    """Return the unique symbol called `name`."""
    s = _SYMBOLS.get(name)
    if s is None:
        s = _SYMBOLS[name] = Sym(name)
    return s


class Cons:
    """A cons cell. Lists are chains of cells ending in None (nil).

    The pure-Python definition; with the C extension, `Cons` is `_speedups.Cons` (the same
    members and behaviour: read-only head and tail) and this class stays reachable as PyCons.
    """

    __slots__ = ("head", "tail")

    def __init__(self, head: Any, tail: Any) -> None:
        self.head = head  # the first element
        self.tail = tail  # the rest: another Cons, None, or any value (improper list)

    def __eq__(self, other: object) -> bool:
        return lisp_eq(self, other)

    def __ne__(self, other: object) -> bool:
        return not lisp_eq(self, other)

    def __hash__(self) -> int:
        return lisp_hash(self)  # structural, agreeing with lisp_eq: lists are map keys

    def __iter__(self):
        cls = self.__class__
        c: Any = self
        while c.__class__ is cls:
            yield c.head
            c = c.tail

    def __repr__(self) -> str:
        return to_repr(self)

    def __reduce__(self) -> tuple:
        # Flat, so that pickling a million-element list does not recurse a million deep.
        cls = self.__class__
        items = []
        c: Any = self
        while c.__class__ is cls:
            items.append(c.head)
            c = c.tail
        return (_rebuild_list, (items, c))


PyCons = Cons  # the pure-Python class, whichever Cons is in use


def _rebuild_list(items: list, last: Any) -> Any:
    """The unpickling side of a list's flat __reduce__ (in either implementation)."""
    return from_list(items, last)


def from_list(items: Any, tail: Any = None) -> Any:
    """Build a Lisp list from a Python sequence or iterable (an optional improper tail)."""
    if items.__class__ is not list and items.__class__ is not tuple:
        items = tuple(items)
    out = tail
    for x in reversed(items):
        out = Cons(x, out)
    return out


def to_pylist(x: Any) -> list | None:
    """The elements of a proper Lisp list as a Python list, or None if `x` is not one."""
    out = []
    while x.__class__ is Cons:
        out.append(x.head)
        x = x.tail
    return out if x is None else None


def list_reverse(x: Any) -> Any:
    """The proper list `x` reversed; ValueError if `x` is not a proper list."""
    out = None
    while x.__class__ is Cons:
        out = Cons(x.head, out)
        x = x.tail
    if x is not None:
        raise ValueError("not a proper list")
    return out


def list_append(*lists: Any) -> Any:
    """The lists joined, the last shared (any value); ValueError(i) if argument i (not the
    last) is not a proper list (the rightmost such i)."""
    if not lists:
        return None
    for i in range(len(lists) - 2, -1, -1):
        if to_pylist(lists[i]) is None:
            raise ValueError(i)
    out = lists[-1]
    for x in reversed(lists[:-1]):
        out = from_list(to_pylist(x), out)
    return out


def list_length(x: Any) -> int | None:
    """The number of cells of the proper list `x` (0 for nil), or None if it is not one."""
    n = 0
    while x.__class__ is Cons:
        n += 1
        x = x.tail
    return n if x is None else None


def list_nth(xs: Any, i: int) -> Any:
    """Element `i` (an int >= 0) of the list `xs`; IndexError when the list is shorter,
    ValueError when the walk ends at something other than nil."""
    if i < 0:
        raise IndexError("negative index")
    while xs.__class__ is Cons:
        if i == 0:
            return xs.head
        i -= 1
        xs = xs.tail
    raise IndexError() if xs is None else ValueError()


def join_strs(sep: str, xs: Any, limit: int) -> str | None:
    """The strings of the proper list `xs` joined by `sep`, or None when an element is not a
    string, the list is improper, or the result would pass `limit` characters."""
    items = to_pylist(xs)
    if items is None or not set(map(type, items)) <= {str}:
        return None
    if len(sep) * max(0, len(items) - 1) + sum(map(len, items)) > limit:
        return None
    return sep.join(items)


if _speedups is not None:
    Cons = _speedups.Cons  # noqa: F811 - the C cell replaces the class above everywhere
    from_list = _speedups.from_list
    to_pylist = _speedups.to_pylist
    list_reverse = _speedups.reverse
    list_append = _speedups.append
    list_length = _speedups.length
    list_nth = _speedups.nth
    join_strs = _speedups.join_strs


def is_list(x: Any) -> bool:
    """True for nil and for cons cells (the cheap test that `list?` makes)."""
    return x is None or x.__class__ is Cons


class Vec:
    """An immutable vector. `items` is a tuple or a pyrsistent PVector: both are immutable
    sequences, so readers index, slice, iterate and take len() without asking which.

    A literal, `vector` or a decoded message makes a tuple (a PVector costs several times more to
    build, and most vectors are never updated); the first vec/set or vec/push on a vector turns
    its items into a PVector in place (the same elements: no one can tell) through `persistent`,
    so that updates are O(log n) from then on and their results are PVectors too.
    """

    __slots__ = ("items",)

    def __init__(self, items: Any) -> None:
        c = items.__class__
        self.items = items if c is tuple or c is PVector else tuple(items)  # the elements

    def __eq__(self, other: object) -> bool:
        return other.__class__ is Vec and lisp_eq(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return lisp_hash(self)

    def __repr__(self) -> str:
        return to_repr(self)


def persistent(v: Vec) -> Any:
    """`v`'s items as a PVector, converted once and kept in `v` (O(n) once, then O(1))."""
    items = v.items
    if items.__class__ is not PVector:
        items = v.items = pvector(items)
    return items


EMPTY_IMAP = _IMap()


class Map:
    """An immutable hash map; `m` is an immutables.Map keyed by the Lisp keys themselves.

    Keys equal by `==` are one key: numbers hash by value (1 and 1.0 agree), and Cons, Vec, Map
    and F32Array hash structurally (lisp_hash), so lists, vectors and maps are keys too.
    """

    __slots__ = ("m",)

    def __init__(self, m: _IMap = EMPTY_IMAP) -> None:
        self.m = m  # the entries: an immutables.Map (a persistent HAMT)

    def __eq__(self, other: object) -> bool:
        return other.__class__ is Map and lisp_eq(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return lisp_hash(self)

    def __repr__(self) -> str:
        return to_repr(self)

    def __reduce__(self) -> tuple:
        # Entries as a flat list: the receiver rebuilds the HAMT with its own hashes (symbols
        # and booleans hash by identity, which differs between OS processes).
        return (_rebuild_map, (list(self.m.items()),))


def _rebuild_map(items: list) -> Map:
    return Map(_IMap(items))


def map_of(*kvs: Any) -> Map:
    """A Map from alternating keys and values; a later key wins. Raises ValueError on an odd
    count."""
    if len(kvs) & 1:
        raise ValueError("a map needs an even number of keys and values")
    if not kvs:
        return Map(EMPTY_IMAP)
    with EMPTY_IMAP.mutate() as mm:
        for i in range(0, len(kvs), 2):
            mm[kvs[i]] = kvs[i + 1]
        return Map(mm.finish())


UNCLAIMED = "unclaimed"  # Box.owner of a box no process has touched yet


class Box:
    """A mutable cell holding a variable that a closure captured and that `set` assigns.

    Never a Lisp value: the compiler boxes such variables so that every closure sees the
    same binding (LANGUAGE.md: closures capture by reference).
    """

    __slots__ = ("v", "owner")

    def __init__(self, v: Any, owner: Any = UNCLAIMED) -> None:
        self.v = v  # the variable's current value
        # Who may use it in place (docs/language.md, "Closures and messages"): a process's pid
        # key (int >= 0), UNCLAIMED (a copy in a message: the first process to touch it takes
        # it), or a template's id (int < 0: stored in a global; each process works on a copy).
        self.owner = owner

    def __setstate__(self, state: Any) -> None:
        # unpickled (a process or a message from another OS process): from now on this OS
        # process's messages are scanned for boxes to copy (vm/builtins.py, copy_message)
        slots = state[1] if state.__class__ is tuple else state
        self.v = slots["v"]
        self.owner = slots.get("owner", UNCLAIMED)
        note_box()


BOXES_MADE = False  # set once this OS process made or received a Box (messages then get copied)


def note_box() -> None:
    """Called when a Box is made or arrives: from now on, messages are scanned for closures to
    copy (vm/boxes.py). Until then, sending a message costs no scan."""
    global BOXES_MADE
    BOXES_MADE = True


class Closure:
    """A Lisp function: a prototype plus its captured values (upvalues)."""

    __slots__ = ("proto", "upvals", "fast", "name")

    def __init__(self, proto: Any, upvals: tuple, name: str | None = None) -> None:
        self.proto = proto  # vm.lbc.Proto: code, arity, register count
        self.upvals = upvals  # tuple of captured values; Box for captured-and-assigned variables
        self.fast = None  # the fast tier's Python function for this closure, made on demand
        self.name = name or proto.name  # for #<fn NAME>

    def __repr__(self) -> str:
        return f"#<fn {self.name}>"

    def __reduce__(self) -> tuple:
        # `fast` is a Python function of this OS process: the receiver makes its own
        return (_closure, (self.proto, self.upvals, self.name))


def _closure(proto: Any, upvals: tuple, name: str) -> Closure:
    return Closure(proto, upvals, name)


PyClosure = Closure  # the pure-Python class (tests compare the C one with it)
if _speedups is not None:
    # the C closure (vm/_speedups.c): the same attributes, repr and pickling, made without a
    # Python frame (compiled code makes one for every `fn` it evaluates)
    Closure = _speedups.Closure  # type: ignore[misc]  # noqa: F811
    _speedups._register_closure(_closure)


class Pid:
    """A process identifier, unique in its node. `node` is the scheduler that created it.

    `key` is an int naming the process node-wide: the schedulers key their tables by it, because
    a Python-level __hash__ and __eq__ make every lookup on the message path several times
    slower (see docs/performance.md, "Pid keys").
    """

    __slots__ = ("node", "key")  # num is read from key: a waiting process is smaller without it

    def __init__(self, node: int, num: int) -> None:
        self.node = node  # index of the scheduler that spawned the process (part of the name only)
        self.key = (num << 12) | node  # node-wide integer name (up to 4096 schedulers)

    @property
    def num(self) -> int:
        """The serial number within the scheduler that spawned the process."""
        return self.key >> 12

    def __eq__(self, other: object) -> bool:
        return other.__class__ is Pid and other.key == self.key  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return self.key

    def __repr__(self) -> str:
        return f"#<pid {self.node}.{self.num}>"

    def __reduce__(self) -> tuple:
        return (Pid, (self.node, self.num))


class Ref:
    """A unique reference, from make-ref or monitor."""

    __slots__ = ("node", "num")

    def __init__(self, node: int, num: int) -> None:
        self.node = node  # scheduler that made it
        self.num = num  # serial number there

    def __eq__(self, other: object) -> bool:
        return other.__class__ is Ref and other.num == self.num and other.node == self.node  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.node, self.num, "ref"))

    def __repr__(self) -> str:
        return f"#<ref {self.node}.{self.num}>"

    def __reduce__(self) -> tuple:
        return (Ref, (self.node, self.num))


class F32Array:
    """A float32 vector for gpu/ work. Immutable as a Lisp value: nothing writes `data`."""

    __slots__ = ("data",)

    def __init__(self, data: Any) -> None:
        self.data = data  # a one-dimensional numpy float32 array

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not F32Array:
            return False
        a, b = self.data, other.data  # type: ignore[attr-defined]
        return a.shape == b.shape and bool((a == b).all())

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return lisp_hash(self)

    def __repr__(self) -> str:
        return f"#<f32[{len(self.data)}]>"


class _Undef:
    """The value of a global that is named but not yet defined."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "#<undefined>"


UNDEF = _Undef()


def lisp_eq(a: Any, b: Any) -> bool:
    """Structural equality (`==`): numbers by value, strings by text, lists element-wise.

    Walks list spines with a loop and nesting with an explicit stack, never Python recursion.
    """
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        while True:
            cx = x.__class__
            if cx is Cons:
                if y.__class__ is not Cons:
                    return False
                stack.append((x.head, y.head))
                x, y = x.tail, y.tail
                continue
            if cx is Vec:
                if y.__class__ is not Vec or len(x.items) != len(y.items):
                    return False
                stack.extend(zip(x.items, y.items))
                break
            if x is y:
                break
            if cx is Map:
                if y.__class__ is not Map or len(x.m) != len(y.m):
                    return False
                ym = y.m
                for k, v in x.m.items():
                    w = ym.get(k, _MISSING)
                    if w is _MISSING:
                        return False
                    stack.append((v, w))
                break
            if cx is Bool or y.__class__ is Bool or y.__class__ is Cons or y.__class__ is Vec:
                return False
            try:
                if not (x == y):
                    return False
            except TypeError:
                return False
            break
    return True


_MISSING = object()

# Tags mixed into structural hashes, so that (1 2), [1 2] and {1 2} hash apart.
_H_CONS, _H_VEC, _H_MAP, _H_F32, _H_NIL = 0x2545F491, 0x3C6EF372, 0x1B873593, 0x5BD1E995, 0x68E31DA4
_HMASK = (1 << 64) - 1


def lisp_hash(x: Any) -> int:
    """A hash agreeing with lisp_eq: numbers by value, lists, vectors, maps and f32 arrays by
    content (a map's entries in any order). Iterative: a list's spine and nesting use an
    explicit stack, never Python recursion."""
    c = x.__class__
    if c is not Cons and c is not Vec and c is not Map and c is not F32Array:
        return hash(x)
    # Post-order over an explicit stack: a marker (tag, n) waits on the stack until its n
    # children's hashes are on `done`, then combines them.
    done: list[int] = []
    todo: list[Any] = [x]
    while todo:
        v = todo.pop()
        cv = v.__class__
        if cv is _HFrame:
            n = v.n
            if n:
                parts = done[-n:]
                del done[-n:]
            else:
                parts = []
            if v.tag == _H_MAP:
                acc = 0
                for i in range(0, n, 2):
                    acc = (acc + hash((parts[i], parts[i + 1]))) & _HMASK
                done.append(hash((_H_MAP, n, acc)))
            else:
                done.append(hash((v.tag, *parts)))
        elif cv is Cons:
            elems = []
            while v.__class__ is Cons:
                elems.append(v.head)
                v = v.tail
            elems.append(v)  # the tail: nil for a proper list
            todo.append(_HFrame(_H_CONS, len(elems)))
            todo.extend(reversed(elems))
        elif cv is Vec:
            todo.append(_HFrame(_H_VEC, len(v.items)))
            todo.extend(reversed(v.items))
        elif cv is Map:
            todo.append(_HFrame(_H_MAP, 2 * len(v.m)))
            for k, w in v.m.items():
                todo.append(w)
                todo.append(k)
        elif cv is F32Array:
            done.append(hash((_H_F32, *v.data.tolist())))  # tolist: -0.0 and 0.0 hash alike
        elif v is None:
            done.append(_H_NIL)
        else:
            done.append(hash(v))
    return done[0]


class _HFrame:
    __slots__ = ("tag", "n")

    def __init__(self, tag: int, n: int) -> None:
        self.tag = tag
        self.n = n


# --- term order (LANGUAGE.md section 9) ---------------------------------------------------------

_R_NUM, _R_NIL, _R_BOOL, _R_SYM, _R_STR, _R_VEC, _R_LIST, _R_MAP = range(8)
_R_FN, _R_PID, _R_REF, _R_F32, _R_OTHER = range(8, 13)


def _rank(x: Any) -> int:
    c = x.__class__
    r = _RANKS.get(c)
    if r is not None:
        return r
    return _R_NIL if x is None else _R_OTHER


def _cmp_atoms(r: int, x: Any, y: Any) -> int:
    """Order two values of the same rank that are not containers walked by compare."""
    if r == _R_NUM:
        if x != x or y != y:  # NaN: after every other number, equal to itself
            return (x != x) - (y != y)
        return (x > y) - (x < y)
    if r == _R_STR:
        return (x > y) - (x < y)
    if r == _R_SYM:
        a, b = x.name, y.name
        return (a > b) - (a < b)
    if r == _R_BOOL:
        return x.value - y.value
    if r == _R_NIL:
        return 0
    if r == _R_FN:
        a, b = (x.name or "", id(x)), (y.name or "", id(y))
        return (a > b) - (a < b)
    if r == _R_PID or r == _R_REF:
        a, b = (x.node, x.num), (y.node, y.num)
        return (a > b) - (a < b)
    if r == _R_F32:
        p, q = x.data.tolist(), y.data.tolist()
        if len(p) != len(q):
            return (len(p) > len(q)) - (len(p) < len(q))
        for a, b in zip(p, q):
            c = _cmp_atoms(_R_NUM, a, b)
            if c:
                return c
        return 0
    a, b = (type(x).__name__, id(x)), (type(y).__name__, id(y))
    if x is y:
        return 0
    return (a > b) - (a < b)


def compare(a: Any, b: Any) -> int:
    """-1, 0 or 1 by the total order of LANGUAGE.md section 9: numbers < nil < booleans <
    symbols < strings < vectors < lists < maps < everything else. Iterative over list spines
    and nesting (a map's entries are sorted by a nested compare, one level per nested map)."""
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        while True:
            if x is y:
                break
            rx, ry = _rank(x), _rank(y)
            if rx != ry:
                return -1 if rx < ry else 1
            if rx == _R_LIST:  # head now, the tails next (nil < list: a prefix comes first)
                stack.append((x.tail, y.tail))
                x, y = x.head, y.head
                continue
            if rx == _R_VEC:
                n, m = len(x.items), len(y.items)
                if n != m:
                    return -1 if n < m else 1
                stack.extend(reversed(list(zip(x.items, y.items))))
                break
            if rx == _R_MAP:
                n, m = len(x.m), len(y.m)
                if n != m:
                    return -1 if n < m else 1
                pairs = []
                for (k1, v1), (k2, v2) in zip(map_items_sorted(x), map_items_sorted(y)):
                    pairs.append((k1, k2))
                    pairs.append((v1, v2))
                stack.extend(reversed(pairs))
                break
            c = _cmp_atoms(rx, x, y)
            if c:
                return c
            break
    return 0


sort_key = cmp_to_key(compare)  # a key for sorted(): orders any values by compare


def map_items_sorted(m: Map) -> list:
    """A map's (key, value) pairs in key order (compare)."""
    items = list(m.m.items())
    try:
        items.sort(key=_fast_key(items))
    except TypeError:
        items.sort(key=lambda kv: sort_key(kv[0]))
    return items


def _fast_key(items: list) -> Any:
    """The cheapest correct sort key for these pairs: the key itself when all keys are strings
    or all are non-NaN numbers (Python's order is then the term order), else compare's."""
    if items:
        c0 = items[0][0].__class__
        if c0 is str and all(k.__class__ is str for k, _ in items):
            return _first
        if all((k.__class__ is int or (k.__class__ is float and k == k)) for k, _ in items):
            return _first
    return lambda kv: sort_key(kv[0])


def _first(kv: tuple) -> Any:
    return kv[0]


def type_name(x: Any) -> str:
    """The Lisp name of a value's type, for error messages."""
    c = x.__class__
    if x is None:
        return "nil"
    return _TYPE_NAMES.get(c, c.__name__)


_TYPE_NAMES = {
    int: "integer", float: "float", str: "string", Bool: "boolean", Sym: "symbol", Cons: "list",
    Vec: "vector", Closure: "function", Builtin: "function", Pid: "pid", Ref: "ref",
    F32Array: "f32 array", Map: "map",
}

_RANKS: dict[type, int] = {
    int: _R_NUM, float: _R_NUM, Bool: _R_BOOL, Sym: _R_SYM, str: _R_STR, Vec: _R_VEC,
    Cons: _R_LIST, Map: _R_MAP, Closure: _R_FN, Builtin: _R_FN, Pid: _R_PID, Ref: _R_REF,
    F32Array: _R_F32,
}

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _str_repr(s: str) -> str:
    if not any(ch in s for ch in _ESCAPES):
        return '"' + s + '"'
    return '"' + "".join(_ESCAPES.get(ch, ch) for ch in s) + '"'


def to_str(x: Any) -> str:
    """The `print` form: strings raw, everything else as `repr`."""
    if x.__class__ is str:
        return x
    return to_repr(x)


def to_repr(x: Any) -> str:
    """The form a value has inside a list (strings quoted and escaped). Iterative. A value
    holding an integer past the conversion limit (vm/errors.py MAX_INT_DIGITS) prints as
    #<too large to print>: the builtins refuse it first, this is for reports of exit reasons."""
    try:
        return _to_repr(x)
    except ValueError:
        return "#<too large to print>"


def _to_repr(x: Any) -> str:
    c = x.__class__
    if c is int or c is float or c is Sym or c is Bool:
        return repr(x)
    if c is str:
        return _str_repr(x)
    if x is None:
        return "nil"
    if c is not Cons and c is not Vec and c is not Map:
        return repr(x)
    # Containers: an explicit stack of pending pieces. Strings in the stack are emitted as-is;
    # a _Val marks a value still to be printed.
    out: list[str] = []
    todo: list[Any] = [_Val(x)]
    while todo:
        item = todo.pop()
        if item.__class__ is str:
            out.append(item)
            continue
        v = item.v
        cv = v.__class__
        if cv is Cons:
            parts: list[Any] = ["("]
            first = True
            while v.__class__ is Cons:
                if not first:
                    parts.append(" ")
                parts.append(_Val(v.head))
                first = False
                v = v.tail
            if v is not None:
                parts.append(" . ")
                parts.append(_Val(v))
            parts.append(")")
            todo.extend(reversed(parts))
        elif cv is Vec:
            parts = ["["]
            for i, e in enumerate(v.items):
                if i:
                    parts.append(" ")
                parts.append(_Val(e))
            parts.append("]")
            todo.extend(reversed(parts))
        elif cv is Map:
            parts = ["{"]
            for i, (k, e) in enumerate(map_items_sorted(v)):
                if i:
                    parts.append(" ")
                parts.append(_Val(k))
                parts.append(" ")
                parts.append(_Val(e))
            parts.append("}")
            todo.extend(reversed(parts))
        elif cv is str:
            out.append(_str_repr(v))
        elif v is None:
            out.append("nil")
        else:
            out.append(repr(v))
    return "".join(out)


class _Val:
    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v


if _speedups is not None:
    # what the C cell delegates to, and the types whose instances hold only ints, strings or
    # bools (never a cell): cells holding them stay untracked by the collector
    _speedups._register(lisp_eq, lisp_hash, to_repr, _rebuild_list, (Sym, Bool, Pid, Ref))
