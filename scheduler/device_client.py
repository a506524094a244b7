"""The device client: what a scheduler OS process uses to reach the node's device process.

Owns: finding the node's device process and starting it when none listens (under an flock, so
that any scheduler can start or restart it), the one connection of this OS process to it,
sending the gpu/ requests of BLOCKED Lisp processes (scheduler/kernel.py hands them over through
the node's request_service), reading the answers when the node polls the socket readable and
completing the waiting processes, the kernels this OS process has had answered, and failing
every request in flight with device_down when the device dies or misbehaves.

Must never: import pyopencl (only the device process does, scheduler/device_server.py), block
a scheduler while a kernel runs (the answer arrives on a socket the scheduler polls with its
other input), or trust an answer beyond the codec's data and device_wire's checks (the device
process runs user kernels).
"""

from __future__ import annotations

import fcntl
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from ..vm import codec
from ..vm.errors import runtime_error
from ..vm.values import intern
from . import device_wire as wire
from .device_shm import Segments
from .device_wire import DISPATCH, KERNEL, SHM_MIN, FrameError, FrameReader, send_frame

__all__ = ["client", "DeviceClient", "shutdown_all", "forget_inherited", "START_S"]

DEVICE_DOWN = intern("device_down")
NO_DEVICE = intern("no_device")
START_S = 60.0  # seconds a device process may take to start listening
_CLIENTS: list[DeviceClient] = []  # the clients made in this OS process (shutdown_all stops them)


class NoDeviceError(OSError):
    """The device process started and found no OpenCL device that runs a kernel (its reason)."""


def _op_name(req: tuple) -> str:
    """The builtin a device request came from (what the error's message starts with)."""
    return "gpu/kernel" if req[0] == KERNEL else "gpu/dispatch"


def client(node: Any) -> DeviceClient:
    """The device client of this OS process (made on first use)."""
    c = getattr(node, "device_client", None)
    if c is None:
        c = node.device_client = DeviceClient(node)
        node.services.append(c)
        _CLIENTS.append(c)
    return c


