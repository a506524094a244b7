"""The C cells and list walkers (vm/_speedups.c) and the pure-Python fallback (LISPVM_PURE=1).

Guards: the two implementations agree (construction, equality, hashing, printing, iteration,
pickling, the walkers and their errors); a C cell is left alone by the cyclic collector exactly
when it cannot be part of a cycle, and a cycle through a cell is still collected; a million-long
or million-deep list is freed and pickled without recursion; programs print the same either
way; an install on a machine with a C compiler builds the extension.
"""

from __future__ import annotations

import copy
import gc
import importlib.util
import itertools
import os
import pickle
import random
import re
import subprocess
import sys
import sysconfig
import weakref
from pathlib import Path
from shutil import which
from typing import Any

import pytest
from conftest import run_cli
from test_examples import PROGRAMS, parse_expectations

from lispvm.vm import values

HAVE_C = values.SPEEDUPS
needs_c = pytest.mark.skipif(not HAVE_C, reason="lispvm.vm._speedups not built or LISPVM_PURE set")


def _load_pure() -> Any:
    """A second copy of vm/values.py, loaded with LISPVM_PURE=1: the pure-Python definitions."""
    spec = importlib.util.spec_from_file_location("lispvm.vm._values_pure_for_tests", values.__file__)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # pickling finds its functions by module name
    old = os.environ.get("LISPVM_PURE")
    os.environ["LISPVM_PURE"] = "1"
    try:
        spec.loader.exec_module(mod)
    finally:
        if old is None:
            del os.environ["LISPVM_PURE"]
        else:
            os.environ["LISPVM_PURE"] = old
    assert not mod.SPEEDUPS and mod.Cons is mod.PyCons
    return mod


PURE = _load_pure()


@pytest.fixture(params=["c", "pure"])
def v(request: pytest.FixtureRequest) -> Any:
    """The values module of one implementation."""
    if request.param == "c":
        if not HAVE_C:
            pytest.skip("lispvm.vm._speedups not built or LISPVM_PURE set")
        return values
    return PURE


def test_an_install_with_a_c_compiler_builds_the_extension() -> None:
    if os.environ.get("LISPVM_PURE", "") not in ("", "0"):
        pytest.skip("LISPVM_PURE is set")
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if which(cc) is None:
        pytest.skip(f"no C compiler ({cc}): the extension is optional")
    assert HAVE_C, "a C compiler is here, yet lispvm.vm._speedups did not build: pip install -e . again"
    assert values.Cons.__module__ == "lispvm.vm._speedups"


def test_cells_lists_and_their_values(v: Any) -> None:
    Cons, L = v.Cons, v.from_list
    c = Cons(1, Cons(2, None))
    assert (c.head, c.tail.head, c.tail.tail) == (1, 2, None)
    assert Cons(head=1, tail=2).tail == 2
    with pytest.raises(TypeError):
        Cons(1)
    with pytest.raises(TypeError):
        Cons(1, 2, 3)
    assert c == L([1, 2]) and c == L([1.0, 2]) and not (c != L([1, 2])) and c != L([1, 2, 3])
    assert c != 1 and not (c == None) and 1 != c and c != (1, 2)  # noqa: E711
    assert hash(c) == hash(L([1.0, 2])) and {L([1, 2]): "k"}[L([1, 2])] == "k"
    assert hash(L([1, 2])) != hash(L([2, 1]))
    assert repr(Cons(1, Cons("a", 2))) == '(1 "a" . 2)' and v.to_repr(L([L([]), L([v.intern("x")])])) == "(nil (x))"
    assert list(Cons(1, Cons(2, 3))) == [1, 2] and list(L(range(5))) == [0, 1, 2, 3, 4]
    assert v.type_name(c) == "list" and v.is_list(c) and v.compare(L([1, 2]), L([1, 3])) == -1
    for x in (c, Cons(1, 2), L([L([1]), v.Vec((1, 2)), v.intern("s"), v.TRUE])):
        assert pickle.loads(pickle.dumps(x)) == x and copy.deepcopy(x) == x and copy.copy(x) is not None


def test_from_list_and_to_pylist(v: Any) -> None:
    L = v.from_list
    assert L([]) is None and L((), 5) == 5 and L([1, 2], 3) == v.Cons(1, v.Cons(2, 3))
    assert list(L(range(3))) == [0, 1, 2] and list(L(x * 2 for x in range(3))) == [0, 2, 4]
    assert list(L("ab")) == ["a", "b"] and list(L((1, 2))) == [1, 2]
    assert v.to_pylist(L([1, 2, 3])) == [1, 2, 3] and v.to_pylist(None) == []
    assert v.to_pylist(v.Cons(1, 2)) is None and v.to_pylist(7) is None and v.to_pylist("ab") is None
    with pytest.raises(TypeError):
        L(5)


