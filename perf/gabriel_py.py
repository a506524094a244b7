"""The idiomatic CPython versions of perf/programs/gabriel/*.lisp (perf/bench_gabriel.py).

Each function takes the same argument as its Lisp program and returns the checksum that program
prints, so the benchmark can check that both computed the same thing. They are written as a
Python user would write them (recursion where the algorithm recurses, list comprehensions,
str.join, sorted), not as transliterations of the Lisp."""

from __future__ import annotations

import sys


def tak_r(r: int) -> int:
    """tak(18, 12, 6), r times; the sum."""
    def tak(x: int, y: int, z: int) -> int:
        if not y < x:
            return z
        return tak(tak(x - 1, y, z), tak(y - 1, z, x), tak(z - 1, x, y))
    return sum(tak(18, 12, 6) for _ in range(r))


def nqueens_r(r: int) -> int:
    """Solutions of 8 queens, r times; the total."""
    def ok(col: int, placed: list[int]) -> bool:
        return all(c != col and abs(c - col) != d for d, c in enumerate(reversed(placed), 1))

    def queens(n: int, placed: list[int]) -> int:
        if len(placed) == n:
            return 1
        return sum(queens(n, [*placed, col]) for col in range(n) if ok(col, placed))
    return sum(queens(8, []) for _ in range(r))


def _deriv(a):
    if not isinstance(a, tuple):
        return 1 if a == "x" else 0
    op, *args = a
    if op in ("+", "-"):
        return (op, *[_deriv(b) for b in args])
    if op == "*":
        return ("*", a, ("+", *[("/", _deriv(b), b) for b in args]))
    if op == "/":
        u, v = args
        return ("-", ("/", _deriv(u), v), ("/", u, ("*", v, v, _deriv(v))))
    raise ValueError(f"deriv: no rule for {op}")


def _leaves(t) -> int:
    return sum(_leaves(c) for c in t) if isinstance(t, tuple) else 1


def deriv_r(r: int) -> int:
    """The derivative of 3x^2 + ax^2 + bx + 5, r times; the leaves of the results."""
    expr = ("+", ("*", 3, "x", "x"), ("*", "a", "x", "x"), ("*", "b", "x"), 5)
    return sum(_leaves(_deriv(expr)) for _ in range(r))


def _sieve(n: int) -> list[int]:
    xs = list(range(2, n))
    done = []
    while xs[0] * xs[0] <= n:
        p = xs[0]
        done.append(p)
        xs = [x for x in xs[1:] if x % p]
    return done + xs


def sieve_r(r: int) -> int:
    """The primes below 20000, r times; count + sum, summed."""
    total = 0
    for _ in range(r):
        ps = _sieve(20000)
        total += len(ps) + sum(ps)
    return total


def strings_r(r: int) -> int:
    """Join 0..9999, split, bracket and join again, r times; the lengths."""
    total = 0
    for _ in range(r):
        s = ",".join(str(i) for i in range(10000))
        parts = s.split(",")
        t = "".join(f"[{p}]" for p in parts)
        total += len(s) + len(parts) + len(t)
    return total


def mandelbrot(n: int) -> int:
    """Points of an n x n grid bounded for 50 iterations."""
    count = 0
    for y in range(n):
        ci = 2.5 * (y / n) - 1.25
        for x in range(n):
            cr = 2.5 * (x / n) - 2.0
            zr = zi = 0.0
            for _ in range(50):
                if zr * zr + zi * zi > 4.0:
                    break
                zr, zi = zr * zr - zi * zi + cr, 2.0 * zr * zi + ci
            else:
                count += 1
    return count


def randoms(n: int) -> list[int]:
    """The pseudo-random integers of mergesort.lisp, in the same order (the Lisp conses each
    new one in front)."""
    out = []
    x = 42
    for _ in range(n):
        x = (x * 1103515245 + 12345) % 2147483648
        out.append(x)
    out.reverse()
    return out


def _checksum(xs: list[int]) -> int:
    acc = 0
    for i, x in enumerate(xs):
        acc = (acc + i * x) % 1000000007
    return acc


def _msort(xs: list[int]) -> list[int]:
    if len(xs) < 2:
        return xs
    k = len(xs) // 2
    a, b = _msort(xs[:k]), _msort(xs[k:])
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i] <= b[j]:
            out.append(a[i])
            i += 1
        else:
            out.append(b[j])
            j += 1
    out.extend(a[i:])
    out.extend(b[j:])
    return out


def mergesort(n: int) -> int:
    """Mergesort of n pseudo-random integers; the checksum of the result."""
    return _checksum(_msort(randoms(n)))


def listsort(n: int) -> int:
    """sorted() of n pseudo-random integers; the checksum of the result."""
    return _checksum(sorted(randoms(n)))


# name -> (function, argument of the measured run, argument of the start-up run)
PROGRAMS = {
    "tak": (tak_r, 50, 0),
    "nqueens": (nqueens_r, 10, 0),
    "deriv": (deriv_r, 20000, 0),
    "sieve": (sieve_r, 10, 0),
    "strings": (strings_r, 10, 0),
    "mandelbrot": (mandelbrot, 120, 0),
    "mergesort": (mergesort, 100000, 0),
    "listsort": (listsort, 100000, 0),
}

if __name__ == "__main__":
    for name in sys.argv[1:] or PROGRAMS:
        fn, big, _ = PROGRAMS[name]
        print(name, fn(big))
