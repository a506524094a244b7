"""The asyncio versions of perf/programs/savina/*.lisp (perf/bench_savina.py): tasks and
asyncio.Queue mailboxes, as a Python user would write the same actors.

Each coroutine function takes the same arguments as its Lisp program and returns the checksum
that program prints."""

from __future__ import annotations

import asyncio
import sys


async def pingpong(n: int) -> int:
    """n round trips between two tasks."""
    to_pong: asyncio.Queue = asyncio.Queue()
    to_ping: asyncio.Queue = asyncio.Queue()

    async def pong() -> None:
        while (await to_pong.get()) != "stop":
            to_ping.put_nowait("pong")

    task = asyncio.create_task(pong())
    got = 0
    for _ in range(n):
        to_pong.put_nowait("ping")
        await to_ping.get()
        got += 1
    to_pong.put_nowait("stop")
    await task
    return got


async def count(n: int) -> int:
    """n increments to a counter task, then a request for the total."""
    inbox: asyncio.Queue = asyncio.Queue()
    reply: asyncio.Queue = asyncio.Queue()

    async def counter() -> None:
        k = 0
        while True:
            msg = await inbox.get()
            if msg[0] == "inc":
                k += msg[1]
            else:
                reply.put_nowait(k)
                return

    task = asyncio.create_task(counter())
    for _ in range(n):
        inbox.put_nowait(("inc", 1))
    inbox.put_nowait(("get",))
    total = await reply.get()
    await task
    return total


async def threadring(h: int, np: int = 100) -> int:
    """np tasks in a ring pass a token h hops; the index of its holder at the end."""
    queues: list[asyncio.Queue] = [asyncio.Queue() for _ in range(np)]
    done: asyncio.Queue = asyncio.Queue()

    async def node(i: int) -> None:
        inbox, nxt = queues[i], queues[(i + 1) % np]
        while True:
            k = await inbox.get()
            if k == 0:
                done.put_nowait(i)
            else:
                nxt.put_nowait(k - 1)

    tasks = [asyncio.create_task(node(i)) for i in range(np)]
    queues[0].put_nowait(h)
    holder = await done.get()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return holder


def _work(x: int) -> int:
    a = x
    for i in range(40):
        a = (a * 31 + i) % 1000003
    return a


async def fjthroughput(m: int, k: int = 32) -> int:
    """k workers each take m messages and do a little arithmetic on each; the sum."""
    results: asyncio.Queue = asyncio.Queue()

    async def worker(inbox: asyncio.Queue) -> None:
        acc = 0
        for _ in range(m):
            acc += _work(await inbox.get())
        results.put_nowait(acc)

    inboxes: list[asyncio.Queue] = [asyncio.Queue() for _ in range(k)]
    tasks = [asyncio.create_task(worker(q)) for q in inboxes]
    for j in range(m):
        for q in inboxes:
            q.put_nowait(j)
    total = 0
    for _ in range(k):
        total += await results.get()
    await asyncio.gather(*tasks)
    return total


async def fjcreate(n: int) -> int:
    """n tasks, each given one number, send back a little arithmetic on it; the sum."""
    results: asyncio.Queue = asyncio.Queue()

    async def child(inbox: asyncio.Queue) -> None:
        results.put_nowait(_work(await inbox.get()))

    for i in range(n):
        q: asyncio.Queue = asyncio.Queue()
        asyncio.create_task(child(q))
        q.put_nowait(i)
    total = 0
    for _ in range(n):
        total += await results.get()
    return total


def _next_rand(x: int) -> int:
    return (x * 1103515245 + 12345) % 2147483648


async def big(m: int, w: int = 100) -> int:
    """w tasks each send m pings to pseudo-random others, answered with pongs; all the pongs."""
    inboxes: list[asyncio.Queue] = [asyncio.Queue() for _ in range(w)]
    done: asyncio.Queue = asyncio.Queue()

    async def worker(i: int) -> None:
        inbox = inboxes[i]
        seed, left, got = _next_rand(i + 1), m, 0
        if left > 0:
            inboxes[seed % w].put_nowait(("ping", i))
        while True:
            msg = await inbox.get()
            if msg[0] == "ping":
                inboxes[msg[1]].put_nowait(("pong",))
            elif msg[0] == "pong":
                got += 1
                if left == 1:
                    done.put_nowait(got)
                    left = 0
                else:
                    seed = _next_rand(seed)
                    inboxes[seed % w].put_nowait(("ping", i))
                    left -= 1
            else:
                return

    tasks = [asyncio.create_task(worker(i)) for i in range(w)]
    total = 0
    if m:
        for _ in range(w):
            total += await done.get()
    for q in inboxes:
        q.put_nowait(("stop",))
    await asyncio.gather(*tasks)
    return total


async def chameneos(n: int, c: int = 10) -> int:
    """c creatures meet pairwise at a broker n times; the meetings they count (2 n)."""
    broker_in: asyncio.Queue = asyncio.Queue()
    reports: asyncio.Queue = asyncio.Queue()

    async def creature(colour: int) -> None:
        inbox: asyncio.Queue = asyncio.Queue()
        met = 0
        while True:
            broker_in.put_nowait(("meet", inbox, colour))
            msg = await inbox.get()
            if msg == "stop":
                reports.put_nowait(met)
                return
            other = msg
            colour = colour if colour == other else 3 - colour - other
            met += 1

    async def broker() -> None:
        left, waiting = n, None
        while True:
            msg = await broker_in.get()
            if msg[0] == "end":
                if waiting:
                    waiting[0].put_nowait("stop")
                return
            _, who, colour = msg
            if left == 0:
                who.put_nowait("stop")
            elif waiting is None:
                waiting = (who, colour)
            else:
                who.put_nowait(waiting[1])
                waiting[0].put_nowait(colour)
                waiting = None
                left -= 1

    b = asyncio.create_task(broker())
    tasks = [asyncio.create_task(creature(i % 3)) for i in range(c)]
    total = 0
    for _ in range(c):
        total += await reports.get()
    broker_in.put_nowait(("end",))
    await asyncio.gather(b, *tasks)
    return total


async def fibactors(n: int) -> int:
    """fib(n) with one task per call, each putting its value in its parent's queue."""
    async def fib(k: int, parent: asyncio.Queue) -> None:
        if k < 2:
            parent.put_nowait(k)
            return
        inbox: asyncio.Queue = asyncio.Queue()
        asyncio.create_task(fib(k - 1, inbox))
        asyncio.create_task(fib(k - 2, inbox))
        parent.put_nowait(await inbox.get() + await inbox.get())

    top: asyncio.Queue = asyncio.Queue()
    asyncio.create_task(fib(n, top))
    return await top.get()


# name -> (coroutine function, arguments of the measured run, of the start-up run, parallel?)
PROGRAMS = {
    "pingpong": (pingpong, (20000,), (0,), False),
    "count": (count, (100000,), (0,), False),
    "threadring": (threadring, (100000, 100), (0, 100), False),
    "fjthroughput": (fjthroughput, (1000, 32), (0, 32), True),
    "fjcreate": (fjcreate, (5000,), (0,), True),
    "big": (big, (500, 100), (0, 100), True),
    "chameneos": (chameneos, (10000, 10), (0, 10), False),
    "fibactors": (fibactors, (19,), (1,), True),
}

if __name__ == "__main__":
    for name in sys.argv[1:] or PROGRAMS:
        fn, args, small, _ = PROGRAMS[name]
        print(name, asyncio.run(fn(*args)), asyncio.run(fn(*small)))
