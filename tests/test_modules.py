"""Modules (LANGUAGE.md section 11, docs/modules.md): (module NAME), (require NAME), NAME/x,
bundling into the .lbc, and every refusal with its file:line:column.

Hermetic: every file is in tmp_path, and the search path is given to each compile (or
LISPVM_PATH set for the one test, and for each command run).
"""

from __future__ import annotations

import io
import os
import shutil
import zlib
from pathlib import Path

import pytest

from lispvm.assembler.lasm import assemble, disassemble
from lispvm.assembler.modules import MAX_REQUIRE_DEPTH, PATH_ENV
from lispvm.assembler.pipeline import compile_source
from lispvm.scheduler.runner import run_program
from lispvm.vm import lbc
from lispvm.vm.builtins import BUILTINS
from lispvm.vm.errors import BadBytecode, CompileError
from lispvm.vm.verify import verify
from support import lispvm

UTIL = """(module util)
(print "util loaded")
(def square (x) (* x x))
(def twice (f x) (f (f x)))
(def fourth (x) (twice square x))
(def adder (n) (fn (x) (+ x n)))
(defmacro swap-args (f a b) (list f b a))
(defmacro sq-twice (x) (list 'util/square (list 'util/square x)))
(def hits 0)
(def hit () (set hits (+ hits 1)) hits)
(def boom (x) (+ x "one"))
"""
SHAPES = """(module shapes)
(require util)
(print "shapes loaded")
(def area (w h) (* w h))
(def square-area (s) (util/square s))
"""
COUNTER = """(module counter)
(require util)
(def next (n) (+ n 1))
"""
MAIN = """(require util)
(require shapes)
(require counter)
(require util)
(print (util/square 7))
(print (util/fourth 3))
(print ((util/adder 10) 5))
(print (util/swap-args - 1 10))
(print (util/sq-twice 2))
(util/hit)
(print (util/hit))
(print util/hits)
(print (shapes/square-area 4))
(print (counter/next 41))
(print (list/map util/square '(1 2 3)))
(def square (x) 'main-square)
(print (square 1))
"""
MAIN_OUT = ["util loaded", "shapes loaded", "49", "81", "15", "9", "16", "2", "2", "16", "42", "(1 4 9)",
            "main-square"]


def tree(root: Path, files: dict[str, str | bytes]) -> None:
    """Write `files` (relative path -> text) under `root`."""
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(text, encoding="utf-8")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """main.lisp and counter.lisp in app/, util and shapes in lib/ (the search path)."""
    tree(tmp_path, {"app/main.lisp": MAIN, "app/counter.lisp": COUNTER, "lib/util.lisp": UTIL,
                    "lib/shapes.lisp": SHAPES})
    return tmp_path


def compile_main(root: Path, text: str | None = None, path: list[str] | None = None) -> lbc.Module:
    main = root / "app" / "main.lisp"
    if text is not None:
        tree(root, {"app/main.lisp": text})
    return compile_source(main.read_text(encoding="utf-8"), str(main),
                          path=[str(root / "lib")] if path is None else path)


def run_here(data: bytes) -> tuple[list[str], str, int]:
    out, err = io.StringIO(), io.StringIO()
    status = run_program(data, [], schedulers=1, out=out, err=err)
    return out.getvalue().splitlines(), err.getvalue(), status


# --- compiling and running ---------------------------------------------------------------------

def test_modules_are_compiled_once_bundled_in_order_and_run(project: Path) -> None:
    module = compile_main(project)
    # util is required three times (twice by main, by shapes and counter): one copy, first
    assert [(m.name, Path(m.file).name) for m in module.bundled] == [
        ("util", "util.lisp"), ("shapes", "shapes.lisp"), ("counter", "counter.lisp")]
    assert module.name == "" and module.bundled[0].file == str(project / "lib" / "util.lisp")
    out, err, status = run_here(lbc.dump(module))
    assert (out, err, status) == (MAIN_OUT, "", 0)


