"""A batch frame's messages reach their mailboxes in each pair's order (routing.on_batch).

on_batch delivers at once only the message that is next in its pair's order to a process that
holds nothing back; everything else takes the general path (apply_ordered), which holds back
early ones. These tests drive that choice directly with frames made by the transport's own
encoder, no sockets: a fast path that skipped the order check would reorder them.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest

from lispvm.scheduler import framing
from lispvm.scheduler.kernel import DEAD, RUNNABLE, WAITING
from lispvm.scheduler.routing import Routing
from lispvm.scheduler.transport import Transport
from lispvm.vm.process import Process
from lispvm.vm.values import Pid, from_list, intern


class _Sched:
    def __init__(self) -> None:
        self.procs: dict[int, Process] = {}
        self.runq: deque = deque()

    def deliver(self, proc: Process, msg: Any) -> None:
        proc.deliver(msg)
        if proc.status == WAITING:
            proc.status = RUNNABLE
            self.runq.append(proc)


class _Node(Routing):
    """Routing with a scheduler that only holds processes and a run queue."""

    on_message = Transport.on_message  # (the general path, as the cluster node has it)

    def __init__(self) -> None:
        self.sched = _Sched()
        self.sid = 1
        self.recvd = 0
        self.named: dict = {}
        self.dead: set = set()
        self.init_routing()

    def proc(self, num: int, status: int = WAITING) -> Process:
        p = Process(Pid(1, num), None, [])
        p.status = status
        self.sched.procs[p.pid.key] = p
        return p

    def feed(self, evs: list) -> None:
        """The events as one batch frame, read back and handed over as Transport._read does."""
        data = framing.encode_queued(evs)
        (payload,) = framing.FrameReader().feed(data)
        assert payload[:1] == b"\xf2"
        self.on_batch(None, *framing.batch_runs(payload))  # type: ignore[arg-type]


def _ev(to: Process, skey: int | None, seq: int | None, item: Any) -> tuple:
    return ("ev", to.pid, skey, seq, "m", item)


def _mailbox(p: Process) -> list:
    return [x for x in (p.mailbox or ())[p.mbhead:]]


def test_in_order_messages_are_delivered_and_wake_their_process() -> None:
    node = _Node()
    a, b = node.proc(1), node.proc(2, RUNNABLE)
    node.feed([_ev(a, 77, i, from_list([intern("n"), i])) for i in range(3)] + [_ev(b, 77, 0, "x"), _ev(b, 77, 1, 2.5)])
    assert [x.tail.head for x in _mailbox(a)] == [0, 1, 2]
    assert _mailbox(b) == ["x", 2.5]
    assert list(node.sched.runq) == [a]  # woken once; b was runnable already
    assert a.seqin == {77: 3} and b.seqin == {77: 2} and node.recvd == 5
    node.feed([_ev(a, 77, 3, 3), _ev(a, 77, 4, 4)])  # the next batch goes on from there
    assert _mailbox(a)[3:] == [3, 4] and node.recvd == 7


def test_early_messages_are_held_back_until_the_gap_is_filled() -> None:
    node = _Node()
    a = node.proc(1)
    node.feed([_ev(a, 9, 2, "third"), _ev(a, 9, 3, "fourth")])  # 0 and 1 still on their way
    assert _mailbox(a) == [] and a.held
    node.feed([_ev(a, 9, 0, "first"), _ev(a, 9, 1, "second"), _ev(a, 9, 4, "fifth")])
    assert _mailbox(a) == ["first", "second", "third", "fourth", "fifth"]
    assert not a.held and a.seqin == {9: 5} and node.recvd == 5


def test_pairs_are_ordered_apart_and_unnumbered_messages_go_straight_in() -> None:
    node = _Node()
    a = node.proc(1)
    node.feed([_ev(a, 5, 1, "5b"), _ev(a, 6, 0, "6a"), _ev(a, None, None, "bare"), _ev(a, 5, 0, "5a"),
               _ev(a, 6, 1, "6b")])
    assert _mailbox(a) == ["6a", "bare", "5a", "5b", "6b"]


def test_messages_to_a_dead_or_absent_process_are_not_delivered() -> None:
    node = _Node()
    a, gone = node.proc(1), node.proc(2, DEAD)
    elsewhere = Process(Pid(2, 3), None, [])  # made on scheduler 2, never here: kept for when it arrives
    node.feed([_ev(gone, 1, 0, "lost"), _ev(elsewhere, 1, 0, "early"), _ev(a, 1, 0, "ok")])
    assert _mailbox(gone) == [] and _mailbox(a) == ["ok"]
    assert [ev[5] for ev in node.early[elsewhere.pid.key]] == ["early"]


def test_a_gap_after_delivered_messages_is_held_back() -> None:
    node = _Node()
    a = node.proc(1)
    node.feed([_ev(a, 9, 0, 0), _ev(a, 9, 1, 1)])  # the pair is known and nothing is held
    node.feed([_ev(a, 9, 3, 3), _ev(a, 9, 2, 2), _ev(a, 9, 4, 4)])  # 3 overtook 2
    assert _mailbox(a) == [0, 1, 2, 3, 4] and not a.held and a.seqin == {9: 5}


# --- sent while the receiver's scheduler is still starting (routing.send_from, Link.queue) ---


def _starting_worker(tmp_path: Any) -> Any:
    """Scheduler 1 of 4, with nothing connected yet (3 is not started)."""
    from lispvm.scheduler.cluster import Worker
    from lispvm.scheduler.node import load_program
    from lispvm.vm.process import Globals
    from support import compile_text

    globals_ = Globals()
    module = load_program(compile_text("(print 1)"), globals_)
    return Worker(1, 4, str(tmp_path), module, globals_, [], 4000)


def test_a_stream_to_a_starting_scheduler_waits_unencoded_and_leaves_in_order_in_one_batch(tmp_path: Any) -> None:
    """The first messages of a stream are sent while the receiver's scheduler forks and says
    hello: they wait in pending_out. Small ones wait unencoded (one codec call each cost about
    3 us, most of a stream's first thousands of messages) and leave as one batch frame when
    the link is made, numbered in order, with a large message among them in its place."""
    import socket

    node = _starting_worker(tmp_path)
    sender = Process(Pid(1, 5), None, [])
    node.sched.procs[sender.pid.key] = sender
    dest = Pid(3, 9)
    big = from_list(list(range(100)))  # not small: encoded (and size-checked) when sent
    msgs = [from_list([intern("n"), i]) for i in range(50)] + [big] + [i * 1.5 for i in range(50)]
    a, b = socket.socketpair()
    try:
        for m in msgs:
            node.send_from(node.sched, sender, dest, m)
        queued = node.pending_out[3]
        assert len(queued) == len(msgs) and node.sent == len(msgs)
        assert [x.__class__ for x in queued].count(bytes) == 1  # only the large one is encoded
        assert sender.seqs == {dest.key: len(msgs)}
        link = node._add_link(a, None)
        node.on_hello(link, ("hello", 3, None))
        node.on_peer(link, ("peer", 3))
        assert 3 not in node.pending_out
        payloads = framing.FrameReader().feed(framing.encode_queued(link.out))
        batches = [p for p in payloads if p[:1] == b"\xf2"]
        assert len(batches) == 2  # the messages before the large one, and those after
        evs = [ev for p in payloads
               for ev in (framing.decode_batch(p) if p[:1] == b"\xf2" else [framing.decode_event(p)]) if ev[0] == "ev"]
        assert [ev[3] for ev in evs] == list(range(len(msgs)))
        assert [ev[5] for ev in evs] == msgs and all(ev[1] == dest and ev[2] == sender.pid.key for ev in evs)
    finally:
        b.close()
        node.close()


def test_a_message_to_a_starting_scheduler_too_large_to_send_is_refused_in_its_sender(tmp_path: Any,
                                                                                       monkeypatch: Any) -> None:
    """A message that is not small still takes emit's path while the peer starts: refused at
    `send` when it is over the limit, its number given to the next message."""
    from lispvm.vm import codec
    from lispvm.vm.errors import LispError

    node = _starting_worker(tmp_path)
    sender = Process(Pid(1, 5), None, [])
    node.sched.procs[sender.pid.key] = sender
    dest = Pid(3, 9)
    monkeypatch.setattr(codec, "MAX_MESSAGE", 1000)
    monkeypatch.setattr(framing, "MAX_MESSAGE", 1000)
    node.send_from(node.sched, sender, dest, 1)
    try:
        node.send_from(node.sched, sender, dest, from_list(list(range(1000))))
    except LispError as e:
        assert "too large" in str(e.value)
    else:
        raise AssertionError("a message over the limit was queued")
    node.send_from(node.sched, sender, dest, 2)
    queued = [framing.decode_event(x[8:]) if x.__class__ is bytes else x for x in node.pending_out[3]]
    assert [(ev[3], ev[5]) for ev in queued] == [(0, 1), (1, 2)]
    node.close()


# --- the sender's fast path (routing.send_from): C (vm/_ccodec.c queue_next) and Python agree ---


def _linked_worker(tmp_path: Any) -> tuple:
    """Scheduler 1 of 4 with a link up to 3 (a socket pair), a sender process here."""
    import socket

    node = _starting_worker(tmp_path)
    a, b = socket.socketpair()
    link = node._add_link(a, None)
    node.on_hello(link, ("hello", 3, None))
    node.on_peer(link, ("peer", 3))
    sender = Process(Pid(1, 5), None, [])
    node.sched.procs[sender.pid.key] = sender
    return node, link, b, sender


def _fast_path_outcomes(tmp_path: Any) -> list:
    """What a series of sends does on a fresh node: each send's queued events, numbers and counts,
    through every check of the fast path (a pair that is numbered or not, a local receiver, a
    peer that is gone, a receiver that moved, a message that is not small, pids whose header
    cannot be written)."""
    node, link, other, sender = _linked_worker(tmp_path)
    here = Process(Pid(1, 6), None, [])
    node.sched.procs[here.pid.key] = here
    far, moved, gone = Pid(3, 9), Pid(1, 40), Pid(2, 8)
    node.moved[moved.key] = 3  # shipped to 3 from here
    node.dead.add(2)
    odd = [Pid(5000, 1), Pid(3, -5), Pid(3, 1 << 60)]
    sender.seqs = {far.key: 0, here.pid.key: 0, moved.key: 7, gone.key: 0, **{p.key: 0 for p in odd}}
    out: list = []
    sends = [(far, from_list([intern("n"), 1])), (far, 2.5), (here.pid, "local"), (moved, (1, intern("x"))),
             (gone, 1), (far, from_list(list(range(20)))), (Pid(3, 77), "unnumbered"), (far, "last")]
    sends += [(p, 1) for p in odd]
    try:
        for dest, msg in sends:
            before = len(link.out)
            try:
                node.send_from(node.sched, sender, dest, msg)
                what = "sent"
            except Exception as e:  # noqa: BLE001 - the outcome is compared, whatever it is
                what = f"{e.__class__.__name__}: {e}"
            queued = [x if x.__class__ is bytes else (x[0], x[1].key, x[2], x[3], x[4], repr(x[5]))
                      for x in link.out[before:]]  # (bytes: a frame that took the general path)
            out.append((what, queued,
                        dict(sender.seqs), node.sent, link.nout, _mailbox(here)))
    finally:
        other.close()
        node.close()
    return out


def test_the_fast_path_in_c_does_what_the_python_one_does(tmp_path: Any, monkeypatch: Any) -> None:
    """A fast path must give exactly the slow path's results: the C one (where it is built) and
    routing's own Python one, send by send."""
    from lispvm.scheduler import routing

    if routing.c_queue_next is None:
        pytest.skip("vm/_ccodec.c is not built here (or LISPVM_PURE=1)")
    (tmp_path / "c").mkdir()
    (tmp_path / "py").mkdir()
    with_c = _fast_path_outcomes(tmp_path / "c")
    monkeypatch.setattr(routing, "c_queue_next", None)
    assert _fast_path_outcomes(tmp_path / "py") == with_c
    assert [o[0] for o in with_c][:2] == ["sent", "sent"]
    assert with_c[0][1] == [("ev", Pid(3, 9).key, Pid(1, 5).key, 0, "m", "(n 1)")]  # the fast path, not a frame


def test_the_c_fast_path_reads_out_of_the_link_class_it_was_given() -> None:
    """queue_next remembers where the last link class keeps `out`: a class freed and another one
    made at its address (its `out` elsewhere) must still get the message in its own `out`, not
    in whatever slot sits where the old class had it (a lost message, or a read past the object
    for a smaller one). Holding the class it remembers keeps the address from being reused."""
    import gc
    import weakref

    from lispvm.vm import codec

    if codec.c_queue_next is None:
        pytest.skip("vm/_ccodec.c is not built here (or LISPVM_PURE=1)")
    dest = Pid(3, 9)

    def send(link: Any) -> Any:
        return codec.c_queue_next({dest.key: 0}, dest, 5, 1, {}, {}, {}, {3: link}, set(), 1)

    def first() -> tuple:
        class OldLink:
            __slots__ = ("a", "b", "c", "out")  # `out` fourth

        old = OldLink()
        old.out = []
        assert send(old) is old and len(old.out) == 1
        return id(OldLink), weakref.ref(OldLink)

    address, held = first()
    gc.collect()
    for _ in range(500):  # freed, the allocator usually hands its address to the next class at once

        class NewLink:
            __slots__ = ("out", "x", "y", "z")  # `out` first; z where OldLink had `out`

        if held() is not None or id(NewLink) == address:
            break
        gc.collect()
    new = NewLink()
    new.out, new.x, new.y, new.z = [], [], [], []
    assert send(new) is new
    assert [ev[3] for ev in new.out] == [0] and new.z == [] and new.x == [] and new.y == []
