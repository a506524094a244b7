"""The term codec (vm/codec.py, issue 12 items 3, 4, 15, "What to build" A): round trips of every
type that crosses an OS process, identity of shared boxes, any depth, hostile input refused with
CodecError only, the size limit; and, through `lispvm run --schedulers 2`, deep and over-large
messages between schedulers."""

from __future__ import annotations

import math
import struct
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lispvm.vm import codec, interp, lbc
from lispvm.vm import process as vmprocess
from lispvm.vm.codec import CodecError, EncodeError, FrameReader, TooLarge, decode, encode, frame
from lispvm.vm.process import GlobalCell, Globals, Process
from lispvm.vm.values import (
    FALSE,
    TRUE,
    UNDEF,
    Box,
    Builtin,
    Closure,
    Cons,
    F32Array,
    Map,
    Pid,
    Ref,
    Sym,
    Vec,
    from_list,
    intern,
    lisp_eq,
    map_of,
)
from support import compile_text

# --- a structural comparison that also looks inside closures, boxes and processes ---------------


def canon(x: Any, depth: int = 0) -> Any:
    """A comparable form of a (small) value: its type with its contents."""
    assert depth < 200, "canon is for small values"
    c = x.__class__
    d = depth + 1
    if c is float:
        return ("float", "nan" if math.isnan(x) else struct.pack("<d", x))
    if c in (int, str, bytes, bool) or x is None or c in (Sym,):
        return (c.__name__, x)
    if x is TRUE or x is FALSE or x is UNDEF:
        return ("const", id(x))
    if c is Cons:
        items = []
        while x.__class__ is Cons:
            items.append(canon(x.head, d))
            x = x.tail
        return ("cons", tuple(items), canon(x, d))
    if c in (tuple, list):
        return (c.__name__, tuple(canon(e, d) for e in x))
    if c is Vec:
        return ("vec", tuple(canon(e, d) for e in x.items))
    if c is Map:
        return ("map", tuple(sorted((repr(canon(k, d)), canon(v, d)) for k, v in x.m.items())))
    if c is dict:
        return ("dict", tuple(sorted((repr(canon(k, d)), canon(v, d)) for k, v in x.items())))
    if c in (set, frozenset):
        return (c.__name__, tuple(sorted(repr(canon(e, d)) for e in x)))
    if c is Pid or c is Ref:
        return (c.__name__, x.node, x.num)
    if c is Box:
        return ("box", canon(x.v, d), getattr(x, "owner", None))
    if c is Closure:
        return ("closure", id(x.proto), x.name, canon(x.upvals, d))
    if c is Builtin:
        return ("builtin", x.name)
    if c is F32Array:
        return ("f32", x.data.tobytes())
    raise AssertionError(f"canon: {c}")


def roundtrip(x: Any, **kw: Any) -> Any:
    return decode(encode(x, **kw), **{k: v for k, v in kw.items() if k == "buffers"})


# --- a module whose closures can travel ---------------------------------------------------------

SRC = """
(def adder (x) (fn (y) (+ x y)))
(def counter () (let ((n 0)) (list (fn () (set n (+ n 1)) n) (fn () n))))
(def spin (n) (if (== n 0) 'done (spin (- n 1))))
"""


@pytest.fixture(scope="module")
def module() -> lbc.Module:
    m = lbc.load(compile_text(SRC, "codec_test.lisp"))
    lbc.register(m)
    return m


def _proto(module: lbc.Module, name: str) -> Any:
    return next(p for p in module.protos if p.name == name)


# --- round trips ----------------------------------------------------------------------------------

SIMPLE = [
    None, True, False, 0, 1, -1, -32, 95, 96, -33, 127, 128, 255, -129, 2**31 - 1, -2**31, 2**31, -2**31 - 1,
    2**63 - 1, -2**63, 2**63, -2**63 - 1, 10**400, -(10**400), 0.0, -0.0, 1.5, float("inf"), float("-inf"),
    float("nan"), 1e-310, "", "a", "é", "ünïcödé ✓ 😀", "\x00", "\ud800 lone surrogate", "x" * 127, "x" * 128,
    "y" * 100_000, b"", b"\x00\xff" * 300, (), (1,), [], [1, "a", None], {}, {"a": 1, 2: (3, 4)},
    set(), {1, 2, "x"}, frozenset(), frozenset({(1, 2)}), TRUE, FALSE, UNDEF, intern("a"), intern("math/sin"),
    intern(""), intern("ü"), Pid(0, 1), Pid(3, 2**32 - 1), Pid(70000, 2**40), Ref(0, 5), Ref(9, 2**50),
    Vec(()), Vec((1, "a", Vec((2,)))), from_list([1, 2, 3]), from_list([1], 2), from_list([1, 2], "tail"),
    from_list([from_list([1]), from_list([])]), list(range(100)), tuple(range(-5, 100)),
    [2**40, -2**40] * 10, [2**70] * 10, [True, False] * 10, [True] + [1] * 20, [1.5, -0.0, 1e300] * 5,
    ["a", "bé", "", "\ud800"] * 5, ("x",) * 20, from_list(list(range(50))), from_list(["s"] * 30),
    from_list([0.5] * 30), Vec(tuple(range(30))), Vec(("a",) * 30), [1, 2, 3, 4, 5, 6, 7, 8, "mixed"],
    ("m", Pid(0, 1), Pid(1, 2), 7, from_list([intern("b"), 42])),
    map_of(), map_of(1, "a", "b", 2.5), map_of(from_list([1, 2]), Vec((3,)), Vec(()), map_of(TRUE, None)),
    map_of(*range(200)), Vec(range(5000)), Vec([map_of(intern("k"), i) for i in range(20)]),
]


