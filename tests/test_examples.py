"""Whole programs through `lispvm run`: every ../shared/examples program against its .out, and
the project's own programs in tests/programs/ (clox style: each states its expected output in
`; expect: TEXT` comment lines, one per output line, in order).

Other directives in a program's comments:
    ; args: A B          the arguments after the file name, split on spaces
    ; expect-exit: N     the exit status (default 0); standard error must then be empty
    ; expect-error: L:C  the program fails: status 1, one line on stderr at FILE:L:C

Every program runs with the default schedulers, with one, with three and without the fast tier:
the output must not depend on that."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import run_cli

from support import opencl

Runner = Callable[..., tuple[str, str, int]]
RUNS_PROGRAMS = True  # conftest: the GPU example gets the `opencl` mark here
PROGRAMS = Path(__file__).resolve().parent / "programs"
FLAGS = [
    pytest.param((), id="default"),
    pytest.param(("--schedulers", "1"), id="one"),
    pytest.param(("--schedulers", "3"), id="three"),
    pytest.param(("--no-jit", "--schedulers", "1"), id="nojit"),
]
_DIRECTIVE = re.compile(r";\s*(expect|expect-exit|expect-error|args):(?: (.*))?$")


@dataclass
class Expected:
    """What a tests/programs file says it does."""

    lines: list[str] = field(default_factory=list)  # standard output, line by line
    status: int = 0  # exit status
    error_at: str | None = None  # "LINE:COL" of the uncaught error, if the program fails
    args: list[str] = field(default_factory=list)  # (sys/args)


def parse_expectations(text: str) -> Expected:
    """The directives in `text`'s comments, in order."""
    exp = Expected()
    for line in text.splitlines():
        m = _DIRECTIVE.search(line)
        if m is None:
            continue
        key, value = m.group(1), m.group(2) or ""
        if key == "expect":
            exp.lines.append(value)
        elif key == "expect-exit":
            exp.status = int(value)
        elif key == "expect-error":
            exp.error_at, exp.status = value.strip(), 1
        else:
            exp.args = value.split()
    return exp


def test_parse_expectations() -> None:
    exp = parse_expectations("; expect: a  b\n(print 1) ; expect: 1\n; expect:\n; args: x y\n; expect-error: 3:4\n")
    assert exp == Expected(["a  b", "1", ""], 1, "3:4", ["x", "y"])


# --- ../shared/examples --------------------------------------------------------------------

@pytest.mark.parametrize("flags", FLAGS)
def test_shared_example(example: Path, flags: tuple[str, ...]) -> None:
    if "gpu" in example.stem and opencl()[1]:
        pytest.skip(opencl()[1])
    expected = example.with_suffix(".out").read_text(encoding="utf-8")
    out, err, status = run_cli(["run", *flags, example.name], cwd=example.parent, timeout=60)
    assert status == 0, err
    assert out == expected
    assert "Traceback" not in err


# --- tests/programs ------------------------------------------------------------------------

def _programs() -> list:
    return [pytest.param(p, id=p.stem) for p in sorted(PROGRAMS.glob("*.lisp"))]


def test_the_project_programs_are_there() -> None:
    names = {p.stem for p in PROGRAMS.glob("*.lisp")}
    assert {"arithmetic", "strings", "lists", "predicates", "closures", "control", "macros", "errors",
            "tailcalls", "printing", "halt", "crash", "args"} <= names


@pytest.mark.parametrize("flags", FLAGS)
@pytest.mark.parametrize("program", _programs())
def test_program(program: Path, flags: tuple[str, ...]) -> None:
    exp = parse_expectations(program.read_text(encoding="utf-8"))
    assert exp.lines or exp.status, f"{program.name} states no expectations"
    out, err, status = run_cli(["run", *flags, program.name, *exp.args], cwd=program.parent, timeout=60)
    assert "Traceback" not in err, err
    assert out.splitlines() == exp.lines
    assert out == "".join(line + "\n" for line in exp.lines), "every print ends its line"
    assert status == exp.status, err
    if exp.error_at is None:
        assert err == ""
    else:
        assert err.count("\n") == 1 and err.startswith(f"{program.name}:{exp.error_at}: "), err
