"""The term codec: every value that crosses an OS-process boundary, as bytes, without pickle.

Owns: the binary format of values between schedulers, the device process and (later) network
nodes; the framing of those messages on stream sockets. Must never: run code on decode other
than the closed set of constructors below, recurse in Python (any depth round-trips), trust a
length or count read from the input, or import numpy before an f32 array is met.

API (stable: the scheduler's framing, cluster and device modules use it; docs/codec.md has the format)

    encode(obj, *, buffers=None, oob_min=0, limit=MAX_MESSAGE) -> bytes
        The message for `obj`. With `buffers` (a list), every float32 array of at least
        `oob_min` bytes is appended to it as a flat memoryview instead of being copied inline
        (out of band: the caller sends it its own way, e.g. shared memory or sendmsg); the
        message refers to it by position. Raises TooLarge as soon as the message would pass
        `limit` bytes (out-of-band buffers are not counted), EncodeError for a value of a type
        the codec does not know.
    decode(data, *, buffers=None, limit=MAX_MESSAGE) -> object
        The value of one message (any bytes-like object). `buffers`: the out-of-band buffers
        the message refers to, in order (bytes-like, e.g. memoryviews of shared memory).
        Raises CodecError for anything that is not exactly one well-formed message.
    frame(payload) -> bytes
        `payload` with its header (8 bytes: little-endian length) for a stream socket.
    encode_frame(obj, *, limit=MAX_MESSAGE) -> bytes
        frame(encode(obj)) without the extra copy.
    FrameReader(max_frame=MAX_MESSAGE).feed(data) -> list[bytes]
        Splits a byte stream into payloads: returns the payloads completed by `data` (possibly
        none); raises CodecError on a header over `max_frame`. `buffered` says how many bytes
        wait for the rest of a frame.
    MAX_MESSAGE, VERSION, CodecError, EncodeError, TooLarge

Values: None, bool, int (any size), float, str (lone surrogates included), bytes, tuple, list,
dict, set, frozenset; the Lisp values of vm/values.py (TRUE/FALSE, Sym, Cons lists proper or
improper, Vec, Map, Box, Closure, Builtin, Pid, Ref, F32Array, UNDEF), one-dimensional float32 numpy
arrays, vm.gpu.Kernel, vm.process.GlobalCell (by name, in vm.process.CURRENT_GLOBALS) and
vm.process.Process (its __getstate__ state). Boxes and closures keep their identity within one
message (two closures sharing a box share it after decoding, a box may hold a closure that holds
the box); nothing else does: a sublist that occurs twice is written twice.
"""

from __future__ import annotations

import struct
from array import array
from gc import disable as _gc_disable
from gc import enable as _gc_enable
from gc import isenabled as _gc_isenabled
from itertools import chain
from typing import Any

from immutables import Map as _IMap

from . import handles as _handles
from . import lbc
from . import process as _process
from . import values as _values
from .registry import BUILTINS
from .values import (
    _SYMBOLS,
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
    intern,
    note_box,
)

__all__ = ["VERSION", "MAX_MESSAGE", "HEADER", "CodecError", "EncodeError", "TooLarge", "Unsendable", "encode",
           "decode", "frame", "encode_frame", "FrameReader"]

VERSION = 1  # the first byte of every message; a decoder refuses any other
MAX_MESSAGE = 256 << 20  # bytes of one encoded message (out-of-band buffers not counted)
HEADER = 8  # bytes of a frame's header: the payload's length, little-endian


class CodecError(ValueError):
    """A message that is not exactly one well-formed term of this version, or a frame header
    that announces more than the reader takes."""


class EncodeError(CodecError):
    """A value the codec cannot encode (a type outside its closed set)."""


class TooLarge(CodecError):
    """The message would be larger than the limit (MAX_MESSAGE unless told otherwise)."""

    size = 0  # bytes of the encoded message when the limit was found passed (at least)
    limit = 0  # the limit passed, in bytes of the encoded message (a frame's header not counted)


class Unsendable(TooLarge):
    """The message holds a value that never leaves its OS process (a Python object, vm/python.py).
    A TooLarge: whatever cannot travel is handled alike (a send refused in the sender, a process
    that stays where it is); the send refusal is badarg (scheduler/routing.py)."""


# --- tags ----------------------------------------------------------------------------------------
# One byte each. 0x80-0xFF are the integers SMALL_MIN .. SMALL_MIN + 127 in one byte.
T_NONE, T_PTRUE, T_PFALSE, T_TRUE, T_FALSE, T_UNDEF = 0, 1, 2, 3, 4, 5
T_I32, T_I64, T_BIG, T_FLOAT = 6, 7, 8, 9
T_STR, T_BYTES, T_SYM = 10, 11, 12
T_PID, T_PIDV, T_REF = 13, 14, 15
T_TUPLE, T_LIST, T_CONS, T_VEC, T_DICT, T_SET, T_FSET = 16, 17, 18, 19, 20, 21, 22
T_BOX, T_BOXREF, T_CLOSURE, T_BUILTIN, T_KERNEL, T_GCELL, T_PROC = 23, 24, 25, 26, 27, 28, 29
T_F32, T_F32_OOB, T_ND32, T_ND32_OOB = 30, 31, 32, 33
T_PACKED_INT, T_PACKED_FLOAT, T_PACKED_STR, T_CLOSUREREF, T_MAP = 34, 35, 36, 37, 38
T_HANDLE = 39  # a socket, listener or port handle (vm/handles.py): plain data naming its scheduler
T_PYMOD = 40  # a Python module (vm/python.py PyObj): by its name, imported again where it arrives
SMALL_MIN = -32
_SMALL_MAX = SMALL_MIN + 127

