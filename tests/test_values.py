"""Maps, persistent vectors, structural hashing and the term order (LANGUAGE.md section 9), at
the level of vm/values.py, the reader and the .lbc constants. The Lisp-level behaviour is in
tests/programs/maps_vectors.lisp (run on 1 and 3 schedulers and in every tier)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lispvm.assembler.lasm import const_text, parse_const
from lispvm.assembler.reader import MapForm, datum, read
from lispvm.vm import lbc
from lispvm.vm.errors import CompileError
from lispvm.vm.values import (
    FALSE,
    TRUE,
    Cons,
    F32Array,
    Map,
    PVector,
    Vec,
    compare,
    from_list,
    intern,
    lisp_eq,
    lisp_hash,
    map_of,
    persistent,
    sort_key,
    to_repr,
)

# --- generated Lisp values -----------------------------------------------------------------------

atoms = st.one_of(
    st.none(), st.sampled_from([TRUE, FALSE]), st.integers(-5, 5), st.integers(),
    st.sampled_from([0.0, -0.0, 1.0, 2.0, -1.0, 0.5, 1e300, math.inf]), st.floats(allow_nan=False),
    st.text(max_size=3), st.sampled_from("abc").map(intern),
)
values = st.recursive(
    atoms,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4).map(from_list),
        st.builds(lambda xs, t: from_list(xs, t), st.lists(kids, min_size=1, max_size=3), kids),
        st.lists(kids, max_size=4).map(Vec),
        st.lists(st.tuples(kids, kids), max_size=3).map(lambda kvs: map_of(*[e for kv in kvs for e in kv])),
    ),
    max_leaves=12,
)


def _twin(x: Any) -> Any:
    """An equal (==) value built separately: ints as floats where exact, containers rebuilt,
    maps with their entries inserted in the reverse order."""
    c = x.__class__
    if c is int and abs(x) < 2**53:
        return float(x)
    if c is Cons:
        items, t = [], x
        while t.__class__ is Cons:
            items.append(_twin(t.head))
            t = t.tail
        return from_list(items, _twin(t))
    if c is Vec:
        return Vec([_twin(e) for e in x.items])
    if c is Map:
        return map_of(*[e for k, v in reversed(list(x.m.items())) for e in (_twin(k), _twin(v))])
    return x


@settings(max_examples=300, deadline=None)
@given(values)
def test_equal_values_hash_alike_and_find_each_other_as_keys(x: Any) -> None:
    y = _twin(x)
    assert lisp_eq(x, y) and lisp_eq(y, x)
    assert lisp_hash(x) == lisp_hash(y)
    m = map_of(x, "found")
    assert m.m.get(y) == "found"
    assert compare(x, y) == 0


@settings(max_examples=300, deadline=None)
@given(values, values, values)
def test_compare_is_a_total_order_agreeing_with_equality(a: Any, b: Any, c: Any) -> None:
    ab, ba = compare(a, b), compare(b, a)
    assert ab in (-1, 0, 1) and ab == -ba
    assert (ab == 0) == lisp_eq(a, b)  # (no NaN and no functions among the generated values)
    xs = sorted([a, b, c], key=sort_key)
    assert compare(xs[0], xs[1]) <= 0 and compare(xs[1], xs[2]) <= 0 and compare(xs[0], xs[2]) <= 0
    if lisp_eq(a, b):
        assert lisp_hash(a) == lisp_hash(b)


def test_the_order_of_kinds_and_within_kinds() -> None:
    order = [-1, 1, 1.5, math.inf, float("nan"), None, FALSE, TRUE, intern("a"), intern("b"), "a", "b",
             Vec(()), Vec((9,)), Vec((1, 1)), from_list([1]), from_list([1, 2]), from_list([2]),
             map_of(), map_of(1, 2), map_of(1, 3), map_of(2, 0), map_of(1, 1, 2, 2)]
    for i, a in enumerate(order):
        for j, b in enumerate(order):
            assert compare(a, b) == (i > j) - (i < j), (a, b)
    assert compare(1, 1.0) == 0 and compare(float("nan"), float("nan")) == 0
    assert compare(from_list([1], 2), from_list([1, 2])) == -1  # an improper tail: a number < a list


def test_hash_examples() -> None:
    assert hash(from_list([1, 2])) == hash(from_list([1.0, 2.0]))
    assert hash(from_list([1, 2])) != hash(Vec((1, 2)))  # equal neither by == nor by hash
    assert hash(map_of(1, "a", 2, "b")) == hash(map_of(2.0, "b", 1.0, "a"))
    np = pytest.importorskip("numpy")
    a = F32Array(np.array([0.0, 1.0], dtype=np.float32))
    b = F32Array(np.array([-0.0, 1.0], dtype=np.float32))
    assert a == b and hash(a) == hash(b) and map_of(a, 1).m.get(b) == 1


def test_a_million_long_list_and_a_deep_nesting_are_keys() -> None:
    """Hashing, equality and compare are iterative: no RecursionError along a spine or a nesting."""
    long = from_list(list(range(1_000_000)))
    m = map_of(long, "long")
    assert m.m.get(from_list(list(range(1_000_000)))) == "long"
    deep: Any = None
    deep2: Any = None
    for i in range(100_000):
        deep = Cons(deep, Cons(i, None))
        deep2 = Cons(deep2, Cons(i, None))
    assert hash(deep) == hash(deep2) and lisp_eq(deep, deep2) and compare(deep, deep2) == 0
    nested_vec: Any = Vec(())
    for _ in range(50_000):
        nested_vec = Vec((nested_vec,))
    assert isinstance(hash(nested_vec), int)


def test_maps_print_in_key_order_whatever_the_insertion_order() -> None:
    a = map_of(intern("b"), 2, "a", 1, 3, None, from_list([1]), Vec(()))
    b = map_of(from_list([1]), Vec(()), 3, None, "a", 1, intern("b"), 2)
    assert to_repr(a) == to_repr(b) == '{3 nil b 2 "a" 1 (1) []}'
    assert to_repr(map_of(map_of(1, 2), "s")) == '{{1 2} "s"}'
    with pytest.raises(ValueError):
        map_of(1)


def test_a_vec_holds_a_tuple_until_updated_then_a_pvector() -> None:
    for items in ((1, 2), [1, 2], range(1, 3), iter([1, 2])):
        v = Vec(items)
        assert v.items.__class__ is tuple and list(v.items) == [1, 2]
    v = Vec((1, 2, 3))
    p = persistent(v)
    assert p.__class__ is PVector and v.items is p and persistent(v) is p  # converted once, kept
    w = Vec(p.set(0, "x"))
    assert w.items.__class__ is PVector and Vec(w.items).items is w.items  # no copy of one
    assert lisp_eq(v, Vec((1, 2, 3))) and lisp_eq(w, Vec(("x", 2, 3))) and hash(v) == hash(Vec((1, 2, 3)))
    assert to_repr(w) == '["x" 2 3]' and compare(w, Vec(("x", 2, 3))) == 0


def test_the_reader_reads_map_literals() -> None:
    forms, smap = read("{a 1\n 'b [2 3]}\n{}", "m.lisp")
    mf = forms[0]
    assert mf.__class__ is MapForm and len(mf.items) == 4 and smap.get(mf) == (1, 1)
    assert smap.get_item(mf, 2) == (2, 2) and mf.pairs()[0] == (intern("a"), 1)
    assert forms[1].__class__ is MapForm and forms[1].items == ()
    assert to_repr(datum(forms[0])) == "{a 1 (quote b) [2 3]}"
    for text, where in (("{a}", "1:2"), ("{a 1 b}", "1:6"), ("(a}", "1:3"), ("{a 1", "1:1"), ("x}", "1:2")):
        with pytest.raises(CompileError) as e:
            read(text, "m.lisp")
        assert f"m.lisp:{where}:" in str(e.value), (text, str(e.value))


def test_datum_converts_map_forms_at_any_depth_and_keeps_the_rest() -> None:
    forms, _ = read("(a {1 {2 [3 {}]}} . {x (y {z 1})}) (plain [1 (2)])")
    d = datum(forms[0])
    assert to_repr(d) == "(a {1 {2 [3 {}]}} . {x (y {z 1})})"
    assert d.tail.head.__class__ is Map
    assert datum(forms[1]) is forms[1]


def test_map_constants_in_lbc_and_lasm_are_the_same_bytes_every_time() -> None:
    k = map_of(intern("b"), from_list([1, map_of(2, 3)]), "a", Vec((1,)), 1, None)
    out = bytearray()
    lbc._const(out, k)
    r = lbc._Reader(bytes(out), 0)
    back = r.const()
    assert back.__class__ is Map and lisp_eq(back, k)
    out2 = bytearray()
    lbc._const(out2, map_of(1, None, "a", Vec((1,)), intern("b"), from_list([1, map_of(2, 3)])))
    assert out2 == out  # entries in key order, whatever the insertion order
    text = const_text(k)
    assert text == '{1 nil s"b" (1 {2 3}) "a" [1]}'
    assert lisp_eq(parse_const(text), k)
    for bad in ("{1}", "{1 2", "{1 . 2}"):
        with pytest.raises(ValueError):
            parse_const(bad)
