"""bench_fib: naive recursive fib(27) in lispvm against the same function in CPython.

Workload: ../shared/bench/fib.lisp. Targets: the interpreter within 10x of CPython (issue 3),
the fast tier within 1.5x (issue 7).

Benchmarks, all measured in one pyperf run:
- fib-cpython: `def fib(n): return n if n < 2 else fib(n-1)+fib(n-2)`; fib(27), in the worker.
- fib-lispvm-{fast,interp}: `lispvm run [--no-jit] fib.lbc 27` minus `lispvm run ... fib.lbc 1`,
  whole processes, so net of start-up (the .lbc is compiled once beforehand).
- fib-lispvm-{fast,interp}-inproc: the same two runs through the Python API
  (lispvm.scheduler.runner.run_program, one scheduler) inside the worker: no process start-up
  to subtract, so usually steadier; the program's load and the fast tier's compilation of fib
  are paid per run, as in a real `lispvm run`.

Usage: python perf/bench_fib.py [--fast] [-o result.json] [--n 27]
       python -m pyperf compare_to old.json new.json
"""

from __future__ import annotations

import io
import time

from common import SHARED_BENCH, Ratio, Suite, lispvm_command, net_command, net_pairs, run_checked


def fib(n: int) -> int:
    """The CPython baseline, written as the issue states it."""
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def cpython_fib(loops: int, n: int) -> float:
    """pyperf time function: `loops` calls of fib(n)."""
    t0 = time.perf_counter()
    for _ in range(loops):
        fib(n)
    return time.perf_counter() - t0


def inprocess_fib(loops: int, data: bytes, n: int, jit: bool) -> float:
    """pyperf time function: run_program(fib, n) minus run_program(fib, 1), `loops` times."""
    from lispvm.scheduler.runner import run_program  # imported here: only this benchmark needs it

    def once(arg: int) -> float:
        out, err = io.StringIO(), io.StringIO()
        t0 = time.perf_counter()
        status = run_program(data, [str(arg)], schedulers=1, jit=jit, out=out, err=err)
        dt = time.perf_counter() - t0
        if status != 0:
            raise RuntimeError(f"fib.lisp {arg} exited with status {status}: {err.getvalue().strip()}")
        return dt

    return net_pairs(loops, lambda: once(n) - once(1), f"fib.lisp {n} in this process less fib.lisp 1")


def main() -> None:
    """Register the benchmarks, run them (pyperf), print the ratios."""
    suite = Suite("fib", {"fib": SHARED_BENCH / "fib.lisp"})
    suite.option("--n", type=int, default=27, help="fib argument (default 27)")
    args = suite.parse()
    n = args.n
    lbc = suite.lbc("fib")
    lispvm = lispvm_command()
    expect = str(fib(n))

    ok = suite.available("fib", suite.compiled("fib"), "fib (all lispvm variants)")
    fast_ok = ok and suite.available(
        "fib-fast", lambda: run_checked([*lispvm, "run", str(lbc), str(n)], expect), "fib lispvm fast tier")
    interp_ok = ok and suite.available(
        "fib-interp", lambda: run_checked([*lispvm, "run", "--no-jit", str(lbc), str(n)], expect),
        "fib lispvm interpreter")

    suite.time_func("fib-cpython", cpython_fib, n)
    for tier, flags, avail in (("fast", [], fast_ok), ("interp", ["--no-jit"], interp_ok)):
        if avail:
            suite.time_func(f"fib-lispvm-{tier}", net_command,
                            [*lispvm, "run", *flags, str(lbc), str(n)], [*lispvm, "run", *flags, str(lbc), "1"])
    if ok:
        data = lbc.read_bytes()
        for tier, jit, avail in (("fast", True, fast_ok), ("interp", False, interp_ok)):
            if avail:
                suite.time_func(f"fib-lispvm-{tier}-inproc", inprocess_fib, data, n, jit)

    suite.report([
        Ratio(f"fib({n}) interpreter / CPython (issue 3)", "fib-lispvm-interp", "fib-cpython", ("<=", 10)),
        Ratio(f"fib({n}) fast tier / CPython (issue 7)", "fib-lispvm-fast", "fib-cpython", ("<=", 1.5)),
        Ratio(f"fib({n}) interpreter in-process / CPython", "fib-lispvm-interp-inproc", "fib-cpython", ("<=", 10)),
        Ratio(f"fib({n}) fast tier in-process / CPython", "fib-lispvm-fast-inproc", "fib-cpython", ("<=", 1.5)),
    ])


if __name__ == "__main__":
    main()
