"""Ports: programs run by a Lisp process, their lines as messages (LANGUAGE.md section 14).

Owns: the resource behind a `#<port ...>` handle (vm/handles.py): the child process (started
without a shell), its standard input (port/send, port/close, with back-pressure), its standard
output read on the scheduler's Poller and cut into `(port p (line text))` messages to the owner,
its end as `(port p (exit status))` (after the last line), and killing and reaping the child
when its owner ends or the node stops. The child runs in a session of its own, and the kill is
for its whole process group, so that what it started (a shell's commands) dies with it.
Must never: run a shell, block the scheduler (pipes are non-blocking; the child's end is
watched through a pidfd), or leave a child behind: a killed child is reaped at once if it is
gone, else when its pidfd says so, and at the latest when the node stops (the I/O service closes
it again: Port.close).
"""

from __future__ import annotations

import codecs
import os
import signal
import subprocess
from collections import deque

from ..vm import handles
from ..vm.errors import MAX_TEXT
from ..vm.net_builtins import closed_error
from ..vm.process import Process
from ..vm.values import TRUE, Cons, from_list, intern
from .io import IoService, io_op
from .tcp import CHUNK, CLOSING, HIGH_WATER, LOW_WATER, _Key, _Resource, _sync, os_error_value, send_on

__all__ = ["Port", "exit_status"]

PORT, LINE, EXIT = intern("port"), intern("line"), intern("exit")
READS_PER_WAKE = 16  # chunks read from a child's output at one wake-up at most


def exit_status(returncode: int) -> int:
    """A child's exit status as a shell gives it: its code, or 128 + the signal that ended it."""
    return returncode if returncode >= 0 else 128 - returncode


