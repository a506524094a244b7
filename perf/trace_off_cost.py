"""Does tracing cost anything when it is off? (docs/tracing.md)

Runs ../shared/bench/ring.lisp (1000 processes) in this OS process with the scheduler's normal
slice loop (one `if trace is not None` test before and after each slice) and with a copy of
that loop from which the tests are removed, alternating, and prints messages per second for
both. Usage: python perf/trace_off_cost.py [N M] [--rounds R]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path

from lispvm.assembler.pipeline import compile_source
from lispvm.scheduler import kernel
from lispvm.scheduler.runner import run_program
from lispvm.vm import lbc

RING = Path(__file__).resolve().parents[1].parent / "shared" / "bench" / "ring.lisp"


def run_ready_without_trace(self: kernel.Scheduler) -> None:
    """Scheduler.run_ready with the two trace tests taken out (for this comparison only)."""
    runq = self.runq
    budget = self.budget
    run = kernel.interp.run
    n = len(runq)
    self.yields = 0
    while n and runq:
        n -= 1
        proc = runq.popleft()
        if proc.status != kernel.RUNNABLE:
            continue
        outcome = run(proc, budget, self)
        if outcome == kernel.WAIT and proc.deadline is None:
            proc.status = kernel.WAITING
        else:
            kernel._TRAPS[outcome](self, proc)


def rate(data: bytes, n: int, m: int) -> float:
    """Messages per second of one ring run, net of a run with one lap (set-up)."""
    def once(laps: int) -> float:
        t = time.perf_counter()
        run_program(data, [str(n), str(laps)], schedulers=1, out=io.StringIO())
        return time.perf_counter() - t
    return (n * m - n) / (once(m) - once(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=1000)
    ap.add_argument("m", nargs="?", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    data = lbc.dump(compile_source(RING.read_text(), str(RING)))
    normal = kernel.Scheduler.run_ready
    with_tests, without = [], []
    for _ in range(a.rounds):
        kernel.Scheduler.run_ready = normal
        with_tests.append(rate(data, a.n, a.m))
        kernel.Scheduler.run_ready = run_ready_without_trace
        without.append(rate(data, a.n, a.m))
    kernel.Scheduler.run_ready = normal
    w, wo = statistics.median(with_tests), statistics.median(without)
    print(f"ring {a.n}x{a.m}: tracing off (as shipped) {w / 1000:.0f}k msgs/s, "
          f"trace tests removed {wo / 1000:.0f}k msgs/s, difference {100 * (wo - w) / wo:+.1f}% "
          f"(median of {a.rounds}; spread {min(with_tests) / 1000:.0f}-{max(with_tests) / 1000:.0f}k "
          f"and {min(without) / 1000:.0f}-{max(without) / 1000:.0f}k)")


if __name__ == "__main__":
    main()