# sequence kinds, after a packed tag: what the elements are put in
_K_TUPLE, _K_LIST, _K_CONS, _K_VEC = 0, 1, 2, 3
_KIND_TAG = {_K_TUPLE: T_TUPLE, _K_LIST: T_LIST, _K_CONS: T_CONS, _K_VEC: T_VEC}

_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_PID = struct.Struct("<HI")
_LEN = struct.Struct("<Q")
_pack_i32, _pack_i64, _pack_f64, _pack_pid = _I32.pack, _I64.pack, _F64.pack, _PID.pack
_SMALL = [bytes((0x80 + i - SMALL_MIN,)) for i in range(SMALL_MIN, _SMALL_MAX + 1)]

_CHUNK = 4096  # children of one container handled between two size checks
# Pids recur in every message: their encodings, and the Pid objects decoded (immutable values),
# are kept, up to _CACHE_MAX of each
_CACHE_MAX = 4096
_PID_BYTES: dict[int, bytes] = {}
_PID_OBJS: dict[bytes, Pid] = {}
_PACK_MIN = 8  # a sequence this long is looked at for a packed form
_CODE_SIZES = {ord("b"): 1, ord("h"): 2, ord("i"): 4, ord("q"): 8}
if array("i").itemsize != 4 or array("I").itemsize != 4 or array("q").itemsize != 8:  # pragma: no cover
    raise ImportError("vm.codec needs a platform with 32-bit C ints and 64-bit long longs")
_LITTLE = array("H", [1]).tobytes() == b"\x01\x00"


def _c_path() -> Any:
    """vm/_ccodec.c, the C path for the common terms (None where it is not built, on a
    big-endian host, or with LISPVM_PURE set as values.PURE reads it: this module's walks do
    everything then)."""
    if _values.PURE or not _LITTLE:
        return None
    try:
        from . import _ccodec
    except ImportError:
        return None
    _ccodec.setup(Cons, Sym, Pid, TRUE, FALSE, _SYMBOLS, intern, _PID_OBJS, _CACHE_MAX)
    return _ccodec


_C = _c_path()
_c_encode = _C.encode if _C is not None else None
_c_decode = _C.decode if _C is not None else None
c_encode_queued = _C.encode_queued if _C is not None else None  # (scheduler/framing.py's queued frames)
c_small = _C.small if _C is not None else None  # (and its small_item)
c_runs = _C.runs if _C is not None else None  # (and its batch_runs)
c_queue_next = _C.queue_next if _C is not None else None  # (scheduler/routing.py send_from's fast path)


def _uvarint(n: int) -> bytes:
    """n >= 0 as LEB128 (7 bits a byte, low first)."""
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_STR_TYPES: frozenset = frozenset({str})
_SEPARATORS = ("\x00", "\x1f", "\uffff")  # tried in turn to join a packed list of strings
_INT_TYPES: frozenset = frozenset({int})
_FLOAT_TYPES: frozenset = frozenset({float})


def _packed(out: bytearray, seq: Any, kind: int) -> bool:
    """Write `seq` (a list or tuple of at least _PACK_MIN elements) in a packed form if all its
    elements are ints of 64 bits, all floats or all strings; whether it did."""
    types = set(map(type, seq))
    if types == _INT_TYPES:
        try:  # one pass: 32 bits holds most lists' integers, else 64 (min and max cost two more)
            a, code = array("i", seq), "i"
        except OverflowError:
            try:
                a, code = array("q", seq), "q"
            except OverflowError:
                return False
        if not _LITTLE:  # pragma: no cover - big-endian hosts
            a.byteswap()
        out.append(T_PACKED_INT)
        out.append(kind)
        out.append(ord(code))
        out += _uvarint(len(a))
        out += memoryview(a).cast("B")
        return True
    if types == _STR_TYPES:
        # joined by a character none of them holds, so that the decoder splits them in C
        n = len(seq)
        for sep in _SEPARATORS:
            text = sep.join(seq)
            if text.count(sep) == n - 1:
                b = text.encode("utf-8", "surrogatepass")
                out.append(T_PACKED_STR)
                out.append(kind)
                out += _uvarint(ord(sep))
                out += _uvarint(n)
                out += _uvarint(len(b))
                out += b
                return True
        return False
    if types == _FLOAT_TYPES:
        a = array("d", seq)
        if not _LITTLE:  # pragma: no cover
            a.byteswap()
        out.append(T_PACKED_FLOAT)
        out.append(kind)
        out += _uvarint(len(a))
        out += memoryview(a).cast("B")
        return True
    return False


def _np() -> Any:
    import numpy

    return numpy


