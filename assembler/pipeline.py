"""The compiler as a list of passes: read, expand, compile (and assemble/disassemble in lasm.py).

Owns: running the passes in order, macros at compile time (a macro is compiled like any function
and run on the VM), and `--dump=PASS` listings. Never runs the program's own code: only macro
bodies run at compile time, in their own globals table.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from ..vm import prelude
from ..vm.builtins import BUILTINS, CONSTANTS
from ..vm.errors import CompileError, LispError
from ..vm.interp import _BareHost, call_sync, predecode
from ..vm.lbc import Module
from ..vm.process import Globals
from ..vm.values import Closure, Sym, to_repr
from .compile import Compiler
from .expand import MAX_NESTING, Expander, MacroBudget
from .reader import SourceMap, read

__all__ = ["compile_source", "PASSES", "reserved_names", "MACRO_REDUCTIONS"]

MACRO_REDUCTIONS = 1_000_000  # reductions one macro call may spend (docs/language.md, Macros)
_SLICE = 4000  # reductions between the budget host's checks
_FRAMES_PER_LEVEL = 12  # Python frames the expander and compiler use for one level of nesting

PASSES = ("read", "expand", "compile")
_INLINE_PRELUDE = frozenset({"apply", "recv", "timer/sleep"})  # prelude functions with inline forms


def reserved_names() -> frozenset[str]:
    """Names that programs may not redefine: the builtins, their constants and the prelude's."""
    return frozenset(BUILTINS) | frozenset(CONSTANTS) | prelude.names()


class _MacroRunner:
    """Compiles macro functions and runs them on the VM, in a compile-time globals table."""

    def __init__(self, smap: SourceMap, reserved: frozenset[str]) -> None:
        self.smap = smap
        self.reserved = reserved
        self.globals: Globals | None = None  # made on the first macro: most programs have none

    def compile_macro(self, fn_form: Any, name: Sym) -> Closure:
        if self.globals is None:
            self.globals = Globals()
            prelude.install(self.globals, fresh=True)
        c = Compiler(self.smap, frozenset(BUILTINS), self.reserved)
        fs = c.main
        r = c.alloc(fs)
        c.expr(fs, fn_form, r)
        c.emit(fs, "RETURN", A=r)
        c.finish(fs)
        module = Module(self.smap.file, c.protos)
        predecode(module, self.globals)
        closure = call_sync(Closure(module.protos[0], ()), [])
        closure.name = name.name
        return closure

    def run(self, name: Sym, closure: Closure, args: list[Any]) -> Any:
        """Run one macro call, stopping it (MacroBudget) after MACRO_REDUCTIONS reductions."""
        return call_sync(closure, args, _BudgetHost(MACRO_REDUCTIONS // _SLICE), _SLICE,
                         MacroBudget(MACRO_REDUCTIONS))


class _BudgetHost(_BareHost):
    """The compile-time host, asked once per slice whether to stop: after `slices` of them."""

    def __init__(self, slices: int) -> None:
        super().__init__()
        self.left = slices

    def preempt(self) -> bool:
        self.left -= 1
        return self.left <= 0


def compile_source(text: str, file: str = "<string>", dump: str | None = None, out: TextIO | None = None,
                   allow_reserved: bool = False) -> Module:
    """Compile Lisp source text into a Module. Raises CompileError (file:line:col: message).

    With `dump` set to a pass name, writes that pass's output to `out` (default stdout).
    """
    out = out or sys.stdout
    forms, smap = read(text, file)
    if dump == "read":
        for f in forms:
            out.write(to_repr(f) + "\n")
    # The prelude defines the reserved names, so while compiling it only the Python builtins
    # and the inline forms are reserved (and `def` may define them).
    reserved = (frozenset(BUILTINS) | _INLINE_PRELUDE) if allow_reserved else reserved_names()
    runner = _MacroRunner(smap, reserved)
    expander = Expander(smap, runner.run)
    expander.compile_macro = runner.compile_macro
    compiler = Compiler(smap, frozenset(BUILTINS), reserved, allow_reserved=allow_reserved)
    # The passes recurse once per nesting level (a few Python frames each): leave room for
    # MAX_NESTING levels, so that the documented limit, with its position, is what stops them.
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(_FRAMES_PER_LEVEL * MAX_NESTING + old_limit)
    try:
        for form in forms:
            core = expander.expand_toplevel(form)
            if dump == "expand":
                out.write(to_repr(core) + "\n")
            compiler.toplevel(core)
    except RecursionError:
        raise CompileError(file, *(smap.get(form) or (1, 1)), "expression nested too deeply to compile") from None
    except LispError as e:  # pragma: no cover - macro errors are reported by the expander
        raise CompileError(file, 1, 1, str(e)) from None
    finally:
        sys.setrecursionlimit(old_limit)
    module = compiler.module()
    if dump == "compile":
        from .lasm import disassemble

        out.write(disassemble(module))
    return module
