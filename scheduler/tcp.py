"""TCP for Lisp processes: listeners and sockets on a scheduler's poller (LANGUAGE.md section 14).

Owns: the resource objects behind `#<listener ...>` and `#<socket ...>` handles (vm/handles.py),
their non-blocking I/O on the scheduler's Poller (scheduler/poller.py), passive reads
(tcp/recv, tcp/recv-line), active mode (`(tcp sock data)` and `(tcp-closed sock)` messages to the
owner), sends with back-pressure, owner changes, and the io handlers of the tcp/ builtins
(registered with scheduler/io.py's `io_op`). Must never: block the scheduler (every socket is
non-blocking; name lookups go to the I/O service's thread pool), deliver a message to an owner
that is not on this scheduler (it waits in the resource until the owner arrives), or read from
a socket whose data nobody would take.

Where sockets live (docs/processes.md, "Sockets and ports"; docs/io.md, "Spreading connections
over schedulers"): in the OS process of the scheduler that holds them; their owners are pinned
there (scheduler/balance.py never moves them), and a process that calls tcp/ on a socket held
elsewhere is moved there with its call. A connected socket handed by tcp/owner to a process on
another scheduler is offered there: the new owner's first call on it takes the descriptor
(SCM_RIGHTS over a Unix socket in the node's private directory) with its state and waiting
messages, and the handle, unchanged, is forwarded from the old scheduler. Unclaimed for a
moment, the new owner is asked to come instead (a "pull"); listeners and ports always pull.
"""

from __future__ import annotations

import array
import codecs
import contextlib
import errno
import ipaddress
import os
import socket
from collections import deque
from typing import Any

from ..vm import handles
from ..vm.codec import CodecError, decode, encode
from ..vm.errors import MAX_TEXT, LispError, badarg, runtime_error, system_limit
from ..vm.net_builtins import WOULD_WAIT, closed_error, encode_text
from ..vm.permissions import os_error
from ..vm.process import Process
from ..vm.values import TRUE, from_list, intern
from .io import IoService, io_op
from .kernel import BLOCKED as _BLOCKED
from .kernel import DEAD as _DEAD

__all__ = ["TcpListener", "TcpSocket", "os_error_value", "pending", "HIGH_WATER", "LOW_WATER", "CHUNK"]

TCP, TCP_CLOSED, TCP_PASSIVE = intern("tcp"), intern("tcp-closed"), intern("tcp-passive")
CHUNK = 65536  # bytes read at once from a socket
HIGH_WATER = 256 * 1024  # unsent bytes past which tcp/send waits until they fall to LOW_WATER
LOW_WATER = 64 * 1024
BACKLOG = 128
RECHECK_S = 0.005  # how often a resource paused on its owner's full mailbox looks at it again
MAX_ACTIVE_COUNT = 1 << 20  # the most messages (tcp/active sock n) may have to come at once


def os_error_value(name: str, exc: OSError, what: str) -> Any:
    """`(error KIND "NAME: WHAT: reason")`, KIND the errno's name in lower case (econnrefused)."""
    return os_error(OSError(exc.errno, exc.strerror or str(exc), what), name)


