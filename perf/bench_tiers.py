"""bench_tiers: the fast tier against the interpreter where it used to lose, and `loop` against
Python's `for` (issue 16 part 3, issue 14's closing figure).

Workloads (Lisp below, each run as `lispvm run [--no-jit] prog.lbc N` minus the same with N = 1,
whole processes, so net of start-up):
- evenodd: `even?`/`odd?` mutual tail recursion N = 1,000,000 deep.
- count: non-tail recursion `(+ 1 (count (- n 1)))`, N = 100,000 deep.
- recvcall: N = 100,000 messages, each taken by a `receive` with an `after` clause (not a server
  loop) whose clause body calls a small function 10 times.
- sumloop: `(loop ((i 0) (s 0)) (if (< i n) (recur (+ i 1) (+ s i)) s))`, N = 3,000,000 (the
  compiled loop must outweigh start-up's noise), against `for i in range(n): s += i` in the
  worker (values per iteration).

Targets: the fast tier no slower than --no-jit on the first three (ratio <= 1).

Usage: python perf/bench_tiers.py [--fast] [-o result.json] [--programs evenodd,count,recvcall,sumloop]
       python -m pyperf compare_to old.json new.json
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from pathlib import Path

from common import Ratio, Suite, lispvm_command, net_command, run_checked

PROGRAMS = {
    "evenodd": """
(def even? (n) (if (== n 0) true (odd? (- n 1))))
(def odd? (n) (if (== n 0) false (even? (- n 1))))
(print (even? (parse-int (head (sys/args)))))
""",
    "count": """
(def count (n) (if (== n 0) 0 (+ 1 (count (- n 1)))))
(print (count (parse-int (head (sys/args)))))
""",
    "recvcall": """
(def f (x) (+ x 1))
(def serve (k acc)
  (if (== k 0)
      acc
      (receive
        ((list 'v x) (serve (- k 1) (f (f (f (f (f (f (f (f (f (f (+ acc x)))))))))))))
        (after 5000 'timeout))))
(def feed (me i) (if (== i 0) nil (do (send me (list 'v 1)) (feed me (- i 1)))))
(let ((n (parse-int (head (sys/args)))))
  (feed (self) n)
  (print (serve n 0)))
""",
    "sumloop": """
(def sum-to (n) (loop ((i 0) (s 0)) (if (< i n) (recur (+ i 1) (+ s i)) s)))
(print (sum-to (parse-int (head (sys/args)))))
""",
}
SIZES = {"evenodd": 1_000_000, "count": 100_000, "recvcall": 100_000, "sumloop": 3_000_000}
EXPECT = {"evenodd": "true", "count": "100000", "recvcall": "1100000", "sumloop": str(sum(range(3_000_000)))}


def _sources() -> dict[str, Path]:
    """The programs as files (the suite compiles them in the manager)."""
    tmp = Path(tempfile.mkdtemp(prefix="lispvm-tiers-"))
    atexit.register(shutil.rmtree, tmp, True)
    out = {}
    for name, text in PROGRAMS.items():
        path = tmp / f"{name}.lisp"
        path.write_text(text.lstrip(), encoding="utf-8")
        out[name] = path
    return out


def python_sum(loops: int, n: int) -> float:
    """pyperf time function: `loops` runs of the for loop a user would write."""
    t0 = time.perf_counter()
    for _ in range(loops):
        s = 0
        for i in range(n):
            s += i
    return time.perf_counter() - t0


def main() -> None:
    """Register the benchmarks, run them (pyperf), print the ratios."""
    suite = Suite("tiers", _sources())
    suite.option("--programs", default=",".join(SIZES), help="which workloads (default all)")
    args = suite.parse()
    chosen = args.programs.split(",")
    lispvm = lispvm_command()
    for name, n in SIZES.items():
        if name not in chosen:
            continue
        lbc = suite.lbc(name)
        ok = suite.available(name, suite.compiled(name), name)
        for tier, flags in (("fast", []), ("interp", ["--no-jit"])):
            key = f"{name}-{tier}"
            if ok and suite.available(key, lambda flags=flags, lbc=lbc, name=name, n=n: run_checked(
                    [*lispvm, "run", *flags, str(lbc), str(n)], EXPECT[name]), f"{name} lispvm {tier}"):
                suite.time_func(f"{name}-lispvm-{tier}", net_command,
                                [*lispvm, "run", *flags, str(lbc), str(n)], [*lispvm, "run", *flags, str(lbc), "1"],
                                inner_loops=n - 1 if name == "sumloop" else None)
    if "sumloop" in chosen:
        suite.time_func("sumloop-python", python_sum, SIZES["sumloop"], inner_loops=SIZES["sumloop"])

    suite.report([
        Ratio("even?/odd? 1,000,000 deep: fast tier / --no-jit", "evenodd-lispvm-fast", "evenodd-lispvm-interp",
              ("<=", 1)),
        Ratio("non-tail count 100,000: fast tier / --no-jit", "count-lispvm-fast", "count-lispvm-interp", ("<=", 1)),
        Ratio("function called from a receive clause body: fast tier / --no-jit", "recvcall-lispvm-fast",
              "recvcall-lispvm-interp", ("<=", 1)),
        Ratio("loop summing 3,000,000 numbers, fast tier / Python for", "sumloop-lispvm-fast", "sumloop-python",
              unit="iteration"),
        Ratio("loop summing 3,000,000 numbers, interpreter / Python for", "sumloop-lispvm-interp", "sumloop-python",
              unit="iteration"),
    ])


if __name__ == "__main__":
    main()
