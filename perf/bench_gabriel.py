"""bench_gabriel: Gabriel/r7rs-style sequential programs, lispvm against the CPython a user would
write (issue 16 item 6; the figure "geometric mean <= 1.5x, none above 3x").

Programs (perf/programs/gabriel/*.lisp; their Python twins in perf/gabriel_py.py):
tak (tak 18 12 6, 50 times), nqueens (8 queens on lists, 10 times), deriv (Gabriel's symbolic
derivative, 20,000 times), sieve (the primes below 20000 by filtering lists, 10 times), strings
(join 10,000 numbers, split, bracket each, join again, 10 times), mandelbrot (a 120 x 120 grid,
50 iterations), mergesort (a Lisp mergesort of 100,000 integers on lists), listsort (list/sort of
the same integers). Each Lisp program prints a checksum; the manager runs every program once and
checks that it prints the checksum the Python twin returns before anything is timed.

Benchmarks, all in one pyperf run, values per program run:
- gabriel-NAME-lispvm: `lispvm run NAME.lbc BIG` minus `lispvm run NAME.lbc 0` (the same program
  doing no work: interpreter start-up, imports, loading and the program's top level cancel out);
- gabriel-NAME-python: the Python twin called in the worker process (no start-up to subtract).

The ratio table has one row per program and the geometric mean of the rows (also written to the
--summary JSON as "geomeans", which perf/run_all.py prints).

Usage: python perf/bench_gabriel.py [--fast] [-o result.json] [--only tak,sieve] [--schedulers K]
"""

from __future__ import annotations

import json
import math
import time

from common import PROGRAMS, Ratio, Suite, lispvm_command, net_command, pick, run_checked
from gabriel_py import PROGRAMS as PYTHON

GABRIEL = PROGRAMS / "gabriel"


def python_time(loops: int, name: str) -> float:
    """pyperf time function: `loops` calls of the Python twin of program `name`."""
    fn, big, _ = PYTHON[name]
    t0 = time.perf_counter()
    for _ in range(loops):
        fn(big)
    return time.perf_counter() - t0


def geomean(values: list[float]) -> float:
    """The geometric mean of positive ratios."""
    return math.exp(sum(math.log(v) for v in values) / len(values))


def add_geomeans(summary: str | None, groups: list[tuple[str, list[str], float]]) -> None:
    """Print the geometric mean of each group of rows (title, row labels, target) and add them to
    the --summary JSON as "geomeans" for perf/run_all.py."""
    if not summary:
        return
    with open(summary, encoding="utf-8") as f:
        data = json.load(f)
    by_label = {r["label"]: r["ratio"] for r in data["rows"]}
    out = []
    for title, labels, target in groups:
        got = [by_label[label] for label in labels if label in by_label]
        if got:
            value = geomean(got)
            out.append({"label": title, "ratio": value, "rows": len(got), "target": f"<= {target:g}x",
                        "verdict": "met" if value <= target else "MISSED"})
    data["geomeans"] = out
    with open(summary, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)


def print_geomeans(summary: str | None) -> None:
    """Print the "geomeans" of a --summary JSON."""
    if not summary:
        return
    with open(summary, encoding="utf-8") as f:
        for g in json.load(f).get("geomeans", []):
            print(f"geometric mean, {g['label']} ({g['rows']} rows): {g['ratio']:.2f}x  "
                  f"target {g['target']} {g['verdict']}", flush=True)


def main() -> None:
    """Register the benchmarks, check the checksums, run them (pyperf), print the ratios."""
    names = list(PYTHON)
    suite = Suite("gabriel", {n: GABRIEL / f"{n}.lisp" for n in names}, processes=4, values=2)
    suite.option("--only", default=None, help=f"comma-separated subset of {','.join(names)}")
    suite.option("--schedulers", type=int, default=None, help="lispvm --schedulers (default: lispvm's)")
    args = suite.parse()
    names = pick(names, args.only)
    lispvm = lispvm_command()
    sched = [] if args.schedulers is None else ["--schedulers", str(args.schedulers)]
    ratios = []
    for name in names:
        fn, big, small = PYTHON[name]
        run = [*lispvm, "run", *sched, str(suite.lbc(name))]

        def check(name: str = name, fn=fn, big: int = big, run: list[str] = run) -> str | None:
            return suite.compiled(name)() or run_checked([*run, str(big)], str(fn(big)), timeout=300)

        suite.time_func(f"gabriel-{name}-python", python_time, name)
        if suite.available(f"gabriel-{name}", check, f"gabriel {name} lispvm"):
            suite.time_func(f"gabriel-{name}-lispvm", net_command, [*run, str(big)], [*run, str(small)])
        ratios.append(Ratio(f"{name} lispvm / python", f"gabriel-{name}-lispvm", f"gabriel-{name}-python",
                            ("<=", 3)))
    suite.report(ratios)
    if suite.is_manager:
        add_geomeans(args.summary, [("gabriel lispvm / python", [r.label for r in ratios], 1.5)])
        print_geomeans(args.summary)


if __name__ == "__main__":
    main()