@pytest.mark.parametrize("x", SIMPLE, ids=lambda x: type(x).__name__)
def test_round_trip(x: Any) -> None:
    y = roundtrip(x)
    assert y.__class__ is x.__class__
    assert canon(y) == canon(x)


def test_symbols_are_interned_and_constants_kept() -> None:
    y = roundtrip([intern("abc"), TRUE, FALSE, UNDEF, True])
    assert y[0] is intern("abc") and y[1] is TRUE and y[2] is FALSE and y[3] is UNDEF and y[4] is True


def test_builtin_by_name() -> None:
    from lispvm.vm.builtins import BUILTINS

    b = BUILTINS["list/range"]
    assert roundtrip(b) is b


def test_unknown_builtin_refused() -> None:
    data = bytearray(encode(Builtin("list/range", None)))
    i = data.index(b"list/range")
    data[i:i + 10] = b"list/rangX"
    with pytest.raises(CodecError, match="builtin"):
        decode(bytes(data))


def test_closures_by_prototype(module: lbc.Module) -> None:
    cl = Closure(_proto(module, "adder"), (41, "x"), "adder")
    y = roundtrip(cl)
    assert y.proto is cl.proto and y.upvals == (41, "x") and y.name == "adder" and y.fast is None


def test_shared_boxes_stay_shared(module: lbc.Module) -> None:
    p = _proto(module, "counter")
    box = Box(10)
    a, b = Closure(p, (box,), "inc"), Closure(p, (box, box), "get")
    other = Box("other")
    ya, yb, yo = roundtrip((a, b, Closure(p, (other,), "x")))
    assert ya.upvals[0] is yb.upvals[0] is yb.upvals[1]
    assert ya.upvals[0] is not yo.upvals[0]
    assert ya.upvals[0].v == 10
    ya.upvals[0].v = 11
    assert yb.upvals[0].v == 11


def test_a_box_holding_its_own_closure(module: lbc.Module) -> None:
    """A local recursive function: its box holds the closure that captured the box."""
    box = Box(None)
    box.v = Closure(_proto(module, "spin"), (box,), "loop")
    y = roundtrip(box)
    assert y.v.upvals[0] is y


def test_closure_from_an_unknown_module_refused(module: lbc.Module) -> None:
    p = _proto(module, "adder")
    data = bytearray(encode(Closure(p, (), "a")))
    i = data.index(module.key)
    data[i] ^= 0xFF
    with pytest.raises(CodecError, match="not loaded"):
        decode(bytes(data))


def test_kernel() -> None:
    from lispvm.vm.gpu import Kernel

    k = Kernel("__kernel void f(__global float *a) {}", "f", ((True, "float"), (False, "int")), "abc")
    y = roundtrip(k)
    assert (y.source, y.name, y.params, y.key) == (k.source, k.name, k.params, k.key)


def test_global_cells_resolve_in_the_current_table() -> None:
    g1, g2 = Globals(), Globals()
    saved = vmprocess.use_globals(g1)
    try:
        data = encode(g1.cell("x"))
        vmprocess.use_globals(g2)
        y = decode(data)
        assert y.__class__ is GlobalCell and y is g2.cell("x")
        vmprocess.release_globals(g1)  # not the current table: nothing changes
        assert decode(data) is g2.cell("x")
        vmprocess.release_globals(g2)
        with pytest.raises(CodecError):
            decode(data)
    finally:
        vmprocess.use_globals(saved)


def test_f32_arrays_inline_and_out_of_band() -> None:
    np = pytest.importorskip("numpy")
    a = np.arange(10, dtype=np.float32)
    a.setflags(write=False)
    big = np.linspace(0, 1, 100_000, dtype=np.float32)
    value = (F32Array(a), F32Array(big), big[::2], a)  # the device process sends bare arrays too
    y = roundtrip(value)
    assert y[0].__class__ is F32Array and np.array_equal(y[0].data, a) and not y[0].data.flags.writeable
    assert np.array_equal(y[1].data, big) and np.array_equal(y[2], big[::2]) and np.array_equal(y[3], a)
    bufs: list = []
    data = encode(value, buffers=bufs, oob_min=1000)
    assert len(bufs) == 2 and len(data) < 200  # the big ones left the message
    y = decode(data, buffers=[bytes(b) for b in bufs])
    assert np.array_equal(y[1].data, big) and np.array_equal(y[2], big[::2]) and np.array_equal(y[0].data, a)
    with pytest.raises(CodecError, match="out-of-band"):
        decode(data)
    with pytest.raises(CodecError, match="out-of-band"):
        decode(data, buffers=[bytes(bufs[0]), b"1234"])
    with pytest.raises(EncodeError):
        encode(np.zeros(3, dtype=np.float64))