def test_a_module_def_is_a_qualified_global(project: Path) -> None:
    """Its own code names it `square`, the global is `util/square`: the program's own `square`
    is another global, and nothing defines a bare `square` or `hits` for the module."""
    module = compile_main(project)
    util = module.bundled[0]
    names = {k.name for p in util.protos for k in p.consts if k.__class__.__name__ == "Sym"}
    assert {"util/square", "util/twice", "util/hits"} <= names
    assert not {"square", "twice", "hits"} & names


def test_search_path_comes_from_lispvm_path_after_the_requiring_files_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree(tmp_path, {"app/main.lisp": "(require u)\n(print (u/which))\n",
                    "one/u.lisp": "(module u)\n(def which () 'one)\n",
                    "two/u.lisp": "(module u)\n(def which () 'two)\n"})
    main = tmp_path / "app" / "main.lisp"
    monkeypatch.setenv(PATH_ENV, os.pathsep.join([str(tmp_path / "empty"), "", str(tmp_path / "two"),
                                                  str(tmp_path / "one")]))
    assert run_here(lbc.dump(compile_source(main.read_text(), str(main))))[0] == ["two"]
    tree(tmp_path, {"app/u.lisp": "(module u)\n(def which () 'here)\n"})
    assert run_here(lbc.dump(compile_source(main.read_text(), str(main))))[0] == ["here"]
    monkeypatch.delenv(PATH_ENV)
    (tmp_path / "app" / "u.lisp").unlink()
    with pytest.raises(CompileError, match="no file u.lisp in"):
        compile_source(main.read_text(), str(main))


def test_a_module_may_define_and_use_its_names_in_full(tmp_path: Path) -> None:
    tree(tmp_path, {"lib/m.lisp": "(module m)\n(def m/f () (g))\n(def g () (m/h))\n(def h () 'ok)\n",
                    "app/main.lisp": "(require m)\n(print (m/f) (m/g))\n"})
    assert run_here(lbc.dump(compile_main(tmp_path)))[0] == ["ok ok"]


def test_a_module_file_compiled_on_its_own_runs(tmp_path: Path) -> None:
    tree(tmp_path, {"lib/util.lisp": UTIL})
    util = tmp_path / "lib" / "util.lisp"
    module = compile_source(util.read_text(), str(util), path=[])
    assert module.name == "util" and module.bundled == []
    assert run_here(lbc.dump(module))[0] == ["util loaded"]


# --- refusals, each at its file:line:column ------------------------------------------------------

