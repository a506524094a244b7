"""Builtin functions written in Python (LANGUAGE.md sections 4, 5 and 8).

Owns: the Python builtins except gpu/ (vm/gpu.py), their error kinds, and copying a message
(copy_message). They register in vm/registry.py's table; this module imports vm/gpu.py last, so
importing it gives the whole table. Must never: call back into Lisp (a builtin that takes a
function is written in Lisp, in vm/prelude.lisp, so that it runs on the VM: preemptible, no
Python recursion), wait (waiting is a loop outcome; a builtin that must wait raises
vm.process.Block), or import the loop (vm/interp.py and vm/fast.py import this module).

Process operations reach the scheduler through `ctx.host` (vm.process.Host); `ctx.proc` is the
running process (vm.process.ctx). The loop sets both at the start of every slice.
"""

from __future__ import annotations

import math
import re
import sys
from typing import Any

from . import values as _values
from ._generated_ops import operand_error
from .boxes import for_message
from .checks import (
    arity_refused,
    check_arity,
    check_int,
    check_list,
    check_number,
    check_str,
    described,
    short_repr,
    text_size,
)
from .errors import (
    BADMATCH,
    INT_LIMIT,
    INT_MIN,
    MAX_INT_BITS,
    MAX_INT_DIGITS,
    MAX_LIST,
    MAX_TEXT,
    USER,
    Halt,
    LispError,
    ProcessExit,
    badarg,
    badarity,
    limit_error,
    product_too_large,
    runtime_error,
    system_limit,
)
from .process import ctx
from .registry import BUILTINS, CONSTANTS, builtin, constant
from .values import (
    FALSE,
    TRUE,
    Bool,
    Builtin,
    Closure,
    Cons,
    F32Array,
    Map,
    Pid,
    Ref,
    Sym,
    Vec,
    compare,
    from_list,
    intern,
    join_strs,
    lisp_eq,
    list_append,
    list_length,
    list_nth,
    list_reverse,
    map_items_sorted,
    map_of,
    note_box,
    persistent,
    pvector,
    sort_key,
    to_pylist,
    to_repr,
    to_str,
)

__all__ = ["BUILTINS", "ctx", "short_repr", "copy_message", "INFINITY", "CONSTANTS", "runtime_error_value",
           "note_box", "F32Array"]

INFINITY = intern("infinity")
NUMBER = (int, float)


def _printable(name: str, what: str, values: Any, quoted: bool = False, extra: int = 0) -> None:
    """Refuse with system_limit before building `what` (the text `name` makes of `values`, plus
    `extra` characters of separators) would take too long or too much memory."""
    if extra > MAX_TEXT or text_size(values, MAX_TEXT - extra, quoted) > MAX_TEXT - extra:
        raise system_limit(f"{name}: {what} would be longer than {MAX_TEXT:,} characters "
                           f"(or hold an integer of more than {MAX_INT_DIGITS:,} digits)")


def runtime_error_value(kind: str, message: str) -> Any:
    return runtime_error(intern(kind), message).value


def _b(x: bool) -> Bool:
    return TRUE if x else FALSE


# --- arithmetic -------------------------------------------------------------------------------

@builtin("+")
def b_add(*args: Any) -> Any:
    total: Any = 0
    for x in args:
        total += check_number("+", x)
    return total


@builtin("-")
def b_sub(*args: Any) -> Any:
    check_arity("-", args, 1)
    if len(args) == 1:
        return -check_number("-", args[0])
    out = check_number("-", args[0])
    for x in args[1:]:
        out -= check_number("-", x)
    return out


@builtin("*")
def b_mul(*args: Any) -> Any:
    out: Any = 1
    for x in args:
        x = check_number("*", x)
        # Refused before multiplying when the sizes alone say the product is over the limit.
        if out.__class__ is int and x.__class__ is int and out.bit_length() + x.bit_length() > MAX_INT_BITS + 1:
            raise product_too_large()
        out *= x
        if out.__class__ is int and not INT_MIN < out < INT_LIMIT:
            raise product_too_large()
    return out


@builtin("/")
def b_div(*args: Any) -> Any:
    check_arity("/", args, 1)
    try:
        if len(args) == 1:
            return 1 / check_number("/", args[0])
        out = check_number("/", args[0])
        for x in args[1:]:
            out = out / check_number("/", x)
        return float(out)
    except ZeroDivisionError:
        raise badarg("/: division by zero") from None
    except OverflowError:
        raise badarg("/: result too large for a float") from None


@builtin("div")
def b_idiv(a: Any, b: Any) -> Any:
    try:
        return check_number("div", a) // check_number("div", b)
    except ZeroDivisionError:
        raise badarg("div: division by zero") from None


@builtin("mod")
def b_mod(a: Any, b: Any) -> Any:
    try:
        return check_number("mod", a) % check_number("mod", b)
    except ZeroDivisionError:
        raise badarg("mod: division by zero") from None


@builtin("abs")
def b_abs(x: Any) -> Any:
    return abs(check_number("abs", x))


def _ordered(name: str, x: Any) -> Any:
    if x.__class__ is int or x.__class__ is float or x.__class__ is str:
        return x
    raise badarg(f"{name}: expected a number or a string, got {described(x)}")


def _compare(name: str, args: tuple, test: Any) -> Bool:
    """A chained comparison (LANGUAGE.md: two or more arguments): every neighbouring pair is
    checked before any is compared, so `(> 1 2 "x")` is refused like `(> 2 "x")` rather than
    answered false, and a refused pair is named as the two-operand form names it."""
    check_arity(name, args, 2)
    for i in range(len(args) - 1):
        a, b = args[i], args[i + 1]
        ka, kb = a.__class__, b.__class__
        if (ka is str) != (kb is str) or not (ka is int or ka is float or ka is str) \
                or not (kb is int or kb is float or kb is str):
            raise operand_error(name, (a, b))
    for i in range(len(args) - 1):
        if not test(args[i], args[i + 1]):
            return FALSE
    return TRUE


@builtin("min")
def b_min(*args: Any) -> Any:
    check_arity("min", args, 1)
    best = _ordered("min", args[0])
    for x in args[1:]:
        if _compare("min", (best, x), lambda a, b: b < a) is TRUE:
            best = x
    return best