def test_process_state(module: lbc.Module) -> None:
    """A process in the middle of a call travels with its frames, mailbox and boxes."""
    saved = vmprocess.use_globals(Globals())
    try:
        p = _proto(module, "spin")
        box = Box(3)
        cl = Closure(p, (box,), "spin")
        proc = Process(Pid(1, 7), cl, [5, "r", from_list([1, 2])])
        proc.frames.append((Closure(_proto(module, "adder"), (box,), "a"), p.dcode, 3, [1, None], 0))
        proc.pc = 2
        proc.mailbox = ["old", from_list([intern("b"), 42]), ("t", 1)]
        proc.mbhead = 1
        proc.scan = 2
        proc.links = {Pid(0, 1)}
        proc.monitors = {Ref(0, 3): ("of", Pid(0, 2))}
        proc.seqs = {Pid(0, 1).key: 4}
        proc.name = intern("server")
        proc.deadline = vmprocess.TIMED_OUT  # a receive whose timeout passed: it times out there
        q = roundtrip(proc)
        assert q.__class__ is Process and q.pid == proc.pid and q.pc == 2 and q.regs == proc.regs
        assert q.frames[0] is interp.HALT_FRAME
        assert q.frames[1][0].proto is proc.frames[1][0].proto and q.frames[1][2:] == (3, [1, None], 0)
        assert q.pending() == proc.pending() and q.scan == 1 and q.mbhead == 0
        assert q.links == proc.links and q.monitors == proc.monitors and q.seqs == proc.seqs
        assert q.name is intern("server") and q.sched is None and q.deadline == vmprocess.TIMED_OUT
        assert q.cl.upvals[0] is q.frames[1][0].upvals[0]  # the box the two frames share
    finally:
        vmprocess.use_globals(saved)


def test_unknown_types_refused() -> None:
    for x in (object(), lambda: 1, 1j, bytearray(b"x"), [1, object()], Process, interp.HALT_FRAME[0].proto):
        with pytest.raises(EncodeError, match="cannot encode"):
            encode(x)


# --- any depth, any size ------------------------------------------------------------------------

DEEP = 1_000_000


def test_a_million_levels_of_lists() -> None:
    x: Any = None
    for _ in range(DEEP):
        x = Cons(x, None)
    y = decode(encode(x))
    n = 0
    while y is not None:
        assert y.tail is None
        y = y.head
        n += 1
    assert n == DEEP


def test_a_million_levels_of_python_containers() -> None:
    x: Any = "bottom"
    for i in range(DEEP):
        x = [x] if i % 3 else ((x,) if i % 3 == 1 else (1, x))
    y = decode(encode(x))
    n = 0
    while y.__class__ is not str:
        y = y[-1]
        n += 1
    assert y == "bottom" and n == DEEP


def test_a_long_list_and_a_long_improper_list() -> None:
    x = from_list(list(range(1_000_000)))
    y = roundtrip(x)
    n = 0
    while y is not None:
        assert y.head == n
        n += 1
        y = y.tail
    assert n == 1_000_000
    z = roundtrip(from_list([intern("a"), "b", 1.5] * 100_000, Vec((1,))))
    for _ in range(300_000):
        z = z.tail
    assert z.__class__ is Vec and list(z.items) == [1]


def test_large_values() -> None:
    s = "ab\u00e9" * 5_000_000
    assert roundtrip(s) == s
    n = 7 ** 200_000
    assert roundtrip(-n) == -n
    b = bytes(range(256)) * 40_000
    assert roundtrip(b) == b


# --- the size limit --------------------------------------------------------------------------------

def test_too_large_at_the_limit() -> None:
    x = ["x" * 1000] * 10
    n = len(encode(x))
    assert decode(encode(x, limit=n)) == x
    with pytest.raises(TooLarge):
        encode(x, limit=n - 1)
    with pytest.raises(CodecError):
        decode(encode(x), limit=n - 1)
    assert issubclass(TooLarge, CodecError) and TooLarge is not CodecError


def test_too_large_is_found_early() -> None:
    """A value whose encoding would be 2**40 bytes (shared structure) is refused once it passes
    the limit, without building the whole message: in memory of the order of the limit."""
    import tracemalloc

    x: Any = "x" * 1024
    for _ in range(30):
        x = from_list([x, x])
    with pytest.raises(TooLarge):
        encode(x)
    tracemalloc.start()
    try:
        with pytest.raises(TooLarge):
            encode(x, limit=1 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak} bytes allocated to refuse a message over 1 MiB"


def test_too_large_many_small_items() -> None:
    x = [1] * 100_000
    with pytest.raises(TooLarge):
        encode([x, [(i, "y") for i in range(10_000)]], limit=20_000)
    with pytest.raises(TooLarge):
        encode(from_list([from_list([i]) for i in range(100_000)]), limit=50_000)


# --- hostile input ---------------------------------------------------------------------------------

SAMPLES = [
    ("m", Pid(0, 1), Pid(1, 2), 7, from_list([intern("b"), 42])),
    map_of(1, "a", from_list([2]), Vec((3, 4))),
    [None, True, 2**70, -5, 1.5, "héllo", b"by", intern("s"), Ref(1, 2), Vec((1,)), {"k": frozenset({1})}],
    from_list(list(range(20)), 3),
    from_list(["s", "t"] * 10),
    [1.5] * 9,
    Pid(70000, 2**40),
]


@pytest.mark.parametrize("x", SAMPLES, ids=lambda x: type(x).__name__)
def test_every_truncation_refused(x: Any) -> None:
    data = encode(x)
    for i in range(len(data)):
        with pytest.raises(CodecError):
            decode(data[:i])
    with pytest.raises(CodecError, match="after the end"):
        decode(data + b"\x00")


