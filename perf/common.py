"""Shared machinery of the lispvm pyperf suite (perf/bench_*.py and perf/run_all.py).

Every benchmark script measures lispvm and a baseline (CPython, asyncio, multiprocessing) as
separate pyperf benchmarks of ONE run, then prints ratios of their medians: the machines these
run on are shared and noisy, so an absolute time alone says little, while a ratio taken minutes
apart on the same machine says a lot. Times of whole `lispvm run` processes are taken NET of
start-up: the same program with a tiny argument is run right after and subtracted.

What this module owns:
- paths (the shared workloads in ../shared/bench, this suite's own programs in perf/programs)
  and the `lispvm` command of the running interpreter's environment;
- `Suite`: a pyperf Runner plus the pieces pyperf lacks: compiling the programs to .lbc once in
  the manager process, availability probes decided once in the manager and forwarded to the
  worker processes (so that every process registers the same benchmarks, which pyperf's worker
  numbering needs), and the ratio table (also written as JSON for run_all.py with --summary);
- `Ratio`: one row of that table.
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyperf

PERF_DIR = Path(__file__).resolve().parent
REPO = PERF_DIR.parent
SHARED_BENCH = REPO.parent / "shared" / "bench"  # the workloads the performance goals are measured on
PROGRAMS = PERF_DIR / "programs"  # this suite's own small programs (hello, probe, memory)

__all__ = ["PERF_DIR", "PROGRAMS", "REPO", "SHARED_BENCH", "Ratio", "Suite", "lispvm_command",
           "NotMeasurable", "net_asyncio", "net_command", "net_pairs", "run_checked", "timed_run",
           "far_schedulers_reason"]


def lispvm_command() -> list[str]:
    """The `lispvm` console script of this interpreter's environment, as an argv prefix.

    Found next to sys.executable rather than on PATH because pyperf starts its worker processes
    with a trimmed environment, and because it must be the lispvm of the venv being measured."""
    script = Path(sys.executable).parent / "lispvm"
    if script.exists():
        return [str(script)]
    found = shutil.which("lispvm")
    if found:
        return [found]
    return [sys.executable, "-m", "lispvm.scheduler.cli"]


def timed_run(cmd: list[str]) -> float:
    """Wall-clock seconds of one whole process; raises with its stderr if it fails.

    A failing run must stop the benchmark loudly: a crash that exits quickly would otherwise
    look like a great speed-up."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip()[-500:]
        raise RuntimeError(f"{' '.join(cmd)} exited with status {proc.returncode}: {tail}")
    return dt


# A sample of `loops` pairs whose net total is not positive (the machine's noise, under load, beat
# the work: pyperf refuses a negative value and the whole script died) is measured on with twice
# the pairs, then four times..., up to NET_MAX_PAIRS times `loops`, and every pair measured,
# negative ones included, stays in the sample's mean: none is dropped and nothing is clamped, so
# the figure is not pushed up. Still not positive then: the work is below the noise, said so.
NET_MAX_PAIRS = 16


def pick(names: list[str], only: str | None) -> list[str]:
    """The programs `--only` names (all of `names` without it), in `names`' order; an unknown
    name ends the run with a message rather than being dropped without a word."""
    if not only:
        return list(names)
    wanted = [n for n in only.split(",") if n]
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise SystemExit(f"--only: unknown program(s) {', '.join(unknown)}; choose from {','.join(names)}")
    return [n for n in names if n in wanted]


class NotMeasurable(RuntimeError):
    """The big run was not measurably slower than the small one (the net time stayed <= 0)."""


def net_pairs(loops: int, pair: Callable[[], float], what: str) -> float:
    """`loops` times the mean of `pair()` (big minus small, seconds) over at least `loops` pairs;
    more pairs while that total is not positive (NET_MAX_PAIRS); NotMeasurable if it stays so."""
    total, done, target = 0.0, 0, loops
    while True:
        for _ in range(target - done):
            total += pair()
        done = target
        if total > 0:
            return total * loops / done
        if done >= loops * NET_MAX_PAIRS:
            raise NotMeasurable(f"{what}: not measurable, the net time stayed <= 0 "
                                f"({total / done * 1e3:+.3f} ms a pair over {done} pairs): the work "
                                "is below the machine's noise; give a bigger argument or a quieter machine")
        target = min(done * 2, loops * NET_MAX_PAIRS)


