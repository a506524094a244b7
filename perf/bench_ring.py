"""bench_ring: message throughput of a ring of processes, lispvm against asyncio.

Workload: ../shared/bench/ring.lisp with N = 1000 processes and M = 200 laps: a token makes
N*M = 200,000 hops, each one `send` of a fresh 3-element list and one selective `receive`.
Target (issue 4): lispvm's messages per second at least 2x asyncio's.

Benchmarks, all in one pyperf run, values in seconds per message (hop):
- ring-asyncio: 1000 asyncio tasks, each owning one asyncio.Queue, pass a ("token", k, main)
  tuple around the ring the same number of hops; the last one completes a future of main.
- ring-lispvm: `lispvm run ring.lbc N M` minus `lispvm run ring.lbc N 1`, whole processes:
  net of start-up and of building the ring. The same subtraction is made on the asyncio side.
  `lispvm run` picks its own number of schedulers (--schedulers K to fix it).

Usage: python perf/bench_ring.py [--fast] [-o result.json] [--n 1000] [--m 200] [--schedulers K]
"""

from __future__ import annotations

import asyncio
import time

from common import SHARED_BENCH, Ratio, Suite, lispvm_command, net_command, net_pairs, run_checked


async def _ring(n: int, m: int) -> None:
    """N tasks in a ring; the token starts at N*M and each hop passes it on with k - 1, like
    ring.lisp's `node`: N*M + 1 sends in all, the last to main."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    queues: list[asyncio.Queue[tuple[str, int, asyncio.Future[None]]]] = [asyncio.Queue() for _ in range(n)]

    async def node(inbox: asyncio.Queue, nxt: asyncio.Queue) -> None:
        while True:
            _, k, main = await inbox.get()
            if k == 0:
                main.set_result(None)
            else:
                nxt.put_nowait(("token", k - 1, main))

    tasks = [asyncio.create_task(node(queues[i], queues[(i + 1) % n])) for i in range(n)]
    queues[0].put_nowait(("token", n * m, done))
    await done
    for t in tasks:  # the nodes loop for ever, as ring.lisp's do; stop them as the VM stops its own
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def asyncio_ring(loops: int, n: int, m: int) -> float:
    """pyperf time function: (ring N M) - (ring N 1), `loops` times, each in a fresh event loop."""
    def pair() -> float:
        t0 = time.perf_counter()
        asyncio.run(_ring(n, m))
        t1 = time.perf_counter()
        asyncio.run(_ring(n, 1))
        return (t1 - t0) - (time.perf_counter() - t1)

    return net_pairs(loops, pair, f"asyncio ring {n} {m} less ring {n} 1")


def main() -> None:
    """Register the benchmarks, run them (pyperf), print the ratio."""
    suite = Suite("ring", {"ring": SHARED_BENCH / "ring.lisp"})
    suite.option("--n", type=int, default=1000, help="processes in the ring (default 1000)")
    suite.option("--m", type=int, default=200, help="laps of the token (default 200)")
    suite.option("--schedulers", type=int, default=None, help="lispvm --schedulers (default: lispvm's)")
    args = suite.parse()
    n, m = args.n, args.m
    lispvm = lispvm_command()
    sched = [] if args.schedulers is None else ["--schedulers", str(args.schedulers)]
    run = [*lispvm, "run", *sched, str(suite.lbc("ring"))]
    ok = suite.available("ring", lambda: suite.compiled("ring")() or run_checked([*run, str(n), "2"], "done"),
                         "ring lispvm")

    hops = n * (m - 1)  # net of the M=1 run
    suite.time_func("ring-asyncio", asyncio_ring, n, m, inner_loops=hops)
    if ok:
        suite.time_func("ring-lispvm", net_command, [*run, str(n), str(m)], [*run, str(n), "1"], inner_loops=hops)

    suite.report([Ratio(f"ring {n}x{m} msgs/s lispvm / asyncio (issue 4)", "ring-asyncio", "ring-lispvm",
                        (">=", 2), show="rate", unit="msg")])


if __name__ == "__main__":
    main()