def test_truncated_boxes_and_closures(module: lbc.Module) -> None:
    b = Box(1)
    data = encode((Closure(_proto(module, "adder"), (b, b), "a"), b))
    for i in range(len(data)):
        with pytest.raises(CodecError):
            decode(data[:i])


def _msg(*parts: Any) -> bytes:
    out = bytearray((codec.VERSION,))
    for p in parts:
        out += p if isinstance(p, bytes) else bytes((p,))
    return bytes(out)


@pytest.mark.parametrize("tag", [codec.T_LIST, codec.T_TUPLE, codec.T_CONS, codec.T_VEC, codec.T_DICT, codec.T_MAP,
                                 codec.T_SET, codec.T_STR, codec.T_SYM, codec.T_BYTES, codec.T_BIG])
def test_huge_counts_fail_fast(tag: int) -> None:
    """A count larger than the bytes left is refused before anything is allocated for it."""
    import tracemalloc

    tracemalloc.start()
    try:
        for n in (2**60, 2**63 - 1, 2**32, 1000):
            tracemalloc.reset_peak()
            with pytest.raises(CodecError):
                decode(_msg(tag, codec._uvarint(n), b"\x00" * 16))
            assert tracemalloc.get_traced_memory()[1] < 1 << 20, n
    finally:
        tracemalloc.stop()


def test_huge_packed_counts_fail_fast() -> None:
    for tag, extra in ((codec.T_PACKED_INT, b"\x01q"), (codec.T_PACKED_FLOAT, b"\x01"), (codec.T_PACKED_STR, b"\x01")):
        for n in (2**60, 2**31):
            with pytest.raises(CodecError):
                decode(_msg(tag, extra, codec._uvarint(n), codec._uvarint(n), b"\x00" * 64))


def test_maps_decode_to_persistent_maps_with_their_own_hashes() -> None:
    """A map arrives as a Map whose keys are found by == (rebuilt with the receiver's hashes,
    lists and vectors as keys included); an updated vector (its items a PVector) travels like any
    other; an unhashable key (a Python list, which no Lisp value is) is a refused message."""
    m = map_of(from_list([1, 2]), "list", Vec((1, 2)), "vec", 1, "one", intern("s"), map_of("in", 2))
    y = roundtrip(m)
    assert y.__class__ is Map and lisp_eq(y, m) and y.m.get(from_list([1.0, 2])) == "list"
    assert y.m.get(1.0) == "one" and y.m.get(Vec((1, 2))) == "vec"
    from lispvm.vm.values import persistent

    src = Vec(range(50))
    persistent(src)
    v = roundtrip(src)
    assert v.__class__ is Vec and list(v.items) == list(range(50)) and persistent(v).set(0, "x")[0] == "x"
    updated = Vec(persistent(Vec(["a", 1.5, None] * 5)).set(0, "b"))
    assert lisp_eq(roundtrip(updated), Vec(["b", 1.5, None] + ["a", 1.5, None] * 4))
    with pytest.raises(CodecError, match="unhashable"):
        decode(_msg(codec.T_MAP, 1, codec.T_LIST, 0, 0x80))
    with pytest.raises(CodecError):
        decode(_msg(codec.T_MAP, 2, 0x80, 0x81, 0x82))  # fewer children than announced


def test_malformed_messages() -> None:
    bad = [
        b"", bytes((codec.VERSION + 1,)) + encode(1)[1:], bytes((0,)) + encode(1)[1:],  # versions
        _msg(200 - 128 + 0x80 if False else 0x7F),  # an unknown tag
        _msg(codec.T_LIST, b"\xff" * 11),  # a varint that never ends
        _msg(codec.T_BOXREF, 0),  # a box not seen
        _msg(codec.T_CLOSURE, 3),  # a module key not seen
        _msg(codec.T_DICT, 1, codec.T_LIST, 0, 0x80),  # an unhashable key
        _msg(codec.T_SET, 1, codec.T_LIST, 0),
        _msg(codec.T_STR, 2, b"\xff\xfe"),  # not UTF-8
        _msg(codec.T_BIG, 0),
        _msg(codec.T_BUILTIN, codec.T_NONE),
        _msg(codec.T_GCELL, 0x81),
        _msg(codec.T_PROC, codec.T_TUPLE, 0),
        _msg(codec.T_PROC, codec.T_NONE),
        _msg(codec.T_REF, codec.T_STR, 0, 0x80),
        _msg(codec.T_PIDV, 0x7F, 0x80),  # a negative node
        _msg(codec.T_PACKED_INT, 9, ord("q"), 0),  # an unknown sequence kind
        _msg(codec.T_PACKED_INT, 1, ord("x"), 0),  # an unknown integer width
        _msg(codec.T_PACKED_STR, 1, 0, 3, 3, b"a\x00b"),  # fewer strings than announced
        _msg(codec.T_PACKED_STR, 1, b"\xff\xff\xff\x01", 3, 3, b"a\x00b"),  # no such separator
        _msg(codec.T_CLOSUREREF, 0),  # a closure not seen
        _msg(codec.T_F32, 3, b"abc"),  # not a whole float
        _msg(codec.T_KERNEL, codec.T_NONE, codec.T_NONE, codec.T_NONE, codec.T_NONE),
        _msg(codec.T_BOX, 0x80, codec.T_TUPLE, 0),  # a box owner that is no owner
    ]
    for data in bad:
        with pytest.raises(CodecError):
            decode(data)
    with pytest.raises(CodecError):
        decode("a string")  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_random_bytes_give_a_value_or_codec_error(data: bytes) -> None:
    for d in (data, bytes((codec.VERSION,)) + data):
        try:
            decode(d)
        except CodecError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_messages_give_a_value_or_codec_error(data: st.DataObject) -> None:
    x = data.draw(values)
    msg = bytearray(encode(x))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(msg) - 1))
        msg[i] = data.draw(st.integers(0, 255))
    try:
        decode(bytes(msg))
    except CodecError:
        pass