class Port(_Resource):
    """A running program: stdin written from tcp-like sends, stdout as line messages."""

    kind = "port"
    mailbox_high = 10_000  # (a line is a message: more of them than a socket's chunks)
    mailbox_low = 2_500
    __slots__ = ("child", "pidfd", "stdin", "stdout", "decoder", "partial", "wbuf", "senders", "out_done",
                 "status", "closing", "writing", "reading", "program")

    def __init__(self, io: IoService, owner: Process, child: subprocess.Popen, program: str) -> None:
        self.child = child
        self.program = program
        self.stdin = child.stdin.fileno()
        self.stdout = child.stdout.fileno()
        os.set_blocking(self.stdin, False)
        os.set_blocking(self.stdout, False)
        self.pidfd = os.pidfd_open(child.pid)
        self.decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self.partial = ""  # the start of a line not ended yet
        self.wbuf = bytearray()
        self.senders: deque[Process] = deque()
        self.out_done = False  # standard output reached its end
        self.status: int | None = None  # the exit status, once reaped
        self.closing = False  # port/close: stdin is closed once wbuf is written
        self.writing = False
        self.reading = False
        super().__init__(io, owner)
        io.poller.add_reader(self.pidfd, self._on_exit)
        self._want_read()

    # --- standard output -> messages -------------------------------------------------------

    def _want_read(self) -> None:
        want = (not self.out_done and self.backlog is None and (proc := self.owner_proc()) is not None
                and self.room(proc))
        if want != self.reading:
            self.reading = want
            if want:
                self.io.poller.add_reader(self.stdout, self._on_output)
            else:
                self.io.poller.remove_reader(self.stdout)

    def _line(self, text: str) -> None:
        # (port p (line text)), built cell by cell: one per line of output, the hot path here
        self.tell_owner(Cons(PORT, Cons(self.handle, Cons(Cons(LINE, Cons(text, None)), None))))

    def _on_output(self) -> None:
        """Standard output is readable: read what the pipe holds (a few chunks at most, so one
        busy child cannot hold the scheduler), cut it into lines, and hand the owner all their
        messages at once: one mailbox extend and one wake-up for the lot."""
        data = b""
        got: bytes | None = None
        proc = self.owner_proc()
        try:
            for _ in range(READS_PER_WAKE):
                got = os.read(self.stdout, CHUNK)
                if not got:
                    break
                data += got
                if len(got) < CHUNK:  # (the pipe is empty now: save the read that would say so)
                    got = None
                    break
                if proc is not None and not self.room(proc, data.count(b"\n")):
                    got = None
                    break  # (flow control: the owner has enough to receive for now)
        except (BlockingIOError, InterruptedError):
            got = None
        except OSError:
            got = b""
        if data:
            text = self.partial + self.decoder.decode(data)
            lines = text.split("\n")
            self.partial = lines.pop()
            if len(self.partial) > MAX_TEXT:  # a line that never ends is cut rather than held whole
                lines.append(self.partial)
                self.partial = ""
            if lines:
                h = self.handle
                self._tell_all([Cons(PORT, Cons(h, Cons(Cons(LINE, Cons(line, None)), None))) for line in lines])
        if got != b"":
            self._want_read()  # (flow control: the owner's mailbox may be full now)
            return
        self.partial += self.decoder.decode(b"", final=True)
        if self.partial:
            self._line(self.partial)
            self.partial = ""
        self.out_done = True
        self._want_read()
        self._finish()

    def _tell_all(self, msgs: list) -> None:
        """Deliver `msgs` to the owner in order: appended to its mailbox in one go and one
        wake-up, when it runs here; kept for it otherwise (tell_owner)."""
        proc = self.owner_proc()
        if proc is None or self.backlog is not None:
            for msg in msgs:
                self.tell_owner(msg)
            return
        last = msgs.pop()
        if msgs:
            mb = proc.mailbox
            if mb is None:
                proc.mailbox = msgs
            else:
                mb += msgs
        self.io.sched.deliver(proc, last)  # (the last one through the scheduler: it wakes the owner)

    def _on_exit(self) -> None:
        """The child ended (its pidfd is readable): reap it; the exit message follows the last line."""
        rc = self.child.poll()
        if rc is None:  # pragma: no cover - a pidfd is readable only once the child has ended
            return
        self.io.poller.remove(self.pidfd)
        os.close(self.pidfd)
        self.pidfd = -1
        self.status = exit_status(rc)
        self._finish()

    def _finish(self) -> None:
        if self.out_done and self.status is not None and not self.closed:
            self.tell_owner(from_list([PORT, self.handle, from_list([EXIT, self.status])]))
            self._release(kill=False)

    # --- standard input --------------------------------------------------------------------

    def try_send(self, payload: bytes) -> bool:
        """Queue `payload` for the child's standard input; whether the sender may go on now.
        The bytes are written when the poller says the pipe takes them (at the scheduler's next
        poll): the sends of one pass go in one write, where a write per send woke the child,
        and then this scheduler, once per send (docs/performance.md, "Ports")."""
        if self.closed or self.closing:
            raise closed_error("port/send", self.handle)
        self.wbuf += payload
        if not self.writing:
            self.writing = True
            self.io.poller.add_writer(self.stdin, self._on_writable)
        return len(self.wbuf) <= HIGH_WATER

    def wait_send(self, proc: Process) -> None:
        if len(self.wbuf) <= LOW_WATER:
            self.io.complete(proc, TRUE)
        else:
            self.senders.append(proc)

    def _on_writable(self) -> None:
        err = None
        try:
            while self.wbuf:
                n = os.write(self.stdin, self.wbuf)
                del self.wbuf[:n]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as e:  # the child closed its input (or ended): what it did not take is dropped
            self.wbuf.clear()
            err = os_error_value("port/send", e, repr(self.handle))
        while self.senders and (err is not None or len(self.wbuf) <= LOW_WATER):
            if err is not None:
                self.io.complete(self.senders.popleft(), error=err)
            else:
                self.io.complete(self.senders.popleft(), TRUE)
        if not self.wbuf:
            self.writing = False
            self.io.poller.remove_writer(self.stdin)
            if self.closing:
                self._close_stdin()

    def close_input(self) -> None:
        """port/close: the child's standard input ends (after what was sent is written)."""
        if self.closed or self.closing:
            return
        self.closing = True
        if not self.wbuf:
            self._close_stdin()

    def _close_stdin(self) -> None:
        if self.stdin >= 0:
            self.io.poller.remove(self.stdin)
            self.child.stdin.close()
            self.stdin = -1

    # --- the owner, and the end ------------------------------------------------------------

    @property
    def wakes(self) -> bool:
        """Can this port still send its owner a message (io.IoService.outstanding)?"""
        return not self.closed

    def owner_here(self) -> None:
        self._want_read()

    def owner_left(self) -> None:
        self._want_read()

    def close(self) -> None:
        """The owner ended (or the node stops): the child is killed and reaped. Called again by
        the I/O service at the node's end on a child killed and not reaped yet: it waits for it."""
        if not self.closed:
            self._release(kill=True)
        elif self.pidfd >= 0 and self.pidfd in _REAPING:
            try:
                self.child.wait(timeout=2.0)
            except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
                return
            self._reaped(self.pidfd)

    def _release(self, kill: bool) -> None:
        self.closed = True
        handles.forget(self.handle)
        owner = self.owner_proc()
        if owner is not None:
            self.io.disown(owner, self)
        poller = self.io.poller
        for fd in (self.stdin, self.stdout):
            if fd >= 0:
                poller.remove(fd)
        self.reading = self.writing = False
        for f in (self.child.stdin, self.child.stdout):
            try:
                if f is not None:
                    f.close()
            except OSError:  # pragma: no cover
                pass
        self.stdin = self.stdout = -1
        err = closed_error("port/send", self.handle).value
        while self.senders:
            self.io.complete(self.senders.popleft(), error=err)
        if kill and self.status is None:
            _kill_group(self.child)
            if self.child.poll() is None and self.pidfd >= 0:
                _REAPING[self.pidfd] = self  # reaped when its pidfd says it has ended
                self.io.owned.setdefault(CLOSING, []).append(self)  # (or at the node's end)
                poller.add_reader(self.pidfd, lambda fd=self.pidfd: self._reaped(fd))
                return
        if self.pidfd >= 0:
            poller.remove(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = -1

    def _reaped(self, fd: int) -> None:
        self.child.poll()
        if self.child.returncode is None:  # pragma: no cover
            return
        _REAPING.pop(fd, None)
        self.io.disown(_Key(CLOSING), self)
        self.io.poller.remove(fd)
        os.close(fd)
        self.pidfd = -1


_REAPING: dict[int, Port] = {}  # pidfd -> a killed child not reaped yet


def _kill_group(child: subprocess.Popen) -> None:
    """SIGKILL the child's process group (the child and what it started: a shell's sleep), while
    the child is not reaped yet, so that its pid, the group's id, cannot name anyone else."""
    if child.returncode is not None:
        return
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except OSError:  # (the child left its group: at least the child itself)
        try:
            child.send_signal(signal.SIGKILL)
        except OSError:  # pragma: no cover - already reaped
            pass


def _drop_inherited() -> None:
    """In a forked scheduler: the parent's children and pipes are not this process's."""
    for res in handles.live():
        if isinstance(res, Port):
            for fd in (res.stdin, res.stdout, res.pidfd):
                if fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:  # pragma: no cover
                        pass
            handles.forget(res.handle)
    for fd in list(_REAPING):
        try:
            os.close(fd)
        except OSError:  # pragma: no cover
            pass
    _REAPING.clear()


os.register_at_fork(after_in_child=_drop_inherited)


@io_op("port/open")
def op_open(io: IoService, proc: Process, args: tuple) -> None:
    program, argv = args
    try:
        # its own session, so its process group holds what it starts too: killed with it
        child = subprocess.Popen([program, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 close_fds=True, shell=False, start_new_session=True)
    except OSError as e:
        io.complete(proc, error=os_error_value("port/open", e, program))
        return
    io.complete(proc, Port(io, proc, child, program).handle)


@io_op("port/send")
def op_send(io: IoService, proc: Process, args: tuple) -> None:
    send_on(io, proc, "port/send", args)


def _register_sync() -> None:
    from ..vm import net_builtins as nb

    io_op("port/close")(_sync("port/close", nb.b_port_close))
    io_op("port/owner")(_sync("port/owner", nb.b_port_owner))


_register_sync()
