"""bench_pingpong: message round trips between two processes, near and far.

Workload: ../shared/bench/pingpong.lisp: M rallies of (send p (list 'ping (self))) and
(receive ('pong ...)).
- near: `lispvm run pingpong.lbc M` (placement left to the VM), against asyncio: two tasks,
  two asyncio.Queues, the same M round trips.
- far: `lispvm run --schedulers 2 pingpong.lbc M far`, the ponger on scheduler 1, so every
  message crosses between OS processes; against a raw multiprocessing.Pipe round trip
  (send_bytes/recv_bytes of 4 bytes) between this process and a child, in the same run.
  Target (issue 5): far round trip within 2x of the Pipe round trip. The far case is measured
  only if `lispvm run --schedulers 2` really puts scheduler 1 in another OS process (probed
  with perf/programs/probe.lisp: (sys/schedulers) and the OS pid seen from scheduler 1);
  otherwise it prints "not available".

Values are seconds per round trip; lispvm times are whole processes net of the same program
with M=1 (which also pays the far scheduler's start).

Usage: python perf/bench_pingpong.py [--fast] [-o result.json] [--m 100000] [--far-m 10000]
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from multiprocessing.connection import Connection

from common import (
    PROGRAMS,
    SHARED_BENCH,
    Ratio,
    Suite,
    far_schedulers_reason,
    lispvm_command,
    net_asyncio,
    net_command,
    run_checked,
)


async def _pingpong(m: int) -> None:
    """pingpong.lisp in asyncio: the ponger answers ("ping", reply_queue) with "pong"."""
    inbox: asyncio.Queue = asyncio.Queue()
    mine: asyncio.Queue = asyncio.Queue()

    async def ponger() -> None:
        while True:
            msg = await inbox.get()
            if msg == "stop":
                return
            msg[1].put_nowait("pong")

    task = asyncio.create_task(ponger())
    for _ in range(m):
        inbox.put_nowait(("ping", mine))
        await mine.get()
    inbox.put_nowait("stop")
    await task


def asyncio_pingpong(loops: int, m: int) -> float:
    """pyperf time function: (M round trips) - (1 round trip), each in a fresh event loop."""
    return net_asyncio(loops, _pingpong, m)


def _echo(conn: Connection) -> None:
    """The child of the Pipe baseline: answer every message until b"stop"."""
    while True:
        msg = conn.recv_bytes()
        if msg == b"stop":
            return
        conn.send_bytes(b"pong")


def pipe_pingpong(loops: int, m: int) -> float:
    """pyperf time function: M raw Pipe round trips with a child OS process, `loops` times.

    The child is started before the clock and kept, so this is the round trip alone: the
    floor that a cross-process message pair cannot beat."""
    here, there = multiprocessing.Pipe()
    child = multiprocessing.Process(target=_echo, args=(there,), daemon=True)
    child.start()
    for _ in range(100):  # the child is up and its pages are touched
        here.send_bytes(b"ping")
        here.recv_bytes()
    t0 = time.perf_counter()
    for _ in range(loops * m):
        here.send_bytes(b"ping")
        here.recv_bytes()
    dt = time.perf_counter() - t0
    here.send_bytes(b"stop")
    child.join()
    return dt


def main() -> None:
    """Register the benchmarks, run them (pyperf), print the ratios."""
    suite = Suite("pingpong", {"pingpong": SHARED_BENCH / "pingpong.lisp", "probe": PROGRAMS / "probe.lisp"})
    suite.option("--m", type=int, default=100_000, help="near round trips (default 100000)")
    suite.option("--far-m", type=int, default=10_000, help="far round trips (default 10000)")
    args = suite.parse()
    m, far_m = args.m, args.far_m
    lispvm = lispvm_command()
    lbc = str(suite.lbc("pingpong"))
    near = [*lispvm, "run", lbc]
    far = [*lispvm, "run", "--schedulers", "2", lbc]

    near_ok = suite.available("near", lambda: suite.compiled("pingpong")() or run_checked([*near, "10"], "done"),
                              "pingpong near")
    far_ok = suite.available(
        "far", lambda: (suite.compiled("pingpong", "probe")() or far_schedulers_reason(suite.lbc("probe"))
                        or run_checked([*far, "10", "far"], "done")), "pingpong far (--schedulers 2)")

    suite.time_func("pingpong-asyncio", asyncio_pingpong, m, inner_loops=m - 1)
    if near_ok:
        suite.time_func("pingpong-lispvm-near", net_command, [*near, str(m)], [*near, "1"], inner_loops=m - 1)
    if far_ok:  # the baseline only matters when there is a far case to compare with it
        suite.time_func("pingpong-pipe", pipe_pingpong, far_m, inner_loops=far_m)
        suite.time_func("pingpong-lispvm-far", net_command, [*far, str(far_m), "far"], [*far, "1", "far"],
                        inner_loops=far_m - 1)

    suite.report([
        Ratio(f"pingpong near M={m}: round trip lispvm / asyncio", "pingpong-lispvm-near", "pingpong-asyncio",
              unit="round trip"),
        Ratio(f"pingpong far M={far_m}: round trip lispvm / Pipe (issue 5)", "pingpong-lispvm-far",
              "pingpong-pipe", ("<=", 2), unit="round trip"),
    ])


if __name__ == "__main__":
    main()
