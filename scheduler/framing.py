"""Frames on a non-blocking stream socket: queued, written as far as the socket takes, read and split.

Owns: one connected stream socket in non-blocking mode, the frames queued on it (each a frame of
vm/codec.py: an 8-byte length and the encoded term, docs/codec.md), the bytes the socket has not
taken yet, and splitting what it reads back into frames. Chaos mode's split and delayed writes
and small socket buffers are applied here (scheduler/chaos.py).

Must never: block (a socket call that would wait returns, and the caller polls the fd), decide
what a frame means (scheduler/events.py and cluster.py do), unpickle anything, or drop bytes of
a peer that is still connected.

Frames: a message between processes (a cluster "ev" event of kind "m", the commonest by far)
travels as a fixed header (MESSAGE: the receiver's pid key, the sender's key and the pair's
sequence number) followed by the message's codec term, so that only the message itself is
walked by the codec (encode_event, decode_event); every other event is one codec term. Small
messages (small_message: bounded immutable terms) may be queued unencoded; each run of them is
encoded at the flush as one batch frame, their headers then one codec tuple of the messages
(encode_queued, decode_batch), so that the codec's fixed cost is paid once per batch.

Use: queue, then flush (True while bytes are left: poll the fd for writability and call write
again); read (decoded terms) or read_payloads (undecoded) when the fd is readable. The cluster's
links are Channels (scheduler/transport.py, class Link). The device process's wire has a frame
of its own, with arrays and file descriptors beside the term and ends that block
(scheduler/device_wire.py), and shares only RECV_SIZE.
"""

from __future__ import annotations

import socket
import struct
import sys
from typing import Any

from ..vm.codec import (
    MAX_MESSAGE,
    CodecError,
    FrameReader,
    TooLarge,
    Unsendable,
    c_encode_queued,
    c_runs,
    c_small,
    decode,
    encode,
    encode_frame,
)
from ..vm.values import Bool, Cons, Pid, Sym

__all__ = ["Channel", "RECV_SIZE", "batch_parts", "batch_runs", "decode_batch", "decode_event", "encode_event",
           "message_event", "py_runs", "small_item", "small_message"]

# Bytes asked of one recv: recv(n) allocates n bytes first, so a larger size costs every small
# read (docs/performance.md, "Scheduler decisions").
RECV_SIZE = 65536

# The first byte of a message frame's payload (a codec term's first byte is codec.VERSION): a
# message numbered within its pair (MSG_SEQ), or one without a sender process (a timer's,
# MSG_BARE); a batch of small messages (MSG_BATCH: a count, their headers, one codec tuple).
MSG_SEQ, MSG_BARE, MSG_BATCH = 0xF1, 0xF0, 0xF2
_COUNT = struct.Struct("<BI")  # a batch's mark and count
_LEN = struct.Struct("<Q")
BATCH_MAX = 1024  # messages in one batch frame (with small_message's bounds: far under MAX_MESSAGE)
SMALL_ESTIMATE = 64  # bytes counted for a message queued unencoded (Transport.emit's PUSH_BYTES)
_ATOMS = frozenset({int, float, Bool, bool, type(None), Pid})
_I64 = 1 << 63
_TEXT_MAX = 256  # characters of a string or symbol name in a small message
_ELEMS_MAX = 8  # elements of a list or tuple in a small message
MESSAGE = struct.Struct("<QBQQQ")  # frame length, mark, receiver's pid key, sender's pid key, sequence number
_HEAD = struct.Struct("<BQQQ")  # the same header read back, without the frame length
_HEAD_SIZE = _HEAD.size
_U64 = 1 << 64
_QUEUED_LIMIT = 1 << 62  # (no bound of its own: the queue is bounded by Transport's PUSH_BYTES)
_PIDS: dict[int, Pid] = {}  # receivers' pids decoded (immutable values), reused up to _PIDS_MAX
_PIDS_MAX = 4096