class _Resource:
    """What tcp/ and port/ resources share: a handle, an owner, a home I/O service."""

    kind = ""
    mailbox_high = 256  # the owner's messages not yet received past which this stops reading...
    mailbox_low = 64  # ...until they fall to this many (flow control: docs/io.md)
    __slots__ = ("io", "handle", "owner", "closed", "backlog", "paused", "recheck")

    def __init__(self, io: IoService, owner: Process, handle: Any = None) -> None:
        self.io = io
        if handle is None:
            self.handle = handles.register(self.kind, io.sched.id, self)
        else:  # (a socket handed over by another scheduler keeps its handle: _adopt)
            self.handle = handle
            handles.adopt(handle, self, io.sched.id)
        self.owner = owner.pid
        self.closed = False
        self.backlog: list | None = None  # messages for an owner not on this scheduler yet
        self.paused = False  # reading stopped: the owner's mailbox is full
        self.recheck: list | None = None  # the I/O service's deadline to look at the mailbox again
        io.own(owner, self)

    def room(self, proc: Process, coming: int = 0) -> bool:
        """May more messages go to `proc`, the owner, which has `coming` more on their way?
        Past `mailbox_high` messages not yet received, no: the resource stops reading (the
        data waits in the kernel, and the peer or child is slowed down by its own buffers) and
        looks again every RECHECK_S, reading again once they fall to `mailbox_low`. The owner's
        receive has no hook to say when it took a message; a look every few milliseconds while
        paused costs nothing while not. An owner blocked in a call (its own port/send or tcp/send,
        say) is not receiving anyway, and what it waits for may wait on this very output (cat's
        stdout full, so cat stops reading its stdin): reading goes on for it, as before flow
        control, rather than deadlock."""
        if proc.status == _BLOCKED:
            self.paused = False
            return True
        n = pending(proc) + coming
        if self.paused:
            if n > self.mailbox_low:
                self._look_later()
                return False
            self.paused = False
            return True
        if n >= self.mailbox_high:
            self.paused = True
            self._look_later()
            return False
        return True

    def _look_later(self) -> None:
        if self.recheck is None:
            self.recheck = self.io.call_later(RECHECK_S, self._look_again)

    def _look_again(self) -> None:
        self.recheck = None
        if not self.closed:
            self._want_read()

    def _want_read(self) -> None:  # pragma: no cover - overridden
        pass

    def owner_proc(self) -> Process | None:
        """The owner, if it runs on this scheduler now."""
        return self.io.sched.procs.get(self.owner.key)

    def tell_owner(self, msg: Any) -> bool:
        """Put `msg` in the owner's mailbox, or keep it while the owner is elsewhere; whether it
        was delivered now."""
        proc = self.owner_proc()
        if proc is None or self.backlog is not None:
            if self.backlog is None:
                self.backlog = []
            self.backlog.append(msg)
            return False
        self.io.sched.deliver(proc, msg)
        return True

    def check_owner(self, name: str, pid: Any) -> None:
        """Raise badarg unless `pid` may be alive (a process known to have ended here cannot own)."""
        sched = self.io.sched
        if pid.key in sched.procs:
            return
        node = sched.node
        where = node.where(pid) if hasattr(node, "where") else sched.id
        if where == sched.id or where in getattr(node, "dead", ()):
            raise badarg(f"{name}: process {pid!r} is not alive")

    def set_owner(self, pid: Any, pending: list) -> None:
        """tcp/owner: `pid` owns this from now on; `pending` (the old owner's messages about it,
        in order) reach it before anything new. A new owner on another scheduler is asked to
        come (node.pull); until it is here, nothing is read for it."""
        sched = self.io.sched
        old = sched.procs.get(self.owner.key)
        if old is not None:
            self.io.disown(old, self)
        self.owner = pid
        if pending:
            self.backlog = pending + (self.backlog or [])
        new = sched.procs.get(pid.key)
        if new is not None:
            self.io.own(new, self)
            self.arrived(new)
        else:
            if self.backlog is None:
                self.backlog = []
            AWAITED.setdefault(pid.key, []).append(self)
            # held for it under a key no pid has, so that the node's end still closes it
            self.io.owned.setdefault(-1 - pid.key, []).append(self)
            self.owner_left()
            if not self.offer():  # (a socket goes to its new owner's scheduler if it asks in time)
                sched.node.pull(sched, old, pid)

    def offer(self) -> bool:  # pragma: no cover - overridden by sockets
        return False

    def arrived(self, proc: Process) -> None:
        """The owner runs here (again, or for the first time): deliver what waited for it."""
        backlog, self.backlog = self.backlog, None
        if backlog:
            for msg in backlog:
                self.io.sched.deliver(proc, msg)
        self.owner_here()

    def owner_here(self) -> None:  # pragma: no cover - overridden
        pass

    def owner_left(self) -> None:  # pragma: no cover - overridden
        pass


def pending(proc: Process) -> int:
    """How many messages `proc` has not received yet."""
    mb = proc.mailbox
    return 0 if mb is None else len(mb) - proc.mbhead


CLOSING = "closing"  # IoService.owned key of resources still finishing (no pid has it): the node's end ends them
AWAITED: dict[int, list] = {}  # pid key -> resources handed to it while it ran on another scheduler


def owner_arrived(sched: Any, proc: Process) -> None:
    """`proc` was moved here (balance.adopt): the resources handed to it take it as owner now."""
    for res in AWAITED.pop(proc.pid.key, ()):
        res.io.disown(_Key(-1 - proc.pid.key), res)
        if not res.closed and res.owner == proc.pid:
            res.io.own(proc, res)
            res.arrived(proc)


class _Key:
    """A stand-in with a `key` for IoService.disown (resources held for an owner not here yet)."""

    __slots__ = ("key",)

    def __init__(self, key: int) -> None:
        self.key = key


