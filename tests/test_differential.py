"""Differential test: random expressions (arithmetic, comparisons, if/cond/and/or/not/let, list
builtins) evaluated by the VM and by a small reference evaluator written here, over the same data
that `lispvm.assembler.reader.read` returns. The printed results must be equal; when the
reference raises a Lisp error, the VM must catch the same kind.

Each generated expression becomes the body of a function `(fn (a b c) ...)` called three times
and is also evaluated at the top level inside a `let`; one program holds a whole batch, run in
this OS process three ways (issue 12, D): interpreted (--no-jit), with every function compiled at
its first call (LISPVM_JIT=eager) and by default. Three calls never make a function hot, so by
default nothing is compiled: only the eager run tests the fast tier, and each eager run must
have compiled functions (vm.fast.COMPILED), or the test would silently test one tier.

The same three ways run every program of tests/programs and ../shared/examples (not the GPU
one), whose outputs, error lines and exit statuses must be the same."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lispvm.assembler.pipeline import compile_source
from lispvm.assembler.reader import read
from lispvm.scheduler.runner import run_program
from lispvm.vm import fast, lbc
from lispvm.vm.values import FALSE, TRUE, Cons, Sym

# --- the reference evaluator ---------------------------------------------------------------


class LispErr(Exception):
    """A runtime error of the given kind ("badarg", "badarity", ...)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class Unspecified(Exception):
    """The result left the ground both sides agree on (inf or nan): not compared."""


def is_num(x: Any) -> bool:
    return x.__class__ in (int, float)


def truthy(x: Any) -> bool:
    return x is not None and x is not FALSE


def pylist(x: Any) -> list:
    """The elements of a proper list, else badarg."""
    out = []
    while x.__class__ is Cons:
        out.append(x.head)
        x = x.tail
    if x is not None:
        raise LispErr("badarg")
    return out


def mklist(items: list, tail: Any = None) -> Any:
    for x in reversed(items):
        tail = Cons(x, tail)
    return tail


def equal(a: Any, b: Any) -> bool:
    if a.__class__ is Cons:
        return b.__class__ is Cons and equal(a.head, b.head) and equal(a.tail, b.tail)
    if is_num(a) and is_num(b):
        return a == b
    return a is b if (a is None or a is TRUE or a is FALSE or b is None or b is TRUE or b is FALSE) else False


def num(x: Any) -> Any:
    if not is_num(x):
        raise LispErr("badarg")
    return x


def checked(x: Any) -> Any:
    """Floats that overflowed are outside what this test compares."""
    if x.__class__ is float and (x != x or x in (float("inf"), float("-inf"))):
        raise Unspecified()
    return x


