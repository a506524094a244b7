"""bench_spawn: the cost of one process that is spawned, waits, is stopped and reports back,
lispvm against an asyncio task doing the same.

Workload: ../shared/bench/spawn.lisp with N = 100,000: spawn N waiters (each blocks in a
receive), send each 'stop, collect N 'stopped replies.

Benchmarks, all in one pyperf run, values in seconds per process:
- spawn-asyncio: N tasks, each awaiting its own asyncio.Queue; the main coroutine puts "stop"
  in every queue and collects N "stopped" from its own queue, as spawn.lisp does.
- spawn-lispvm: `lispvm run spawn.lbc N` minus `lispvm run spawn.lbc 1`, whole processes.
The asyncio side subtracts its N=1 run too.

Usage: python perf/bench_spawn.py [--fast] [-o result.json] [--n 100000] [--schedulers K]
"""

from __future__ import annotations

import asyncio

from common import SHARED_BENCH, Ratio, Suite, lispvm_command, net_asyncio, net_command, run_checked


async def _spawn(n: int) -> None:
    """spawn.lisp in asyncio: the list of N tasks plays the list of N pids."""
    parent: asyncio.Queue[str] = asyncio.Queue()

    async def waiter(inbox: asyncio.Queue[str]) -> None:
        if await inbox.get() == "stop":
            parent.put_nowait("stopped")

    inboxes: list[asyncio.Queue[str]] = []
    tasks = []
    for _ in range(n):
        q: asyncio.Queue[str] = asyncio.Queue()
        inboxes.append(q)
        tasks.append(asyncio.create_task(waiter(q)))
    await asyncio.sleep(0)  # let every task start and block in its get(), as the waiters do
    for q in inboxes:
        q.put_nowait("stop")
    for _ in range(n):
        await parent.get()
    await asyncio.gather(*tasks)


def asyncio_spawn(loops: int, n: int) -> float:
    """pyperf time function: (spawn N) - (spawn 1), `loops` times, each in a fresh event loop."""
    return net_asyncio(loops, _spawn, n)


def main() -> None:
    """Register the benchmarks, run them (pyperf), print the ratio."""
    # fewer worker processes than pyperf's 20: each value spawns the whole --n processes
    suite = Suite("spawn", {"spawn": SHARED_BENCH / "spawn.lisp"}, processes=6)
    suite.option("--n", type=int, default=100_000, help="processes to spawn (default 100000)")
    suite.option("--schedulers", type=int, default=None, help="lispvm --schedulers (default: lispvm's)")
    args = suite.parse()
    n = args.n
    sched = [] if args.schedulers is None else ["--schedulers", str(args.schedulers)]
    run = [*lispvm_command(), "run", *sched, str(suite.lbc("spawn"))]
    ok = suite.available("spawn", lambda: suite.compiled("spawn")() or run_checked([*run, "100"], "all-stopped"),
                         "spawn lispvm")

    suite.time_func("spawn-asyncio", asyncio_spawn, n, inner_loops=n - 1)
    if ok:
        suite.time_func("spawn-lispvm", net_command, [*run, str(n)], [*run, "1"], inner_loops=n - 1)

    suite.report([Ratio(f"spawn N={n}: time per process lispvm / asyncio task", "spawn-lispvm", "spawn-asyncio",
                        unit="process")])


if __name__ == "__main__":
    main()