class TcpListener(_Resource):
    """A listening socket; acceptors wait here in order."""

    kind = "listener"
    __slots__ = ("sock", "fd", "port", "acceptors")

    def __init__(self, io: IoService, owner: Process, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.port = sock.getsockname()[1]
        self.acceptors: deque[Process] = deque()
        super().__init__(io, owner)

    def try_accept(self, proc: Process) -> Any:
        """A connection now (its socket owned by `proc`), or WOULD_WAIT."""
        if self.closed:
            raise runtime_error(intern("closed"), f"tcp/accept: {self.handle!r} is closed")
        if self.acceptors:
            return WOULD_WAIT  # others came first
        try:
            conn, _addr = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return WOULD_WAIT
        except OSError as e:
            raise LispError(os_error_value("tcp/accept", e, repr(self.handle))) from None
        return TcpSocket(self.io, proc, conn).handle

    def wait_accept(self, proc: Process) -> None:
        self.acceptors.append(proc)
        self.io.poller.add_reader(self.fd, self._on_readable)

    def _on_readable(self) -> None:
        while self.acceptors:
            proc = self.acceptors[0]
            if proc.status == _DEAD:
                self.acceptors.popleft()
                continue
            try:
                conn, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.acceptors.popleft()
                self.io.complete(proc, error=os_error_value("tcp/accept", e, repr(self.handle)))
                continue
            self.acceptors.popleft()
            self.io.complete(proc, TcpSocket(self.io, proc, conn).handle)
        self.io.poller.remove_reader(self.fd)

    def close(self) -> None:
        """Close the listener; acceptors waiting get (error closed ...)."""
        if self.closed:
            return
        self.closed = True
        handles.forget(self.handle)
        self.io.poller.remove(self.fd)
        self.sock.close()
        owner = self.owner_proc()
        if owner is not None:
            self.io.disown(owner, self)
        while self.acceptors:
            self.io.complete(self.acceptors.popleft(), error=closed_error("tcp/accept", self.handle).value)


class TcpSocket(_Resource):
    """A connected socket: passive (tcp/recv) until tcp/active, then messages to the owner."""

    kind = "socket"
    __slots__ = ("sock", "fd", "decoder", "rbuf", "eof", "error", "active", "reader", "wbuf", "senders",
                 "reading", "writing", "lingering", "port", "count", "offered")

    def __init__(self, io: IoService, owner: Process, sock: socket.socket, handle: Any = None) -> None:
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover - not every socket takes it
            pass
        self.sock = sock
        self.fd = sock.fileno()
        try:
            self.port = sock.getsockname()[1]
        except OSError:  # pragma: no cover
            self.port = 0
        self.decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self.rbuf = ""  # text received and not yet given to a passive reader
        self.eof = False  # the peer closed its side (or reading failed: self.error)
        self.error: Any = None  # the Lisp error value that ended reading, given once
        self.active = False
        self.count: int | None = None  # active for this many more data messages (None: no limit)
        self.reader: tuple[Process, str] | None = None  # the owner waiting in tcp/recv(-line)
        self.wbuf = bytearray()  # bytes the kernel has not taken yet
        self.senders: deque[Process] = deque()  # waiting until wbuf falls to LOW_WATER
        self.reading = False  # registered as a reader on the poller
        self.writing = False  # registered as a writer
        self.lingering = False  # closed for Lisp; the fd stays until wbuf is written
        self.offered: tuple | None = None  # (listener, path, deadline): offered to a new owner's scheduler
        super().__init__(io, owner, handle)

    # --- reading ---------------------------------------------------------------------------

    def _fill(self) -> bool:
        """Read what the kernel has (one chunk) into rbuf; whether anything changed."""
        if self.eof:
            return False
        try:
            data = self.sock.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as e:
            self.eof = True
            self.error = os_error_value("tcp/recv", e, repr(self.handle))
            self.rbuf += self.decoder.decode(b"", final=True)
            return True
        if not data:
            self.eof = True
            self.rbuf += self.decoder.decode(b"", final=True)
            return True
        self.rbuf += self.decoder.decode(data)
        return True

    def _take(self, name: str, line: bool) -> Any:
        """What a passive read gives now: a chunk, a line, nil at the end, or WOULD_WAIT."""
        buf = self.rbuf
        if line:
            i = buf.find("\n")
            if i >= 0:
                self.rbuf = buf[i + 1:]
                return buf[:i - 1] if i and buf[i - 1] == "\r" else buf[:i]
            if len(buf) > MAX_TEXT:
                raise system_limit(f"{name}: a line of more than {MAX_TEXT:,} characters")
            if not self.eof:
                return WOULD_WAIT
        if buf:
            self.rbuf = ""
            return buf
        if self.eof:
            if self.error is not None:
                err, self.error = self.error, None
                raise LispError(err)
            return None
        return WOULD_WAIT

    def try_recv(self, name: str, line: bool) -> Any:
        """tcp/recv or tcp/recv-line without waiting: the answer, or WOULD_WAIT."""
        if self.closed:
            raise closed_error(name, self.handle)
        if self.active:
            raise badarg(f"{name}: {self.handle!r} is active: its data comes as (tcp sock data) messages")
        got = self._take(name, line)
        while got is WOULD_WAIT and self._fill():
            got = self._take(name, line)
        return got

    def wait_recv(self, proc: Process, name: str) -> None:
        self.reader = (proc, name)
        self._want_read()

    def _want_read(self) -> None:
        """Poll the fd for input only while someone will take it: a waiting reader, or an
        active socket whose owner is here and has room in its mailbox (data stays in the
        kernel otherwise)."""
        want = not self.closed and not self.eof and (self.reader is not None or (
            self.active and self.backlog is None and (proc := self.owner_proc()) is not None and self.room(proc)))
        if want != self.reading:
            self.reading = want
            if want:
                self.io.poller.add_reader(self.fd, self._on_readable)
            else:
                self.io.poller.remove_reader(self.fd)

    def _on_readable(self) -> None:
        if self.active:
            self._pump()
            return
        self._fill()
        reader = self.reader
        if reader is not None:
            proc, name = reader
            try:
                got = self._take(name, name == "tcp/recv-line")
            except LispError as e:  # the reader gets it
                self.reader = None
                self.io.complete(proc, error=e.value)
                self._want_read()
                return
            if got is not WOULD_WAIT:
                self.reader = None
                self.io.complete(proc, got)
        self._want_read()

    def set_active(self, mode: Any = True) -> None:
        """tcp/active: from now on the owner gets (tcp sock data) and (tcp-closed sock); with a
        count, that many more data messages, then (tcp-passive sock) and the socket is passive
        again (a count adds to what is left of an earlier one); False: passive now."""
        if mode is False:
            self.active = False
            self.count = None
            self._want_read()
            return
        if mode is True:
            self.count = None
        elif self.active and self.count is not None:
            self.count = min(self.count + mode, MAX_ACTIVE_COUNT)
        else:
            self.count = mode
        if self.active:
            self._want_read()
            return
        self.active = True
        if self.rbuf:
            data, self.rbuf = self.rbuf, ""
            self._data_message(data, None)
        if self.eof and self.active:
            self._closed_message()
        self._want_read()

    def _data_message(self, data: str, proc: Process | None) -> None:
        """(tcp sock data) to the owner (`proc` when it is here, known to be), counted against
        an active count: the last one it allows is followed by (tcp-passive sock)."""
        msg = from_list([TCP, self.handle, data])
        if proc is not None:
            self.io.sched.deliver(proc, msg)
        else:
            self.tell_owner(msg)
        if self.count is not None:
            self.count -= 1
            if self.count <= 0:
                self.active = False
                self.count = None
                self.tell_owner(from_list([TCP_PASSIVE, self.handle]))

    def _closed_message(self) -> None:
        self.error = None
        self.tell_owner(from_list([TCP_CLOSED, self.handle]))

    def _pump(self) -> None:
        """Active mode: one chunk read becomes one message to the owner."""
        proc = self.owner_proc()
        if proc is None:
            self._want_read()
            return
        if self._fill():
            if self.rbuf:
                data, self.rbuf = self.rbuf, ""
                self._data_message(data, proc)
            if self.eof and self.active:
                self._closed_message()
        self._want_read()

    # --- writing ---------------------------------------------------------------------------

    def try_send(self, payload: bytes) -> bool:
        """Write `payload` (queued behind unsent bytes); whether the sender may go on now
        (False: it waits, wait_send, until the unsent bytes fall to LOW_WATER)."""
        if self.closed:
            raise closed_error("tcp/send", self.handle)
        if not self.wbuf:
            try:
                n = self.sock.send(payload, socket.MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as e:
                raise LispError(os_error_value("tcp/send", e, repr(self.handle))) from None
            if n == len(payload):
                return True
            payload = memoryview(payload)[n:]
        self.wbuf += payload
        if not self.writing:
            self.writing = True
            self.io.poller.add_writer(self.fd, self._on_writable)
        return len(self.wbuf) <= HIGH_WATER

    def wait_send(self, proc: Process) -> None:
        if not self.wbuf or len(self.wbuf) <= LOW_WATER:
            self.io.complete(proc, TRUE)
        else:
            self.senders.append(proc)

    def _on_writable(self) -> None:
        try:
            while self.wbuf:
                n = self.sock.send(self.wbuf, socket.MSG_NOSIGNAL)
                del self.wbuf[:n]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as e:
            self.wbuf.clear()
            err = os_error_value("tcp/send", e, repr(self.handle))
            while self.senders:
                self.io.complete(self.senders.popleft(), error=err)
        if len(self.wbuf) <= LOW_WATER:
            while self.senders:
                self.io.complete(self.senders.popleft(), TRUE)
        if not self.wbuf:
            self.writing = False
            self.io.poller.remove_writer(self.fd)
            if self.lingering:
                self._release()

    # --- handing the socket to an owner on another scheduler (docs/io.md) -------------------

    def offer(self) -> bool:
        """tcp/owner named a process on another scheduler: offer the socket there for a while.
        The new owner's first tcp/ call on it, on its scheduler, connects to the offer's Unix
        socket in the node's private directory (`claim`), and this scheduler sends it the
        descriptor (SCM_RIGHTS) with the socket's state and the messages waiting for the owner
        (`_on_claim`). Unclaimed after OFFER_GRACE_S, the offer is withdrawn and the owner is
        pulled here instead, as before (an owner that only receives never calls)."""
        path = offer_path(self.io.node, self.handle)
        if path is None or self.closed or self.offered is not None:
            return False
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            lsock.bind(path)
            lsock.listen(4)
            lsock.setblocking(False)
        except OSError:
            lsock.close()
            return False
        self.offered = (lsock, path, self.io.call_later(OFFER_GRACE_S, self._offer_expired))
        self.io.poller.add_reader(lsock.fileno(), self._on_claim)
        return True

    def _withdraw(self) -> None:
        if self.offered is None:
            return
        lsock, path, timer = self.offered
        self.offered = None
        self.io.cancel_timer(timer)
        self.io.poller.remove(lsock.fileno())
        lsock.close()
        with contextlib.suppress(OSError):
            os.unlink(path)

    def _offer_expired(self) -> None:
        if self.offered is None:
            return
        self._withdraw()
        if not self.closed and self.owner_proc() is None:
            self.io.sched.node.pull(self.io.sched, None, self.owner)

    def _on_claim(self) -> None:
        """A scheduler connects to the offer: if the claim comes from the owner, send it the
        socket and forget it here; otherwise (or if sending fails) it stays here, offered."""
        if self.offered is None:
            return
        try:
            conn, peer = self.offered[0].accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        with conn:
            k, key = _claimer(peer)
            if key != self.owner.key or k is None or self.closed or self.senders or self.reader is not None:
                return  # (the caller then comes here, as any caller of a socket held elsewhere)
            state = (self.rbuf, self.eof, self.error, self.active, self.count, self.decoder.getstate(),
                     bytes(self.wbuf), self.backlog or [], self.port)
            try:
                payload = encode(state, limit=MAX_OFFER)
                conn.settimeout(1.0)
                conn.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [self.fd]))])
            except (OSError, CodecError):
                return  # (too much waiting for the owner, or the claimer gave up: it comes here)
        self._gone_to(k)

    def _gone_to(self, k: int) -> None:
        """The socket was sent to scheduler k: this scheduler's copy of it goes, and calls here
        on its handle are sent on to k."""
        self._withdraw()
        self.closed = True
        handles.forget(self.handle)
        handles.set_moved(self.handle, k)
        key = self.owner.key
        waiting = AWAITED.get(key)
        if waiting is not None and self in waiting:
            waiting.remove(self)
            if not waiting:
                del AWAITED[key]
        self.io.disown(_Key(-1 - key), self)
        self.io.poller.remove(self.fd)
        self.reading = self.writing = False
        self.backlog = None
        with contextlib.suppress(OSError):
            self.sock.close()  # (this process's descriptor only: the connection lives on there)

    # --- owner and close -------------------------------------------------------------------

    @property
    def wakes(self) -> bool:
        """Can this socket still send its owner a message (io.IoService.outstanding)?"""
        return self.active and not self.closed and not (self.eof and self.error is None and not self.rbuf)

    def owner_here(self) -> None:
        if self.active:
            self._want_read()

    def owner_left(self) -> None:
        self._want_read()

    def close(self) -> None:
        """tcp/close, or its owner ended: nobody reads or sends any more; bytes already sent
        are still written (the fd lingers until they are, or the node ends: the I/O service
        closes it again, and then it goes at once)."""
        if self.closed:
            if self.lingering:
                self._release()
            return
        self.closed = True
        self._withdraw()
        if handles.was_adopted(self.handle):  # calls here fail, and do not go back where it came from
            handles.set_moved(self.handle, handles.CLOSED_HERE)
        handles.forget(self.handle)
        owner = self.owner_proc()
        if owner is not None:
            self.io.disown(owner, self)
        if self.reader is not None:
            proc, name = self.reader
            self.reader = None
            self.io.complete(proc, error=closed_error(name, self.handle).value)
        while self.senders:
            self.io.complete(self.senders.popleft(), error=closed_error("tcp/send", self.handle).value)
        self._want_read()
        if self.wbuf:
            self.lingering = True
            _LINGERING.add(self)
            self.io.owned.setdefault(CLOSING, []).append(self)  # (the node's end releases it)
        else:
            self._release()

    def _release(self) -> None:
        if self.lingering:
            self.lingering = False
            _LINGERING.discard(self)
            self.io.disown(_Key(CLOSING), self)
        self.io.poller.remove(self.fd)
        self.writing = self.reading = False
        try:
            self.sock.close()
        except OSError:  # pragma: no cover
            pass


