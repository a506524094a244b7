"""Modules (LANGUAGE.md section 11, docs/modules.md): `(module NAME)`, `(require NAME)`, `NAME/x`.

Owns: finding a required file (the requiring file's directory, then each directory of
LISPVM_PATH), compiling each module once per compilation, the order modules run in (a module
after the modules it requires), require cycles, and the names of globals under modules (a
module's own defs are the globals `NAME/x`; `NAME/x` is checked against module NAME's defs).
Must never: compile a file twice in one compilation, follow a cycle, or report an error without
the file:line:column of the form that caused it (the require form, or the use of a missing name).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..vm.errors import CompileError
from ..vm.lbc import Module, module_name_ok
from ..vm.values import Cons, Sym, Vec, intern
from .reader import QUOTE, SourceMap

__all__ = ["MODULE", "REQUIRE", "PATH_ENV", "MAX_REQUIRE_DEPTH", "Unit", "Loader", "Scope", "UnknownName",
           "module_form_name", "require_form_name", "defined_names", "search_path"]

MODULE, REQUIRE = intern("module"), intern("require")
DEF = intern("def")
PATH_ENV = "LISPVM_PATH"
MAX_REQUIRE_DEPTH = 100  # modules requiring modules, one inside the other (the compiler recurses per level)


class Unit:
    """A compiled module: its bytecode, the names it defines and the macros it exports."""

    __slots__ = ("name", "file", "module", "defs", "macros")

    def __init__(self, name: str, file: str, module: Module, defs: frozenset[str], macros: dict[Sym, Any]) -> None:
        self.name = name  # the NAME of its (module NAME)
        self.file = file  # where it was found (as the search path spelled it)
        self.module = module  # its compiled code (bundled into the program's .lbc)
        self.defs = defs  # the short names of its defs: other files call them NAME/x
        self.macros = macros  # its own macros by short name: other files use them as NAME/m


def search_path(environ: Any = None) -> list[str]:
    """The directories of LISPVM_PATH (os.pathsep between them; empty entries are skipped)."""
    value = (os.environ if environ is None else environ).get(PATH_ENV, "")
    return [d for d in value.split(os.pathsep) if d]


def _directory_of(file: str) -> str:
    """The directory a file's requires are looked up in first ("" is the current directory, for
    text that is not from a file: standard input, the REPL)."""
    return "" if file.startswith("<") else os.path.dirname(file)


class Loader:
    """The modules of one compilation: each found, compiled once, and kept in run order.

    `compile_unit(text, file, loader)` compiles a module's source (assembler/pipeline.py) and
    returns its Unit; it calls `require` again for the module's own requires.
    """

    def __init__(self, compile_unit: Callable[[str, str, Loader], Unit], path: list[str] | None = None,
                 reserved: frozenset[str] = frozenset()) -> None:
        self.compile_unit = compile_unit
        self.path = search_path() if path is None else list(path)
        self.done: dict[str, Unit] = {}  # name -> compiled module
        self.order: list[Unit] = []  # compiled modules, each after the ones it requires
        self.active: list[tuple[str, str]] = []  # (name, file) of the files being compiled, outermost first
        # NAME/ prefixes of builtins: a module of that name would make `list/map` ambiguous
        self.taken = frozenset(n.split("/", 1)[0] for n in reserved if "/" in n[1:-1])

    def check_name(self, name: str, smap: SourceMap, form: Any, what: str) -> None:
        """Refuse a module name that is not NAME.lisp-safe or that the builtins use as a prefix."""
        if not module_name_ok(name):
            raise smap.error(form, f"{what}: {name!r} is not a module name (a letter, then letters, "
                                   "digits, - or _)")
        if name in self.taken:
            raise smap.error(form, f"{what}: the module name {name} is taken by the builtins ({name}/...)")

    def begin(self, name: str, file: str) -> None:
        """A file starts compiling (the program itself, or a module)."""
        self.active.append((name, file))

    def end(self) -> None:
        self.active.pop()

    def defs_of(self, name: str) -> frozenset[str] | None:
        """The defs of module `name` if it is compiled in this compilation, else None."""
        unit = self.done.get(name)
        return unit.defs if unit is not None else None

    def find(self, name: str, requirer: str) -> tuple[str, list[str]]:
        """The file NAME.lisp in the requiring file's directory or a LISPVM_PATH directory, and
        the directories tried (for the message when it is nowhere)."""
        tried = []
        for d in [_directory_of(requirer), *self.path]:
            candidate = os.path.join(d, name + ".lisp")
            tried.append(d or ".")
            if os.path.isfile(candidate):
                return candidate, tried
        return "", tried

    def require(self, form: Any, smap: SourceMap) -> Unit:
        """The module a `(require NAME)` top-level form names, compiled now unless it already is."""
        name = require_form_name(form, smap)
        self.check_name(name, smap, form, "require")
        chain = [n for n, _ in self.active]
        if name in chain:
            cycle = " -> ".join([*chain[chain.index(name):], name])
            raise smap.error(form, f"require {name}: a cycle of requires ({cycle})")
        file, tried = self.find(name, smap.file)
        if not file:
            raise smap.error(form, f"require {name}: no file {name}.lisp in {', '.join(tried)} "
                                   f"(the requiring file's directory, then {PATH_ENV})")
        unit = self.done.get(name)
        if unit is not None:
            if os.path.realpath(unit.file) != os.path.realpath(file):
                raise smap.error(form, f"require {name}: found {file}, but module {name} is already "
                                       f"loaded from {unit.file}")
            return unit
        if len(self.active) > MAX_REQUIRE_DEPTH:
            raise smap.error(form, f"require {name}: modules required more than {MAX_REQUIRE_DEPTH} deep")
        try:
            with open(file, encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError:
            raise smap.error(form, f"require {name}: cannot read {file}: not UTF-8 text") from None
        except OSError as e:
            raise smap.error(form, f"require {name}: cannot read {file}: {e.strerror or e}") from None
        if text.startswith("\ufeff"):  # a byte order mark some editors write: not part of the text
            text = text[1:]
        unit = self.compile_unit(text, file, self)
        if unit.name != name:
            declared = f"(module {unit.name})" if unit.name else "no (module ...) form"
            raise smap.error(form, f"require {name}: {file} is not module {name} (it has {declared}; "
                                   f"a module file starts with (module {name}))")
        self.done[name] = unit
        self.order.append(unit)
        return unit


def _shape(form: Any, head: Sym) -> Any:
    """The NAME of a `(head NAME)` form, or None if the form has another shape."""
    if form.__class__ is Cons and form.head is head:
        rest = form.tail
        if rest.__class__ is Cons and rest.tail is None and rest.head.__class__ is Sym:
            return rest.head.name
    return None


def module_form_name(form: Any, smap: SourceMap) -> str | None:
    """NAME if `form` is a `(module NAME)` form (an error if it is a malformed one), else None."""
    if form.__class__ is not Cons or form.head is not MODULE:
        return None
    name = _shape(form, MODULE)
    if name is None:
        raise smap.error(form, "module: expected (module NAME) with NAME a symbol")
    return name


def require_form_name(form: Any, smap: SourceMap) -> str:
    name = _shape(form, REQUIRE)
    if name is None:
        raise smap.error(form, "require: expected (require NAME) with NAME a symbol")
    return name


def defined_names(forms: list[Any]) -> set[str]:
    """The names the expanded `forms` give to `def` anywhere but in quoted data."""
    out: set[str] = set()
    todo = list(forms)
    while todo:
        x = todo.pop()
        if x.__class__ is Vec:
            todo.extend(x.items)
            continue
        if x.__class__ is not Cons or x.head is QUOTE:
            continue
        if x.head is DEF and x.tail.__class__ is Cons and x.tail.head.__class__ is Sym:
            out.add(x.tail.head.name)
        while x.__class__ is Cons:
            todo.append(x.head)
            x = x.tail
    return out


class UnknownName(CompileError):
    """`NAME/x` where module NAME defines no x; `sym` is looked up in the source for its column."""

    def __init__(self, file: str, line: int, col: int, message: str, sym: Sym) -> None:
        super().__init__(file, line, col, message)
        self.sym = sym


class Scope:
    """How one file's free symbols name globals (the compiler's hook, Compiler.global_name)."""

    def __init__(self, name: str, file: str, own: frozenset[str], loader: Loader) -> None:
        self.name = name  # this file's module name, or "" for a program that is not a module
        self.file = file
        self.own = own  # this module's defs (short names), qualified as NAME/x
        self.loader = loader

    def global_name(self, sym: Sym, pos: tuple[int, int], define: bool = False) -> str:
        """The global `sym` names where it appears free (at `pos`, the enclosing form); with
        `define`, the global a `def` of `sym` defines (never another module's)."""
        if sym is REQUIRE:
            raise CompileError(self.file, *pos, "require is allowed only as a top-level form of a file")
        if sym is MODULE:
            raise CompileError(self.file, *pos, "(module NAME) is allowed only as the first form of a file")
        n = sym.name
        i = n.find("/")
        if 0 < i < len(n) - 1:  # NAME/x of this module or of another one of the program
            prefix, rest = n[:i], n[i + 1:]
            defs = self.own if prefix == self.name else self.loader.defs_of(prefix)
            if defs is not None:
                if define and prefix != self.name:
                    raise CompileError(self.file, *pos, f"def: {n} belongs to module {prefix} (a file "
                                                        "defines only its own names)")
                if rest not in defs:
                    raise UnknownName(self.file, *pos, f"{n}: module {prefix} does not define {rest}", sym)
                return n
        if self.name and n in self.own:
            return f"{self.name}/{n}"
        return n


def refine(err: UnknownName, raw: Any, smap: SourceMap) -> CompileError:
    """`err` at the position of its symbol in the top-level source form `raw`: the first use at
    or after the enclosing form's position the compiler knew (the expander rebuilds lists, so
    the symbol's own position is only in the forms as read)."""
    at = (err.line, err.col)
    found: list[tuple[int, int]] = []
    todo = [raw]
    while todo:
        x = todo.pop()
        if x.__class__ is Cons:
            while x.__class__ is Cons:
                if x.head is err.sym:
                    pos = smap.get_elem(x)
                    if pos is not None:
                        found.append(pos)
                else:
                    todo.append(x.head)
                x = x.tail
        elif (items := getattr(x, "items", None)) is not None and not callable(items):  # vectors, maps as read
            for i, item in enumerate(items):
                if item is err.sym:
                    pos = smap.get_item(x, i) if hasattr(smap, "get_item") else None
                    if pos is not None:
                        found.append(pos)
                else:
                    todo.append(item)
    after = sorted(p for p in found if p >= at)
    line, col = after[0] if after else (min(found) if found else at)
    return CompileError(err.file, line, col, err.message)