def net_command(loops: int, big: list[str], small: list[str]) -> float:
    """pyperf time function: `loops` times (time of `big` - time of `small`).

    `small` is the same program with a tiny argument, so the difference is the work alone:
    interpreter start-up, imports and loading the bytecode cancel out. A sample whose total is
    not positive is measured on (_net_total) rather than handed to pyperf, which refuses it."""
    return net_pairs(loops, lambda: timed_run(big) - timed_run(small), f"`{' '.join(big)}` less its small run")


def net_asyncio(loops: int, make: Callable[[int], Any], big: int, small: int = 1) -> float:
    """pyperf time function: `loops` times (asyncio.run(make(big)) - asyncio.run(make(small))),
    each in a fresh event loop, so that making and closing the loop cancel out."""
    import asyncio

    def pair() -> float:
        t0 = time.perf_counter()
        asyncio.run(make(big))
        t1 = time.perf_counter()
        asyncio.run(make(small))
        return (t1 - t0) - (time.perf_counter() - t1)

    return net_pairs(loops, pair, f"asyncio {getattr(make, '__name__', make)}({big}) less ({small})")


def run_checked(cmd: list[str], expect: str | None = None, timeout: float = 120.0) -> str | None:
    """Run `cmd` once; None when it succeeds (and prints `expect` as its last line, if given),
    otherwise the reason it cannot be benchmarked, in one line."""
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"`{' '.join(cmd)}` did not finish in {timeout:.0f} s"
    except OSError as e:
        return f"`{' '.join(cmd)}` could not start: {e}"
    if proc.returncode != 0:
        err = " / ".join(proc.stderr.strip().splitlines()[-2:])
        return f"`{' '.join(cmd)}` exited with status {proc.returncode}: {err}"
    lines = proc.stdout.strip().splitlines()
    if expect is not None and (not lines or lines[-1].strip() != expect):
        got = lines[-1] if lines else "nothing"
        return f"`{' '.join(cmd)}` printed {got!r}, expected {expect!r}"
    return None


def far_schedulers_reason(probe_lbc: Path, n: int = 2) -> str | None:
    """None when `lispvm run --schedulers n` really runs schedulers in separate OS processes,
    otherwise why not. Runs perf/programs/probe.lisp, which prints (sys/schedulers), the OS pid
    of scheduler 0 and the OS pid seen from a process placed on scheduler 1."""
    cmd = [*lispvm_command(), "run", "--schedulers", str(n), str(probe_lbc)]
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return f"`lispvm run --schedulers {n}` hung (probe program did not finish in 60 s)"
    lines = proc.stdout.split()
    if proc.returncode != 0 or len(lines) < 3:
        err = " / ".join(proc.stderr.strip().splitlines()[-2:])
        return f"`lispvm run --schedulers {n}` failed on the probe program (status {proc.returncode}: {err})"
    if lines[0] != str(n):
        return f"(sys/schedulers) is {lines[0]} under `lispvm run --schedulers {n}`"
    if lines[1] == lines[2]:
        return f"`lispvm run --schedulers {n}` runs scheduler 1 in the same OS process as scheduler 0"
    return None


@dataclass(frozen=True)
class Ratio:
    """One row of a benchmark's ratio table: median(num) / median(den).

    den=None makes the row the absolute value of `num` (used only where the target is absolute,
    such as bytes per waiting process). `show` says how to print the two raw numbers: "time"
    (seconds per `unit`), "rate" (`unit`s per second, the reciprocal) or "bytes"."""

    label: str
    num: str
    den: str | None
    target: tuple[str, float] | None = None  # (">=" or "<=", value)
    show: str = "time"
    unit: str = "run"

    def target_text(self) -> str:
        """The target as printed, e.g. "<= 1.5x"."""
        if self.target is None:
            return "-"
        op, v = self.target
        return f"{op} {v:g}" + ("" if self.den is None else "x")

    def evaluate(self, results: dict[str, pyperf.Benchmark]) -> dict[str, Any] | None:
        """The row as a dict (label, ratio, target, verdict, raw), or None if a side is missing."""
        a = results.get(self.num)
        b = results.get(self.den) if self.den is not None else None
        if a is None or (self.den is not None and b is None):
            return None
        va = a.median()
        vb = b.median() if b is not None else None
        value = va / vb if vb else va
        verdict = "-"
        if self.target is not None:
            op, goal = self.target
            verdict = "met" if (value <= goal if op == "<=" else value >= goal) else "MISSED"
        # the raw numbers, named, in the order the ratio reads: for a rate the ratio is
        # rate(den) / rate(num) (values are seconds per unit), so den comes first
        pairs = [(self.num, va)] if vb is None else [(self.num, va), (self.den, vb)]
        if self.show == "rate":
            pairs.reverse()
        raw = ", ".join(f"{name} {_fmt(v, self.show, self.unit)}" for name, v in pairs)
        digits = 2
        if self.target is not None and f"{value:.2f}" == f"{self.target[1]:.2f}":
            digits = 3  # 1.598 must not print as 1.60 next to "target >= 1.6  MISSED"
        text = f"{value:.0f}" if self.den is None else f"{value:.{digits}f}x"
        return {"label": self.label, "ratio": value, "text": text, "absolute": self.den is None,
                "target": self.target_text(), "verdict": verdict, "raw": raw, "num": self.num, "den": self.den}