# --- hypothesis: round trips of generated values ---------------------------------------------------

atoms = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
    st.text(max_size=20), st.binary(max_size=20), st.sampled_from([TRUE, FALSE, UNDEF]),
    st.text(max_size=8).map(intern), st.builds(Pid, st.integers(0, 2**20), st.integers(0, 2**64)),
    st.builds(Ref, st.integers(0, 9), st.integers(0, 2**64)),
)
hashable = st.one_of(st.none(), st.integers(), st.text(max_size=8), st.text(max_size=8).map(intern))
values = st.recursive(
    atoms,
    lambda kids: st.one_of(
        st.lists(kids, max_size=12), st.lists(kids, max_size=12).map(tuple),
        st.lists(kids, max_size=12).map(lambda xs: Vec(tuple(xs))),
        st.lists(st.tuples(hashable, kids), max_size=6).map(lambda kvs: map_of(*[e for kv in kvs for e in kv])),
        st.builds(lambda xs, t: from_list(xs, t), st.lists(kids, max_size=12), kids),
        st.dictionaries(hashable, kids, max_size=5), st.frozensets(hashable, max_size=5),
        st.lists(st.integers(-2**63, 2**63 - 1), min_size=8, max_size=20),
        st.lists(st.text(max_size=5), min_size=8, max_size=20).map(from_list),
    ),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_generated_round_trips(x: Any) -> None:
    y = roundtrip(x)
    assert canon(y) == canon(x)


# --- framing ---------------------------------------------------------------------------------------

def test_frames_split_anywhere() -> None:
    payloads = [encode(("ev", i, "x" * i)) for i in range(0, 300, 37)] + [b""]
    stream = b"".join(frame(p) for p in payloads)
    for step in (1, 2, 7, 64, len(stream)):
        r = FrameReader()
        got = []
        for i in range(0, len(stream), step):
            got += r.feed(stream[i:i + step])
        assert got == payloads and r.buffered == 0
    assert codec.encode_frame(("a", 1)) == frame(encode(("a", 1)))


def test_frame_headers_over_the_limit() -> None:
    r = FrameReader(max_frame=100)
    assert r.feed(frame(b"x" * 100)) == [b"x" * 100]
    with pytest.raises(CodecError, match="limit"):
        r.feed(frame(b"y" * 101))
    r = FrameReader()
    with pytest.raises(CodecError):
        r.feed(b"\xff" * 8)
    r = FrameReader()
    assert r.feed(b"\x01") == []
    with pytest.raises(CodecError):
        r.feed(b"\x00\x00\x00\x00\x00\x00\x80")  # 2**55 bytes announced
    big = FrameReader(max_frame=1 << 40)  # the header is not limited to 1 GiB (item 4)
    assert big.feed(struct.pack("<Q", 3 << 30)) == [] and big.buffered == 8


# --- between schedulers: `lispvm run --schedulers 2` ---------------------------------------------

DEEP_SEND = """
(def nest (n acc) (if (== n 0) acc (nest (- n 1) (list acc))))
(def depth (x n) (if (nil? x) n (depth (head x) (+ n 1))))
(def me (self))
(spawn-on 1 (fn () (send me (list (sys/scheduler-id) (nest 5000 nil)))))
(def got (recv))
(print (head got) (depth (head (tail got)) 0))
"""


@pytest.mark.parametrize("flags", [(), ("--no-jit",)], ids=["fast-tier", "interpreter"])
def test_a_deep_list_crosses_schedulers(run_lisp: Any, flags: tuple) -> None:
    """Item 3: a list nested 5,000 deep sent from scheduler 1 to 0 arrives whole (encoding and
    decoding are iterative: nothing recurses in Python, and the node does not hang)."""
    out, err, status = run_lisp(DEEP_SEND, flags=("--schedulers", "2", *flags))
    assert (out, status) == ("1 5000\n", 0), err


# 140 references to one string of 2**21 characters: a 280 MiB message from a 2 MiB heap
BIG = """
(def dbl (s n) (if (== n 0) s (dbl (str s s) (- n 1))))
(def me (self))
(def big () (let ((s (dbl "x" 21))) (list/map (fn (i) s) (list/range 140))))
"""


def test_an_over_large_message_is_refused_at_send(run_lisp: Any) -> None:
    """Item 4: a message over vm.codec.MAX_MESSAGE to a process on another scheduler raises
    (error system_limit ...) in the sender, catchable; the link lives on: later messages arrive."""
    src = BIG + """
(def worker ()
  (let ((b (big)))
    (send me (list 'first (sys/scheduler-id)))
    (send me (try (do (send me b) 'sent) (catch e (list 'caught (head (tail e))))))
    (send me 'after)))
(spawn-on 1 worker)
(print (recv))
(print (recv))
(print (recv))
"""
    out, err, status = run_lisp(src, flags=("--schedulers", "2"))
    assert (out, status) == ("(first 1)\n(caught system_limit)\nafter\n", 0), err


def test_a_lost_message_never_ends_in_status_0(run_lisp: Any) -> None:
    """Uncaught, the refusal ends the sender with its crash report; the main process, which waited
    for that message, is deadlocked: status 1, never a silent 0."""
    src = BIG + """
(spawn-on 1 (fn () (send me (big))))
(print (recv))
"""
    out, err, status = run_lisp(src, flags=("--schedulers", "2"))
    assert status == 1 and out == "", (out, err)
    assert "system_limit" in err and "deadlock" in err


def test_an_over_large_exit_reason_still_arrives(run_lisp: Any) -> None:
    """A link must not be lost: an exit signal whose reason is too large to cross arrives with
    (error system_limit ...) as its reason."""
    src = BIG + """
(trap-exit true)
(def p (spawn-on 1 (fn () (link me) (send me 'linked) (exit (big)))))
(print (recv))
(def m (recv))
(print (head m) (== (head (tail m)) p) (head (tail (head (tail (tail m))))))
"""
    out, err, status = run_lisp(src, flags=("--schedulers", "2"))
    assert (out, status) == ("linked\nEXIT true system_limit\n", 0), err


def test_the_collector_is_left_as_it_was() -> None:
    """encode and decode switch the cyclic collector off while they work: it is on again after
    them, errors included, and stays off if it was off."""
    import gc

    assert gc.isenabled()
    decode(encode([1, (2, "x")]))
    for bad in (lambda: decode(b"\x01\x11\x05"), lambda: encode(object()), lambda: encode("x" * 100, limit=10),
                lambda: codec.encode_frame(object())):
        with pytest.raises(CodecError):
            bad()
        assert gc.isenabled()
    gc.disable()
    try:
        decode(encode([1]))
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_pickle_sent_to_a_scheduler_runs_nothing(tmp_path: Any) -> None:
    """Item 15: a local process that connects to a scheduler's socket and sends a pickle (in the
    old framing and in the new) makes it run nothing: the connection is refused with one line,
    the node goes on and ends normally."""
    import os
    import pickle
    import socket
    import subprocess

    from support import lispvm_command

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple:
            return (open, (str(marker), "w"))

    bomb = pickle.dumps([Evil()], 5)
    prog = tmp_path / "sleep.lisp"
    prog.write_text("(timer/sleep 4000)\n(print 'done)\n")
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the node's socket directory is made in TMPDIR
    with subprocess.Popen([*lispvm_command(), "run", "--schedulers", "2", str(prog)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env) as p:
        try:
            deadline = time.monotonic() + 60
            sockets: list = []
            while not sockets and time.monotonic() < deadline and p.poll() is None:
                sockets = list(tmp_path.glob("lispvm-*/s0.sock"))
                time.sleep(0.02)
            assert sockets, "the hub's socket never appeared"
            for data in (len(bomb).to_bytes(4, "little") + bomb, frame(bomb)):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(str(sockets[0]))
                s.sendall(data)
                s.settimeout(30)
                assert s.recv(1) == b""  # the hub closed the connection
                s.close()
            out, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
    assert not marker.exists()
    assert (out, p.returncode) == ("done\n", 0), err
    assert err.count("malformed message") == 2 and "Traceback" not in err, err


def test_a_process_too_large_to_move_stays(run_lisp: Any) -> None:
    """A process whose state is over the limit is not shipped (a placement is not a pinning): it
    runs where it was made, whole; a small one placed the same way moves."""
    src = BIG + """
(def b (big))
(spawn-on 1 (fn (x) (send me (list (sys/scheduler-id) (str/length (head x))))) b)
(print (recv))
(spawn-on 1 (fn () (send me (list (sys/scheduler-id) 'small))))
(print (recv))
"""
    out, err, status = run_lisp(src, flags=("--schedulers", "2"))
    assert (out, status) == ("(0 2097152)\n(1 small)\n", 0), err


def test_an_over_large_timer_message_reaches_its_owner(run_lisp: Any) -> None:
    """timer/send-after of a message too large to cross: the process that set the timer gets the
    system_limit error (here as an EXIT message: it traps exits), the node says so on standard
    error, and goes on (the scheduler firing the timer does not die)."""
    src = BIG + """
(def p (spawn-on 1 (fn () (send me 'ready) (recv) (send me 'got))))
(recv)
(trap-exit true)
(timer/send-after 10 p (big))
(def m (recv))
(print (head m) (head (tail (head (tail (tail m))))))
(send p 'small)
(print (recv))
"""
    out, err, status = run_lisp(src, flags=("--schedulers", "2"))
    assert (out, status) == ("EXIT system_limit\ngot\n", 0), err
    assert "timer/send-after" in err and "Traceback" not in err


def test_a_frame_states_the_limit_on_the_message_itself() -> None:
    """encode_frame counted its 8-byte header against the limit and named the sum: a send over
    MAX_MESSAGE said `larger than 268435464 bytes` where docs/codec.md says 256 MiB. The limit
    is on the encoded message, the header not counted, and the message and the docs say so."""
    from pathlib import Path

    from lispvm.vm.codec import HEADER, MAX_MESSAGE, encode_frame

    x = ["x" * 1000] * 10
    n = len(encode(x))
    assert len(encode_frame(x, limit=n)) == HEADER + n
    with pytest.raises(TooLarge) as info:
        encode_frame(x, limit=n - 1)
    assert str(info.value) == f"encoded message larger than the limit of {n - 1:,} bytes (at least {info.value.size:,})"
    assert info.value.limit == n - 1 and info.value.size >= n
    with pytest.raises(TooLarge) as info:
        encode(x, limit=n - 1)
    assert str(info.value).startswith(f"encoded message larger than the limit of {n - 1:,} bytes")
    doc = (Path(__file__).parent.parent / "docs" / "codec.md").read_text(encoding="utf-8")
    assert MAX_MESSAGE == 256 << 20 and f"{MAX_MESSAGE:,} bytes" in doc and "256 MiB" in doc


# --- the C path for the common terms (vm/_ccodec.c) agrees with the Python walks -----------------

needs_c = pytest.mark.skipif(codec._C is None, reason="vm/_ccodec.c is not built here (or LISPVM_PURE=1)")


def _python_only(fn: Any, *args: Any) -> Any:
    """fn(*args) with the C path switched off (codec's hooks set to None meanwhile)."""
    saved = codec._c_encode, codec._c_decode
    codec._c_encode = codec._c_decode = None
    try:
        return fn(*args)
    finally:
        codec._c_encode, codec._c_decode = saved


_ATOM_MAKERS = [
    lambda r: None, lambda r: TRUE, lambda r: FALSE, lambda r: True, lambda r: False,
    lambda r: r.randrange(-40, 100), lambda r: r.randrange(-2**31, 2**31), lambda r: r.randrange(-2**63, 2**63),
    lambda r: r.choice([2**63, -2**63 - 1, 10**30]), lambda r: r.random(), lambda r: "s" * r.randrange(200),
    lambda r: "\udc80 lone", lambda r: "ünï ✓", lambda r: intern(f"sym{r.randrange(5)}"),
    lambda r: Pid(r.randrange(4), r.randrange(2**33)), lambda r: Pid(5000, 1), lambda r: b"x",
    lambda r: Vec((1,)), lambda r: map_of(1, 2),
]


def _random_term(rnd: Any, depth: int = 0) -> Any:
    """A term of the kinds the C path handles, with a few it leaves to Python mixed in."""
    if depth > 4 or rnd.random() < 0.4:
        return _ATOM_MAKERS[rnd.randrange(len(_ATOM_MAKERS))](rnd)
    xs = [_random_term(rnd, depth + 1) for _ in range(rnd.randrange(10))]
    kind = rnd.randrange(3)
    if kind == 0:
        return tuple(xs)
    if kind == 1:
        return xs
    return from_list(xs, None if rnd.random() < 0.8 else _random_term(rnd, 5))


@needs_c
def test_c_path_writes_the_python_bytes_and_reads_the_same_values() -> None:
    import random

    rnd = random.Random(5)
    in_c = 0
    for _ in range(600):
        x = _random_term(rnd)
        expected = _python_only(encode, x)
        got = codec._C.encode(x, codec.MAX_MESSAGE, False)
        if got is not None:  # None: a kind (or a length) for Python's walk
            in_c += 1
            assert got == expected
        assert encode(x) == expected and codec.encode_frame(x) == frame(expected)
        value = codec._C.decode(expected)
        if value is not NotImplemented:
            assert canon(value) == canon(_python_only(decode, expected))
    assert in_c > 150  # (the generator does reach the C path)
    with pytest.raises(TooLarge):  # the limit: C leaves it to Python, which says it
        encode(("x" * 1000,), limit=100)


@needs_c
def test_c_path_refuses_hostile_bytes_as_python_does() -> None:
    """Mutated and truncated messages: the same value or the same error, with or without C."""
    import random

    rnd = random.Random(11)
    refused = 0
    for _ in range(1500):
        data = bytearray(_python_only(encode, _random_term(rnd)))
        for _ in range(rnd.randrange(1, 4)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        if rnd.random() < 0.3:
            data = data[:rnd.randrange(1, len(data) + 1)]
        outcomes = []
        for fn in (decode, lambda b: _python_only(decode, b)):
            try:
                outcomes.append(("value", repr(canon(fn(bytes(data))))))
            except CodecError as e:
                outcomes.append(("refused", str(e)))
        assert outcomes[0] == outcomes[1], bytes(data)
        refused += outcomes[0][0] == "refused"
    assert refused > 150
    # lengths and counts past the end, deep nesting (C hands it to Python's walk)
    for data in (b"\x01\x10\xff\xff\xff\xff\x0f", b"\x01\x12\x05\x80", b"\x01\x0a\x7f", b"\x01\x0d\x00",
                 b"\x01" + b"\x10\x01" * 100_000 + b"\x00", b"\x01\x0a\x01\xff", b"\x01\x00\x00",
                 # 10-byte lengths and counts with bits past 64: they must not wrap to a small number
                 b"\x01\x0a" + b"\x80" * 9 + b"\x02", b"\x01\x11\x81" + b"\x80" * 8 + b"\x02\x85",
                 b"\x01\x12" + b"\x80" * 9 + b"\x7e\x00"):
        try:
            want = ("value", repr(canon(_python_only(decode, data)) if len(data) < 1000 else "deep"))
        except CodecError as e:
            want = ("refused", str(e))
        try:
            got = ("value", repr(canon(decode(data)) if len(data) < 1000 else "deep"))
        except CodecError as e:
            got = ("refused", str(e))
        assert got == want


@needs_c
def test_c_small_messages_and_queued_frames_agree_with_python() -> None:
    import random

    from lispvm.scheduler import framing

    rnd = random.Random(3)
    edge = ["x" * 256, "x" * 257, intern("y" * 257), 2**63 - 1, 2**63, -2**63, -2**63 - 1, (1,) * 8, (1,) * 9,
            from_list([1] * 8), from_list([1] * 9), Cons(1, 2), 1.5, b"x", [1], ((1,),), Pid(1, 2), TRUE]
    for x in edge + [_random_term(rnd) for _ in range(1000)]:
        assert framing.small_item(x) == framing.py_small_item(x), x

    def events(data: bytes) -> list:
        out = []
        for p in FrameReader().feed(data):
            out += framing.decode_batch(p) if p[:1] == b"\xf2" else [framing.decode_event(p)]
        return [canon(ev) for ev in out]

    for _ in range(100):
        queued: list = []
        for _ in range(rnd.randrange(40)):
            if rnd.random() < 0.1:
                queued.append(codec.encode_frame(("hello", 1)))
                continue
            item = _random_term(rnd)
            if framing.small_item(item):
                skey, seq = (rnd.randrange(2**40), rnd.randrange(2**20)) if rnd.random() < 0.9 else (None, None)
                queued.append(("ev", Pid(1, rnd.randrange(99)), skey, seq, "m", item))
        assert events(framing.encode_queued(queued)) == events(framing.py_encode_queued(queued))
    many = [("ev", Pid(1, 7), 9, i, "m", i) for i in range(3000)]  # more than one batch, all ints
    assert events(framing.encode_queued(many)) == events(framing.py_encode_queued(many))


@needs_c
def test_c_runs_of_batch_headers_agree_with_python() -> None:
    """A batch's headers read back as runs (framing.batch_runs): the C path groups exactly as
    py_runs does, including the cases where a run must end (another pair or mark, a gap, a
    number that would pass 64 bits, a header that is not numbered) and unknown marks."""
    import random

    from lispvm.scheduler import framing

    head = struct.Struct("<BQQQ")
    top = 2**64 - 1

    def both(heads: list) -> list:
        payload = b"\xf2" + len(heads).to_bytes(4, "little") + b"".join(head.pack(*h) for h in heads) + b"rest"
        got = codec._C.runs(payload, 5, len(heads))
        assert got == framing.py_runs(payload, 5, len(heads)), heads
        return got

    assert both([(0xF1, 7, 9, i) for i in range(5)]) == [(0xF1, 7, 9, 0, 5)]
    assert both([(0xF1, 7, 9, 0), (0xF1, 7, 9, 2), (0xF1, 8, 9, 3), (0xF1, 8, 8, 4)]) == [
        (0xF1, 7, 9, 0, 1), (0xF1, 7, 9, 2, 1), (0xF1, 8, 9, 3, 1), (0xF1, 8, 8, 4, 1)]
    assert both([(0xF1, 7, 9, top - 1), (0xF1, 7, 9, top), (0xF1, 7, 9, 0)]) == [
        (0xF1, 7, 9, top - 1, 2), (0xF1, 7, 9, 0, 1)]  # no wrapping past 64 bits
    assert both([(0xF0, 7, 0, 0)] * 3 + [(0xF0, 7, 0, 1), (0x33, 7, 0, 1), (0x33, 7, 0, 1)]) == [
        (0xF0, 7, 0, 0, 3), (0xF0, 7, 0, 1, 1), (0x33, 7, 0, 1, 2)]
    assert both([]) == []
    rnd = random.Random(5)
    for _ in range(300):
        heads, seq = [], rnd.randrange(4)
        for _ in range(rnd.randrange(1, 60)):
            seq += rnd.choice((1, 1, 1, 0, 2))
            heads.append((rnd.choice((0xF1, 0xF1, 0xF1, 0xF0, 0x20)), rnd.choice((1, 1, 2)), rnd.choice((3, 3, 4)),
                          seq if rnd.random() < 0.95 else top))
        both(heads)
    for start, n in ((0, 2), (5, 1), (-1, 0), (5, -1)):  # headers that do not fit: refused, never read
        with pytest.raises(ValueError):
            codec._C.runs(b"\xf2\x00\x00\x00\x00" + bytes(24), start, n)


@needs_c
def test_c_path_reads_slots_and_falls_back_to_attributes() -> None:
    """The C path reads a cell's head and tail, a symbol's name and a pid's key straight from
    their slots, with the bytes and answers of Python's walk; an object whose slot is empty
    gets Python's error."""
    from lispvm.scheduler import framing

    for x in (from_list([intern("n"), 1, Pid(2, 3)]), intern("abc"), Pid(5, 1 << 31), (intern("y"), 2.5)):
        assert codec._C.encode(x, 1 << 20, False) == _python_only(encode, x)
        assert framing.small_item(x) is framing.py_small_item(x) is True
    empty = Pid.__new__(Pid)  # no key, no node: an AttributeError, as Python's walk raises
    with pytest.raises(AttributeError):
        codec._C.encode(empty, 1 << 20, False)
    with pytest.raises(AttributeError):
        _python_only(encode, empty)