def _lists(v: Any, rng: random.Random) -> list:
    """Proper and improper lists of assorted lengths and elements."""
    out: list[Any] = [None, v.Cons(1, 2), 7, "s", v.Vec((1,))]
    for n in (1, 2, 3, 17, 200):
        items = [rng.choice([rng.randint(-5, 5), "x", v.intern("a"), None, [n], (n,)]) for _ in range(n)]
        out.append(v.from_list(items))
        out.append(v.from_list(items, "end"))
    return out


def test_walkers_agree_with_plain_python(v: Any) -> None:
    rng = random.Random(16)
    lists = _lists(v, rng)
    for x in lists:
        items = v.to_pylist(x)
        if items is None:  # not a proper list
            assert v.list_length(x) is None
            with pytest.raises(ValueError):
                v.list_reverse(x)
            with pytest.raises(ValueError) as e:
                v.list_append(v.from_list([1]), x, None)
            assert e.value.args[0] == 1
            continue
        assert v.list_length(x) == len(items)
        assert v.to_pylist(v.list_reverse(x)) == items[::-1]
        for i in (0, 1, len(items) - 1, len(items), len(items) + 5):
            if 0 <= i < len(items):
                assert v.list_nth(x, i) is items[i]
            else:
                with pytest.raises(IndexError):
                    v.list_nth(x, i)
        for y in rng.sample(lists, 4):
            joined = v.list_append(x, x, y)
            assert v.to_pylist(v.list_append(x, x, None)) == items * 2
            last = joined
            for _ in range(2 * len(items)):
                last = last.tail
            assert last is y  # the last argument is shared, not copied
    assert v.list_append() is None and v.list_append(5) == 5 and v.list_append(None, None) is None
    with pytest.raises(ValueError) as e:  # the rightmost list that is not proper is named
        v.list_append(7, v.from_list([1]), v.Cons(1, 2), None)
    assert e.value.args[0] == 2
    with pytest.raises(ValueError):
        v.list_nth(v.Cons(1, 2), 3)
    with pytest.raises(IndexError):
        v.list_nth(v.from_list([1]), -1)


@needs_c
def test_c_cells_are_read_only_and_not_subclassable() -> None:
    c = values.Cons(1, None)
    with pytest.raises(AttributeError):
        c.head = 2
    with pytest.raises(AttributeError):
        c.tail = 2
    with pytest.raises(TypeError):
        type("Sub", (values.Cons,), {})


@needs_c
def test_c_cells_untracked_only_when_no_cycle_can_pass_through_them() -> None:
    Cons, L, tracked = values.Cons, values.from_list, gc.is_tracked
    # atoms: non-GC values, symbols, booleans, pids and refs, untracked tuples and cells
    assert not tracked(L([1, 2.5, "s", None, values.intern("a"), values.TRUE, values.Pid(0, 1), values.Ref(0, 1)]))
    assert not tracked(Cons((1, "a"), None)) and not tracked(Cons(L([1, 2]), L([3])))
    assert not tracked(values.list_reverse(L(range(50)))) and not tracked(values.list_append(L([1]), L([2]), 3))
    # anything that may hold a reference back makes the cell tracked, and every cell before it
    for holder in ([], {}, values.Vec((1,)), values.Map(), (1, []), values.Box(1), lambda: 0):
        assert tracked(Cons(holder, None)) and tracked(Cons(1, holder))
        xs = L([1, 2, holder, 3, 4])
        assert [tracked(xs), tracked(xs.tail.tail), tracked(xs.tail.tail.tail)] == [True, True, False]
        assert tracked(values.list_reverse(L([holder, 1])))  # the head of the reversed list
        assert tracked(values.list_append(L([1]), L([holder])))
        assert tracked(L([1], holder)) and tracked(Cons(1, Cons(holder, None)))
    # a cycle through a cell (a dict holding the list that holds it) is still collected
    gc.collect()

    class Marker(dict):
        pass

    d = Marker()
    ref = weakref.ref(d)
    d["me"] = L([1, d])
    del d
    gc.collect()
    assert ref() is None
    # and one through an iterator over a cell (an object holding the iterator over its own list)
    d = Marker()
    ref = weakref.ref(d)
    d["it"] = iter(L([d, 1]))
    assert tracked(d["it"]) and d["it"] in gc.get_referrers(gc.get_referents(d["it"])[0])
    del d
    gc.collect()
    assert ref() is None


