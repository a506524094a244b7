"""Differential fuzzing of the fast tier's loop optimisations (issue 16, wave 4): typed loops
(a loop whose numbers keep their class, written twice under a class test at entry), arithmetic
folded into its one reader, copies and constants named by their reader, predicates fused into
their branch, `str/find` as `in`, inline `vec/get`, `vec/len`, `self` and `str`.

A seeded generator writes functions made of `loop`/`recur` over an int counter and up to four
int, float or other variables updated from each other in every order (swaps, rotations,
shadowing `let`s, nested loops, values that change class mid-loop, `try` inside the loop,
huge ints near the Lisp int limit, NaN and inf, `str/find` and `vec/get` as tests). Each
program runs three ways in this OS process (tests/test_differential.py's run_mode:
interpreted, LISPVM_JIT=eager where every function is compiled at its first call, and
default); output, error lines and exit status must be the same.

The generator is deterministic for a seed (random.Random), so a failing seed reproduces with
`program(seed)`."""

from __future__ import annotations

import random

import pytest
from test_differential import run_mode

MODES = ("interpreted", "eager", "default")

# Globals every program defines: a vector for vec/get, a string, and integers near the limit
# (vm/errors.py INT_LIMIT is 2**1048576: H*H is below it, HM*2 or HM*HM past it).
HEADER = ['(def vv [10 -2 3.5 7])', '(def s "xyz")', '(def H (bit/shl 1 524287))',
          '(def HM (- (bit/shl 1 1048575) 1))']
BIG = ["H", "HM", "(- H)", str(1 << 62), str((1 << 63) - 1), "-9223372036854775808"]
FLOATS = ["0.5", "-2.25", "3.0", "1e3", "-0.0", "0.0", "1e308", "1e-300", "2.5", "-1.5", "0.1"]
OTHERS = ["nil", '"s"', "true", "'x", "(list 1)"]
NAMES = ["a", "b", "c", "d"]


