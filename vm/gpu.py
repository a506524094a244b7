"""The gpu/ builtins (LANGUAGE.md section 7): float32 arrays as values, kernels, dispatch.

Owns: the array builtins (pure data, run in the scheduler's OS process), the Kernel value, and
checking a dispatch's arguments against the kernel's declared parameters before anything is
sent. Must never: import numpy at module level (programs without gpu/ never load it), import
pyopencl (only the device process does, scheduler/device_server.py), or wait: `gpu/kernel` and
`gpu/dispatch` raise vm.process.Block with a request, the scheduler hands it to the device
process and resumes the process with the answer.
"""

from __future__ import annotations

from typing import Any

from .checks import check_arity, check_int, described
from .errors import badarg, badarity
from .process import Block
from .registry import builtin
from .values import Cons, F32Array, from_list

__all__ = ["Kernel", "SCALARS"]

# OpenCL scalar parameter types -> numpy dtype names (what a Lisp number becomes)
SCALARS = {"float": "float32", "double": "float64", "half": "float16", "char": "int8", "uchar": "uint8",
           "short": "int16", "ushort": "uint16", "int": "int32", "uint": "uint32", "long": "int64",
           "ulong": "uint64", "size_t": "uint64", "bool": "int32"}


class Kernel:
    """A built kernel: its source (so any device process can rebuild it), its name, and its
    parameters as (is_buffer, OpenCL type name). A value: it prints as #<kernel NAME> and
    travels in messages."""

    __slots__ = ("source", "name", "params", "key")

    def __init__(self, source: str, name: str, params: tuple, key: str) -> None:
        self.source = source  # OpenCL C source
        self.name = name  # the __kernel function's name
        self.params = params  # ((is_buffer, type_name), ...) in order
        self.key = key  # hash of the source: the device process's build cache key

    def __repr__(self) -> str:
        return f"#<kernel {self.name}>"

    def __reduce__(self) -> tuple:
        return (Kernel, (self.source, self.name, self.params, self.key))


def _np() -> Any:
    import numpy

    return numpy


def _array(name: str, a: Any) -> Any:
    if a.__class__ is F32Array:
        return a.data
    raise badarg(f"{name}: expected an f32 array, got {described(a)}")


@builtin("gpu/array")
def b_array(items: Any) -> F32Array:
    np = _np()
    values = []
    c = items
    while c.__class__ is Cons:
        x = c.head
        if x.__class__ is not int and x.__class__ is not float:
            raise badarg(f"gpu/array: expected numbers, got {described(x)}")
        values.append(x)
        c = c.tail
    if c is not None:
        raise badarg(f"gpu/array: expected a list, got {described(items)}")
    arr = np.array(values, dtype=np.float32)
    arr.setflags(write=False)  # arrays are values: nothing may change one after it is made
    return F32Array(arr)


@builtin("gpu/zeros")
def b_zeros(n: Any) -> F32Array:
    n = check_int("gpu/zeros", n)
    if n < 0:
        raise badarg(f"gpu/zeros: size must be >= 0, got {n}")
    np = _np()
    arr = np.zeros(n, dtype=np.float32)
    arr.setflags(write=False)
    return F32Array(arr)


@builtin("gpu/to-list")
def b_to_list(a: Any) -> Any:
    return from_list(_array("gpu/to-list", a).tolist())


@builtin("gpu/len")
def b_len(a: Any) -> int:
    return len(_array("gpu/len", a))


@builtin("gpu/get")
def b_get(a: Any, i: Any) -> float:
    arr = _array("gpu/get", a)
    i = check_int("gpu/get", i)
    if not 0 <= i < len(arr):
        raise badarg(f"gpu/get: index {i} out of range for an array of {len(arr)}")
    return float(arr[i])


@builtin("gpu/kernel")
def b_kernel(source: Any, name: Any) -> Kernel:
    if source.__class__ is not str or name.__class__ is not str:
        raise badarg("gpu/kernel: expected the OpenCL source and the kernel's name, both strings")
    raise Block(("gpu-kernel", source, name))


@builtin("gpu/dispatch")
def b_dispatch(*args: Any) -> Any:
    check_arity("gpu/dispatch", args, 2)
    kernel, n, rest = args[0], args[1], args[2:]
    if kernel.__class__ is not Kernel:
        raise badarg(f"gpu/dispatch: expected a kernel, got {described(kernel)}")
    n = check_int("gpu/dispatch", n)
    if n < 1:
        raise badarg(f"gpu/dispatch: the global size must be >= 1, got {n}")
    if len(rest) != len(kernel.params):
        raise badarity(f"gpu/dispatch: kernel {kernel.name} takes {len(kernel.params)} arguments, got {len(rest)}")
    for i, (x, (is_buffer, tname)) in enumerate(zip(rest, kernel.params)):
        if is_buffer:
            if x.__class__ is not F32Array:
                raise badarg(f"gpu/dispatch: argument {i} of kernel {kernel.name} is {tname}: "
                             f"expected an f32 array, got {described(x)}")
            if len(x.data) < n:
                raise badarg(f"gpu/dispatch: argument {i} of kernel {kernel.name} has {len(x.data)} "
                             f"elements, fewer than the global size {n}")
        elif x.__class__ is not int and x.__class__ is not float:
            raise badarg(f"gpu/dispatch: argument {i} of kernel {kernel.name} is {tname}: "
                         f"expected a number, got {described(x)}")
    raise Block(("gpu-dispatch", kernel, n, tuple(x.data if x.__class__ is F32Array else x for x in rest)))