def encode_event(ev: tuple) -> bytes:
    """The frame for a cluster event (decode_event reads it back): a message to a process as
    a MESSAGE header and its item's codec term, anything else as one codec term. TooLarge (with
    nothing queued) if the payload is over vm.codec.MAX_MESSAGE, as encode_frame."""
    if ev[0] == "ev" and len(ev) == 6 and ev[4] == "m":
        pid, skey, seq = ev[1], ev[2], ev[3]
        if pid.__class__ is Pid and pid.node < 4096 and 0 <= pid.key < _U64:
            if skey is None and seq is None:
                mark, skey, seq = MSG_BARE, 0, 0
            elif skey.__class__ is int and seq.__class__ is int and 0 <= skey < _U64 and 0 <= seq < _U64:
                mark = MSG_SEQ
            else:
                return encode_frame(ev)
            try:
                body = encode(ev[5], limit=MAX_MESSAGE - _HEAD_SIZE)
            except Unsendable:
                raise
            except TooLarge as e:  # said of the whole message, as encode_frame says it
                size = getattr(e, "size", 0) + _HEAD_SIZE
                err = TooLarge(f"encoded message larger than the limit of {MAX_MESSAGE:,} bytes "
                               f"(at least {size:,})")
                err.size, err.limit = size, MAX_MESSAGE
                raise err from None
            return MESSAGE.pack(len(body) + _HEAD_SIZE, mark, pid.key, skey, seq) + body
    return encode_frame(ev)


def _small_atom(x: Any) -> bool:
    t = x.__class__
    if t in _ATOMS:
        return t is not int or -_I64 <= x < _I64
    if t is str:
        return len(x) <= _TEXT_MAX
    return t is Sym and len(x.name) <= _TEXT_MAX


def small_message(ev: tuple) -> bool:
    """Is `ev` a message event whose item is an immutable term of bounded size (an atom, or a
    short list or tuple of atoms), with a header encode_event writes? Such a message cannot be
    refused for its size, so it may be queued unencoded and encoded with the others queued on
    its link in one codec call at the flush (encode_queued)."""
    if ev[0] != "ev" or len(ev) != 6 or ev[4] != "m":
        return False
    pid, skey, seq = ev[1], ev[2], ev[3]
    if pid.__class__ is not Pid or pid.node >= 4096 or not 0 <= pid.key < _U64:
        return False
    if skey is None:
        if seq is not None:
            return False
    elif not (skey.__class__ is int and seq.__class__ is int and 0 <= skey < _U64 and 0 <= seq < _U64):
        return False
    return small_item(ev[5])


def small_item(item: Any) -> bool:
    """Is `item` an immutable term of bounded size (an atom, or a short list or tuple of atoms),
    that may wait unencoded in a link's queue (small_message)?"""
    t = item.__class__
    if t is Cons:
        n = 0
        c = item
        while c.__class__ is Cons:
            if n == _ELEMS_MAX or not _small_atom(c.head):
                return False
            n += 1
            c = c.tail
        return c is None
    if t is tuple:
        return len(item) <= _ELEMS_MAX and all(_small_atom(x) for x in item)
    return _small_atom(item)


py_small_item = small_item  # (the C path must answer as this does: tests/test_codec.py)
if c_small is not None:
    small_item = c_small  # noqa: F811 - the same answer from vm/_ccodec.c


def _head(ev: tuple) -> bytes:
    skey = ev[2]
    if skey is None:
        return _HEAD.pack(MSG_BARE, ev[1].key, 0, 0)
    return _HEAD.pack(MSG_SEQ, ev[1].key, skey, ev[3])


def encode_queued(queued: list) -> bytes:
    """The frames for what a link has queued, in order: frames already encoded as they are, and
    each run of small messages queued unencoded (small_message) as batch frames of up to
    BATCH_MAX messages, one codec call each (a lone one as a message frame)."""
    if c_encode_queued is not None:  # the same bytes, written in C (vm/_ccodec.c), or None
        b = c_encode_queued(queued, BATCH_MAX, _QUEUED_LIMIT)
        if b is not None:
            return b
    return py_encode_queued(queued)


def py_encode_queued(queued: list) -> bytes:
    """encode_queued in Python (the C path must write frames that decode to the same events:
    tests/test_codec.py)."""
    out = []
    run: list = []
    for x in queued:
        if x.__class__ is bytes:
            if run:
                _batches(out, run)
                run = []
            out.append(x)
        else:
            run.append(x)
    if run:
        _batches(out, run)
    return b"".join(out)


