"""The wire between a scheduler OS process and the device process: frames and message shapes.

Owns: the frame format both ends write and read (send_frame, FrameReader), which arrays travel
inline and which as shared segments (device_shm.py), file descriptors passed with SCM_RIGHTS,
and the shapes of requests and answers with the checks each end applies to what it reads.

Must never: unpickle (messages are vm/codec.py terms: decoding runs no code), trust a size or
count read from the peer before checking it against what a frame can hold, accept a file
descriptor on the client (only the client passes fds, its own segments), or block the device
process's writer while its client is blocked writing too (send_frame's `drain`).

A frame is a header (struct HEAD: arrays, message bytes, bytes of the inline arrays, fds), one
descriptor per float32 array (struct DESC: its bytes, its shared segment or 0 for inline, and
whether its fd comes with this frame), a vm/codec.py message in which every array is an
out-of-band buffer, then the bytes of the inline arrays, written straight from their memory in
the same sendmsg. Arrays of SHM_MIN bytes or more between a client and the device travel as
segments. The layout is not scheduler/framing.py's (an 8-byte length, then the term) because
of what travels beside the term: arrays written and read in place, and fds; and both ends block
where framing.Channel never does (the client writes a request whole, a device thread reads its
connection), so only its read size is shared.

Messages (the first element of a request is its id, 0 where no answer comes):

    client -> device   (rid, KERNEL, source, name)
                       (rid, DISPATCH, kernel number, the Kernel the first time else None,
                        global size, args, result segments or None)
                       (0, FORGET, [segment ids])      segments the client unmapped
                       (0, STOP)                       the node ends
    device -> client   (0, HELLO, os pid)              greets each accepted connection
                       (rid, True, value)              value: a kernel's [(is buffer, type name)],
                                                       or a dispatch's results
                       (rid, False, (kind, message))   kind one of ERROR_KINDS

A dispatch whose kernel the connection already knows and whose arrays all go inline, and an
answer of arrays and numbers only, travel as flat frames instead (flat_parts): a fixed header
(FLAT: a marker no codec frame starts with, the id, the kernel's number, the count of values,
the inline bytes, the global size), one SLOT per value (an array's byte count, an int, or a
float's bits), then the arrays' bytes. Read back they are the same tuples as above: (rid,
DISPATCH, number, None, global size, args, None) and (rid, True, values). The codec is pure
Python where out-of-band arrays are involved, and encoding and decoding both messages of a small
dispatch cost more than its kernel (docs/performance.md, "Issue 16, wave 5, G").
"""

from __future__ import annotations

import array
import hashlib
import os
import select
import socket
import struct
from typing import Any

from ..vm import codec
from ..vm.values import F32Array, from_list
from .device_shm import Segments, shm_of
from .framing import RECV_SIZE

__all__ = ["SHM_MIN", "HELLO", "STOP", "FORGET", "KERNEL", "DISPATCH", "ERROR_KINDS", "FLAT_REQUEST", "FLAT_ANSWER",
           "FrameError", "FrameReader", "send_frame", "flat_parts", "send_parts", "is_request", "is_answer",
           "answer_value", "source_key"]

SHM_MIN = 1 << 18  # bytes: an array this large travels as a memfd segment (docs/gpu.md, "Moving arrays")
HELLO, STOP, FORGET = "hello", "stop", "forget"
KERNEL, DISPATCH = "gpu-kernel", "gpu-dispatch"  # the names vm/gpu.py's Block requests carry
ERROR_KINDS = frozenset({"badarg", "badarity", "device_down", "system_limit"})

HEAD = struct.Struct("<IIII")  # arrays, message bytes, bytes of the inline arrays, fds
DESC = struct.Struct("<QIB")  # per array: bytes, shared segment id (0: inline, after the message), fd follows
_pack_head, _unpack_head, _pack_desc, _unpack_desc = HEAD.pack, HEAD.unpack_from, DESC.pack, DESC.unpack_from
MAX_ARRAYS = 4096  # arrays one frame may carry (a kernel's buffers)
_MAX_FDS = 64  # fds one recvmsg can take (a frame passes one per large array)
_ANCBUF = socket.CMSG_SPACE(_MAX_FDS * array.array("i").itemsize)

