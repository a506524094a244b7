"""bench_gc: how sorting scales with the collector's settings (issue 16 item 1, scheduler/gc_policy.py).

Workload: perf/programs/sortscale.lisp sorts N pseudo-random integers, with `list/sort` (MODE
builtin) or with a mergesort written in Lisp (MODE merge). Each time is the sort alone, as the
program measures it with `now-ms` (start-up and building the list are not in it):
`lispvm run --schedulers 1 sortscale.lbc N MODE`.

Benchmarks (pyperf, in one run), for each N of --sizes and each MODE:
- gc-MODE-N-default: with LISPVM_GC=default (CPython's collector as it is: thresholds 700,10,10,
  nothing frozen), the baseline
- gc-MODE-N-policy: with lispvm's settings (gc_policy.THRESHOLDS, the start's objects frozen)

Ratios: policy / default for each N, and for the policy the growth from each N to the next
(n log n from 100,000 to 200,000 elements is a growth of 2.12).

Usage: python perf/bench_gc.py [--fast] [-o result.json] [--sizes 25000,50000,100000,200000]
       [--modes builtin,merge]
"""

from __future__ import annotations

import subprocess

from common import PROGRAMS, Ratio, Suite, lispvm_command, run_checked


def sort_time(loops: int, cmd: list[str]) -> float:
    """pyperf time function: `loops` runs of `cmd`, the seconds each one's sort took (its first line)."""
    total = 0.0
    for _ in range(loops):
        out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True).stdout
        total += float(out.split()[0]) / 1000
    return total


def expected(n: int) -> str:
    """What sortscale.lisp prints for N (the same generator, sorted by Python)."""
    x, xs = 42, []
    for _ in range(n):
        xs.append(x % 1000000)
        x = (x * 1103515245 + 12345) % 2147483648
    xs.sort()
    return f"{n} {xs[0]} {xs[-1]}"


def main() -> None:
    """Register the benchmarks, run them (pyperf), print the ratios."""
    suite = Suite("gc", {"sortscale": PROGRAMS / "sortscale.lisp"}, processes=3, values=1)
    suite.option("--sizes", default="25000,50000,100000,200000", help="list lengths (comma-separated)")
    suite.option("--modes", default="builtin,merge", help="builtin (list/sort) and/or merge (Lisp mergesort)")
    args = suite.parse()
    sizes = [int(s) for s in args.sizes.split(",")]
    modes = [m for m in args.modes.split(",") if m]
    lispvm = lispvm_command()
    base = [*lispvm, "run", "--schedulers", "1", str(suite.lbc("sortscale"))]
    settings = {"default": ["env", "LISPVM_GC=default"], "policy": ["env", "-u", "LISPVM_GC"]}
    check = [*base, "500", "merge"]
    ok = suite.available("gc", lambda: suite.compiled("sortscale")() or run_checked(check, expected(500)),
                         "sorting lispvm")
    ratios = []
    for mode in modes:
        for i, n in enumerate(sizes):
            for setting, prefix in settings.items():
                if ok:
                    suite.time_func(f"gc-{mode}-{n}-{setting}", sort_time, [*prefix, *base, str(n), mode])
            ratios.append(Ratio(f"{mode} sort of {n}: lispvm's collector settings / CPython's",
                                f"gc-{mode}-{n}-policy", f"gc-{mode}-{n}-default"))
            if i:
                ratios.append(Ratio(f"{mode} sort growth {sizes[i - 1]} -> {n} with lispvm's settings",
                                    f"gc-{mode}-{n}-policy", f"gc-{mode}-{sizes[i - 1]}-policy"))
    suite.report(ratios)


if __name__ == "__main__":
    main()