_LINGERING: set[TcpSocket] = set()  # closed sockets still writing their last bytes



def _drop_inherited() -> None:
    """In a forked scheduler: the parent's sockets are not this process's; close our copies of
    their descriptors (or a listener would stay open after its owner closed it)."""
    for res in handles.live():
        if isinstance(res, (TcpSocket, TcpListener)):
            try:
                res.sock.close()
                if isinstance(res, TcpSocket) and res.offered is not None:
                    res.offered[0].close()  # (the offer is the parent's to answer)
            except OSError:  # pragma: no cover
                pass
            handles.forget(res.handle)
    for s in list(_LINGERING):
        try:
            s.sock.close()
        except OSError:  # pragma: no cover
            pass
    _LINGERING.clear()


os.register_at_fork(after_in_child=_drop_inherited)


# --- io handlers: ("io", NAME, *args) requests from vm/net_builtins.py ----------------------


OFFER_GRACE_S = 0.5  # how long a socket handed to a process on another scheduler waits for its claim
CLAIM_TIMEOUT_S = 5.0  # how long a claim waits for the socket's scheduler to answer
MAX_OFFER = 1 << 20  # bytes of state and waiting messages a handed-over socket may carry


def offer_path(node: Any, h: Any) -> str | None:
    """The Unix socket in the node's private directory where `h`'s socket is offered (None for
    a node of one OS process, which has no such directory and nowhere to send it)."""
    d = getattr(node, "sockdir", None)
    return None if d is None else os.path.join(d, f"offer-{h.sched}-{h.serial}")