def arith(op: str, args: list) -> Any:
    args = [num(a) for a in args]
    try:
        if op == "+":
            return checked(sum(args, 0))
        if op == "*":
            out: Any = 1
            for a in args:
                out = checked(out * a)
            return out
        if op == "-":
            if not args:
                raise LispErr("badarity")
            if len(args) == 1:
                return -args[0]
            out = args[0]
            for a in args[1:]:
                out = checked(out - a)
            return out
        if op == "/":
            if len(args) == 1:
                args = [1, *args]
            out = args[0]
            for a in args[1:]:
                out = checked(out / a)
            return float(out)
        a, b = args
        return checked(a // b if op == "div" else a % b)
    except (ZeroDivisionError, OverflowError):
        raise LispErr("badarg") from None


def compare(op: str, args: list) -> Any:
    if op in ("==", "!="):
        same = all(equal(x, y) for x, y in zip(args, args[1:]))
        return TRUE if same == (op == "==") else FALSE
    for x in args:  # every operand is checked before any pair is compared (LANGUAGE.md)
        num(x)
    for x, y in zip(args, args[1:]):
        ok = {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]
        if not ok:
            return FALSE
    return TRUE


def call(name: str, args: list) -> Any:
    """A builtin of the generated subset."""
    if name in ("+", "-", "*", "/", "div", "mod"):
        return arith(name, args)
    if name in ("<", "<=", ">", ">=", "==", "!="):
        return compare(name, args)
    if name == "not":
        return FALSE if truthy(args[0]) else TRUE
    if name in ("abs", "min", "max"):
        if not args:
            raise LispErr("badarity")
        vals = [num(a) for a in args]
        return abs(vals[0]) if name == "abs" else (min if name == "min" else max)(vals)
    if name == "list":
        return mklist(args)
    if name == "cons":
        return Cons(args[0], args[1])
    if name in ("head", "tail"):
        if args[0].__class__ is not Cons:
            raise LispErr("badarg")
        return args[0].head if name == "head" else args[0].tail
    if name == "length":
        return len(pylist(args[0]))
    if name == "reverse":
        return mklist(pylist(args[0])[::-1])
    if name == "empty?":
        if args[0] is None:
            return TRUE
        if args[0].__class__ is Cons:
            return FALSE
        raise LispErr("badarg")
    if name == "append":
        if not args:
            return None
        items = []
        for a in args[:-1]:
            items += pylist(a)
        return mklist(items, args[-1])
    if name == "nth":
        lst, i = args
        if i.__class__ is not int or i < 0:
            raise LispErr("badarg")
        while lst.__class__ is Cons and i > 0:
            lst, i = lst.tail, i - 1
        if lst.__class__ is not Cons:
            raise LispErr("badarg")
        return lst.head
    raise AssertionError(f"the generator made an unknown call {name}")


def evaluate(form: Any, env: dict[str, Any]) -> Any:
    """The value of `form` (data from the reader) in `env`."""
    c = form.__class__
    if c is Sym:
        return env[form.name]
    if c is not Cons:
        return form
    head, rest = form.head, pylist(form.tail)
    name = head.name
    if name == "quote":
        return rest[0]
    if name == "if":
        if truthy(evaluate(rest[0], env)):
            return evaluate(rest[1], env)
        return evaluate(rest[2], env) if len(rest) > 2 else None
    if name == "cond":
        for clause in rest:
            test, *body = pylist(clause)
            if truthy(evaluate(test, env)):
                value = None
                for b in body:
                    value = evaluate(b, env)
                return value
        return None
    if name in ("and", "or"):
        value: Any = TRUE if name == "and" else None
        for x in rest:
            value = evaluate(x, env)
            if truthy(value) != (name == "and"):
                return value
        return value
    if name == "let":
        inner = dict(env)
        for binding in pylist(rest[0]):
            var, expr = pylist(binding)
            inner[var.name] = evaluate(expr, inner)
        value = None
        for b in rest[1:]:
            value = evaluate(b, inner)
        return value
    return call(name, [evaluate(a, env) for a in rest])


def show(x: Any) -> str:
    """The printed form of a reference value."""
    if x is None:
        return "nil"
    if x is TRUE:
        return "true"
    if x is FALSE:
        return "false"
    if x.__class__ is Sym:
        return x.name
    if x.__class__ is Cons:
        parts = []
        while x.__class__ is Cons:
            parts.append(show(x.head))
            x = x.tail
        if x is not None:
            parts += [".", show(x)]
        return "(" + " ".join(parts) + ")"
    return repr(x)


def reference(text: str, env: dict[str, Any]) -> str | None:
    """What the VM should print for `(try EXPR (catch e (list 'err (nth e 1))))`, or None if
    the result is not compared."""
    (form,), _ = read(text, "ref.lisp")
    try:
        return show(evaluate(form, env))
    except LispErr as e:
        return f"(err {e.kind})"
    except Unspecified:
        return None


# --- the generator -------------------------------------------------------------------------

ARITH = ["+", "-", "*"]
DIVS = ["div", "mod", "/"]
CMPS = ["<", "<=", ">", ">=", "==", "!="]
FLOATS = ["0.5", "-2.25", "3.0", "1e3", "-0.0"]
QUOTED = ["'(1 2 3)", "'()", "'(4 (5) 6)", "'(7 . 8)"]
Scope = tuple[tuple[str, str], ...]  # (variable, "num" | "list") pairs


def number() -> st.SearchStrategy[str]:
    return st.one_of(st.integers(-20, 20).map(str), st.integers(-10**15, 10**15).map(str),
                     st.sampled_from(FLOATS))


@st.composite
def expression(draw: Any, depth: int, scope: Scope, want: str = "any") -> str:
    """The text of a random expression over the variables in `scope`, mostly of the type
    `want` ("num", "list", "test" or "any"); about one node in twelve ignores `want`, so that
    errors are common but do not swamp the values."""
    if want == "any" or draw(st.integers(0, 11)) == 0:
        want = draw(st.sampled_from(["num", "num", "list", "test"]))
    names = [v for v, t in scope if t == want]
    if depth <= 0 or draw(st.integers(0, 4)) == 0:
        leaves: list[st.SearchStrategy[str]] = [st.sampled_from(["nil", "true", "false"])]
        if want == "num":
            leaves = [number()]
        elif want == "list":
            leaves = [st.sampled_from(QUOTED)]
        if names:
            leaves.append(st.sampled_from(names))
        return draw(st.one_of(leaves))

    def sub(w: str = "any") -> str:
        return draw(expression(depth - 1, scope, w))

    def several(w: str, lo: int, hi: int) -> str:
        return " ".join(sub(w) for _ in range(draw(st.integers(lo, hi))))

    shared = ["if", "cond", "let", "and-or"]
    kinds = {"num": ["arith", "arith", "div", "absminmax", "length", "nth"],
             "list": ["list", "cons", "tail", "reverse", "append"],
             "test": ["cmp", "cmp", "eq", "not", "empty"]}[want]
    kind = draw(st.sampled_from(kinds * 2 + shared))
    if kind == "arith":
        op = draw(st.sampled_from(ARITH))
        return f"({op} {several('num', 1 if op == '-' else 0, 3)})"
    if kind == "div":
        return f"({draw(st.sampled_from(DIVS))} {sub('num')} {sub('num')})"
    if kind == "absminmax":
        op = draw(st.sampled_from(["abs", "min", "max"]))
        return f"({op} {several('num', 1, 1 if op == 'abs' else 3)})"
    if kind == "length":
        return f"(length {sub('list')})"
    if kind == "nth":
        index = draw(st.one_of(st.integers(-1, 4).map(str), st.just(sub("num"))))
        return f"(nth {sub('list')} {index})"
    if kind == "list":
        return f"(list {several('any', 0, 3)})"
    if kind == "cons":
        return f"(cons {sub()} {sub('list')})"
    if kind in ("tail", "reverse"):
        return f"({kind} {sub('list')})"
    if kind == "append":
        return f"(append {several('list', 0, 3)})"
    if kind == "cmp":
        return f"({draw(st.sampled_from(CMPS))} {several('num', 2, 3)})"
    if kind == "eq":
        return f"({draw(st.sampled_from(['==', '!=']))} {several('any', 2, 3)})"
    if kind == "not":
        return f"(not {sub()})"
    if kind == "empty":
        return f"(empty? {sub('list')})"
    if kind == "if":
        return f"(if {sub('test')} {sub(want)}{' ' + sub(want) if draw(st.booleans()) else ''})"
    if kind == "cond":
        clauses = [f"({sub('test')} {sub(want)})" for _ in range(draw(st.integers(1, 3)))]
        if draw(st.booleans()):
            clauses.append(f"(true {sub(want)})")
        return f"(cond {' '.join(clauses)})"
    if kind == "and-or":
        return f"({draw(st.sampled_from(['and', 'or']))} {several(want, 0, 3)})"
    inner = scope
    bindings = []
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(["v0", "v1", "v2", "a", "b"]))
        kind_ = draw(st.sampled_from(["num", "list"]))
        bindings.append(f"({name} {draw(expression(depth - 1, inner, kind_))})")
        inner = tuple((v, t) for v, t in inner if v != name) + ((name, kind_),)
    return f"(let ({' '.join(bindings)}) {draw(expression(depth - 1, inner, want))})"


