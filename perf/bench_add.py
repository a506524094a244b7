"""bench_add: a counted loop doing one addition per iteration, lispvm against a CPython `while`.

Workload: ../shared/bench/add.lisp, M = 1,000,000 iterations of `(loop (- i 1) (+ 1 2))`.
Target (issue 7): the fast tier within 2x of the Python while loop.

Benchmarks, all in one pyperf run, values per iteration:
- add-python: the while loop below, in the worker.
- add-lispvm-fast / add-lispvm-interp: `lispvm run [--no-jit] add.lbc M` minus
  `lispvm run ... add.lbc 1`, whole processes, so net of start-up.

Usage: python perf/bench_add.py [--fast] [-o result.json] [--m 1000000]
"""

from __future__ import annotations

import time

from common import SHARED_BENCH, Ratio, Suite, lispvm_command, net_command, run_checked


def python_loop(m: int) -> int:
    """The baseline: M iterations, each one comparison, one subtraction and one addition.

    CPython folds the constant expression `1 + 2` at compile time, so `acc = 1 + 2` would do no
    addition at all; `a` and `b` are locals that the compiler cannot fold, so `acc = a + b`
    performs one real addition per iteration, as `(+ 1 2)` does in the Lisp loop."""
    a, b = 1, 2
    i = m
    acc = 0
    while i != 0:
        i -= 1
        acc = a + b
    return acc


def python_add(loops: int, m: int) -> float:
    """pyperf time function: `loops` runs of the while loop."""
    t0 = time.perf_counter()
    for _ in range(loops):
        python_loop(m)
    return time.perf_counter() - t0


def main() -> None:
    """Register the benchmarks, run them (pyperf), print the ratios."""
    suite = Suite("add", {"add": SHARED_BENCH / "add.lisp"})
    suite.option("--m", type=int, default=1_000_000, help="loop iterations (default 1000000)")
    args = suite.parse()
    m = args.m
    lbc = suite.lbc("add")
    lispvm = lispvm_command()

    ok = suite.available("add", suite.compiled("add"), "add (all lispvm variants)")
    fast_ok = ok and suite.available(
        "add-fast", lambda: run_checked([*lispvm, "run", str(lbc), str(m)], "3"), "add lispvm fast tier")
    interp_ok = ok and suite.available(
        "add-interp", lambda: run_checked([*lispvm, "run", "--no-jit", str(lbc), str(m)], "3"),
        "add lispvm interpreter")

    # inner_loops: values are per iteration; the start-up run does 1 iteration, hence m - 1
    suite.time_func("add-python", python_add, m, inner_loops=m)
    for tier, flags, avail in (("fast", [], fast_ok), ("interp", ["--no-jit"], interp_ok)):
        if avail:
            suite.time_func(f"add-lispvm-{tier}", net_command, [*lispvm, "run", *flags, str(lbc), str(m)],
                            [*lispvm, "run", *flags, str(lbc), "1"], inner_loops=m - 1)

    suite.report([
        Ratio(f"add M={m} fast tier / Python while (issue 7)", "add-lispvm-fast", "add-python", ("<=", 2),
              unit="iteration"),
        Ratio(f"add M={m} interpreter / Python while", "add-lispvm-interp", "add-python", unit="iteration"),
    ])


if __name__ == "__main__":
    main()
