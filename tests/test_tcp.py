"""TCP (LANGUAGE.md section 14, scheduler/tcp.py): the programs of tests/net/ through `lispvm run`
on one and three schedulers, --allow-net refused and allowed, and the chat server example with
real clients."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from conftest import run_cli
from test_examples import parse_expectations

from support import lispvm_command

NET = Path(__file__).resolve().parent / "net"
EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


def run_program(name: str, *flags: str) -> None:
    """Run tests/net/NAME with FLAGS; its output must be its `; expect:` lines, nothing on stderr."""
    program = NET / name
    exp = parse_expectations(program.read_text(encoding="utf-8"))
    out, err, status = run_cli(["run", *flags, program.name], cwd=NET, timeout=120)
    assert "Traceback" not in err, err
    assert out.splitlines() == exp.lines, err
    assert status == 0 and err == "", err


@pytest.mark.parametrize("schedulers", ["1", "3"])
def test_tcp_program(schedulers: str) -> None:
    run_program("tcp.lisp", "--allow-net=127.0.0.1,localhost", "--schedulers", schedulers)


@pytest.mark.parametrize("chaos", ["", "3"])
def test_sockets_across_schedulers(chaos: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # a socket stays on scheduler 1; its new owner from scheduler 2 and a sender from there come
    # to it; owners are never moved (by balancing, nor by chaos mode's random moves)
    monkeypatch.setenv("LISPVM_CHAOS", chaos)
    if not chaos:
        monkeypatch.delenv("LISPVM_CHAOS")
    run_program("tcp_schedulers.lisp", "--allow-net=127.0.0.1", "--schedulers", "3")


PERMS = """
(def try-kind (fn (thunk) (try (thunk) (catch e (list (nth e 1) (nth e 2))))))
(def l (try-kind (fn () (tcp/listen 0 "127.0.0.1"))))
(print (if (list? l) (head l) "listening"))
(print (head (try-kind (fn () (tcp/connect "127.0.0.1" 9)))))
(print (head (try-kind (fn () (tcp/connect "localhost" 9)))))
(print (let ((e (try-kind (fn () (tcp/connect "10.0.0.1" 80))))) (nth e 1)))
"""


@pytest.mark.parametrize(("flags", "expected"), [
    ((), ["eacces", "eacces", "eacces"]),
    (("--allow-net=127.0.0.1",), ["listening", "econnrefused", "eacces"]),
    (("--allow-net=127.0.0.1:9,localhost",), ["eacces", "econnrefused", "econnrefused"]),
])
def test_allow_net(tmp_path: Path, flags: tuple, expected: list) -> None:
    prog = tmp_path / "perm.lisp"
    prog.write_text(PERMS, encoding="utf-8")
    out, err, status = run_cli(["run", "--schedulers", "1", *flags, prog.name], cwd=tmp_path, timeout=60)
    assert status == 0, err
    lines = out.splitlines()
    assert lines[:3] == expected
    # the refusal names the flag that would allow it, and the host:port asked for
    assert lines[3] == "tcp/connect: 10.0.0.1:80: network access is not allowed (allowed by --allow-net)"


def _line(f) -> str:
    return f.readline().decode()


def test_chat_example() -> None:
    """docs/examples/chat.lisp: two clients, a message from one reaches the other, a client that
    leaves is announced (one whose connection is reset too), and the server ends on SIGTERM with nothing left behind."""
    proc = subprocess.Popen(lispvm_command() + ["run", "--allow-net=127.0.0.1", str(EXAMPLES / "chat.lisp"), "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        first = proc.stdout.readline().decode()
        assert first.startswith("chat: listening on port "), first + proc.stderr.read().decode()
        port = int(first.split()[-1])
        a = socket.create_connection(("127.0.0.1", port), timeout=30)
        b = socket.create_connection(("127.0.0.1", port), timeout=30)
        fa, fb = a.makefile("rb"), b.makefile("rb")
        a.sendall(b"/nick ann\n")
        assert _line(fa) == "* you are ann\n"
        b.sendall(b"/nick bob\n")
        assert _line(fb) == "* you are bob\n"
        assert _line(fa) == "* bob joined\n"
        a.sendall("hello, bob ✓\n".encode())
        assert _line(fb) == "ann: hello, bob ✓\n"
        b.sendall(b"hi\n")
        assert _line(fa) == "bob: hi\n"
        c = socket.create_connection(("127.0.0.1", port), timeout=30)
        fc = c.makefile("rb")
        c.sendall(b"/nick cal\n")
        assert _line(fc) == "* you are cal\n"
        assert (_line(fa), _line(fb)) == ("* cal joined\n", "* cal joined\n")
        fc.close()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()  # a reset, not an end: its handler reads econnreset, and cal is still announced
        assert (_line(fa), _line(fb)) == ("* cal left\n", "* cal left\n")
        fa.close()
        a.close()  # (the file made from it held the socket open)
        assert _line(fb) == "* ann left\n"
        b.sendall(b"/quit\n")
        assert _line(fb) == "* bye\n"
        assert fb.read() == b""  # the server closed the connection
        b.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert b"Traceback" not in err and b"crashed" not in err, err
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the node's schedulers are gone with it
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("a process of the chat server's group is still running")


def test_tcp_program_under_chaos() -> None:
    # random moves of every process that owns nothing, early preemption, small socket buffers
    program = NET / "tcp.lisp"
    exp = parse_expectations(program.read_text(encoding="utf-8"))
    out, err, status = run_cli(["run", "--allow-net=127.0.0.1,localhost", "--schedulers", "3", program.name],
                               cwd=NET, timeout=120, env={"LISPVM_CHAOS": "2"})
    assert out.splitlines() == exp.lines and status == 0, err


LINES = """
(def l (tcp/listen 0 "127.0.0.1"))
(print (tcp/port l))
(def s (tcp/accept l))
(def echo (fn ()
  (let ((line (tcp/recv-line s)))
    (unless (nil? line)
      (tcp/send s (str (str/length line) " " line "\\n"))
      (echo)))))
