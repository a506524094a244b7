"""The `lispvm` command (../shared/spec/CLI.md and LANGUAGE.md section 8), through subprocesses:
usage errors, unreadable files, default output names, `(sys/args)`, `(halt)`, uncaught errors
with their positions, the order of output, and a start-up that loads only what it needs."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import lispvm_command

Runner = Callable[..., tuple[str, str, int]]
HELLO = '(print "hello")\n'


def one_line(err: str) -> str:
    """The single line of `err` (asserts there is exactly one, and no traceback)."""
    assert "Traceback" not in err, err
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    return err[:-1]


def last_line(err: str) -> str:
    assert "Traceback" not in err, err
    return err.rstrip("\n").split("\n")[-1]


# --- usage ---------------------------------------------------------------------------------

def test_no_arguments_is_a_usage_error(cli: Runner) -> None:
    out, err, status = cli()
    assert status == 2 and out == "" and "usage" in err.lower() and "Traceback" not in err


@pytest.mark.parametrize("args", [
    ("frobnicate",), ("run",), ("asm",), ("dis",), ("run", "--reductions", "0", "p.lbc"),
    ("run", "--reductions", "-5", "p.lbc"), ("run", "--reductions", "x", "p.lbc"),
    ("run", "--schedulers", "0", "p.lbc"), ("trace", "t.jsonl"), ("run", "--bogus", "p.lbc"),
], ids=lambda a: " ".join(a) or "none")
def test_usage_errors_exit_2(cli: Runner, tmp_path: Path, args: tuple[str, ...]) -> None:
    (tmp_path / "p.lisp").write_text(HELLO)
    assert cli("asm", "p.lisp")[2] == 0
    out, err, status = cli(*args)
    assert status == 2, err
    assert out == ""
    assert last_line(err).startswith("lispvm: "), err


@pytest.mark.parametrize("command", ["run", "dis", "asm"])
@pytest.mark.parametrize("name", ["missing.lbc", "missing.lisp", "folder.lbc"])
def test_unreadable_files_exit_2_with_one_line(cli: Runner, tmp_path: Path, command: str, name: str) -> None:
    (tmp_path / "folder.lbc").mkdir()
    out, err, status = cli(command, name)
    assert status == 2, err
    assert out == ""
    line = one_line(err)
    assert name in line and "cannot read" in line, line


def test_source_that_is_not_utf8_exits_2(cli: Runner, tmp_path: Path) -> None:
    (tmp_path / "latin.lisp").write_bytes(b'(print "caf\xe9")\n')
    out, err, status = cli("run", "latin.lisp")
    assert status == 2 and out == ""
    assert "latin.lisp" in one_line(err)


# --- asm, dis, run -------------------------------------------------------------------------

def test_asm_writes_the_default_output_name(cli: Runner, tmp_path: Path) -> None:
    sub = tmp_path / "sub.dir"
    sub.mkdir()
    (sub / "prog.lisp").write_text(HELLO)
    assert cli("asm", "sub.dir/prog.lisp") == ("", "", 0)
    assert (sub / "prog.lbc").read_bytes()[:4] == b"\x89LBC"
    assert not (tmp_path / "sub.lbc").exists()
    assert cli("run", "sub.dir/prog.lbc") == ("hello\n", "", 0)


def test_asm_with_o_and_dis_to_stdout(cli: Runner, tmp_path: Path) -> None:
    (tmp_path / "prog.lisp").write_text(HELLO)
    assert cli("asm", "prog.lisp", "-o", "other.lbc") == ("", "", 0)
    assert not (tmp_path / "prog.lbc").exists()
    out, err, status = cli("dis", "other.lbc")
    assert status == 0 and err == ""
    assert out.startswith("; lispvm assembly") and ".module" in out and "CALLB" in out


def test_asm_of_a_bad_source_writes_nothing(cli: Runner, tmp_path: Path) -> None:
    (tmp_path / "bad.lisp").write_text("(print 1\n")
    out, err, status = cli("asm", "bad.lisp")
    assert status == 1 and out == ""
    assert one_line(err).startswith("bad.lisp:1:1: ")
    assert not (tmp_path / "bad.lbc").exists()


def test_run_a_source_file_directly(run_lisp: Runner) -> None:
    assert run_lisp("(def f (x) (* x x))\n(print (f 12))\n") == ("144\n", "", 0)


def test_run_an_empty_program(run_lisp: Runner) -> None:
    assert run_lisp("") == ("", "", 0)
    assert run_lisp("; nothing but a comment\n") == ("", "", 0)


ARGS = "(print (sys/args))\n(print (length (sys/args)))\n"


@pytest.mark.parametrize("args, expected", [
    ((), "nil\n0\n"),
    (("10", "x"), '("10" "x")\n2\n'),
    (("-y", "--reductions", "3"), '("-y" "--reductions" "3")\n3\n'),
    (("", "a b", "\u00e9"), '("" "a b" "\u00e9")\n3\n'),
])
def test_sys_args(cli: Runner, tmp_path: Path, args: tuple[str, ...], expected: str) -> None:
    (tmp_path / "prog.lisp").write_text(ARGS)
    assert cli("asm", "prog.lisp")[2] == 0
    assert cli("run", "prog.lbc", *args) == (expected, "", 0)
    assert cli("run", "prog.lisp", *args) == (expected, "", 0)


def test_flags_before_the_file_are_the_commands(run_lisp: Runner) -> None:
    out, err, status = run_lisp(ARGS, ["7"], flags=["--schedulers", "1", "--reductions", "10", "--no-jit"])
    assert (out, err, status) == ('("7")\n1\n', "", 0)


# --- exit statuses and errors --------------------------------------------------------------

@pytest.mark.parametrize("code", [0, 3, 42])
def test_halt_sets_the_exit_status(run_lisp: Runner, code: int) -> None:
    out, err, status = run_lisp(f'(print "before")\n(halt {code})\n(print "after")\n')
    assert (out, err, status) == ("before\n", "", code)


def test_halt_from_another_process_ends_the_node(run_lisp: Runner) -> None:
    src = '(spawn (fn () (print "child") (halt 5)))\n(receive (x x))\n'
    out, err, status = run_lisp(src, timeout=30)
    assert (out, status) == ("child\n", 5)


def test_uncaught_error_names_the_line(run_lisp: Runner) -> None:
    src = '(print "one")\n(def f (x)\n  (head x))\n(print "two")\n(f nil)\n(print "never")\n'
    out, err, status = run_lisp(src, name="crash.lisp")
    assert status == 1
    assert out == "one\ntwo\n"
    line = one_line(err)
    assert line.startswith("crash.lisp:3:3: "), line
    assert "badarg" in line


@pytest.mark.parametrize("src, line, words", [
    ('(print 1)\n\n   (error "it broke")\n', 3, "it broke"),
    ("(print 1)\n(throw (list 'oops 42))\n", 2, "(oops 42)"),
    ("(print 1)\n(undefined-function 1)\n", 2, "undef"),
    ("(print 1)\n(+ 1\n   (* 2 \"s\"))\n", 3, "badarg"),
    ("(def g (a b) a)\n(print 1)\n(g 1)\n", 3, "badarity"),
])
def test_uncaught_error_kinds(run_lisp: Runner, src: str, line: int, words: str) -> None:
    out, err, status = run_lisp(src, name="e.lisp")
    assert status == 1 and out == "1\n"
    text = one_line(err)
    assert text.startswith(f"e.lisp:{line}:"), text
    assert words in text


def test_uncaught_error_in_a_compiled_file(cli: Runner, tmp_path: Path) -> None:
    (tmp_path / "e.lisp").write_text('(print "a")\n\n(head nil)\n')
    assert cli("asm", "e.lisp")[2] == 0
    out, err, status = cli("run", "e.lbc")
    assert status == 1 and out == "a\n"
    assert one_line(err).startswith("e.lisp:3:1: ")


def test_main_process_exit_with_a_reason(run_lisp: Runner) -> None:
    out, err, status = run_lisp("(print 1)\n(exit 'bye)\n(print 2)\n")
    assert status == 1 and out == "1\n"
    assert "bye" in one_line(err)


def test_main_process_normal_exit(run_lisp: Runner) -> None:
    assert run_lisp("(print 1)\n(exit 'normal)\n(print 2)\n") == ("1\n", "", 0)


def test_debug_variable_is_not_needed_for_a_clean_message(run_lisp: Runner) -> None:
    _, err, status = run_lisp("(head nil)\n", env={"LISPVM_DEBUG": ""})
    assert status == 1 and "Traceback" not in err


# --- output --------------------------------------------------------------------------------

def _merged(tmp_path: Path, src: str, *flags: str) -> tuple[str, int]:
    """Run with stderr merged into stdout, to see the order of the two."""
    (tmp_path / "m.lisp").write_text(src, encoding="utf-8")
    r = subprocess.run(lispvm_command() + ["run", *flags, "m.lisp"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, cwd=tmp_path, timeout=60)
    return r.stdout, r.returncode


@pytest.mark.parametrize("flags", [(), ("--schedulers", "1")], ids=["default", "one"])
def test_output_comes_before_the_error_report(tmp_path: Path, flags: tuple[str, ...]) -> None:
    src = "".join(f"(print {i})\n" for i in range(200)) + "(head nil)\n"
    out, status = _merged(tmp_path, src, *flags)
    lines = out.splitlines()
    assert status == 1
    assert lines[:200] == [str(i) for i in range(200)]
    assert len(lines) == 201 and lines[200].startswith("m.lisp:201:1: ")


def test_halt_flushes_output(tmp_path: Path) -> None:
    src = "".join(f"(print {i} \"{'x' * 50}\")\n" for i in range(2000)) + "(halt 4)\n"
    out, status = _merged(tmp_path, src)
    assert status == 4
    assert len(out.splitlines()) == 2000 and out.endswith(f"1999 {'x' * 50}\n")


def test_print_lines_from_processes_are_whole_and_in_order(run_lisp: Runner) -> None:
    src = """
    (def me (self))
    (def worker (k) (list/map (fn (i) (print k i (str/join "" (list/map (fn (j) "ab") (list/range 30)))))
                              (list/range 100))
                    (send me 'done))
    (list/map (fn (k) (spawn worker k)) (list/range 4))
    (list/map (fn (k) (recv)) (list/range 4))
    (print "end")
    """
    out, err, status = run_lisp(src, timeout=60)
    assert status == 0, err
    lines = out.splitlines()
    assert lines[-1] == "end" and len(lines) == 401
    tail = "ab" * 30
    per_worker: dict[str, list[int]] = {}
    for line in lines[:-1]:
        k, i, rest = line.split(" ")
        assert rest == tail, line
        per_worker.setdefault(k, []).append(int(i))
    assert per_worker == {str(k): list(range(100)) for k in range(4)}


def test_print_forms(run_lisp: Runner) -> None:
    src = '(print)\n(print "a" 1 2.5 \'s nil true (list "x" 1) [\"y\"])\n(print "tab\\there")\n'
    assert run_lisp(src) == ('\na 1 2.5 s nil true ("x" 1) ["y"]\ntab\there\n', "", 0)


# --- start-up ------------------------------------------------------------------------------

WRAPPER = """
import sys
from lispvm.scheduler.cli import main
status = main(sys.argv[1:])
sys.stdout.flush()
heavy = sorted(m for m in sys.modules
               if m.split(".")[0] in ("numpy", "pyopencl", "multiprocessing", "structlog", "cffi")
               or m.startswith("lispvm.assembler"))
sys.stderr.write("MODULES " + " ".join(heavy) + "\\n")
sys.exit(status)
"""


@pytest.mark.parametrize("flags", [(), ("--schedulers", "1"), ("--no-jit",)], ids=["default", "one", "nojit"])
def test_hello_loads_no_heavy_modules(tmp_path: Path, flags: tuple[str, ...]) -> None:
    (tmp_path / "hello.lisp").write_text(HELLO)
    (tmp_path / "wrap.py").write_text(WRAPPER)
    r = subprocess.run([sys.executable, "-m", "lispvm.scheduler.cli", "asm", "hello.lisp"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "wrap.py", "run", *flags, "hello.lbc"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "hello\n", r.stderr
    modules = r.stderr.split("MODULES")[1].split()
    assert modules == [], f"`lispvm run hello.lbc` imported {modules}"


def test_hello_source_loads_the_compiler_but_not_numpy(tmp_path: Path) -> None:
    (tmp_path / "hello.lisp").write_text(HELLO)
    (tmp_path / "wrap.py").write_text(WRAPPER)
    r = subprocess.run([sys.executable, "wrap.py", "run", "hello.lisp"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "hello\n", r.stderr
    modules = r.stderr.split("MODULES")[1].split()
    assert not [m for m in modules if not m.startswith("lispvm.assembler")], modules


def test_importtime_of_a_hello_run(tmp_path: Path) -> None:
    (tmp_path / "hello.lisp").write_text(HELLO)
    subprocess.run([sys.executable, "-m", "lispvm.scheduler.cli", "asm", "hello.lisp"], cwd=tmp_path, timeout=60,
                   check=True)
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "lispvm.scheduler.cli", "run", "hello.lbc"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "hello\n"
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    for heavy in ("numpy", "pyopencl", "multiprocessing"):
        assert heavy not in imported, heavy


# --- issue 12, item 13: a macro that never ends --------------------------------------------------

@pytest.mark.parametrize("body", ["(def loop (n) (loop (+ n 1))) (loop 0)", "(def d (n) (+ 1 (d n))) (d 0)"],
                         ids=["tail-loop", "deep-recursion"])
def test_an_endless_macro_is_a_compile_error_at_its_call(cli: Runner, tmp_path: Path, body: str) -> None:
    """It hung `lispvm asm` for ever; now its reduction budget ends it with one line, status 1."""
    (tmp_path / "m.lisp").write_text(f"(defmacro forever (x) {body})\n(print 1)\n(print\n  (forever 3))\n",
                                     encoding="utf-8")
    for args in (("asm", "m.lisp"), ("run", "m.lisp")):
        out, err, status = cli(*args, timeout=120)
        assert (out, status) == ("", 1)
        assert one_line(err) == ("m.lisp:4:3: macro forever did not finish within 1,000,000 reductions"
                                 " (an endless loop?)")
    assert not (tmp_path / "m.lbc").exists()


def test_a_busy_macro_under_its_budget_expands(run_lisp: Runner) -> None:
    src = ("(defmacro sum-to (n) (def s (i acc) (if (= i 0) acc (s (- i 1) (+ acc i)))) (s n 0))\n"
           "(print (sum-to 100000))\n")
    assert run_lisp(src, timeout=120) == ("5000050000\n", "", 0)


# --- issue 12, item 16 ---------------------------------------------------------------------------

def test_an_unwritable_trace_file_is_a_usage_error(cli: Runner, tmp_path: Path) -> None:
    (tmp_path / "h.lisp").write_text(HELLO, encoding="utf-8")
    out, err, status = cli("run", "--trace", str(tmp_path / "no" / "such" / "t.jsonl"), "h.lisp")
    assert (out, status) == ("", 2)
    assert one_line(err) == f"lispvm: cannot write {tmp_path / 'no' / 'such' / 't.jsonl'}: No such file or directory"


@pytest.mark.parametrize("name", ["bom.lisp", "bom.lasm"])
def test_a_byte_order_mark_is_skipped(cli: Runner, tmp_path: Path, name: str) -> None:
    """Editors on Windows start UTF-8 files with U+FEFF: it is not part of the first symbol."""
    if name.endswith(".lasm"):
        (tmp_path / "h.lisp").write_text(HELLO, encoding="utf-8")
        assert cli("asm", "h.lisp")[2] == 0
        text = cli("dis", "h.lbc")[0]
    else:
        text = HELLO
    (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert cli("run", name) == ("hello\n", "", 0)


def test_dump_compile_prints_the_assembly(cli: Runner, tmp_path: Path) -> None:
    (tmp_path / "h.lisp").write_text(HELLO, encoding="utf-8")
    out, err, status = cli("asm", "--dump=compile", "h.lisp")
    assert (err, status) == ("", 0)
    assert out == cli("dis", "h.lbc")[0]
    assert "CALLB" in out and '.const 0 "hello"' in out