def _batches(out: list, run: list) -> None:
    for i in range(0, len(run), BATCH_MAX):
        evs = run[i:i + BATCH_MAX]
        if len(evs) == 1:
            out.append(encode_event(evs[0]))
            continue
        body = encode(tuple([ev[5] for ev in evs]))
        heads = b"".join([_head(ev) for ev in evs])
        out.append(_LEN.pack(_COUNT.size + len(heads) + len(body)))
        out.append(_COUNT.pack(MSG_BATCH, len(evs)))
        out.append(heads)
        out.append(body)


def _checked_batch(payload: bytes) -> tuple[int, tuple]:
    """A batch frame's count and its decoded messages, as many; CodecError if it is malformed
    (its headers are then known to fit in the payload)."""
    if len(payload) < _COUNT.size:
        raise CodecError("truncated batch header")
    mark, n = _COUNT.unpack_from(payload)
    end = _COUNT.size + n * _HEAD_SIZE
    if mark != MSG_BATCH or n < 2 or n > BATCH_MAX or len(payload) < end:
        raise CodecError("malformed batch header")
    items = decode(payload[end:])
    if items.__class__ is not tuple or len(items) != n:
        raise CodecError("a batch's messages do not match its headers")
    return n, items


def batch_parts(payload: bytes) -> tuple[Any, tuple]:
    """A batch frame's payload split and checked: an iterator over its headers (mark, receiver's
    pid key, sender's pid key, sequence number), and the tuple of its decoded messages, as many;
    CodecError if it is malformed. (A mark is checked by whoever reads the header: _message.)"""
    n, items = _checked_batch(payload)
    return _HEAD.iter_unpack(payload[_COUNT.size:_COUNT.size + n * _HEAD_SIZE]), items


def batch_runs(payload: bytes) -> tuple[list[tuple], tuple]:
    """batch_parts with the headers as runs (py_runs): a stream's messages to one process come
    as one run per batch, which the receiver puts in the mailbox at once (routing.on_batch)
    instead of one header at a time."""
    n, items = _checked_batch(payload)
    return runs(payload, _COUNT.size, n), items


def py_runs(payload: bytes, start: int, n: int) -> list[tuple]:
    """The n message headers at payload[start:] as runs of consecutive headers that only count
    up: (mark, key, skey, seq, count), the k-th header of a run being (mark, key, skey, seq + k)
    for a numbered message (MSG_SEQ) and (mark, key, skey, seq) for any other mark."""
    out: list[list] = []
    last: list = [None, None, None, None, 0]
    for mark, key, skey, seq in _HEAD.iter_unpack(payload[start:start + n * _HEAD_SIZE]):
        if (mark == last[0] and key == last[1] and skey == last[2]
                and seq == (last[3] + last[4] if mark == MSG_SEQ else last[3])):
            last[4] += 1
        else:
            last = [mark, key, skey, seq, 1]
            out.append(last)
    return [tuple(r) for r in out]


runs = c_runs if c_runs is not None else py_runs  # (the C path answers as py_runs: tests/test_codec.py)


def decode_batch(payload: bytes) -> list[tuple]:
    """The message events of a batch frame's payload, in order; CodecError if it is malformed."""
    heads, items = batch_parts(payload)
    return [message_event(head, item) for head, item in zip(heads, items)]


def _message(payload: bytes, pos: int, item: Any) -> tuple:
    """The event of the message header at `pos`, with its decoded item."""
    return message_event(_HEAD.unpack_from(payload, pos), item)


def message_event(head: tuple, item: Any) -> tuple:
    """The event of a message header read back (mark, keys, number), with its decoded item;
    CodecError for an unknown mark."""
    mark, key, skey, seq = head
    if mark == MSG_SEQ:
        pass
    elif mark == MSG_BARE and skey == 0 and seq == 0:
        skey = seq = None
    else:
        raise CodecError(f"unknown frame mark {mark}")
    pid = _PIDS.get(key)
    if pid is None:
        if len(_PIDS) >= _PIDS_MAX:
            _PIDS.clear()
        pid = _PIDS[key] = Pid(key & 0xFFF, key >> 12)
    return ("ev", pid, skey, seq, "m", item)