@needs_c
def test_c_cells_reused_from_the_free_stack_start_clean() -> None:
    """Freed cells are kept for the next ones (vm/_speedups.c, cons_alloc): a reused cell holds
    what it is given, is tracked exactly when a new one would be, and a cycle through one is
    collected; lists freed in a loop and by a collection give back their cells without harm."""
    Cons, L, tracked = values.Cons, values.from_list, gc.is_tracked

    class Marker(dict):
        pass

    for _ in range(3):
        held = L([[] for _ in range(20000)])  # tracked cells, freed at once: they fill the stack
        assert all(tracked(c) for c in _cells(held))
        del held
        xs = L(range(20000))  # taken from the stack: untracked, as new ones
        assert not any(tracked(c) for c in _cells(xs)) and values.to_pylist(xs) == list(range(20000))
        del xs
        ys = L([1, 2, 3], [])  # one that must be tracked
        assert all(tracked(c) for c in _cells(ys)) and ys.tail.tail.tail == []
        d = Marker()
        ref = weakref.ref(d)
        d["me"] = Cons(1, Cons(d, None))
        del d, ys
        gc.collect()  # frees the cycle's cells onto the stack
        assert ref() is None
        zs = [Cons(i, None) for i in range(100)]
        assert [z.head for z in zs] == list(range(100)) and all(z.tail is None for z in zs)


@needs_c
def test_c_long_and_deep_lists_free_and_pickle_without_recursion() -> None:
    n = 1_000_000
    xs = values.from_list(range(n))
    data = pickle.dumps(xs)
    ys = pickle.loads(data)
    assert values.list_length(ys) == n and ys == xs
    del xs, ys  # a million cells freed: the trashcan, not a million nested deallocations
    deep = None
    for _ in range(n):  # nested through the heads, with a mutable value at the bottom
        deep = values.Cons(deep, [])
    assert gc.is_tracked(deep)
    del deep


def _run(program: Path, env: dict[str, str], *flags: str) -> tuple[str, str, int]:
    exp = parse_expectations(program.read_text(encoding="utf-8"))
    return run_cli(["run", *flags, program.name, *exp.args], cwd=program.parent, timeout=120, env=env)


PURE_ENV = {"LISPVM_PURE": "1"}


def test_pure_mode_is_pure_in_a_fresh_process() -> None:
    code = "from lispvm.vm import values as v; print(v.SPEEDUPS, v.Cons is v.PyCons)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **PURE_ENV}).stdout
    assert out == "False True\n"


@pytest.mark.parametrize("name", ["lists", "native_lists", "maps_vectors", "printing", "strings", "prelude_errors"])
def test_programs_in_pure_mode(name: str) -> None:
    """tests/test_examples.py runs these with the extension; here the same expectations hold
    without it (on three schedulers: lists cross OS processes through the codec)."""
    program = PROGRAMS / f"{name}.lisp"
    exp = parse_expectations(program.read_text(encoding="utf-8"))
    out, err, status = _run(program, PURE_ENV, "--schedulers", "3")
    assert "Traceback" not in err, err
    assert out.splitlines() == exp.lines
    assert status == exp.status, err


def test_a_list_heavy_program_prints_the_same_both_ways(tmp_path: Path) -> None:
    src = tmp_path / "both.lisp"
    src.write_text(
        "(def merge (a b) (cond ((empty? a) b) ((empty? b) a)\n"
        "  ((< (head a) (head b)) (cons (head a) (merge (tail a) b))) (true (cons (head b) (merge a (tail b))))))\n"
        "(def split (xs a b) (if (empty? xs) (list a b) (split (tail xs) b (cons (head xs) a))))\n"
        "(def msort (xs) (if (or (empty? xs) (empty? (tail xs))) xs\n"
        "  (let ((p (split xs nil nil))) (merge (msort (head p)) (msort (nth p 1))))))\n"
        "(def xs (list/map (fn (i) (mod (* i 7919) 1009)) (list/range 2000)))\n"
        "(def s (msort xs))\n"
        "(print (== s (list/sort xs)) (length s) (nth s 1000) (reverse (list/range 5))\n"
        "  (length (append s nil s nil)) '(a . b))\n"
        "(def me (self))\n"
        "(send (spawn-on (mod 1 (sys/schedulers)) (fn () (receive (x (send me (reverse x)))))) (list 'a \"b\" 1.5 s))\n"
        "(receive (y (print (length y) (length (head y)) (== (tail (reverse y)) (list \"b\" 1.5 s)))))\n",
        encoding="utf-8")
    runs = [run_cli(["run", "--schedulers", "2", src.name], cwd=tmp_path, timeout=120, env=env)
            for env in ({}, PURE_ENV)]
    assert runs[0] == runs[1]
    out, err, status = runs[0]
    assert status == 0 and err == "", err
    assert re.fullmatch(r"true 2000 \d+ \(4 3 2 1 0\) 4000 \(a \. b\)\n4 2000 true\n", out), out


