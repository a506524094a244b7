"""bench_placement: how a second scheduler shares Savina's actor programs (placement, moves).

For each program: `lispvm run --schedulers 1` and `--schedulers 2`, alternated, CPU time of the
child (user+sys, RUSAGE_CHILDREN, so a forked scheduler's time is included), medians. Then one
traced run on 2 schedulers (`--trace`): how many schedulers ran slices, how many processes moved
(`migrate` events), and each scheduler's share of the time inside slices (the sum of its
slice_in..slice_out spans). The larger share times the 2-scheduler CPU time is a stand-in for
the parallel time on a loaded machine, where wall-clock measures the other processes. "ended"
is how many processes ended on each scheduler in that run: a split that a loaded machine does
not blur (fib actors' is the same in every run).

Usage: python perf/bench_placement.py [--runs 5] [program ...]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from common import PROGRAMS, lispvm_command

SAVINA = PROGRAMS / "savina"
CASES = {  # program: arguments (pingpong is the chatty control: it should stay on one scheduler)
    "big": ["500", "100"],
    "fibactors": ["19"],
    "fjcreate": ["5000"],
    "fjthroughput": ["1000", "32"],
    "pingpong": ["20000"],
    "threadring": ["20000", "100"],
    "chameneos": ["5000", "10"],
}


def cpu_of(cmd: list[str]) -> float:
    """CPU seconds (user+sys) of one run of cmd and its descendants."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def traced(cmd: list[str], path: Path) -> tuple[int, int, dict[int, float], dict[int, int]]:
    """Schedulers that ran slices, processes moved, each scheduler's seconds inside slices, and
    how many processes ended on each (a split the machine's load does not blur)."""
    path.unlink(missing_ok=True)
    subprocess.run([*cmd[:2], "--trace", str(path), *cmd[2:]], stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, check=True)
    open_at: dict[tuple[int, str], float] = {}
    busy: dict[int, float] = defaultdict(float)
    ended: dict[int, int] = defaultdict(int)
    moves = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        ev = json.loads(line)
        kind, sid = ev["event"], ev["sched"]
        if kind == "migrate":
            moves += 1
        elif kind == "exit":
            ended[sid] += 1
        elif kind == "slice_in":
            open_at[sid, ev["pid"]] = ev["ts"]
        elif kind == "slice_out" and (sid, ev["pid"]) in open_at:
            busy[sid] += (ev["ts"] - open_at.pop((sid, ev["pid"]))) / 1e6
    return len(busy), moves, dict(busy), dict(ended)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("programs", nargs="*", default=list(CASES))
    args = ap.parse_args()
    lispvm = lispvm_command()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'program':14} {'1 sched':>8} {'2 scheds':>9} {'used':>4} {'moves':>5} {'larger share':>12}",
              f"{'est. ratio':>10} {'ended 0/1/..':>14}")
        for name in args.programs:
            lbc = Path(tmp) / f"{name}.lbc"
            asm = subprocess.run([*lispvm, "asm", str(SAVINA / f"{name}.lisp"), "-o", str(lbc)],
                                 capture_output=True, text=True)
            if asm.returncode != 0:
                sys.exit(f"lispvm asm {name}.lisp failed: {asm.stderr.strip()}")

            def cmd(s: int, name: str = name, lbc: Path = lbc) -> list[str]:
                return [*lispvm, "run", "--schedulers", str(s), str(lbc), *CASES[name]]
            one: list[float] = []
            two: list[float] = []
            for _ in range(args.runs):
                one.append(cpu_of(cmd(1)))
                two.append(cpu_of(cmd(2)))
            c1, c2 = statistics.median(one), statistics.median(two)
            used, moves, busy, ended = traced(cmd(2)[:2] + cmd(2)[2:], Path(tmp) / "trace.jsonl")
            share = max(busy.values()) / sum(busy.values()) if busy and sum(busy.values()) else 1.0
            split = "/".join(str(ended.get(k, 0)) for k in range(max(ended, default=0) + 1))
            print(f"{name:14} {c1:8.3f} {c2:9.3f} {used:4d} {moves:5d} {share:12.2f} {c2 * share / c1:10.2f}",
                  f"{split:>14}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