FLAT = struct.Struct("<IIIIIQ")  # marker, request id, kernel number (0 in an answer), values, inline bytes, global size
FLAT_REQUEST, FLAT_ANSWER = 0xFFFF_FF01, 0xFFFF_FF02  # a codec frame's first word is its array count, <= MAX_ARRAYS
SLOT_INT, SLOT_FLOAT = struct.Struct("<Bq"), struct.Struct("<Bd")  # per value: its kind, then 8 bytes
SLOT = SLOT_INT.size
S_ARRAY, S_INT, S_FLOAT = 0, 1, 2  # a float32 array (and its byte count), an int64, a float64
_pack_flat, _unpack_flat, _pack_int, _pack_float = FLAT.pack, FLAT.unpack_from, SLOT_INT.pack, SLOT_FLOAT.pack
_unpack_int, _unpack_float = SLOT_INT.unpack_from, SLOT_FLOAT.unpack_from
_unpack_word = struct.Struct("<I").unpack_from
_INT64 = 1 << 63


def _np() -> Any:
    import numpy  # not at module level: only the frames of a dispatch need it

    return numpy


def source_key(source: str) -> str:
    """The hash a kernel's source is known by (the device's build cache, the client's table)."""
    return hashlib.blake2b(source.encode(), digest_size=16).hexdigest()


class FrameError(Exception):
    """A frame could not be made (shared memory could not be allocated): nothing was sent, the
    connection is intact, only this request fails."""


def send_frame(sock: socket.socket, obj: Any, segs: Segments | None = None, may_alloc: bool = False,
               drain: FrameReader | None = None) -> list:
    """Encode `obj` (vm/codec.py, every float32 array out of band) and write it in one sendmsg:
    small arrays' bytes follow the message straight from their memory; large ones travel as
    shared-memory segments (`segs`), their fd passed with SCM_RIGHTS the first time. Returns
    the segments this frame copied into, which the caller keeps until the answer (only the
    client, `may_alloc`, allocates).

    With `drain` (the device's reader of the same socket), a frame that does not fit in the
    socket's buffer is written while whatever the peer sends meanwhile is read into `drain`:
    a client blocked sending a large request to a device blocked sending it a large answer
    was a deadlock."""
    arrays: list = []
    data = codec.encode(obj, buffers=arrays)
    descs, inline, fds, keep, new_sent = [], [], [], [], []
    blen = 0
    for view in arrays:  # flat byte views; view.obj is the array (or its contiguous copy)
        n = view.nbytes
        if segs is None or n < SHM_MIN:
            descs.append(_pack_desc(n, 0, 0))
            inline.append(view)
            blen += n
            continue
        shm = shm_of(view.obj)
        if shm is None or segs.maps.get(shm.seg_id) is not shm:
            if not may_alloc:  # the device answers a large array that is not a segment inline
                descs.append(_pack_desc(n, 0, 0))
                inline.append(view)
                blen += n
                continue
            try:  # one copy into shared memory, none through the socket
                copy = segs.alloc(n)
            except OSError as e:  # memfd_create/ftruncate/mmap: out of memory or of fds
                raise FrameError(f"could not share an array with the device process: {e}") from None
            memoryview(copy).cast("B")[:] = view
            keep.append(copy)
            shm = shm_of(copy)
        sid = shm.seg_id
        with_fd = may_alloc and sid not in segs.sent and sid not in new_sent
        if with_fd:  # marked as sent only once sendmsg has taken the fd
            new_sent.append(sid)
            fds.append(shm.fd)
        descs.append(_pack_desc(n, sid, with_fd))
    parts = [_pack_head(len(descs), len(data), blen, len(fds)), *descs, data, *inline]
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    total = HEAD.size + DESC.size * len(descs) + len(data) + blen
    sent = send_parts(sock, parts, total, drain, anc, segs is not None and new_sent)
    if segs is not None and sent:
        segs.sent.update(new_sent)
    return keep


