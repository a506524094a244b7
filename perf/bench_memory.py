"""bench_memory: resident memory per waiting process, and the cost of scanning a mailbox.

1. Memory (target: at most 600 bytes per process waiting in `receive`, issue 16).
   perf/programs/waiters.lisp spawns N processes that each wait in a receive, prints
   "ready <os pid>" once all of them are waiting, and waits. This driver starts
   `lispvm run --schedulers 1 waiters.lbc N` (one scheduler, so that every process lives in the
   one OS process whose memory is read), reads the line, reads VmRSS from /proc/<pid>/status,
   then ends the run with SIGTERM (lispvm stops cleanly on it). Per process:
       (VmRSS with N = 200,000 waiting - VmRSS with 1 waiting) / 199,999.
   The same is measured, in the same run, for N asyncio tasks each awaiting its own
   asyncio.Queue (the nearest thing asyncio has to a process with a mailbox).
   Not a time, so not a pyperf worker benchmark: the manager repeats it --rss-runs times and
   stores the values as pyperf benchmarks in bytes (memory-lispvm, memory-asyncio), written to
   -o with the rest, so that compare_to shows them too.

2. Mailbox scan (pyperf, seconds per receive): perf/programs/scan.lisp puts J = 10,000
   unmatched messages in its mailbox, then R times sends itself 'hit and receives it, so each
   receive skips J messages before it matches. `lispvm run scan.lbc J R` minus
   `lispvm run scan.lbc J 0`, divided by R. Baseline in the same run: the same selective
   receive written in Python over a list (append the match, scan for it, delete it).

Usage: python perf/bench_memory.py [--fast] [-o result.json] [--procs 200000] [--rss-runs 3]
       [--junk 10000] [--receives 100]
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from common import PROGRAMS, Ratio, Suite, lispvm_command, net_command, run_checked

# The asyncio side of the memory measurement, run as `python -c ASYNCIO_WAITERS N`: N tasks each
# blocked on its own queue, then "ready <pid>" and a wait, like waiters.lisp.
ASYNCIO_WAITERS = """
import asyncio, os, sys
async def main(n):
    up = 0
    async def waiter(q):
        nonlocal up
        up += 1
        await q.get()
    tasks = [asyncio.create_task(waiter(asyncio.Queue())) for _ in range(n)]
    while up < n:
        await asyncio.sleep(0)
    print("ready", os.getpid(), flush=True)
    await asyncio.sleep(60)
asyncio.run(main(int(sys.argv[1])))
"""


def vm_rss(pid: int) -> int:
    """VmRSS of an OS process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def rss_when_ready(cmd: list[str], timeout: float = 120.0) -> int:
    """Start `cmd`, wait for its "ready <pid>" line, return that pid's VmRSS, then stop it."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
        if not line.startswith("ready"):
            proc.kill()
            _, err = proc.communicate()
            why = "timed out" if not ready else f"printed {line!r}"
            raise RuntimeError(f"{' '.join(cmd)} {why}; status {proc.returncode}: {err.strip()[-300:]}")
        return vm_rss(int(line.split()[1]))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # both sides end cleanly on it
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def per_process(cmd: list[str], n: int) -> float:
    """(RSS with n waiting - RSS with 1 waiting) / (n - 1), in bytes."""
    return (rss_when_ready([*cmd, str(n)]) - rss_when_ready([*cmd, "1"])) / (n - 1)


def python_scan(loops: int, junk: int, receives: int) -> float:
    """pyperf time function: `receives` selective receives past `junk` unmatched messages,
    written in Python: the floor of a mailbox scan done by a Python loop."""
    total = 0.0
    for _ in range(loops):
        mailbox = ["junk"] * junk
        t0 = time.perf_counter()
        for _ in range(receives):
            mailbox.append("hit")
            for i, msg in enumerate(mailbox):
                if msg == "hit":
                    del mailbox[i]
                    break
        total += time.perf_counter() - t0
    return total


def main() -> None:
    """Run the scan benchmarks (pyperf), then the memory measurement, print the ratios."""
    suite = Suite("memory", {"waiters": PROGRAMS / "waiters.lisp", "scan": PROGRAMS / "scan.lisp"}, processes=10)
    suite.option("--procs", type=int, default=200_000, help="waiting processes (default 200000)")
    suite.option("--rss-runs", type=int, default=3, help="repetitions of the memory measurement (default 3)")
    suite.option("--junk", type=int, default=10_000, help="unmatched messages ahead of the match (default 10000)")
    suite.option("--receives", type=int, default=100, help="receives per scan run (default 100)")
    args = suite.parse()
    lispvm = lispvm_command()
    scan = [*lispvm, "run", "--schedulers", "1", str(suite.lbc("scan")), str(args.junk)]
    waiters = [*lispvm, "run", "--schedulers", "1", str(suite.lbc("waiters"))]

    scan_ok = suite.available("scan", lambda: suite.compiled("scan")() or run_checked([*scan, "3"], "done"),
                              "mailbox scan lispvm")
    mem_ok = suite.available("memory", lambda: suite.compiled("waiters")() or _try_rss(waiters),
                             "memory per waiting process lispvm")

    suite.time_func("scan-python", python_scan, args.junk, args.receives, inner_loops=args.receives)
    if scan_ok:
        suite.time_func("scan-lispvm", net_command, [*scan, str(args.receives)], [*scan, "0"],
                        inner_loops=args.receives)

    if suite.is_manager:  # not a worker benchmark: measured once here, after the pyperf part
        asyncio_cmd = [sys.executable, "-c", ASYNCIO_WAITERS]
        lisp_vals: list[float] = []
        py_vals: list[float] = []
        for _ in range(args.rss_runs):
            if mem_ok:
                lisp_vals.append(per_process(waiters, args.procs))
            py_vals.append(per_process(asyncio_cmd, args.procs))
        meta = {"description": f"(VmRSS with {args.procs} waiting - with 1) / {args.procs - 1}"}
        suite.measured("memory-lispvm", lisp_vals, "byte", meta)
        suite.measured("memory-asyncio", py_vals, "byte", meta)

    suite.report([
        Ratio(f"bytes per process waiting in receive (N={args.procs})", "memory-lispvm", None, ("<=", 600),
              show="bytes", unit="process"),
        Ratio("memory per waiting process lispvm / asyncio task", "memory-lispvm", "memory-asyncio",
              show="bytes", unit="process"),
        Ratio(f"receive past {args.junk} unmatched messages lispvm / Python list scan", "scan-lispvm",
              "scan-python", unit="receive"),
    ])


def _try_rss(cmd: list[str]) -> str | None:
    """A check for Suite.available: the memory program reaches "ready" (with 10 waiters)."""
    if not os.path.exists("/proc/self/status"):
        return "no /proc/<pid>/status on this system (VmRSS is read from it)"
    try:
        rss_when_ready([*cmd, "10"], timeout=60)
    except (RuntimeError, OSError, ValueError) as e:
        return str(e)
    return None


if __name__ == "__main__":
    main()