(echo)
(print "end")
"""


def test_lines_bytes_and_utf8(tmp_path: Path) -> None:
    """A character split between two reads arrives whole, CR LF ends a line like LF, and bytes
    that are not UTF-8 come back as they were sent."""
    (tmp_path / "lines.lisp").write_text(LINES, encoding="utf-8")
    proc = subprocess.Popen(lispvm_command() + ["run", "--allow-net=127.0.0.1", "--schedulers", "1", "lines.lisp"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        port = int(proc.stdout.readline())
        with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
            f = c.makefile("rb")
            c.sendall(b"h\xc3")
            time.sleep(0.05)
            c.sendall(b"\xa9llo\r\n")
            assert f.readline() == "5 héllo\n".encode()
            c.sendall(b"\xff\xfeab\n")
            assert f.readline() == b"4 \xff\xfeab\n"
            f.close()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (out, err, proc.returncode) == (b"end\n", b"", 0)


def test_handles_travel_in_the_codec() -> None:
    from lispvm.vm import codec
    from lispvm.vm.handles import Handle

    h = Handle("socket", 2, 7)
    assert repr(h) == "#<socket 2.7>"
    back = codec.decode(codec.encode([h, Handle("port", 0, 1)]))
    assert back == [h, Handle("port", 0, 1)] and hash(back[0]) == hash(h)
    assert back[0] != Handle("listener", 2, 7)
    bad = codec.encode(Handle("socket", 2, 7)).replace(b"socket", b"sucket")
    with pytest.raises(codec.CodecError, match="malformed handle"):
        codec.decode(bad)



def test_close_writes_what_was_sent_first() -> None:
    """A socket closed with bytes the kernel has not taken yet still delivers them all, then the
    end (its descriptor lingers until they are written); the node's end releases it at once."""
    from types import SimpleNamespace

    from lispvm.scheduler.poller import Poller
    from lispvm.scheduler.tcp import CLOSING, TcpSocket

    class Io:  # what a TcpSocket asks of its scheduler's I/O service
        def __init__(self) -> None:
            self.sched = SimpleNamespace(id=0, procs={}, node=None)
            self.poller = Poller()
            self.owned: dict = {}

        def own(self, proc, res) -> None:
            self.owned.setdefault(proc.pid.key, []).append(res)

        def disown(self, proc, res) -> None:
            key = proc.key if hasattr(proc, "key") else proc.pid.key
            if res in self.owned.get(key, []):
                self.owned[key].remove(res)

    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # the kernel takes little of it
    io = Io()
    owner = SimpleNamespace(pid=SimpleNamespace(key=1))
    sock = TcpSocket(io, owner, server)
    payload = b"0123456789" * 20_000
    assert sock.try_send(payload)  # (under the high-water mark: the sender goes on)
    assert sock.wbuf, "the kernel took everything: nothing would linger"
    sock.close()
    assert sock.lingering and io.owned[CLOSING] == [sock]
    got = bytearray()
    client.setblocking(False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        io.poller.poll(0.05)
        try:
            data = client.recv(1 << 20)
        except BlockingIOError:
            continue
        if not data:
            break
        got += data
    client.close()
    assert bytes(got) == payload
    assert not sock.lingering and io.owned[CLOSING] == [] and sock.sock.fileno() == -1
    # the node's end closes what it holds again: a lingering socket goes at once
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sock = TcpSocket(io, owner, server)
    sock.try_send(payload)
    sock.close()
    assert sock.lingering
    for res in list(io.owned[CLOSING]):
        res.close()
    assert not sock.lingering and sock.sock.fileno() == -1 and io.owned[CLOSING] == []
    client.close()


CONNECT_AFTER_OWNER = """(def l (tcp/listen 0 "127.0.0.1"))
(def port (tcp/port l))
(def me (self))
(def h (spawn-on 1 (fn () (receive ((list 'sock s) (send me (list 'got (tcp/recv-line s))))))))
(def c (tcp/connect "127.0.0.1" port))
(def s (tcp/accept l))
(tcp/owner s h)
(send h (list 'sock s))
(tcp/send c "hi\\n")
(print (receive (m m)))
(def more (fn (n) (if (== n 0) 'connected (do (tcp/close (tcp/connect "127.0.0.1" port)) (more (- n 1))))))
(print (more 5))
"""


def test_a_connect_completing_while_the_hub_is_idle_is_not_a_deadlock(tmp_path: Path) -> None:
    """A connect completes through a writable descriptor, which the poller does not count as
    input: the hub resumed the main process and still took the node for deadlocked."""
    (tmp_path / "c.lisp").write_text(CONNECT_AFTER_OWNER, encoding="utf-8")
    out, err, status = run_cli(["run", "--schedulers", "2", "--allow-net=127.0.0.1", "c.lisp"], cwd=tmp_path,
                               timeout=60)
    assert (out, err, status) == ('(got "hi")\nconnected\n', "", 0)


CONNECT_TIMEOUT = """
(def port (parse-int (head (sys/args))))
(def t (fn (f) (try (f) (catch e (list (nth e 1) (nth e 2))))))
(def t0 (now-ms))
(print (t (fn () (tcp/connect "127.0.0.1" port 300))))
(print (>= (- (now-ms) t0) 290))
(print (t (fn () (tcp/connect "localhost" port 200))))
(print (t (fn () (tcp/connect "127.0.0.1" port -1))) (t (fn () (tcp/connect "127.0.0.1" port "x")))
       (t (fn () (tcp/connect "127.0.0.1" port 1.5))) (t (fn () (tcp/connect "127.0.0.1" port 2147483648))))
(def me (self))
(spawn-on 1 (fn () (send me (list (sys/scheduler-id) (t (fn () (tcp/connect "127.0.0.1" port 200)))))))
(receive (x (print 'far x)))
; killed while it connects: its deadline still comes and drops the attempt, nothing is reported
(def k (spawn (fn () (tcp/connect "127.0.0.1" port 300))))
(timer/sleep 50)
(exit k 'kill)
(timer/sleep 400)
; a connection that is made in time: its deadline is forgotten (nothing raised later), nil waits
; for the system's own
(def l (tcp/listen 0 "127.0.0.1"))
(def c (tcp/connect "127.0.0.1" (tcp/port l) 300))
(def c2 (tcp/connect "127.0.0.1" (tcp/port l) nil))
(timer/sleep 400)
(print 'connected (tcp/send c "x") (tcp/send c2 "y"))
"""


@pytest.mark.parametrize("schedulers", ["1", "3"])
def test_connect_timeout(tmp_path: Path, schedulers: str) -> None:
    # a listener with a backlog of 0 and one connection queued that nobody accepts: the
    # kernel answers no further connection attempt, which waits until tcp/connect's deadline
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(0)
    port = hung.getsockname()[1]
    queued = socket.create_connection(("127.0.0.1", port))
    try:
        prog = tmp_path / "connect.lisp"
        prog.write_text(CONNECT_TIMEOUT)
        out, err, status = run_cli(["run", "--allow-net", "--schedulers", schedulers, prog, port], timeout=120)
    finally:
        queued.close()
        hung.close()
    assert status == 0 and err == "", err
    lines = out.splitlines()
    assert lines[0] == f'(etimedout "tcp/connect: 127.0.0.1:{port}: Connection timed out (after 300 ms)")', lines
    assert lines[1] == "true"
    assert lines[2] == f'(etimedout "tcp/connect: localhost:{port}: Connection timed out (after 200 ms)")', lines
    assert lines[3].count('(badarg "tcp/connect: the timeout is milliseconds from 0 to 2,147,483,647, or nil') == 4
    far = 0 if schedulers == "1" else 1
    assert lines[4] == f'far ({far} (etimedout "tcp/connect: 127.0.0.1:{port}: Connection timed out (after 200 ms)"))'
    assert lines[5:] == ["connected true true"], lines


@pytest.mark.parametrize("schedulers", ["1", "3"])
def test_flow_control(schedulers: str) -> None:
    run_program("flow.lisp", "-A", "--schedulers", schedulers)


@pytest.mark.parametrize("chaos", ["", "3"])
def test_sockets_spread_over_schedulers(chaos: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # a socket handed to a process on another scheduler goes there (its descriptor is passed),
    # with what was received for it; under chaos mode's random moves too
    monkeypatch.setenv("LISPVM_CHAOS", chaos)
    if not chaos:
        monkeypatch.delenv("LISPVM_CHAOS")
    run_program("spread.lisp", "--allow-net=127.0.0.1", "--schedulers", "3")
