"""bench_port: 100,000 lines through `cat`, lines per second (issue 15's figure).

- lispvm: perf/programs/port_cat.lisp: (port/open "cat" nil), a sender process writes the lines
  100 at a time with port/send and then port/close; the main process counts the
  (port p (line text)) messages until (port p (exit 0)). Timed inside the program, from before
  port/open to the exit message (so start-up is not counted), with --schedulers 1 and 2.
- Python: subprocess.Popen(["cat"], stdin=PIPE, stdout=PIPE) with the same pipes: a writer thread
  writes the same 100-line chunks and closes stdin, the main thread counts `for line in
  proc.stdout`, then waits for cat; timed from Popen to wait.

- lispvm, no port: the same program with `messages`: a process sends the main process the same N
  (port p (line text)) messages itself, the lines made beforehand: what receiving them costs
  the Lisp side alone, without cat and the pipes.

Both make the same text (`str(i) + "\\n"` for each line, 100 lines a chunk) before the clock
starts, and encode it to UTF-8 as they write. Output: lines per second, the median
of ROUNDS alternated rounds, and the ratio lispvm / Python.

Usage: python perf/bench_port.py [--lines 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

PERF = Path(__file__).resolve().parent
BATCH = 100


def lispvm_command() -> list[str]:
    script = Path(sys.executable).parent / "lispvm"
    return [str(script)] if script.exists() else [sys.executable, "-m", "lispvm.scheduler.cli"]


def python_cat(n: int) -> float:
    """Seconds for n lines through cat with subprocess and a writer thread."""
    chunks = ["".join(f"{i}\n" for i in range(start, min(n, start + BATCH))) for start in range(0, n, BATCH)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def feed() -> None:
        for text in chunks:
            proc.stdin.write(text.encode())
        proc.stdin.close()

    writer = threading.Thread(target=feed)
    writer.start()
    count = 0
    for _line in proc.stdout:
        count += 1
    proc.wait()
    writer.join()
    elapsed = time.perf_counter() - t0
    assert count == n, count
    return elapsed


def lispvm_cat(n: int, schedulers: int, *extra: str) -> float:
    out = subprocess.run(lispvm_command() + ["run", "--allow-run=cat", "--schedulers", str(schedulers),
                                             str(PERF / "programs" / "port_cat.lisp"), str(n), *extra],
                         capture_output=True, text=True, check=True, timeout=600)
    count, ms = out.stdout.split()
    assert int(count) == n, out.stdout
    return float(ms) / 1000.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ns = ap.parse_args()
    runs = {"python subprocess": lambda: python_cat(ns.lines),
            "lispvm --schedulers 1": lambda: lispvm_cat(ns.lines, 1),
            "lispvm --schedulers 2": lambda: lispvm_cat(ns.lines, 2),
            "lispvm, no port": lambda: lispvm_cat(ns.lines, 1, "messages")}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(ns.rounds):
        for name, fn in runs.items():
            times[name].append(fn())
    base = ns.lines / statistics.median(times["python subprocess"])
    print(f"{ns.lines:,} lines through cat, median of {ns.rounds} rounds (cpu count {os.cpu_count()})")
    for name, ts in times.items():
        rate = ns.lines / statistics.median(ts)
        print(f"  {name:24s} {rate:12,.0f} lines/s   x{rate / base:5.2f} of Python   "
              f"(seconds: {', '.join(f'{t:.3f}' for t in ts)})")


if __name__ == "__main__":
    main()
