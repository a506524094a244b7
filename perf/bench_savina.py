"""bench_savina: Savina-style actor programs, lispvm on 1 and 2 schedulers against asyncio tasks
and queues (issue 16 item 6; the figures "geometric mean of lispvm / asyncio <= 0.4 on one
scheduler" and "on the programs with parallelism, 2 schedulers <= 0.75x the time of 1").

Programs (perf/programs/savina/*.lisp; their asyncio twins in perf/savina_py.py):
pingpong (20,000 round trips), count (100,000 messages to a counting actor), threadring (a token
100,000 hops round 100 processes), fjthroughput (32 workers x 1,000 messages, each a little
arithmetic), fjcreate (5,000 processes, one message each), big (100 processes each sending 500
pings to pseudo-random others), chameneos (10 creatures, 10,000 meetings at a broker), fibactors
(fib(19), one process per call). The last four but chameneos have parallel work ("parallel"
below). Each prints a checksum; the manager checks it against the asyncio twin's on 1 and 2
schedulers before anything is timed.

Benchmarks, all in one pyperf run, values per program run:
- savina-NAME-s1 / -s2: `lispvm run --schedulers K NAME.lbc ARGS` minus the same with the small
  arguments (no messages, or fib(1)): start-up, loading and spawning the actors' processes where
  the small run does too cancel out;
- savina-NAME-asyncio: asyncio.run of the twin with ARGS minus with the small arguments.

Usage: python perf/bench_savina.py [--fast] [-o result.json] [--only pingpong,big]
"""

from __future__ import annotations

import asyncio
import time

from bench_gabriel import add_geomeans, print_geomeans
from common import (
    PROGRAMS,
    Ratio,
    Suite,
    far_schedulers_reason,
    lispvm_command,
    net_command,
    net_pairs,
    pick,
    run_checked,
)
from savina_py import PROGRAMS as PYTHON

SAVINA = PROGRAMS / "savina"


def asyncio_time(loops: int, name: str) -> float:
    """pyperf time function: `loops` times (twin with its arguments - twin with the small ones),
    each in a fresh event loop."""
    fn, args, small, _ = PYTHON[name]
    def pair() -> float:
        t0 = time.perf_counter()
        asyncio.run(fn(*args))
        t1 = time.perf_counter()
        asyncio.run(fn(*small))
        return (t1 - t0) - (time.perf_counter() - t1)

    return net_pairs(loops, pair, f"asyncio {name} {args} less {small}")


def main() -> None:
    """Register the benchmarks, check the checksums, run them (pyperf), print the ratios."""
    names = list(PYTHON)
    progs = {n: SAVINA / f"{n}.lisp" for n in names}
    progs["probe"] = PROGRAMS / "probe.lisp"
    suite = Suite("savina", progs, processes=4, values=2)
    suite.option("--only", default=None, help=f"comma-separated subset of {','.join(names)}")
    args = suite.parse()
    names = pick(names, args.only)
    lispvm = lispvm_command()
    two = suite.available("far2", lambda: suite.compiled("probe")() or far_schedulers_reason(suite.lbc("probe")),
                          "savina on 2 schedulers")
    one_rows, two_rows = [], []
    for name in names:
        fn, big, small, parallel = PYTHON[name]
        suite.time_func(f"savina-{name}-asyncio", asyncio_time, name)
        for k in (1, 2) if two else (1,):
            run = [*lispvm, "run", "--schedulers", str(k), str(suite.lbc(name))]

            def check(name: str = name, fn=fn, big: tuple = big, run: list[str] = run) -> str | None:
                return suite.compiled(name)() or run_checked([*run, *map(str, big)], str(asyncio.run(fn(*big))),
                                                             timeout=300)

            if suite.available(f"savina-{name}-s{k}", check, f"savina {name} lispvm --schedulers {k}"):
                suite.time_func(f"savina-{name}-s{k}", net_command, [*run, *map(str, big)], [*run, *map(str, small)])
        one_rows.append(Ratio(f"{name} lispvm 1 sched / asyncio", f"savina-{name}-s1", f"savina-{name}-asyncio"))
        if parallel:
            two_rows.append(Ratio(f"{name} lispvm 2 sched / 1 sched", f"savina-{name}-s2", f"savina-{name}-s1",
                                  ("<=", 0.75)))
        else:
            two_rows.append(Ratio(f"{name} lispvm 2 sched / 1 sched (no parallelism)", f"savina-{name}-s2",
                                  f"savina-{name}-s1"))
    suite.report(one_rows + two_rows)
    if suite.is_manager:
        add_geomeans(args.summary, [
            ("savina lispvm 1 sched / asyncio", [r.label for r in one_rows], 0.4),
            ("savina parallel programs, 2 sched / 1 sched",
             [r.label for r, n in zip(two_rows, names, strict=True) if PYTHON[n][3]], 0.75)])
        print_geomeans(args.summary)


if __name__ == "__main__":
    main()
