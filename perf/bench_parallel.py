"""bench_parallel: the speed-up of CPU-bound processes from a second scheduler (OS process).

Workload: ../shared/bench/parallel.lisp with K = 8 jobs of fib(24), one process per job.
Target: `--schedulers 2` at least 1.6x faster than `--schedulers 1`.

Benchmarks, all in one pyperf run, values in seconds per run of the K jobs:
- parallel-lispvm-1 / parallel-lispvm-2: `lispvm run --schedulers S parallel.lbc K n` minus
  `lispvm run --schedulers S parallel.lbc K 1`, whole processes: net of start-up, but not of
  starting the second scheduler, which lispvm does lazily when it sees CPU-bound work (that
  boot is part of what parallelism costs it).
- parallel-cpython-1 / parallel-cpython-2: the same K fib(n) jobs in plain CPython over a
  multiprocessing.Pool of 1 and of 2 worker processes, started before the clock: the speed-up
  this machine allows two OS processes on this amount of work, the ceiling to read lispvm's
  ratio against.
The 2-scheduler case is measured only if `lispvm run --schedulers 2` really runs a second OS
process (perf/programs/probe.lisp); otherwise "not available".

Note: 8 x fib(24) is little work next to a scheduler's boot (docs/performance.md has the times);
try --n 27 or --n 30 to see the speed-up on longer jobs.

Usage: python perf/bench_parallel.py [--fast] [-o result.json] [--k 8] [--n 24]
"""

from __future__ import annotations

import multiprocessing
import time

from common import PROGRAMS, SHARED_BENCH, Ratio, Suite, far_schedulers_reason, lispvm_command, net_command, run_checked


def fib(n: int) -> int:
    """The job (the same function as parallel.lisp's)."""
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def cpython_jobs(loops: int, k: int, n: int, procs: int) -> float:
    """pyperf time function: K fib(n) jobs over a pool of `procs` processes, `loops` times."""
    with multiprocessing.Pool(procs) as pool:
        pool.map(fib, [1] * procs, chunksize=1)  # every worker is up before the clock starts
        t0 = time.perf_counter()
        for _ in range(loops):
            sum(pool.map(fib, [n] * k, chunksize=1))
        return time.perf_counter() - t0


def main() -> None:
    """Register the benchmarks, run them (pyperf), print the ratios."""
    suite = Suite("parallel", {"parallel": SHARED_BENCH / "parallel.lisp", "probe": PROGRAMS / "probe.lisp"})
    suite.option("--k", type=int, default=8, help="jobs (default 8)")
    suite.option("--n", type=int, default=24, help="fib argument of each job (default 24)")
    args = suite.parse()
    k, n = args.k, args.n
    lispvm = lispvm_command()
    lbc = str(suite.lbc("parallel"))
    expect = str(k * fib(n))

    def run(s: int, arg: int) -> list[str]:
        return [*lispvm, "run", "--schedulers", str(s), lbc, str(k), str(arg)]

    one_ok = suite.available("one", lambda: suite.compiled("parallel")() or run_checked(run(1, n), expect),
                             "parallel --schedulers 1")
    two_ok = one_ok and suite.available(
        "two", lambda: (suite.compiled("probe")() or far_schedulers_reason(suite.lbc("probe"))
                        or run_checked(run(2, n), expect)), "parallel --schedulers 2")

    suite.time_func("parallel-cpython-1", cpython_jobs, k, n, 1)
    suite.time_func("parallel-cpython-2", cpython_jobs, k, n, 2)
    if one_ok:
        suite.time_func("parallel-lispvm-1", net_command, run(1, n), run(1, 1))
    if two_ok:
        suite.time_func("parallel-lispvm-2", net_command, run(2, n), run(2, 1))

    suite.report([
        Ratio(f"parallel {k}xfib({n}) lispvm speed-up 2 vs 1 schedulers", "parallel-lispvm-1", "parallel-lispvm-2",
              (">=", 1.6)),
        Ratio(f"parallel {k}xfib({n}) CPython speed-up 2 vs 1 processes", "parallel-cpython-1", "parallel-cpython-2"),
        Ratio(f"parallel {k}xfib({n}) lispvm 1 scheduler / CPython 1 process", "parallel-lispvm-1",
              "parallel-cpython-1"),
    ])


if __name__ == "__main__":
    main()
