"""Helpers shared by the process, scheduler and fast-tier tests: run Lisp source in this OS
process (fast, and a VirtualClock can be used) or through the `lispvm` command."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lispvm.assembler.pipeline import compile_source
from lispvm.scheduler.runner import run_program
from lispvm.vm import lbc

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


_OPENCL: tuple[list[str], str | None] | None = None

# the device process's own choice (scheduler/device_select.py), with the same pip runtimes added
_PROBE = """
import os, tempfile
from lispvm.scheduler import device_select as ds
with tempfile.TemporaryDirectory(prefix="lispvm-probe-") as d:
    ds.use_extra_runtimes(d)
    import pyopencl as cl
    for _pi, _di, p, dev in ds.candidates(cl):
        print("device", cl.device_type.to_string(dev.type))
    try:
        ds.choose(cl, os.environ.get("LISPVM_OPENCL"))
        print("build ok")
    except Exception as e:
        print("build failed", " ".join(str(e).split()))
"""


def opencl() -> tuple[list[str], str | None]:
    """(the device types pyopencl finds, why no test can run a kernel, or None), asked once, in a
    child process (pyopencl stays out of ours), on the device the device process would choose.

    One build failure means "skip" rather than "fail": PoCL from PyPI (3.0, LLVM 14) cannot build
    any kernel on a CPU newer than its LLVM ("unknown target CPU 'generic'", e.g. AMD Zen 5), a
    limit of that package on that machine, not of lispvm. Any other build failure runs the tests,
    which then fail and show it."""
    global _OPENCL
    if _OPENCL is None:
        try:
            r = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=180)
            lines = r.stdout.splitlines() if r.returncode == 0 else []
        except (OSError, subprocess.TimeoutExpired):
            lines = []
        devices = [ln.split()[1] for ln in lines if ln.startswith("device ")]
        why = None if devices else "pyopencl finds no OpenCL device"
        failed = [ln for ln in lines if ln.startswith("build failed")]
        if devices and failed and "unknown target CPU" in failed[0]:
            why = ("the OpenCL device cannot build kernels on this CPU (PoCL's LLVM does not know it: "
                   "unknown target CPU)")
        _OPENCL = (devices, why)
    return _OPENCL


def chaos_seeds() -> list[int]:
    """The seeds the chaos tests run under: LISPVM_CHAOS_SEEDS=N (1..N, default 3), A-B, or a
    comma-separated list (one variable for every test file, so one command widens them all)."""
    text = os.environ.get("LISPVM_CHAOS_SEEDS", "3").strip()
    if "," in text:
        return [int(s) for s in text.split(",") if s.strip()]
    lo, dash, hi = text.partition("-")
    return list(range(int(lo), int(hi) + 1)) if dash else list(range(1, int(text) + 1))


def compile_text(src: str, name: str = "test.lisp") -> bytes:
    """The .lbc bytes of Lisp source."""
    return lbc.dump(compile_source(src, name))


def run(src: str, args: tuple = (), *, schedulers: int = 1, reductions: int = 4000, jit: bool = True,
        clock: object = None) -> tuple[str, str, int]:
    """Run a program in this OS process: (stdout, stderr, exit status)."""
    out, err = io.StringIO(), io.StringIO()
    status = run_program(compile_text(src), list(args), schedulers=schedulers, reductions=reductions,
                         jit=jit, out=out, err=err, clock=clock)
    return out.getvalue(), err.getvalue(), status


def run_command(argv: list[str], *, timeout: float = 120, cwd: str | os.PathLike | None = None,
                env: dict | None = None, input: str | None = None,
                context: str = "") -> subprocess.CompletedProcess:
    """Run `argv` in its own process group, capturing text output. Past `timeout` the whole group
    (schedulers and the device process included) is killed and the test fails: a grandchild
    holding the output pipes open can never stall the run. `context` (e.g. how to reproduce the
    run) starts the failure message."""
    with subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env,
                          start_new_session=True) as proc:
        hung = False
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            hung = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = proc.communicate()
    if hung:  # failed outside the except block, so the report is this one line, not a chain
        import pytest

        pytest.fail(f"{context}`{' '.join(map(str, argv))}` did not finish in {timeout:g} s; "
                    f"stdout {out[-300:]!r}, stderr {err[-300:]!r}", pytrace=False)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def lispvm_command() -> list[str]:
    """The argv prefix that runs this environment's `lispvm` console script."""
    exe = Path(sys.executable).with_name("lispvm")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "lispvm.scheduler.cli"]