CASES = {
    # name: (files written under app/ and lib/, main.lisp, (file, line, col), message fragment)
    "missing-module": ({}, "(print 1)\n  (require nope)\n", ("app/main.lisp", 2, 3),
                       "require nope: no file nope.lisp in "),
    "missing-name-called": ({}, "(require util)\n(print (+ 1 (util/nope 2)))\n", ("app/main.lisp", 2, 14),
                            "util/nope: module util does not define nope"),
    "missing-name-referenced": ({}, "(require util)\n(print 1\n   util/gone)\n", ("app/main.lisp", 3, 4),
                                "util/gone: module util does not define gone"),
    "missing-name-in-module": ({"lib/m.lisp": "(module m)\n(def f () (m/g))\n"}, "(require m)\n",
                               ("lib/m.lisp", 2, 12), "m/g: module m does not define g"),
    "missing-name-in-nested-fn": ({}, "(require util)\n(def f (x)\n  (let ((y x)) (fn () (util/sqr y))))\n",
                                  ("app/main.lisp", 3, 24), "util/sqr: module util does not define sqr"),
    "cycle": ({"lib/a.lisp": "(module a)\n(require b)\n", "lib/b.lisp": "(module b)\n\n (require a)\n"},
              "(require a)\n", ("lib/b.lisp", 3, 2), "require a: a cycle of requires (a -> b -> a)"),
    "self-require": ({"lib/a.lisp": "(module a)\n(require a)\n"}, "(require a)\n", ("lib/a.lisp", 2, 1),
                     "a cycle of requires (a -> a)"),
    "cycle-through-the-program": ({"lib/x.lisp": "(module x)\n(require m)\n", "app/m.lisp": "(module m)\n"},
                                  "(module m)\n(require x)\n", ("lib/x.lisp", 2, 1),
                                  "a cycle of requires (m -> x -> m)"),
    "misnamed-module": ({"app/w.lisp": "(module other)\n"}, "(require w)\n", ("app/main.lisp", 1, 1),
                        "w.lisp is not module w (it has (module other);"),
    "not-a-module": ({"app/plain.lisp": "(print 1)\n"}, "\n(require plain)\n", ("app/main.lisp", 2, 1),
                     "is not module plain (it has no (module ...) form"),
    "require-in-a-function": ({}, "(def f ()\n  (require util))\n", ("app/main.lisp", 2, 3),
                              "require is allowed only as a top-level form of a file"),
    "module-not-first": ({}, "(print 1)\n(module m)\n", ("app/main.lisp", 2, 1),
                         "(module NAME) is allowed only as the first form of a file"),
    "require-of-a-string": ({}, '(require "util")\n', ("app/main.lisp", 1, 1),
                            "require: expected (require NAME) with NAME a symbol"),
    "require-of-two": ({}, "(require util shapes)\n", ("app/main.lisp", 1, 1), "require: expected (require NAME)"),
    "module-without-name": ({}, "(module)\n", ("app/main.lisp", 1, 1), "module: expected (module NAME)"),
    "require-of-a-path": ({}, "(require ../lib/util)\n", ("app/main.lisp", 1, 1),
                          "require: '../lib/util' is not a module name"),
    "module-named-like-builtins": ({}, "(module list)\n", ("app/main.lisp", 1, 1),
                                   "module: the module name list is taken by the builtins (list/...)"),
    "builtin-redefined-in-module": ({"lib/m.lisp": "(module m)\n(def print (x) x)\n"}, "(require m)\n",
                                    ("lib/m.lisp", 2, 1), "def: cannot redefine the builtin print"),
    "syntax-error-in-module": ({"lib/m.lisp": "(module m)\n(def f (x)\n  (+ x 1)\n"}, "(require m)\n",
                               ("lib/m.lisp", 2, 1), ""),
    "same-name-two-files": ({"app/util.lisp": UTIL}, "(require util)\n(require shapes)\n",
                            ("lib/shapes.lisp", 2, 1), "require util: found "),
    "def-of-another-modules-name": ({}, "(require util)\n(def util/square (x) x)\n", ("app/main.lisp", 2, 1),
                                    "def: util/square belongs to module util"),
    "def-of-another-modules-name-in-a-module": ({"lib/m.lisp": "(module m)\n(require util)\n(def util/hits 1)\n"},
                                                "(require m)\n", ("lib/m.lisp", 3, 1),
                                                "def: util/hits belongs to module util"),
    "not-utf8": ({"lib/bin.lisp": b"(module bin)\n\xff\xfe\n"}, "(require bin)\n", ("app/main.lisp", 1, 1),
                 "require bin: cannot read "),
}


@pytest.mark.parametrize("case", CASES)
def test_refused_with_its_position(project: Path, case: str) -> None:
    files, main, (file, line, col), fragment = CASES[case]
    tree(project, files)
    with pytest.raises(CompileError) as info:
        compile_main(project, main)
    e = info.value
    assert (e.file, e.line, e.col) == (str(project / file), line, col), str(e)
    assert fragment in e.message, str(e)
    assert "\n" not in str(e)


