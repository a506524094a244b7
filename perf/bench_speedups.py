"""bench_speedups: what the C cells and list walkers (vm/_speedups.c) buy, in CPU time.

Runs the same workloads on up to three trees in one script, rounds alternating between them:
- `c`: this checkout (or --tree DIR) with its built extension (`pip install -e .` puts it in vm/);
- `pure`: the same tree with LISPVM_PURE=1 (values.py's pure-Python classes);
- `before`: another source tree given with --before (e.g. `git archive COMMIT | tar -x -C DIR`),
  run from its own files through PYTHONPATH with this interpreter and its packages.

Measured, per tree:
- in one Python process each (timeit, best of 7): `Cons(1, None)` and `from_list` of 100,000 ints;
- the Gabriel programs (perf/programs/gabriel/) as `lispvm run --schedulers 1 P.lisp BIG` minus
  `... 0`: CPU time (user + system) of the child processes (`resource.getrusage`), so that other
  load on a shared machine counts less than in wall time; medians over --rounds;
- with --sortscale N1,N2,...: perf/programs/sortscale.lisp's mergesort written in Lisp of N
  pseudo-random integers, CPU time of the whole run (building the list, sorting, start-up),
  to see how it grows with N (n log n would be 2.1 per doubling at these sizes);
- with --log-mb M: counting the ERROR lines of an M MB log with perf/programs/count_matches.lisp
  (file/lines, then a Lisp loop), CPU time of the whole run; perf/bench_io.py's log and Python loop.

Usage: python perf/bench_speedups.py [--rounds 5] [--before DIR] [--tree DIR] [--only tak,sieve] [--log-mb 100]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PERF = Path(__file__).resolve().parent
REPO = PERF.parent
GABRIEL = PERF / "programs" / "gabriel"
sys.path.insert(0, str(PERF))
from common import pick  # noqa: E402
from gabriel_py import PROGRAMS  # noqa: E402

RUN_CLI = "import sys; from lispvm.scheduler.cli import main; sys.exit(main(sys.argv[1:]))"
MICRO = """
import timeit
from lispvm.vm import values as v
C, L, r = v.Cons, v.from_list, list(range(100000))
cons = min(timeit.repeat('C(1, None)', globals=globals(), number=200000, repeat=7)) / 200000
fl = min(timeit.repeat('L(r)', globals=globals(), number=10, repeat=7)) / 10
print(getattr(v, 'SPEEDUPS', False), cons, fl)
"""


def package_dir(root: Path, into: Path) -> Path:
    """A directory holding `lispvm/` whose vm, assembler and scheduler are `root`'s (symlinks):
    PYTHONPATH to it runs that tree's code, whatever the environment has installed."""
    pkg = into / "lispvm"
    pkg.mkdir(parents=True)
    for d in ("vm", "assembler", "scheduler"):
        (pkg / d).symlink_to(root / d)
    return into


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_cpu(env: dict[str, str], args: list[str]) -> tuple[str, float]:
    """(standard output, CPU seconds) of one `lispvm ARGS` in the tree of `env`."""
    c0 = children_cpu()
    out = subprocess.run([sys.executable, "-c", RUN_CLI, *args], env=env, capture_output=True,
                         text=True, timeout=900)
    cpu = children_cpu() - c0
    if out.returncode != 0:
        raise SystemExit(f"lispvm {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--before", type=Path, default=None, help="a source tree to compare with")
    ap.add_argument("--tree", type=Path, default=REPO, help="the tree measured as c and pure (default: this one)")
    ap.add_argument("--only", default=None, help="comma-separated Gabriel programs (default: all)")
    ap.add_argument("--log-mb", type=float, default=0.0, help="also count a log of this size (MB)")
    ap.add_argument("--sortscale", default="", help="also the Lisp mergesort of these sizes (comma-separated)")
    ns = ap.parse_args()
    names = pick(list(PROGRAMS), ns.only)
    sizes = [int(n) for n in ns.sortscale.split(",") if n]
    tmp = Path(tempfile.mkdtemp(prefix="bench-speedups-"))
    base = {k: v for k, v in os.environ.items() if k not in ("LISPVM_PURE", "PYTHONPATH")}
    here = str(package_dir(ns.tree.resolve(), tmp / "here"))
    trees = {"c": {**base, "PYTHONPATH": here}, "pure": {**base, "PYTHONPATH": here, "LISPVM_PURE": "1"}}
    if ns.before is not None:
        trees["before"] = {**base, "PYTHONPATH": str(package_dir(ns.before.resolve(), tmp / "before"))}

    print(f"load average {os.getloadavg()[0]:.1f}; {ns.rounds} rounds alternating {', '.join(trees)}")
    for label, env in trees.items():
        out = subprocess.run([sys.executable, "-c", MICRO], env=env, capture_output=True, text=True,
                             check=True).stdout.split()
        print(f"{label:>7}: extension {out[0]:5}  Cons(1, None) {float(out[1]) * 1e9:6.1f} ns  "
              f"from_list(100k ints) {float(out[2]) * 1e3:6.2f} ms")

    log = expected = None
    if ns.log_mb:
        from bench_io import PATTERN, make_log
        log = tmp / "log.txt"
        expected = make_log(log, int(ns.log_mb * 1e6))
    cpu: dict[tuple[str, str], list[float]] = {}
    for rnd in range(ns.rounds):
        order = list(trees) if rnd % 2 == 0 else list(reversed(trees))
        for name in names:
            _, big, small = PROGRAMS[name]
            for label in order:
                out_big, c_big = run_cpu(trees[label], ["run", "--schedulers", "1", str(GABRIEL / f"{name}.lisp"),
                                                        str(big)])
                _, c_small = run_cpu(trees[label], ["run", "--schedulers", "1", str(GABRIEL / f"{name}.lisp"),
                                                    str(small)])
                cpu.setdefault((name, label), []).append(c_big - c_small)
        if log is not None:
            for label in order:
                out, c = run_cpu(trees[label], ["run", f"--allow-read={log}", "--schedulers", "1",
                                                str(PERF / "programs" / "count_matches.lisp"), str(log), PATTERN])
                if int(out.split()[0]) != expected:
                    raise SystemExit(f"{label}: counted {out.split()[0]}, expected {expected}")
                cpu.setdefault(("log count", label), []).append(c)
        for n in sizes:
            for label in order:
                _, c = run_cpu(trees[label], ["run", "--schedulers", "1", str(PERF / "programs" / "sortscale.lisp"),
                                              str(n), "merge"])
                cpu.setdefault((f"msort {n}", label), []).append(c)
        print(f"round {rnd + 1} done at {time.strftime('%H:%M:%S')}", flush=True)

    rows = names + (["log count"] if log is not None else []) + [f"msort {n}" for n in sizes]
    labels = list(trees)
    print("\nmedian CPU seconds (net of the run with the small argument for the Gabriel programs)")
    print(f"{'program':>11} " + " ".join(f"{label:>8}" for label in labels) + "   c/pure" +
          ("  c/before" if "before" in trees else ""))
    for row in rows:
        med = {label: statistics.median(cpu[(row, label)]) for label in labels}
        line = f"{row:>11} " + " ".join(f"{med[label]:8.3f}" for label in labels)
        line += f"   {med['c'] / med['pure']:6.2f}"
        if "before" in med:
            line += f"  {med['c'] / med['before']:8.2f}"
        print(line)


if __name__ == "__main__":
    main()