class Gen:
    """Random loop programs from one random.Random."""

    def __init__(self, rng: random.Random) -> None:
        self.r = rng

    def const(self, cls: str) -> str:
        r = self.r
        if cls == "int":
            return r.choice([str(r.randint(-9, 9)), str(r.randint(-9, 9)), str(r.randint(-1000, 1000)),
                             str(r.randint(-10**18, 10**18)), r.choice(BIG), "0", "1", "-1", "2", "31", "1000003"])
        if cls == "float":
            return r.choice(FLOATS)
        return r.choice(OTHERS)

    def num(self, vs: list[str], depth: int) -> str:
        """A number expression over the variables vs (mostly: errors are part of the test)."""
        r = self.r
        if depth <= 0 or r.random() < 0.3:
            if vs and r.random() < 0.75:
                return r.choice(vs)
            return self.const("int" if r.random() < 0.7 else "float")

        def sub() -> str:
            return self.num(vs, depth - 1)

        k = r.random()
        if k < 0.45:
            op = r.choice(["+", "-", "*", "+", "-"])
            n = r.choice([1, 2, 2, 2, 3]) if op != "*" else r.choice([2, 2, 3])
            return f"({op} {' '.join(sub() for _ in range(n))})"
        if k < 0.6:
            op = r.choice(["mod", "div", "mod", "/"])
            d = r.choice([sub(), str(r.choice([2, 3, 7, 1000003, -3, 0])), "2.0"])
            return f"({op} {sub()} {d})"
        if k < 0.7:
            return f"(if {self.test(vs, depth - 1)} {sub()} {sub()})"
        if k < 0.75:
            v = r.choice(vs) if vs else "q"
            return f"(let (({v} {sub()})) {self.num(vs + [v], depth - 1)})"
        if k < 0.8:
            return f"({r.choice(['abs', 'min', 'max'])} {sub()}{' ' + sub() if r.random() < 0.5 else ''})"
        if k < 0.85:
            return f"(try {sub()} (catch e {self.const('int')}))"
        if k < 0.9:
            return f"({r.choice(['int', 'float'])} {sub()})"
        return f"(cond ({self.test(vs, depth - 1)} {sub()}) ({self.test(vs, depth - 1)} {sub()}) (true {sub()}))"

    def test(self, vs: list[str], depth: int) -> str:
        """A branch test: comparisons, not/and/or, str/find, vec/get, type predicates."""
        r = self.r
        k = r.random()

        def sub() -> str:
            return self.num(vs, max(depth - 1, 0))

        if k < 0.6:
            return f"({r.choice(['<', '<=', '>', '>=', '==', '!='])} {sub()} {sub()})"
        if k < 0.7:
            return f"(not {self.test(vs, depth - 1)})"
        if k < 0.8:
            return f"({r.choice(['and', 'or'])} {self.test(vs, depth - 1)} {self.test(vs, depth - 1)})"
        if k < 0.85:
            hay = r.choice(['"abcab"', "s", "(str i)"])
            needle = r.choice(['"b"', '"z"', '""', "s", f"(str (mod {sub()} 3))"])
            return f"(str/find {hay} {needle})"
        if k < 0.9:
            return f"(< (vec/get vv (mod {sub()} 4)) {sub()})"
        # a type predicate of a variable (of a negative float constant it is miscompiled on main
        # at the time of writing, `-2.5.__class__`: kept out until fixed, see the module's doc)
        return f"({r.choice(['int?', 'float?'])} {r.choice(vs) if vs else sub()})"

    def loop(self, params: list[str], depth: int) -> str:
        r = self.r
        names = NAMES[:r.randint(1, 4)]
        inits = []
        for i in range(len(names)):
            c = r.random()
            inits.append(r.choice(params) if c < 0.35 else self.const("int") if c < 0.6 else
                         self.const("float") if c < 0.85 else self.num(params + names[:i], 1) if c < 0.95
                         else self.const("other"))
        vs = ["i", *names]
        lim = r.randint(0, 12)
        recur_vals = []
        for v in names:
            c = r.random()
            if c < 0.2:
                recur_vals.append(r.choice(vs))  # swaps, rotations
            elif c < 0.25:  # a value that changes class in one round
                recur_vals.append(f"(if (== i {r.randint(0, lim + 1)}) "
                                  f"{self.const(r.choice(['int', 'float', 'other']))} {v})")
            elif c < 0.3 and depth > 0:
                recur_vals.append(self.loop(vs, depth - 1))
            else:
                recur_vals.append(self.num(vs, r.randint(1, 3)))
        step = r.choice(["(+ i 1)", "(+ 1 i)", "(- i -1)"])
        recur = f"(recur {step} {' '.join(recur_vals)})"
        res = r.choice([f"(list {' '.join(vs)})", f"(list {' '.join(vs)})", self.num(vs, 2),
                        f"(str {' '.join(vs)})"])
        test = r.choice([f"(>= i {lim})", f"(== i {lim})", f"(> i {lim - 1})", f"(not (< i {lim}))"])
        kind = r.random()
        if kind < 0.5:
            body = f"(if {test} {res} {recur})"
        elif kind < 0.75:
            alt = f"(recur {step} {' '.join(self.num(vs, 2) for _ in names)})"
            body = f"(cond ({test} {res}) ({self.test(vs, 1)} {alt}) (true {recur}))"
        elif kind < 0.9:
            body = f"(if (< i {lim}) {recur} {res})"
        else:  # a variable shadowed for the body (never i: the loop must end)
            w = r.choice(names)
            body = f"(let (({w} {self.num(vs, 2)})) (if {test} {res} {recur}))"
        bindings = "(i 0) " + " ".join(f"({v} {x})" for v, x in zip(names, inits))
        return f"(loop ({bindings}) {body})"


def program(seed: int, nfuncs: int = 12) -> str:
    """The program of a seed: nfuncs functions of two parameters, each called three times
    (under try, printing the error's kind), and sometimes one call whose error is uncaught."""
    r = random.Random(seed)
    g = Gen(r)
    out = list(HEADER)
    for k in range(nfuncs):
        out.append(f"(def f{k} (p q) {g.loop(['p', 'q'], r.choice([0, 0, 1, 1, 2]))})")
        for _ in range(3):
            first = g.const(r.choice(["int", "int", "float", "other"]) if r.random() < 0.3 else "int")
            second = g.const("int" if r.random() < 0.8 else "float")
            out.append(f"(print {k} (try (f{k} {first} {second}) (catch e (list 'err (nth e 1)))))")
    if r.random() < 0.2:
        out.append(f"(print (f{r.randrange(nfuncs)} {g.const('other')} 1))")
    return "\n".join(out) + "\n"


