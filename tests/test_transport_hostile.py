"""The transport between schedulers under a flood of large messages and under hostile input
(issue 12): a sender is charged for the bytes it queues and stopped past the back-pressure
bound, so that earlier messages are not held back and the sending scheduler's memory stays
bounded; an event of the wrong kind or shape, or any event on a connection without the node's
token in its hello, closes that connection with one line on standard error and the node goes on."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from lispvm.scheduler import cluster, events
from lispvm.vm import codec
from lispvm.vm.values import Pid, intern
from support import lispvm_command

FLOOD = """
(def me (self))
(def bigl (list/range 20000))
(def prod (k) (send me (list 'm k bigl)) (prod (+ k 1)))
(def p (spawn-on 1 (fn () (send me 'first) (prod 0))))
(print (recv))
(def take (i)
  (if (< i 100)
      (receive ((list 'm k l) (if (and (= k i) (= (length l) 20000)) (take (+ i 1)) (list 'wrong i k))))
      'ok))
(print (take 0))
(halt 0)
"""

# The sending scheduler's peak resident memory must stay well under what an unbounded queue
# reaches: the bound is SEND_BUFFER_LIMIT unsent bytes (64 MiB) plus the interpreter itself,
# while the code before the fix queued a whole slice of sends (4,000 frames of 80 KB here).
WORKER_PEAK_LIMIT_KIB = 300 << 10


def _children(pid: int) -> list[int]:
    """The live OS processes whose parent is `pid` (the hub's forked schedulers)."""
    kids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(name))
    return kids


def _peak_kib(pid: int) -> int | None:
    """VmHWM of a live process, in KiB (None once it has gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmHWM from /proc")
@pytest.mark.parametrize("jit", [True, False], ids=["jit", "no-jit"])
def test_a_flood_of_large_messages_holds_nothing_back_and_its_sender_stays_bounded(tmp_path: Path, jit: bool) -> None:
    prog = tmp_path / "flood.lisp"
    prog.write_text(FLOOD)
    argv = lispvm_command() + ["run", "--schedulers", "2"] + ([] if jit else ["--no-jit"]) + [str(prog)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(tmp_path)}, start_new_session=True)
    peaks: dict[int, int] = {}
    deadline = time.monotonic() + 60
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            for k in _children(proc.pid):  # the sender, scheduler 1, is the hub's only child
                peak = _peak_kib(k)
                if peak is not None:
                    peaks[k] = max(peak, peaks.get(k, 0))
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    assert proc.returncode == 0 and out == "first\nok\n", (proc.returncode, out, err[-2000:])
    assert peaks, "the sending scheduler was never seen running"
    assert max(peaks.values()) < WORKER_PEAK_LIMIT_KIB, (
        f"the sending scheduler reached {max(peaks.values()) >> 10} MiB (queued without bound)")


WAIT = """
(def me (self))
(spawn-on 1 (fn () (send me 'ready) (receive (x (print "s1 got" x)) (after 9000 (print "s1 timeout")))))
(print "main got" (recv))
(receive (x (print "main got" x)) (after 8000 (print "main timeout")))
"""

# Well-formed frames of the codec, wrongly shaped or forged, each sent on a connection of its own.
PAYLOADS = {
    "not a tuple": 5,
    "empty tuple": (),
    "unknown kind": ("bogus", 1),
    "short ev": ("ev", 1),
    "hello of the wrong shape": ("hello", "x", None),
    "hello without a token": ("hello", 0, 1),
    "hello with a wrong token": ("hello", 1, None, b"0123456789abcdef"),
    "hello as a peer out of range": ("hello", 10 ** 6, None, b"0123456789abcdef"),
    "stop": ("stop",),
    "mainpid": ("mainpid", 5),
    "register": ("register", intern("foo"), 5),
    "forged message to 0.0": ("ev", Pid(0, 0), None, None, "m", "forged"),
    "forged message to 0.1": ("ev", Pid(0, 1), None, None, "m", "forged"),
    "forged output": ("out", "INJECTED LINE"),
    # larger than any hello: refused before it is decoded (its symbols would be interned for ever)
    "a large first frame": ("hello", 0, None, tuple(intern(f"stranger{i}") for i in range(300))),
    "forged scheduler death": ("sched_down", 1),
    "forged end": ("main_done", 3, None),
}


def _connect(path: Path) -> socket.socket:
    """A connection to a scheduler's socket, once it listens (it binds, then listens)."""
    for _ in range(500):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(path))
            return s
        except OSError:
            s.close()
            time.sleep(0.01)
    raise AssertionError(f"{path} never accepted a connection")


@pytest.mark.parametrize("target", ["s0.sock", "s1.sock"])
def test_wrongly_shaped_or_forged_events_close_their_connection_and_the_node_goes_on(tmp_path: Path,
                                                                                     target: str) -> None:
    prog = tmp_path / "wait.lisp"
    prog.write_text(WAIT)
    proc = subprocess.Popen(lispvm_command() + ["run", "--schedulers", "2", str(prog)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmp_path)},
                            start_new_session=True)
    try:
        path = None
        for _ in range(1000):
            found = list(tmp_path.glob(f"lispvm-*/{target}"))
            if found:
                path = found[0]
                break
            time.sleep(0.01)
        assert path is not None, f"no {target} appeared"
        for payload in PAYLOADS.values():
            s = _connect(path)
            s.sendall(codec.encode_frame(payload))
            s.close()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert "Traceback" not in err, err
    assert (out, proc.returncode) == ("main got ready\nmain timeout\n", 0), (out, proc.returncode, err)
    refused = [line for line in err.splitlines() if "a malformed event from an unknown connection" in line]
    assert len(refused) == len(PAYLOADS), err
    assert sum("a first frame of" in line for line in refused) == 1, err  # refused undecoded
    assert err.count("\n") == len(PAYLOADS), err  # one line each, nothing else


class _Node:
    """What ClusterNode.handle reads of its node, for events that never reach a real one."""

    def __init__(self, sid: int = 0) -> None:
        self.sid = sid
        self.nschedulers = 3
        self.secret = b"s" * 16
        self.greeted: set[int] = set()
        self.dead: set[int] = set()
        self.recvd = 0
        self.hellos: list[tuple] = []

    def on_hello(self, link: object, ev: tuple) -> None:
        self.greeted.add(ev[1])
        self.hellos.append(ev)


class _Link:
    peer: int | None = None


def _refused(node: _Node, link: _Link, ev: object) -> str | None:
    try:
        cluster.ClusterNode.handle(node, link, ev)  # type: ignore[arg-type]
    except events.Refused as e:
        return str(e)
    return None


def test_a_hello_cannot_claim_a_connected_scheduler_itself_or_one_out_of_range() -> None:
    node = _Node(sid=0)
    token = node.secret
    assert _refused(node, _Link(), ("hello", 0, None, token)) is not None  # the receiver itself
    assert _refused(node, _Link(), ("hello", 3, None, token)) is not None  # out of range
    assert _refused(node, _Link(), ("hello", True, None, token)) is not None  # not a number
    assert _refused(node, _Link(), ("hello", 1, None, b"t" * 16)) is not None  # not this node's token
    assert _refused(node, _Link(), ("hello", 1, -5, token)) is not None  # not an OS pid
    assert node.hellos == []
    first = _Link()
    assert _refused(node, first, ("hello", 1, 1234, token)) is None
    assert node.hellos == [("hello", 1, 1234, token)]
    first.peer = 1  # (what on_hello sets)
    assert _refused(node, _Link(), ("hello", 1, None, token)) is not None  # scheduler 1 is connected
    assert _refused(node, first, ("hello", 2, None, token)) is not None  # a second hello
    node.dead.add(2)
    assert _refused(node, _Link(), ("hello", 2, None, token)) is not None  # a scheduler that died
    assert len(node.hellos) == 1


def test_events_of_a_greeted_peer_are_still_checked() -> None:
    node = _Node(sid=0)
    link = _Link()
    link.peer = 1
    for ev in [("ev", 1), ("ev", Pid(0, 1), None, 3, "m", 1), ("ev", Pid(0, 1), None, None, "x", 1),
               ("ev", Pid(0, 1), None, None, "s", ("exit", 1, 2)), ("ev", Pid(0, 1), None, None, "s", ("boom",)),
               ("moved", 1, 7), ("idle", -1), ("sched_down", 0), ("define", 5, 1), ("proc", 1, 1, ()),
               ("register", intern("n"), Pid(0, 1), 5), ("idle_report", 1, True, 0, 0, False),
               ("stop",), ("mainpid", Pid(0, 1)), [1], ("hello",)]:
        assert _refused(node, link, ev) is not None, ev
    assert node.recvd == 0


def test_an_event_too_large_to_pass_on_does_not_cut_off_its_peer(monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """TooLarge is a ValueError: raised while a handler passes an event on (a forward after a move
    can grow a message at the limit by its envelope), it closed the peer's connection as if the
    peer had sent something malformed. Now it is one line on standard error, and the link stays."""
    from lispvm.vm.codec import TooLarge

    def passes_on(node: object, link: object, ev: tuple) -> None:
        raise TooLarge("encoded message larger than the limit")

    monkeypatch.setitem(cluster._HANDLERS, "hello", passes_on)
    node = _Node(sid=0)
    assert _refused(node, _Link(), ("hello", 1, 1234, node.secret)) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not be passed on" in err, err


# --- scheduler/framing.py: the channel under the links -----------------------------------------

@pytest.mark.parametrize("seed", [None, 1, 2])
def test_a_channel_delivers_every_frame_in_order_through_partial_writes(seed: int | None) -> None:
    """Frames far larger than the socket's buffers, queued on both ends at once: flush leaves
    bytes unsent (it never blocks), and writing again whenever the socket is writable while
    reading whatever arrives delivers every frame whole and in order both ways, also with chaos
    mode's small buffers and writes split into random pieces."""
    import select

    from lispvm.scheduler.chaos import Chaos
    from lispvm.scheduler.framing import Channel

    a, b = socket.socketpair()
    ends = [Channel(a, None if seed is None else Chaos(seed, 0)), Channel(b, None if seed is None else Chaos(seed, 1))]
    sent = [[("frame", i, "x" * (i * 997 % 70000)) for i in range(60)] for _ in ends]
    got: list[list] = [[], []]
    try:
        for ch, frames in zip(ends, sent):
            for f in frames:
                ch.queue(f)
        left = [ch.flush() for ch in ends]
        assert any(left), "nothing was left unsent: the frames do not exercise partial writes"
        deadline = time.monotonic() + 60
        while (any(left) or any(len(g) < 60 for g in got)) and time.monotonic() < deadline:
            for i, ch in enumerate(ends):
                events = select.POLLIN | (select.POLLOUT if left[i] else 0)
                p = select.poll()
                p.register(ch.fd, events)
                for _fd, revents in p.poll(10):
                    if revents & select.POLLOUT:
                        left[i] = ch.write()
                    if revents & select.POLLIN:
                        frames = ch.read()
                        assert frames is not None, "the channel closed"
                        got[i].extend(frames)
        assert got[1] == sent[0] and got[0] == sent[1]
    finally:
        for ch in ends:
            ch.close()


def test_a_channel_refuses_a_frame_over_its_limit_in_one_line(capsys: pytest.CaptureFixture) -> None:
    """A header announcing more than the frame limit: read says the connection is over (None),
    the channel is closed, and one line on standard error names the peer."""
    from lispvm.scheduler.transport import Link

    a, b = socket.socketpair()
    link = Link(a, 3)
    try:
        b.sendall((codec.MAX_MESSAGE + 1).to_bytes(codec.HEADER, "little") + b"x" * 16)
        assert link.read() is None and link.closed
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("lispvm: a malformed message from peer 3 ("), err
    finally:
        link.close()
        b.close()