@builtin("max")
def b_max(*args: Any) -> Any:
    check_arity("max", args, 1)
    best = _ordered("max", args[0])
    for x in args[1:]:
        if _compare("max", (best, x), lambda a, b: b > a) is TRUE:
            best = x
    return best


builtin("<")(lambda *args: _compare("<", args, lambda a, b: a < b))
builtin(">")(lambda *args: _compare(">", args, lambda a, b: a > b))
builtin("<=")(lambda *args: _compare("<=", args, lambda a, b: a <= b))
builtin(">=")(lambda *args: _compare(">=", args, lambda a, b: a >= b))


def _eq(*args: Any) -> Bool:
    if len(args) == 2:  # the usual case, without the generator; symbols are interned
        a, b = args
        if a is b:
            return TRUE
        if a.__class__ is Sym or b.__class__ is Sym:
            return FALSE
        return TRUE if lisp_eq(a, b) else FALSE
    check_arity("==", args, 1)
    return _b(all(lisp_eq(args[i], args[i + 1]) for i in range(len(args) - 1)))


builtin("==")(_eq)
builtin("=")(_eq)


@builtin("!=")
def b_ne(*args: Any) -> Bool:
    check_arity("!=", args, 2)
    return FALSE if _eq(*args) is TRUE else TRUE


@builtin("not")
def b_not(x: Any) -> Bool:
    return TRUE if x is FALSE or x is None else FALSE


# --- math ---------------------------------------------------------------------------------

def _math1(name: str, fn: Any) -> None:
    def f(x: Any) -> Any:
        try:
            return fn(check_number(name, x))
        except (ValueError, OverflowError) as e:
            raise badarg(f"{name}: {short_repr(x)} is out of the domain ({e})") from None

    builtin(name)(f)


for _n, _f in (("sin", math.sin), ("cos", math.cos), ("tan", math.tan), ("sqrt", math.sqrt),
               ("exp", math.exp), ("floor", math.floor), ("ceil", math.ceil)):
    _math1("math/" + _n, _f)


@builtin("math/log")
def b_log(x: Any, base: Any = None) -> float:
    try:
        if base is None:
            return math.log(check_number("math/log", x))
        return math.log(check_number("math/log", x), check_number("math/log", base))
    except (ValueError, ZeroDivisionError):
        raise badarg(f"math/log: {short_repr(x)} is out of the domain") from None


@builtin("math/pow")
def b_pow(x: Any, y: Any) -> float:
    try:
        return math.pow(check_number("math/pow", x), check_number("math/pow", y))
    except (ValueError, OverflowError) as e:
        raise badarg(f"math/pow: {short_repr(x)} ** {short_repr(y)} is out of range ({e})") from None


@builtin("math/round")
def b_round(x: Any) -> int:
    """Half away from zero, as Erlang's round/1 and C's round() (Python's round() is banker's)."""
    x = check_number("math/round", x)
    if x.__class__ is int:
        return x
    try:
        r = math.floor(abs(x) + 0.5)
    except (ValueError, OverflowError):
        raise badarg(f"math/round: cannot round {short_repr(x)}") from None
    return int(r) if x >= 0 else -int(r)


constant("math/pi", math.pi)


# --- lists --------------------------------------------------------------------------------

@builtin("list")
def b_list(*args: Any) -> Any:
    return from_list(args)


@builtin("cons")
def b_cons(h: Any, t: Any) -> Cons:
    return Cons(h, t)


@builtin("head")
def b_head(x: Any) -> Any:
    if x.__class__ is not Cons:
        raise badarg(f"head: expected a non-empty list, got {short_repr(x)}")
    return x.head


@builtin("tail")
def b_tail(x: Any) -> Any:
    if x.__class__ is not Cons:
        raise badarg(f"tail: expected a non-empty list, got {short_repr(x)}")
    return x.tail


@builtin("empty?")
def b_empty(x: Any) -> Bool:
    if x is None:
        return TRUE
    c = x.__class__
    if c is Cons:
        return FALSE
    if c is Vec:
        return _b(not x.items)
    if c is str:
        return _b(not x)
    if c is Map:
        return _b(not x.m)
    raise badarg(f"empty?: expected a list, vector, string or map, got {described(x)}")


@builtin("length")
def b_length(x: Any) -> int:
    c = x.__class__
    if c is Vec:
        return len(x.items)
    if c is str:
        return len(x)
    n = list_length(x)
    if n is None:
        while x.__class__ is Cons:
            x = x.tail
        raise badarg(f"length: expected a list, vector or string, got {described(x)}")
    return n


@builtin("nth")
def b_nth(xs: Any, i: Any) -> Any:
    i = check_int("nth", i)
    if xs.__class__ is Vec:
        if 0 <= i < len(xs.items):
            return xs.items[i]
        raise badarg(f"nth: index {i} out of range for a vector of {len(xs.items)}")
    if i >= 0:
        try:
            return list_nth(xs, i)
        except ValueError:
            raise badarg(f"nth: expected a list, got {described(xs)}") from None
        except (IndexError, OverflowError):  # past the end (an index past a machine word too)
            if list_length(xs) is None:
                raise badarg(f"nth: expected a list, got {described(xs)}") from None
    raise badarg(f"nth: index {i} out of range for a list of {b_length(xs)}")


@builtin("append")
def b_append(*args: Any) -> Any:
    try:
        return list_append(*args)
    except ValueError as e:  # argument e.args[0] is not a proper list: check_list says so
        check_list("append", args[e.args[0]])
        raise


@builtin("reverse")
def b_reverse(x: Any) -> Any:
    try:
        return list_reverse(x)
    except ValueError:
        raise badarg(f"reverse: expected a list, got {described(x)}") from None


@builtin("list/range")
def b_range(*args: Any) -> Any:
    check_arity("list/range", args, 1, 3)
    ints = [check_int("list/range", a) for a in args]
    if len(ints) == 3 and ints[2] == 0:
        raise badarg("list/range: step must not be 0")
    r = range(*ints)
    try:
        n = len(r)
    except OverflowError:  # more elements than a machine word counts
        n = MAX_LIST + 1
    if n > MAX_LIST:  # one call, one reduction: its work is bounded instead
        raise system_limit(f"list/range: more than the limit of {MAX_LIST} elements")
    return from_list(r)


