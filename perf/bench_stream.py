"""bench_stream: one-way message throughput between schedulers in different OS processes.

Workload: perf/programs/stream.lisp: a sender on scheduler 0 sends N messages `(n i)` to a
counter on scheduler 1, which answers `done` once it has them all.
- lispvm: `lispvm run --schedulers 2 stream.lbc N` minus the same with N=1, per message.
- baselines, in the same run (issue 5): a child process reading from a raw
  `multiprocessing.Pipe`, sent N small pickled messages `("n", i)` (a) one `send` per message
  and (b) batched, a list of 100 messages per `send`; the child answers once it has them all.

Reported as messages per second, and as ratios of rates lispvm / baseline (below 1 means lispvm
moves fewer messages per second). Measured only if `--schedulers 2` really puts scheduler 1 in another
OS process (probed as in bench_pingpong).

Usage: python perf/bench_stream.py [--fast] [-o result.json] [--n 100000]
"""

from __future__ import annotations

import multiprocessing
import time
from multiprocessing.connection import Connection

from common import PROGRAMS, Ratio, Suite, far_schedulers_reason, lispvm_command, net_command, run_checked

BATCH = 100


def _count(conn: Connection, total: int) -> None:
    """The child: receive until `total` messages arrived (singly or in lists), then answer."""
    while True:
        got = 0
        while got < total:
            msg = conn.recv()
            got += len(msg) if msg.__class__ is list else 1
        conn.send("done")
        if conn.recv() == "stop":
            return


def pipe_stream(loops: int, n: int, batch: int) -> float:
    """pyperf time function: `loops` x N messages through a Pipe to a pre-started child."""
    here, there = multiprocessing.Pipe()
    child = multiprocessing.Process(target=_count, args=(there, n), daemon=True)
    child.start()
    total = 0.0
    for k in range(loops + 1):  # the first round warms up (the child starting, pages touched)
        t0 = time.perf_counter()
        if batch == 1:
            for i in range(n):
                here.send(("n", i))
        else:
            for i in range(0, n, batch):
                here.send([("n", j) for j in range(i, min(n, i + batch))])
        here.recv()
        if k:
            total += time.perf_counter() - t0
        here.send("stop" if k == loops else "again")
    child.join()
    return total


def main() -> None:
    """Register the benchmarks, run them (pyperf), print the ratios."""
    suite = Suite("stream", {"stream": PROGRAMS / "stream.lisp", "probe": PROGRAMS / "probe.lisp"})
    suite.option("--n", type=int, default=100_000, help="messages (default 100000)")
    args = suite.parse()
    n = args.n
    cmd = [*lispvm_command(), "run", "--schedulers", "2", str(suite.lbc("stream"))]
    ok = suite.available(
        "far", lambda: (suite.compiled("stream", "probe")() or far_schedulers_reason(suite.lbc("probe"))
                        or run_checked([*cmd, "10"], "done")), "stream across OS processes (--schedulers 2)")
    if ok:
        suite.time_func("stream-pipe-single", pipe_stream, n, 1, inner_loops=n)
        suite.time_func("stream-pipe-batched", pipe_stream, n, BATCH, inner_loops=n)
        suite.time_func("stream-lispvm", net_command, [*cmd, str(n)], [*cmd, "1"], inner_loops=n - 1)
    suite.report([
        Ratio(f"stream N={n} msgs/s across schedulers lispvm / Pipe one per send (issue 5)",
              "stream-pipe-single", "stream-lispvm", show="rate", unit="msg"),
        Ratio(f"stream N={n} msgs/s across schedulers lispvm / Pipe batched by {BATCH} (issue 5)",
              "stream-pipe-batched", "stream-lispvm", show="rate", unit="msg"),
    ])


if __name__ == "__main__":
    main()