def test_join_strs_joins_or_leaves_it_to_the_general_path(v: Any) -> None:
    """str/join's one-pass path: the joined string, or None for anything str/join must convert,
    refuse or say more about (a non-string, an improper list, a result over the limit)."""
    L = v.from_list
    assert v.join_strs(",", L(["a", "bb", "c"]), 6) == "a,bb,c"
    assert v.join_strs(",", L(["a", "bb", "c"]), 5) is None  # one character over
    assert v.join_strs("", None, 0) == "" and v.join_strs("--", L(["x"]), 1) == "x"
    assert v.join_strs(",", L(["a", 1]), 100) is None and v.join_strs(",", L(["a", v.intern("b")]), 100) is None
    assert v.join_strs(",", v.Cons("a", "b"), 100) is None and v.join_strs(",", "ab", 100) is None
    assert v.join_strs("é", L(["ü", "\udc80"]), 3) == "üé\udc80"
    # every kind of text (ASCII, Latin-1, two and four bytes a character, a lone surrogate) as
    # parts and as separators: the text of Python's join, in its narrowest kind (a string of a
    # wider kind than it needs compares unequal to the same text in CPython)
    pool = ["", "a", "bc", "é", "ÿz", "ĀЖ", "\udc80", "€", "😀", "x😀é"]
    for sep in ["", ",", "é", "Ж", "😀", "\udc80"]:
        for k in range(4):
            for parts in itertools.product(pool, repeat=k) if k < 3 else [pool]:
                assert v.join_strs(sep, L(list(parts)), 1000) == sep.join(parts), (sep, parts)


def _outcome(fn: Any, args: tuple) -> tuple:
    """What calling `fn(*args)` gives: ("ok", the value's type, its printed form) or ("error",
    the exception's type, its Lisp value or text)."""
    try:
        r = fn(*args)
    except Exception as e:  # noqa: BLE001 - the kind and the message are what is compared
        return ("error", type(e).__name__, values.to_repr(e.value) if hasattr(e, "value") else str(e))
    return ("ok", type(r).__name__, values.to_repr(r))


def _builtin_cases() -> dict[str, list[tuple]]:
    """Arguments for each builtin the extension decides in C: the usual cases and what it must
    hand to the Python definition (other types, huge ints, NaN, over-long text, improper lists,
    wrong argument counts)."""
    from lispvm.vm.errors import INT_LIMIT, MAX_TEXT

    L, sym = values.from_list, values.intern
    big = "x" * MAX_TEXT
    numbers = [0, -1, 7, 2**63 - 1, -(2**63), 2**63, 2**64 - 1, 2**64, -(2**64) + 1, -(2**64), INT_LIMIT,
               -INT_LIMIT, 1.5, -0.0, float("inf"), float("nan"), 1e300, 0.1]
    atoms = [None, values.TRUE, values.FALSE, sym("a"), "", "é\udc80", L([1, "a"]), values.Cons(1, 2),
             values.Vec((1, 2)), {}.get, True]
    str_cases = [(x,) for x in numbers + atoms] + [
        (), ("[", "p", "]"), ("a", 1, 2.5, sym("s"), None), (big,), (big, ""), (big, "x"), (big[:-1], 7),
        ("x" * (MAX_TEXT - 3), 12), ("x" * (MAX_TEXT - 2), 123), tuple(range(16)), tuple(range(17)),
        tuple("ab" * 20), ("a", L([big])), (big + "y",)]
    lists = [None, L([1]), L([1, "b", None]), L(list(range(50))), values.Cons(1, 2), L([1, 2], 3), 5, "abc",
             values.Vec((1, 2, 3)), sym("x"), values.TRUE]
    return {
        "str": str_cases,
        "reverse": [(x,) for x in lists] + [(), (None, None)],
        "length": [(x,) for x in lists] + [(), (None, None)],
        "append": [(), (None,), (5,), (L([1]), 5), (L([1]), L([2]), L([3])), (5, L([1])), (L([1]), 5, L([2])),
                   (values.Cons(1, 2), None), (None, values.Cons(1, 2)), (L([1]), "ab", None, L([2]))],
        "nth": [(xs, i) for xs in lists for i in (0, 1, 2, 49, 50, -1, 2**63, 2**64, INT_LIMIT + 1, 1.0, True,
                                                  values.TRUE, None)] + [(L([1]),), (L([1]), 0, 0)],
        "str/split": [(a, sep) for a in ("", "a,b,,c,", ",", "é\udc80,x", "abc", "a--b--", "x" * 300 + ",")
                      for sep in (",", "--", "", "é", "\udc80", "abc", 5, None, sym("x"))]
                     + [(5, ","), (None, ""), (L(["a"]), ","), ("a",), ("a", ",", ","), ()],
    }