def _py_native_order(items: list) -> bool:
    """Whether Python's own order of `items` is the term order (all strings, or all numbers
    without NaN): sorting them then needs no Python-level compare."""
    if not items:
        return True
    c0 = items[0].__class__
    if c0 is str:
        return all(x.__class__ is str for x in items)
    if c0 is int or c0 is float:
        return all(x.__class__ is int or (x.__class__ is float and x == x) for x in items)
    return False


# the same test in one C loop where the extension is built (tests compare the two)
_native_order = _py_native_order if _values._speedups is None else _values._speedups.native_order


@builtin("list/sort")
def b_sort(xs: Any) -> Any:
    """Any values, by the term order of LANGUAGE.md section 9; stable."""
    items = check_list("list/sort", xs)  # a new list, ours to sort in place
    if _native_order(items):
        items.sort()
    else:
        items.sort(key=sort_key)
    return from_list(items)


@builtin("sys/sort-keyed")
def b_sort_keyed(pairs: Any) -> Any:
    """The tails of a list of (key . value) pairs, ordered by their keys (stable): the Python
    half of list/sort-by, whose Lisp half (vm/prelude.lisp) calls the key function."""
    items = check_list("sys/sort-keyed", pairs)
    for p in items:
        if p.__class__ is not Cons:
            raise badarg(f"sys/sort-keyed: expected (key . value) pairs, got {short_repr(p)}")
    keys = [p.head for p in items]
    if _native_order(keys):
        order = sorted(range(len(items)), key=keys.__getitem__)
    else:
        order = sorted(range(len(items)), key=lambda i: sort_key(keys[i]))
    return from_list([items[i].tail for i in order])


@builtin("compare")
def b_compare(a: Any, b: Any) -> int:
    """-1, 0 or 1 by the total term order (LANGUAGE.md section 9)."""
    return compare(a, b)


@builtin("list/contains?")
def b_contains(x: Any, xs: Any) -> Bool:
    return _b(any(lisp_eq(x, e) for e in check_list("list/contains?", xs)))


# Builtins that list/map, list/filter and list/reduce may call in one Python loop (vm/prelude.lisp
# asks sys/native-fn? first): they compute a value from their arguments and nothing else, so
# calling them from a builtin cannot block the process, read its context or call back into Lisp.
_NATIVE_NAMES = (
    "+ - * / div mod abs min max == = != < > <= >= not compare quot rem float int "
    "math/sin math/cos math/tan math/sqrt math/exp math/log math/pow math/floor math/ceil math/round "
    "bit/and bit/or bit/xor bit/not bit/shl bit/shr "
    "list cons head tail empty? length nth reverse append list/range list/sort list/contains? "
    "vector vec/get vec/len vec/to-list list/to-vec vec/set vec/push vec/slice "
    "map/get map/put map/remove map/has? map/size map/keys map/vals map/to-list map/merge "
    "str str/length str/split str/join repr symbol parse-int parse-float str/sub str/upper str/lower "
    "str/trim str/find str/replace str/starts-with? str/ends-with? str/chars "
    "int? float? number? string? symbol? list? vector? fn? pid? nil? bool? map?"
).split()
_native: set[Any] = set()  # the Builtin objects of _NATIVE_NAMES, filled on first use
# the same names for the fast tier, which applies a Lisp function that calls only these in one
# Python loop too (vm/fast.py, FastTier.fused)
PURE_BUILTINS = frozenset(_NATIVE_NAMES)


def _native_fn(f: Any) -> Any:
    """The Python callable of `f` if it is one of the builtins of _NATIVE_NAMES, else None."""
    if not _native:
        _native.update(BUILTINS[n] for n in _NATIVE_NAMES if n in BUILTINS)
    return f.fn if f in _native else None


@builtin("sys/native-fn?")
def b_native_fn(f: Any) -> Bool:
    """Whether list/map, list/filter and list/reduce may apply `f` in one builtin call."""
    return _b(f.__class__ is Builtin and _native_fn(f) is not None)


@builtin("sys/map-native")
def b_map_native(f: Any, xs: Any) -> Any:
    """list/map of a builtin that sys/native-fn? accepts: one Python loop."""
    fn = _native_fn(f)
    if fn is None:
        raise badarg(f"sys/map-native: not a plain builtin: {short_repr(f)}")
    if fn is _C_STR:  # one C loop; None: not a proper list (check_list below says so)
        out = _values._speedups.map_str(xs)
        if out is not None:
            return out
    items = check_list("list/map", xs)
    if fn is b_str:  # strings and machine-size numbers without a call each (what b_str gives them)
        # a machine-size int tested first (the usual element), its lower bound a constant
        return from_list([repr(x) if (c := x.__class__) is int and _NEG_SMALL_INT < x < _SMALL_INT else
                          x if c is str and len(x) <= MAX_TEXT else repr(x) if c is float else b_str(x)
                          for x in items])
    try:
        return from_list([fn(x) for x in items])
    except TypeError as e:  # f takes other than 1 argument: say so, by its signature
        raise arity_refused(f.name, fn, 1) or e from None


@builtin("sys/filter-native")
def b_filter_native(f: Any, xs: Any) -> Any:
    """list/filter of a builtin that sys/native-fn? accepts: Lisp truth is anything but false
    and nil."""
    fn = _native_fn(f)
    if fn is None:
        raise badarg(f"sys/filter-native: not a plain builtin: {short_repr(f)}")
    out = []
    try:
        for x in check_list("list/filter", xs):
            r = fn(x)
            if r is not None and r is not FALSE:
                out.append(x)
    except TypeError as e:  # f takes other than 1 argument: say so, by its signature
        raise arity_refused(f.name, fn, 1) or e from None
    return from_list(out)