def _claimer(peer: Any) -> tuple[int | None, int | None]:
    """(scheduler, pid key) of a claim, from the address the claimer bound: claim-K-KEY-N."""
    name = os.path.basename(peer) if isinstance(peer, str) else ""
    parts = name.split("-")
    if len(parts) == 4 and parts[0] == "claim" and parts[1].isdigit() and parts[2].isdigit():
        return int(parts[1]), int(parts[2])
    return None, None


_claims = [0]


def _claim(io: IoService, proc: Process, name: str, h: Any) -> bool:
    """The calling process may be the new owner of a socket offered by the scheduler that
    holds it: ask for it in the pool (connect, receive the descriptor and state), then run the
    call here (or, refused, where the socket is). Whether a claim was started."""
    path = offer_path(io.node, h)
    if path is None or h.kind != "socket" or not os.path.exists(path):
        return False
    _claims[0] += 1
    mine = os.path.join(os.path.dirname(path), f"claim-{io.sched.id}-{proc.pid.key}-{_claims[0]}")

    def job() -> None:
        got = None
        c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            c.bind(mine)
            c.settimeout(CLAIM_TIMEOUT_S)
            c.connect(path)
            msg, anc, _flags, _addr = c.recvmsg(MAX_OFFER + 4096, socket.CMSG_SPACE(array.array("i").itemsize))
            fds = [fd for level, kind, data in anc if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
                   for fd in array.array("i", data[:len(data) - len(data) % 4])]
            got = (msg, fds)
        except OSError:
            pass
        finally:
            c.close()
            with contextlib.suppress(OSError):
                os.unlink(mine)
        io.call_soon_threadsafe(lambda: _claimed(io, proc, name, h, got))

    io.submit_job(job)
    return True