@needs_c
def test_c_builtins_answer_as_their_python_definitions() -> None:
    """str, reverse, append, nth and length run in C with the extension; for every argument
    list, usual or not, they give what the pure definitions in vm/builtins.py give: the same
    value or the same error (kind and message), a wrong number of arguments included."""
    from lispvm.vm import _speedups
    from lispvm.vm import builtins as b

    pure = {"str": b.b_str, "reverse": b.b_reverse, "append": b.b_append, "nth": b.b_nth, "length": b.b_length,
            "str/split": b.b_str_split}
    c = {"str": _speedups.str, "reverse": _speedups.b_reverse, "append": _speedups.b_append,
         "nth": _speedups.b_nth, "length": _speedups.b_length, "str/split": _speedups.b_str_split}
    for name, cases in _builtin_cases().items():
        assert b.BUILTINS[name].fn is c[name] and b.BUILTINS[name].fast is c[name]
        assert pure[name] is not c[name]
        for args in cases:
            assert _outcome(c[name], args) == _outcome(pure[name], args), (name, args)
    # the arity a badarity message is made from is read from the C function's signature
    from lispvm.vm.checks import python_arity
    for name in c:
        assert python_arity(c[name]) == python_arity(pure[name]), name


@needs_c
def test_c_str_writes_the_digits_of_repr() -> None:
    """str of a machine-size int writes its digits in C (not int's repr): the same text as repr
    for each number of digits and sign, both ends of the 64-bit range, and inside str of several
    arguments and list/map of str."""
    import random

    from lispvm.vm import _speedups
    from lispvm.vm import builtins as b

    edges = [0, 2**63 - 1, -(2**63), -(2**63) + 1, 2**63 - 10, -(2**63) + 9]
    for k in range(19):
        edges += [10**k - 1, 10**k, 10**k + 1, -(10**k) + 1, -(10**k), -(10**k) - 1]
    rng = random.Random(16)
    edges += [rng.randint(-(2**63), 2**63 - 1) for _ in range(2000)]
    for x in edges:
        assert _speedups.str(x) == repr(x) == b.b_str(x), x
        assert _speedups.str("<", x, ">") == f"<{x!r}>", x
    assert _speedups.map_str(values.from_list(edges)) == values.from_list([repr(x) for x in edges])
    # parts of every kind of text, numbers among them: the text of Python's join, in its
    # narrowest kind (a wider one compares unequal in CPython)
    pool = ["", "a", "é", "ĀЖ", "\udc80", "😀", "x😀é", 7, -12, 2.5]
    for k in range(2, 5):
        for parts in itertools.product(pool, repeat=k) if k < 4 else [pool[:4], pool[4:8], pool[::-1][:4]]:
            assert _speedups.str(*parts) == "".join(map(b.b_str, parts)) == b.b_str(*parts), parts


@needs_c
def test_c_str_split_builds_untracked_cells_from_its_parts() -> None:
    """str/split in C: the parts of CPython's split as cells the collector never sees, a
    string split into many parts included; an empty separator (chars) by the Python side."""
    from lispvm.vm import _speedups

    s = ",".join(map(str, range(5000)))
    out = _speedups.b_str_split(s, ",")
    assert values.to_pylist(out) == s.split(",")
    assert all(not gc.is_tracked(c) for c in _cells(out))
    assert values.to_pylist(_speedups.b_str_split("ab", "")) == ["a", "b"]
    assert values.to_pylist(_speedups.b_str_split("é\udc80", "\udc80")) == ["é", ""]


@needs_c
def test_c_builtins_keep_reference_counts() -> None:
    """Neither the values decided in C nor those handed to Python (errors included) gain or
    lose a reference over many calls."""
    from lispvm.vm import _speedups

    fns = {"str": _speedups.str, "reverse": _speedups.b_reverse, "append": _speedups.b_append,
           "nth": _speedups.b_nth, "length": _speedups.b_length, "str/split": _speedups.b_str_split}
    cases = _builtin_cases()
    probes = [values.intern("a"), values.TRUE, 2**64, 1.5, "é\udc80", None]
    heads = [values.from_list(["s", 10**30, probes[0], 2.5]), values.Cons("t", 3)]
    texts = values.from_list([probes[4], "ab", probes[4]])

    def calls() -> None:
        for _ in range(20):
            for name, fn in fns.items():
                for args in cases[name]:
                    _outcome(fn, args)
            for xs in heads:
                _outcome(_speedups.map_str, (xs,))
            _outcome(_speedups.join_strs, ("😀", texts, 100))  # written into a wider kind
            _outcome(_speedups.str, (probes[4], "a", texts))

    calls()  # (first calls may cache: interned text, a signature)
    before = [sys.getrefcount(x) for x in probes + heads + [texts]]
    calls()
    assert [sys.getrefcount(x) for x in probes + heads + [texts]] == before