@builtin("sys/reduce-native")
def b_reduce_native(f: Any, acc: Any, xs: Any) -> Any:
    """list/reduce of a builtin that sys/native-fn? accepts; `+` over numbers is Python's sum."""
    fn = _native_fn(f)
    if fn is None:
        raise badarg(f"sys/reduce-native: not a plain builtin: {short_repr(f)}")
    items = check_list("list/reduce", xs)
    if fn is b_add and acc.__class__ in _SUMMABLE and _SUMMABLE.issuperset(map(type, items)):  # (a C loop)
        return sum(items, acc)
    try:
        for x in items:
            acc = fn(acc, x)
    except TypeError as e:  # f takes other than 2 arguments: say so, by its signature
        raise arity_refused(f.name, fn, 2) or e from None
    return acc


# Python's sum adds floats with compensated summation from 3.12 on, which a left fold of `+` does
# not: floats are summed by sum() only where it is that fold (3.11)
_SUMMABLE = frozenset((int, float)) if sys.version_info < (3, 12) else frozenset((int,))


# --- vectors ------------------------------------------------------------------------------

@builtin("vector")
def b_vector(*args: Any) -> Vec:
    return Vec(args)


def _vec(name: str, v: Any) -> Vec:
    if v.__class__ is Vec:
        return v
    raise badarg(f"{name}: expected a vector, got {described(v)}")


@builtin("vec/get")
def b_vec_get(v: Any, i: Any) -> Any:
    if v.__class__ is Vec and i.__class__ is int and 0 <= i < len(v.items):  # the common case, inline
        return v.items[i]
    items = _vec("vec/get", v).items
    i = check_int("vec/get", i)
    raise badarg(f"vec/get: index {i} out of range for a vector of {len(items)}")


@builtin("vec/len")
def b_vec_len(v: Any) -> int:
    return len(_vec("vec/len", v).items)


@builtin("vec/to-list")
def b_vec_to_list(v: Any) -> Any:
    return from_list(_vec("vec/to-list", v).items)


@builtin("list/to-vec")
def b_list_to_vec(xs: Any) -> Vec:
    return Vec(tuple(check_list("list/to-vec", xs)))


def _index(name: str, i: Any, n: int, end: bool = False) -> int:
    """`i` checked as an index into n elements (0 <= i < n; up to n itself when `end`)."""
    i = check_int(name, i)
    if 0 <= i < n or (end and i == n):
        return i
    raise badarg(f"{name}: index {i} out of range for a vector of {n}")


@builtin("vec/set")
def b_vec_set(v: Any, i: Any, x: Any) -> Vec:
    """A new vector with element i replaced by x: O(log n), sharing the rest."""
    if v.__class__ is Vec and i.__class__ is int and 0 <= i < len(v.items):  # the common case, inline
        return Vec(persistent(v).set(i, x))
    items = _vec("vec/set", v).items
    return Vec(persistent(v).set(_index("vec/set", i, len(items)), x))


@builtin("vec/push")
def b_vec_push(v: Any, x: Any) -> Vec:
    """A new vector with x added at the end: O(log n) (amortised O(1)), sharing the rest."""
    items = _vec("vec/push", v).items
    if len(items) >= MAX_LIST:
        raise system_limit(f"vec/push: more than the limit of {MAX_LIST} elements")
    return Vec(persistent(v).append(x))


@builtin("vec/slice")
def b_vec_slice(v: Any, start: Any, end: Any = None) -> Vec:
    """Elements start (inclusive) to end (exclusive; the length when left out)."""
    items = _vec("vec/slice", v).items
    n = len(items)
    a = _index("vec/slice", start, n, True)
    b = n if end is None else _index("vec/slice", end, n, True)
    if b < a:
        raise badarg(f"vec/slice: end {b} is before start {a}")
    return Vec(items[a:b])


@builtin("vec/make")
def b_vec_make(n: Any, x: Any) -> Vec:
    """A vector of n elements, each x."""
    n = check_int("vec/make", n)
    if n < 0:
        raise badarg(f"vec/make: the length must be >= 0, got {n}")
    if n > MAX_LIST:
        raise system_limit(f"vec/make: more than the limit of {MAX_LIST} elements")
    return Vec(pvector([x] * n))  # made to be filled in: persistent from the start


# --- maps (LANGUAGE.md section 9) --------------------------------------------------------------

def _map(name: str, m: Any) -> Map:
    if m.__class__ is Map:
        return m
    raise badarg(f"{name}: expected a map, got {described(m)}")


@builtin("sys/map-of")
def b_map_of(*kvs: Any) -> Map:
    """The map of a `{k v ...}` literal: keys and values alternating; a later key wins."""
    if len(kvs) & 1:
        raise badarg(f"sys/map-of: expected keys and values in pairs, got {len(kvs)} values")
    return map_of(*kvs)


@builtin("map/get")
def b_map_get(m: Any, k: Any, default: Any = None) -> Any:
    if m.__class__ is not Map:
        _map("map/get", m)
    return m.m.get(k, default)


@builtin("map/put")
def b_map_put(m: Any, k: Any, v: Any) -> Map:
    if m.__class__ is not Map:
        _map("map/put", m)
    return Map(m.m.set(k, v))


@builtin("map/remove")
def b_map_remove(m: Any, k: Any) -> Map:
    mm = _map("map/remove", m).m
    if k not in mm:
        return m
    return Map(mm.delete(k))


@builtin("map/has?")
def b_map_has(m: Any, k: Any) -> Bool:
    return TRUE if k in _map("map/has?", m).m else FALSE


@builtin("map/size")
def b_map_size(m: Any) -> int:
    return len(_map("map/size", m).m)


@builtin("map?")
def b_is_map(x: Any) -> Bool:
    return TRUE if x.__class__ is Map else FALSE


@builtin("map/keys")
def b_map_keys(m: Any) -> Any:
    """The keys in key order."""
    return from_list([k for k, _ in map_items_sorted(_map("map/keys", m))])


@builtin("map/vals")
def b_map_vals(m: Any) -> Any:
    """The values in the order of their keys."""
    return from_list([v for _, v in map_items_sorted(_map("map/vals", m))])


@builtin("map/to-list")
def b_map_to_list(m: Any) -> Any:
    """(k v) pairs in key order."""
    return from_list([Cons(k, Cons(v, None)) for k, v in map_items_sorted(_map("map/to-list", m))])