def _fmt(v: float, show: str, unit: str) -> str:
    """A raw number for people: 27.3 ms/run, 412k msgs/s, 618 B/process."""
    if show == "rate":
        r = 1.0 / v
        if r >= 1e6:
            return f"{r / 1e6:.2f}M {unit}s/s"
        return f"{r / 1e3:.0f}k {unit}s/s" if r >= 1e4 else f"{r:.0f} {unit}s/s"
    if show == "bytes":
        return f"{v:.0f} B/{unit}"
    for scale, name in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns")):
        if v >= scale:
            return f"{v / scale:.3g} {name}/{unit}"
    return f"{v / 1e-9:.3g} ns/{unit}"


def format_rows(title: str, rows: list[dict[str, Any]], unavailable: list[tuple[str, str]]) -> list[str]:
    """The ratio table of one benchmark script, as lines of text."""
    lines = [f"--- {title}: ratios of medians, lispvm and baseline measured in this run ---"]
    width = max([len(r["label"]) for r in rows] + [10])
    for r in rows:
        lines.append(f"{r['label']:<{width}}  {r['text']:>8}  target {r['target']:<8} {r['verdict']:<6}  ({r['raw']})")
    for what, why in unavailable:
        lines.append(f"{what:<{width}}  not available: {why}")
    return lines


# Environment variables the benchmarks' worker processes must see as the user set them.
FORWARDED_ENV = ("LISPVM_OPENCL", "PYOPENCL_CTX", "OCL_ICD_VENDORS", "OCL_ICD_FILENAMES", "POCL_DEVICES",
                 "PYTHONDONTWRITEBYTECODE")