def test_requires_nested_too_deep_are_refused(tmp_path: Path) -> None:
    n = MAX_REQUIRE_DEPTH + 2
    tree(tmp_path, {f"lib/m{i}.lisp": f"(module m{i})\n(require m{i + 1})\n" for i in range(n)})
    tree(tmp_path, {f"lib/m{n}.lisp": f"(module m{n})\n", "app/main.lisp": "(require m0)\n"})
    with pytest.raises(CompileError, match=f"modules required more than {MAX_REQUIRE_DEPTH} deep"):
        compile_main(tmp_path)
    # the program and MAX_REQUIRE_DEPTH modules, one inside the other, are fine, and every
    # module is bundled once, deepest first
    first = n - MAX_REQUIRE_DEPTH + 1
    tree(tmp_path, {"app/main.lisp": f"(require m{first})\n(print (m{first}/x))\n",
                    f"lib/m{n}.lisp": f"(module m{n})\n(def x () 7)\n"})
    for i in range(first, n):
        tree(tmp_path, {f"lib/m{i}.lisp": f"(module m{i})\n(require m{i + 1})\n(def x () (m{i + 1}/x))\n"})
    module = compile_main(tmp_path)
    assert [m.name for m in module.bundled] == [f"m{i}" for i in range(n, first - 1, -1)]
    assert len(module.bundled) == MAX_REQUIRE_DEPTH
    assert run_here(lbc.dump(module))[0] == ["7"]


def test_a_module_macro_is_used_only_by_its_qualified_name(project: Path) -> None:
    """`util/swap-args` is the macro; a bare `swap-args` in the program is an ordinary call of
    an undefined global, found when it runs."""
    out, err, status = run_here(lbc.dump(compile_main(project, "(require util)\n(print (swap-args - 1 10))\n")))
    assert status == 1 and "main.lisp:2:8: error: undef: undefined function swap-args" in err


def test_a_runtime_error_in_module_code_names_the_module_file(project: Path) -> None:
    out, err, status = run_here(lbc.dump(compile_main(project, "(require util)\n(util/boom 1)\n")))
    assert status == 1 and f"{project / 'lib' / 'util.lisp'}:11:15: " in err, err


# --- the .lbc file ----------------------------------------------------------------------------

def test_bundled_file_round_trips_through_load_and_assembly(project: Path) -> None:
    data = lbc.dump(compile_main(project))
    loaded = lbc.load(data)
    assert [u.name for u in loaded.units()] == ["util", "shapes", "counter", ""]
    assert len({u.key for u in loaded.units()}) == 4  # each unit is found by its own key
    for unit in loaded.units():
        verify(unit, frozenset(BUILTINS))
    assert lbc.dump(loaded) == data
    text = disassemble(loaded)
    assert text.count("\n.module ") == 4 and '.module "' + str(project / "lib" / "util.lisp") + '" name="util"' in text
    assert lbc.dump(assemble(text, "x.lasm")) == data


def test_every_truncation_and_bit_flip_of_a_bundled_file_is_refused(project: Path) -> None:
    data = lbc.dump(compile_main(project))
    for n in range(len(data)):
        with pytest.raises(BadBytecode):
            lbc.load(data[:n])
    for i in range(20, min(len(data), 120)):  # the unit table and the first unit's start
        for bit in range(8):
            damaged = bytearray(data)
            damaged[i] ^= 1 << bit
            with pytest.raises(BadBytecode, match="checksum mismatch"):
                lbc.load(bytes(damaged))


def test_damaged_unit_tables_are_refused(project: Path) -> None:
    module = compile_main(project)

    def refused(m: lbc.Module) -> str:
        with pytest.raises(BadBytecode) as info:
            lbc.load(lbc.dump(m))
        return info.value.reason

    module.bundled[1].name = "util"
    assert refused(module) == "module bundled twice"
    module.bundled[1].name = ""
    assert refused(module) == "bad module name"
    module.bundled[1].name = "../x"
    assert refused(module) == "bad module name"
    module.bundled[1].name = "shapes"
    module.name = "util"
    assert refused(module) == "module bundled twice"
    module.name = ""
    data = bytearray(lbc.dump(module))
    data[8] = 2  # a format-2 file (the header's version, checksum recomputed)
    data[16:20] = zlib.crc32(bytes(data[20:]), zlib.crc32(bytes(data[:16]))).to_bytes(4, "little")
    with pytest.raises(BadBytecode, match="unsupported format version 2; this lispvm reads version 3: "
                                          "compile the program again from its source"):
        lbc.load(bytes(data))