@builtin("map/from-list")
def b_map_from_list(pairs: Any) -> Map:
    """From a list of (k v) lists; a later key wins."""
    items = check_list("map/from-list", pairs)
    kvs = []
    for p in items:
        if p.__class__ is not Cons or p.tail.__class__ is not Cons or p.tail.tail is not None:
            raise badarg(f"map/from-list: expected a list of (key value) lists, got {short_repr(p)}")
        kvs.append(p.head)
        kvs.append(p.tail.head)
    return map_of(*kvs)


@builtin("map/merge")
def b_map_merge(m1: Any, m2: Any) -> Map:
    """Entries of both; m2's value wins for a key in both. The larger map is the one updated."""
    a, b = _map("map/merge", m1).m, _map("map/merge", m2).m
    if len(b) >= len(a):
        if not a:
            return m2
        with b.mutate() as mm:
            for k, v in a.items():
                if k not in mm:
                    mm[k] = v
            return Map(mm.finish())
    if not b:
        return m1
    return Map(a.update(b))


# --- strings ------------------------------------------------------------------------------

_SMALL_INT = 1 << 64  # an int below this prints in at most 20 digits and a sign
_NEG_SMALL_INT = -_SMALL_INT


@builtin("str")
def b_str(*args: Any) -> str:
    # strings, floats and machine-size ints (what str is mostly given) are measured here in one
    # pass; anything else takes the careful walk of _printable
    size = 0
    for x in args:
        c = x.__class__
        if c is str:
            size += len(x)
        elif c is float or (c is int and -_SMALL_INT < x < _SMALL_INT):
            size += 32
        else:
            size = -1
            break
    if 0 <= size <= MAX_TEXT:
        return "".join([x if x.__class__ is str else repr(x) for x in args])
    _printable("str", "the string", args)
    return "".join(to_str(x) for x in args)


@builtin("str/length")
def b_str_length(s: Any) -> int:
    return len(check_str("str/length", s))


@builtin("str/split")
def b_str_split(s: Any, sep: Any) -> Any:
    s, sep = check_str("str/split", s), check_str("str/split", sep)
    return from_list(list(s) if sep == "" else s.split(sep))


@builtin("str/join")
def b_str_join(sep: Any, xs: Any) -> str:
    sep = check_str("str/join", sep)
    joined = join_strs(sep, xs, MAX_TEXT)  # the usual case (strings only, in bounds) in one pass
    if joined is not None:
        return joined
    items = check_list("str/join", xs)  # (its error for a non-list), then what to convert or refuse
    _printable("str/join", "the joined string", items, extra=len(sep) * max(0, len(items) - 1))
    return sep.join(to_str(x) for x in items)


# With the C extension, str, reverse, append, nth, length and str/split are its functions: each decides
# the usual case (strings and machine-size numbers, proper lists) without a Python frame and hands
# every other call to the definition above, so results and errors stay those of the pure path.
_C_STR: Any = None  # the C str (b_map_native maps it, as b_str, in one C loop), or None
if _values._speedups is not None:
    _values._speedups._register_builtins(b_str, b_reverse, b_append, b_nth, b_length, MAX_TEXT, b_str_split)
    _C_STR = _values._speedups.str
    for _name, _fn in (("str", _C_STR), ("reverse", _values._speedups.b_reverse),
                       ("append", _values._speedups.b_append), ("nth", _values._speedups.b_nth),
                       ("length", _values._speedups.b_length), ("str/split", _values._speedups.b_str_split)):
        BUILTINS[_name].fn = BUILTINS[_name].fast = _fn


@builtin("repr")
def b_repr(x: Any) -> str:
    _printable("repr", "the representation", (x,), True)
    return to_repr(x)


@builtin("symbol")
def b_symbol(s: Any) -> Sym:
    s = check_str("symbol", s)
    if not s:
        raise badarg("symbol: the name must not be empty")
    return intern(s)


@builtin("parse-int")
def b_parse_int(s: Any, base: Any = 10) -> int:
    s = check_str("parse-int", s)
    base = check_int("parse-int", base)
    try:
        n = int(s.strip(), base)
    except ValueError as e:
        if limit_error(e) is not None:
            raise system_limit(f"parse-int: more than {MAX_INT_DIGITS} digits") from None
        raise badarg(f"parse-int: not an integer: {short_repr(s)}") from None
    # A power-of-two base has no digit limit (conversion is linear): bound the result as `*`
    # does, or the next product of two such numbers would block the scheduler for seconds.
    if not INT_MIN < n < INT_LIMIT:
        raise system_limit(f"parse-int: the integer would have more than {MAX_INT_BITS:,} bits")
    return n


# --- numbers and strings of LANGUAGE.md section 9 ----------------------------------------------

@builtin("float")
def b_float(x: Any) -> float:
    x = check_number("float", x)
    try:
        return float(x)
    except OverflowError:
        raise badarg("float: result too large for a float") from None


@builtin("int")
def b_int(x: Any) -> int:
    """Truncates toward zero."""
    x = check_number("int", x)
    if x.__class__ is float and not math.isfinite(x):
        raise badarg(f"int: not a finite number: {short_repr(x)}")
    return int(x)


def _quot(name: str, a: Any, b: Any) -> int:
    a, b = check_int(name, a), check_int(name, b)
    if b == 0:
        raise badarg(f"{name}: division by zero")
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


@builtin("quot")
def b_quot(a: Any, b: Any) -> int:
    """Integer division truncated toward zero (Erlang's div)."""
    return _quot("quot", a, b)


@builtin("rem")
def b_rem(a: Any, b: Any) -> int:
    """The remainder of quot: the sign of the dividend (Erlang's rem)."""
    return a - b * _quot("rem", a, b)


_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")  # no inf, nan, 1_0


@builtin("parse-float")
def b_parse_float(s: Any) -> float:
    s = check_str("parse-float", s)
    t = s.strip()
    if len(t) > MAX_INT_DIGITS or not _FLOAT_TEXT.fullmatch(t):
        raise badarg(f"parse-float: not a number: {short_repr(s)}")
    x = float(t)
    if not math.isfinite(x):
        raise badarg(f"parse-float: too large for a float: {short_repr(s)}")
    return x