@needs_c
def test_c_map_str_maps_as_the_python_loop() -> None:
    """list/map of str over a list: one C loop, the registered Python str for the elements it
    does not decide; the same list (or error) as the Python comprehension, None for an
    improper list (list/map's own check then raises), and cells the collector never sees."""
    from lispvm.vm import _speedups
    from lispvm.vm import builtins as b
    from lispvm.vm.errors import MAX_TEXT

    L = values.from_list
    items = [1, -5, 2**63, 2**64, 1.25, float("nan"), "s", values.intern("q"), None, L([1, 2]), values.TRUE, ""]
    out = _speedups.map_str(L(items))
    assert out == L([b.b_str(x) for x in items])
    assert all(not gc.is_tracked(c) for c in _cells(out))
    assert _speedups.map_str(None) is None and _speedups.map_str(values.Cons(1, 2)) is None
    assert _speedups.map_str(5) is None
    too_long = L(["a", "x" * (MAX_TEXT + 1)])
    assert _outcome(_speedups.map_str, (too_long,)) == _outcome(lambda xs: [b.b_str(x) for x in xs], (too_long,))
    native = b.BUILTINS["sys/map-native"].fn
    assert _outcome(native, (b.BUILTINS["str"], values.Cons(1, 2)))[2] == \
        '(error badarg "list/map: expected a list, got list (1 . 2)")'


def _cells(xs: Any) -> list:
    out = []
    while xs.__class__ is values.Cons:
        out.append(xs)
        xs = xs.tail
    return out


@needs_c
def test_c_native_order_as_the_python_test() -> None:
    """list/sort's test for sorting without a key, in C: the same answers as its Python
    definition (exact types only, NaN refused)."""
    from lispvm.vm import _speedups
    from lispvm.vm.builtins import _py_native_order as py

    nan = float("nan")
    for items in ([], [1], ["a", "b"], ["a", 1], [1, "a"], [1, 2.5, -3], [1.5, 2], [1, nan], [nan], [True, 1],
                  [1, True], [values.intern("a")], [2**100, -2.5], [None], [1, None], ["a", values.intern("b")]):
        assert _speedups.native_order(items) is py(items), items
    with pytest.raises(TypeError):
        _speedups.native_order((1, 2))


def test_list_builtins_errors_in_a_program_both_ways(tmp_path: Path) -> None:
    """The builtins decided in C report, from a Lisp program, the errors the pure path reports."""
    src = tmp_path / "errs.lisp"
    src.write_text(
        "(def err (thunk) (try (thunk) (catch e e)))\n"
        "(print (err (fn () (nth (list 1 2) 5))) (err (fn () (nth (list 1 2) -1))) (err (fn () (nth 5 0))))\n"
        "(print (err (fn () (nth (cons 1 2) 1))) (err (fn () (nth (list 1) 1.0))) (nth (list 1 2 3) 2))\n"
        "(print (err (fn () (reverse (cons 1 2)))) (err (fn () (append (list 1) 2 nil))) (append (list 1) 2))\n"
        "(print (err (fn () (length 5))) (length \"abc\") (length (list 1 2)) (err (fn () (reverse))))\n"
        "(print (str 1 \"a\" 2.5 'b nil (list 1)) (str 18446744073709551615 -9223372036854775809) (str))\n"
        "(print (list/map str (list 1 \"a\" 'b 2.5)) (err (fn () (list/map str (cons 1 2)))))\n"
        "(def a (str/join \"\" (list/map (fn (i) \"xx\") (list/range 2048))))\n"
        "(def big (str/join \"\" (list/map (fn (i) a) (list/range 1024))))\n"
        "(print (str/length (str big)) (err (fn () (str big \"c\")))\n"
        "  (err (fn () (list/map str (list 1 (str big 1))))))\n"
        "(print (list/sort (list 3 1.5 2)) (list/sort (list \"b\" \"a\")) (list/sort (list 2 'a 1)))\n"
        "(print (list/reduce + 0.5 (list 1 2)) (err (fn () (list/reduce + 0 (list 1 \"a\" 2))))\n"
        "  (err (fn () (list/reduce + 0 (list 1 true)))) (list/reduce + 0 (list 1 9223372036854775807 1)))\n"
        "(print (str/split \"a,,b,\" \",\") (str/split \"ab\" \"\") (err (fn () (str/split 5 \",\")))\n"
        "  (err (fn () (str/split \"a\" nil))) (err (fn () (str/split \"a\"))) (str/split \"\" \",\"))\n",
        encoding="utf-8")
    runs = [run_cli(["run", src.name], cwd=tmp_path, timeout=120, env=env) for env in ({}, PURE_ENV)]
    assert runs[0] == runs[1]
    out, err, status = runs[0]
    assert status == 0 and err == "", err
    assert 'nth: index 5 out of range for a list of 2' in out and "(1 . 2)" in out
    assert "\n1a2.5bnil(1) 18446744073709551615-9223372036854775809 \n" in out
    assert "would be longer than" in out
    assert '("a" "" "b" "") ("a" "b")' in out and "str/split: expected a string, got integer 5" in out


