"""The compiler (LANGUAGE.md sections 3 and 4): golden instruction sequences for small forms,
then the meaning of every special form, run: closures by reference, proper tail calls, deep
non-tail recursion, `let*` scoping, `and`/`or` values, `cond`, macros, `try` and the error
kinds, and compile errors at their positions.

Golden sequences compare opcode names only, so register allocation may change freely."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import pytest

from lispvm.assembler.lasm import disassemble
from lispvm.assembler.pipeline import compile_source
from lispvm.vm.errors import CompileError
from lispvm.vm.lbc import Module
from lispvm.vm.opcodes import decode_fields

Runner = Callable[..., tuple[str, str, int]]
JIT = [pytest.param(True, id="jit"), pytest.param(False, id="nojit")]
# The fast tier runs mutual tail recursion slower than the interpreter: its case is a slow test.
JIT_SLOW = [pytest.param(True, id="jit", marks=pytest.mark.slow), pytest.param(False, id="nojit")]


def opnames(module: Module, name: str) -> list[str]:
    """The opcode names of the function called `name` (the top level is "main")."""
    found = [p for p in module.protos if p.name == name]
    assert len(found) == 1, [p.name for p in module.protos]
    return [decode_fields(w)[0].name for w in found[0].code]


def listing_names(module: Module, name: str) -> list[str]:
    """The same, read back from the disassembly text (checks `dis` agrees with the code)."""
    lines, inside = [], False
    for line in disassemble(module).splitlines():
        if line.startswith(".function"):
            inside = f'"{name}"' in line.split()[2]
        elif inside and ":" in line and not line.startswith("."):
            lines.append(line.split(":", 1)[1].split()[0])
    return lines


# --- golden instruction sequences ------------------------------------------------------------

GOLDEN = [
    ("(def f (x) (+ x 1))", "f", ["ADDI", "RETURN"]),
    ("(def f (x) x)", "f", ["RETURN"]),
    ("(def f (a b) (cons a b))", "f", ["CONS", "RETURN"]),
    ("(def f (x) (head (tail x)))", "f", ["TAIL", "HEAD", "RETURN"]),
    ("(def f (x) (* x 'a))", "f", ["LOADK", "MUL", "RETURN"]),
    ("(def f (x) (if x 1 2))", "f", ["TEST", "JMP", "LOADI", "RETURN", "LOADI", "RETURN"]),
    ("(def f (n) (if (< n 2) n (f (- n 1))))", "f", ["IFLTI", "JMP", "RETURN", "ADDI", "TAILCALLG"]),
    ("(def f (x) (print x))", "f", ["MOVE", "CALLB", "RETURN"]),
    ("(def f (xs) (apply + xs))", "f", ["GETGLOBAL", "MOVE", "TAILAPPLY"]),
    ("(def f (x) (fn () (set x 1)))", "f", ["BOX", "CLOSURE", "RETURN"]),
    ("(def x 5)", "main", ["LOADI", "DEFGLOBAL", "LOADNIL", "RETURN"]),
    ("(def f (x) 1)", "main", ["CLOSURE", "DEFGLOBAL", "LOADNIL", "RETURN"]),
]


@pytest.mark.parametrize("src, name, expected", GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_instruction_sequences(src: str, name: str, expected: list[str]) -> None:
    module = compile_source(src, "golden.lisp")
    assert opnames(module, name) == expected
    assert listing_names(module, name) == expected


def test_tail_position_compiles_to_tail_calls() -> None:
    src = """
    (def f (x) (g x))
    (def h (x) (if x (g x) (do (g 1) (g 2))))
    (def k (x) (let ((y 1)) (cond ((== x 1) (g y)) (true (g x)))))
    (def a (f xs) (apply f xs))
    (def c (f x) (f x))
    (def n (x) (+ 1 (g x)))
    """
    m = compile_source(src, "tail.lisp")
    calls = {name: (opnames(m, name).count("CALLG"), opnames(m, name).count("TAILCALLG")) for name in "fhk"}
    assert calls == {"f": (0, 1), "h": (1, 2), "k": (0, 2)}
    assert opnames(m, "a")[-1] == "TAILAPPLY"
    assert opnames(m, "c")[-1] == "TAILCALL"
    assert "TAILCALLG" not in opnames(m, "n") and "CALLG" in opnames(m, "n")


def test_closure_captures_are_upvalues() -> None:
    m = compile_source("(def f (x) (fn () x))", "c.lisp")
    inner = [p for p in m.protos if p.name not in ("main", "f")]
    assert len(inner) == 1 and inner[0].upvals, "the fn captures x"
    assert opnames(m, inner[0].name) == ["GETUPVAL", "RETURN"]


def test_every_instruction_has_a_position() -> None:
    m = compile_source("(def f (x)\n  (+ x\n     (g 1)))\n(print (f 2))", "pos.lisp")
    for p in m.protos:
        assert len(p.lines) == len(p.code)
        assert all(line >= 1 and col >= 1 for line, col in p.lines), p.name
    f = next(p for p in m.protos if p.name == "f")
    assert (3, 6) in f.lines, f.lines  # the call (g 1)


# --- meaning -------------------------------------------------------------------------------

def ok(run_here: Runner, src: str, jit: bool = True) -> list[str]:
    """Run `src` in process; it must succeed; its output lines."""
    out, err, status = run_here(src, jit=jit)
    assert status == 0, (out, err)
    assert err == ""
    return out.splitlines()


@pytest.mark.parametrize("jit", JIT)
def test_closures_capture_by_reference(run_here: Runner, jit: bool) -> None:
    src = """
    (def make () (let ((n 0))
      (list (fn () (set n (+ n 1)) n) (fn () n) (fn (v) (set n v)))))
    (def fs (make))
    (def inc (nth fs 0)) (def get (nth fs 1)) (def put (nth fs 2))
    (inc) (inc)
    (print (get))
    (put 10)
    (print (inc) (get))
    (def fs2 (make))
    (print ((nth fs2 1)) (get))
    (def adders (list/map (fn (i) (fn (x) (+ x i))) (list 1 2 3)))
    (print (list/map (fn (f) (f 10)) adders))
    (def outer (x) (let ((f (fn () x))) (set x (+ x 1)) (f)))
    (print (outer 1))
    (def deep (a) (fn (b) (fn (c) (set a (+ a 1)) (list a b c))))
    (def d (deep 1))
    (print ((d 2) 3) ((d 20) 30))
    """
    assert ok(run_here, src, jit) == ["2", "11 11", "0 11", "(11 12 13)", "2", "(2 2 3) (3 20 30)"]


@pytest.mark.parametrize("jit", JIT_SLOW)
def test_tail_calls_run_in_constant_stack(run_here: Runner, jit: bool) -> None:
    src = """
    (def loop (n acc) (if (== n 0) acc (loop (- n 1) (+ acc 1))))
    (print (loop 1000000 0))
    (def even? (n) (if (== n 0) true (odd? (- n 1))))
    (def odd? (n) (if (== n 0) false (even? (- n 1))))
    (print (even? 1000000) (odd? 1000001) (even? 7))
    (def aloop (n) (if (== n 0) 'done (apply aloop (list (- n 1)))))
    (print (aloop 300000))
    (def cloop (n) (cond ((== n 0) 'cond-done) (true (let ((m (- n 1))) (cloop m)))))
    (print (cloop 300000))
    (def via-var (f n) (if (== n 0) 'var-done (f f (- n 1))))
    (print (via-var via-var 300000))
    (def and-loop (n) (or (== n 0) (and true (and-loop (- n 1)))))
    (print (and-loop 300000))
    """
    assert ok(run_here, src, jit) == ["1000000", "true true false", "done", "cond-done", "var-done", "true"]


@pytest.mark.parametrize("jit", JIT)
def test_non_tail_recursion_goes_deep(run_here: Runner, jit: bool) -> None:
    src = """
    (def count (n) (if (== n 0) 0 (+ 1 (count (- n 1)))))
    (print (count 100000))
    (def build (n) (if (== n 0) nil (cons n (build (- n 1)))))
    (print (length (build 100000)))
    (def sum (xs) (if (empty? xs) 0 (+ (head xs) (sum (tail xs)))))
    (print (sum (list/range 100001)))
    (print (try (count "x") (catch e (nth e 1))))
    """
    assert ok(run_here, src, jit) == ["100000", "100000", "5000050000", "badarg"]


def test_let_is_sequential_and_shadows(run_here: Runner) -> None:
    src = """
    (def x 100)
    (print (let ((x 1) (y (+ x 1)) (x (* y 10))) (list x y)))
    (print x)
    (print (let ((head (fn (l) 'shadowed))) (head (list 1))))
    (print (let () 'empty-bindings))
    (print (let ((a 1)) (let ((a 2) (b a)) (list a b))))
    """
    assert ok(run_here, src) == ["(20 2)", "100", "shadowed", "empty-bindings", "(2 2)"]


def test_and_or_return_the_deciding_value(run_here: Runner) -> None:
    src = """
    (print (and) (or) (and 1 2 3) (and 1 false 3) (and nil 2) (or false nil) (or false 0 1) (repr (or "" 1)))
    (def seen nil)
    (def note (x) (set seen (cons x seen)) x)
    (and (note 1) (note false) (note 2))
    (or (note nil) (note 3) (note 4))
    (print (reverse seen))
    (print (if 0 'zero-true 'no) (if "" 'empty-true 'no) (if nil 'no 'nil-false) (if false 'no))
    (print (not nil) (not 0) (not false))
    """
    assert ok(run_here, src) == ['true nil 3 false nil nil 0 ""', "(1 false nil 3)",
                                 "zero-true empty-true nil-false nil", "true false true"]


def test_cond(run_here: Runner) -> None:
    src = """
    (def classify (n) (cond ((< n 0) 'neg) ((== n 0) 'zero) ((< n 10) 'small) (true 'big)))
    (print (list/map classify (list -5 0 3 50)))
    (print (cond ((> 1 2) 'a)))
    (print (cond))
    (print (cond (false 1) (nil 2)))
    (print (cond ((== 1 1) 'first 'second 'last)))
    """
    assert ok(run_here, src) == ["(neg zero small big)", "nil", "nil", "nil", "last"]


def test_def_set_do_if(run_here: Runner) -> None:
    src = """
    (print (def a 1) (set a 2) a)
    (def f (x) (set a (+ a x)))
    (print (f 3) a)
    (print (do 1 2 3) (if false 1))
    (def later () (defined-later 5))
    (def defined-later (x) (* x 2))
    (print (later))
    (def v (x & rest) (list x rest))
    (print (v 1) (v 1 2 3))
    (def g (a b) (list a b))
    (def g (a) (list 'redefined a))
    (print (g 1))
    (print ((fn (& xs) xs)) ((fn (& xs) xs) 1 2))
    (print [1 (+ 1 1) (list 3)] (vec/len [1 2 3]))
    """
    assert ok(run_here, src) == ["1 2 2", "5 5", "3 nil", "10", "(1 nil) (1 (2 3))", "(redefined 1)",
                                 "nil (1 2)", "[1 2 (3)] 3"]


def test_arguments_evaluate_left_to_right(run_here: Runner) -> None:
    src = """
    (def log nil)
    (def note (x) (set log (cons x log)) x)
    (def f (a b c) (list a b c))
    (f (note 1) (note 2) (note 3))
    (list (note 4) (note 5))
    (+ (note 6) (note 7))
    [(note 8) (note 9)]
    (print (reverse log))
    """
    assert ok(run_here, src) == ["(1 2 3 4 5 6 7 8 9)"]


def test_macros(run_here: Runner) -> None:
    src = """
    (defmacro when (test & body) `(if ,test (do ,@body) nil))
    (print (when (> 2 1) 'a 'b) (when false 'c))
    (defmacro unless (test & body) `(if ,test nil (do ,@body)))
    (print (unless false 1 2))
    (defmacro unroll (n form) `(do ,@(list/map (fn (i) form) (list/range n))))
    (def k 0)
    (unroll 4 (set k (+ k 1)))
    (print k)
    (defmacro strcat (& xs) (str/join "" xs))
    (print (strcat "a" "b" 1))
    (defmacro def-const (name val) `(defmacro ,name () '',val))
    (def-const seven 7)
    (print (seven))
    (defmacro swap! (a b) `(let ((tmp ,a)) (set ,a ,b) (set ,b tmp)))
    (def p 1) (def q 2)
    (swap! p q)
    (print p q)
    (def x 5)
    (print `(a ,x ,@(list 1 2) b) `(a . ,x) `[1 ,x ,@(list 2 3)] `(,@nil) `x)
    (print `(1 `(2 ,(3 ,(+ 1 3)))))
    (defmacro my-list (& xs) `(list ,@xs))
    (print (my-list 1 (my-list 2 3)))
    (defmacro count-args (& xs) (length xs))
    (print (count-args a b c))
    """
    assert ok(run_here, src) == [
        "b nil", "2", "4", "ab1", "7", "2 1", "(a 5 1 2 b) (a . 5) [1 5 2 3] nil x",
        "(1 (quasiquote (2 (unquote (3 4)))))", "(1 (2 3))", "3",
    ]


CATCH = """
(def kind (thunk) (try (thunk) (catch e (if (list? e) (list (nth e 0) (nth e 1)) (list 'thrown e)))))
"""


@pytest.mark.parametrize("jit", JIT)
@pytest.mark.parametrize("expr, expected", [
    ('(+ 1 "a")', "(error badarg)"),
    ('(- "a")', "(error badarg)"),
    ("(head nil)", "(error badarg)"),
    ("(tail nil)", "(error badarg)"),
    ("(nth (list 1 2) 5)", "(error badarg)"),
    ("(vec/get [1 2] 2)", "(error badarg)"),
    ("(vec/get [1 2] -1)", "(error badarg)"),
    ("(div 1 0)", "(error badarg)"),
    ("(< 1 'a)", "(error badarg)"),
    ("((fn (x) x))", "(error badarity)"),
    ("((fn (x) x) 1 2)", "(error badarity)"),
    ("(two-args 1)", "(error badarity)"),
    ("(no-such-function 1)", "(error undef)"),
    ("no-such-global", "(error undef)"),
    ("(set no-such-global 1)", "(error undef)"),
    ("(1 2)", "(error badarg)"),
    ('(error "boom")', "(error user)"),
    ("(throw 'oops)", "(thrown oops)"),
    ("(throw (list 'my 1))", "(my 1)"),
    ("(case 5 (6 'six))", "(error badmatch)"),
])
def test_try_catches_each_error_kind(run_here: Runner, expr: str, expected: str, jit: bool) -> None:
    src = CATCH + f"(def two-args (a b) a)\n(print (kind (fn () {expr})))\n(print 'after)"
    assert ok(run_here, src, jit) == [expected, "after"]


def test_error_values_and_nesting(run_here: Runner) -> None:
    src = """
    (print (try (error "custom") (catch e (list (nth e 1) (nth e 2)))))
    (print (try (try (head nil) (catch e (throw (list 'wrapped (nth e 1))))) (catch e e)))
    (print (try 'no-error (catch e 'unused)))
    (print (try (try (throw 1) (catch e (+ e 1))) (catch e 'outer)))
    (def f (n) (if (== n 0) (throw 'bottom) (+ 1 (f (- n 1)))))
    (print (try (f 10000) (catch e e)))
    (def safe (n) (try (if (== n 0) (throw 'x) n) (catch e 'caught)))
    (print (list/map safe (list 0 1 0)))
    (print (try (list/map (fn (x) (head x)) (list (list 1) nil)) (catch e (nth e 1))))
    (def e-msg (try (+ 1 "a") (catch e (nth e 2))))
    (print (string? e-msg) (> (str/length e-msg) 0))
    """
    assert ok(run_here, src) == ["(user \"custom\")", "(wrapped badarg)", "no-error", "2", "bottom",
                                 "(caught 1 caught)", "badarg", "true true"]


# --- compile errors ------------------------------------------------------------------------

COMPILE_ERRORS = [
    ("(print 1)\n(if)", 2, 1),
    ("(print 1)\n  (let (x) x)", 2, 3),
    ("(def + 1)", 1, 1),
    ("(def head (x) x)", 1, 1),
    ("(set + 1)", 1, 1),
    ("(print 1)\n(fn)", 2, 1),
    ("(quote 1 2)", 1, 1),
    ("(unquote x)", 1, 1),
    ("(let ((if 1)) if)", 1, 7),
    ("(fn (a a) a)", 1, 1),
    ("(try 1)", 1, 1),
    ("(cond 1)", 1, 1),
    ("(f . 1)", 1, 1),
    ("(def f (x)\n  (defmacro g () 1))", 2, 3),
    ("(defmacro m (x) (head nil))\n\n(m 1)", 3, 1),
    ("(defmacro m (x) `(m ,x))\n(m 1)", 2, 1),
    # section 10: recur only in tail position of its loop, with as many values as variables
    ("(loop ((i 0))\n  (+ 1 (recur i)))", 2, 8),
    ("(recur 1)", 1, 1),
    ("(loop ((i 0)) (if (recur 1) 2 3))", 1, 19),
    ("(loop ((i 0)) (fn () (recur 1)))", 1, 22),
    ("(loop ((i 0)) (try (recur 1) (catch e e)))", 1, 20),
    ("(loop ((i 0)) (case i (1 :when (recur 2) 3)))", 1, 32),
    ("(loop ((i 0) (j 1))\n   (recur 1))", 2, 4),
    ("(loop ((i 0) (i 1)) i)", 1, 14),
    ("(loop ((i)) i)", 1, 8),
    ("(loop ((1 2)) 7)", 1, 8),  # a list of lists is a loop's bindings: a bad one is a compile error
    ("(def f ()\n  (loop ((i 0) (\"j\" 1)) i))", 2, 16),
    ("(def f (n) (case n ((list 'a (recur 1)) 1)))", 1, 30),
    ("(case 1 ({(list 1) x} x))", 1, 11),
    ("(case)", 1, 1),
    ("(match x)", 1, 1),
    ("(when)", 1, 1),
    ("(fn f 1)", 1, 1),
    ("(fn if (x) x)", 1, 1),
    ("(defmacro case (x) x)", 1, 1),
]


@pytest.mark.parametrize("src, line, col", COMPILE_ERRORS, ids=[c[0] for c in COMPILE_ERRORS])
def test_compile_errors_have_positions(src: str, line: int, col: int) -> None:
    with pytest.raises(CompileError) as info:
        compile_source(src, "bad.lisp")
    e = info.value
    assert (e.file, e.line, e.col) == ("bad.lisp", line, col), str(e)
    assert str(e).startswith(f"bad.lisp:{line}:{col}: ") and "\n" not in str(e)


@pytest.mark.parametrize("src, line, col", [("(print \"ran\")\n(if)", 2, 1), ("(print \"ran\")\n(def + 1)", 2, 1),
                                           ("(print \"ran\")\n(loop ((i 0)) (+ 1 (recur i)))", 2, 20)])
def test_compile_errors_through_the_command(run_lisp: Runner, src: str, line: int, col: int) -> None:
    out, err, status = run_lisp(src, name="bad.lisp")
    assert status == 1
    assert out == "", "nothing runs after a compile error"
    assert err.startswith(f"bad.lisp:{line}:{col}: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


# --- integers of any size ------------------------------------------------------------------

def _decimal(n: int) -> str:
    """str(n) for any n (Python refuses more than 4300 digits unless told otherwise)."""
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        return str(n)
    finally:
        sys.set_int_max_str_digits(old)


def test_big_integers_print_in_full(run_lisp: Runner) -> None:
    """Integers have arbitrary precision (LANGUAGE.md section 1): 2000! has 5736 digits."""
    src = ("(def fact (n) (if (< n 2) 1 (* n (fact (- n 1)))))\n"
           "(print (fact 2000))\n(print (str/length (str (fact 2000))))\n")
    out, err, status = run_lisp(src)
    assert (err, status) == ("", 0)
    assert out == f"{_decimal(math.factorial(2000))}\n5736\n"


def test_big_integer_literals_read(run_lisp: Runner) -> None:
    big = "9" * 5000
    out, err, status = run_lisp(f"(def n {big})\n(print (> n 0) (== (+ n 1) (* 10 (div (+ n 1) 10))))\n")
    assert (out, err, status) == ("true true\n", "", 0)


# --- issue 12, item 16: special-form names, long calls, deep expressions ---------------------------

@pytest.mark.parametrize("src, where, message", [
    ("(print 1)\n  (def if 3)\n", "2:3", "def: cannot redefine the special form if"),
    ("(def let (x) x)\n", "1:1", "def: cannot redefine the special form let"),
    ("(def f () (set quote 1))\n", "1:11", "set: cannot assign to the special form quote"),
])
def test_special_form_names_cannot_be_defined(src: str, where: str, message: str) -> None:
    with pytest.raises(CompileError) as info:
        compile_source(src, "s.lisp")
    assert str(info.value) == f"s.lisp:{where}: {message}"


@pytest.mark.parametrize("jit", JIT)
def test_calls_with_more_arguments_than_registers(run_here: Runner, jit: bool) -> None:
    """A call passes at most 200 arguments in registers; more go as one list through apply,
    evaluated left to right, so `+`, `str`, `list`, vectors and rest parameters take any number."""
    n = 450
    nums = " ".join(str(i) for i in range(n))
    src = f"""(def g (a b & r) (list a b (length r)))
(def trace (x) (print x) x)
(print (+ {nums}))
(print (str/length (str {nums})))
(print (g {nums}))
(print (g {" ".join(str(i) for i in range(20000))}))
(print (vec/get [{nums}] 449))
(print (length (list {nums})))
(print (let ((list 5) (append 6) (reverse 7)) (+ list append reverse {nums})))
(def h () (+ {nums}))
(print (h))
(print (max {" ".join(f"(trace {i})" for i in range(3))} {" ".join(str(i) for i in range(300))}))
"""
    total = sum(range(n))
    assert ok(run_here, src, jit) == [str(total), str(len("".join(map(str, range(n))))), f"(0 1 {n - 2})",
                                       "(0 1 19998)", "449", str(n), str(total + 18), str(total), "0", "1", "2", "299"]


@pytest.mark.parametrize("template", ["(+ 1 X)", "(if X 1 2)", "((fn () X))", "(do X)", "`(a ,X)", "[X]"])
def test_deep_nesting_is_an_error_at_the_form_not_1_1(template: str) -> None:
    """Expressions nest up to 1,000 deep (other limits, such as registers, may come first); past
    that the error points at the form that is too deep, not at the top-level form's 1:1."""
    src = "1"
    for _ in range(1200):
        src = template.replace("X", src)
    with pytest.raises(CompileError) as info:
        compile_source(f"(print 1)\n(print\n {src})", "deep.lisp")
    e = info.value
    assert e.line == 3 and e.col > 100, str(e)
    assert e.message in ("expression nested more than 1000 deep", "function too large: needs more than 250 registers")


def test_do_nests_a_thousand_deep(run_here: Runner) -> None:
    src = "x"
    for _ in range(990):
        src = f"(do {src})"
    assert ok(run_here, f"(def x 7)\n(print {src})\n") == ["7"]


# --- issue 12, item 13: the size of what macros produce --------------------------------------------

# Each builds in about 60 reductions a form that shares its halves 60 times over: walking it as the
# tree the later passes see (2^60 forms) never ended, whether it is code, a quoted constant or a `do`.
SHARED_EXPANSIONS = {
    "code": "(d n 1)",
    "quoted-constant": "(list 'quote (d n 1))",
    "do-body": "(list 'do (d n 1) (d n 1))",
}


@pytest.mark.parametrize("result", sorted(SHARED_EXPANSIONS))
def test_a_macro_expansion_over_the_size_limit_is_one_compile_error(cli: Runner, tmp_path, result: str) -> None:
    from lispvm.assembler.expand import MAX_EXPANSION

    src = ("(defmacro dbl (n)\n  (def d (k acc) (if (== k 0) acc (d (- k 1) (list acc acc))))\n"
           f"  {SHARED_EXPANSIONS[result]})\n(print 'start)\n(print (length   (dbl 60)))\n")
    (tmp_path / "m.lisp").write_text(src)
    for command in (["asm", "m.lisp", "-o", "m.lbc"], ["run", "m.lisp"]):
        out, err, status = cli(*command)
        assert (out, status) == ("", 1), err
        assert err == (f"m.lisp:5:18: macro dbl: its expansion is too large (more than {MAX_EXPANSION:,} forms, "
                       "counting a shared sublist each time it occurs)\n")


def test_a_macro_whose_expansions_keep_doubling_stops_at_the_size_limit() -> None:
    """Each expansion calls the macro again on twice the form: the size limit stops it, long
    before the limit of 1,000 expansions would."""
    src = "(defmacro grow (x) (list 'grow (list 'quote (list x x))))\n(print (grow 1))\n"
    with pytest.raises(CompileError) as info:
        compile_source(src, "g.lisp")
    assert str(info.value).startswith("g.lisp:2:8: macro grow: its expansion is too large")


def test_macro_expansions_under_the_size_limit_compile(run_here: Runner) -> None:
    """Sharing itself is allowed: a form shared 2^14 times over (32,767 forms) compiles and runs."""
    src = """(defmacro dbl (n)
  (def d (k acc) (if (== k 0) acc (d (- k 1) (list '+ acc acc))))
  (d n 1))
(defmacro unroll (n form) `(do ,@(list/map (fn (i) form) (list/range n))))
(print (dbl 14))
(def c 0)
(unroll 20000 (set c (+ c 1)))
(print c)
"""
    assert ok(run_here, src, False) == ["16384", "20000"]


@pytest.mark.parametrize("jit", JIT)
def test_timer_sleep_names_itself_in_its_argument_error(run_here: Runner, jit: bool) -> None:
    """`(timer/sleep 'x)` said `receive: after needs ...`: inline or called as a value, the
    error names timer/sleep; a local named like the checking builtin does not change it."""
    src = """(def kind (thunk) (try (do (thunk) 'no-error) (catch e (head (tail (tail e))))))
(print (kind (fn () (timer/sleep 'x))))
(print (kind (fn () (apply timer/sleep '(-1)))))
(print (kind (fn () (list/map timer/sleep '(0 x)))))
(def f (sys/sleep-ms) (timer/sleep sys/sleep-ms))
(print (f 1) (timer/sleep 0) (timer/sleep 1.5) (kind (fn () (f 'y))))
(print (kind (fn () (receive (after 'x 1)))))
"""
    words = "timer/sleep: expected a non-negative number of milliseconds, 'infinity or nil, got"
    assert ok(run_here, src, jit) == [f"{words} x", f"{words} -1", f"{words} x", f"nil nil nil {words} y",
                                      "receive: after needs a number of milliseconds, got x"]