def _shift(name: str, a: Any, n: Any) -> tuple[int, int]:
    a, n = check_int(name, a), check_int(name, n)
    if n < 0:
        raise badarg(f"{name}: a negative shift: {n}")
    return a, n


@builtin("bit/shl")
def b_bit_shl(a: Any, n: Any) -> int:
    a, n = _shift("bit/shl", a, n)
    if a and a.bit_length() + n > MAX_INT_BITS:
        raise system_limit(f"bit/shl: the integer would have more than {MAX_INT_BITS:,} bits")
    return a << n


@builtin("bit/shr")
def b_bit_shr(a: Any, n: Any) -> int:
    """Arithmetic shift: a negative integer stays negative (floor division by 2**n)."""
    a, n = _shift("bit/shr", a, n)
    return a >> n if n <= a.bit_length() else (-1 if a < 0 else 0)


@builtin("str/sub")
def b_str_sub(*args: Any) -> str:
    check_arity("str/sub", args, 2, 3)
    s = check_str("str/sub", args[0])
    start = check_int("str/sub", args[1])
    end = check_int("str/sub", args[2]) if len(args) == 3 else len(s)
    if not 0 <= start <= end <= len(s):
        raise badarg(f"str/sub: {start}..{end} is not within a string of length {len(s)}")
    return s[start:end]


builtin("str/upper")(lambda s: check_str("str/upper", s).upper())
builtin("str/lower")(lambda s: check_str("str/lower", s).lower())
builtin("str/trim")(lambda s: check_str("str/trim", s).strip())
builtin("str/starts-with?")(lambda s, part: _b(check_str("str/starts-with?", s).startswith(
    check_str("str/starts-with?", part))))
builtin("str/ends-with?")(lambda s, part: _b(check_str("str/ends-with?", s).endswith(
    check_str("str/ends-with?", part))))


@builtin("str/find")
def b_str_find(s: Any, part: Any) -> int | None:
    """The index of the first `part` in `s`, or nil."""
    i = check_str("str/find", s).find(check_str("str/find", part))
    return None if i < 0 else i


@builtin("str/replace")
def b_str_replace(s: Any, old: Any, new: Any) -> str:
    """Every `old` in `s` replaced by `new`."""
    s, old, new = check_str("str/replace", s), check_str("str/replace", old), check_str("str/replace", new)
    if not old:
        raise badarg("str/replace: the part to replace is empty")
    if len(new) > len(old) and len(s) + s.count(old) * (len(new) - len(old)) > MAX_TEXT:
        raise system_limit(f"str/replace: the string would be longer than {MAX_TEXT:,} characters")
    return s.replace(old, new)


@builtin("str/chars")
def b_str_chars(s: Any) -> Any:
    """A list of one-character strings."""
    s = check_str("str/chars", s)
    if len(s) > MAX_LIST:
        raise system_limit(f"str/chars: the list would have more than {MAX_LIST:,} elements")
    return from_list(list(s))


_FORMAT_BRACE = re.compile(r"\{\}|\{\{|\}\}|[{}]")


@builtin("str/format")
def b_str_format(fmt: Any, *args: Any) -> str:
    """Each `{}` in `fmt` replaced by the next argument's print form; `{{` and `}}` are braces.
    The number of `{}` and of arguments must agree."""
    fmt = check_str("str/format", fmt)
    parts: list[str | None] = []  # literal text, and None for each `{}`
    last = 0
    for m in _FORMAT_BRACE.finditer(fmt):
        brace = m.group()
        parts.append(fmt[last:m.start()])
        if brace == "{}":
            parts.append(None)
        elif len(brace) == 2:
            parts.append(brace[0])
        else:
            raise badarg(f"str/format: a lone {brace!r} at {m.start()} (write {brace * 2} for the brace itself)")
        last = m.end()
    parts.append(fmt[last:])
    holes = parts.count(None)
    if holes != len(args):
        raise badarg(f"str/format: {holes} {{}} in the format, {len(args)} argument{'s' * (len(args) != 1)}")
    _printable("str/format", "the string", args, extra=len(fmt))
    it = iter(args)
    return "".join(to_str(next(it)) if p is None else p for p in parts)


# --- predicates ---------------------------------------------------------------------------
# (each a single expression: a call of _b per test was a measurable share of list-walking code)

builtin("int?")(lambda x: TRUE if x.__class__ is int else FALSE)
builtin("float?")(lambda x: TRUE if x.__class__ is float else FALSE)
builtin("number?")(lambda x: TRUE if x.__class__ is int or x.__class__ is float else FALSE)
builtin("string?")(lambda x: TRUE if x.__class__ is str else FALSE)
builtin("symbol?")(lambda x: TRUE if x.__class__ is Sym else FALSE)
builtin("list?")(lambda x: TRUE if x is None or x.__class__ is Cons else FALSE)
builtin("vector?")(lambda x: TRUE if x.__class__ is Vec else FALSE)
builtin("fn?")(lambda x: TRUE if x.__class__ is Closure or x.__class__ is Builtin else FALSE)
builtin("pid?")(lambda x: TRUE if x.__class__ is Pid else FALSE)
builtin("ref?")(lambda x: TRUE if x.__class__ is Ref else FALSE)
builtin("nil?")(lambda x: TRUE if x is None else FALSE)
builtin("bool?")(lambda x: TRUE if x is TRUE or x is FALSE else FALSE)


# --- output, errors, time, program ----------------------------------------------------------

@builtin("print")
def b_print(*args: Any) -> None:
    _printable("print", "the printed line", args, extra=max(0, len(args) - 1))
    ctx.host.output(" ".join(to_str(x) for x in args))


@builtin("throw")
def b_throw(value: Any) -> None:
    raise LispError(value)


@builtin("error")
def b_error(message: Any) -> None:
    raise runtime_error(USER, message if message.__class__ is str else to_str(message))


@builtin("sys/badmatch")
def b_badmatch(value: Any) -> None:
    raise runtime_error(BADMATCH, f"no clause matches {short_repr(value)}")