def flat_parts(marker: int, rid: int, ref: int, n: int, values: Any) -> tuple[list, int] | None:
    """A flat frame (the module's docstring) of `values` as the parts send_parts writes and
    their total bytes, or None when a value cannot go flat: anything but a float32 array of
    fewer than SHM_MIN bytes, an int64 or a float."""
    slots, inline = [], []
    blen = 0
    for x in values:
        c = x.__class__
        if c is int:
            if not -_INT64 <= x < _INT64:
                return None
            slots.append(_pack_int(S_INT, x))
        elif c is float:
            slots.append(_pack_float(S_FLOAT, x))
        else:
            dt = getattr(x, "dtype", None)
            if dt is None or dt.char != "f" or dt.byteorder == ">" or x.ndim != 1 or not x.flags.c_contiguous:
                return None  # (the codec makes a contiguous little-endian copy)
            k = x.nbytes
            if k >= SHM_MIN:
                return None
            slots.append(_pack_int(S_ARRAY, k))
            inline.append(x)
            blen += k
    total = FLAT.size + SLOT * len(slots) + blen
    return [_pack_flat(marker, rid, ref, len(slots), blen, n), *slots, *inline], total


def send_parts(sock: socket.socket, parts: list, total: int, drain: FrameReader | None = None,
               anc: list | None = None, with_fds: Any = False) -> int:
    """Write a frame's `parts` (`total` bytes) in one sendmsg when the socket takes it, the rest
    after (with `drain`, reading what the peer sends meanwhile: send_frame says why). Returns
    what the first sendmsg took, or 1 when there was no fd to pass (`with_fds` false): nonzero
    means the fds in `anc` went with the first byte."""
    anc = anc or []
    if drain is None:
        sent = sock.sendmsg(parts, anc)
    else:
        try:
            sent = sock.sendmsg(parts, anc, socket.MSG_DONTWAIT)
        except BlockingIOError:
            sent = 0
    first = sent if with_fds else 1
    if sent < total:  # a large frame: write the rest
        rest = memoryview(b"".join(bytes(x) for x in parts))[sent:]
        if drain is None:
            sock.sendall(rest)
        else:
            if not sent and anc:  # not even the first byte (and its fds) went: send them now
                n = _send_draining(sock, drain, sock.sendmsg, [rest], anc, socket.MSG_DONTWAIT)
                rest = rest[n:]
            while rest:
                n = _send_draining(sock, drain, sock.send, rest, socket.MSG_DONTWAIT)
                rest = rest[n:]
            first = first or bool(anc)
    return first


def _send_draining(sock: socket.socket, drain: FrameReader, send: Any, *args: Any) -> int:
    """`send(*args)` once `sock` takes some bytes, reading what arrives meanwhile into `drain`."""
    while True:
        readable, writable, _ = select.select([sock], [sock], [])
        if writable:
            try:
                return send(*args)
            except BlockingIOError:
                pass
        if readable:
            drain.pull()