@pytest.mark.parametrize("text, message", [
    ('.module "a.lisp"\n.function 0 "main" params=0 rest=0 regs=1\n 0: RETURN 0 @1:1\n.end\n'
     '.module "b.lisp"\n.function 0 "main" params=0 rest=0 regs=1\n 0: RETURN 0 @1:1\n.end\n',
     'a bundled .module needs name="NAME"'),
    ('.module "a.lisp" name="a"\n.module "b.lisp"\n', "a .module needs at least one .function"),
    ('.module "a.lisp" name="a b"\n', "bad module name 'a b'"),
    ('.module "a.lisp" name="a"\n.function 0 "main" params=0 rest=0 regs=1\n 0: RETURN 0 @1:1\n.end\n'
     '.module "b.lisp" name="a"\n', "module a is bundled twice"),
    ('.module "a.lisp" nom="a"\n', '.module "FILE" name="NAME"'),
])
def test_bad_module_lines_in_assembly(text: str, message: str) -> None:
    with pytest.raises(CompileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        assemble(text, "m.lasm")


# --- the command: asm, dis, run, on one and three schedulers ------------------------------------

SPREAD = """(require util)
(def me (self))
(spawn-on 1 (fn () (send me (list (sys/scheduler-id) (util/fourth 2) ((util/adder 1) 1)))))
(print (receive (x x)))
(def add5 (util/adder 5))
(def p (spawn-on 2 (fn () (receive (f (send me (list (sys/scheduler-id) (f 1) (util/hit))))))))
(send p add5)
(print (receive (x x)))
(send p 'late)
"""


def test_the_command_bundles_modules_and_runs_without_sources(project: Path) -> None:
    env = {PATH_ENV: str(project / "lib")}
    app, out = project / "app", project / "out"
    out.mkdir()
    tree(project, {"app/spread.lisp": SPREAD})
    for name in ("main", "spread"):
        r = lispvm("asm", str(app / f"{name}.lisp"), "-o", str(out / f"{name}.lbc"), env=env)
        assert (r.returncode, r.stderr) == (0, "")
    r = lispvm("run", "--schedulers", "1", str(app / "main.lisp"), env=env)  # straight from source
    assert (r.stdout.splitlines(), r.stderr, r.returncode) == (MAIN_OUT, "", 0)
    shutil.rmtree(project / "lib")  # the .lbc needs no source, nor LISPVM_PATH
    shutil.rmtree(app)
    for n in ("1", "3"):
        r = lispvm("run", "--schedulers", n, str(out / "main.lbc"), env={PATH_ENV: ""})
        assert (r.stdout.splitlines(), r.stderr, r.returncode) == (MAIN_OUT, "", 0), n
    # module code runs on schedulers 1 and 2 (other OS processes), and a closure made by a
    # module travels in a message: each scheduler loaded every bundled module
    r = lispvm("run", "--schedulers", "3", str(out / "spread.lbc"), env={PATH_ENV: ""}, timeout=60)
    assert (r.stdout.splitlines(), r.stderr, r.returncode) == (["util loaded", "(1 16 2)", "(2 6 1)"], "", 0)
    r = lispvm("dis", str(out / "main.lbc"), "-o", str(out / "main.lasm"))
    assert r.returncode == 0
    r = lispvm("asm", str(out / "main.lasm"), "-o", str(out / "again.lbc"))
    assert r.returncode == 0
    assert (out / "again.lbc").read_bytes() == (out / "main.lbc").read_bytes()


def test_the_command_reports_a_missing_module_in_one_line(tmp_path: Path) -> None:
    tree(tmp_path, {"main.lisp": "(print 1)\n(require nowhere)\n"})
    r = lispvm("run", str(tmp_path / "main.lisp"), env={PATH_ENV: str(tmp_path / "lib")})
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith(f"{tmp_path / 'main.lisp'}:2:1: require nowhere: no file nowhere.lisp in ")
    assert r.stderr.count("\n") == 1
