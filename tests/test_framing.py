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
