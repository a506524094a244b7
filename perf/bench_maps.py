"""bench_maps: map/put, map/get and vec/set (LANGUAGE.md section 9) against Python's dict and list.

Workload: perf/programs/maps.lisp, N = 200,000 operations on integer keys or indexes:
- put: N `map/put` into a map growing from {} (a persistent hash map: each put makes a new map);
- get: 10 N `map/get` on that map (10 rounds over its keys), summed;
- set: N `vec/set` on a vector of N elements (a persistent vector: each set makes a new vector).

Benchmarks, all in one pyperf run, values per operation:
- maps-{put,get,set}-lispvm-{fast,interp}: whole `lispvm run [--no-jit]` processes, net: put N
  minus put 1 (start-up), get N minus put N (start-up and building), set N minus make N (10
  rounds of gets, because one round is too short a difference to measure between two processes);
- maps-{put,get,set}-python: the same loop in CPython on a dict / a list, updated in place (what a
  Python programmer writes; no copy per update);
- maps-{put,set}-persistent: the same loop in CPython on the libraries lispvm uses
  (immutables.Map.set, pyrsistent's pvector.set), which says how much of lispvm's cost is the
  persistent structure itself and how much is the VM around it.

Usage: python perf/bench_maps.py [--fast] [-o result.json] [--n 200000]
"""

from __future__ import annotations

import time

from common import PROGRAMS, Ratio, Suite, lispvm_command, net_command, run_checked


def python_put(loops: int, n: int) -> float:
    """pyperf time function: N dict stores into a dict growing from empty."""
    t0 = time.perf_counter()
    for _ in range(loops):
        d: dict[int, int] = {}
        for i in range(n):
            d[i] = i
    return time.perf_counter() - t0


def python_get(loops: int, n: int) -> float:
    """pyperf time function: N dict lookups, summed (per loop; the lispvm side does 10 rounds)."""
    d = {i: i for i in range(n)}
    t0 = time.perf_counter()
    for _ in range(loops):
        acc = 0
        for i in range(n):
            acc += d[i]
    return time.perf_counter() - t0


def python_set(loops: int, n: int) -> float:
    """pyperf time function: N list stores, one per index."""
    t0 = time.perf_counter()
    for _ in range(loops):
        xs = [0] * n
        for i in range(n):
            xs[i] = i
    return time.perf_counter() - t0


def persistent_put(loops: int, n: int) -> float:
    """pyperf time function: N immutables.Map.set, each making a new map."""
    from immutables import Map

    t0 = time.perf_counter()
    for _ in range(loops):
        m = Map()
        for i in range(n):
            m = m.set(i, i)
    return time.perf_counter() - t0


def persistent_set(loops: int, n: int) -> float:
    """pyperf time function: N pvector.set, each making a new vector (the making not timed)."""
    from pyrsistent import pvector

    total = 0.0
    for _ in range(loops):
        v = pvector([0] * n)
        t0 = time.perf_counter()
        for i in range(n):
            v = v.set(i, i)
        total += time.perf_counter() - t0
    return total


def main() -> None:
    """Register the benchmarks, run them (pyperf), print the ratios."""
    suite = Suite("maps", {"maps": PROGRAMS / "maps.lisp"})
    suite.option("--n", type=int, default=200_000, help="operations per run (default 200000)")
    args = suite.parse()
    n = args.n
    lbc = str(suite.lbc("maps"))
    lispvm = lispvm_command()

    ok = suite.available("maps", suite.compiled("maps"), "maps (all lispvm variants)")
    expect = {"put": str(n), "get": str(10 * (n * (n - 1) // 2)), "set": str(n - 1)}
    ops = {"put": n - 1, "get": 10 * n, "set": n}  # operations in the net difference of two runs
    small = {"put": ["put", "1"], "get": ["put", str(n)], "set": ["make", str(n)]}
    tiers = (("fast", []), ("interp", ["--no-jit"]))
    for op in ("put", "get", "set"):
        for tier, flags in tiers:
            big = [*lispvm, "run", *flags, lbc, op, str(n)]
            if ok and suite.available(f"maps-{op}-{tier}", lambda big=big, op=op: run_checked(big, expect[op]),
                                      f"maps {op} lispvm {tier}"):
                suite.time_func(f"maps-{op}-lispvm-{tier}", net_command, big, [*lispvm, "run", *flags, lbc, *small[op]],
                                inner_loops=ops[op])
    suite.time_func("maps-put-python", python_put, n, inner_loops=n)
    suite.time_func("maps-get-python", python_get, n, inner_loops=n)
    suite.time_func("maps-set-python", python_set, n, inner_loops=n)
    suite.time_func("maps-put-persistent", persistent_put, n, inner_loops=n)
    suite.time_func("maps-set-persistent", persistent_set, n, inner_loops=n)

    rows = []
    for op, what, py in (("put", "map/put", "dict store"), ("get", "map/get", "dict lookup"),
                         ("set", "vec/set", "list store")):
        for tier, name in (("fast", "fast tier"), ("interp", "interpreter")):
            rows.append(Ratio(f"{what} N={n} {name} / Python {py}", f"maps-{op}-lispvm-{tier}",
                              f"maps-{op}-python", unit="op"))
        if op != "get":
            lib = "immutables.Map.set" if op == "put" else "pvector.set"
            rows.append(Ratio(f"{what} N={n} fast tier / Python {lib}", f"maps-{op}-lispvm-fast",
                              f"maps-{op}-persistent", unit="op"))
    suite.report(rows)


if __name__ == "__main__":
    main()
