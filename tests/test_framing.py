"""Message frames between schedulers (scheduler/framing.py, encode_event / decode_event): a
message to a process travels as a fixed header and its item's codec term; every other event as
one codec term. Both read back the same event, and anything malformed is a CodecError (the
connection is then cut), never a crash or a wrong event."""

from __future__ import annotations

import socket
import struct

import pytest

from lispvm.scheduler import cluster, events, framing
from lispvm.scheduler.framing import MSG_BARE, MSG_SEQ, decode_event, encode_event
from lispvm.vm import codec
from lispvm.vm.values import Cons, Pid, intern, map_of

ITEMS = [5, intern("x"), "text", Cons(intern("n"), Cons(123456789, None)), None, (1, 2.5, "z"),
         map_of(intern("k"), Cons(1, None)), 1 << 80, [Pid(2, 7)] * 3]


def _payload(frame: bytes) -> bytes:
    assert int.from_bytes(frame[:codec.HEADER], "little") == len(frame) - codec.HEADER
    return frame[codec.HEADER:]


@pytest.mark.parametrize("item", ITEMS, ids=range(len(ITEMS)))
def test_a_message_reads_back_as_the_event_it_was(item: object) -> None:
    for ev in [("ev", Pid(1, 5), Pid(0, 9).key, 41, "m", item), ("ev", Pid(3, 1 << 40), None, None, "m", item)]:
        payload = _payload(encode_event(ev))
        assert payload[0] == (MSG_SEQ if ev[2] is not None else MSG_BARE)  # the message frame, not the codec's
        back = decode_event(payload)
        assert back == ev and back[1].node == ev[1].node and back[1].num == ev[1].num
        assert decode_event(payload[:0] + payload) == codec.decode(_payload(codec.encode_frame(ev)))


def test_other_events_and_unusual_messages_are_codec_frames() -> None:
    for ev in [("ev", Pid(1, 5), 3, 4, "s", ("exit", Pid(1, 5), intern("normal"), Pid(0, 1))),
               ("idle", 1), ("ev", Pid(1, 1 << 60), 3, 4, "m", 1),  # a key past 64 bits
               ("ev", Pid(1, 5), 3, None, "m", 1)]:  # (a shape no node sends: left to handle's checks)
        payload = _payload(encode_event(ev))
        assert payload[0] == codec.VERSION
        assert decode_event(payload) == ev


def test_a_message_too_large_or_unsendable_is_refused_in_its_sender(monkeypatch: pytest.MonkeyPatch) -> None:
    from lispvm.vm.python import PyObj

    monkeypatch.setattr(framing, "MAX_MESSAGE", 1000)
    with pytest.raises(codec.TooLarge) as info:
        encode_event(("ev", Pid(1, 5), 1, 1, "m", "y" * 2000))
    assert str(info.value).startswith("encoded message larger than the limit of 1,000 bytes")
    assert info.value.size > 1000 and info.value.limit == 1000
    assert len(encode_event(("ev", Pid(1, 5), 1, 1, "m", "y" * 900))) < 1000
    with pytest.raises(codec.Unsendable):
        encode_event(("ev", Pid(1, 5), 1, 1, "m", Cons(PyObj(object()), None)))


def test_malformed_message_frames_are_codec_errors() -> None:
    good = _payload(encode_event(("ev", Pid(1, 5), 7, 0, "m", Cons(1, None))))
    head = struct.Struct("<BQQQ")
    bad = [good[:10],  # a header cut short
           bytes([0xF2]) + good[1:], bytes([0xFF]) + good[1:],  # marks no sender writes
           head.pack(MSG_BARE, Pid(1, 5).key, 3, 0) + good[head.size:],  # a bare message with a sequence
           good[:head.size],  # no message after the header
           good[:head.size] + b"\x07\x00",  # a message the codec refuses
           good + b"\x00",  # bytes after the message
           b""]
    for payload in bad:
        with pytest.raises(codec.CodecError):
            decode_event(payload)


def test_a_channel_cuts_a_peer_that_sends_a_malformed_message_frame(capsys: pytest.CaptureFixture) -> None:
    from lispvm.scheduler.transport import Link

    a, b = socket.socketpair()
    link = Link(a, 2)
    try:
        b.sendall(struct.pack("<QBQQQ", 25, 0xF3, 1, 2, 3))
        assert link.read() is None and link.closed
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("lispvm: a malformed message from peer 2 ("), err
    finally:
        link.close()
        b.close()


def test_a_message_frame_before_a_hello_is_refused() -> None:
    class Node:
        sid, nschedulers, secret, recvd = 0, 2, b"s" * 16, 0
        greeted: set = set()
        dead: set = set()

    class NoPeer:
        peer = None

    ev = decode_event(_payload(encode_event(("ev", Pid(0, 1), 5, 0, "m", 1))))
    with pytest.raises(events.Refused, match="ev before a hello"):
        cluster.ClusterNode.handle(Node(), NoPeer(), ev)  # type: ignore[arg-type]