def _claimed(io: IoService, proc: Process, name: str, h: Any, got: Any) -> None:
    """In the loop: the claim's answer. The socket is made here and the call runs again."""
    fds = got[1] if got else []
    if not fds:  # refused, or the offer was withdrawn: the caller goes where the socket is
        if proc.status != _DEAD:
            io.sched.node.migrate(io.sched, proc, h.sched)
        return
    for extra in fds[1:]:
        os.close(extra)
    sock = socket.socket(fileno=fds[0])
    try:
        rbuf, eof, error, active, count, dec, wbuf, backlog, port = decode(got[0], limit=MAX_OFFER)
    except (CodecError, ValueError, TypeError):
        sock.close()
        handles.set_moved(h, handles.CLOSED_HERE)
        if proc.status != _DEAD:
            io.complete(proc, error=closed_error(name, h).value)
        return
    if proc.status == _DEAD:  # the owner ended meanwhile: its socket closes, as it would have there
        sock.close()
        handles.set_moved(h, handles.CLOSED_HERE)
        return
    res = TcpSocket(io, proc, sock, handle=h)
    res.rbuf, res.eof, res.error, res.active, res.count, res.port = rbuf, eof, error, active, count, port
    res.decoder.setstate(dec)
    res.backlog = list(backlog)
    if wbuf:
        res.wbuf += wbuf
        res.writing = True
        io.poller.add_writer(res.fd, res._on_writable)
    res.arrived(proc)
    io.submit(io.sched, proc)  # (the call it made, now that the socket is here)