class DeviceClient:
    """Sends gpu/ requests to the device process and completes the waiting Lisp processes."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.sock: socket.socket | None = None
        self.reader: FrameReader | None = None
        self.segs = Segments()  # large arrays shared with the device process
        self.proc: subprocess.Popen | None = None  # the device process, if this OS process started it
        self.older: list[subprocess.Popen] = []  # devices started here before, still running
        self.dir: str | None = None  # the node's directory holding the device socket
        self.own_dir = False
        # request id -> [scheduler, process, request, start time, segments holding copies of its
        # inputs (kept, so not reused, until the answer)]
        self.pending: dict[int, list] = {}
        self.next_id = 0
        self.built: dict[tuple[str, str], Any] = {}  # (source hash, name) -> Kernel answered before
        self.kernel_refs: dict[tuple[str, str], int] = {}  # (source hash, name) -> its number on this connection
        self.sent_one = False  # a request went out since new_request() last asked

    def outstanding(self) -> int:
        """Requests sent and not yet answered (a node with some in flight is not idle)."""
        return len(self.pending)

    def new_request(self) -> bool:
        """Whether a request was sent since the last call (the scheduler then busy-waits once
        for its answer: spin_for_services)."""
        sent, self.sent_one = self.sent_one, False
        return sent

    def _path(self) -> str:
        if self.dir is None:
            d = getattr(self.node, "sockdir", None)
            if d is None:
                d = tempfile.mkdtemp(prefix="lispvm-dev-")
                self.own_dir = True
            self.dir = d
        return os.path.join(self.dir, "device.sock")

    def _try_connect(self, path: str) -> bool:
        """Connect to a running device process; False when none listens at `path` (no socket
        file, or one left by a device process that died)."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            s.close()
            return False
        except OSError:
            s.close()
            raise
        # The device greets each connection it accepts: a connection that a dying device's
        # listener took into its backlog ends instead, and counts as no device (not as a
        # device_down for the request about to be sent on it).
        reader = FrameReader(s, self.segs)
        try:
            s.settimeout(START_S)
            hello = reader.read()
            s.settimeout(None)
        except (EOFError, OSError):
            s.close()
            return False
        except codec.CodecError as e:
            s.close()
            raise OSError(f"the device process's greeting is damaged: {e}") from None
        if not (hello.__class__ is tuple and hello[1:2] == (wire.HELLO,)):
            s.close()
            raise OSError("the device process did not greet")
        self.sock = s
        self.reader = reader
        self.kernel_refs.clear()  # a new connection knows no kernel yet
        self.node.add_reader(s.fileno(), self.on_readable)
        return True

    def _connect(self) -> None:
        """Connect to the node's device process, starting one if none runs.

        Whoever finds no device process starts one, under an flock on the node's lock file:
        the kernel releases it when its holder dies, so a starter killed at any moment never
        blocks a restart (a lock that was a file's existence did, and only the scheduler that
        had made it could remove it). The lock is held only while starting; a socket file with
        no listener behind it is a dead device's, and only the lock's holder removes it."""
        path = self._path()
        if self._try_connect(path):
            return
        lock = os.open(path + ".lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            deadline = time.monotonic() + START_S + 30.0
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:  # another scheduler is starting it: wait for that
                    if time.monotonic() > deadline:
                        raise OSError("the device process did not start (its start lock is held)") from None
                    time.sleep(0.002)
            if self._try_connect(path):  # started by whoever held the lock
                return
            try:
                os.unlink(path)  # a dead device's socket
            except FileNotFoundError:
                pass
            self._start(path)
            if not self._try_connect(path):
                raise OSError("the device process did not start")
        finally:
            os.close(lock)  # releases the flock

    def _warn(self, line: str) -> None:
        """A line on the node's stderr (through the hub from another scheduler)."""
        say = getattr(self.node, "error_line", None)
        if say is not None:
            say(line)
        else:
            self.node.err.write(line + "\n")
            self.node.err.flush()

    def _reap(self) -> None:
        """Forget the device process this OS process started once it has exited (no zombie)."""
        if self.proc is not None and self.proc.poll() is not None:
            self.proc = None
        self.older = [p for p in self.older if p.poll() is None]

    def _start(self, path: str) -> None:
        """Start the device process (the caller holds the start lock) and wait until it listens:
        it says so with one byte on its stdout, or ends it by exiting."""
        self._reap()
        code = "import sys; from lispvm.scheduler.device_server import device_main; device_main(sys.argv[1])"
        # stderr too: PoCL's compiler prints diagnostics there; build logs reach the program
        # in the error's message instead
        proc = subprocess.Popen([sys.executable, "-c", code, path], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True)
        said = b""
        try:
            ready, _, _ = select.select([proc.stdout], [], [], START_S)  # importing pyopencl, making the context
            if ready:
                said = proc.stdout.read()  # "r" and its warnings: the device closes its end at once
        finally:
            proc.stdout.close()
        if said[:1] == b"n":  # it started but no device can run a kernel: say why, and where to look
            proc.wait()
            raise NoDeviceError(said[1:].decode(errors="replace"))
        if said[:1] == b"r":
            for line in said[1:].decode(errors="replace").splitlines():
                self._warn(line)
        else:
            if not ready:
                proc.kill()
            proc.wait()
            if not ready:
                raise OSError(f"the device process did not start within {START_S:g} s")
            raise OSError("the device process exited at start (is pyopencl installed? `lispvm doctor` says "
                          "what this machine has)")
        if self.proc is None:
            self.proc = proc
        else:  # a device this process started earlier still runs (it serves others): keep both
            self.older.append(proc)

    def submit(self, sched: Any, proc: Any) -> None:
        """Send the BLOCKED process's request; its answer completes it later."""
        req = proc.request
        if req[0] == KERNEL:
            known = self.built.get((wire.source_key(req[1]), req[2]))
            if known is not None:  # built before on this node: no round trip
                sched.complete(proc, value=known)
                return
        try:
            if self.sock is None:
                self._connect()
        except NoDeviceError as e:
            sched.complete(proc, error=runtime_error(NO_DEVICE, f"{_op_name(req)}: {e}").value)
            self._drop()
            return
        except OSError as e:
            sched.complete(proc, error=runtime_error(DEVICE_DOWN, f"the device process is not available: {e}").value)
            self._drop()
            return
        self.next_id += 1
        rid = self.next_id
        try:
            if sched.trace is not None:
                sched.trace.event(sched, "gpu_dispatch_start" if req[0] == DISPATCH else "gpu_build", proc.pid,
                                  kernel=req[1].name if req[0] == DISPATCH else req[2])
                if req[0] == DISPATCH:
                    sizes = [x.nbytes for x in req[3] if hasattr(x, "nbytes")]
                    sched.trace.event(sched, "gpu_transfer", proc.pid, kernel=req[1].name,
                                      inline_bytes=sum(n for n in sizes if n < SHM_MIN),
                                      shared_bytes=sum(n for n in sizes if n >= SHM_MIN))
            if req[0] == DISPATCH and not self.segs.forget:
                # A kernel this connection knows and only small arrays: a flat frame, no codec.
                ref = self.kernel_refs.get((req[1].key, req[1].name))
                flat = None if ref is None else wire.flat_parts(wire.FLAT_REQUEST, rid, ref, req[2], req[3])
                if flat is not None:
                    # pending before sending, so that a broken connection answers this request too
                    self.pending[rid] = [sched, proc, req, time.monotonic(), ()]
                    wire.send_parts(self.sock, *flat)
                    self.sent_one = True
                    return
            if req[0] == DISPATCH:  # large results are written into segments allocated here
                _, kernel, _n, args = req
                try:
                    outs = tuple(self.segs.alloc(x.nbytes) if is_buffer and x.nbytes >= SHM_MIN else None
                                 for x, (is_buffer, _t) in zip(args, kernel.params))
                except OSError as e:
                    raise FrameError(f"could not share an array with the device process: {e}") from None
                req = (*req, outs)
            if self.segs.forget:  # segments unmapped here since the last request
                forget, self.segs.forget = self.segs.forget, []  # a finalizer may append meanwhile
                send_frame(self.sock, (0, wire.FORGET, forget))
            msg, new_kernel = req, None
            if req[0] == DISPATCH:
                # A kernel goes whole once per connection, then by a number: its source is most
                # of a small dispatch's message otherwise, encoded and decoded every time.
                kernel = req[1]
                ref = self.kernel_refs.get((kernel.key, kernel.name))
                if ref is None:
                    ref = new_kernel = len(self.kernel_refs) + 1
                # flat, and no outs when there is no large result: each level costs the codec
                outs = req[4] if any(x is not None for x in req[4]) else None
                msg = (DISPATCH, ref, kernel if new_kernel else None, req[2], req[3], outs)
            # pending before sending, so that a broken connection answers this request too
            entry = self.pending[rid] = [sched, proc, req, time.monotonic(), ()]
            entry[4] = send_frame(self.sock, (rid, *msg), self.segs, may_alloc=True)
            if new_kernel:
                self.kernel_refs[(kernel.key, kernel.name)] = new_kernel
            self.sent_one = True
        except FrameError as e:  # nothing of this request was sent: it alone fails
            self.pending.pop(rid, None)
            sched.complete(proc, error=runtime_error(DEVICE_DOWN, str(e)).value)
        except OSError:  # the connection is broken: every request on it fails, as if the device died
            self._device_died()

    def on_readable(self) -> None:
        """Answers (or the end of the device process): complete the waiting processes. An answer
        that is not well formed ends the connection as a crash would: the device process runs
        kernels, so nothing it says is trusted further than the codec's data and device_wire's
        checks."""
        try:
            while True:
                self._answer(self.reader.read())
                if self.reader is None or not self.reader.ready():  # answers that came with the same recv
                    break
        except (EOFError, OSError):
            self._device_died()
        except codec.CodecError as e:
            self._device_died(f"the device process sent a damaged answer: {e}")

    def _answer(self, answer: Any) -> None:
        if not wire.is_answer(answer):
            raise codec.CodecError("not an answer")
        rid, ok, value = answer
        entry = self.pending.get(rid)
        if entry is None:
            return
        sched, proc, req, _t0, _keep = entry
        result = wire.answer_value(req, ok, value)  # raises with the request still pending (device_down)
        del self.pending[rid]
        if sched.trace is not None:
            sched.trace.event(sched, "gpu_dispatch_end" if req[0] == DISPATCH else "gpu_built", proc.pid)
        if not ok:
            sched.complete(proc, error=runtime_error(intern(value[0]), value[1]).value)
        elif req[0] == KERNEL:
            kernel = result
            self.built[(kernel.key, kernel.name)] = kernel
            sched.complete(proc, value=kernel)
        else:
            sched.complete(proc, value=result)

    def _device_died(self, why: str = "the device process died") -> None:
        """Every process waiting on the device gets (error device_down WHY); the next gpu/ call
        starts a new device process (kernels are rebuilt from their source)."""
        pending, self.pending = self.pending, {}
        self._drop()
        self.built.clear()
        self.segs.device_lost()
        for sched, proc, _req, _t, _keep in pending.values():
            sched.complete(proc, error=runtime_error(DEVICE_DOWN, why).value)

    def _drop(self) -> None:
        """Close the connection. The device process is not killed (it may serve the other
        schedulers; it stops by itself when its last connection closes) and its socket file is
        left for the next starter, which removes it under the start lock."""
        if self.sock is not None:
            self.node.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
            self.reader = None
        self._reap()

    def shutdown(self) -> None:
        """At the node's end: stop the device process if this OS process started it."""
        if self.sock is not None:
            try:
                send_frame(self.sock, (0, wire.STOP))
            except OSError:
                pass
        for proc in [p for p in (self.proc, *self.older) if p is not None]:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.proc, self.older = None, []
        if self.sock is not None:
            self.node.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
            self.reader = None
        self.segs.close()
        if self.own_dir and self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)


def shutdown_all() -> None:
    """Stop what the device clients of this OS process started (called at the node's end)."""
    while _CLIENTS:
        _CLIENTS.pop().shutdown()


def forget_inherited() -> None:
    """In a child forked from a scheduler: the parent's device connection is not this process's
    to stop (its fds are closed in the child), so shutdown_all must not reach it."""
    _CLIENTS.clear()