@builtin("sys/sleep-ms")
def b_sleep_ms(ms: Any) -> Any:
    """The argument of `timer/sleep`, checked here so that its error names `timer/sleep` (the
    wait itself is a `receive` with only an `after`, whose own check would name `receive`)."""
    if ms is None or ms is INFINITY or ((ms.__class__ is int or ms.__class__ is float) and ms >= 0):
        return ms
    raise badarg(f"timer/sleep: expected a non-negative number of milliseconds, 'infinity or nil, "
                 f"got {short_repr(ms)}")


@builtin("sys/spread")
def b_spread(args: Any) -> Any:
    """(a b ... lst) -> (a b ... elements of lst): the arguments of `apply`."""
    items = to_pylist(args)
    if not items:
        raise badarity("apply takes at least 2 arguments")
    check_list("apply", items[-1])
    return from_list(items[:-1], items[-1])


@builtin("now-ms")
def b_now_ms() -> float:
    return ctx.host.now_ms()


@builtin("sys/args")
def b_args() -> Any:
    return from_list(ctx.host.args())


@builtin("halt")
def b_halt(code: Any = 0) -> None:
    code = check_int("halt", code)
    if not 0 <= code <= 255:
        raise badarg(f"halt: exit status must be 0..255, got {code}")
    raise Halt(code)


# --- processes ----------------------------------------------------------------------------

def copy_message(msg: Any) -> Any:
    """A message as the receiver gets it. Values are immutable except closures that captured an
    assigned variable (a Box): those are copied, with their boxes (the sender's current values),
    so processes share nothing (vm/boxes.py). Until any Box was ever made (the usual case) this
    costs one test."""
    if not _values.BOXES_MADE or msg.__class__ in (int, float, str, Sym, Pid, Ref, Bool) or msg is None:
        return msg
    return for_message(ctx.proc, msg)


def _fn(name: str, f: Any) -> Any:
    if f.__class__ is Closure or f.__class__ is Builtin:
        return f
    raise badarg(f"{name}: expected a function, got {described(f)}")


@builtin("spawn")
def b_spawn(f: Any, *args: Any) -> Pid:
    if not _values.BOXES_MADE and (f.__class__ is Closure or f.__class__ is Builtin):
        # nothing to copy (copy_message's first test): no comprehension, whose frame is most of
        # this call's cost when a process is spawned per message (fork-join, fib actors)
        return ctx.host.spawn(ctx.proc, f, list(args), False, None)
    return ctx.host.spawn(ctx.proc, copy_message(_fn("spawn", f)), [copy_message(a) for a in args], False, None)


@builtin("spawn-link")
def b_spawn_link(f: Any, *args: Any) -> Pid:
    return ctx.host.spawn(ctx.proc, copy_message(_fn("spawn-link", f)), [copy_message(a) for a in args], True, None)


@builtin("spawn-on")
def b_spawn_on(k: Any, f: Any, *args: Any) -> Pid:
    k = check_int("spawn-on", k)
    if k < 0:
        raise badarg(f"spawn-on: scheduler index must be >= 0, got {k}")
    return ctx.host.spawn(ctx.proc, copy_message(_fn("spawn-on", f)), [copy_message(a) for a in args], False, k)


@builtin("self")
def b_self() -> Pid:
    return ctx.proc.pid


def _dest(name: str, d: Any) -> Any:
    if d.__class__ is Pid or d.__class__ is Sym:
        return d
    raise badarg(f"{name}: expected a pid or a registered name, got {described(d)}")


@builtin("send")
def b_send(dest: Any, msg: Any) -> Any:
    if dest.__class__ is not Pid:
        _dest("send", dest)
    ctx.host.send(ctx.proc, dest, copy_message(msg) if _values.BOXES_MADE else msg)
    return msg


def _pid(name: str, p: Any) -> Pid:
    if p.__class__ is Pid:
        return p
    raise badarg(f"{name}: expected a pid, got {described(p)}")


@builtin("register")
def b_register(name: Any, pid: Any) -> Any:
    if name.__class__ is not Sym:
        raise badarg(f"register: the name must be a symbol, got {short_repr(name)}")
    ctx.host.register(ctx.proc, name, _pid("register", pid))
    return TRUE


@builtin("whereis")
def b_whereis(name: Any) -> Any:
    if name.__class__ is not Sym:
        raise badarg(f"whereis: the name must be a symbol, got {short_repr(name)}")
    return ctx.host.whereis(name)


@builtin("link")
def b_link(pid: Any) -> Any:
    ctx.host.link(ctx.proc, _pid("link", pid))
    return TRUE


@builtin("unlink")
def b_unlink(pid: Any) -> Any:
    ctx.host.unlink(ctx.proc, _pid("unlink", pid))
    return TRUE


@builtin("monitor")
def b_monitor(pid: Any) -> Ref:
    return ctx.host.monitor(ctx.proc, _pid("monitor", pid))


@builtin("demonitor")
def b_demonitor(ref: Any) -> Any:
    if ref.__class__ is not Ref:
        raise badarg(f"demonitor: expected a ref, got {short_repr(ref)}")
    ctx.host.demonitor(ctx.proc, ref)
    return TRUE


@builtin("trap-exit")
def b_trap_exit(flag: Any) -> Bool:
    old = ctx.proc.trap_exit
    ctx.proc.trap_exit = flag is not FALSE and flag is not None
    return _b(old)


@builtin("exit")
def b_exit(*args: Any) -> Any:
    check_arity("exit", args, 1, 2)
    if len(args) == 1:
        raise ProcessExit(copy_message(args[0]))
    ctx.host.exit_signal(ctx.proc, _pid("exit", args[0]), copy_message(args[1]))
    return TRUE


@builtin("make-ref")
def b_make_ref() -> Ref:
    return ctx.host.make_ref()


@builtin("timer/send-after")
def b_send_after(ms: Any, dest: Any, msg: Any) -> Any:
    ms = check_number("timer/send-after", ms)
    if ms < 0:
        raise badarg(f"timer/send-after: delay must be >= 0, got {ms}")
    return ctx.host.send_after(ctx.proc, ms, _dest("timer/send-after", dest), copy_message(msg))


def _spawn_monitored(name: str, f: Any, args: tuple, link: bool) -> Any:
    """Spawn and monitor in one builtin call: nothing runs in between, so the DOWN carries the
    process's real reason however soon it ends (the process starts on the caller's scheduler)."""
    host = ctx.host
    pid = host.spawn(ctx.proc, copy_message(_fn(name, f)), [copy_message(a) for a in args], link, None)
    return Cons(pid, Cons(host.monitor(ctx.proc, pid), None))