def decode_event(payload: bytes) -> Any:
    """The event in one frame's payload (encode_event's); CodecError for anything malformed.
    The message itself is decoded by the codec, with all its checks."""
    if not payload or payload[0] < MSG_BARE:
        return decode(payload)
    if len(payload) < _HEAD_SIZE:
        raise CodecError("truncated message header")
    if payload[0] == MSG_BATCH:
        raise CodecError("a batch where one event was expected")
    return _message(payload, 0, decode(payload[_HEAD_SIZE:]))


class Channel:
    """One connected stream socket carrying codec frames both ways, never blocking."""

    __slots__ = ("sock", "fd", "out", "nout", "wbuf", "rbuf", "closed", "chaos")

    def __init__(self, sock: socket.socket, chaos: Any = None, max_frame: int = MAX_MESSAGE) -> None:
        sock.setblocking(False)
        self.sock = sock  # a connected stream socket
        self.fd = sock.fileno()  # kept: fileno() is -1 once the socket is closed
        self.chaos = chaos  # a scheduler.chaos.Chaos: writes in random pieces, some left for later
        if chaos is not None:
            chaos.shrink(sock)
        self.out: list[bytes] = []  # frames queued since the last flush
        self.nout = 0  # bytes a caller counted into `out` (the cluster writes at once past a bound)
        self.wbuf = bytearray()  # frames flushed but not yet taken by the socket
        self.rbuf = FrameReader(max_frame)  # bytes read but not yet a whole frame
        self.closed = False

    def queue(self, obj: Any) -> None:
        """Queue a term, or a frame already encoded (bytes from vm.codec.encode_frame); TooLarge
        if a term is over vm.codec.MAX_MESSAGE (then nothing is queued). (Transport.emit also
        appends small messages to `out` unencoded: small_message.)"""
        self.out.append(obj if obj.__class__ is bytes else encode_frame(obj))

    def flush(self) -> bool:
        """Move the queued frames to the write buffer and write as much as the socket takes now;
        whether bytes are left unsent (the caller then polls the fd for writability)."""
        if self.out:
            self.wbuf += encode_queued(self.out)
            self.out = []
            self.nout = 0
        return self.write()

    def write(self) -> bool:
        """Write unsent bytes until the socket takes no more; whether some are left. (Writing
        once per flush left the rest for a wake-up that an idle scheduler never had.)"""
        wbuf = self.wbuf
        chaos = self.chaos
        while wbuf and not self.closed:
            try:
                if chaos is None:
                    n = self.sock.send(wbuf)
                else:
                    n = self.sock.send(wbuf[:chaos.piece(len(wbuf))])
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:  # the peer is gone: what it was sent is lost with it
                self.closed = True
                wbuf.clear()
                return False
            del wbuf[:n]
            if chaos is not None and wbuf and chaos.pause():
                return True
        return bool(wbuf)

    def read_payloads(self) -> list[bytes] | None:
        """The payloads of the whole frames available now, undecoded; None when the peer closed
        the connection or sent a frame header over the limit (then `closed` is set)."""
        try:
            data = self.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return None
        try:
            return self.rbuf.feed(data)
        except CodecError as e:
            self.malformed(e)
            return None

    def read(self) -> list[Any] | None:
        """The terms of the whole frames available now; None when the peer closed the
        connection or sent something the codec refuses (the rest of the stream is not trusted:
        the channel is marked closed)."""
        payloads = self.read_payloads()
        if not payloads:
            return payloads
        try:
            return [ev for payload in payloads
                    for ev in (decode_batch(payload) if payload[:1] == b"\xf2" else (decode_event(payload),))]
        except CodecError as e:
            self.malformed(e)
            return None

    def malformed(self, error: CodecError) -> None:
        """The peer sent bytes the codec refuses: say so on one line and stop trusting it."""
        sys.stderr.write(f"lispvm: a malformed message from {self.who()} ({error}); connection closed\n")
        self.closed = True

    def who(self) -> str:
        """The peer, as the one line about a malformed message names it."""
        return "a peer"

    def close(self) -> None:
        """Close the socket; what was not written is dropped."""
        self.closed = True
        self.wbuf.clear()
        self.out = []
        self.nout = 0
        try:
            self.sock.close()
        except OSError:
            pass
