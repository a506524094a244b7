"""The benchmark programs of perf/ (Gabriel- and Savina-style) give the answer of their Python
twins (perf/gabriel_py.py, perf/savina_py.py) in every tier, at small sizes: interpreted, with
every function compiled at its first call (LISPVM_JIT=eager) and by default; the actor programs
also on 2 schedulers. The benchmarks check the same answers before timing, but only at full size
and only when someone runs them: a fast-tier change that miscounts one of them (a folded
expression moved past a write of its operand once made mandelbrot print 623 for 425) must fail
here first."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from test_differential import run_mode

PERF = Path(__file__).resolve().parents[1] / "perf"

# small arguments: enough turns for every loop to run compiled in the eager mode
GABRIEL = {"tak": 1, "nqueens": 1, "deriv": 300, "sieve": 1, "strings": 1, "mandelbrot": 30,
           "mergesort": 3000, "listsort": 3000}
SAVINA = {"pingpong": (500,), "count": (3000,), "threadring": (3000, 20), "fjthroughput": (60, 8),
          "fjcreate": (400,), "big": (40, 20), "chameneos": (400, 10), "fibactors": (12,)}


def _twin(name: str) -> ModuleType:
    """perf/NAME.py, imported from its path (perf/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"perf_{name}", PERF / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _run(path: Path, args: tuple, mode: str, schedulers: int = 1) -> tuple[str, str, int]:
    """Run a program in this OS process in one mode: (stdout, stderr, exit status)."""
    out, err, status, _, _ = run_mode(path.read_text(encoding="utf-8"), mode, tuple(map(str, args)), path.name,
                                      schedulers)
    return out, err, status


@pytest.mark.parametrize("mode", ["interpreted", "eager", "default"])
@pytest.mark.parametrize("name", list(GABRIEL))
def test_gabriel_programs_give_the_python_answer(name: str, mode: str) -> None:
    fn = _twin("gabriel_py").PROGRAMS[name][0]
    arg = GABRIEL[name]
    out, err, status = _run(PERF / "programs" / "gabriel" / f"{name}.lisp", (arg,), mode)
    assert (out, status) == (f"{fn(arg)}\n", 0), err


@pytest.mark.parametrize(("mode", "schedulers"), [("interpreted", 1), ("eager", 1), ("default", 1), ("default", 2)])
@pytest.mark.parametrize("name", list(SAVINA))
def test_savina_programs_give_the_asyncio_answer(name: str, mode: str, schedulers: int) -> None:
    fn = _twin("savina_py").PROGRAMS[name][0]
    args = SAVINA[name]
    out, err, status = _run(PERF / "programs" / "savina" / f"{name}.lisp", args, mode, schedulers)
    assert (out, status) == (f"{asyncio.run(fn(*args))}\n", 0), err
