"""bench_echo: a TCP echo server, 100 clients, round trips per second (issue 15's figure).

Servers, each in its own OS process, measured in alternation within one run:
- lispvm: perf/programs/echo_server.lisp, one Lisp process per connection (tcp/accept, then
  tcp/owner to a new process that loops tcp/recv -> tcp/send), with --schedulers 1 and 2;
- asyncio: `asyncio.start_server` with one handler task per connection (reader.read ->
  writer.write -> drain), the default event loop.

The load is the same for every server: one client OS process (perf/bench_echo.py --client)
holding CLIENTS connections on one epoll loop, each sending a 32-byte line and waiting for its
echo before the next; it counts completed round trips over a timed window after a warm-up.
Output: round trips per second, the median over ROUNDS alternated rounds, and the ratio of
lispvm to asyncio (>= 1 means lispvm serves at least as many).

The handlers are spread over the node's schedulers (spawn-on, round robin): on two schedulers
each connection's socket goes to its handler's scheduler (docs/io.md, "Spreading connections").

Usage: python perf/bench_echo.py [--clients 100] [--seconds 3] [--rounds 3] [--before DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

PERF = Path(__file__).resolve().parent
MESSAGE = b"0123456789abcdefghijklmnopqrstu\n"  # 32 bytes


def lispvm_command() -> list[str]:
    script = Path(sys.executable).parent / "lispvm"
    return [str(script)] if script.exists() else [sys.executable, "-m", "lispvm.scheduler.cli"]


def asyncio_server() -> None:
    """The baseline server (run as `bench_echo.py --asyncio-server`): prints its port."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except ConnectionError:  # a client that leaves may reset (the lispvm server reads it as the end too)
            pass
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=256)
        print(server.sockets[0].getsockname()[1], flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def client(port: int, clients: int, warmup: float, seconds: float) -> None:
    """The load (run as `bench_echo.py --client PORT`): prints {"round_trips": N, "seconds": S}."""
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(clients):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks.append(s)
        sel.register(s, selectors.EVENT_READ, [0])
    for s in socks:
        s.send(MESSAGE)
    n = len(MESSAGE)
    count = 0
    start = time.perf_counter()
    counting_from = start + warmup
    end = counting_from + seconds
    counted = False
    while True:
        now = time.perf_counter()
        if not counted and now >= counting_from:
            counted, count = True, 0
        if now >= end:
            break
        for key, _ in sel.select(timeout=1.0):
            s, got = key.fileobj, key.data
            data = s.recv(65536)
            if not data:
                raise SystemExit("the server closed a connection")
            got[0] += len(data)
            while got[0] >= n:
                got[0] -= n
                count += 1
                s.send(MESSAGE)
    elapsed = time.perf_counter() - counting_from
    for s in socks:
        s.close()
    print(json.dumps({"round_trips": count, "seconds": elapsed}))


def measure(server_cmd: list[str], clients: int, warmup: float, seconds: float,
            env: dict[str, str] | None = None) -> float:
    """Start a server, load it with the client process, stop it; round trips per second."""
    srv = subprocess.Popen(server_cmd, stdout=subprocess.PIPE, text=True, start_new_session=True,
                           env=None if env is None else {**os.environ, **env})
    try:
        port = int(srv.stdout.readline())
        out = subprocess.run([sys.executable, __file__, "--client", str(port), "--clients", str(clients),
                              "--warmup", str(warmup), "--seconds", str(seconds)],
                             capture_output=True, text=True, check=True, timeout=warmup + seconds + 120)
        r = json.loads(out.stdout)
        return r["round_trips"] / r["seconds"]
    finally:
        os.killpg(srv.pid, signal.SIGTERM)
        srv.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--before", help="also run the lispvm rows with the `lispvm` package found in this directory "
                                     "(another tree, e.g. a git archive of an earlier commit), for a before/after")
    ap.add_argument("--client", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--asyncio-server", action="store_true", help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns.asyncio_server:
        asyncio_server()
        return
    if ns.client is not None:
        client(ns.client, ns.clients, ns.warmup, ns.seconds)
        return
    program = str(PERF / "programs" / "echo_server.lisp")
    servers = {
        "asyncio.start_server": [sys.executable, __file__, "--asyncio-server"],
        "lispvm --schedulers 1": lispvm_command() + ["run", "--allow-net=127.0.0.1", "--schedulers", "1", program],
        "lispvm --schedulers 2": lispvm_command() + ["run", "--allow-net=127.0.0.1", "--schedulers", "2", program],
    }
    envs: dict[str, dict[str, str]] = {}
    if ns.before:
        for k in ("1", "2"):
            name = f"before: lispvm --schedulers {k}"
            servers[name] = [sys.executable, "-m", "lispvm.scheduler.cli", "run", "--allow-net=127.0.0.1",
                             "--schedulers", k, program]
            envs[name] = {"PYTHONPATH": os.path.abspath(ns.before)}
    rates: dict[str, list[float]] = {name: [] for name in servers}
    for _ in range(ns.rounds):
        for name, cmd in servers.items():
            rates[name].append(measure(cmd, ns.clients, ns.warmup, ns.seconds, envs.get(name)))
    base = statistics.median(rates["asyncio.start_server"])
    print(f"TCP echo, {ns.clients} clients, {len(MESSAGE)}-byte messages, median of {ns.rounds} rounds "
          f"of {ns.seconds:g} s (cpu count {os.cpu_count()})")
    for name, rs in rates.items():
        med = statistics.median(rs)
        print(f"  {name:24s} {med:10,.0f} round trips/s   x{med / base:5.2f} of asyncio   "
              f"(rounds: {', '.join(f'{r:,.0f}' for r in rs)})")


if __name__ == "__main__":
    main()
