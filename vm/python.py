"""Python interop (LANGUAGE.md section 14, docs/python.md): py/import, py/call, py/attr and
py/call-async, behind --allow-python.

Owns: the conversions between Lisp values and Python objects (both ways), the opaque PyObj
value for everything else (it prints as #<py TYPE> and never leaves its OS process: the codec
refuses it, so it cannot be sent to another scheduler and a process holding one is not moved),
turning a Python exception into (error python "TYPE: message"), and the request py/call-async
hands to the scheduler (scheduler/pyio.py runs it in the I/O thread pool and sends the result
as a message).

Must never: import scheduler/ or assembler/, let a Python exception (KeyboardInterrupt and
SystemExit included) escape as anything but a Lisp error, or hand Python a Lisp value it could change (an f32
array goes as a read-only view).
"""

from __future__ import annotations

import importlib
from functools import cmp_to_key
from types import ModuleType
from typing import Any

from .checks import check_str, short_repr
from .errors import MAX_INT_BITS, LispError, badarg, runtime_error, system_limit
from .permissions import check, current
from .process import Block, ctx
from .registry import builtin
from .values import FALSE, TRUE, Bool, Cons, F32Array, Map, Sym, Vec, compare, from_list, intern, map_of, type_name

__all__ = ["PyObj", "to_python", "to_lisp", "python_error", "call", "module_named"]

PYTHON = intern("python")
MAX_DEPTH = 200  # nesting of containers converted (Python's recursion stays far below its limit)


class PyObj:
    """A Python object with no Lisp counterpart: opaque, usable only through py/ builtins. Plain
    data for the VM, but only in the OS process that made it (the codec refuses it)."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __repr__(self) -> str:
        return f"#<py {type(self.obj).__name__}>"

    def __eq__(self, other: object) -> bool:
        return other.__class__ is PyObj and other.obj is self.obj  # the same Python object

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return id(self.obj)

    def module_name(self) -> str | None:
        """The name a module is imported by (it travels between schedulers as that), else None."""
        obj = self.obj
        if isinstance(obj, ModuleType):
            name = getattr(obj, "__name__", None)
            import sys

            if name.__class__ is str and sys.modules.get(name) is obj:
                return name
        return None


class _Unavailable:
    """A module that arrived from another scheduler and could not be imported here: using it
    raises the reason."""

    def __init__(self, name: str, why: str) -> None:
        self._name, self._why = name, why

    def __getattr__(self, attr: str) -> Any:
        raise ImportError(f"module {self._name} could not be imported on this scheduler: {self._why}")


def module_named(name: str) -> PyObj:
    """The module `name` in this OS process (the codec's decoding of a module sent from another
    scheduler): already imported, or imported now if --allow-python allows it here."""
    import sys

    mod = sys.modules.get(name)
    if mod is None:
        if current().python is None:
            return PyObj(_Unavailable(name, "calling Python is not allowed (allowed by --allow-python)"))
        try:
            mod = importlib.import_module(name)
        except BaseException as e:  # noqa: BLE001 - SystemExit and KeyboardInterrupt too: they must not end the node
            return PyObj(_Unavailable(name, f"{type(e).__name__}: {e}"))
    return PyObj(mod)


def python_error(e: BaseException) -> LispError:
    """(error python "TYPE: message") for a Python exception; an exception whose __str__ fails
    (or gives no string) is named by its type with a fixed message instead of crashing the node."""
    try:
        tname = type(e).__name__
        tname = tname if tname.__class__ is str else "Exception"
    except Exception:  # noqa: BLE001 - a metaclass can make even the name fail
        tname = "Exception"
    try:
        text = str(e)
        if text.__class__ is not str:
            raise TypeError
    except BaseException:  # noqa: BLE001 - any failure of the exception's own __str__
        text = "(the exception could not be printed)"
    return runtime_error(PYTHON, f"{tname}: {text}" if text else tname)


# --- Lisp -> Python -------------------------------------------------------------------------------


_KEY = cmp_to_key(lambda a, b: compare(a[0], b[0]))


def to_python(name: str, x: Any, depth: int = 0) -> Any:
    """The Python object for a Lisp value: numbers, strings and booleans as they are, nil as
    None, a list as a list, a vector as a tuple, a map as a dict, a symbol as its name, an f32
    array as a read-only numpy float32 view, a #<py> value as its object. Anything else (a
    function, a pid, a ref) is badarg naming the builtin `name`."""
    c = x.__class__
    if c is int or c is float or c is str:
        return x
    if x is None:
        return None
    if c is Bool:
        return x is TRUE
    if c is PyObj:
        return x.obj
    if depth > MAX_DEPTH:
        raise badarg(f"{name}: the value is nested more than {MAX_DEPTH} deep")
    if c is Cons:
        out = []
        while x.__class__ is Cons:
            out.append(to_python(name, x.head, depth + 1))
            x = x.tail
        if x is not None:
            raise badarg(f"{name}: an improper list cannot be given to Python")
        return out
    if c is Vec:
        return tuple(to_python(name, e, depth + 1) for e in x.items)
    if c is Map:
        d = {}
        # in the map's printed order (its keys sorted), so that a dict's order, which Python
        # shows, is the same in every run (a map's own order follows string hashes)
        for k, v in sorted(x.m.items(), key=_KEY):
            pk = to_python(name, k, depth + 1)
            if pk.__class__ is list:  # a list key: Python keys must be hashable
                pk = tuple(pk)
            try:
                d[pk] = to_python(name, v, depth + 1)
            except TypeError:
                raise badarg(f"{name}: the map key {short_repr(k)} cannot be a Python dict key") from None
        return d
    if c is Sym:
        return x.name
    if c is F32Array:
        view = x.data.view()
        view.flags.writeable = False  # arrays are values: Python may read, not change
        return view
    raise badarg(f"{name}: a {type_name(x)} cannot be given to Python ({short_repr(x)})")


# --- Python -> Lisp -------------------------------------------------------------------------------


def to_lisp(obj: Any, depth: int = 0, who: str = "py/call") -> Any:
    """The Lisp value for a Python object: None as nil, bools, ints, floats and strings, a list
    as a list, a tuple as a vector, a dict as a map, numpy scalars as numbers, a one-dimensional
    numpy float32 array as an f32 array (a copy: Python may change its array later); anything
    else, and containers nested too deep, as an opaque #<py TYPE>."""
    c = obj.__class__
    if c is float:
        return obj
    if c is str:
        if not obj.isascii():
            try:
                obj.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate: no Lisp string may hold one (it cannot be printed)
                raise badarg(f"{who}: Python gave a string that is not Unicode text (it holds a lone "
                             "surrogate)") from None
        return obj
    if c is int:
        if obj.bit_length() > MAX_INT_BITS:  # past what the VM's integers may hold (vm/errors.py)
            raise system_limit(f"{who}: Python gave an integer of {obj.bit_length():,} bits, more than "
                               f"{MAX_INT_BITS:,}")
        return obj
    if obj is None:
        return None
    if c is bool:
        return TRUE if obj else FALSE
    if depth <= MAX_DEPTH:
        if c is list:
            return from_list([to_lisp(e, depth + 1, who) for e in obj])
        if c is tuple:
            return Vec([to_lisp(e, depth + 1, who) for e in obj])
        if c is dict:
            kvs: list[Any] = []
            for k, v in obj.items():
                kvs.append(to_lisp(k, depth + 1, who))
                kvs.append(to_lisp(v, depth + 1, who))
            return map_of(*kvs)
    if c.__module__ == "numpy":
        import numpy as np  # loaded already: the object is numpy's

        if isinstance(obj, np.ndarray):
            if obj.dtype == np.float32 and obj.ndim == 1:
                return F32Array(obj.copy())
        elif isinstance(obj, np.bool_):
            return TRUE if obj else FALSE
        elif isinstance(obj, np.integer):
            return int(obj)
        elif isinstance(obj, np.floating):
            return float(obj)
    return PyObj(obj)