class Suite:
    """A pyperf Runner with compiled programs, forwarded probes and a ratio table.

    Use: suite = Suite(title, programs); suite.option(...); args = suite.parse(); then
    suite.available(...) / suite.time_func(...) / suite.command(...); finally suite.report(ratios).
    Runs in pyperf's manager process and in each of its worker processes alike."""

    def __init__(self, title: str, programs: dict[str, Path], processes: int = 10, values: int = 3) -> None:
        self.title = title
        self.programs = programs
        self._forward: list[tuple[str, str]] = [("--lbc-dir", "lbc_dir"), ("--probe", "probe")]
        self.runner = pyperf.Runner(processes=processes, values=values, add_cmdline_args=self._add_cmdline_args)
        ap = self.runner.argparser
        ap.add_argument("--lbc-dir", help=argparse.SUPPRESS)  # set by the manager for its workers
        ap.add_argument("--probe", help=argparse.SUPPRESS)  # the manager's availability answers, JSON
        ap.add_argument("--summary", metavar="FILE", help="also write the ratio table as JSON (run_all.py)")
        self.args: argparse.Namespace | None = None
        self.results: dict[str, pyperf.Benchmark] = {}
        self.unavailable: list[tuple[str, str]] = []
        self.probes: dict[str, str] = {}

    def option(self, flag: str, **kwargs: Any) -> None:
        """Add a command-line option that worker processes receive too (sizes of the workload)."""
        action = self.runner.argparser.add_argument(flag, **kwargs)
        self._forward.append((flag, action.dest))

    def _add_cmdline_args(self, cmd: list[str], args: argparse.Namespace) -> None:
        for flag, dest in self._forward:
            value = getattr(args, dest)
            if value is not None:
                cmd.append(f"{flag}={value}")

    @property
    def is_manager(self) -> bool:
        """True in the process that spawns pyperf's workers and prints the results."""
        assert self.args is not None
        return not self.args.worker

    def parse(self) -> argparse.Namespace:
        """Parse the command line; in the manager, also compile the programs to .lbc."""
        self.args = self.runner.parse_args()
        # pyperf's workers get a filtered environment: without these, LISPVM_OPENCL would choose
        # the device in the manager only, and the workers would measure the default one.
        self.args.inherit_environ = [*(self.args.inherit_environ or []),
                                     *(v for v in FORWARDED_ENV if v in os.environ)]
        if self.args.probe:
            self.probes = json.loads(self.args.probe)
        if self.is_manager and self.args.lbc_dir is None and self.programs:
            tmp = tempfile.mkdtemp(prefix="lispvm-perf-")
            atexit.register(shutil.rmtree, tmp, True)  # the workers are done when the manager exits
            for name, src in self.programs.items():
                out = Path(tmp) / f"{name}.lbc"
                proc = subprocess.run([*lispvm_command(), "asm", str(src), "-o", str(out)],
                                      capture_output=True, text=True)
                if proc.returncode != 0:  # reported by whichever benchmark needs it (see lbc())
                    self.probes[f"compile:{name}"] = f"`lispvm asm {src.name}` failed: {proc.stderr.strip()}"
            self.args.lbc_dir = tmp
            self.args.probe = json.dumps(self.probes)
        return self.args

    def lbc(self, name: str) -> Path:
        """The compiled .lbc of program `name`."""
        assert self.args is not None and self.args.lbc_dir is not None
        return Path(self.args.lbc_dir) / f"{name}.lbc"

    def available(self, key: str, check: Callable[[], str | None], what: str | None = None) -> bool:
        """Whether the benchmarks guarded by `key` can run; `check` returns None or the reason.

        The check runs in the manager only; workers receive its answer with --probe, so that a
        slow or flaky probe cannot make a worker register a different set of benchmarks.
        A failed check is remembered as "not available: reason" for the table."""
        assert self.args is not None
        if self.is_manager and key not in self.probes:
            self.probes[key] = check() or ""
            self.args.probe = json.dumps(self.probes)
        reason = self.probes.get(key, "")
        if reason:
            if self.is_manager:
                self.unavailable.append((what or key, reason))
                print(f"not available: {what or key}: {reason}", flush=True)
            return False
        return True

    def compiled(self, *names: str) -> Callable[[], str | None]:
        """A check for `available`: the programs compiled."""
        def check() -> str | None:
            for n in names:
                if self.probes.get(f"compile:{n}"):
                    return self.probes[f"compile:{n}"]
            return None
        return check

    def time_func(self, name: str, func: Callable[..., float], *args: Any, inner_loops: int | None = None,
                  metadata: dict[str, Any] | None = None) -> None:
        """pyperf's bench_time_func; the manager keeps the result for the ratio table."""
        bench = self.runner.bench_time_func(name, func, *args, inner_loops=inner_loops, metadata=metadata)
        if bench is not None and self.is_manager:
            self.results[name] = bench

    def command(self, name: str, cmd: list[str]) -> None:
        """pyperf's bench_command (wall time of a whole process)."""
        bench = self.runner.bench_command(name, cmd)
        if bench is not None and self.is_manager:
            self.results[name] = bench

    def measured(self, name: str, values: list[float], unit: str, metadata: dict[str, Any] | None = None) -> None:
        """Record values that are not times (bytes): one pyperf run per value, written to -o/--append
        like the others so that compare_to sees them. Manager only."""
        if not self.is_manager or not values:
            return
        assert self.args is not None
        meta = {"name": name, "unit": unit, **(metadata or {})}
        runs = [pyperf.Run([v], metadata=meta, collect_metadata=False) for v in values if v > 0]
        if not runs:
            return
        bench = pyperf.Benchmark(runs)
        self.results[name] = bench
        print(f"{name}: {bench.format_value(bench.median())} (median of {len(runs)})", flush=True)
        for path in (self.args.output, self.args.append):
            if path:
                if os.path.exists(path):
                    pyperf.add_runs(path, bench)
                else:
                    bench.dump(path)

    def report(self, ratios: list[Ratio]) -> None:
        """In the manager: print the ratio table, and write it to --summary if asked."""
        if self.args is None or not self.is_manager:
            return
        rows = [r for r in (ratio.evaluate(self.results) for ratio in ratios) if r is not None]
        if not math.isfinite(sum(r["ratio"] for r in rows)):  # pragma: no cover - a zero median
            rows = [r for r in rows if math.isfinite(r["ratio"])]
        print()
        print("\n".join(format_rows(self.title, rows, self.unavailable)), flush=True)
        if self.args.summary:
            with open(self.args.summary, "w", encoding="utf-8") as f:
                json.dump({"title": self.title, "rows": rows, "unavailable": self.unavailable}, f, indent=1)
