"""The fast tier (issue 7): compiled functions give exactly what the interpreter gives, and still
recurse 100,000 deep, make proper tail calls, report errors at their positions, are preempted,
and can be suspended and moved to another scheduler."""

from __future__ import annotations

import dis
from pathlib import Path

import pytest

from lispvm.vm import fast
from lispvm.vm.state import VM
from support import compile_text, fast_tier, run, spy_compiled, spy_made

PROGRAM = """
(def count (n) (if (== n 0) 0 (+ 1 (count (- n 1)))))
(print (count 100000))
(def even? (n) (if (== n 0) true (odd? (- n 1))))
(def odd? (n) (if (== n 0) false (even? (- n 1))))
(print (even? 1000000) (odd? 7))
(def sum (xs acc) (if (empty? xs) acc (sum (tail xs) (+ acc (head xs)))))
(print (sum (list/range 100000) 0))
(def f (x) (try (/ 10 x) (catch e (list 'caught (nth e 1)))))
(print (f 2) (f 0) (f "a"))
(def g (x) (+ x 1))
(def h (x) (* 2 (g x)))
(print (try (h "s") (catch e e)))
(def make-counter () (let ((n 0)) (fn () (set n (+ n 1)) n)))
(def c (make-counter))
(def loop (i) (if (== i 0) (c) (do (c) (loop (- i 1)))))
(print (loop 100000))
(def fact (n) (if (< n 2) 1 (* n (fact (- n 1)))))
(print (fact 30))
(print (list/map (fn (x) (* x x)) (list/range 10)))
(print (list/reduce + 0 (list/range 1000)) (apply + 1 2 (list 3 4)))
(def spin (n) (if (== n 0) 'done (spin (- n 1))))
(print (spin 3000000))
(def bad (n) (if (== n 0) (head nil) (bad (- n 1))))
(print (try (bad 10000) (catch e e)))
(def v (x) (vec/get [1 2 3] x))
(print (v 1) (try (v 5) (catch e (nth e 1))))
(def m (x) (case x ((list 'a b) b) ((cons h t) (list h t)) (_ 'other)))
(print (m (list 'a 5)) (m (list 1 2 3)) (m 7) (m nil))
(def shape (x) (case x ((list a) (list 1 a)) ((list a b) (list 2 b)) ((list a b c) (list 3 c))
                       ((list a b c d) (list 4 d)) (_ 0)))
(def shapes (n acc)
  (if (== n 0) acc
      (shapes (- n 1) (list (shape (list n)) (shape (list 1 n)) (shape (list 1 2 n)) (shape (list 1 2 3 n))
                            (shape (list 1 2 3 4 n)) (shape (cons 1 2)) (shape (cons 1 (cons 2 3)))
                            (shape (cons 1 (cons 2 (cons 3 4)))) (shape nil) (shape 7)))))
(print (shapes 3000 nil))
(def redefine-me (x) (+ x 1))
(def caller (n acc) (if (== n 0) acc (caller (- n 1) (redefine-me acc))))
(print (caller 10000 0))
(def redefine-me (x) (+ x 2))
(print (caller 10000 0))
(print (try (caller 10 "x") (catch e e)))
(def arity (a b) a)
(def call-bad (n) (if (== n 0) (arity 1) (call-bad (- n 1))))
(print (try (call-bad 5000) (catch e (nth e 1))))
(def undefd (n) (if (== n 0) (nope 1) (undefd (- n 1))))
(print (try (undefd 5000) (catch e (nth e 1))))
(def floats (n acc) (if (== n 0) acc (floats (- n 1) (+ acc 0.5))))
(print (floats 10000 0) (* 1e200 1e200) (- 0.0))
(def strs (n) (if (== n 0) "" (str (strs (- n 1)) n)))
(print (strs 20))
(def bool-math (x) (+ x 1))
(print (try (bool-math true) (catch e e)))
(def concat? (a b) (+ a b))
(print (try (concat? "a" "b") (catch e e)) (try (* "ab" 3) (catch e (nth e 1))))
"""