def _here(io: IoService, proc: Process, name: str, h: Any, args: tuple) -> Any:
    """The resource `h` names on this scheduler, or None after sending the process (with its
    call) to the scheduler that holds it, after claiming a socket offered to it, or after
    failing the call."""
    res = handles.lookup(h)
    if res is not None:
        return res
    where = handles.moved(h)
    if where is not None and where != handles.CLOSED_HERE and where != io.sched.id:
        io.sched.node.migrate(io.sched, proc, where)  # (handed to a process there since)
        return None
    if where is None and h.sched != io.sched.id:
        if not _claim(io, proc, name, h):
            io.sched.node.migrate(io.sched, proc, h.sched)
        return None
    io.complete(proc, error=closed_error(name, h).value)
    return None


def _numeric(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _addrs(host: str, port: int, passive: bool) -> list:
    """The (family, address) pairs for host:port; a name is looked up (that blocks: the caller
    runs this in the I/O service's thread pool)."""
    if _numeric(host):
        return [(socket.AF_INET6 if ":" in host else socket.AF_INET, (host, port))]
    return [(fam, addr) for fam, _t, _p, _c, addr in
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE if passive else 0)]


def _resolved(io: IoService, proc: Process, name: str, host: str, port: int, passive: bool, then: Any,
              conn: Any = None) -> None:
    """`then(addrs)` with host:port's addresses: at once for a numeric host, else after a
    lookup in the thread pool; a failed lookup fails the call with (error nxdomain ...) unless
    `conn` (a _Connect) has been answered meanwhile (its timeout came first)."""
    if _numeric(host):
        then(_addrs(host, port, passive))
        return

    def job() -> None:
        try:
            addrs, err = _addrs(host, port, passive), None
        except OSError as e:
            addrs, err = None, e
        io.call_soon_threadsafe(lambda: _after_lookup(io, proc, name, host, port, addrs, err, then, conn))

    io.submit_job(job)


def _after_lookup(io: IoService, proc: Process, name: str, host: str, port: int, addrs: Any, err: Any,
                  then: Any, conn: Any = None) -> None:
    if conn is not None and conn.over:
        return
    if proc.status == _DEAD:
        if conn is not None:
            conn.over = True
            io.cancel_timer(conn.timer)
        return
    if conn is not None and err is not None:
        conn.over = True
        io.cancel_timer(conn.timer)
    if err is not None:
        if isinstance(err, socket.gaierror):
            io.complete(proc, error=runtime_error(intern("nxdomain"), f"{name}: {host}: {err.strerror}").value)
        else:
            io.complete(proc, error=os_error_value(name, err, f"{host}:{port}"))
        return
    then(addrs)