class _Proto:
    """A stand-in prototype: what a closure reads of one (its name, its compiled function)."""

    def __init__(self, name: Any, fast: Any = None) -> None:
        self.name = name
        self.fast = fast

    def __reduce__(self) -> tuple:
        return (_Proto, (self.name,))


@pytest.mark.parametrize("impl", ["c", "pure"])
def test_closures_made_read_written_printed_and_pickled(impl: str) -> None:
    """The C closure (values.Closure with the extension) and the pure class behave alike:
    attributes, the default name, repr, identity equality, pickling without `fast`, an empty
    one from __new__ (vm/codec.py fills it), a wrong argument count refused."""
    if impl == "c" and not HAVE_C:
        pytest.skip("lispvm.vm._speedups not built or LISPVM_PURE set")
    mod = values if impl == "c" else PURE
    Closure = mod.Closure
    assert (Closure is mod.PyClosure) == (impl == "pure")
    p = _Proto("f")
    c = Closure(p, (1, "a"))
    assert (c.proto, c.upvals, c.fast, c.name, repr(c)) == (p, (1, "a"), None, "f", "#<fn f>")
    assert Closure(p, (), "g").name == "g" and Closure(p, (), "").name == "f" and Closure(p, (), None).name == "f"
    assert Closure(proto=p, upvals=(), name="k").name == "k" and repr(Closure(_Proto(None), ())) == "#<fn None>"
    c.fast = len
    c.name = "h"
    assert (c.fast, repr(c)) == (len, "#<fn h>")
    d = Closure(p, (1, "a"))
    assert c == c and c != d and hash(c) != hash(d) and len({c, d, c}) == 2
    back = pickle.loads(pickle.dumps(c))
    assert back.__class__ is Closure
    assert (back.upvals, back.name, back.fast, back.proto.name) == ((1, "a"), "h", None, "f")
    e = Closure.__new__(Closure)
    e.proto, e.upvals, e.name, e.fast = p, (), "x", None
    assert repr(e) == "#<fn x>"
    for bad in ((), (p,), (p, (), "n", 4)):
        with pytest.raises(TypeError):
            Closure(*bad)
    with pytest.raises(AttributeError):
        Closure(object(), ())  # no name to take
    with pytest.raises(AttributeError):
        c.other = 1  # noqa: B018 - slots only


@needs_c
def test_c_closures_collected_freed_deep_and_made_by_closure0() -> None:
    """A C closure is tracked by the collector (a cycle through its upvalues or its fast
    function is freed), a chain of 200,000 closures each holding the next is freed without
    recursion, closure0 gives the fast tier's upvalue-free closure, and no reference leaks."""
    from lispvm.vm import _speedups

    Closure = values.Closure
    gc.collect()

    class Marker(dict):
        pass

    m = Marker()
    ref = weakref.ref(m)
    c = Closure(_Proto("f"), (m,))
    m["c"] = c
    assert gc.is_tracked(c)
    del m, c
    gc.collect()
    assert ref() is None
    m = Marker()
    ref = weakref.ref(m)
    c = Closure(_Proto("f"), ())
    c.fast = [c, m]  # a cycle through its fast function's place
    del m, c
    gc.collect()
    assert ref() is None
    chain = None
    for _ in range(200_000):
        chain = Closure(_Proto("n"), (chain,))
    del chain
    p = _Proto("z", fast=len)
    z = _speedups.closure0(p)
    assert (z.__class__, z.proto, z.upvals, z.fast, z.name) == (Closure, p, (), len, "z")
    with pytest.raises(AttributeError):
        _speedups.closure0(object())
    name, fast = "w", abs
    q = _Proto(name, fast)
    before = [sys.getrefcount(x) for x in (name, fast, q)]
    for _ in range(1000):
        _speedups.closure0(q)
        Closure(q, (name,), name)
        Closure(q, ())
        pickle.loads(pickle.dumps(Closure(q, (fast,))))
    assert [sys.getrefcount(x) for x in (name, fast, q)] == before


class _SlotProto:
    """A stand-in prototype with __slots__, as vm/lbc.py's Proto: what the C closure reads of
    it (name, fast) it reads from the slots directly, as long as the class stays as it is."""

    __slots__ = ("name", "fast")

    def __init__(self, name: Any, fast: Any = None) -> None:
        self.name = name
        self.fast = fast