def generated_sources(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The Python source the fast tier generates from here on, by function name."""
    sources: dict[str, str] = {}
    orig = fast._Gen.build

    def spy(self: object) -> tuple:
        out = orig(self)
        sources[self.p.name] = out[1].source  # type: ignore[attr-defined]
        return out

    monkeypatch.setattr(fast._Gen, "build", spy)
    return sources


def test_both_tiers_print_the_same() -> None:
    compiled = run(PROGRAM, jit=True)
    interpreted = run(PROGRAM, jit=False)
    assert compiled == interpreted
    out = compiled[0].splitlines()
    assert out[0] == "100000" and out[1] == "true true" and out[-1].endswith("badarg")
    assert '(error badarg "+: expected numbers, got string \\"a\\" and string \\"b\\"")' in out[-1]


def test_the_tier_really_compiles() -> None:
    """Guard against the fast tier silently doing nothing (every figure depends on it)."""
    compiled: list[str] = []
    orig = fast.FastTier.compile

    def spy(self: fast.FastTier, p: object) -> bool:
        ok = orig(self, p)
        if ok:
            compiled.append(p.name)  # type: ignore[attr-defined]
        return ok

    fast.FastTier.compile = spy  # type: ignore[method-assign]
    try:
        out, err, status = run("(def fib (n) (if (< n 2) n (+ (fib (- n 1)) (fib (- n 2)))))\n(print (fib 22))")
    finally:
        fast.FastTier.compile = orig  # type: ignore[method-assign]
    assert (out, status) == ("17711\n", 0) and "fib" in compiled


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "nojit"])
def test_uncaught_error_position_is_the_same(jit: bool) -> None:
    src = "(def f (n) (if (< n 1) (- n \"x\") (f (- n 1))))\n(print 'start)\n(f 5000)\n"
    out, err, status = run(src, jit=jit)
    assert (out, status) == ("start\n", 1)
    assert err.startswith("test.lisp:1:24: error: badarg: -: expected numbers, got integer 0 and string")


def test_endless_compiled_loop_is_preempted() -> None:
    src = """
    (def spin () (spin))
    (def busy (n) (busy (+ n 1)))
    (spawn spin)
    (spawn busy 0)
    (def me (self))
    (spawn (fn () (timer/sleep 20) (send me 'tick)))
    (print (receive (x x)))
    (halt 0)
    """
    assert run(src, jit=True)[:2] == ("tick\n", "")


def test_compiled_process_is_suspended_and_moved() -> None:
    """CPU-bound compiled code is preempted, unwound into interpreter frames, shipped to
    another scheduler and resumed there: results are right and more than one scheduler ran."""
    src = """
    (def fib (n) (if (< n 2) n (+ (fib (- n 1)) (fib (- n 2)))))
    (def me (self))
    (def job (k) (let ((v (fib 28))) (send me (list k v (sys/scheduler-id)))))
    (list/map (fn (k) (spawn job k)) (list/range 6))
    (def results (list/map (fn (i) (recv)) (list/range 6)))
    (print (list/sort (list/map (fn (r) (head r)) results)))
    (print (list/map (fn (r) (nth r 1)) results))
    (print (> (length (list/filter (fn (r) (> (nth r 2) 0)) results)) 0))
    """
    out, err, status = run(src, schedulers=2, jit=True)
    assert status == 0, err
    assert out.splitlines() == ["(0 1 2 3 4 5)", "(317811 317811 317811 317811 317811 317811)", "true"]


def test_closures_with_upvalues_and_apply_compiled() -> None:
    src = """
    (def adder (k) (fn (x) (+ x k)))
    (def add5 (adder 5))
    (def many (n acc) (if (== n 0) acc (many (- n 1) (add5 acc))))
    (print (many 20000 0))
    (def compose (f g) (fn (x) (f (g x))))
    (def inc-twice (compose add5 add5))
    (def use (n acc) (if (== n 0) acc (use (- n 1) (apply inc-twice (list acc)))))
    (print (use 10000 0))
    """
    assert run(src, jit=True) == run(src, jit=False) == ("100000\n100000\n", "", 0)


RECEIVE_LOOPS = """
(def server (total)
  (receive
    ((list 'add n) (server (+ total n)))
    ((list 'get from) (send from total) (server total))
    ((list 'stop from) (send from (list 'stopped total)) 'done)))
(def s (spawn server 0))
(def me (self))
(def feed (i) (if (== i 0) 'ok (do (send s (list 'add i)) (send s (list 'get me)) (receive (t t)) (feed (- i 1)))))
(feed 300)
(send s (list 'stop me))
(print (receive (x x)))
(def picky (seen)
  (receive
    ((list 'b x from) (send from 'ack) (picky (cons x seen)))
    ((list 'flush from) (send from seen) (picky nil))))
(def drain (acc) (receive ((list 'a x) (drain (cons x acc))) (after 0 acc)))
(def p (spawn picky nil))
(def mix (i) (if (== i 100) 'ok (do (send p (list 'a i)) (send p (list 'b i me)) (receive ('ack nil)) (mix (+ i 1)))))
(mix 0)
(send p (list 'flush me))
(print (receive (x (list/reduce + 0 x))))
(def get-one () (receive ((list 'v x) x)))
(def sum-n (n acc from) (if (== n 0) acc (let ((v (get-one))) (send from 'ack) (sum-n (- n 1) (+ acc v) from))))
(def summer (from n) (send from (sum-n n 0 from)))
(def sm (spawn summer me 200))
(def give (i) (if (== i 0) 'ok (do (send sm (list 'v i)) (receive ('ack nil)) (give (- i 1)))))
(give 200)
(print (receive (x x)))
(def fib (n) (if (< n 2) n (+ (fib (- n 1)) (fib (- n 2)))))
(def worker (from)
  (receive
    ((list 'job n) (send from (fib n)) (worker from))
    ('stop 'stopped)))
(def w1 (spawn worker me))
(def w2 (spawn worker me))
(def jobs (i acc)
  (if (== i 0) acc
      (do (send w1 (list 'job 20)) (send w2 (list 'job 20))
          (jobs (- i 1) (+ acc (receive (x x)) (receive (x x)))))))
(print (jobs 70 0))
(send w1 'stop)
(send w2 'stop)
(def echo () (receive ((list from x) (send from x) (echo)) ('stop 'ok)))
(def e (spawn echo))
(def ping (i acc) (if (== i 0) acc (do (send e (list me i)) (ping (- i 1) (+ acc (receive (x x)))))))
(print (ping 300 0))
(send e 'stop)
(def server (total) (receive (x (send me (list 'new total x)) (server total))))
(send s 'nothing)
(def s2 (spawn server 7))
(send s2 'hello)
(print (receive ((list 'new t x) (list t x))))
"""

RECEIVE_LOOPS_OUT = "(stopped 45150)\n4950\n20100\n" + f"{140 * 6765}\n45150\n" + "(7 hello)\n"


@pytest.mark.parametrize("schedulers", [1, 2])
def test_receive_loops_compiled(schedulers: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Server loops (a function that is one receive whose clauses end the function) run in
    compiled code between two waits, with the interpreter's results: state carried through
    self calls, a selective receive that leaves messages and keeps its scan position across
    waits, a loop called (not tail-called) that waits inside its caller, CPU-bound clause bodies
    preempted (and moved), a redefined loop. The compiler must really have taken them."""
    compiled = spy_compiled(monkeypatch, lambda tier, p: p in tier.servers)
    out, err, status = run(RECEIVE_LOOPS, schedulers=schedulers, jit=True)
    assert (out, status) == (RECEIVE_LOOPS_OUT, 0), err
    if schedulers == 1:
        assert {"server", "picky", "get-one", "worker", "echo"} <= set(compiled), compiled
    assert run(RECEIVE_LOOPS, schedulers=schedulers, jit=False) == (RECEIVE_LOOPS_OUT, "", 0)


def test_receive_loop_shapes() -> None:
    """Which receives the fast tier takes as server loops (resumed compiled at their wait): a
    function that is one receive without `after`, whose clauses end the function. Any other
    receive is compiled as a scan whose wait is the interpreter's (not a server)."""
    src = """
    (def loop (n) (receive (x (loop (+ n x))) ('stop n)))
    (def echo () (receive ((list from x) (send from x) (echo))))
    (def timed () (receive (x x) (after 10 'none)))
    (def inner (n) (print (receive (x x))) (inner n))
    (def late (n) (if (> n 0) (receive (x x)) 0))
    """
    with fast_tier(src) as (tier, by_name):
        assert tier.compile(by_name["loop"]) and tier.compiled[by_name["loop"]].wait > 0
        assert tier.compile(by_name["echo"]) and tier.compiled[by_name["echo"]].wait > 0
        assert tier.servers == {by_name["loop"], by_name["echo"]}
        source = next(i.source for i in tier.codes.values() if i.proto is by_name["echo"])
        assert " is lisp_" in source  # its self call is a loop (`continue` while the global names it)
        for name in ("timed", "inner", "late"):
            assert tier.compile(by_name[name]) and by_name[name] not in tier.servers, name
            assert tier.compiled[by_name[name]].wait < 0, name
    assert tier.vm.fast is None and by_name["loop"].fast is None


LOOP_EDGES = {
    # a loop that returns to its caller (the main process) from a clause, after many waits
    "returns": ("""
(def collect (n acc) (receive ((list 'v x) (if (== n 1) (+ acc x) (collect (- n 1) (+ acc x))))))
(def me (self))
(list/map (fn (i) (spawn (fn () (timer/sleep (mod i 7)) (send me (list 'v i))))) (list/range 300))
(print (collect 300 0))
""", ("44850\n", "", 0)),
    # links, trap-exit and a timer's message around compiled loops
    "exits": ("""
(def loop () (receive ((list 'ping from) (send from 'pong) (loop))))
(def me (self))
(trap-exit true)
(def ps (list/map (fn (i) (spawn-link loop)) (list/range 5)))
(def rally (i)
  (if (== i 0) 'ok
      (do (list/map (fn (p) (send p (list 'ping me))) ps) (list/map (fn (p) (receive ('pong 1))) ps) (rally (- i 1)))))
(rally 100)
(list/map (fn (p) (exit p 'bye)) ps)
(print (list/map (fn (p) (receive ((list 'EXIT q why) why))) ps))
(def t (spawn loop))
(timer/send-after 5 t (list 'ping me))
(print (receive ('pong 'timer-ok)))
""", ("(bye bye bye bye bye)\ntimer-ok\n", "", 0)),
    # an error in a compiled clause: the crash report has the interpreter's position
    "crash": ("""
(def bad (n) (receive ((list 'x v) (bad (+ n (head v))))))
(def me (self))
(def b (spawn bad 0))
(def feed (i) (if (== i 0) 'ok (do (send b (list 'x (list i))) (timer/sleep 0) (feed (- i 1)))))
(feed 100)
(monitor b)
(send b (list 'x 5))
(print (receive ((list 'DOWN r p why) (head why))))
""", ("error\n", "test.lisp:2:46: process #<pid 0.2> crashed: badarg: head: expected a non-empty list, got 5\n", 0)),
}


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("case", sorted(LOOP_EDGES))
def test_receive_loop_edges(case: str, jit: bool) -> None:
    src, expected = LOOP_EDGES[case]
    assert run(src, jit=jit) == expected


def test_receive_loop_arity_and_guards_run_once() -> None:
    """A compiled server loop called with too many or too few arguments raises badarity as the
    interpreter does (an extra argument was once taken for the resume flag), and a preemption
    in the middle of its scan goes on from the scan position: guards with side effects run once
    per message, as interpreted, however the scan is cut."""
    arity = """
    (def me (self))
    (def srv (a) (receive ((list 'x from) (send from a) (srv a)) ('stop 'done) (other (list 'got other a))))
    (def s (spawn srv 1))
    (def loop (i) (if (== i 0) 'ok (do (send s (list 'x me)) (receive (v v)) (loop (- i 1)))))
    (loop 100)
    (def t (spawn (fn () (send (self) 'hello) (send me (list 1 (try (srv 5 6) (catch e (list 'caught (nth e 1)))))))))
    (print (receive ((list 1 r) r)))
    (def bad (n) (if (== n 0) (srv 7 8) (bad (- n 1))))
    (def t2 (spawn (fn () (send me (list 2 (try (bad 100000) (catch e (list 'caught (nth e 1)))))))))
    (print (receive ((list 2 r) r)))
    (def t3 (spawn (fn () (send me (list 3 (try (srv) (catch e (list 'caught (nth e 1)))))))))
    (print (receive ((list 3 r) r)))
    """
    expected = ("(caught badarity)\n" * 3, "", 0)
    assert run(arity, jit=True) == expected
    assert run(arity, jit=False) == expected
    guards = """
    (def me (self))
    (def cnt 0)
    (def check (i) (set cnt (+ cnt 1)) (== i -1))
    (def srv () (receive ((list 'go from) (send from cnt) (srv)) ((list 'n i) :when (check i) (srv))))
    (def s (spawn srv))
    (def warm (i) (if (== i 0) 'ok (do (send s (list 'go me)) (receive (_ nil)) (warm (- i 1)))))
    (warm 100)
    (set cnt 0)
    (def fill (i) (if (== i 0) 'ok (do (send s (list 'n i)) (fill (- i 1)))))
    (fill 60000)
    (send s (list 'go me))
    (print (receive (c c)))
    """
    for _ in range(3):
        assert run(guards, jit=True) == ("60000\n", "", 0)


def test_compiled_code_is_named_after_its_function() -> None:
    """Compiled code is made with exec, not the builtin compile() (see docs/performance.md), then
    given the file name <lispvm fast NAME>, which tracebacks and profilers show; a prototype
    with upvalues is compiled as a factory whose inner function is named so too."""
    from lispvm.scheduler.node import load_program
    from lispvm.vm.process import Globals

    src = "(def fib (n) (if (< n 2) n (+ (fib (- n 1)) (fib (- n 2)))))\n(def adder (k) (fn (x) (+ x k)))\n"
    globals_ = Globals()
    module = load_program(compile_text(src), globals_)
    vm = VM()
    tier = fast.enable(vm, globals_)
    assert tier is not None
    try:
        fib = next(p for p in module.protos if p.name == "fib")
        inner = next(p for p in module.protos if p.upvals)
        assert tier.compile(fib) and tier.compile(inner)
        # (the program's top level did not run: there is no global fib to recurse to)
        assert fib.fast.__code__.co_filename == "<lispvm fast fib>" and fib.fast(1) == 1
        add5 = inner.fast(5, None)
        assert add5.__code__.co_filename == f"<lispvm fast {inner.name}>" and add5(1) == 6
        assert add5.__code__ in tier.codes and fib.fast.__code__ in tier.codes
    finally:
        fast.disable(vm)


PREEMPTED_CLOSURES = """
(def burn (n) (if (> n 0) (burn (- n 1))))
(spawn burn 100000000)
(def repeat (n f acc) (if (== n 0) acc (repeat (- n 1) f (+ acc (f n)))))
(def make-counter () (let ((n 0)) (fn (by) (set n (+ n by)) n)))
(def counter (make-counter))
(def nest (a) (fn (b) (fn (c) (+ a b c))))
(def make-work (v)
  (fn (i)
    (counter 1)
    (+ (list/reduce + 0 (list/map (fn (k) (+ k i (vec/len v))) (list/range 50)))
       (((nest i) 1) 2)
       ((fn (x & more) (+ x (length more) (vec/len v))) i 2 3))))
(print (list 'finished (repeat 4000 (make-work [1 2 3]) 0) (counter 0)))
"""


def test_preempted_compiled_closures_keep_their_upvalues() -> None:
    """Issue 12 item 2: a compiled closure preempted at its entry or loop head is unwound into
    an interpreter frame that still has its closure (and so its upvalues). Ticks come from CPU
    time, so where preemptions land varies: the spy counts those that unwound a closure's frame,
    and the run must have had some."""
    hits: list[int] = []
    orig = fast.FastTier.unwind

    def spy(self: fast.FastTier, exc: BaseException, proc: object, caller: object) -> BaseException:
        if isinstance(exc, fast.Preempt):
            tb = exc.__traceback__
            while tb is not None:
                info = self.codes.get(tb.tb_frame.f_code)
                if info is not None and info.upvals:
                    hits.append(1)
                    break
                tb = tb.tb_next
        return orig(self, exc, proc, caller)

    interpreted = run(PREEMPTED_CLOSURES, jit=False)
    fast.FastTier.unwind = spy  # type: ignore[method-assign]
    try:
        for _ in range(5):  # a few runs at most, until one was preempted inside a closure
            compiled = run(PREEMPTED_CLOSURES, reductions=100, jit=True)
            assert compiled == interpreted
            if hits:
                break
    finally:
        fast.FastTier.unwind = orig  # type: ignore[method-assign]
    assert compiled[0].startswith("(finished ") and compiled[0].endswith(" 4000)\n")
    assert hits, "no compiled closure was preempted: the test tested nothing"


def _compiles_and_refusals(src: str, **kw: object) -> tuple[tuple[str, str, int], list[str], list[str]]:
    """Run `src` compiled: (its result, names of the functions compiled, names refused)."""
    compiled: list[str] = []
    refused: list[str] = []
    orig = fast.FastTier.compile

    def spy(self: fast.FastTier, p: object) -> bool:
        was = p in self.refused
        ok = orig(self, p)
        if ok:
            compiled.append(p.name)  # type: ignore[attr-defined]
        elif p in self.refused and not was:
            refused.append(p.name)  # type: ignore[attr-defined]
        return ok

    fast.FastTier.compile = spy  # type: ignore[method-assign]
    try:
        result = run(src, **kw)  # type: ignore[arg-type]
    finally:
        fast.FastTier.compile = orig  # type: ignore[method-assign]
    return result, compiled, refused


def test_lisp_names_python_would_refuse_or_rename() -> None:
    """Issue 12 item 8: `f²` is no Python identifier (SyntaxError) and `ﬁb` becomes `fib` under
    Python's NFKC normalisation (KeyError); both are compiled under mangled ASCII names, and
    `ﬁb` and `fib` stay two functions."""
    src = """
    (def f² (n acc) (if (== n 0) acc (f² (- n 1) (+ acc 2))))
    (def ﬁb (n) (if (< n 2) n (+ (ﬁb (- n 1)) (ﬁb (- n 2)))))
    (def fib (n) (* n 1000))
    (def fib2 (n) (if (< n 2) n (+ (fib2 (- n 1)) (fib2 (- n 2)))))
    (print (f² 20000 0) (ﬁb 20) (fib 3) (fib2 20))
    """
    result, compiled, refused = _compiles_and_refusals(src)
    assert result == run(src, jit=False) == ("40000 6765 3000 6765\n", "", 0)
    assert "f²" in compiled and "ﬁb" in compiled and not refused


def _nested_ifs(depth: int) -> str:
    body = "(deep (- n 1))"
    for i in range(depth):
        body = f"(if (> n {i - 1000}) {body} {i})"
    return f"(def deep (n) (if (== n 0) 'done {body}))\n(print (deep 20000))\n"


def test_nesting_python_cannot_compile_stays_interpreted() -> None:
    """Issue 12 item 8: 110 nested `if`s exceed what Python's compiler nests (IndentationError);
    the function stays interpreted and the program runs as with --no-jit."""
    src = _nested_ifs(110)
    result, compiled, refused = _compiles_and_refusals(src)
    assert result == run(src, jit=False) == ("done\n", "", 0)
    assert refused == ["deep"]


@pytest.mark.parametrize("error", [SyntaxError, RecursionError, MemoryError, ValueError, KeyError])
def test_any_failure_to_compile_leaves_the_function_interpreted(error: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever code generation or exec raises, the function is refused (the tier remembers it) and interpreted:
    never an error for the program."""
    def broken(self: object) -> None:
        raise error("generated code refused")

    monkeypatch.setattr(fast._Gen, "build", broken)
    src = "(def fib (n) (if (< n 2) n (+ (fib (- n 1)) (fib (- n 2)))))\n(print (fib 22))\n"
    result, compiled, refused = _compiles_and_refusals(src)
    assert result == ("17711\n", "", 0)
    assert "fib" in refused and not compiled


def test_functions_that_are_one_try_are_compiled() -> None:
    """A `try` whose protected range starts at the function's first instruction (a body that is
    one `try`, two nested ones) was emitted again and again until RecursionError: such functions
    never ran compiled. Found by the eager differential (issue 12, D)."""
    src = """
    (def safe-div (a b) (try (/ a b) (catch e (list 'err (nth e 1)))))
    (def twice (x) (try (try (head x) (catch e (list 'inner (nth e 1)))) (catch e 'outer)))
    (def dead (x) (try (length (if nil 0)) (catch e (nth e 1))))
    (def loop (i acc)
      (if (== i 0) acc
          (loop (- i 1) (list (safe-div i (mod i 3)) (twice (if (== (mod i 2) 0) nil (list i))) (dead i)))))
    (print (loop 20000 nil))
    (print (safe-div 3 0) (twice nil) (twice 5))
    """
    result, compiled, refused = _compiles_and_refusals(src)
    assert result == run(src, jit=False)
    assert result[0] == "(1.0 1 0)\n(err badarg) (inner badarg) (inner badarg)\n"
    assert {"safe-div", "twice", "dead", "loop"} <= set(compiled) and not refused


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "nojit"])
def test_a_finished_run_leaves_none_of_its_values_behind(jit: bool) -> None:
    """Runs in one OS process (tests, an embedding, a REPL) share module state, and none of it
    may keep a finished run's values alive: vm.boxes kept the last box-free value stored in each
    global (the bound of the next store's scan for boxes) after the run, and with it whatever
    that value held: the gpu/ arrays of one run held their memfds through every later run."""
    import gc

    from lispvm.vm.values import Cons

    src = """
    (def make-counter () (let ((n 0)) (fn () (set n (+ n 1)) n)))
    (def c (make-counter))
    (c)
    (def keep (cons (str "lispvm-" "leak-marker") (list/range 3)))
    (set keep (cons (head keep) keep))
    (print (length keep))
    """
    assert run(src, jit=jit) == ("5\n", "", 0)
    gc.collect()
    left = [o for o in gc.get_objects() if o.__class__ is Cons and o.head == "lispvm-leak-marker"]
    assert not left, f"{len(left)} conses of the finished run are still alive"


FOLDED_ARGUMENT_ERRORS = """
(def g (a b) (+ a b))
(def f (n m)
  (+ (g 1
        (- n m)) 1))
(def h (n) (try (+ 1 (g (- n 1)
                        (- n 2))) (catch e e)))
(def warm (i) (if (> i 0) (do (f i 1) (h i) (warm (- i 1))) 'warm))
(print (warm 3000))
(print (h "s"))
(print (f 1 "x"))
"""


def test_an_error_in_a_folded_argument_is_reported_at_its_own_instruction(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiled code folds an argument's arithmetic into the call (`F(1, (r0 - r1))`), so the
    failing instruction and the call share one line of generated source; the column of the
    bytecode that raised (the column table) names the folded instruction, whose position and
    message are the interpreter's (not the call's: `badarg: not a function (...)` at line 3)."""
    compiled = spy_compiled(monkeypatch, lambda tier, p: any(tier.compiled[p].cols.values()))
    out, err, status = run(FOLDED_ARGUMENT_ERRORS, jit=True)
    assert "f" in compiled, "f was not compiled with a folded argument: the test tested nothing"
    assert (out, err, status) == run(FOLDED_ARGUMENT_ERRORS, jit=False)
    assert err.endswith(':5:9: error: badarg: -: expected numbers, got integer 1 and string "x"\n'), err
    assert out == 'warm\n(error badarg "-: expected numbers, got string \\"s\\" and integer 1")\n'


def _one_instruction(op: object) -> str:
    """Assembly of a function made of `op` (operands chosen for its kinds) and a return; a
    conditional guards one instruction, as `if` compiles."""
    from lispvm.vm.opcodes import Op

    assert isinstance(op, Op)
    regs = iter((0, 1, 2))
    values = {"R": lambda: next(regs), "N": lambda: 1, "K": lambda: 0, "G": lambda: 1, "U": lambda: 0,
              "I": lambda: 1, "S": lambda: 5, "F": lambda: 0}
    text = " ".join(str(values[kind]()) for _, kind in op.operands)
    body = [f"{op.name} {text}", "JMP ->3", "LOADI 0 1", "RETURN 0"] if "cond" in op.flags else \
        [f"{op.name} {text}", "MOVE 3 0", "RETURN 0"]  # r0 read twice: no copy of it is forwarded
    lines = ['.module "one.lisp"', '.function 0 "one" params=3 rest=0 regs=8', '.const 0 7', '.const 1 s"g"']
    if any(kind == "U" for _, kind in op.operands):
        lines.append(".upval 0 0")
    lines += [f"{i}: {ins} @1:1" for i, ins in enumerate(body)] + [".end"]
    return "\n".join(lines) + "\n"


def test_simple_and_conditional_instructions_are_rendered_from_their_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast tier takes the code of every instruction with a template from its row in
    vm/opcodes.py (a new simple opcode needs no edit in vm/fast.py): each such instruction
    compiles, and a change to the row's template shows in the generated source. Only the rows
    in fast._WRITTEN_HERE have a shape of their own here."""
    from lispvm.assembler.lasm import assemble
    from lispvm.vm.opcodes import OPS
    from lispvm.vm.process import Globals

    rows = [op for op in OPS if op.template is not None and op.name not in fast._WRITTEN_HERE]
    assert {"SUB", "ADDI", "CONS", "DIV", "GETGLOBAL", "TEST", "IFLTI"} <= {op.name for op in rows}
    for op in rows:
        # a comment after a statement; an expression's test, or one that is always false
        added, shown = ("  # from the row", "  # from the row") if "cond" not in op.flags else \
            (" or $FALSE is None", " or _FALSE is None")
        first = op.template.split("\n")[0]
        for marker in ("", added):
            monkeypatch.setattr(op, "template", first + marker + op.template[len(first):])
            module = assemble(_one_instruction(op), "one.lasm")
            vm = VM()
            tier = fast.enable(vm, Globals())
            assert tier is not None
            try:
                p = module.protos[0]
                assert tier.compile(p), op.name
                if marker:
                    assert shown in tier.compiled[p].source, (op.name, tier.compiled[p].source)
            finally:
                fast.disable(vm)


# --- section 10 forms in the fast tier ---------------------------------------------------------

FORMS = """
(def sum-to (n) (loop ((i 0) (s 0)) (if (< i n) (recur (+ i 1) (+ s i)) s)))
(def fact (fn fact (n) (if (== n 0) 1 (* n (fact (- n 1))))))
(def shape (m) (case m ({'kind 'pt 'x x 'y y} (list x y)) ({} 'map) (_ 'other)))
(def drain (n acc)
  (if (== n 0) acc (receive ((list 'v x) (drain (- n 1) (+ acc x))) (after 1000 'timeout))))
(def pairs (n) (loop ((i 0) (out nil)) (if (== i n) out (recur (+ i 1) (cons {'i i} out)))))
(print (sum-to 300000) (fact 20) (shape {'kind 'pt 'x 1 'y 2}) (shape {}) (shape 3))
(list/map (fn (i) (send (self) (list 'v i))) (list/range 10000))
(print (drain 10000 0) (length (pairs 3000)))
"""
FORMS_OUT = "44999850000 2432902008176640000 (1 2) map other\n49995000 3000\n"


def test_section_10_forms_compile_and_a_running_loop_is_entered_at_its_head(monkeypatch: pytest.MonkeyPatch) -> None:
    """loop, named fn, map patterns and a receive that is no server loop are compiled (nothing
    refused); a long loop in a function called once is entered in compiled code at its head
    (FastTier.osr); a self tail call from a receive clause loops instead of recursing."""
    osr = spy_made(monkeypatch, "osr")
    result, compiled, refused = _compiles_and_refusals(FORMS)
    assert result == (FORMS_OUT, "", 0)
    assert run(FORMS, jit=False) == (FORMS_OUT, "", 0)
    assert "sum-to" in osr and refused == [], (osr, refused)
    assert {"sum-to", "drain"} <= set(compiled), compiled


def test_a_loop_is_a_python_while_and_recur_out_of_a_receive_is_not_compiled() -> None:
    src = """
    (def sum-to (n) (loop ((i 0) (s 0)) (if (< i n) (recur (+ i 1) (+ s i)) s)))
    (def named () (fn me (n) (if (< n 1) 0 (me (- n 1)))))
    (def serve (n) (loop ((k n)) (receive (x (recur (- k 1))) (after 0 k))))
    (def scan () (receive ((list 'v x) x) (after 10 'none)))
    """
    with fast_tier(src) as (tier, by_name):
        assert tier.compile(by_name["sum-to"])
        source = tier.compiled[by_name["sum-to"]].source
        # the function's own while, the loop's typed copy (i and s ints) and its plain one
        assert source.count("while True:") == 3 and "continue" in source, source
        assert 0 < min(v for v in tier.compiled[by_name["sum-to"]].safe.values() if v) < len(by_name["sum-to"].code)
        assert tier.compile(by_name["me"]) and "= _cl" in tier.compiled[by_name["me"]].source
        assert tier.compile(by_name["scan"]) and by_name["scan"] not in tier.servers
        assert not tier.compile(by_name["serve"])  # a recur from inside the receive's scan


SPINNERS = """
(def spin (parent tag n)
  (send parent (list 'started tag))
  (send parent (list tag (loop ((i 0) (c 0)) (if (< i n) (recur (+ i 1) (+ c 2)) c)))))
(def me (self))
(spawn (fn () (spin me 'a 1500000)))
(spawn (fn () (spin me 'b 1500001)))
(def got (list (recv) (recv) (recv) (recv)))
(print (list/sort (list/map (fn (m) (if (== (head m) 'started) (nth m 1) (list (head m) (nth m 1)))) got)))
"""


@pytest.mark.parametrize("schedulers", [1, 2])
def test_a_compiled_loop_is_preempted_at_its_head(schedulers: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes each in a long compiled loop: preempted at the loop's JUMP_BACKWARD, each
    resumes at the loop's head (not the function's start: its first send would repeat) with
    the values of that iteration, also after moving to another scheduler."""
    preempted: list[int] = []
    orig = fast.FastTier.unwind

    def spy(self: fast.FastTier, exc: BaseException, proc: object, caller: object) -> BaseException:
        out = orig(self, exc, proc, caller)
        if isinstance(exc, fast.Preempt):
            preempted.append(out.pc)  # type: ignore[attr-defined]
        return out

    monkeypatch.setattr(fast.FastTier, "unwind", spy)
    out, err, status = run(SPINNERS, schedulers=schedulers)
    assert (out, err, status) == ("(a b (a 3000000) (b 3000002))\n", "", 0)
    if schedulers == 1:
        assert preempted and all(pc > 0 for pc in preempted), preempted


def test_recursion_deeper_than_python_stays_interpreted(monkeypatch: pytest.MonkeyPatch) -> None:
    """even?/odd? a million deep (after one RecursionError) and count 100,000 deep (its budget
    ends thousands of frames deep in itself) stay interpreted: no round after round of filling
    Python's stack and unwinding it."""
    deep: list[str] = []
    orig = fast.FastTier.stay_interpreted

    def spy(self: fast.FastTier, protos: set) -> None:
        before = set(self.refused)
        orig(self, protos)
        deep.extend(sorted(p.name for p in self.refused - before))

    monkeypatch.setattr(fast.FastTier, "stay_interpreted", spy)
    src = PROGRAM.split("(def sum ")[0]
    assert run(src) == ("100000\ntrue true\n", "", 0)
    assert {"count", "even?", "odd?"} <= set(deep) and len(deep) == len(set(deep)), deep


# --- the prelude's list loops over a leaf: one Python loop (FastTier.fused) --------------------

LEAVES = """
(def k 3)
(def twice (x) (* 2 x))
(def leaves (n)
  (list (list/map (fn (x) (* x k)) (list/range n)) (list/filter (fn (x) (!= (mod x k) 0)) (list/range n))
        (list/reduce (fn (a x) (+ a x)) 0 (list/range n)) (list/map (fn (x) (str "<" x ">")) '("a"))))
(def others (n)
  (list (list/map (fn (x) (twice x)) (list/range n)) (list/map (fn (x) (print x) x) '(p))
        (list/filter (fn (x) (send (self) x) true) '(s)) (receive (m m))))
(print (leaves 4) (others 2))
"""
LEAVES_OUT = "p\n((0 3 6 9) (1 2) 6 (\"<a>\")) ((0 2) (p) (s) s)\n"


def test_a_leaf_is_applied_in_one_python_loop_and_nothing_else_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """list/map, list/filter and list/reduce given a leaf (a function computing a value with
    pure builtins only) run it over the list in one Python loop; a function that calls another
    Lisp function, prints or sends runs in the prelude's Lisp loop as before."""
    taken: list[tuple[str, int]] = []
    orig = fast.FastTier.fused

    def spy(self: fast.FastTier, kind: str, f: object, a: object, b: object) -> tuple:
        out = orig(self, kind, f, a, b)
        taken.append((kind, out[0]))
        return out

    monkeypatch.setattr(fast.FastTier, "fused", spy)
    monkeypatch.setenv("LISPVM_JIT", "eager")
    assert run(LEAVES) == (LEAVES_OUT, "", 0)
    assert sorted(taken) == [("filter", 0), ("filter", 1), ("map", 0), ("map", 0), ("map", 1), ("map", 1),
                             ("reduce", 1)], taken
    monkeypatch.delenv("LISPVM_JIT")
    assert run(LEAVES, jit=False) == (LEAVES_OUT, "", 0)


def test_what_is_a_leaf() -> None:
    """A leaf computes a value: no call of a Lisp function (list/map is one) or of a builtin that
    is not pure, no loop, no receive, no assignment of a global or a captured variable (a local
    one is a register move)."""
    from lispvm.scheduler.node import load_program
    from lispvm.vm.process import Globals

    src = """
    (def g (x) x)
    (def a1 (x) (if (list? x) (str/join "," (list x)) (+ (* x 2) (mod x 3))))
    (def a2 (x) (try (head x) (catch e (list 'no e))))
    (def a3 (x) (fn (y) (+ x y)))
    (def n1 (x) (g x))
    (def n2 (x) (print x))
    (def n3 (x) (loop ((i 0)) (if (< i x) (recur (+ i 1)) i)))
    (def n4 (x) (receive (m m) (after 0 x)))
    (def n5 (x) (set g x))
    (def a4 (x) (let ((y 1)) (set y x) y))
    (def n6 (x) (let ((y 1)) (fn () (set y x))))
    (def n7 (x) (send (self) x))
    (def n8 (x) (x 1))
    """
    module = load_program(compile_text(src), Globals())
    kinds = {p.name: fast._leaf(p) for p in module.protos if p.name[:1] in "an" and p.name[1:].isdigit()}
    assert kinds == {**{f"a{i}": True for i in range(1, 5)}, **{f"n{i}": False for i in range(1, 9)}}, kinds


HANDBACK = """
(def me (self))
(spawn (fn () (send me 'other-ran)))
(def n (length (list/map (fn (x) (+ x 1)) (list/range 1000000))))
(print n (receive ('other-ran 'before-the-map-ended) (after 0 'after)))
"""


def test_a_long_fused_loop_gives_way_at_the_end_of_its_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fused loop has no safe point of its own: when its slice is over and another process is
    waiting, it hands the rest of the list to the Lisp loop, whose head is one, so the other
    process runs before the map ends (on one scheduler)."""
    taken: list[int] = []
    orig = fast.FastTier.fused

    def spy(self: fast.FastTier, kind: str, f: object, a: object, b: object) -> tuple:
        out = orig(self, kind, f, a, b)
        taken.append(out[0])
        return out

    monkeypatch.setattr(fast.FastTier, "fused", spy)
    monkeypatch.setenv("LISPVM_JIT", "eager")
    assert run(HANDBACK) == ("1000000 before-the-map-ended\n", "", 0)
    assert 2 in taken, taken


def test_inline_str_refuses_what_the_builtin_refuses() -> None:
    """A string longer than str may build (file/read can return one) is refused by the inline
    str of compiled code and by list/map's native str as by the builtin: system_limit."""
    from lispvm.vm.builtins import BUILTINS, b_map_native
    from lispvm.vm.errors import MAX_TEXT, LispError
    from lispvm.vm.values import SPEEDUPS, from_list

    big = "x" * (MAX_TEXT + 1)
    with fast_tier('(def one (x) (str x))\n(def two (x) (str x "!"))\n') as (tier, by_name):
        for p in by_name.values():
            if p.name in ("one", "two"):
                inline = p.name == "one" or not SPEEDUPS  # with the extension, str of two is one C call
                assert tier.compile(p) and ("len(" in tier.compiled[p].source) == inline, p.name
                assert p.fast("ok") in ("ok", "ok!")
                with pytest.raises(LispError) as e:
                    p.fast(big)
                assert str(e.value.value.tail.head) == "system_limit", p.name
        with pytest.raises(LispError) as e:
            b_map_native(BUILTINS["str"], from_list(["a", big]))
        assert str(e.value.value.tail.head) == "system_limit"


_LEAF_SRC = """def lisp_9_fn(_c, _out):
    _T = _VM
    _add = _out.append
    while _c.__class__ is _Cons:
        if _T.ticks_left <= 0:
            return _out, _c, True
        r0 = _e = _c.head
        while True:
{body}
            _v = r1
            break
        _add(_v)
        _c = _c.tail
    return _out, _c, False
"""


@pytest.mark.parametrize(("body", "folds"), [
    (["r2 = r0 % 3", "r1 = r2 + 1"], [1, 2, 3, 1]),
    (["r2 = 1", "r1 = r0 if r0 else r2"], [1, 1, 2, 3]),  # a constant may go anywhere
    (["r2 = r0 % 3", "r1 = r2 if r0 else 0"], None),  # a computed value only where always evaluated
    (["r2 = r0 % 3", "r1 = r0 and r2"], None),
    (["r2 = r0 % 3", "r1 = r0"], None),  # a value that might raise is never dropped
    (["r2 = r0 % 3", "r1 = r2 + r2"], None),  # nor computed twice
    (["r2 = (x := r0) % 3", "r1 = r2 + x"], None),  # temporaries stay in statements
    (["r0 = 1", "r1 = r0"], None),  # the loop's variable is not written
    (["r1 = r5 + 1"], None),  # a register not written here
    (["if r0:", "    r1 = 1"], None),  # not straight-line
])
def test_a_straight_line_leaf_folds_into_one_comprehension(body: list[str], folds: list | None) -> None:
    """FastTier.fused runs a straight-line leaf as one expression in a list comprehension: only
    when the expression computes what the statements do and raises whenever one of them would."""
    ns: dict = {}
    chunk = fast._chunk_of(ns, "map", _LEAF_SRC.format(body="\n".join(" " * 12 + t for t in body)))
    if folds is None:
        assert chunk is None
    else:
        assert chunk is not None and chunk([0, 1, 2, 3]) == folds


FOLDED = """
(def xs (append (list/range 2000) (list "a" 7)))
(def why (thunk) (try (thunk) (catch e (list (nth e 1) (nth e 2)))))
(print (length (list/filter (fn (x) (!= (mod x 3) 0)) (list/range 2000)))
       (list/reduce + 0 (list/map (fn (x) (+ (* x 2) 1)) (list/range 2000)))
       (why (fn () (list/filter (fn (x) (!= (mod x 3) 0)) xs)))
       (why (fn () (list/map (fn (x) (+ (mod x 3) 1)) xs))))
"""


def test_a_folded_leaf_gives_the_values_and_errors_of_the_lisp_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comprehension of a straight-line leaf (taken here, over several chunks) gives what the
    Lisp loop gives, and an error at an element past the first chunk is the leaf's own."""
    made: list = []
    orig = fast._chunk_of

    def spy(ns: dict, kind: str, src: str) -> object:
        made.append(orig(ns, kind, src))
        return made[-1]

    monkeypatch.setattr(fast, "_chunk_of", spy)
    monkeypatch.setenv("LISPVM_JIT", "eager")
    want = ('1333 4000000 (badarg "mod: expected numbers, got string \\"a\\" and integer 3") '
            '(badarg "mod: expected numbers, got string \\"a\\" and integer 3")\n', "", 0)
    assert run(FOLDED) == want
    assert sum(c is not None for c in made) >= 2, made
    monkeypatch.setenv("LISPVM_JIT", "off")
    assert run(FOLDED) == want


NESTED = """
(def grid (n)
  (loop ((y 0) (acc 0))
    (if (== y n) acc
        (recur (+ y 1) (loop ((x 0) (a acc)) (if (== x 200) a (recur (+ x 1) (+ a (mod (* x y) 7)))))))))
(print (grid 1000) (try (loop ((y 0))
                          (if (== y 1000) 'none
                              (do (loop ((x 0)) (if (== x 200) x (recur (+ x (if (== y 999) "s" 1)))))
                                  (recur (+ y 1)))))
                        (catch e (nth e 2))))
"""


def test_an_inner_loop_once_compiled_is_entered_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """A `loop` compiled on its own (OSR) inside a loop that stays interpreted runs compiled each
    time the interpreter enters it again, not only when a budget runs out inside it; its values
    and errors are the interpreter's."""
    entered: list[int] = []
    orig = fast.FastTier.osr

    def spy(self: fast.FastTier, p: object, head: int) -> object:
        entered.append(head)
        return orig(self, p, head)

    monkeypatch.setattr(fast.FastTier, "osr", spy)
    want = ('512910 +: expected numbers, got integer 0 and string "s"\n', "", 0)
    assert run(NESTED) == want
    assert len(entered) > 500, len(entered)
    monkeypatch.setenv("LISPVM_JIT", "off")
    assert run(NESTED) == want


@pytest.mark.parametrize(("k1", "xs", "folds"), [("[", ["a", 5, "abcdefghij"], ["[a", 0, 0]), (5, [1], [0])])
def test_a_folded_leaf_knows_its_string_constants(k1: object, xs: list, folds: list) -> None:
    """The class test and the length of a string constant are written as constants (the inline
    str of a constant and an argument); any other constant keeps its test."""
    body = " " * 12 + "r1 = K1 + r0 if K1.__class__ is str and r0.__class__ is str and len(K1) + len(r0) <= 9 else 0"
    ns = {"K1": k1}
    chunk = fast._chunk_of(ns, "map", _LEAF_SRC.format(body=body))
    assert chunk is not None and chunk(xs) == folds
    inner = next(c for c in chunk.__code__.co_consts if hasattr(c, "co_code"))  # the comprehension's code
    lens = sum(i.argval == "len" for i in dis.get_instructions(inner) if i.opname == "LOAD_GLOBAL")
    assert lens == (1 if k1.__class__ is str else 2)


FLOATS = """
(def f (x) (* 2.0 x))
(def g (x) (let ((y (* 1.5 x))) (* y x)))
(def h (x c) (let ((y (if c "s" 2.0))) (* y x)))
(def why (thunk) (try (thunk) (catch e (list (nth e 1) (nth e 2)))))
(print (f 3) (g 2) (g 2.0) (h 3 false) (why (fn () (f "s"))) (why (fn () (g "ab"))) (why (fn () (h 3 true)))
       (why (fn () (f (list 1)))))
"""


def test_a_product_with_a_known_float_is_not_tested(monkeypatch: pytest.MonkeyPatch) -> None:
    """A product with an operand known to be a float (a float constant, or such a product, on
    straight-line code) skips the product's tests and gives the same values and errors; a value
    that is a float on one path only (h's y, a jump target) keeps them: "s" times 3 is an error."""
    sources = generated_sources(monkeypatch)
    monkeypatch.setenv("LISPVM_JIT", "eager")
    want = ('6.0 6.0 6.0 6.0 (badarg "*: expected numbers, got float 2.0 and string \\"s\\"") '
            '(badarg "*: expected numbers, got float 1.5 and string \\"ab\\"") '
            '(badarg "*: expected numbers, got string \\"s\\" and integer 3") '
            '(badarg "*: expected numbers, got float 2.0 and list (1)")\n', "", 0)
    assert run(FLOATS) == want
    assert "__class__" not in sources["f"] and "__class__" not in sources["g"] and "__class__" in sources["h"]
    monkeypatch.setenv("LISPVM_JIT", "off")
    assert run(FLOATS) == want


COPIES = """
(def e (a) (if (empty? a) 'yes 'no))
(def lp (a b) (if (list? a) (< a b) (<= a b)))
(def t2 (a b) (let ((c (< a b))) (if c 'lt 'ge)))
(def ne (a b) (if (!= a b) 'ne 'eq))
(def k (x) (mod (+ (* x 31) 7) 1000003))
(def w (x) (loop ((i 0) (a x)) (if (== i 40) a (recur (+ i 1) (mod (+ (* a 31) i) 1000003)))))
(def c (xs) (loop ((xs xs) (acc 0)) (if (empty? xs) acc (recur (tail xs) (+ acc (head xs))))))
(def g (x) (let ((y (k x))) (list y y)))
(def has (s p) (if (str/find s p) 'found 'none))
(def three (a b c) (if (== c 1) (list a b) c))
(def calls (a b) (if (three a b 1) 'y 'n))
(def yes (x) (if (empty? x) true false))
(print (has "abc" "a") (has "abc" "z") (has "abc" "") (try (has 5 "a") (catch e e)) (try (has "a" 5) (catch e e)))
(print (calls 1 2) (yes nil) (yes (list 1)))
(print (e nil) (e (list 1)) (e []) (e "") (try (e 5) (catch e e)))
(print (lp 1 2) (lp 2 1) (try (lp "a" 1) (catch e e)) (t2 1 2) (t2 2 1) (try (t2 1 "b") (catch e e)))
(print (ne 1 2) (ne 'a 'a) (k 5) (try (k "s") (catch e e)) (try (k 1.5) (catch e e)))
(print (w 7) (w 2.5) (try (w "s") (catch e e)) (try (w (bit/shl 1 1048573)) (catch e (nth e 1))))
(print (c (list 1 2 3)) (try (c (cons 1 2)) (catch e e)) (try (c (list 1 "a")) (catch e e)) (g 3))
"""


def test_copies_are_forwarded_and_a_predicate_is_its_branch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy or constant read once is named by its reader (`x * 31`, no `r8 = 31`), a value that
    a MOVE takes is written to the MOVE's register, and a predicate that only its branch reads is
    the branch's condition (no _TRUE made and tested): the same values and the same errors,
    whose messages still name the copied operands (the constant 31, the copied "a")."""
    sources = generated_sources(monkeypatch)
    monkeypatch.setenv("LISPVM_JIT", "eager")
    compiled = run(COPIES)
    monkeypatch.setenv("LISPVM_JIT", "off")
    assert compiled == run(COPIES)
    out = compiled[0].splitlines()
    assert out[0].startswith("found none found (error badarg") and out[1] == "y true false", out
    out = out[2:]
    assert out[0] == 'yes no yes yes (error badarg "empty?: expected a list, vector, string or map, got integer 5")'
    assert '(error badarg "<: expected numbers or strings, got integer 1 and string \\"b\\"")' in out[1]
    assert '(error badarg "*: expected numbers, got string \\"s\\" and integer 31")' in out[2]
    assert out[3].startswith("870456 631867.5 (error badarg") and out[3].endswith(" system_limit")
    assert '"+: expected numbers, got integer 1 and string \\"a\\""' in out[4]
    # str/find as the branch's test; arguments copied into a call whose value a branch tests;
    # a boolean constant returned as it is
    assert "y in x" in sources["has"] and "(r0, r1, 1)" in sources["calls"] and "return _TRUE" in sources["yes"]
    for name in ("e", "t2", "ne", "c"):
        assert "_TRUE" not in sources[name] and "_FALSE if" not in sources[name], sources[name]
    assert "* 31" in sources["k"] and "= 31" not in sources["k"] and "= 1000003" not in sources["w"]
    assert "r2 = F_" in sources["g"]  # (let ((y (k x))) ...): k's value straight into y's register


NUMBER_LOOPS = """
(def w (x) (loop ((i 0) (a x)) (if (== i 40) a (recur (+ i 1) (mod (+ (* a 31) i) 1000003)))))
(def m (cr ci)
  (loop ((zr 0.0) (zi 0.0) (k 0))
    (cond ((== k 50) k)
          ((> (+ (* zr zr) (* zi zi)) 4.0) k)
          (true (recur (+ (- (* zr zr) (* zi zi)) cr) (+ (* 2.0 zr zi) ci) (+ k 1))))))
(def flip (n) (loop ((i 0) (a 1)) (if (== i n) a (recur (+ i 1) (if (== i 5) 0.5 (* a 2))))))
(def divs (n) (loop ((i 1) (s 0)) (if (> i n) s (recur (+ i 1) (+ s (/ 1 i))))))
(def zero (n) (loop ((i 0) (a 7)) (if (== i n) a (recur (+ i 1) (mod a (- 2 i))))))
(def grow (x n) (loop ((i 0) (a x)) (if (== i n) a (recur (+ i 1) (* a 1.5)))))
(def z (cr ci n)
  (loop ((zr 0.0) (zi 0.0) (k 0))
    (if (== k n) (list zr zi) (recur (+ (- (* zr zr) (* zi zi)) cr) (+ (* 2.0 zr zi) ci) (+ k 1)))))
(def fib2 (n) (loop ((a 0) (b 1) (k 0)) (if (== k n) a (recur b (+ a b) (+ k 1)))))
(def fibf (n) (loop ((a 0.0) (b 1.0) (k 0)) (if (== k n) (list a b) (recur (+ b 0.5) (- (+ a b) 0.25) (+ k 1)))))
(print (w 7) (w 2.5) (try (w "s") (catch e e)) (try (w (bit/shl 1 1048573)) (catch e (nth e 1))))
(print (m 0.1 0.2) (m 1 1) (m -0.5 0.5) (try (m "a" 0.1) (catch e e)) (try (m 0.1 "b") (catch e e)) (m 1 0.0))
(print (flip 10) (divs 10) (try (zero 5) (catch e e)) (grow 2.0 3) (try (grow (bit/shl 1 2000) 2) (catch e e)))
(print (z 0.1 0.2 5) (z 0.3 -0.4 7) (fib2 30) (fibf 10))
"""


def test_a_loop_of_numbers_runs_its_arithmetic_untested(monkeypatch: pytest.MonkeyPatch) -> None:
    """A loop whose numbers keep their class from turn to turn is written twice: entered with
    those classes (one test at entry), its sums and remainders take no unary + and its int
    products only the range test; entered with anything else (a float where an int was
    expected, a string, an int where the loop makes floats), the plain copy runs. Both give
    the interpreter's values and errors: the Lisp int limit, division by zero, a float too
    large, a value whose class changes in the middle (flip: not guarded)."""
    sources = generated_sources(monkeypatch)
    monkeypatch.setenv("LISPVM_JIT", "eager")
    compiled = run(NUMBER_LOOPS)
    monkeypatch.setenv("LISPVM_JIT", "off")
    assert compiled == run(NUMBER_LOOPS)
    out = compiled[0].splitlines()
    assert out[0].startswith("870456 631867.5 (error badarg") and out[0].endswith(" system_limit"), out
    assert out[1].startswith("50 2 50 (error badarg") and 'string \\"a\\"' in out[1], out
    assert "mod: division by zero" in out[2] and "int too large to convert to float" in out[2], out
    # a folded value is computed where it is read: not after one of the registers it reads
    # was given its next value (zi before zr's new value, a before b's)
    assert out[3].startswith("(0.0") and " 832040 " in out[3], out
    assert "r2.__class__ is int and r3.__class__ is int" in sources["w"] and sources["w"].count("x - 0") == 1
    assert "r0.__class__ is float and r1.__class__ is float" in sources["m"]
    # a sum that cannot raise is written into its one reader: no register holds it
    assert ") % 1000003" in sources["w"] and "(r4 * r4)) > 4.0" in sources["m"], (sources["w"], sources["m"])
    assert "r2 = (r2 + 1)" in sources["w"]  # i's (+ i 1), sunk to the recur's copy into i
    # i keeps its class and is guarded; a is an int, then a float: not guarded
    assert "r2.__class__ is int" in sources["flip"] and "r3.__class__" not in sources["flip"]


BOUNDED_LOOPS = """
(def ra (n x) (loop ((i 0) (x x) (acc nil))
  (if (== i n) acc (recur (+ i 1) (mod (+ (* x 1103515245) 12345) 2147483648) (cons x acc)))))
(def w (x) (loop ((i 0) (a x)) (if (== i 40) a (recur (+ i 1) (mod (+ (* a 31) i) 1000003)))))
(def neg (x) (loop ((i 0) (a x)) (if (== i 9) a (recur (+ i 1) (- (mod (* a -77) -1009) (* 3 (mod a 7)))))))
(def sq (x n) (loop ((i 0) (a x)) (if (== i n) a (recur (+ i 1) (* a a)))))
(def cp (n) (loop ((i 2) (a 1)) (if (== i n) a (recur (* i i) (mod (* a i) 1000003)))))
(def dv (x) (loop ((i 0) (a x)) (if (== i 30) a (recur (+ i 1) (div (* a 5) 3)))))
(print (ra 4 42) (try (ra 3 "s") (catch e e)) (ra 3 2.5) (try (ra 3 (bit/shl 1 1048572)) (catch e (nth e 1))))
(print (w 7) (w (bit/shl 1 64)) (w (- 0 (bit/shl 1 64))) (w (- (bit/shl 1 64) 1))
       (try (w (bit/shl 1 1048573)) (catch e (nth e 1))))
(print (neg 5) (neg -123456789) (neg (bit/shl 1 63)) (neg 2.5) (try (neg "x") (catch e e)))
(print (sq 3 4) (try (sq 3 25) (catch e (nth e 1))) (cp 65536) (try (cp 0) (catch e (nth e 1))))
(print (dv 7) (try (dv (bit/shl 1 1048570)) (catch e (nth e 1))) (dv (bit/shl 1 62)))
"""


def test_a_bounded_int_product_has_no_range_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """A typed loop whose int registers stay small from turn to turn (a remainder by a constant,
    a small product plus a sum) is entered, within 2 ** 64, without its products' tests of the
    Lisp int limit; a loop with a list accumulator is typed too. Entered with a larger int, a
    float or a string, the plain copy runs; a register that grows each turn (a square, a product
    by a counter that squares) keeps the test and still reaches system_limit. Both tiers agree."""
    sources = generated_sources(monkeypatch)
    monkeypatch.setenv("LISPVM_JIT", "eager")
    compiled = run(BOUNDED_LOOPS)
    monkeypatch.setenv("LISPVM_JIT", "off")
    assert compiled == run(BOUNDED_LOOPS)
    out = compiled[0].splitlines()
    assert out[0].endswith(" system_limit") and 'string \\"s\\"' in out[0], out
    assert out[1].endswith(" system_limit") and out[3].endswith(" system_limit"), out
    assert out[3].count("system_limit") == 2 and "(error badarg" in out[2], out
    # the typed copy of each bounded loop has no range test (a typed copy's test has no
    # `x - 0`): the plain copy keeps its tests
    for name in ("ra", "w", "neg"):
        assert "< 18446744073709551616" in sources[name], sources[name]
        assert sources[name].count("_INT_LIMIT") == sources[name].count("x - 0") >= 1, sources[name]
    assert "r3 = ((r3 * 31) + r2) % 1000003" in sources["w"], sources["w"]
    # growing registers: both copies test their products
    for name in ("sq", "cp", "dv"):
        assert "18446744073709551616" not in sources[name], sources[name]


SWAPPED_UPDATES = """
(def z (cr ci)
  (loop ((zr 0.0) (zi 0.0) (k 0))
    (if (== k 5) (list zr zi)
        (recur (+ (- (* zr zr) (* zi zi)) cr) (+ (* 2.0 zr zi) ci) (+ k 1)))))
(def w (x y)
  (loop ((a x) (b y) (k 0))
    (if (== k 6) (list a b)
        (recur (+ (- a b) k) (+ (+ a b) 3) (+ k 1)))))
(print (z 0.25 0.5) (w 7 2) (z 1.5 -0.5) (w 100 -3))
"""


def test_a_folded_chain_is_not_moved_past_a_write_of_what_it_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A typed loop writes an expression into its one reader, which may be the recur's copy into
    a loop variable; when the expression is a chain of folds ((zr*zr - zi*zi) + cr), every
    register the chain reads must keep its value up to that reader. Mandelbrot's recur writes
    zi before the copy into zr, so folding the chain there read the new zi (wrong counts)."""
    monkeypatch.setenv("LISPVM_JIT", "eager")
    compiled = run(SWAPPED_UPDATES)
    monkeypatch.setenv("LISPVM_JIT", "off")
    interpreted = run(SWAPPED_UPDATES)
    assert compiled == interpreted
    assert compiled[0].startswith("("), compiled


GRID = """
(def inner (x y) (loop ((k 0) (z x)) (if (== k 30) (mod z 7) (recur (+ k 1) (+ z y)))))
(def grid (n)
  (loop ((y 0) (acc 0))
    (if (== y n) acc
        (recur (+ y 1) (loop ((x 0) (a acc)) (if (== x n) a (recur (+ x 1) (+ a (inner x y)))))))))
(print (grid 40) (grid 3))
"""


def test_a_loop_around_a_call_compiled_at_a_budget_end_runs_compiled_next(monkeypatch: pytest.MonkeyPatch) -> None:
    """When a budget ends in a function and compiles it, the loop its interpreted caller is
    running (grid's row loop around `inner`) gets its compiled entry at once, so that the next
    row runs compiled instead of the interpreter calling into compiled code at each turn; the
    values are the interpreter's."""
    events: list[tuple[str, str]] = []
    orig_compile, orig_osr = fast.FastTier.compile, fast.FastTier.osr

    def spy_compile(self: fast.FastTier, p: object) -> bool:
        ok = orig_compile(self, p)
        if ok and ("compile", p.name) not in events:  # type: ignore[attr-defined]
            events.append(("compile", p.name))  # type: ignore[attr-defined]
        return ok

    def spy_osr(self: fast.FastTier, p: object, head: int) -> object:
        fn = orig_osr(self, p, head)
        if fn is not None and ("osr", p.name) not in events:  # type: ignore[attr-defined]
            events.append(("osr", p.name))  # type: ignore[attr-defined]
        return fn

    monkeypatch.setattr(fast.FastTier, "compile", spy_compile)
    monkeypatch.setattr(fast.FastTier, "osr", spy_osr)
    out = run(GRID, reductions=500)
    assert out == run(GRID, jit=False) and out[0] == "4798 27\n", out
    first = events.index(("compile", "inner"))
    assert events[first + 1] == ("osr", "grid"), events


def test_safe_points_read_from_raw_bytecode_agree_with_dis(monkeypatch: pytest.MonkeyPatch) -> None:
    """safe_points scans co_code itself (dis.get_instructions was a third of a build's time):
    the RESUMEs and the JUMP_BACKWARDs with their targets' lines are dis's, for the code the
    tier generates (typed and untyped loops, OSR parts, closures) and for jumps long enough to
    need EXTENDED_ARG."""
    codes: list[object] = []
    orig = fast._Gen.safe_points

    def spy(self: object, code: object) -> dict[int, int]:
        codes.append(code)
        return orig(self, code)  # type: ignore[arg-type]

    monkeypatch.setattr(fast._Gen, "safe_points", spy)
    run(PROGRAM)
    run((Path(__file__).parent.parent / "perf" / "programs" / "gabriel" / "mandelbrot.lisp").read_text())
    assert len(codes) > 10
    body = "\n".join(f"            x = x + {i}" for i in range(400))
    ns: dict = {}
    exec(f"def big(x):\n    while True:\n        while x:\n{body}\n        x -= 1\n"
         f"        if x < 0:\n            break\n    return x\n", ns)
    codes.append(ns["big"].__code__)
    assert any(i.opname == "EXTENDED_ARG" for i in dis.get_instructions(ns["big"].__code__))
    for code in codes:
        assert fast._resumes_and_jumps(code) == fast._dis_resumes_and_jumps(code)  # type: ignore[arg-type]
    assert any(jumps for _, jumps in map(fast._resumes_and_jumps, codes))  # type: ignore[arg-type]


def test_a_loop_is_compiled_within_a_check_and_the_host_is_asked_once_a_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """The interpreter looks for hot code every FastTier.check reductions, a quarter of the
    default budget: a loop of 2,500 turns (fewer reductions than a budget, which never ended
    in it before) is entered compiled at its head, and the host gets its look right after the
    compile (compiled code is preempted by ticks only). Otherwise the host is asked whether the
    process should yield once per budget only: a recursion 100,000 calls deep, which stays
    interpreted (its function is not compiled at a look inside the slice), is asked about 25
    times, not 100."""
    from lispvm.scheduler.kernel import Scheduler

    entered = spy_made(monkeypatch, "osr")
    asked: list[int] = []
    orig_preempt = Scheduler.preempt

    def spy_preempt(self: Scheduler) -> bool:
        asked.append(1)
        return orig_preempt(self)

    monkeypatch.setattr(Scheduler, "preempt", spy_preempt)
    src = "(def f (n) (loop ((i 0) (s 0)) (if (== i n) s (recur (+ i 1) (+ s i)))))\n(print (f 2500))\n"
    assert run(src) == ("3123750\n", "", 0)
    assert "f" in entered and fast.CHECK <= 1000 and asked
    assert run(src, jit=False) == ("3123750\n", "", 0)
    asked.clear()
    src = "(def count (n) (if (== n 0) 0 (+ 1 (count (- n 1)))))\n(print (count 100000))\n"
    assert run(src) == ("100000\n", "", 0)
    assert 20 <= len(asked) <= 100000 // 4000 + 5, len(asked)



def test_a_budget_that_is_not_a_multiple_of_the_look_keeps_its_length(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--reductions N` is the length of a slice (CLI.md) whatever N: the interpreter's looks for
    hot code split it into equal parts of at most FastTier.every (1001: two looks of 501). With
    looks of 1,000 each, a budget of 1001 made slices of 2,000 reductions and 2500 of 3,000. The
    tier refuses everything here, so that only the looks, not compiled code, decide when the
    host is asked: 100,000 calls ask it once per slice."""
    from lispvm.scheduler.kernel import Scheduler

    asked: list[int] = []
    orig_preempt = Scheduler.preempt

    def spy_preempt(self: Scheduler) -> bool:
        asked.append(1)
        return orig_preempt(self)

    monkeypatch.setattr(Scheduler, "preempt", spy_preempt)
    monkeypatch.setattr(fast.FastTier, "compile", lambda self, p: False)
    monkeypatch.setattr(fast.FastTier, "osr", lambda self, p, head: None)
    src = "(def count (n) (if (== n 0) 0 (+ 1 (count (- n 1)))))\n(print (count 100000))\n"
    for budget in (1001, 2500, 4000, 999):
        asked.clear()
        assert run(src, reductions=budget) == ("100000\n", "", 0)
        slices = 100000 // budget
        assert slices - 2 <= len(asked) <= slices + 2, (budget, len(asked))


def test_an_interpreted_function_run_nested_from_compiled_code_keeps_the_callers_budget() -> None:
    """A nested loop (compiled code calling a function the tier refused, vm/fast.py _nested)
    starts a slice of its own: it must not reset the counts of the interrupted one (FastTier.left
    and .slice). It did, so an interpreted loop calling such compiled code at every turn never
    reached its slice's last look, never asked the host, and starved every other process on its
    scheduler: below, the main process's timer message was read only once the spinner had ended
    (30,000 nested runs, far longer than the timer's 5 ms). Its CPU-time ticks likewise."""
    src = """
(def deep (n mode)
  (cond ((== mode 'down) (if (== n 0) 0 (+ 1 (deep (- n 1) 'down))))
        ((== n 0) (send 'main 'spinner-done))
        (true (mid 1) (deep (- n 1) 'loop))))
(def mid (n) (loop ((i 0) (a 0)) (if (< i 200) (recur (+ i 1) (+ a i)) (+ a (deep n 'down)))))
(print (deep 5000 'down) (mid 1) (mid 1))
(register 'main (self))
(spawn deep 30000 'loop)
(timer/send-after 5 'main 'tick)
(print (recv))
(print (recv))
"""
    want = "5000 19901 19901\ntick\nspinner-done\n"
    assert run(src) == (want, "", 0)  # (interpreted, the spinner takes seconds: not run here)
    # the same from a compiled loop: each nested run started a slice of CPU-time ticks, so the
    # loop's own ticks never ran out and it was never preempted (100,000 turns: ~0.5 s)
    src = """
(def deep (n mode) (if (== n 0) 0 (+ 1 (deep (- n 1) 'down))))
(def spin (k)
  (loop ((i 0) (a 0))
    (if (< i k) (recur (+ i 1) (+ a (deep 1 'down))) (do (print 'spinner-done) (send 'main 'end)))))
(print (deep 5000 'down))
(register 'main (self))
(spawn spin 100000)
(timer/sleep 5)
(print 'main-woke)
(recv)
"""
    assert run(src) == ("5000\nmain-woke\nspinner-done\n", "", 0)


def test_a_typed_loop_folds_a_sum_only_into_a_reader_that_reads_it_once_through_a_copy(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """fold_into writes a sum into its one reader only if that reader names it once: `(let ((i
    x)) (+ i x))` compiles to MOVE t x; ADD y t x, whose copy t is forwarded to x, so the ADD
    reads x twice. Counted by its fields it read x once: the sum was folded into the first
    operand and the second read a register never written (UnboundLocalError, an internal error,
    when compiled at the first call; a wrong number when compiled in the middle of the loop)."""
    src = """
(def shadow (n)
  (loop ((i 0) (x 0)) (if (>= i n) x (let ((x (+ x 1)) (i (+ i 0))) (recur (+ i 1) (let ((i x)) (+ i x)))))))
(print (shadow 3) (shadow 40))
(print (mod (shadow 3000) 1000000007))
"""
    want = run(src, jit=False)
    assert want == ("14 2199023255550\n" + want[0].split("\n")[1] + "\n", "", 0)
    compiled = spy_compiled(monkeypatch)
    assert run(src) == want
    monkeypatch.setenv("LISPVM_JIT", "eager")
    assert run(src) == want
    assert "shadow" in compiled