@io_op("tcp/listen")
def op_listen(io: IoService, proc: Process, args: tuple) -> None:
    host, port = args

    def listen(addrs: list) -> None:
        try:
            fam, addr = addrs[0]
            sock = socket.socket(fam, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(addr)
                sock.listen(BACKLOG)
                sock.setblocking(False)
            except BaseException:
                sock.close()
                raise
        except OSError as e:
            io.complete(proc, error=os_error_value("tcp/listen", e, f"{host}:{port}"))
            return
        io.complete(proc, TcpListener(io, proc, sock).handle)

    _resolved(io, proc, "tcp/listen", host, port, True, listen)


@io_op("tcp/accept")
def op_accept(io: IoService, proc: Process, args: tuple) -> None:
    res = _here(io, proc, "tcp/accept", args[0], args)
    if res is None:
        return
    if len(args) == 2:  # the builtin has just tried: wait
        res.wait_accept(proc)
        return
    try:
        got = res.try_accept(proc)
    except LispError as e:
        io.complete(proc, error=e.value)
        return
    if got is WOULD_WAIT:
        res.wait_accept(proc)
    else:
        io.complete(proc, got)


class _Connect:
    """One tcp/connect in progress: the name looked up, then the addresses in turn, each a
    non-blocking connect, all within one deadline (`timeout_ms`; None: the system's own)."""

    def __init__(self, io: IoService, proc: Process, host: str, port: int, timeout_ms: int | None) -> None:
        self.io, self.proc, self.what = io, proc, f"{host}:{port}"
        self.addrs: list = []
        self.sock: socket.socket | None = None
        self.last: Any = None
        self.over = False  # answered (connected, failed or timed out), or its process ended
        self.timeout_ms = timeout_ms
        self.timer = None if timeout_ms is None else io.call_later(timeout_ms / 1000.0, self.timed_out)

    def start(self, addrs: list) -> None:
        """The addresses are known (at once for a numeric host, or after the lookup)."""
        if self.over:
            return
        self.addrs = list(addrs)
        self.next()

    def next(self) -> None:
        while self.addrs:
            fam, addr = self.addrs.pop(0)
            sock = socket.socket(fam, socket.SOCK_STREAM)
            sock.setblocking(False)
            err = sock.connect_ex(addr)
            if err == 0:
                self.done(sock)
                return
            if err in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
                self.sock = sock
                self.io.poller.add_writer(sock.fileno(), self.on_writable)
                return
            sock.close()
            self.last = OSError(err, os.strerror(err))
        self.fail(os_error_value("tcp/connect", self.last or OSError(errno.EHOSTUNREACH, "no address"), self.what))

    def on_writable(self) -> None:
        sock, self.sock = self.sock, None
        self.io.poller.remove(sock.fileno())
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            sock.close()
            self.last = OSError(err, os.strerror(err))
            self.next()
            return
        self.done(sock)

    def done(self, sock: socket.socket) -> None:
        self.over = True
        self.io.cancel_timer(self.timer)
        if self.proc.status == _DEAD:  # killed while it waited
            sock.close()
            return
        self.io.complete(self.proc, TcpSocket(self.io, self.proc, sock).handle)

    def fail(self, error: Any) -> None:
        self.over = True
        self.io.cancel_timer(self.timer)
        self.io.complete(self.proc, error=error)

    def timed_out(self) -> None:
        """The deadline came first: the connection in progress is dropped (a lookup still
        running in the pool finishes there and is ignored)."""
        if self.over:
            return
        if self.sock is not None:
            self.io.poller.remove(self.sock.fileno())
            self.sock.close()
            self.sock = None
        self.addrs = []
        self.fail(os_error_value("tcp/connect", OSError(errno.ETIMEDOUT, f"Connection timed out (after "
                                                        f"{self.timeout_ms:,} ms)"), self.what))


@io_op("tcp/connect")
def op_connect(io: IoService, proc: Process, args: tuple) -> None:
    host, port, timeout_ms = args
    conn = _Connect(io, proc, host, port, timeout_ms)
    _resolved(io, proc, "tcp/connect", host, port, False, conn.start, conn)


def _passive(name: str) -> Any:
    def op(io: IoService, proc: Process, args: tuple) -> None:
        res = _here(io, proc, name, args[0], args)
        if res is None:
            return
        if res.owner != proc.pid:
            from ..vm.net_builtins import not_owner

            io.complete(proc, error=not_owner(name, res.handle, res.owner).value)
            return
        if len(args) == 2:  # the builtin has just tried: wait
            res.wait_recv(proc, name)
            return
        try:
            got = res.try_recv(name, name == "tcp/recv-line")
        except LispError as e:
            io.complete(proc, error=e.value)
            return
        if got is WOULD_WAIT:
            res.wait_recv(proc, name)
        else:
            io.complete(proc, got)
    return op


io_op("tcp/recv")(_passive("tcp/recv"))
io_op("tcp/recv-line")(_passive("tcp/recv-line"))


def send_on(io: IoService, proc: Process, name: str, args: tuple) -> None:
    """A send whose unsent bytes passed HIGH_WATER (args: the resource), or one from another
    scheduler (args: the resource and the data, not sent yet): sockets' and ports' alike."""
    res = _here(io, proc, name, args[0], args)
    if res is None:
        return
    if len(args) == 2:
        try:
            if res.try_send(encode_text(name, args[1])):
                io.complete(proc, TRUE)
                return
        except LispError as e:
            io.complete(proc, error=e.value)
            return
    res.wait_send(proc)


@io_op("tcp/send")
def op_send(io: IoService, proc: Process, args: tuple) -> None:
    send_on(io, proc, "tcp/send", args)


def _sync(name: str, call: Any) -> Any:
    """A handler for a call that needs no wait once the process is where the resource is."""
    def op(io: IoService, proc: Process, args: tuple) -> None:
        res = _here(io, proc, name, args[0], args)
        if res is None:
            return
        from ..vm import process as vmprocess

        ctx = vmprocess.ctx
        saved = (ctx.proc, ctx.host)
        ctx.proc, ctx.host = proc, io.sched
        try:
            value = call(*args)
        except LispError as e:
            io.complete(proc, error=e.value)
            return
        finally:
            ctx.proc, ctx.host = saved
        io.complete(proc, value)
    return op


def _register_sync() -> None:
    from ..vm import net_builtins as nb

    for name, fn in (("tcp/port", nb.b_port), ("tcp/active", nb.b_active), ("tcp/owner", nb.b_owner),
                     ("tcp/close", nb.b_close)):
        io_op(name)(_sync(name, fn))


_register_sync()