# --- small messages queued unencoded and sent in batches (framing.small_message, encode_queued)

def _ev(i: int, item: object, skey: int | None = 7) -> tuple:
    return ("ev", Pid(1, 5 + i % 3), skey, None if skey is None else i, "m", item)


def test_small_messages_are_bounded_immutable_terms() -> None:
    from lispvm.vm.values import Box

    small = [5, -(1 << 63), 2.5, intern("s"), "t" * 256, None, Pid(1, 2), (1, "a"), Cons(intern("n"), Cons(3, None))]
    for item in small:
        assert framing.small_message(_ev(1, item)), item
    long_list = None
    for i in range(9):
        long_list = Cons(i, long_list)
    for item in [1 << 63, "t" * 257, intern("y" * 257), Box(1), (1,) * 9, long_list, Cons(1, 2), [1, 2],
                 Cons(Cons(1, None), None), map_of(1, 2), (Box(1),)]:
        assert not framing.small_message(_ev(1, item)), item
    assert not framing.small_message(("ev", Pid(1, 5), 3, 4, "s", ("exit", 1)))
    assert not framing.small_message(("ev", Pid(1, 5), 3, None, "m", 1))
    assert not framing.small_message(("ev", Pid(1, 1 << 60), 3, 4, "m", 1))
    assert framing.small_message(("ev", Pid(1, 5), None, None, "m", 1))


def test_a_queue_of_frames_and_small_messages_reads_back_in_order() -> None:
    """Runs of small messages become batch frames (split at BATCH_MAX, a lone one a message
    frame) between the frames already encoded, and a channel reads every event back in order."""
    big = "x" * 1000  # not small: encoded at once
    queued: list = []
    want = []
    for i in range(2 * framing.BATCH_MAX + 5):
        ev = _ev(i, Cons(intern("n"), Cons(i, None)), None if i % 7 == 0 else 9)
        if i % 500 == 3:
            ev = _ev(i, big)
            queued.append(encode_event(ev))
        else:
            queued.append(ev)
        want.append(ev)
    queued.append(encode_event(("idle", 1)))
    want.append(("idle", 1))
    data = framing.encode_queued(queued)
    payloads = codec.FrameReader().feed(data)
    assert sum(p[0] == framing.MSG_BATCH for p in payloads) >= 4
    got = []
    for p in payloads:
        got.extend(framing.decode_batch(p) if p[0] == framing.MSG_BATCH else [decode_event(p)])
    assert got == want
    a, b = socket.socketpair()
    ends = [framing.Channel(a), framing.Channel(b)]
    try:
        ends[0].out = list(queued)
        ends[0].flush()
        read: list = []
        while len(read) < len(want):
            ends[0].write()  # (whatever the socket did not take at the flush)
            frames = ends[1].read()
            assert frames is not None
            read.extend(frames)
        assert read == want
    finally:
        for ch in ends:
            ch.close()


def test_malformed_batches_are_codec_errors() -> None:
    evs = [_ev(i, i) for i in range(3)]
    good = _payload(framing.encode_queued(evs))
    assert good[0] == framing.MSG_BATCH and framing.decode_batch(good) == evs
    count = struct.Struct("<BI")
    rest = good[count.size:]
    head = 25
    bad = [good[:3], count.pack(framing.MSG_BATCH, 4) + rest,  # more headers announced than there are messages
           count.pack(framing.MSG_BATCH, 2) + rest,  # fewer
           count.pack(framing.MSG_BATCH, 1) + rest[:head] + codec.encode((1,)),  # a batch of one is never sent
           count.pack(framing.MSG_BATCH, framing.BATCH_MAX + 1) + rest,
           good[:count.size + 2 * head],  # headers cut short
           good[:count.size] + bytes([0xF3]) + rest[1:],  # a header with a wrong mark
           good[:count.size + 3 * head] + codec.encode([0, 1, 2]),  # not a tuple
           good[:count.size + 3 * head] + codec.encode(5)]
    for payload in bad:
        with pytest.raises(codec.CodecError):
            framing.decode_batch(payload)
    with pytest.raises(codec.CodecError):
        decode_event(good)  # where a single event is read


def test_a_batch_from_a_connection_without_a_hello_is_refused(tmp_path: object,
                                                                capsys: pytest.CaptureFixture) -> None:
    from lispvm.scheduler.cluster import Worker
    from lispvm.scheduler.node import load_program
    from lispvm.vm.process import Globals
    from support import compile_text

    globals_ = Globals()
    module = load_program(compile_text("(print 1)"), globals_)
    node = Worker(1, 2, str(tmp_path), module, globals_, [], 4000)
    a, b = socket.socketpair()
    try:
        link = node._add_link(a, None)
        b.sendall(framing.encode_queued([_ev(i, i) for i in range(3)]))
        node._read(link)
        assert link.closed and node.recvd == 0
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "a malformed event from an unknown connection" in err, err
    finally:
        b.close()
        node.close()