@needs_c
def test_c_closure_reads_a_slotted_prototype_as_getattr_does() -> None:
    """closure0 and Closure(p, upvals) take a prototype's name and fast function from its slots
    without the generic lookup (vm/_speedups.c slot_get): the same values as getattr, whatever
    the prototype, and the same error for an empty slot; a class changed afterwards (a property
    put over the slot) or another class of prototype is read as getattr reads it."""
    from lispvm.vm import _speedups
    from lispvm.vm.lbc import Proto

    Closure = values.Closure
    p = Proto("real", 1, False, 2)
    p.fast = len
    for _ in range(3):  # the first read fills the cache, the next ones use it
        z = _speedups.closure0(p)
        assert (z.name, z.fast, Closure(p, (1,)).name) == ("real", len, "real")
    p.fast = None
    assert _speedups.closure0(p).fast is None

    class Sub(_SlotProto):
        __slots__ = ()

    a, b = _SlotProto("a", abs), Sub("b", min)
    for q, name, fast in ((a, "a", abs), (b, "b", min), (a, "a", abs), (_Proto("d", max), "d", max)):
        z = _speedups.closure0(q)
        assert (z.name, z.fast, Closure(q, ()).name) == (name, fast, name)
    empty = _SlotProto.__new__(_SlotProto)
    for make in (_speedups.closure0, lambda q: Closure(q, ())):
        with pytest.raises(AttributeError) as got:
            make(empty)
        with pytest.raises(AttributeError) as want:
            getattr(empty, "fast" if make is _speedups.closure0 else "name")
        assert str(got.value) == str(want.value)

    class Changing:
        __slots__ = ("name", "fast")

    c = Changing()
    c.name, c.fast = "slot", len
    assert (_speedups.closure0(c).name, _speedups.closure0(c).fast) == ("slot", len)
    Changing.name = property(lambda self: "property")  # the class changed: its version tag too
    Changing.fast = property(lambda self: abs)
    z = _speedups.closure0(c)
    assert (z.name, z.fast, Closure(c, ()).name) == ("property", abs, "property")
    name, fast = "w", abs
    q = _SlotProto(name, fast)
    before = [sys.getrefcount(x) for x in (name, fast, q)]
    for _ in range(1000):
        _speedups.closure0(q)
        Closure(q, ())
    assert [sys.getrefcount(x) for x in (name, fast, q)] == before


@needs_c
def test_c_closure_slot_read_checks_the_descriptor_applies_and_getattribute() -> None:
    """slot_get takes a slot's offset only when the generic lookup would use it: a Proto member
    descriptor set on an unrelated class (whose instances lack that slot; the read went past the
    object and crashed) raises the descriptor's TypeError, and a subclass's __getattribute__ is
    honoured, as getattr does."""
    from lispvm.vm import _speedups
    from lispvm.vm.lbc import Proto

    class Unrelated:
        __slots__ = ()

    Unrelated.name = Proto.__dict__["name"]
    Unrelated.fast = Proto.__dict__["fast"]
    u = Unrelated()
    for make, attr in ((_speedups.closure0, "fast"), (lambda q: values.Closure(q, ()), "name")):
        for _ in range(2):
            with pytest.raises(TypeError) as got:
                make(u)
            with pytest.raises(TypeError) as want:
                getattr(u, attr)
            assert str(got.value) == str(want.value)

    class Hooked(Proto):
        __slots__ = ()

        def __getattribute__(self, attr: str) -> Any:
            return {"name": "hooked", "fast": abs}.get(attr) or object.__getattribute__(self, attr)

    h = Hooked("real", 0, False, 1)
    for _ in range(2):
        z = _speedups.closure0(h)
        assert (z.name, z.fast, values.Closure(h, ()).name) == ("hooked", abs, "hooked")


@needs_c
def test_c_str_split_survives_a_finalizer_that_changes_its_list() -> None:
    """str/split in C builds its cells from the list CPython's split made: a finalizer run by a
    cell's allocation (a collection) that finds that list with gc.get_objects and grows or
    clears it must not leave the walk reading a freed array (it crashed: the list is now hidden
    from the collector)."""
    script = (
        "import gc\n"
        "from lispvm.vm import values as v, _speedups as S\n"
        "MARK = 'zq-marker-zq'\n"
        "class Bomb:\n"
        "    def __del__(self):\n"
        "        for o in gc.get_objects():\n"
        "            if type(o) is list and o and o[0] == MARK:\n"
        "                o.extend(['junk%d' % i for i in range(5000)])\n"
        "                o.clear()\n"
        "def arm():\n"
        "    a = Bomb(); a.self = a\n"
        "keep = v.from_list(range(40000))  # the free stack drained: new cells are allocations\n"
        "s = ','.join([MARK] + ['p%d' % i for i in range(3000)])\n"
        "gc.set_threshold(1, 1, 1)\n"
        "for i in range(20):\n"
        "    arm()\n"
        "    r = S.b_str_split(s, ',')\n"
        "    assert S.b_length(r) == 3001 and r.head == MARK and r.tail.head == 'p0'\n"
        "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr[-2000:]
