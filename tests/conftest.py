"""Shared fixtures: run Lisp programs through the `lispvm` command, and the shared programs.

- `run_lisp(source, args=(), flags=(), ...)`: write `source` to a file under the test's
  tmp_path, run `lispvm run [FLAGS] FILE [ARGS]` in a subprocess, return (stdout, stderr, status).
- `cli(*args)`: run the `lispvm` command with the test's tmp_path as working directory.
- `busy_loops` (module-scoped): two CPU-burning processes run beside the module's tests.
- Tests that take an argument named `example` or `bench_program` are parametrised over
  ../shared/examples/*.lisp and ../shared/bench/*.lisp (CI checks the repository out with
  `shared/` beside it); without that folder they skip, with the reason. In a module that sets
  `RUNS_PROGRAMS = True`, the GPU example carries the `opencl` mark.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import pytest

from support import BusyLoops, lispvm_command, run_command

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
EXAMPLES = SHARED / "examples"
BENCH = SHARED / "bench"
TIMEOUT = 60.0  # seconds; a hung VM fails the test instead of the whole run


def pytest_configure(config: pytest.Config) -> None:
    """Register the marks the stress tests use (pyproject lists the project-wide ones)."""
    config.addinivalue_line("markers", "stress: runs a program with busy loops competing for the cores")
    config.addinivalue_line("markers", "chaos: runs a program under LISPVM_CHAOS=SEED (the seed is in the test id)")


@pytest.fixture(scope="module")
def busy_loops() -> Iterator[BusyLoops]:
    """Two CPU-burning processes beside every test of the module that asks for it; stopped after."""
    with BusyLoops(2) as loops:
        yield loops


def run_cli(args: Sequence[str], *, cwd: Path | str | None = None, timeout: float = TIMEOUT,
            env: dict[str, str] | None = None, input: str | None = None) -> tuple[str, str, int]:
    """Run `lispvm ARGS`: (stdout, stderr, exit status). LISPVM_DEBUG is removed from the env.

    The command runs in its own process group: if it hangs past `timeout`, the whole group
    (schedulers and the device process included) is killed and the test fails.
    """
    full_env = {k: v for k, v in os.environ.items() if k != "LISPVM_DEBUG"}
    full_env.update(env or {})
    r = run_command(lispvm_command() + [str(a) for a in args], timeout=timeout, cwd=cwd, env=full_env, input=input)
    return r.stdout, r.stderr, r.returncode


def run_lisp_in(directory: Path, source: str, args: Iterable[str] = (), *, flags: Iterable[str] = (),
                name: str = "prog.lisp", timeout: float = TIMEOUT,
                env: dict[str, str] | None = None) -> tuple[str, str, int]:
    """Write `source` to DIRECTORY/NAME and run `lispvm run FLAGS NAME ARGS` from DIRECTORY."""
    path = directory / name
    path.write_text(source, encoding="utf-8")
    return run_cli(["run", *flags, name, *args], cwd=directory, timeout=timeout, env=env)


@pytest.fixture
def run_lisp(tmp_path: Path) -> Callable[..., tuple[str, str, int]]:
    """`run_lisp(source, args=(), flags=(), name="prog.lisp", timeout=...)` -> (out, err, status)."""

    def run(source: str, args: Iterable[str] = (), **kw: object) -> tuple[str, str, int]:
        return run_lisp_in(tmp_path, source, args, **kw)  # type: ignore[arg-type]

    return run


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., tuple[str, str, int]]:
    """`cli(*args, timeout=..., env=...)`: run `lispvm ARGS` in tmp_path."""

    def run(*args: str | Path, **kw: object) -> tuple[str, str, int]:
        return run_cli([str(a) for a in args], cwd=tmp_path, **kw)  # type: ignore[arg-type]

    return run


def shared_programs(folder: Path) -> list[Path]:
    """The .lisp files of a shared folder, sorted (empty if the folder is missing)."""
    return sorted(folder.glob("*.lisp")) if folder.is_dir() else []


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared, or skip if the checkout does not have it beside the repository."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is missing (CI checks out shared/ beside the repository)")
    return SHARED


@pytest.fixture(scope="session")
def example_programs(shared_dir: Path) -> list[Path]:
    """Every ../shared/examples/*.lisp."""
    return shared_programs(shared_dir / "examples")


def _params(folder: Path, marks: dict[str, pytest.MarkDecorator] | None = None) -> list:
    files = shared_programs(folder)
    if not files:
        reason = f"{folder} is missing or empty (CI checks out shared/ beside the repository)"
        return [pytest.param(None, id="missing", marks=pytest.mark.skip(reason=reason))]
    marks = marks or {}
    return [pytest.param(f, id=f.stem, marks=[m for key, m in marks.items() if key in f.stem]) for f in files]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise `example` over ../shared/examples and `bench_program` over ../shared/bench."""
    if "example" in metafunc.fixturenames:
        # A module that runs the examples sets RUNS_PROGRAMS: there 07_gpu needs OpenCL.
        runs = getattr(metafunc.module, "RUNS_PROGRAMS", False)
        metafunc.parametrize("example", _params(EXAMPLES, {"gpu": pytest.mark.opencl} if runs else None))
    if "bench_program" in metafunc.fixturenames:
        metafunc.parametrize("bench_program", _params(BENCH))


def run_source(source: str, args: Iterable[str] = (), *, name: str = "prog.lisp", jit: bool = True,
               schedulers: int = 1, reductions: int = 4000) -> tuple[str, str, int]:
    """Compile and run `source` in this OS process: (stdout, stderr, exit status).

    A compile error gives ("", "FILE:LINE:COL: message\\n", 1), as the command would print it.
    """
    import io

    from lispvm.assembler.pipeline import compile_source
    from lispvm.scheduler.runner import run_program
    from lispvm.vm import lbc
    from lispvm.vm.errors import CompileError

    try:
        data = lbc.dump(compile_source(source, name))
    except CompileError as e:
        return "", f"{e}\n", 1
    out, err = io.StringIO(), io.StringIO()
    status = run_program(data, list(args), schedulers=schedulers, reductions=reductions, jit=jit,
                         out=out, err=err)
    return out.getvalue(), err.getvalue(), status


@pytest.fixture(scope="session")
def run_here() -> Callable[..., tuple[str, str, int]]:
    """`run_here(source, args=(), jit=True, ...)`: compile and run in this OS process (fast)."""
    return run_source