# --- the builtins ---------------------------------------------------------------------------------


def _target(name: str, obj: Any) -> Any:
    return obj.obj if obj.__class__ is PyObj else to_python(name, obj)


def _callable(name: str, obj: Any, attr: Any) -> Any:
    """What (py/call obj attr ...) calls: obj's method `attr`, or obj itself when attr is nil."""
    target = _target(name, obj)
    if attr is None:
        if not callable(target):
            raise badarg(f"{name}: {short_repr(obj)} is not callable (give a method name, or nil to call it)")
        return target
    check_str(name, attr)
    try:
        return getattr(target, attr)
    except BaseException as e:  # noqa: BLE001 - SystemExit and KeyboardInterrupt too: they must not end the node
        raise python_error(e) from None


def call(fn: Any, args: tuple) -> Any:
    """Call a Python callable; its result converted, its exception a Lisp python error. A
    SystemExit or KeyboardInterrupt raised by Python code is an error too (it must not end the
    node)."""
    try:
        result = fn(*args)
    except BaseException as e:  # noqa: BLE001 - SystemExit and KeyboardInterrupt too: they must not end the node
        raise python_error(e) from None
    return to_lisp(result)


@builtin("py/import")
def b_py_import(module: Any) -> Any:
    check("python", "py/import", None)
    check_str("py/import", module)
    try:
        return to_lisp(importlib.import_module(module), 0, "py/import")
    except BaseException as e:  # noqa: BLE001 - SystemExit and KeyboardInterrupt too: they must not end the node
        raise python_error(e) from None


@builtin("py/attr")
def b_py_attr(obj: Any, attr: Any) -> Any:
    check("python", "py/attr", None)
    target = _target("py/attr", obj)
    check_str("py/attr", attr)
    try:
        value = getattr(target, attr)
    except BaseException as e:  # noqa: BLE001 - SystemExit and KeyboardInterrupt too: they must not end the node
        raise python_error(e) from None
    return to_lisp(value, 0, "py/attr")


@builtin("py/call")
def b_py_call(obj: Any, attr: Any, *args: Any) -> Any:
    check("python", "py/call", None)
    fn = _callable("py/call", obj, attr)
    return call(fn, tuple(to_python("py/call", a) for a in args))


@builtin("py/call-async")
def b_py_call_async(obj: Any, attr: Any, *args: Any) -> Any:
    """Like py/call, but the call runs in the scheduler's I/O thread pool: gives a ref at once,
    and the caller later receives (py REF value) or (py-error REF (error python "...")).
    The arguments are converted here, in the caller's scheduler, before the call starts."""
    check("python", "py/call-async", None)
    fn = _callable("py/call-async", obj, attr)
    pyargs = tuple(to_python("py/call-async", a) for a in args)
    ref = ctx.host.make_ref()
    raise Block(("io", "py/call-async", ref, fn, pyargs))
