"""The table of builtins: every function written in Python, by its Lisp name, and the global
constants.

Owns: the Builtin type (a Builtin is its entry here: it crosses OS processes, and pickles, by
name), BUILTINS, CONSTANTS, and the `builtin` decorator that the modules of builtins
(vm/builtins.py, vm/gpu.py) register with. Must never: import another module of vm/ (values, the
codec and the loop look builtins up here, below everything that defines them). The table is
complete once vm.builtins is imported (it imports vm.gpu).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Builtin", "BUILTINS", "CONSTANTS", "builtin", "constant", "builtin_named"]


class Builtin:
    """A function written in Python. `fn` takes the Lisp arguments positionally."""

    __slots__ = ("name", "fn", "fast")

    def __init__(self, name: str, fn: Any) -> None:
        self.name = name  # the Lisp name, e.g. "list/range"
        self.fn = fn  # the Python callable
        self.fast = fn  # what compiled code calls: the same callable

    def __repr__(self) -> str:
        return f"#<fn {self.name}>"

    def __reduce__(self) -> tuple:
        return (builtin_named, (self.name,))


BUILTINS: dict[str, Builtin] = {}  # Lisp name -> the builtin: the globals every node starts with
CONSTANTS: dict[str, Any] = {}  # Lisp name -> a global that is a value, not a function


def builtin(name: str) -> Any:
    """Decorator: register the Python function as the builtin `name`."""

    def deco(fn: Any) -> Any:
        BUILTINS[name] = Builtin(name, fn)
        return fn

    return deco


def constant(name: str, value: Any) -> None:
    """Register `value` as the global constant `name`."""
    CONSTANTS[name] = value


def builtin_named(name: str) -> Builtin:
    """The registered builtin called `name` (KeyError if none)."""
    return BUILTINS[name]