def three_ways(source: str, functions: int = 0) -> tuple[str, str, int]:
    """The (stdout, stderr, status) of source, the same in every mode; eagerly, at least
    `functions` functions went through the fast tier (else the test would test one tier)."""
    results = {}
    for mode in MODES:
        out, err, status, compiled, refused = run_mode(source, mode)
        if mode == "eager":
            assert compiled + refused >= functions, "eager mode compiled nothing"
        results[mode] = (out, err, status)
    assert results["eager"] == results["interpreted"], f"eager differs:\n{source}"
    assert results["default"] == results["interpreted"], f"default differs:\n{source}"
    return results["interpreted"]


def test_generator_is_deterministic_and_makes_loops() -> None:
    assert program(7) == program(7) and program(7) != program(8)
    assert program(7).count("(loop (") >= 12


# Seeds 300000-300149 include 300141, where the generator found a folded value read twice by its
# reader; the regression cases below hold that one and the other miscompilations it found.
SEEDS = range(300000, 300150)


def test_fuzz_loops_three_ways() -> None:
    for seed in SEEDS:
        three_ways(program(seed), functions=1)


@pytest.mark.slow
@pytest.mark.parametrize("start", range(300150, 300600, 40))
def test_fuzz_loops_three_ways_long(start: int) -> None:
    for seed in range(start, min(start + 40, 300600)):  # 40 a test: under the per-test timeout
        three_ways(program(seed), functions=1)


# --- hand-written cases: each a function and the lines it prints (the interpreter's, checked by
# hand), run three ways. E calls a thunk and turns an error into (err KIND MESSAGE), so that the
# message, not only the kind, must be the same in every tier.
PRELUDE = ("(def E (x) (try (x) (catch e (list 'err (nth e 1) (nth e 2)))))\n"
           "(def HM (- (bit/shl 1 1048575) 1))\n")

