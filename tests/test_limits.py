"""System limits (issue 12, items 9 and 10; docs/language.md, "System limits"): running out of
memory, or asking a builtin for more work than one call may do without counting reductions, is
the catchable error `(error system_limit "...")`; the process may fail, the node goes on.
Each case is refused at once (unbounded, each would block its scheduler or end the node), which
the run's timeout checks without asserting a timing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lispvm.assembler.pipeline import compile_source
from lispvm.vm import errors
from lispvm.vm.errors import MAX_INT_BITS, MAX_INT_DIGITS, MAX_LIST, MAX_TEXT, CompileError, LispError
from lispvm.vm.interp import python_error

Runner = Callable[..., tuple[str, str, int]]
TIMEOUT = 60  # far above a refusal, far below the seconds each case blocked for before

# 2 ** 400000 (120,412 digits) by doubling (cheap), and a list that shares its halves 40 times over
PRELUDE = """
(def pow2 (n acc) (if (= n 0) acc (pow2 (- n 1) (* acc 2))))
(def big (pow2 400000 1))
(def dbl (n xs) (if (= n 0) xs (dbl (- n 1) (list xs xs))))
(def kind (thunk) (try (do (thunk) 'no-error) (catch e (head (tail e)))))
"""

CASES = {
    "str-of-a-huge-int": "(str big)",
    "repr-of-a-list-holding-it": "(repr (list 1 big))",
    "print-of-it": "(print big)",
    "str-join-of-it": '(str/join "," (list big))',
    "str-of-a-shared-list": "(str (dbl 40 1))",
    "list-range-of-10^12": "(list/range 1000000000000)",
    "list-range-beyond-a-machine-word": "(list/range 0 100000000000000000000000000000 7)",
    "parse-int-of-a-million-digits": '(parse-int (str/join "" (list/range 1 200000)))',
    "parse-int-base-16-of-4.8M-bits":
        '(parse-int (str/join "" (list/map (fn (i) "ffff") (list/range 300000))) 16)',
    "str-join-with-a-huge-separator": '(str/join (str/join "" (list/range 1 300000)) (list/range 100000))',
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_unbounded_builtins_refuse_with_system_limit(run_lisp: Runner, case: str) -> None:
    source = PRELUDE + f"(print (kind (fn () {CASES[case]})))\n(print 'alive)\n"
    assert run_lisp(source, timeout=TIMEOUT) == ("system_limit\nalive\n", "", 0)


def test_sizes_under_the_limits_still_work(run_lisp: Runner) -> None:
    source = PRELUDE + f"""
(print (str/length (str (pow2 60000 1))))
(print (length (list/range {MAX_LIST})))
(print (str/length (str (dbl 12 "ab"))))
(print (= (parse-int (str (pow2 60000 1))) (pow2 60000 1)))
"""
    out, err, status = run_lisp(source, timeout=TIMEOUT)
    assert (err, status) == ("", 0)
    assert out.split() == ["18062", str(MAX_LIST), str(7 * 4096 - 3), "true"]


def test_an_uncaught_huge_value_is_one_line(run_lisp: Runner) -> None:
    out, err, status = run_lisp(PRELUDE + "(throw big)\n", timeout=TIMEOUT)
    assert (out, status) == ("", 1)
    assert err == "prog.lisp:6:1: error: throw: #<too large to print>\n"


def test_an_error_message_names_a_huge_value_without_printing_it(run_lisp: Runner) -> None:
    out, err, status = run_lisp(PRELUDE + "(print (try (head big) (catch e e)))\n", timeout=TIMEOUT)
    assert (err, status) == ("", 0)
    assert out == '(error badarg "head: expected a non-empty list, got #<integer of 400001 bits>")\n'


def test_an_integer_literal_over_the_limit_is_a_compile_error() -> None:
    compile_source("(print " + "9" * MAX_INT_DIGITS + ")", "ok.lisp")
    with pytest.raises(CompileError) as info:
        compile_source("(print\n  " + "9" * (MAX_INT_DIGITS + 1) + ")", "big.lisp")
    assert str(info.value) == f"big.lisp:2:3: integer literal too large (more than {MAX_INT_DIGITS} digits)"


@pytest.mark.parametrize("exc", [MemoryError(), MemoryError("Unable to allocate 373. GiB"),
                                 OverflowError("Python int too large to convert to C ssize_t"),
                                 OverflowError("cannot fit 'int' into an index-sized integer"),
                                 ValueError("Exceeds the limit (20000 digits) for integer string conversion")])
def test_python_limits_become_system_limit(exc: BaseException) -> None:
    """Whatever instruction or builtin raised it, in either tier (both use python_error)."""
    module = compile_source("(print 1)", "m.lisp")
    err = python_error(module.protos[0], 0, [None] * module.protos[0].nregs, exc)
    assert isinstance(err, LispError)
    assert err.value.tail.head is errors.SYSTEM_LIMIT


def test_a_float_overflow_stays_badarg() -> None:
    assert errors.limit_error(OverflowError("math range error")) is None


def test_out_of_memory_in_a_builtin_is_caught_and_the_node_lives(run_lisp: Runner) -> None:
    """The issue's reproducer: asking for a 373 GiB array is a catchable system_limit in both
    tiers, and the node goes on."""
    pytest.importorskip("numpy")
    source = """
(print (try (gpu/zeros 100000000000) (catch e (head (tail e)))))
(def f (n) (try (gpu/zeros n) (catch e (head (tail e)))))
(print (f 100000000000))
(spawn (fn () (gpu/zeros 100000000000)))
(print 'alive)
"""
    import os

    eager = {**os.environ, "LISPVM_JIT": "eager"}  # compiled code's try catches it too
    for flags, env in (((), None), (("--no-jit",), None), ((), eager)):
        out, err, status = run_lisp(source, flags=flags, timeout=TIMEOUT, env=env)
        assert out == "system_limit\nsystem_limit\nalive\n", (flags, env is not None, err)
        assert status == 0 and "Traceback" not in err


def test_the_limits_are_the_documented_ones() -> None:
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "language.md").read_text(encoding="utf-8")
    for value in (MAX_INT_DIGITS, MAX_TEXT, MAX_LIST, MAX_INT_BITS):
        assert f"{value:,}" in doc, value


def test_an_exit_reason_too_large_to_print_is_reported(run_lisp: Runner) -> None:
    """A crash or exit reason too large to print is reported as #<too large to print> (vm/values.py's
    to_repr), not as an internal error."""
    out, err, status = run_lisp(PRELUDE + "(spawn (fn () (throw big)))\n(timer/sleep 50)\n(exit big)\n",
                                timeout=TIMEOUT)
    assert (out, status) == ("", 1)
    crash, end = err.splitlines()
    assert crash.startswith("prog.lisp:6:15: process #<pid ")
    assert crash.endswith("> crashed: throw: #<too large to print>")
    assert end == "lispvm: the main process exited with reason #<too large to print>"


# --- issue 12, item 10: integer products ----------------------------------------------------------

# 2 ** 2 ** 19 by squaring (19 products); its square is the first power of two over the limit, and
# (half - 1) * (half + 1) = 2 ** 2 ** 20 - 1 the largest product allowed.
SQUARES = """
(def sq (x k) (if (== k 0) x (sq (* x x) (- k 1))))
(def half (sq 2 19))
(def kind (thunk) (try (do (thunk) 'no-error) (catch e (head (tail e)))))
"""
PRODUCTS = """
(print (kind (fn () (sq 3 30))))
(print (kind (fn () (* half half))))
(print (kind (fn () (* half (- 0 half)))))
(print (kind (fn () (apply * (list half half)))))
(print (kind (fn () (* 1 half 1 half))))
(print (kind (fn () (apply * (list/map (fn (i) 1000000007) (list/range 40000))))))
(print (> (* (- half 1) (+ half 1)) half))
(print (== (* 2 (- half 1) 2) (* (* 2 (- half 1)) 2)))
(print (* 1e200 1e200) (* 1.5 2 3))
(print (kind (fn () (* "a" 3))))
(print (== (parse-int (str/join "" (list/map (fn (i) "f") (list/range 262144))) 16) (+ (* (- half 1) (+ half 1)) 0)))
"""
EXPECTED_PRODUCTS = ["system_limit"] * 6 + ["true", "true", "inf 9.0", "badarg", "true"]


@pytest.mark.parametrize("mode", ["interpreted", "compiled"])
def test_an_integer_product_over_the_limit_is_system_limit(run_lisp: Runner, mode: str) -> None:
    """A product of more than MAX_INT_BITS bits (squaring 3 thirty times, say) is system_limit, in
    `*` compiled to the MUL instruction (both tiers) and in the builtin (`apply`, more than two
    arguments)."""
    import os

    source = SQUARES + PRODUCTS
    flags, env = ((("--no-jit",), None) if mode == "interpreted"
                  else ((), {**os.environ, "LISPVM_JIT": "eager"}))
    out, err, status = run_lisp(source, flags=flags, env=env, timeout=TIMEOUT)
    assert (err, status) == ("", 0)
    assert out.splitlines() == EXPECTED_PRODUCTS


def test_the_product_limit_is_the_bit_length() -> None:
    assert errors.INT_LIMIT.bit_length() == MAX_INT_BITS + 1 and errors.INT_MIN == -errors.INT_LIMIT


# --- the text limit counts the text each builtin builds ---------------------------------------------

def test_str_join_counts_the_joined_text_not_the_printed_list(run_lisp: Runner) -> None:
    """350,000 strings of 10 characters join to 3,500,000 characters, under the limit, and are
    allowed: the limit counts the joined text, not the list's printed form (quotes, separators).
    A joined string exactly at the limit is allowed and one character more is not, separators
    included."""
    n = MAX_TEXT // 10  # strings of 9 characters and a 1-character separator
    source = f"""
(def ten (n) (list/map (fn (i) "aaaaaaaaaa") (list/range n)))
(def nine (n) (list/map (fn (i) "aaaaaaaaa") (list/range n)))
(def kind (thunk) (try (do (thunk) 'no-error) (catch e (head (tail e)))))
(print (str/length (str/join "" (ten 350000))))
(print (str/length (str/join "," (nine {n}))))
(print (str/length (str (str/join "" (ten 200000)) (str/join "" (ten 200000)))))
(print (str/length (str/join "," (list (str/join "" (ten {MAX_TEXT // 10})) "123"))))
(print (kind (fn () (str/join "," (list (str/join "" (ten {MAX_TEXT // 10})) "1234")))))
(print (kind (fn () (str/join "," (ten {n})))))
(print (kind (fn () (str/join (str/join "" (ten 200000)) (list (str/join "" (ten 250000)) "")))))
(print (kind (fn () (print (str/join "" (ten 300000)) (str/join "" (ten 200000))))))
"""
    out, err, status = run_lisp(source, timeout=TIMEOUT)
    assert (err, status) == ("", 0)
    assert out.splitlines() == ["3500000", str(n * 10 - 1), "4000000", str(MAX_TEXT),
                                "system_limit", "system_limit", "system_limit", "system_limit"]


@pytest.mark.parametrize("call, words", [
    ('(str/join "," (list/map (fn (i) "aaaaaaaaaa") (list/range 400000)))', "str/join: the joined string"),
    ('(let ((x (str/join "" (list/map (fn (i) "aaaaaaaaaa") (list/range 300000))))) (str x x))', "str: the string"),
    ('(repr (list/map (fn (i) "aaaaaaaaaa") (list/range 350000)))', "repr: the representation"),
    ('(let ((x (str/join "" (list/map (fn (i) "aaaaaaaaaa") (list/range 300000))))) (print x x))',
     "print: the printed line"),
])
def test_each_text_limit_message_names_its_own_operation(run_lisp: Runner, call: str, words: str) -> None:
    out, err, status = run_lisp(f"(print (try {call} (catch e e)))\n", timeout=TIMEOUT)
    assert (err, status) == ("", 0)
    assert out == (f'(error system_limit "{words} would be longer than {MAX_TEXT:,} characters '
                   f'(or hold an integer of more than {MAX_INT_DIGITS:,} digits)")\n')


# --- reports of huge values are cut ---------------------------------------------------------------

DEEP = "(def deep (n acc) (if (== n 0) acc (deep (- n 1) (list acc))))\n"


def test_error_and_crash_reports_cut_a_huge_value(run_lisp: Runner) -> None:
    """A throw of a list nested 200,000 deep, or of a long error message, is reported on one line
    that shows at most MAX_REPORT characters of it, ending in "..." (not the whole value)."""
    long_message = '(str/join "" (list/map (fn (i) "abcdefghij") (list/range 10000)))'
    source = DEEP + f"""(spawn (fn () (throw (deep 200000 1))))
(spawn (fn () (throw (list 'short "value"))))
(spawn (fn () (error {long_message})))
(timer/sleep 200)
(throw (deep 200000 2))
"""
    out, err, status = run_lisp(source, timeout=TIMEOUT)
    assert (out, status) == ("", 1)
    import re

    lines = sorted(err.splitlines(), key=lambda line: int(line.split(":")[1]))  # by source line
    cut = "(" * (errors.MAX_REPORT - 3) + "..."
    assert [re.sub(r"#<pid [0-9.]+>", "PID", line.split(": ", 1)[1]) for line in lines] == [
        f"process PID crashed: throw: {cut}",
        "process PID crashed: throw: (short \"value\")",
        f"process PID crashed: user: {'abcdefghij' * 99}abcdefg...",
        f"error: throw: {cut}",
    ]


def test_report_repr_is_to_repr_up_to_its_limit() -> None:
    from lispvm.vm.values import Cons, Vec, from_list, intern, to_repr

    values = [from_list([1, 2.5, from_list(['a"b', None]), Vec((1, Vec(()))), intern("x")]), Cons(1, 2),
              Cons(1, Cons(2, 3)), Vec(()), None, "abc", Vec((from_list([1]),)), 2**100, 2 ** (1 << 17)]
    for v in values:
        assert errors.report_repr(v) == to_repr(v)
    shared: object = "z"
    for _ in range(60):  # 2^60 leaves: cut after the first thousand characters, not walked
        shared = from_list([shared, shared])
    text = errors.report_repr(shared)
    assert len(text) == errors.MAX_REPORT and text.endswith("...") and text.startswith('((((')
    assert errors.report_repr("q" * 5000, 10) == '"qqqqqq...'


def test_the_main_process_exit_reason_report_is_cut() -> None:
    import io

    from lispvm.scheduler.node import main_exit
    from lispvm.vm.values import from_list

    class Ended:
        where = None

    deep: object = 1
    for _ in range(200000):
        deep = from_list([deep])
    err = io.StringIO()
    assert main_exit(Ended(), deep, lambda: None, err) == 1  # type: ignore[arg-type]
    assert err.getvalue() == ("lispvm: the main process exited with reason "
                              + "(" * (errors.MAX_REPORT - 3) + "...\n")


def test_a_deep_exit_reason_of_the_main_process_is_one_short_line(run_lisp: Runner) -> None:
    """`lispvm run` reports a 200,000-deep exit reason of the main process on one short line,
    with one scheduler (scheduler/node.py) and with two."""
    source = "(def deep (n acc) (if (== n 0) acc (deep (- n 1) (list acc))))\n(exit (deep 200000 3))\n"
    for flags in ((), ("--schedulers", "2")):
        out, err, status = run_lisp(source, flags=flags, timeout=TIMEOUT)
        assert status == 1 and out == "", (flags, err[:200])
        assert err.startswith("lispvm: the main process exited with reason (((") and err.endswith("...\n"), err[:200]
        assert len(err) <= errors.MAX_REPORT + 100, len(err)