def _f32_bytes(arr: Any) -> memoryview:
    """The bytes of a float32 array, little-endian and contiguous, without a copy if it is."""
    np = _np()
    if not arr.flags.c_contiguous or arr.dtype.byteorder == ">":
        arr = np.ascontiguousarray(arr, dtype="<f4")
    return memoryview(arr).cast("B")


class _Enc:
    """State of one encode: boxes seen (identity), module keys written (a closure's module key
    is written once per message), out-of-band buffers."""

    __slots__ = ("boxes", "closures", "keys", "buffers", "oob_min")

    def __init__(self, buffers: list | None, oob_min: int) -> None:
        self.boxes: dict[int, int] = {}
        self.closures: dict[int, int] = {}  # a recursion's frames share their closure: written once
        self.keys: dict[bytes, int] = {}
        self.buffers = buffers
        self.oob_min = oob_min


def encode(obj: Any, *, buffers: list | None = None, oob_min: int = 0, limit: int = MAX_MESSAGE) -> bytes:
    """The message for `obj` (see the module's docstring)."""
    if _c_encode is not None and buffers is None:
        b = _c_encode(obj, limit, False)
        if b is not None:
            return b
    out = bytearray((VERSION,))
    gc_was = _gc_isenabled()
    if gc_was:  # the walk's iterators and lists are garbage-free: collecting them is wasted work
        _gc_disable()
    try:
        _encode_into(out, obj, buffers, oob_min, limit)
    finally:
        if gc_was:
            _gc_enable()
    return bytes(out)


def encode_frame(obj: Any, *, limit: int = MAX_MESSAGE) -> bytes:
    """frame(encode(obj)), written in one buffer."""
    if _c_encode is not None:
        b = _c_encode(obj, limit, True)
        if b is not None:
            return b
    out = bytearray(HEADER)
    out.append(VERSION)
    gc_was = _gc_isenabled()
    if gc_was:
        _gc_disable()
    try:
        _encode_into(out, obj, None, 0, limit + HEADER)
    except Unsendable:
        raise
    except TooLarge as e:  # it counted the frame's header: say the limit on the message itself
        raise _too_large(e.size - HEADER, limit) from None
    finally:
        if gc_was:
            _gc_enable()
    out[:HEADER] = _LEN.pack(len(out) - HEADER)
    return bytes(out)


def _too_large(size: int, limit: int) -> TooLarge:
    e = TooLarge(f"encoded message larger than the limit of {limit:,} bytes (at least {size:,})")
    e.size, e.limit = size, limit
    return e