@builtin("spawn-monitor")
def b_spawn_monitor(f: Any, *args: Any) -> Any:
    return _spawn_monitored("spawn-monitor", f, args, False)


@builtin("sys/spawn-link-monitor")
def b_spawn_link_monitor(f: Any, *args: Any) -> Any:
    return _spawn_monitored("gen/start", f, args, True)


@builtin("gen/reply")
def b_gen_reply(frm: Any, value: Any) -> Any:
    """Answer a gen/call: `frm` is the handler's `from`, (caller-pid monitor-ref)."""
    if not (frm.__class__ is Cons and frm.head.__class__ is Pid and frm.tail.__class__ is Cons
            and frm.tail.head.__class__ is Ref and frm.tail.tail is None):
        raise badarg(f"gen/reply: expected the `from` of a call, got {short_repr(frm)}")
    ctx.host.reply(ctx.proc, frm.head, frm.tail.head, copy_message(value))
    return TRUE


_DOWN = _values.intern("DOWN")


def _about(msg: Any, ref: Ref) -> bool:
    """`(ref value)` (a call's reply) or `(DOWN ref ...)`: a message a finished call leaves."""
    if msg.__class__ is not Cons:
        return False
    h = msg.head
    if h.__class__ is Ref:
        return h == ref and msg.tail.__class__ is Cons and msg.tail.tail is None
    return h is _DOWN and msg.tail.__class__ is Cons and msg.tail.head.__class__ is Ref and msg.tail.head == ref


@builtin("sys/demonitor-flush")
def b_demonitor_flush(ref: Any) -> Any:
    """Erlang's demonitor(Ref, [flush]): remove the monitor, and the reply or DOWN tagged with
    it that already arrived (none can arrive afterwards: kernel.Scheduler.reply). Called between
    receives, so the mailbox may be rebuilt (a receive starts its scan afresh)."""
    if ref.__class__ is not Ref:
        raise badarg(f"demonitor: expected a ref, got {short_repr(ref)}")
    proc = ctx.proc
    ctx.host.demonitor(proc, ref)
    mb = proc.mailbox
    if mb is not None:
        pending = mb[proc.mbhead:]
        kept = [m for m in pending if not _about(m, ref)]
        if len(kept) != len(pending):
            proc.mailbox = kept or None
            proc.mbhead = proc.scan = 0
    return TRUE


PRELUDE_FILE = "prelude.lisp"  # the source name vm/prelude.lbc's prototypes carry


@builtin("sys/raise")
def b_sys_raise(value: Any, at: Any = None) -> None:
    """`throw` for the prelude's gen/ and sup/: the error is reported in the program, not in
    the prelude: at the body of the program's function `at` when given (a server's handler that
    returned a bad value: no frame of the program is on a server's stack), else at the call that
    led to it (the innermost caller frame outside the prelude), else where it was raised."""
    err = LispError(copy_message(value))
    if at.__class__ is Closure and at.proto.module is not None and at.proto.module.file != PRELUDE_FILE:
        err.pos = at.proto.position(0)
        raise err
    for cl, _code, ret_pc, _regs, _dst in reversed(ctx.proc.frames):
        module = cl.proto.module
        if module is not None and module.file != PRELUDE_FILE and module.file != "<halt>":
            err.pos = cl.proto.position(ret_pc - 1)  # the call instruction
            break
    raise err


@builtin("sys/describe")
def b_sys_describe(x: Any) -> str:
    """A value as the prelude's error messages show it: its type, then its printed form."""
    return described(x)


@builtin("sys/tagged?")
def b_tagged(x: Any, tag: Any, n: Any) -> Bool:
    """A list of `n` elements whose first is `tag` (the shapes gen/ servers return): one call
    in place of the half-dozen a Lisp test costs on every message a server takes."""
    if x.__class__ is not Cons or x.head != tag:
        return FALSE
    while n > 1:
        x = x.tail
        if x.__class__ is not Cons:
            return FALSE
        n -= 1
    return _b(x.tail is None)


@builtin("sys/info")
def b_sys_info(pid: Any) -> Any:
    return ctx.host.process_info(ctx.proc, _pid("sys/info", pid))


@builtin("sys/processes")
def b_sys_processes() -> Any:
    return ctx.host.processes(ctx.proc)


_GENSYMS = [0]  # symbols made by gensym in this OS process


@builtin("gensym")
def b_gensym(prefix: Any = "g") -> Sym:
    """A fresh symbol, for macros: `#:PREFIXn`, a name no symbol read or made in this OS process
    has had, and which names its scheduler (so two schedulers never make the same one)."""
    if prefix.__class__ is Sym:
        prefix = prefix.name
    prefix = check_str("gensym", prefix)
    if len(prefix) > 100:
        raise badarg("gensym: the prefix must be at most 100 characters")
    try:
        where = ctx.host.scheduler_id()
    except (AttributeError, LispError):  # no scheduler (the compiler expanding a macro): as the first
        where = 0
    table = _values._SYMBOLS
    while True:
        _GENSYMS[0] += 1
        name = f"#:{prefix}{_GENSYMS[0]}" if not where else f"#:{prefix}{where}.{_GENSYMS[0]}"
        if name not in table:
            return intern(name)


@builtin("sys/schedulers")
def b_schedulers() -> int:
    return ctx.host.schedulers()


@builtin("sys/scheduler-id")
def b_scheduler_id() -> int:
    return ctx.host.scheduler_id()


@builtin("sys/os-pid")
def b_os_pid() -> int:
    return ctx.host.os_pid()


# The other modules of builtins register theirs after these (the table keeps its order).
from . import (  # noqa: E402
    gpu,  # noqa: F401  (the gpu/ builtins)
    io_builtins,  # noqa: F401  (files, standard input, environment: LANGUAGE.md section 14)
    net_builtins,  # noqa: F401  (tcp/ and port/, LANGUAGE.md section 14)
    python,  # noqa: F401  (py/ builtins, behind --allow-python: LANGUAGE.md section 14)
)