PARAMS: Scope = (("a", "num"), ("b", "num"), ("c", "list"))
CATCH = "(catch e (list 'err (nth e 1)))"


def program(exprs: list[str], a: int, b: int, c: list[int], calls: int = 3) -> str:
    """One program that prints every expression's value: `calls` times through a function,
    then once at the top level."""
    c_text = "(list " + " ".join(map(str, c)) + ")"
    out = []
    for i, e in enumerate(exprs):
        out.append(f"(def t{i} (a b c) (try {e} {CATCH}))")
        out += [f"(print (t{i} {a} {b} {c_text}))"] * calls
        out.append(f"(print (try (let ((a {a}) (b {b}) (c {c_text})) {e}) {CATCH}))")
    return "\n".join(out) + "\n"


MODES = ("interpreted", "eager", "default")


def run_mode(source: str, mode: str, args: tuple = (), name: str = "diff.lisp", schedulers: int = 1,
             **kw: Any) -> tuple[str, str, int, int, int]:
    """Run `source` in this OS process, in one of MODES: (stdout, stderr, exit status, functions
    the fast tier compiled, functions it tried to compile and left interpreted)."""
    data = lbc.dump(compile_source(source, name))
    out, err = io.StringIO(), io.StringIO()
    before, refused = fast.COMPILED, fast.REFUSED
    saved = os.environ.get("LISPVM_JIT")
    if mode == "eager":
        os.environ["LISPVM_JIT"] = "eager"
    else:
        os.environ.pop("LISPVM_JIT", None)
    try:
        status = run_program(data, list(args), schedulers=schedulers, jit=mode != "interpreted", out=out, err=err, **kw)
    finally:
        if saved is None:
            os.environ.pop("LISPVM_JIT", None)
        else:
            os.environ["LISPVM_JIT"] = saved
    return out.getvalue(), err.getvalue(), status, fast.COMPILED - before, fast.REFUSED - refused


