"""bench_io: read a 100 MB log file line by line and count the lines that match (issue 15's figure).

- Python: a plain loop, `for line in open(path): if PATTERN in line: n += 1`, timed in this
  process from open to the count.
- lispvm: perf/programs/count_matches.lisp: (file/lines path), then a `loop` over the list
  counting the lines for which (str/find line PATTERN) is not nil; timed inside the program from
  before file/lines to the count (start-up not counted), with --schedulers 1. Its two parts
  (reading the file into a list, the Lisp loop) are shown apart too.
- lispvm, streaming: the same program with `stream`: file/open, then file/read-lines batch after
  batch (the next read ahead in the I/O pool), each counted by the same loop.
- CPU time too (a loaded machine stretches wall times): the Python loop's process time, and the
  lispvm run's (as a child process) less that of a run of an empty program.

The log (LINES lines of about 70 bytes, made with a fixed seed, one in 20 an ERROR line) is
written to a temporary directory, which is removed at the end. Output: seconds, the median of
ROUNDS alternated rounds, and the ratio lispvm / Python (the issue asks for at most 2).

Usage: python perf/bench_io.py [--mb 100] [--rounds 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PERF = Path(__file__).resolve().parent
PATTERN = "ERROR"


def lispvm_command() -> list[str]:
    script = Path(sys.executable).parent / "lispvm"
    return [str(script)] if script.exists() else [sys.executable, "-m", "lispvm.scheduler.cli"]


def make_log(path: Path, size: int) -> int:
    """Write about `size` bytes of log lines to `path`; the number of lines that match."""
    rng = random.Random(15)
    levels = ["INFO"] * 17 + ["WARN"] * 2 + ["ERROR"]
    n = matches = 0
    with open(path, "w", encoding="utf-8") as f:
        while n < size:
            chunk = []
            for _ in range(10_000):
                level = rng.choice(levels)
                matches += level == PATTERN
                chunk.append(f"2026-12-07T12:{rng.randrange(60):02d}:{rng.randrange(60):02d} {level} request "
                             f"id={rng.randrange(10**6)} path=/api/v1/items took {rng.randrange(500)}ms\n")
            text = "".join(chunk)
            f.write(text)
            n += len(text)
    return matches


def python_loop(path: Path) -> tuple[int, float, float]:
    """(count, seconds, CPU seconds) of the plain Python loop."""
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if PATTERN in line:
                n += 1
    return n, time.perf_counter() - t0, time.process_time() - c0


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def lispvm_run(path: Path, program: Path, *extra: str) -> tuple[str, float]:
    """(standard output, CPU seconds of the whole run, start-up included) of one lispvm run."""
    c0 = _children_cpu()
    out = subprocess.run(lispvm_command() + ["run", f"--allow-read={path}", "--schedulers", "1",
                                             str(program), str(path), PATTERN, *extra],
                         capture_output=True, text=True, check=True, timeout=600)
    return out.stdout, _children_cpu() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=float, default=100.0, help="size of the log in MB (default 100)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--keep", help="make the log in this directory and keep it (default: a temp dir)")
    ns = ap.parse_args()
    tmp = Path(ns.keep or tempfile.mkdtemp(prefix="lispvm-bench-io-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        path = tmp / "app.log"
        expected = make_log(path, int(ns.mb * 1_000_000))
        size = path.stat().st_size
        with open(path, "rb") as f:
            nlines = sum(1 for _ in f)
        empty = tmp / "empty.lisp"
        empty.write_text("(print 0 0 0)\n")
        py, py_cpu, lisp, lisp_cpu, read, loop, stream, stream_cpu = [], [], [], [], [], [], [], []
        for _ in range(ns.rounds):
            n, t, c = python_loop(path)
            assert n == expected, (n, expected)
            py.append(t)
            py_cpu.append(c)
            out, cpu = lispvm_run(path, PERF / "programs" / "count_matches.lisp")
            count, read_ms, loop_ms = out.split()
            assert int(count) == expected, (count, expected)
            out, cpu_s = lispvm_run(path, PERF / "programs" / "count_matches.lisp", "stream")
            count, _, stream_ms = out.split()
            assert int(count) == expected, (count, expected)
            _, startup_cpu = lispvm_run(path, empty)
            stream.append(float(stream_ms) / 1000.0)
            stream_cpu.append(cpu_s - startup_cpu)
            lisp.append((float(read_ms) + float(loop_ms)) / 1000.0)
            lisp_cpu.append(cpu - startup_cpu)
            read.append(float(read_ms) / 1000.0)
            loop.append(float(loop_ms) / 1000.0)
        p, m = statistics.median(py), statistics.median(lisp)
        pc, mc = statistics.median(py_cpu), statistics.median(lisp_cpu)
        print(f"{size / 1e6:.0f} MB, {nlines:,} lines, {expected:,} matching; median of {ns.rounds} alternated "
              f"rounds (cpu count {os.cpu_count()}, load average {os.getloadavg()[0]:.1f})")
        print(f"  python loop              {p:7.3f} s   (seconds: {', '.join(f'{t:.3f}' for t in py)})")
        print(f"  lispvm --schedulers 1    {m:7.3f} s   x{m / p:5.2f} of Python   "
              f"(seconds: {', '.join(f'{t:.3f}' for t in lisp)})")
        print(f"    of which file/lines    {statistics.median(read):7.3f} s")
        print(f"    of which the Lisp loop {statistics.median(loop):7.3f} s")
        sm, smc = statistics.median(stream), statistics.median(stream_cpu)
        print(f"  lispvm, streaming        {sm:7.3f} s   x{sm / p:5.2f} of Python   "
              f"(seconds: {', '.join(f'{t:.3f}' for t in stream)})")
        print(f"  CPU time: python {pc:.3f} s, lispvm {mc:.3f} s (its start-up's taken off): x{mc / pc:5.2f}; "
              f"streaming {smc:.3f} s: x{smc / pc:5.2f}")
    finally:
        if not ns.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
