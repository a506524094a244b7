"""The compiler as a list of passes: read, expand, compile (and assemble/disassemble in lasm.py).

Owns: running the passes in order, macros at compile time (a macro is compiled like any function
and run on the VM), `--dump=PASS` listings, and the modules a file requires (assembler/modules.py
finds and orders them; each is compiled here like the program, and bundled into its Module).
Never runs the program's own code: only macro bodies run at compile time, in their own globals
table.
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
from ..vm.values import Closure, Cons, Sym, intern, to_repr
from .compile import Compiler
from .expand import MAX_NESTING, Expander, MacroBudget
from .modules import REQUIRE, Loader, Scope, Unit, UnknownName, defined_names, module_form_name, refine
from .reader import SourceMap, read

__all__ = ["compile_source", "compile_unit", "MacroRunner", "PASSES", "reserved_names", "MACRO_REDUCTIONS"]

MACRO_REDUCTIONS = 1_000_000  # reductions one macro call may spend (docs/language.md, Macros)
_SLICE = 4000  # reductions between the budget host's checks
_FRAMES_PER_LEVEL = 12  # Python frames the expander and compiler use for one level of nesting

PASSES = ("read", "expand", "compile")
_INLINE_PRELUDE = frozenset({"apply", "recv", "timer/sleep"})  # prelude functions with inline forms


def reserved_names() -> frozenset[str]:
    """Names that programs may not redefine: the builtins, their constants and the prelude's."""
    return frozenset(BUILTINS) | frozenset(CONSTANTS) | prelude.names()


class MacroRunner:
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
                   allow_reserved: bool = False, path: list[str] | None = None) -> Module:
    """Compile Lisp source text into a Module. Raises CompileError (file:line:col: message).

    With `dump` set to a pass name, writes that pass's output to `out` (default stdout).
    Required modules are looked up in `file`'s directory, then in `path` (default: the
    directories of LISPVM_PATH), compiled once each and bundled into the Module (`bundled`,
    in the order they run).
    """
    # The prelude defines the reserved names, so while compiling it only the Python builtins
    # and the inline forms are reserved (and `def` may define them).
    reserved = (frozenset(BUILTINS) | _INLINE_PRELUDE) if allow_reserved else reserved_names()

    def compile_module(module_text: str, module_file: str, loader: Loader) -> Unit:
        return compile_unit(module_text, module_file, loader, reserved, False, None, sys.stdout)

    loader = Loader(compile_module, path, reserved)  # (the prelude itself may be stale while it is rebuilt)
    unit = compile_unit(text, file, loader, reserved, allow_reserved, dump, out or sys.stdout)
    module = unit.module
    module.bundled = [u.module for u in loader.order]
    if dump == "compile":
        from .lasm import disassemble

        (out or sys.stdout).write(disassemble(module))
    return module


def compile_unit(text: str, file: str, loader: Loader, reserved: frozenset[str], allow_reserved: bool,
                  dump: str | None, out: TextIO) -> Unit:
    """Read, expand and compile one file (the program or a module), compiling what it requires
    first; every form is expanded before any is compiled, so that a module's defs are all known
    when its code refers to them."""
    forms, smap = read(text, file)
    if dump == "read":
        for f in forms:
            out.write(to_repr(f) + "\n")
    name = ""
    if forms and (declared := module_form_name(forms[0], smap)) is not None:
        loader.check_name(declared, smap, forms[0], "module")
        name = declared
        forms = forms[1:]
    runner = MacroRunner(smap, reserved)
    expander = Expander(smap, runner.run)
    expander.compile_macro = runner.compile_macro
    compiler = Compiler(smap, frozenset(BUILTINS), reserved, allow_reserved=allow_reserved)
    imported: set[Sym] = set()  # macros of required modules (NAME/m), not this file's own
    expanded: list[tuple[Any, Any]] = []
    # The passes recurse once per nesting level (a few Python frames each): leave room for
    # MAX_NESTING levels, so that the documented limit, with its position, is what stops them.
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(_FRAMES_PER_LEVEL * MAX_NESTING + old_limit)
    loader.begin(name, file)
    form: Any = None
    try:
        for form in forms:
            if form.__class__ is Cons and form.head is REQUIRE:
                required = loader.require(form, smap)
                for mname, closure in required.macros.items():
                    qualified = intern(f"{required.name}/{mname.name}")
                    expander.macros[qualified] = closure
                    imported.add(qualified)
                continue
            core = expander.expand_toplevel(form)
            if dump == "expand":
                out.write(to_repr(core) + "\n")
            expanded.append((form, core))
        defs = defined_names([core for _, core in expanded])
        if name:  # `(def NAME/f ...)` in module NAME is its `f`
            defs = {n[len(name) + 1:] if n.startswith(name + "/") else n for n in defs}
        own = frozenset(n for n in defs if n not in reserved)
        compiler.scope = Scope(name, file, own, loader)
        for form, core in expanded:
            try:
                compiler.toplevel(core)
            except UnknownName as e:
                raise refine(e, form, smap) from None
    except RecursionError:
        raise CompileError(file, *(smap.get(form) or (1, 1)), "expression nested too deeply to compile") from None
    except LispError as e:  # pragma: no cover - macro errors are reported by the expander
        raise CompileError(file, 1, 1, str(e)) from None
    finally:
        loader.end()
        sys.setrecursionlimit(old_limit)
    module = compiler.module()
    module.name = name
    macros = {k: v for k, v in expander.macros.items() if k not in imported}
    return Unit(name, file, module, own, macros)