def run_vm(source: str, mode: str, functions: int) -> list[str]:
    """The lines `source` prints; in eager mode, each of its `functions` must have gone through
    the fast tier (compiled, or refused: some shapes it leaves to the interpreter)."""
    out, err, status, compiled, refused = run_mode(source, mode)
    assert status == 0, err
    if mode == "eager":
        assert compiled + refused >= functions, "eager mode did not try every function"
    elif mode == "interpreted":
        assert compiled + refused == 0
    return out.splitlines()


def check(exprs: list[str], a: int, b: int, c: list[int], mode: str) -> list[str]:
    calls = 3
    lines = run_vm(program(exprs, a, b, c, calls), mode, len(exprs))
    assert len(lines) == len(exprs) * (calls + 1)
    env = {"a": a, "b": b, "c": mklist(c)}
    for i, e in enumerate(exprs):
        want = reference(e, env)
        got = lines[i * (calls + 1):(i + 1) * (calls + 1)]
        if want is None:
            continue
        assert got == [want] * (calls + 1), f"mode: {mode}\nexpression: {e}\nreference: {want}\nvm: {got}"
    return lines


def check_all_modes(exprs: list[str], a: int, b: int, c: list[int]) -> None:
    """The reference's answers in every mode, and the same lines in every mode (where the
    reference does not compare, inf and nan, the tiers must still agree)."""
    results = {mode: check(exprs, a, b, c, mode) for mode in MODES}
    assert results["eager"] == results["interpreted"] == results["default"]


# --- the tests -----------------------------------------------------------------------------

@pytest.mark.parametrize("expr, expected", [
    ("(+ 1 2 (* 3 4))", "15"),
    ("(let ((v0 2) (v1 (* v0 v0))) (list v0 v1))", "(2 4)"),
    ("(and 1 (or false nil) 3)", "nil"),
    ("(div 7 0)", "(err badarg)"),
    ("(head (tail (list 1)))", "(err badarg)"),
    ("(append (list 1) (cons 2 3))", "(1 2 . 3)"),
    ("(< 2 1 (list))", "(err badarg)"),  # every operand is checked, not only up to a false pair
    ("(< 2 1 3)", "false"),
    ("(nth '(4 (5) 6) 1)", "(5)"),
    ("(cond (false 1))", "nil"),
    ("(/ 7 2)", "3.5"),
    ("(- 5)", "-5"),
])
def test_reference_evaluator(expr: str, expected: str) -> None:
    assert reference(expr, {}) == expected


def test_fixed_batch_matches_the_reference() -> None:
    exprs = [
        "(+ a b)", "(* a b c)", "(- a)", "(div a b)", "(mod a 0)", "(/ a b)", "(< a b 100)", "(== c (list 1 2 3))",
        "(if (> a b) (list a b) (cons b a))", "(cond ((< a 0) 'neg) ((== a 0) 'zero))", "(and a b c)",
        "(or false nil (head c))", "(let ((v0 (length c)) (v1 (reverse c))) (cons v0 v1))", "(nth c 7)",
        "(append c c (list a))", "(empty? (tail c))", "(max a b 0.5)", "(abs (- b a))", "(not (list))",
        "(head 5)", "(length (cons 1 2))", "(+ 1 true)", "(min c)", "(let ((a (+ a 1)) (b a)) (list a b))",
    ]
    check_all_modes(exprs, 7, -3, [1, 2, 3])
    src = program(exprs, 7, -3, [1, 2, 3])
    compiled, refused = run_mode(src, "eager")[3:]
    assert compiled >= len(exprs) and refused == 0  # every t<i>, and the prelude's they call