def lispvm(*args: str, timeout: float = 120, cwd: str | None = None, env: dict | None = None,
           input: str | None = None) -> subprocess.CompletedProcess:
    """Run the `lispvm` command of this environment."""
    return run_command(lispvm_command() + list(args), timeout=timeout, cwd=cwd, env={**os.environ, **(env or {})},
                       input=input)


class FakeTime:
    """Stands in for the `time` module of scheduler/clock.py: perf_counter moves only when
    os.sched_yield is called, by `step` seconds, so a busy-wait test counts polls and yields on a
    clock of its own and a loaded machine changes nothing. `install(monkeypatch)` puts it in place
    (and patches os.sched_yield) until the test ends; everything else is the real `time`."""

    def __init__(self, step: float = 0.0001) -> None:
        self.now = 100.0  # seconds, the fake perf_counter
        self.step = step  # what one sched_yield costs: above BusyWait.SLOW_YIELD, the core was wanted

    def perf_counter(self) -> float:
        return self.now

    def sched_yield(self) -> None:
        self.now += self.step

    def __getattr__(self, name: str) -> object:
        import time

        return getattr(time, name)

    def install(self, monkeypatch: object) -> FakeTime:
        from lispvm.scheduler import clock

        monkeypatch.setattr(clock, "time", self)  # type: ignore[attr-defined]
        monkeypatch.setattr(clock.os, "sched_yield", self.sched_yield)  # type: ignore[attr-defined]
        return self


_BUSY = """
import os, sys
parent = int(sys.argv[1])
while os.getppid() == parent:  # ends by itself if the test run that started it dies
    sum(range(10000))
"""


class BusyLoops:
    """`with BusyLoops(2):` keeps two CPU-burning Python processes running beside the block, so
    that programs run with fewer free cores than schedulers (bugs that hide on a quiet machine).
    Only the processes it started are stopped, by their pids."""

    def __init__(self, n: int = 2) -> None:
        self.n = n
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> BusyLoops:
        for _ in range(self.n):
            self.procs.append(subprocess.Popen([sys.executable, "-c", _BUSY, str(os.getpid())],
                                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL))
        return self

    def alive(self) -> int:
        """How many of the loops are still running (a test can check that the load was there)."""
        return sum(p.poll() is None for p in self.procs)

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
        self.procs.clear()


def spy_made(monkeypatch: Any, method: str) -> list[str]:
    """The names of the prototypes for which FastTier.`method` ("osr", "resume") makes a
    function from now on (in this process), in order: tests show the tier took that path."""
    from lispvm.vm import fast

    names: list[str] = []
    real = getattr(fast.FastTier, method)

    def spy(self: Any, p: Any, at: int) -> Any:
        fn = real(self, p, at)
        if fn is not None:
            names.append(p.name)
        return fn

    monkeypatch.setattr(fast.FastTier, method, spy)
    return names


def spy_compiled(monkeypatch: Any, which: Any = None) -> list[str]:
    """The names of the prototypes the fast tier compiles from now on (in this process), in
    order; `which(tier, proto)`, if given, keeps only those it accepts (a tier's servers, say).
    Tests use it to show the tier really took the shape they test."""
    from lispvm.vm import fast

    names: list[str] = []
    real = fast.FastTier.compile

    def spy(self: Any, p: Any) -> bool:
        ok = real(self, p)
        if ok and (which is None or which(self, p)):
            names.append(p.name)
        return ok

    monkeypatch.setattr(fast.FastTier, "compile", spy)
    return names


@contextlib.contextmanager
def fast_tier(src: str) -> Iterator[tuple[Any, dict[str, Any]]]:
    """A fast tier enabled on a fresh VM over the program `src` loaded into fresh globals:
    yields the tier and the program's prototypes by name (for tests that compile them one by
    one), and disables the tier after."""
    from lispvm.scheduler.node import load_program
    from lispvm.vm import fast
    from lispvm.vm.process import Globals
    from lispvm.vm.state import VM

    g = Globals()
    module = load_program(compile_text(src), g)
    vm = VM()
    tier = fast.enable(vm, g)
    assert tier is not None and vm.fast is tier
    try:
        yield tier, {p.name: p for p in module.protos}
    finally:
        fast.disable(vm)
