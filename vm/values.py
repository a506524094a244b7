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
| vector          | Vec (wraps a tuple)              | a bare tuple would support `+` (concatenation) |
| function        | Closure, Builtin                 | |
| pid, ref        | Pid, Ref                         | |
| f32 array       | F32Array (wraps numpy)           | a bare ndarray would broadcast `+` |

With this table, the only Lisp values that support Python's `+`, `*` or `%` are numbers and
strings, so arithmetic checks its result for `str` instead of checking both operands.
"""

from __future__ import annotations

from typing import Any

from .registry import Builtin  # a function written in Python: defined with the table of builtins

# CPython's limit on int <-> str conversion stays on: vm/errors.py sets it to MAX_INT_DIGITS
# (the conversion is quadratic, so an unlimited one blocks a scheduler for seconds).

__all__ = [
    "Bool", "TRUE", "FALSE", "Sym", "intern", "Cons", "Vec", "Box", "Closure", "Builtin",
    "Pid", "Ref", "F32Array", "UNDEF", "UNCLAIMED", "from_list", "to_pylist", "is_list", "lisp_eq",
    "to_str", "to_repr", "type_name", "truthy", "note_box",
]


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
    """A cons cell. Lists are chains of cells ending in None (nil)."""

    __slots__ = ("head", "tail")

    def __init__(self, head: Any, tail: Any) -> None:
        self.head = head  # the first element
        self.tail = tail  # the rest: another Cons, None, or any value (improper list)

    def __eq__(self, other: object) -> bool:
        return lisp_eq(self, other)

    def __ne__(self, other: object) -> bool:
        return not lisp_eq(self, other)

    __hash__ = None  # type: ignore[assignment]  # structural equality, so not hashable

    def __iter__(self):
        c: Any = self
        while c.__class__ is Cons:
            yield c.head
            c = c.tail

    def __repr__(self) -> str:
        return to_repr(self)

    def __reduce__(self) -> tuple:
        # Flat, so that pickling a million-element list does not recurse a million deep.
        items = []
        c: Any = self
        while c.__class__ is Cons:
            items.append(c.head)
            c = c.tail
        return (_rebuild_list, (items, c))


def _rebuild_list(items: list, last: Any) -> Any:
    out = last
    for x in reversed(items):
        out = Cons(x, out)
    return out


def from_list(items: Any, tail: Any = None) -> Any:
    """Build a Lisp list from a Python sequence (an optional improper tail)."""
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


def is_list(x: Any) -> bool:
    """True for nil and for cons cells (the cheap test that `list?` makes)."""
    return x is None or x.__class__ is Cons


class Vec:
    """An immutable vector; `items` is a tuple."""

    __slots__ = ("items",)

    def __init__(self, items: tuple) -> None:
        self.items = items  # the elements, a tuple

    def __eq__(self, other: object) -> bool:
        return other.__class__ is Vec and lisp_eq(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return to_repr(self)


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


class Pid:
    """A process identifier, unique in its node. `node` is the scheduler that created it.

    `key` is an int naming the process node-wide: the schedulers key their tables by it, because
    a Python-level __hash__ and __eq__ make every lookup on the message path several times
    slower (see docs/performance.md, "Pid keys").
    """

    __slots__ = ("node", "num", "key")

    def __init__(self, node: int, num: int) -> None:
        self.node = node  # index of the scheduler that spawned the process (part of the name only)
        self.num = num  # serial number within that scheduler
        self.key = (num << 12) | node  # node-wide integer name (up to 4096 schedulers)

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

    __hash__ = None  # type: ignore[assignment]

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
            if cx is Bool or y.__class__ is Bool or y.__class__ is Cons or y.__class__ is Vec:
                return False
            try:
                if not (x == y):
                    return False
            except TypeError:
                return False
            break
    return True


def type_name(x: Any) -> str:
    """The Lisp name of a value's type, for error messages."""
    c = x.__class__
    if x is None:
        return "nil"
    return _TYPE_NAMES.get(c, c.__name__)


_TYPE_NAMES = {
    int: "integer", float: "float", str: "string", Bool: "boolean", Sym: "symbol", Cons: "list",
    Vec: "vector", Closure: "function", Builtin: "function", Pid: "pid", Ref: "ref",
    F32Array: "f32 array",
}

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t"}


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
    if c is not Cons and c is not Vec:
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