def test_three_calls_compile_nothing_by_default_and_everything_eagerly() -> None:
    """Why the eager mode exists: by default a function called three times stays interpreted;
    eagerly, every function called is compiled (each t<i>, at least)."""
    src = program(["(+ a b)", "(list a c)", "(if (< a b) a (head c))"], 1, 2, [3])
    counts = {mode: run_mode(src, mode)[3:] for mode in MODES}
    assert counts["interpreted"] == (0, 0) and counts["default"] == (0, 0) and counts["eager"] >= (3, 0)

@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(exprs=st.lists(expression(4, PARAMS), min_size=1, max_size=50),
       a=st.integers(-50, 50), b=st.integers(-50, 50), c=st.lists(st.integers(-9, 9), max_size=4))
def test_vm_agrees_with_the_reference(exprs: list[str], a: int, b: int, c: list[int]) -> None:
    check_all_modes(exprs, a, b, c)


# --- whole programs, three ways ------------------------------------------------------------

PROGRAMS = Path(__file__).resolve().parent / "programs"
EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "examples"


def _whole_programs() -> list:
    found = sorted(PROGRAMS.glob("*.lisp"))
    if EXAMPLES.is_dir():
        found += [p for p in sorted(EXAMPLES.glob("*.lisp")) if "gpu/" not in p.read_text(encoding="utf-8")]
    # tailcalls recurses 100,000 deep, which compiled code does through many RecursionError
    # unwinds, so it goes with the long tests
    return [pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.stem in SLOW else []) for p in found]


SLOW = {"tailcalls"}


# Programs that call no Lisp function from running code (their functions are macros, spawned,
# or only printed), so that eager mode has nothing to compile.
CALL_NO_FUNCTION = {"args", "halt", "macros", "predicates", "printing", "strings", "03_errors", "05_links"}


