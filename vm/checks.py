"""The argument checks every module of builtins shares (vm/builtins.py, vm/gpu.py), and the
short printed form of a value that their error messages show.

Owns: the wording of badarg/badarity for a wrong argument, and `short_repr`, whose work is
bounded whatever the value. Must never: import a module of builtins (they import this one).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from .errors import MAX_INT_DIGITS, LispError, badarg, badarity
from .values import Cons, Map, Sym, Vec, to_pylist, to_repr, type_name

__all__ = ["short_repr", "described", "text_size", "check_number", "check_int", "check_list", "check_str",
           "check_arity", "arity_text", "python_arity", "arity_refused", "call_refused"]


def short_repr(x: Any, limit: int = 60) -> str:
    """A value as printed inside a list, cut to `limit` characters, for messages."""
    if text_size((x,), 4 * limit, True) > 4 * limit:  # too large to print whole: say what it is
        if x.__class__ is int:
            return f"#<integer of {x.bit_length()} bits>"
        return f"#<{type_name(x)} too large to print>"
    s = to_repr(x)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def described(x: Any) -> str:
    """A value for a message, its type then its printed form ("integer 5", "string \"a\""); nil
    is just "nil" (its type's name and its printed form are the same word)."""
    if x is None:
        return "nil"
    return f"{type_name(x)} {short_repr(x)}"


_DIGITS_PER_BIT = 0.30103  # log10(2): an int of b bits has about b * this decimal digits
_MAX_INT_BITS = int(MAX_INT_DIGITS / _DIGITS_PER_BIT)


def text_size(values: Any, cap: int, quoted: bool) -> int:
    """About how many characters printing `values` makes, counting no further than past `cap`
    (so the walk itself is bounded, even on a list that shares sublists many times over).
    `quoted`: whether the strings among `values` themselves print quoted; inside a list or a
    vector they always do."""
    total = 0
    todo = []
    for x in values:  # the values themselves: a string counts its own characters only
        if x.__class__ is str:
            total += len(x) + (2 if quoted else 0)
            if total > cap:
                return total
        else:
            todo.append(x)
    while todo:
        x = todo.pop()
        c = x.__class__
        if c is str:
            total += len(x) + 2
        elif c is int:
            bits = x.bit_length()
            total += int(bits * _DIGITS_PER_BIT) + 2 if bits <= _MAX_INT_BITS else cap + 1
        elif c is Cons:
            while x.__class__ is Cons:
                todo.append(x.head)
                total += 1
                x = x.tail
                if total > cap or len(todo) > cap:
                    return total + len(todo)
            total += 1
            if x is not None:
                todo.append(x)
        elif c is Vec:
            total += 2 + len(x.items)
            if total > cap:
                return total
            todo.extend(x.items)
        elif c is Map:
            total += 2 + 2 * len(x.m)
            if total > cap:
                return total
            for k, v in x.m.items():
                todo.append(k)
                todo.append(v)
        elif c is Sym:
            total += len(x.name)
        else:
            total += 8
        if total > cap:
            return total
    return total



def check_number(name: str, x: Any) -> Any:
    """`x` if it is a number, else badarg naming the builtin `name`."""
    if x.__class__ is int or x.__class__ is float:
        return x
    raise badarg(f"{name}: expected a number, got {described(x)}")


def check_int(name: str, x: Any) -> int:
    """`x` if it is an integer, else badarg naming the builtin `name`."""
    if x.__class__ is int:
        return x
    raise badarg(f"{name}: expected an integer, got {described(x)}")


def check_list(name: str, x: Any) -> list:
    """The elements of the proper list `x` as a Python list, else badarg naming `name`."""
    items = to_pylist(x)
    if items is None:
        raise badarg(f"{name}: expected a list, got {described(x)}")
    return items


def check_str(name: str, x: Any) -> str:
    """`x` if it is a string, else badarg naming the builtin `name`."""
    if x.__class__ is str:
        return x
    raise badarg(f"{name}: expected a string, got {described(x)}")


def arity_text(name: str, n: int, lo: int, hi: int | None) -> str:
    """"NAME takes LO to HI arguments, got N": the wording of every badarity of a builtin."""
    want = f"{lo}" if hi == lo else (f"at least {lo}" if hi is None else f"{lo} to {hi}")
    return f"{name} takes {want} argument{'s' * (want not in ('1', 'at least 1'))}, got {n}"


def check_arity(name: str, args: tuple, lo: int, hi: int | None = None) -> None:
    """badarity unless `args` holds from `lo` to `hi` (None: any number of) arguments."""
    n = len(args)
    if n < lo or (hi is not None and n > hi):
        raise badarity(arity_text(name, n, lo, hi))


@lru_cache(maxsize=1024)  # one signature per builtin: inspect is slow, and only errors ask
def python_arity(fn: Any) -> tuple[int, int | None] | None:
    """(fewest, most) positional arguments the Python callable `fn` takes (most None: any number
    of), read from its declared signature; None when it has no signature to read."""
    import inspect  # only on an error path: inspect costs start-up time

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    lo, hi = 0, 0
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            return lo, None
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            hi += 1
            if p.default is p.empty:
                lo = hi
    return lo, hi


def arity_refused(name: str, fn: Any, n: int) -> LispError | None:
    """badarity if the builtin `name` (Python callable `fn`) cannot take `n` arguments by its
    declared signature, else None."""
    arity = python_arity(fn)
    if arity is not None:
        lo, hi = arity
        if n < lo or (hi is not None and n > hi):
            return badarity(arity_text(name, n, lo, hi))
    return None


def call_refused(name: str, fn: Any, args: Any) -> LispError:
    """The Lisp error for a TypeError out of calling the builtin `name` (Python callable `fn`)
    with `args`: badarity when its signature refuses that many, judged by the signature and never
    by the exception's text; else a badarg naming the builtin and the arguments it refused."""
    n = len(args)
    refused = arity_refused(name, fn, n)
    if refused is not None:
        return refused
    shown = ", ".join(described(x) for x in list(args)[:4]) or "no arguments"
    more = f" and {n - 4} more" if n > 4 else ""
    return badarg(f"{name}: cannot take {shown}{more}")