CASES = [  # (source, expected output)
    (
        '(def swap (n) (loop ((i 0) (a 1) (b 2.5)) (if (>= i n) (list a b) (recur (+ i 1) b a))))\n(print '
        '(E (fn () (swap 5))))\n'
        ,
        '(2.5 1)\n'
    ),
    (
        '(def rot (n) (loop ((i 0) (a 1) (b 2) (c 3)) (if (>= i n) (list a b c) (recur (+ i 1) b c '
        'a))))\n(print (E (fn () (rot 7))))\n'
        ,
        '(2 3 1)\n'
    ),
    (
        '(def fib (n) (loop ((i 0) (a 0) (b 1)) (if (>= i n) a (recur (+ i 1) b (+ a b)))))\n(print (E '
        '(fn () (fib 90))))\n'
        ,
        '2880067194370816120\n'
    ),
    (
        '(def chain (n) (loop ((i 0) (x 1) (y 2)) (if (>= i n) (list x y) (recur (+ i 1) (- (+ x y) i) '
        '(- x (+ y 1))))))\n(print (E (fn () (chain 9))))\n'
        ,
        '(-56 -69)\n'
    ),
    (
        "(def sq (n x) (loop ((i 0) (x x)) (if (>= i n) (if (> x 100000) 'big x) (recur (+ i 1) (* x "
        'x)))))\n(print (E (fn () (sq 40 3))))\n(print (E (fn () (sq 40 -3))))\n(print (E (fn () (sq 30 '
        '1.5))))\n'
        ,
        '(err system_limit "*: the product is an integer of more than 1,048,576 bits")\n(err system_limit '
        '"*: the product is an integer of more than 1,048,576 bits")\nbig\n'
    ),
    (
        '(def fsum (n x) (loop ((i 0) (s 0.0)) (if (>= i n) s (recur (+ i 1) (+ s (/ x (- 5 '
        'i)))))))\n(print (E (fn () (fsum 10 1.0))))\n'
        ,
        '(err badarg "/: division by zero")\n'
    ),
    (
        '(def nanloop (n) (loop ((i 0) (x (/ 0.0 1.0)) (y 1e308)) (if (>= i n) (list x y (< x y) (== x '
        'x)) (recur (+ i 1) (- (* y 10.0) (* y 10.0)) (* y 10.0)))))\n(print (E (fn () (nanloop 3))))\n'
        ,
        '(nan inf false false)\n'
    ),
    (
        '(def nancmp (n) (loop ((i 0) (x 0.0) (c 0)) (if (>= i n) c (recur (+ i 1) (- (* 1e308 10.0) (* '
        '1e308 10.0)) (if (< x 1.0) (+ c 1) (if (>= x 1.0) (+ c 10) (+ c 100)))))))\n(print (E (fn () '
        '(nancmp 4))))\n'
        ,
        '301\n'
    ),
    (
        '(def change (n) (loop ((i 0) (a 1)) (if (>= i n) a (recur (+ i 1) (if (== i 3) 1.5 (+ a '
        '1))))))\n(print (E (fn () (change 6))))\n'
        ,
        '3.5\n'
    ),
    (
        '(def tonil (n) (loop ((i 0) (a 1)) (if (>= i n) a (recur (+ i 1) (if (== i 3) nil (+ a '
        '1))))))\n(print (E (fn () (tonil 6))))\n'
        ,
        '(err badarg "+: expected numbers, got nil and integer 1")\n'
    ),
    (
        '(def tostr (n) (loop ((i 0) (a 1)) (if (>= i n) a (recur (+ i 1) (if (== i 2) "s" (+ a '
        'i))))))\n(print (E (fn () (tostr 6))))\n'
        ,
        '(err badarg "+: expected numbers, got string \\"s\\" and integer 3")\n'
    ),
    (
        '(def big (n x) (loop ((i 0) (a x)) (if (>= i n) (> a 0) (recur (+ i 1) (* a a)))))\n(print (E '
        '(fn () (big 25 3))))\n'
        ,
        '(err system_limit "*: the product is an integer of more than 1,048,576 bits")\n'
    ),
    (
        '(def bigadd (n x) (loop ((i 0) (a x) (b 0.5)) (if (>= i n) b (recur (+ i 1) (+ a a) (+ b '
        'a)))))\n(print (E (fn () (bigadd 3 (bit/shl 1 1100)))))\n'
        ,
        '(err system_limit "number too large (int too large to convert to float)")\n'
    ),
    (
        '(def bigsub (n x) (loop ((i 0) (a x) (b 0.5)) (if (>= i n) b (recur (+ i 1) a (- b '
        'a)))))\n(print (E (fn () (bigsub 3 (bit/shl 1 1100)))))\n'
        ,
        '(err system_limit "number too large (int too large to convert to float)")\n'
    ),
    (
        '(def bigmod (n x) (loop ((i 0) (a x)) (if (>= i n) (mod a 1000) (recur (+ i 1) (mod (+ (* a 31) '
        'i) 1000003)))))\n(print (E (fn () (bigmod 40 (- (bit/shl 1 1048575) 1)))))\n'
        ,
        '(err system_limit "*: the product is an integer of more than 1,048,576 bits")\n'
    ),
    (
        '(def divz (n) (loop ((i 0) (a 10)) (if (>= i n) a (recur (+ i 1) (+ a (try (div 100 (- 3 i)) '
        '(catch e 1000)))))))\n(print (E (fn () (divz 6))))\n'
        ,
        '1043\n'
    ),
    (
        '(def divz2 (n) (loop ((i 0) (a 10)) (if (>= i n) a (recur (+ i 1) (+ a (div 100 (- 3 '
        'i)))))))\n(print (E (fn () (divz2 6))))\n'
        ,
        '(err badarg "div: division by zero")\n'
    ),
    (
        '(def modf (n) (loop ((i 0) (a 10.5) (b 3)) (if (>= i n) (list a b) (recur (+ i 1) (mod a (- 2 '
        'i)) (mod b 2)))))\n(print (E (fn () (modf 4))))\n'
        ,
        '(err badarg "mod: division by zero")\n'
    ),
    (
        '(def clos (n) (loop ((i 0) (a 0) (fs nil)) (if (>= i n) (list/map (fn (g) (g)) fs) (recur (+ i '
        '1) (+ a i) (cons (fn () (list i a)) fs)))))\n(print (E (fn () (clos 4))))\n'
        ,
        '((3 3) (2 1) (1 0) (0 0))\n'
    ),
    (
        '(def sf (n s) (loop ((i 0) (c 0)) (if (>= i n) c (recur (+ i 1) (if (str/find s (str i)) (+ c '
        '1) c)))))\n(print (E (fn () (sf 12 "0123x9"))))\n(print (E (fn () (sf 3 5))))\n(print (E (fn () '
        '(sf 3 nil))))\n'
        ,
        '5\n(err badarg "str/find: expected a string, got integer 5")\n(err badarg "str/find: expected a '
        'string, got nil")\n'
    ),
    (
        "(def sf2 (n s) (loop ((i 0) (c 0)) (if (>= i n) c (recur (+ i 1) (if (str/find s 'a) (+ c 1) "
        'c)))))\n(print (E (fn () (sf2 3 "abc"))))\n'
        ,
        '(err badarg "str/find: expected a string, got symbol a")\n'
    ),
    (
        '(def vg (n v) (loop ((i 0) (s 0)) (if (>= i n) s (recur (+ i 1) (+ s (vec/get v i))))))\n(print '
        '(E (fn () (vg 4 [1 2 3 4]))))\n(print (E (fn () (vg 5 [1 2 3 4]))))\n(print (E (fn () (vg 2 (list '
        '1 2)))))\n(print (E (fn () (vg 2 [1 "x"]))))\n'
        ,
        '10\n(err badarg "vec/get: index 4 out of range for a vector of 4")\n(err badarg "vec/get: '
        'expected a vector, got list (1 2)")\n(err badarg "+: expected numbers, got integer 1 and string '
        '\\"x\\"")\n'
    ),
    (
        '(def vg2 (v i) (vec/get v i))\n(print (E (fn () (vg2 [1 2] -1))))\n(print (E (fn () (vg2 [1 2] '
        '1.0))))\n(print (E (fn () (vg2 [1 2] true))))\n(print (E (fn () (vg2 [1 2] (bit/shl 1 100)))))\n'
        ,
        '(err badarg "vec/get: index -1 out of range for a vector of 2")\n(err badarg "vec/get: expected '
        'an integer, got float 1.0")\n(err badarg "vec/get: expected an integer, got boolean true")\n(err '
        'badarg "vec/get: index 1267650600228229401496703205376 out of range for a vector of 2")\n'
    ),
    (
        '(def vl (v) (vec/len v))\n(print (E (fn () (vl [1 2]))))\n(print (E (fn () (vl "ab"))))\n(print (E '
        '(fn () (vl nil))))\n'
        ,
        '2\n(err badarg "vec/len: expected a vector, got string \\"ab\\"")\n(err badarg "vec/len: expected a '
        'vector, got nil")\n'
    ),
    (
        '(def me () (self))\n(print (E (fn () (pid? (me)))))\n'
        ,
        'true\n'
    ),
    (
        '(def st (a b c) (str a b c))\n(print (E (fn () (st 1.0 \'x "y"))))\n(print (E (fn () (st nil true '
        '[1 "a"]))))\n(print (E (fn () (st H 1 2))))\n'
        ,
        '1.0xy\nniltrue[1 "a"]\n(err undef "undefined global H")\n'
    ),
    (
        '(def H (bit/shl 1 70000))\n(def cmpch (n x) (loop ((i 0) (a x)) (cond ((>= i n) a) ((< a 5) '
        '(recur (+ i 1) (+ a 2))) ((== a 5) (recur (+ i 1) (* a 1.5))) (true (recur (+ i 1) (- a '
        '3))))))\n(print (E (fn () (cmpch 10 0))))\n(print (E (fn () (cmpch 10 "a"))))\n'
        ,
        '5.5\n(err badarg "<: expected numbers or strings, got string \\"a\\" and integer 5")\n'
    ),
    (
        '(def nest (n) (loop ((i 0) (acc 0)) (if (>= i n) acc (recur (+ i 1) (loop ((j 0) (a acc)) (if '
        '(>= j i) a (recur (+ j 1) (+ a (* i j)))))))))\n(print (E (fn () (nest 8))))\n'
        ,
        '322\n'
    ),
    (
        '(def shadow (n) (loop ((i 0) (a 1) (b 2)) (if (>= i n) (list a b) (let ((a b) (b a)) (recur (+ '
        'i 1) (+ a 1) (- b 1))))))\n(print (E (fn () (shadow 5))))\n'
        ,
        '(-1 -3)\n'
    ),
    (
        '(def dbl (n) (loop ((i 0) (a 1) (b 2)) (if (>= i n) (list a b) (recur (+ i 1) (+ b b) (* a '
        'a)))))\n(print (E (fn () (dbl 5))))\n'
        ,
        '(2048 64)\n'
    ),
    (
        '(def dbl2 (n) (loop ((i 0) (a 1.5) (b 2.5)) (if (>= i n) (list a b) (recur (+ i 1) (* (- b a) '
        '(- b a)) (- (+ a a) (+ a a))))))\n(print (E (fn () (dbl2 5))))\n'
        ,
        '(1.0 0.0)\n'
    ),
    (
        '(def mixed (n) (loop ((i 0) (a 1) (b 0.5)) (if (>= i n) (list a b) (recur (+ i 1) (+ a i) (+ b '
        'a)))))\n(print (E (fn () (mixed 5))))\n'
        ,
        '(11 15.5)\n'
    ),
    (
        '(def errin (n x) (loop ((i 0) (a x)) (if (>= i n) a (recur (+ i 1) (+ a (- i 3) (if (== i 4) x '
        '0))))))\n(print (E (fn () (errin 6 1))))\n(print (E (fn () (errin 6 1.5))))\n'
        ,
        '-1\n0.0\n'
    ),
    (
        '(def predf (n x) (loop ((i 0) (c 0)) (if (>= i n) c (recur (+ i 1) (if (< x i) (+ c 1) (if (not '
        '(> x i)) (+ c 10) c))))))\n(print (E (fn () (predf 5 2.5))))\n(print (E (fn () (predf 5 '
        '"x"))))\n(print (E (fn () (predf 5 (/ 0.0 0.0)))))\n'
        ,
        '2\n(err badarg "<: expected numbers or strings, got string \\"x\\" and integer 0")\n(err badarg "/: '
        'division by zero")\n'
    ),
    (
        '(def dbl (n x) (loop ((i 0) (a x)) (if (>= i n) (> a 0) (recur (+ i 1) (+ a a)))))\n(print (E '
        '(fn () (dbl 3 HM))))\n'
        ,
        'true\n'
    ),
    (
        '(def dbl3 (n x) (loop ((i 0) (a x)) (if (>= i n) (> a 0) (recur (+ i 1) (* (+ a a) '
        '1)))))\n(print (E (fn () (dbl3 3 HM))))\n'
        ,
        '(err system_limit "*: the product is an integer of more than 1,048,576 bits")\n'
    ),
    (
        '(def w (n x) (loop ((i 0) (a x) (b 1)) (if (>= i n) (list a b) (recur (+ i 1) (mod (+ (* a 31) '
        'i) 1000003) (- (+ a b) (* b 2))))))\n(print (E (fn () (w 40 7))))\n'
        ,
        '(870456 2058458)\n'
    ),
    (
        '(def w2 (n x) (loop ((i 0) (a x) (b 1)) (if (>= i n) (list a b) (let ((c (+ a b))) (recur (+ i '
        '1) (- c b) (+ c c))))))\n(print (E (fn () (w2 10 7))))\n'
        ,
        '(7 15346)\n'
    ),
    (
        '(def w3 (n) (loop ((i 0) (zr 0.0) (zi 0.0)) (if (>= i n) (list zr zi) (recur (+ i 1) (+ (- (* '
        'zr zr) (* zi zi)) 0.25) (+ (* 2.0 zr zi) 0.5)))))\n(print (E (fn () (w3 10))))\n'
        ,
        '(0.051687358411774575 0.7190334679583121)\n'
    ),
    (
        '(def w4 (n) (loop ((i 0) (a 1) (b 2) (c 3)) (if (>= i n) (list a b c) (recur (+ i 1) (+ b c) (- '
        'a c) (+ a b)))))\n(print (E (fn () (w4 10))))\n'
        ,
        '(1 2 3)\n'
    ),
    (
        '(def w5 (n) (loop ((i 0) (a 1) (b 2)) (if (>= i n) (list a b) (recur (+ i 1) (mod (- b a) 7) '
        '(mod (+ a a) 7)))))\n(print (E (fn () (w5 10))))\n'
        ,
        '(1 2)\n'
    ),
    (
        '(def w6 (n) (loop ((i 0) (a 1) (b 2)) (if (>= i n) (list a b) (recur (+ i 1) (- (- b a) (- b '
        'a)) (+ (+ a b) (+ a b))))))\n(print (E (fn () (w6 10))))\n'
        ,
        '(0 3072)\n'
    ),
    (
        '(def w7 (n) (loop ((i 0) (a 1) (b 2)) (if (>= (+ i i) n) (list a b) (recur (+ i 1) (+ (+ a i) '
        'i) (< (+ a b) (+ a b))))))\n(print (E (fn () (w7 10))))\n'
        ,
        '(err badarg "+: expected numbers, got integer 1 and boolean false")\n'
    ),
    (
        '(def w8 (n) (loop ((i 0) (a 1.5) (b 2.5)) (if (>= i n) (list a b) (recur (+ i 1) (* (* a b) (* '
        'a b)) (* (+ a 0.5) (+ a 0.5))))))\n(print (E (fn () (w8 3))))\n'
        ,
        '(450229409925.6629 10014455.81640625)\n'
    ),
    (
        '(def w9 (n) (loop ((i 0) (a 1)) (if (< (- i i) (- n i)) (recur (+ i 1) (+ (mod i 3) (mod i 3))) '
        '(list i a))))\n(print (E (fn () (w9 10))))\n'
        ,
        '(10 0)\n'
    ),
    # a negative constant written into a type predicate's template: -2.5.__class__ is
    # -(2.5.__class__), a badarg where the interpreter says yes
    ("(def tpk (x) (list (if (float? -2.5) 'yes 'no) (int? -5) (number? -0.0) (float? -2.5)))\n"
     "(print (E (fn () (tpk 0))))\n",
     "(yes true true true)\n"),
    # a folded value whose one reader reads it twice ((+ i i) of the let's i): the second read
    # named a register never written (UnboundLocalError)
    ("(def rd2 (p) (loop ((i 0) (a \"s\")) (if (< i 4) (recur (+ i 1) (let ((i (- i i))) (+ i i))) a)))\n"
     "(print (E (fn () (rd2 1))))\n", "0\n"),
    # the same, silently: the inner loop's typed copy read a stale register
    ("(def rd3 (xs) (loop ((xs xs) (acc nil)) (if (empty? xs) (reverse acc) (recur (tail xs) (cons (loop ((i 0) "
     "(a (head xs))) (if (< i 3) (recur (+ i 1) (let ((t (- a 1))) (+ t t))) a)) acc)))))\n"
     "(print (E (fn () (rd3 (list 1.5 1 2)))))\n", "(-2.0 -6 2)\n"),
    # a fold into the first reader while a forwarded copy still reads the register later (the
    # bytecode's liveness said it was dead there)
    ("(def fw1 () (loop ((i 0) (a 8) (b 2)) (if (== i 8) (list a b) (let ((t0 (mod b 1000003))) "
     "(recur (+ i 1) t0 (- t0 i))))))\n(print (E fw1))\n", "(999984 999977)\n"),
    ("(def fw2 (xs) (loop ((xs xs) (acc nil)) (if (empty? xs) (reverse acc) (recur (tail xs) (cons (loop ((i 0) "
     "(a 0) (b (head xs))) (if (== i 3) (list a b) (let ((t (mod b 7))) (recur (+ i 1) t (- t i))))) acc)))))\n"
     "(print (E (fn () (fw2 (list 2.5 3 4)))))\n", "((1.5 -0.5) (2 0) (3 1))\n"),
]


@pytest.mark.parametrize("source, expected", CASES, ids=[c[0].split()[1] for c in CASES])
def test_hand_written_loop_cases(source: str, expected: str) -> None:
    assert three_ways(PRELUDE + source, functions=2) == (expected, "", 0)