@pytest.mark.parametrize("path", _whole_programs())
def test_whole_programs_agree_in_every_mode(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    found = re.search(r"^;\s*args:(.*)$", text, re.M)
    args = tuple(found.group(1).split()) if found else ()
    runs = {mode: run_mode(text, mode, args, name=path.name) for mode in MODES}
    interpreted = runs["interpreted"][:3]
    assert runs["eager"][:3] == interpreted, "eager differs from interpreted"
    assert runs["default"][:3] == interpreted, "default differs from interpreted"
    if path.stem not in CALL_NO_FUNCTION:
        assert runs["eager"][3] > 0, "eager mode compiled nothing"
    assert runs["interpreted"][3:] == (0, 0)


# Small programs that fail (or wait, or exit) in the middle of compiled code: the error line,
# its position and the exit status must not depend on the tier. Lines are separated by " | ".
FAILING = [
    '(def f (x) (+ x 1)) | (def g (x) (f x)) | (print (g "a"))',
    '(def f (x) (head x)) | (print (f 5))',
    '(def f (a b) a) | (def g () (f 1)) | (print (g))',
    '(def f (x) (case x ((list a b) a))) | (print (f 3))',
    '(def f (x) (vec/get [1 2] x)) | (print (f 9))',
    '(def f (x) (nope x)) | (print (f 1))',
    '(def f (x) (apply + x)) | (print (f 3))',
    '(def f (x) ((fn (y) (* y "s")) x)) | (print (f 2))',
    '(def f (x) (try (head x) (catch e (tail x)))) | (print (f 1))',
    '(def f (x) (let ((g (fn (z) (z 1)))) (g x))) | (print (f 5))',
    "(def f (n) (if (== n 0) (throw 'boom) (f (- n 1)))) | (print (f 10))",
    '(def f (n) (if (== n 0) (error "deep") (+ 1 (f (- n 1))))) | (print (f 20000))',
    '(def f (x & r) (list x r)) | (print (f))',
    '(def f (x) (/ x 0)) | (print (f 1))',
    '(def f (x) (div x 0)) | (print (f 1))',
    '(def f (x) (- x)) | (print (f "s"))',
    '(def f (x) (< x "a")) | (print (f 1))',
    '(def f (x) (set y x)) | (print (f 1))',
    '(def c (let ((n 0)) (fn () (set n (+ n "x")) n))) | (print (c))',
    "(def f (x) (exit x)) | (print (f 'bye))",
    '(def f (l) (list/map (fn (x) (+ x 1)) l)) | (print (f (list 1 "a" 3)))',
    '(def f (x) (str/upper x)) | (print (f 5))',
    # list/map, list/filter and list/reduce over a leaf run as one Python loop (FastTier.fused)
    '(def f (l) (list/filter (fn (x) (> x "a")) l)) | (print (f (list 1 2)))',
    '(def f (l) (list/reduce (fn (a x) (+ a (head x))) 0 l)) | (print (f (list (list 1) 2)))',
    '(print (list/map (fn (x) (* x 2)) (cons 1 (cons 2 3))))',
    '(def f (l) (list/reduce (fn (a x) x) 0 l)) | (print (f (cons 1 "ab")))',
    '(def f (l) (list/filter (fn (x) x) l)) | (print (f 7))',
    '(def f (n acc) (if (== n 0) acc (f (- n 1) (cons n acc)))) | (print (length (f 100000 nil)))',
    "(def f (x) (receive (y (+ x y)) (after 0 'none))) | (print (f 1))",
    '(def f (k) (if (> k 0) (do (send (self) k) (f (- k 1))) (g 0)))'
    ' | (def g (acc) (receive (x (g (+ acc x))) (after 0 acc))) | (print (f 100))',
]


@pytest.mark.parametrize("src", FAILING)
def test_failures_are_the_same_in_every_mode(src: str) -> None:
    text = src.replace(" | ", "\n") + "\n"
    runs = {mode: run_mode(text, mode)[:3] for mode in MODES}
    assert runs["eager"] == runs["interpreted"], "eager differs from interpreted"
    assert runs["default"] == runs["interpreted"], "default differs from interpreted"


# Each comparison as written, as a value and as a branch, with the refused operand on either side
# and a small integer (an immediate form) on either side: the error names the operator of the
# source and its operands in the source's order, in every mode. `>` once compiled to `<` with
# its operands swapped and reported `(> "a" 1)` as `<: ... got integer 1 and string "a"`.
COMPARISONS = [(op, x, y) for op in ("<", "<=", ">", ">=")
               for x, y in (('"a"', "1"), ("1", '"a"'), ('"a"', "v"), ("v", '"a"'), ("1000", "nil"))]


@pytest.mark.parametrize("op, x, y", COMPARISONS)
def test_a_refused_comparison_names_the_operator_as_written(op: str, x: str, y: str) -> None:
    shown = {'"a"': 'string \\"a\\"', "1": "integer 1", "v": "integer 7", "1000": "integer 1000", "nil": "nil"}
    want = f'(error badarg "{op}: expected numbers or strings, got {shown[x]} and {shown[y]}")'
    text = (f"(def v 7)\n(def val (v) (try ({op} {x} {y}) (catch e e)))\n"
            f"(def br (v) (try (if ({op} {x} {y}) 'yes 'no) (catch e e)))\n"
            "(print (val 7))\n(print (br 7))\n")
    for mode in MODES:
        out, err, status, _, _ = run_mode(text, mode)
        assert status == 0, err
        assert out.splitlines() == [want, want], (mode, out)


CHAINED = """(def t (f) (try (f) (catch e e)))
(print (t (fn () (> 1 2 "x"))))
(print (t (fn () (< 1))))
(print (t (fn () (apply < (list 1 "a")))))
(print (t (fn () (< 1 2 3))) (t (fn () (<= 1 1 0))) (t (fn () (>= "b" "a" "a"))))
(print (t (fn () (min 1 "a"))) (t (fn () (max 1 nil))) (min 3 1 2) (max 1 3 2) (min "b" "a"))
"""


def test_a_chained_comparison_checks_every_operand_and_takes_two_or_more() -> None:
    """`(> 1 2 "x")` answered false without looking at "x" (the chain stopped at 1 > 2), `(< 1)`
    answered true (LANGUAGE.md: two or more arguments), and a refused pair called through the
    builtin was worded unlike the same pair compiled inline ("cannot compare ... with ...")."""
    want = ['(error badarg ">: expected numbers or strings, got integer 2 and string \\"x\\"")',
            '(error badarity "< takes at least 2 arguments, got 1")',
            '(error badarg "<: expected numbers or strings, got integer 1 and string \\"a\\"")',
            "true false true",
            '(error badarg "min: expected numbers or strings, got integer 1 and string \\"a\\"") '
            '(error badarg "max: expected numbers or strings, got integer 1 and nil") 1 3 a']
    for mode in MODES:
        out, err, status, _, _ = run_mode(CHAINED, mode)
        assert (status, out.splitlines()) == (0, want), (mode, err)