class FrameReader:
    """Reads frames from one stream socket. A single recv may return the end of one frame and
    the start of the next (a client pipelines requests; answers arrive back to back), so bytes
    past the current frame stay in `buf`, and fds that came early wait in `fds`, in order."""

    def __init__(self, sock: socket.socket, segs: Segments | None = None, take_fds: bool = False,
                 flat: int = FLAT_ANSWER) -> None:
        self.sock = sock
        self.segs = segs
        self.take_fds = take_fds  # only the device maps fds it receives (the client's segments)
        self.flat = flat  # the flat frames this end reads: answers on the client, requests on the device
        self.buf = bytearray()
        self.fds: list[int] = []

    def _recv(self, flags: int = 0) -> None:
        """One recvmsg into `buf` (and any fds that came with it into `fds`); EOFError when the
        peer closed."""
        chunk, anc, _flags, _addr = self.sock.recvmsg(RECV_SIZE, _ANCBUF, flags)
        for level, kind, fds in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                got = array.array("i", fds[:len(fds) - len(fds) % 4])
                if not self.take_fds:  # a client maps only segments it made itself
                    for fd in got:
                        os.close(fd)
                    raise codec.CodecError("the device process sent file descriptors")
                self.fds.extend(got)
        if not chunk:
            raise EOFError
        self.buf += chunk

    def _fill(self, n: int) -> None:
        """Read until at least `n` bytes are buffered."""
        while len(self.buf) < n:
            self._recv()

    def pull(self) -> None:
        """Buffer what can be read now without waiting; EOFError when the peer closed."""
        try:
            self._recv(socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass

    def arrived(self) -> bool:
        """Read what can be read now; whether a whole frame is buffered (EOFError when the peer
        closed)."""
        self.pull()
        return self.ready()

    def close_fds(self) -> None:
        """Close fds received for frames that never completed."""
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def _sizes(self) -> tuple[int, int, int, int]:
        """The buffered frame header's (arrays, message bytes, inline array bytes, fds), each
        checked against what a frame can hold: the peer is not trusted (on the client, it runs
        kernels)."""
        narrays, mlen, blen, nfds = _unpack_head(self.buf)
        if narrays > MAX_ARRAYS or mlen > codec.MAX_MESSAGE or blen > narrays * SHM_MIN or nfds > narrays:
            raise codec.CodecError(f"damaged frame header ({narrays} arrays, {mlen} bytes, {blen} inline, "
                                   f"{nfds} fds)")
        return narrays, mlen, blen, nfds

    def _flat_size(self) -> int:
        """The bytes of the buffered flat frame (its header is buffered), its counts checked as
        _sizes checks a codec frame's."""
        _m, _rid, _ref, nvals, blen, _n = _unpack_flat(self.buf)
        if nvals > MAX_ARRAYS or blen > nvals * SHM_MIN:
            raise codec.CodecError(f"damaged flat frame header ({nvals} values, {blen} inline)")
        return FLAT.size + nvals * SLOT + blen

    def ready(self) -> bool:
        """Whether a whole frame is already buffered (reading it will not block)."""
        n = len(self.buf)
        if n < HEAD.size:
            return False
        if _unpack_word(self.buf)[0] == self.flat:
            return n >= FLAT.size and n >= self._flat_size()
        narrays, mlen, blen, _f = self._sizes()
        return n >= HEAD.size + narrays * DESC.size + mlen + blen

    def _read_flat(self) -> tuple:
        """Read and check the rest of a flat frame: its values as a request or an answer tuple
        (the module's docstring)."""
        self._fill(FLAT.size)
        end = self._flat_size()
        self._fill(end)
        buf = self.buf
        marker, rid, ref, nvals, blen, n = _unpack_flat(buf)
        frombuffer = _np().frombuffer
        values = []
        pos = FLAT.size + nvals * SLOT
        try:
            for off in range(FLAT.size, FLAT.size + nvals * SLOT, SLOT):
                kind, k = _unpack_int(buf, off)
                if kind == S_ARRAY:
                    if k < 0 or k % 4 or pos + k > end:
                        raise codec.CodecError("damaged flat frame: its arrays do not add up")
                    values.append(frombuffer(buf[pos:pos + k], dtype="<f4"))  # (a copy: buf is reused)
                    pos += k
                elif kind == S_INT:
                    values.append(k)
                elif kind == S_FLOAT:
                    values.append(_unpack_float(buf, off)[1])
                else:
                    raise codec.CodecError(f"damaged flat frame: value kind {kind}")
            if pos != end:
                raise codec.CodecError("damaged flat frame: its arrays do not add up")
        finally:
            del buf[:end]  # what follows belongs to the next frame
        if marker == FLAT_REQUEST:
            return (rid, DISPATCH, ref, None, n, tuple(values), None)
        return (rid, True, values)

    def read(self) -> Any:
        """Read one frame (blocking) and decode it. A small frame usually takes one recv; the
        bytes of a big inline array are read straight into its own buffer. Raises EOFError
        when the peer closed, codec.CodecError for a frame that is not well formed."""
        buf = self.buf
        if len(buf) < HEAD.size:
            self._fill(HEAD.size)
        if _unpack_word(buf)[0] == self.flat:
            return self._read_flat()
        narrays, mlen, blen, nfds = self._sizes()
        start = HEAD.size + narrays * DESC.size
        pos = start + mlen
        if len(buf) < pos:
            self._fill(pos)
        data = bytes(buf[start:pos])
        fds: list[int] = []
        if nfds:
            fds, self.fds = self.fds[:nfds], self.fds[nfds:]
        try:
            arrays = []
            inline = 0
            for i in range(narrays):
                n, sid, with_fd = _unpack_desc(buf, HEAD.size + i * DESC.size)
                if sid:  # a shared segment: the client's own array, or the device's mapping
                    if self.segs is None or (with_fd and not fds):
                        raise codec.CodecError("a shared segment without its fd, or on a connection without any")
                    try:
                        arrays.append(self.segs.resolve(sid, n, fds.pop(0) if with_fd else None))
                    except KeyError:
                        raise codec.CodecError(f"unknown shared segment {sid}") from None
                    continue
                inline += n
                if inline > blen:
                    raise codec.CodecError("damaged frame: its arrays do not add up")
                k = len(buf) - pos
                if k >= n:  # the common case: all of it arrived with the message
                    arrays.append(buf[pos:pos + n])
                    pos += n
                    continue
                out = bytearray(n)  # the rest of this array comes straight off the socket into it
                out[:k] = buf[pos:]
                pos += k
                view = memoryview(out)
                while k < n:
                    got = self.sock.recv_into(view[k:])
                    if got == 0:
                        raise EOFError
                    k += got
                arrays.append(out)
            if inline != blen or fds:
                raise codec.CodecError("damaged frame: its arrays do not add up")
            return codec.decode(data, buffers=arrays)
        finally:
            del buf[:pos]  # what follows belongs to the next frame
            if nfds:
                for fd in fds:  # not taken (a damaged frame): do not leak them
                    os.close(fd)


# --- shapes ------------------------------------------------------------------------------------

def is_request(msg: Any) -> bool:
    """Whether a message read by the device process has a request's outer shape, (id, operation,
    ...): anything else is treated as a damaged frame (its connection closes)."""
    return msg.__class__ is tuple and len(msg) >= 2 and msg[1].__class__ is str


def is_answer(answer: Any) -> bool:
    """Whether a message read by the client has an answer's outer shape, (id, ok, value)."""
    return (answer.__class__ is tuple and len(answer) == 3 and answer[0].__class__ is int
            and answer[1].__class__ is bool)


def answer_value(req: tuple, ok: bool, value: Any) -> Any:
    """The Lisp value of an answer to `req` (for an error, `value` checked, and None), or
    CodecError when it is not the shape that request's answer has: the device process runs
    kernels, so nothing it says is trusted further than the codec's data and these checks."""
    if not ok:
        if not (value.__class__ is tuple and len(value) == 2 and value[0] in ERROR_KINDS
                and value[1].__class__ is str):
            raise codec.CodecError("malformed error answer")
        return None
    if req[0] == KERNEL:
        if not (value.__class__ is list and all(p.__class__ is tuple and len(p) == 2 and p[0].__class__ is bool
                                                and p[1].__class__ is str for p in value)):
            raise codec.CodecError("malformed kernel parameters")
        from ..vm.gpu import Kernel

        return Kernel(req[1], req[2], tuple(value), source_key(req[1]))
    if not (value.__class__ is list and len(value) == len(req[3])):
        raise codec.CodecError("malformed dispatch answer")
    out = []
    for x, given in zip(value, req[3]):
        if hasattr(x, "dtype"):  # codec decodes only one-dimensional float32 arrays
            if not hasattr(given, "dtype"):
                raise codec.CodecError("an array in place of a scalar argument")
            if x.flags.writeable:
                x.setflags(write=False)
            out.append(F32Array(x))
        elif x.__class__ is given.__class__ and x.__class__ in (int, float):
            out.append(x)
        else:
            raise codec.CodecError("malformed dispatch result")
    return from_list(out)