def _encode_into(out: bytearray, obj: Any, buffers: list | None, oob_min: int, limit: int) -> None:
    """Append the term for `obj` to `out`. An explicit stack of iterators over the children of
    the containers being written: a child that is itself a container gets its header written
    and its own iterator pushed; the walk is depth first, the order the decoder reads."""
    st: _Enc | None = None
    pid_bytes = _PID_BYTES
    stack: list = [iter((obj,))]
    push = stack.append
    small = _SMALL
    while stack:
        for x in stack[-1]:
            t = x.__class__
            if t is int:
                if SMALL_MIN <= x <= _SMALL_MAX:
                    out += small[x - SMALL_MIN]
                elif -0x80000000 <= x <= 0x7FFFFFFF:
                    out.append(T_I32)
                    out += _pack_i32(x)
                elif -0x8000000000000000 <= x <= 0x7FFFFFFFFFFFFFFF:
                    out.append(T_I64)
                    out += _pack_i64(x)
                else:
                    b = x.to_bytes((x.bit_length() + 8) // 8, "little", signed=True)
                    out.append(T_BIG)
                    out += _uvarint(len(b))
                    out += b
                    if len(out) > limit:
                        raise _too_large(len(out), limit)
            elif t is str:
                b = x.encode("utf-8", "surrogatepass")
                n = len(b)
                out.append(T_STR)
                if n < 0x80:
                    out.append(n)
                else:
                    out += _uvarint(n)
                    if len(out) + n > limit:
                        raise _too_large(len(out) + n, limit)
                out += b
            elif t is Sym:
                b = x.name.encode("utf-8", "surrogatepass")
                n = len(b)
                out.append(T_SYM)
                if n < 0x80:
                    out.append(n)
                else:
                    out += _uvarint(n)
                out += b
            elif x is None:
                out.append(T_NONE)
            elif t is Pid:
                b = pid_bytes.get(x.key)
                if b is not None and x.node < 4096:  # (key names a pid uniquely up to 4096 schedulers)
                    out += b
                elif 0 <= x.node < 4096 and 0 <= x.num < 0x100000000:
                    if len(pid_bytes) >= _CACHE_MAX:
                        pid_bytes.clear()
                    out += pid_bytes.setdefault(x.key, bytes((T_PID,)) + _pack_pid(x.node, x.num))
                else:
                    out.append(T_PIDV)
                    push(iter((x.node, x.num)))
                    break
            elif t is tuple or t is list:
                n = len(x)
                kind = _K_TUPLE if t is tuple else _K_LIST
                if n >= _PACK_MIN and _packed(out, x, kind):
                    if len(out) > limit:
                        raise _too_large(len(out), limit)
                    continue
                out.append(T_TUPLE if t is tuple else T_LIST)
                if n < 0x80:
                    if n:
                        out.append(n)
                        push(iter(x))
                        break
                    out.append(0)
                else:
                    out += _uvarint(n)
                    _push_children(stack, x, n, out, limit)
                    break
            elif t is Cons:
                heads = []
                c = x
                while c.__class__ is Cons:
                    heads.append(c.head)
                    c = c.tail
                n = len(heads)
                if c is None and n >= _PACK_MIN and _packed(out, heads, _K_CONS):
                    if len(out) > limit:
                        raise _too_large(len(out), limit)
                    continue
                out.append(T_CONS)
                heads.append(c)
                if n < 0x80:
                    out.append(n)
                    push(iter(heads))
                else:
                    out += _uvarint(n)
                    _push_children(stack, heads, n + 1, out, limit)
                break
            elif t is float:
                out.append(T_FLOAT)
                out += _pack_f64(x)
            elif x is TRUE:
                out.append(T_TRUE)
            elif x is FALSE:
                out.append(T_FALSE)
            elif t is bool:
                out.append(T_PTRUE if x else T_PFALSE)
            else:
                if st is None:
                    st = _Enc(buffers, oob_min)
                children = _encode_other(out, x, t, st)
                if len(out) > limit:
                    raise _too_large(len(out), limit)
                if children is not None:
                    push(children)
                    break
        else:
            stack.pop()
            if len(out) > limit:
                raise _too_large(len(out), limit)


def _push_children(stack: list, seq: Any, n: int, out: bytearray, limit: int) -> None:
    """Push an iterator over `seq`'s n elements: in chunks of _CHUNK, so that the size is
    checked between chunks of a long container of small values."""
    if len(out) + n > limit:  # every element takes at least one byte
        raise _too_large(len(out) + n, limit)
    if n <= _CHUNK:
        stack.append(iter(seq))
        return
    stack.extend(iter(seq[i:i + _CHUNK]) for i in range((n - 1) // _CHUNK * _CHUNK, -1, -_CHUNK))


def _seen(out: bytearray, memo: dict, x: Any, ref_tag: int) -> bool:
    """Boxes and closures keep their identity within a message: one met before is written as a
    reference to its number (True); a new one is numbered here and its caller writes it (False)."""
    k = memo.get(id(x))
    if k is not None:
        out.append(ref_tag)
        out += _uvarint(k)
        return True
    memo[id(x)] = len(memo)
    return False


def _encode_other(out: bytearray, x: Any, t: type, st: _Enc) -> Any:
    """The types off the hot path: writes the header of `x` and returns an iterator over its
    children, or None when `x` is complete. EncodeError for a type outside the closed set."""
    if t is Box:
        if _seen(out, st.boxes, x, T_BOXREF):
            return None
        out.append(T_BOX)
        return iter((x.v, x.owner))
    if t is Closure:
        if _seen(out, st.closures, x, T_CLOSUREREF):
            return None
        proto = x.proto
        key = proto.module.key if proto.module else b""
        k = st.keys.get(key)
        out.append(T_CLOSURE)
        if k is None:
            k = st.keys[key] = len(st.keys)
            out += _uvarint(k)
            out += _uvarint(len(key))
            out += key
        else:
            out += _uvarint(k)
        out += _uvarint(proto.index)
        return iter((x.name, x.upvals))
    if t is Vec:
        items = x.items
        n = len(items)
        if n >= _PACK_MIN and _packed(out, items, _K_VEC):
            return None
        out.append(T_VEC)
        out += _uvarint(n)
        return iter(items)
    if t is Map:
        out.append(T_MAP)
        out += _uvarint(len(x.m))
        return chain.from_iterable(x.m.items())
    if t is bytes:
        out.append(T_BYTES)
        out += _uvarint(len(x))
        out += x
        return None
    if t is Ref:
        out.append(T_REF)
        return iter((x.node, x.num))
    if t is dict:
        out.append(T_DICT)
        out += _uvarint(len(x))
        return chain.from_iterable(x.items())
    if t is set or t is frozenset:
        out.append(T_SET if t is set else T_FSET)
        out += _uvarint(len(x))
        return iter(list(x))
    if t is Builtin:
        out.append(T_BUILTIN)
        return iter((x.name,))
    if t is F32Array:
        _write_f32(out, x.data, st, T_F32)
        return None
    if x is UNDEF:
        out.append(T_UNDEF)
        return None
    if t is _process.GlobalCell:
        out.append(T_GCELL)
        return iter((x.name,))
    if t is _process.Process:
        out.append(T_PROC)
        return iter((x.__getstate__(),))
    if t is _handles.Handle:
        out.append(T_HANDLE)
        return iter((x.kind, x.sched, x.serial))
    if t.__name__ == "Kernel" and t.__module__ == __package__ + ".gpu":
        out.append(T_KERNEL)
        return iter((x.source, x.name, x.params, x.key))
    if t.__name__ == "ndarray" and t.__module__ == "numpy":
        if x.dtype.kind == "f" and x.dtype.itemsize == 4 and x.ndim == 1:
            _write_f32(out, x, st, T_ND32)
            return None
        raise EncodeError(f"cannot encode a numpy array of {x.dtype} with {x.ndim} dimensions "
                          "(only one-dimensional float32 arrays travel)")
    if t.__name__ == "PyObj" and t.__module__ == __package__ + ".python":
        name = x.module_name()
        if name is not None:  # a module is the same everywhere: it travels by name
            out.append(T_PYMOD)
            return iter((name,))
        raise Unsendable(f"a Python object ({x!r}) cannot be sent to another scheduler")
    raise EncodeError(f"cannot encode a value of type {t.__module__}.{t.__qualname__}")


def _write_f32(out: bytearray, arr: Any, st: _Enc, tag: int) -> None:
    """A float32 array: inline (tag), or out of band (tag + 1) into st.buffers."""
    view = _f32_bytes(arr)
    if st.buffers is not None and view.nbytes >= st.oob_min:
        out.append(tag + 1)
        out += _uvarint(len(st.buffers))
        out += _uvarint(view.nbytes)
        st.buffers.append(view)
        return
    out.append(tag)
    out += _uvarint(view.nbytes)
    out += view


# --- decoding ------------------------------------------------------------------------------------

# containers being built: (kind, items so far, children still to read, extra)
_C_TUPLE, _C_LIST, _C_CONS, _C_VEC, _C_DICT, _C_SET, _C_FSET = 0, 1, 2, 3, 4, 5, 6
_C_BOX, _C_CLOSURE, _C_BUILTIN, _C_KERNEL, _C_GCELL, _C_PROC, _C_REF, _C_PIDV, _C_ROOT, _C_MAP = range(7, 17)
_C_HANDLE = 17
_C_PYMOD = 18
_CONTAINERS = {T_TUPLE: _C_TUPLE, T_LIST: _C_LIST, T_VEC: _C_VEC, T_SET: _C_SET, T_FSET: _C_FSET}


def _truncated() -> CodecError:
    return CodecError("truncated message")


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """(value, next position) of the LEB128 at pos; at most 10 bytes (64 bits)."""
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise _truncated()
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise CodecError("varint longer than 10 bytes")


def decode(data: Any, *, buffers: Any = None, limit: int = MAX_MESSAGE) -> Any:
    """The value of one message (see the module's docstring); CodecError for anything else."""
    if data.__class__ is not bytes:
        try:
            data = bytes(data)
        except TypeError:
            raise CodecError(f"cannot decode a {type(data).__name__}: expected bytes") from None
    if len(data) > limit:
        raise CodecError(f"message of {len(data)} bytes is larger than the limit of {limit}")
    if not data:
        raise CodecError("empty message")
    if data[0] != VERSION:
        raise CodecError(f"unsupported codec version {data[0]} (this is version {VERSION})")
    gc_was = _gc_isenabled()
    if gc_was:  # a large value is made of new containers only: no cycle to collect while it is built
        _gc_disable()
    try:
        if _c_decode is not None:
            v = _c_decode(data)
            if v is not NotImplemented:
                return v
        return _decode(data, buffers)
    except CodecError:
        raise
    except IndexError:
        raise CodecError("truncated message") from None
    except (ValueError, TypeError, KeyError, OverflowError, struct.error, UnicodeError,
            MemoryError, lbc.BadBytecode) as e:  # a check this decoder lacks: still a refused message
        raise CodecError(f"malformed message ({type(e).__name__}: {e})") from None
    finally:
        if gc_was:
            _gc_enable()


def _decode(data: bytes, buffers: Any, unpack_i32: Any = _I32.unpack_from, unpack_i64: Any = _I64.unpack_from,
            unpack_f64: Any = _F64.unpack_from, unpack_pid: Any = _PID.unpack_from, syms: dict = _SYMBOLS,
            pids: dict = _PID_OBJS) -> Any:
    # (the defaults are constants bound once: locals are the cheapest names in the loop)
    end = len(data)
    pos = 1
    boxes: list[Box] = []
    closures: list[Closure] = []
    keys: list[bytes] = []
    stack: list = []
    kind = _C_ROOT
    items: list = []
    left = 1  # children still to read in the current container
    extra: Any = None
    while True:
        while left:
            tag = data[pos]  # (past the end: IndexError, reported by decode as a truncation)
            pos += 1
            left -= 1
            if tag >= 0x80:
                items.append(tag - 0x80 + SMALL_MIN)
            elif tag == T_NONE:
                items.append(None)
            elif tag == T_STR or tag == T_SYM:
                n = data[pos]
                if n < 0x80:
                    pos += 1
                else:
                    n, pos = _varint(data, pos, end)
                e = pos + n
                if e > end:
                    raise _truncated()
                s = data[pos:e].decode("utf-8", "surrogatepass")
                pos = e
                if tag == T_STR:
                    items.append(s)
                else:
                    y = syms.get(s)
                    items.append(y if y is not None else intern(s))
            elif tag == T_PID:
                raw = data[pos:pos + 6]
                y = pids.get(raw)
                if y is None:
                    if len(raw) < 6:
                        raise _truncated()
                    if len(pids) >= _CACHE_MAX:
                        pids.clear()
                    y = pids[raw] = Pid(*unpack_pid(raw))
                items.append(y)
                pos += 6
            elif tag == T_TUPLE or tag == T_LIST or tag == T_CONS:
                n = data[pos]
                if n < 0x80:
                    pos += 1
                else:
                    n, pos = _varint(data, pos, end)
                if n > end - pos:  # every child takes at least one byte
                    raise _truncated()
                stack.append((kind, items, left, extra))
                if tag == T_CONS:
                    kind, left = _C_CONS, n + 1
                else:
                    kind, left = (_C_TUPLE if tag == T_TUPLE else _C_LIST), n
                items = []
                extra = None
            elif tag == T_I32:
                if pos + 4 > end:
                    raise _truncated()
                items.append(unpack_i32(data, pos)[0])
                pos += 4
            elif tag == T_I64:
                if pos + 8 > end:
                    raise _truncated()
                items.append(unpack_i64(data, pos)[0])
                pos += 8
            elif tag == T_FLOAT:
                if pos + 8 > end:
                    raise _truncated()
                items.append(unpack_f64(data, pos)[0])
                pos += 8
            elif tag == T_TRUE:
                items.append(TRUE)
            elif tag == T_FALSE:
                items.append(FALSE)
            elif tag == T_PTRUE:
                items.append(True)
            elif tag == T_PFALSE:
                items.append(False)
            elif tag == T_PACKED_INT or tag == T_PACKED_FLOAT or tag == T_PACKED_STR:
                v, pos = _decode_packed(data, pos, end, tag)
                items.append(v)
            elif tag == T_BOXREF:
                n, pos = _varint(data, pos, end)
                if n >= len(boxes):
                    raise CodecError(f"reference to box {n}, of {len(boxes)} seen")
                items.append(boxes[n])
            elif tag == T_CLOSURE:
                n, pos = _varint(data, pos, end)
                if n == len(keys):
                    k, pos = _varint(data, pos, end)
                    if pos + k > end:
                        raise _truncated()
                    keys.append(data[pos:pos + k])
                    pos += k
                elif n > len(keys):
                    raise CodecError(f"reference to module key {n}, of {len(keys)} seen")
                index, pos = _varint(data, pos, end)
                try:
                    proto = lbc._proto_by_key(keys[n], index)
                except lbc.BadBytecode as e:
                    raise CodecError(str(e)) from None
                # made now, completed when its name and upvalues are read: a box inside it may
                # refer back to it
                cl = Closure.__new__(Closure)
                cl.proto, cl.fast = proto, None
                closures.append(cl)
                stack.append((kind, items, left, extra))
                kind, items, left, extra = _C_CLOSURE, [], 2, cl
            elif tag == T_CLOSUREREF:
                n, pos = _varint(data, pos, end)
                if n >= len(closures):
                    raise CodecError(f"reference to closure {n}, of {len(closures)} seen")
                items.append(closures[n])
            elif tag == T_BOX:
                box = Box(None)
                boxes.append(box)
                stack.append((kind, items, left, extra))
                kind, items, left, extra = _C_BOX, [], 2, box
            elif tag in _CONTAINERS or tag == T_DICT or tag == T_MAP:
                n, pos = _varint(data, pos, end)
                c = n if tag in _CONTAINERS else 2 * n
                if c > end - pos:
                    raise _truncated()
                stack.append((kind, items, left, extra))
                kind, items, left, extra = _CONTAINERS.get(tag, _C_DICT if tag == T_DICT else _C_MAP), [], c, None
            elif tag == T_BIG or tag == T_BYTES:
                n, pos = _varint(data, pos, end)
                e = pos + n
                if e > end:
                    raise _truncated()
                if tag == T_BYTES:
                    items.append(data[pos:e])
                else:
                    if n == 0:
                        raise CodecError("empty big integer")
                    items.append(int.from_bytes(data[pos:e], "little", signed=True))
                pos = e
            elif tag == T_UNDEF:
                items.append(UNDEF)
            elif tag in _SIMPLE_CONTAINERS:
                c, n = _SIMPLE_CONTAINERS[tag]
                stack.append((kind, items, left, extra))
                kind, items, left, extra = c, [], n, None
            elif tag == T_F32 or tag == T_ND32 or tag == T_F32_OOB or tag == T_ND32_OOB:
                v, pos = _decode_f32(data, pos, end, tag, buffers)
                items.append(v)
            else:
                raise CodecError(f"unknown tag {tag} at byte {pos - 1}")
        # the current container is complete
        if kind == _C_LIST:
            v = items
        elif kind == _C_TUPLE:
            v = tuple(items)
        elif kind == _C_CONS:
            v = items[-1]
            for i in range(len(items) - 2, -1, -1):
                v = Cons(items[i], v)
        elif kind == _C_ROOT:
            if pos != end:
                raise CodecError(f"{end - pos} bytes after the end of the term")
            if boxes:  # boxes came from another OS process: this one's messages are scanned from now on
                note_box()
            return items[0]
        else:
            v = _build(kind, items, extra)
        kind, items, left, extra = stack.pop()
        items.append(v)


_SIMPLE_CONTAINERS = {T_BUILTIN: (_C_BUILTIN, 1), T_KERNEL: (_C_KERNEL, 4), T_GCELL: (_C_GCELL, 1),
                      T_PROC: (_C_PROC, 1), T_REF: (_C_REF, 2), T_PIDV: (_C_PIDV, 2)}
_SIMPLE_CONTAINERS[T_HANDLE] = (_C_HANDLE, 3)
_SIMPLE_CONTAINERS[T_PYMOD] = (_C_PYMOD, 1)


def _build(kind: int, items: list, extra: Any) -> Any:
    """The value of a completed container, from its decoded children."""
    if kind == _C_CONS:
        out = items[-1]
        for i in range(len(items) - 2, -1, -1):
            out = Cons(items[i], out)
        return out
    if kind == _C_TUPLE:
        return tuple(items)
    if kind == _C_LIST:
        return items
    if kind == _C_CLOSURE:
        name, upvals = items
        if upvals.__class__ is not tuple or not (name is None or name.__class__ is str):
            raise CodecError("malformed closure")
        extra.upvals = upvals
        extra.name = name or extra.proto.name
        return extra
    if kind == _C_BOX:
        v, owner = items
        extra.v = v
        if owner is not None:
            if not (owner.__class__ is int or owner.__class__ is str):
                raise CodecError("malformed box owner")
            extra.owner = owner
        return extra
    if kind == _C_VEC:
        return Vec(items)
    if kind == _C_MAP:
        it = iter(items)
        try:
            return Map(_IMap(zip(it, it)))  # (keys equal by == in one message: the later wins)
        except TypeError:
            raise CodecError("unhashable map key") from None
    if kind == _C_DICT:
        it = iter(items)
        try:
            return dict(zip(it, it))
        except TypeError:
            raise CodecError("unhashable dictionary key") from None
    if kind == _C_SET or kind == _C_FSET:
        try:
            return set(items) if kind == _C_SET else frozenset(items)
        except TypeError:
            raise CodecError("unhashable set element") from None
    if kind == _C_REF or kind == _C_PIDV:
        node, num = items
        if node.__class__ is not int or num.__class__ is not int or node < 0 or num < 0:
            raise CodecError("malformed pid or ref")
        return Ref(node, num) if kind == _C_REF else Pid(node, num)
    if kind == _C_BUILTIN:
        b = BUILTINS.get(items[0]) if items[0].__class__ is str else None
        if b is None:
            raise CodecError(f"no builtin called {items[0]!r}")
        return b
    if kind == _C_GCELL:
        g = _process.CURRENT_GLOBALS
        if items[0].__class__ is not str or g is None:
            raise CodecError("a global variable, and no globals table here" if g is None
                             else "malformed global variable")
        return g.cell(items[0])
    if kind == _C_PYMOD:
        if items[0].__class__ is not str:
            raise CodecError("malformed Python module")
        from .python import module_named  # (only a program that used py/ sends one)

        return module_named(items[0])
    if kind == _C_HANDLE:
        hkind, sched, serial = items
        if hkind not in _handles.KINDS or sched.__class__ is not int or serial.__class__ is not int or sched < 0 \
                or serial < 0:
            raise CodecError("malformed handle")
        return _handles.Handle(hkind, sched, serial)
    if kind == _C_KERNEL:
        from .gpu import Kernel  # on first use: importing gpu registers its builtins, after vm.builtins' ones

        source, name, params, key = items
        if not (source.__class__ is str and name.__class__ is str and key.__class__ is str
                and params.__class__ is tuple
                and all(p.__class__ is tuple and len(p) == 2 and p[0].__class__ is bool
                        and p[1].__class__ is str for p in params)):
            raise CodecError("malformed kernel")
        return Kernel(source, name, params, key)
    if kind == _C_PROC:
        return _build_process(items[0])
    raise CodecError(f"internal: container kind {kind}")  # pragma: no cover


_PROC_SLOTS = _process.Process.__slots__
_PROC_TYPES = {"pid": (Pid,), "cl": (Closure,), "pc": (int,), "regs": (list,), "frames": (list,),
               "mailbox": (list, type(None)), "mbhead": (int,), "scan": (int,), "ret_reg": (int,),
               "trap_exit": (bool,), "links": (set, type(None)), "monitors": (dict, type(None)),
               "seqs": (dict, type(None)), "seqin": (dict, type(None)), "held": (dict, type(None)),
               "status": (int,), "deadline": (float, int, type(None)),
               "boxes": (dict, type(None))}


def _build_process(state: Any) -> _process.Process:
    """A Process from its __getstate__ state, checked for the shape the scheduler relies on."""
    if state.__class__ is not tuple or len(state) != len(_PROC_SLOTS):
        raise CodecError("malformed process state")
    for name, v in zip(_PROC_SLOTS, state):
        types = _PROC_TYPES.get(name)
        if types is not None and v.__class__ not in types:
            raise CodecError(f"malformed process state ({name})")
    frames = state[_PROC_SLOTS.index("frames")]
    for f in frames:
        if (f.__class__ is not tuple or len(f) != 5 or f[0].__class__ is not Closure or f[1] is not None
                or f[2].__class__ is not int or f[3].__class__ is not list or f[4].__class__ is not int):
            raise CodecError("malformed process frame")
    if not frames or frames[0][0].proto is not _process.HALT_FRAME[0].proto:
        raise CodecError("malformed process stack (no halt frame at its bottom)")
    p = _process.Process.__new__(_process.Process)
    p.__setstate__(state)
    return p


def _decode_packed(data: bytes, pos: int, end: int, tag: int) -> tuple[Any, int]:
    """A packed sequence of ints, floats or strings: (value, next position)."""
    if pos + 2 > end:
        raise _truncated()
    kind = data[pos]
    pos += 1
    if kind not in _KIND_TAG:
        raise CodecError(f"unknown sequence kind {kind}")
    if tag == T_PACKED_INT:
        code = data[pos]
        pos += 1
        size = _CODE_SIZES.get(code)
        if size is None:
            raise CodecError(f"unknown integer width {code}")
        n, pos = _varint(data, pos, end)
        if n > (end - pos) // size:
            raise _truncated()
        a = array(chr(code))
        a.frombytes(data[pos:pos + n * size])
        pos += n * size
    elif tag == T_PACKED_FLOAT:
        n, pos = _varint(data, pos, end)
        if n > (end - pos) // 8:
            raise _truncated()
        a = array("d")
        a.frombytes(data[pos:pos + n * 8])
        pos += n * 8
    else:
        sep, pos = _varint(data, pos, end)
        n, pos = _varint(data, pos, end)
        nbytes, pos = _varint(data, pos, end)
        if sep > 0x10FFFF or n == 0 or n - 1 > end - pos or nbytes > end - pos:
            raise _truncated() if sep <= 0x10FFFF and n else CodecError("malformed packed strings")
        a = data[pos:pos + nbytes].decode("utf-8", "surrogatepass").split(chr(sep))
        pos += nbytes
        if len(a) != n:
            raise CodecError(f"packed strings: {len(a)} strings where {n} were announced")
    if tag != T_PACKED_STR and not _LITTLE:  # pragma: no cover
        a.byteswap()
    if kind == _K_LIST:
        return a.tolist() if tag != T_PACKED_STR else a, pos
    if kind == _K_TUPLE:
        return tuple(a), pos
    if kind == _K_VEC:
        return Vec(a), pos
    out = None
    for x in reversed(a):
        out = Cons(x, out)
    return out, pos


def _decode_f32(data: bytes, pos: int, end: int, tag: int, buffers: Any) -> tuple[Any, int]:
    """A float32 array (an F32Array for T_F32*, a bare numpy array for T_ND32*), inline or out of
    band: (value, next position)."""
    np = _np()
    if tag == T_F32 or tag == T_ND32:
        n, pos = _varint(data, pos, end)
        if pos + n > end:
            raise _truncated()
        raw: Any = data[pos:pos + n]
        pos += n
    else:
        i, pos = _varint(data, pos, end)
        n, pos = _varint(data, pos, end)
        if buffers is None or i >= len(buffers):
            raise CodecError(f"out-of-band buffer {i} missing")
        raw = memoryview(buffers[i]).cast("B")
        if raw.nbytes != n:
            raise CodecError(f"out-of-band buffer {i} has {raw.nbytes} bytes, the message says {n}")
    if n % 4:
        raise CodecError("float32 array of a size not a multiple of 4 bytes")
    arr = np.frombuffer(raw, dtype="<f4")
    if tag == T_F32 or tag == T_F32_OOB:
        if arr.flags.writeable:
            arr.setflags(write=False)  # arrays are values: nothing may change one after it is made
        return F32Array(arr), pos
    return arr, pos


# --- framing -------------------------------------------------------------------------------------

def frame(payload: bytes) -> bytes:
    """`payload` preceded by its 8-byte little-endian length, for a stream socket."""
    return _LEN.pack(len(payload)) + payload


class FrameReader:
    """Splits the bytes of a stream socket into payloads (their frames' headers removed)."""

    __slots__ = ("buf", "max_frame")

    def __init__(self, max_frame: int = MAX_MESSAGE) -> None:
        self.buf = bytearray()  # bytes received and not yet a whole frame
        self.max_frame = max_frame  # the largest payload a header may announce

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete."""
        return len(self.buf)

    def feed(self, data: Any) -> list[bytes]:
        """Take the next bytes of the stream; the payloads they complete, in order. CodecError if
        a header announces more than max_frame bytes (the stream cannot be trusted any more)."""
        buf = self.buf
        if not buf and len(data) >= HEADER:  # the common case: whole frames in one read, no copy
            mv = memoryview(data)
            out, pos = self._split(mv)
            if pos < len(mv):
                buf += mv[pos:]
            return out
        buf += data
        out, pos = self._split(buf)
        if pos:
            del buf[:pos]
        return out

    def _split(self, buf: Any) -> tuple[list[bytes], int]:
        """The whole frames at the start of `buf`, and where the first incomplete one starts."""
        out = []
        pos = 0
        end = len(buf)
        while end - pos >= HEADER:
            n = _LEN.unpack_from(buf, pos)[0]
            if n > self.max_frame:
                raise CodecError(f"frame of {n} bytes announced, more than the limit of {self.max_frame}")
            if end - pos - HEADER < n:
                break
            out.append(bytes(buf[pos + HEADER:pos + HEADER + n]))
            pos += HEADER + n
        return out, pos
