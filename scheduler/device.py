"""The device process: the node's only OpenCL context and queue, in an OS process of its own.

Owns: starting the device process on the first gpu/ call that needs it (and only then; no other
process of ours imports pyopencl), the client each scheduler OS process uses to reach it, the
wire format, building kernels once per source (a cache keyed by the source's hash, on top of
PoCL's own cache), running dispatches, and faults. Must never: block a scheduler while a kernel
runs: a dispatching Lisp process is BLOCKED (vm/process.py) and the others keep running; the
answer arrives on a socket the scheduler polls with its other input.

Wire: an AF_UNIX stream socket per scheduler OS process, at a path in the node's private
directory. A frame is a header (counts and lengths), one descriptor per float32 array (its
size, and its shared segment or none), a vm/codec.py message of (request id, operation,
payload) in which every array is an out-of-band buffer, then the bytes of the small arrays
written straight from their memory with sendmsg. Nothing read from the socket is unpickled:
the device process runs kernels, so the client checks each answer's shape too. Arrays of
SHM_MIN bytes or more never cross the socket: they live in memfd segments that both sides map
once (the fd goes with SCM_RIGHTS the first time, from client to device only) and the client
reuses (class Segments). The device process reads every connection in a thread of its own and
runs requests one at a time, in arrival order, so each caller's order is kept.

Device choice: LISPVM_OPENCL, with the syntax of pyopencl's PYOPENCL_CTX ("0", "0:1", a name
substring); unset, the first platform's first device.
"""

from __future__ import annotations

import array
import fcntl
import mmap
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import weakref
from typing import Any

from ..vm import codec
from ..vm.errors import runtime_error
from ..vm.values import F32Array, from_list, intern
from .clock import BusyWait

__all__ = ["client", "DeviceClient", "device_main", "shutdown_all"]

DEVICE_DOWN = intern("device_down")
BADARG = intern("badarg")
_HEAD = struct.Struct("<IIII")  # arrays, message bytes, bytes of the inline arrays, fds
_DESC = struct.Struct("<QIB")  # per array: bytes, shared segment id (0: inline, after the message), fd follows
_MAX_ARRAYS = 4096  # arrays one frame may carry (a kernel's buffers)
_pack_head, _unpack_head, _pack_desc, _unpack_desc = _HEAD.pack, _HEAD.unpack_from, _DESC.pack, _DESC.unpack_from
SHM_MIN = 1 << 18  # bytes: an array this large travels as a memfd (docs/gpu.md has the measurement)
# Seconds the device process reads without sleeping after an answer, for the same caller's next
# request (clock.BusyWait): 2000 small dispatches took 68-110 us each with it, 87-107 without
# (seven alternating runs; docs/gpu.md).
SPIN_S = 200e-6
START_S = 60.0  # seconds a device process may take to start listening
_MAX_FDS = 64  # fds one recvmsg can take (a frame passes one per large array)
_CLIENTS: list[DeviceClient] = []


# --- framing (both ends) ----------------------------------------------------------------------

class Shm(mmap.mmap):
    """A shared mapping of a memfd that keeps the fd, so the memory can be passed on (SCM_RIGHTS)
    without a copy. The fd is closed when the mapping is collected; an unnamed memfd leaves
    nothing behind in /dev/shm, whatever way the processes end."""

    fd: int

    @classmethod
    def create(cls, nbytes: int) -> Shm:
        """A new zero-filled shared mapping of `nbytes` bytes."""
        fd = os.memfd_create("lispvm-f32", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, nbytes)
            return cls.adopt(fd, nbytes)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def adopt(cls, fd: int, nbytes: int, keep_fd: bool = True) -> Shm:
        """Map a memfd. MAP_POPULATE: one walk of the page table instead of one fault per page
        (4096 faults for 16 MiB). With keep_fd the mapping owns `fd` (the client passes it on);
        without, `fd` is closed now (the device never passes a segment on; the mapping holds
        its own duplicate)."""
        m = cls(fd, nbytes, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))
        if keep_fd:
            m.fd = fd
            weakref.finalize(m, os.close, fd)
        else:
            m.fd = -1
            os.close(fd)
        return m


def _shm_of(arr: Any) -> Shm | None:
    """The Shm an array is a whole view of, if any: the end of its chain of bases (np.frombuffer
    wraps a Shm in a memoryview; a decoded array wraps the array it was read from)."""
    base = arr
    for _ in range(8):  # a chain is two or three long; anything longer is not ours
        base = base.obj if base.__class__ is memoryview else getattr(base, "base", None)
        if base is None:
            return None
        if base.__class__ is Shm:
            return base if len(base) == arr.nbytes else None
    return None


class Segments:
    """The shared-memory segments of one connection, numbered by the client.

    Fresh shared pages are expensive (16 MiB of new memfd pages took 26 ms here, against 1.3 ms
    for a reused malloc block), so a segment is mapped once on each side and reused: the client
    allocates one per large input it must copy and one per large result, the device maps each
    the first time its fd arrives and keeps it, and a result array freed by the program puts
    its segment back on the client's free list. A segment is never reused while a request that
    holds it is outstanding: the pending request keeps its arrays alive."""

    KEEP_FREE = 8  # free segments kept in all (the most recently freed)...
    KEEP_FREE_BYTES = 256 << 20  # ...and at most this many bytes of them; the rest are unmapped

    def __init__(self) -> None:
        self.maps: dict[int, Shm] = {}
        self.live: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # id -> array in use
        self.free: dict[int, int] = {}  # id -> bytes, oldest freed first (client)
        self.free_bytes = 0
        self.sent: set[int] = set()  # ids whose fd the device has (client)
        self.forget: list[int] = []  # ids dropped since the last request, for the device (client)
        self.next_id = 0

    def alloc(self, nbytes: int) -> Any:
        """A float32 array over a free or new segment of `nbytes` (client side)."""
        import numpy as np

        sid = next((i for i in reversed(self.free) if self.free[i] == nbytes), None)
        if sid is not None:
            del self.free[sid]
            self.free_bytes -= nbytes
        else:
            self.next_id += 1
            sid = self.next_id
            shm = self.maps[sid] = Shm.create(nbytes)
            shm.seg_id = sid
        view = np.frombuffer(self.maps[sid], dtype=np.float32)
        self.live[sid] = view
        weakref.finalize(view, self._release, sid)
        return view

    def _release(self, sid: int) -> None:
        shm = self.maps.get(sid)
        if shm is None:
            return
        self.free[sid] = len(shm)
        self.free_bytes += len(shm)
        while len(self.free) > self.KEEP_FREE or self.free_bytes > self.KEEP_FREE_BYTES:
            old = next(iter(self.free))  # the one freed longest ago
            self.free_bytes -= self.free.pop(old)
            del self.maps[old]  # unmapped, and its fd closed, once collected
            if old in self.sent:
                self.sent.discard(old)
                self.forget.append(old)

    def resolve(self, sid: int, nbytes: int, fd: int | None) -> Any:
        """The array a received segment reference names: on the client the array it allocated;
        on the device its mapping of the segment (made when the fd arrives)."""
        import numpy as np

        if fd is not None:
            try:
                shm = self.maps[sid] = Shm.adopt(fd, nbytes, keep_fd=False)
            except BaseException:
                os.close(fd)
                raise
            shm.seg_id = sid
        view = self.live.get(sid)
        if view is not None:
            return view
        return np.frombuffer(self.maps[sid], dtype=np.float32)

    def drop(self, ids: list[int]) -> None:
        """The client unmapped these (device side)."""
        for sid in ids:
            self.maps.pop(sid, None)

    def close(self) -> None:
        """Let go of every segment: each is unmapped, and its fd closed, when the last array
        over it is collected."""
        self.maps.clear()
        self.free.clear()
        self.free_bytes = 0
        self.device_lost()

    def device_lost(self) -> None:
        """A new device process has none of our fds."""
        self.sent.clear()
        self.forget.clear()


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
        shm = _shm_of(view.obj)
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
            shm = _shm_of(copy)
        sid = shm.seg_id
        with_fd = may_alloc and sid not in segs.sent and sid not in new_sent
        if with_fd:  # marked as sent only once sendmsg has taken the fd
            new_sent.append(sid)
            fds.append(shm.fd)
        descs.append(_pack_desc(n, sid, with_fd))
    parts = [_pack_head(len(descs), len(data), blen, len(fds)), *descs, data, *inline]
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    total = _HEAD.size + _DESC.size * len(descs) + len(data) + blen
    if drain is None:
        sent = sock.sendmsg(parts, anc)
    else:
        try:
            sent = sock.sendmsg(parts, anc, socket.MSG_DONTWAIT)
        except BlockingIOError:
            sent = 0
    if segs is not None and (sent or not fds):
        segs.sent.update(new_sent)  # the fds went with the first byte
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
    return keep


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

    def __init__(self, sock: socket.socket, segs: Segments | None = None, take_fds: bool = False) -> None:
        self.sock = sock
        self.segs = segs
        self.take_fds = take_fds  # only the device maps fds it receives (the client's segments)
        self.buf = bytearray()
        self.fds: list[int] = []

    def _recv(self, flags: int = 0) -> None:
        """One recvmsg into `buf` (and any fds that came with it into `fds`); EOFError when the
        peer closed."""
        chunk, anc, _flags, _addr = self.sock.recvmsg(65536, _ANCBUF, flags)
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
        if narrays > _MAX_ARRAYS or mlen > codec.MAX_MESSAGE or blen > narrays * SHM_MIN or nfds > narrays:
            raise codec.CodecError(f"damaged frame header ({narrays} arrays, {mlen} bytes, {blen} inline, "
                                   f"{nfds} fds)")
        return narrays, mlen, blen, nfds

    def ready(self) -> bool:
        """Whether a whole frame is already buffered (reading it will not block)."""
        if len(self.buf) < _HEAD.size:
            return False
        narrays, mlen, blen, _f = self._sizes()
        return len(self.buf) >= _HEAD.size + narrays * _DESC.size + mlen + blen

    def read(self) -> Any:
        """Read one frame (blocking) and decode it. A small frame usually takes one recv; the
        bytes of a big inline array are read straight into its own buffer. Raises EOFError
        when the peer closed, codec.CodecError for a frame that is not well formed."""
        buf = self.buf
        if len(buf) < _HEAD.size:
            self._fill(_HEAD.size)
        narrays, mlen, blen, nfds = self._sizes()
        start = _HEAD.size + narrays * _DESC.size
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
                n, sid, with_fd = _unpack_desc(buf, _HEAD.size + i * _DESC.size)
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


_ANCBUF = socket.CMSG_SPACE(_MAX_FDS * array.array("i").itemsize)


# --- the client, in each scheduler OS process --------------------------------------------------

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
        if not (hello.__class__ is tuple and hello[1:2] == ("hello",)):
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
        code = "import sys; from lispvm.scheduler.device import device_main; device_main(sys.argv[1])"
        # stderr too: PoCL's compiler prints diagnostics there; build logs reach the program
        # in the error's message instead
        proc = subprocess.Popen([sys.executable, "-c", code, path], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True)
        said = b""
        try:
            ready, _, _ = select.select([proc.stdout], [], [], START_S)  # pyopencl and the context: ~1 s
            if ready:
                said = proc.stdout.read()  # "r" and its warnings: the device closes its end at once
        finally:
            proc.stdout.close()
        if said[:1] == b"r":
            for line in said[1:].decode(errors="replace").splitlines():
                self._warn(line)
        else:
            if not ready:
                proc.kill()
            proc.wait()
            if not ready:
                raise OSError(f"the device process did not start within {START_S:g} s")
            raise OSError("the device process exited at start (is an OpenCL platform installed?)")
        if self.proc is None:
            self.proc = proc
        else:  # a device this process started earlier still runs (it serves others): keep both
            self.older.append(proc)

    def submit(self, sched: Any, proc: Any) -> None:
        """Send the BLOCKED process's request; its answer completes it later."""
        req = proc.request
        if req[0] == "gpu-kernel":

            key = _source_key(req[1])
            known = self.built.get((key, req[2]))
            if known is not None:  # built before on this node: no round trip
                sched.complete(proc, value=known)
                return
        try:
            if self.sock is None:
                self._connect()
        except OSError as e:
            sched.complete(proc, error=runtime_error(DEVICE_DOWN, f"the device process is not available: {e}").value)
            self._drop()
            return
        self.next_id += 1
        rid = self.next_id
        try:
            if sched.trace is not None:
                sched.trace.event(sched, "gpu_dispatch_start" if req[0] == "gpu-dispatch" else "gpu_build", proc.pid,
                                  kernel=req[1].name if req[0] == "gpu-dispatch" else req[2])
                if req[0] == "gpu-dispatch":
                    sizes = [x.nbytes for x in req[3] if hasattr(x, "nbytes")]
                    sched.trace.event(sched, "gpu_transfer", proc.pid, kernel=req[1].name,
                                      inline_bytes=sum(n for n in sizes if n < SHM_MIN),
                                      shared_bytes=sum(n for n in sizes if n >= SHM_MIN))
            if req[0] == "gpu-dispatch":  # large results are written into segments allocated here
                _, kernel, _n, args = req
                try:
                    outs = tuple(self.segs.alloc(x.nbytes) if is_buffer and x.nbytes >= SHM_MIN else None
                                 for x, (is_buffer, _t) in zip(args, kernel.params))
                except OSError as e:
                    raise FrameError(f"could not share an array with the device process: {e}") from None
                req = (*req, outs)
            if self.segs.forget:  # segments unmapped here since the last request
                forget, self.segs.forget = self.segs.forget, []  # a finalizer may append meanwhile
                send_frame(self.sock, (0, "forget", forget))
            wire, new_kernel = req, None
            if req[0] == "gpu-dispatch":
                # A kernel goes whole once per connection, then by a number: its source is most
                # of a small dispatch's message otherwise, encoded and decoded every time.
                kernel = req[1]
                ref = self.kernel_refs.get((kernel.key, kernel.name))
                if ref is None:
                    ref = new_kernel = len(self.kernel_refs) + 1
                # flat, and no outs when there is no large result: each level costs the codec
                outs = req[4] if any(x is not None for x in req[4]) else None
                wire = ("gpu-dispatch", ref, kernel if new_kernel else None, req[2], req[3], outs)
            # pending before sending, so that a broken connection answers this request too
            entry = self.pending[rid] = [sched, proc, req, time.monotonic(), ()]
            entry[4] = send_frame(self.sock, (rid, *wire), self.segs, may_alloc=True)
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
        kernels, so nothing it says is trusted further than the codec's data and these checks."""
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
        if not (answer.__class__ is tuple and len(answer) == 3 and answer[0].__class__ is int
                and answer[1].__class__ is bool):
            raise codec.CodecError("not an answer")
        rid, ok, value = answer
        entry = self.pending.get(rid)
        if entry is None:
            return
        sched, proc, req, _t0, _keep = entry
        result = _check_answer(req, ok, value)  # raises with the request still pending (device_down)
        del self.pending[rid]
        if sched.trace is not None:
            sched.trace.event(sched, "gpu_dispatch_end" if req[0] == "gpu-dispatch" else "gpu_built", proc.pid)
        if not ok:
            sched.complete(proc, error=runtime_error(intern(value[0]), value[1]).value)
        elif req[0] == "gpu-kernel":
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
                send_frame(self.sock, (0, "stop"))
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


_ERROR_KINDS = frozenset({"badarg", "badarity", "device_down", "system_limit"})


def _check_answer(req: tuple, ok: bool, value: Any) -> Any:
    """The Lisp value of an answer to `req` (for an error, `value` checked), or CodecError when
    it is not the shape that request's answer has."""
    if not ok:
        if not (value.__class__ is tuple and len(value) == 2 and value[0] in _ERROR_KINDS
                and value[1].__class__ is str):
            raise codec.CodecError("malformed error answer")
        return None
    if req[0] == "gpu-kernel":
        if not (value.__class__ is list and all(p.__class__ is tuple and len(p) == 2 and p[0].__class__ is bool
                                                and p[1].__class__ is str for p in value)):
            raise codec.CodecError("malformed kernel parameters")
        from ..vm.gpu import Kernel

        return Kernel(req[1], req[2], tuple(value), _source_key(req[1]))
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


def shutdown_all() -> None:
    """Stop what the device clients of this OS process started (called at the node's end)."""
    while _CLIENTS:
        _CLIENTS.pop().shutdown()


def _source_key(source: str) -> str:
    import hashlib

    return hashlib.blake2b(source.encode(), digest_size=16).hexdigest()


# --- the device process ------------------------------------------------------------------------

def device_main(path: str) -> None:
    """Entry point of the device process: serve requests until told to stop or left alone."""
    import resource
    import signal
    import threading

    from ..vm.gpu import SCALARS  # our modules before Landlock: their directory is not readable after
    from . import confine

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the node stops us
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crashing kernel leaves no core file behind
    # Listening first: a client that finds the socket now waits in the backlog until we serve.
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    cache = _cache_dir(os.path.dirname(path))
    # PoCL's kernel cache, pyopencl's and NVIDIA's: all in the one directory we may write
    os.environ.update(POCL_CACHE_DIR=os.path.join(cache, "pocl"), XDG_CACHE_HOME=cache,
                      CUDA_CACHE_PATH=os.path.join(cache, "nv"))
    warnings: list[str] = []
    confined = os.environ.get("LISPVM_DEVICE_CONFINE", "1") != "0"
    if confined:  # now, while this process has one thread (see confine.py)
        _abi, said = confine.landlock(_device_rules(cache))
        warnings += said
    else:
        warnings.append("LISPVM_DEVICE_CONFINE=0: the device process is not confined; kernels may open "
                        "any file the user can, start programs and make sockets")

    import numpy as np
    import pyopencl as cl

    if os.environ.get("LISPVM_OPENCL"):
        os.environ["PYOPENCL_CTX"] = os.environ["LISPVM_OPENCL"]
    ctx = cl.create_some_context(interactive=False)
    cq = cl.CommandQueue(ctx)
    host_is_device = all(d.type & cl.device_type.CPU for d in ctx.devices)
    programs: dict[str, Any] = {}
    lock = threading.Lock()  # one request runs on the device at a time
    clients = [0, 0]  # connected now, ever connected
    done = threading.Event()


    def serve(conn: socket.socket) -> None:
        """One scheduler's connection: read each request and run it, in order. The request
        runs in this thread (under the device lock): handing it to another thread cost a
        thread wake-up, about a third of a small dispatch's time."""
        segs = Segments()  # this client's shared segments, mapped here once each
        reader = FrameReader(conn, segs, take_fds=True)
        busy = BusyWait(SPIN_S)
        known: dict[int, Any] = {}  # the kernels this client sent, by their number
        try:
            send_frame(conn, (0, "hello", os.getpid()))
        except OSError:
            pass  # the client is gone; the read below ends this thread
        try:
            while True:
                try:
                    if not reader.ready():
                        busy.spin(reader.arrived)  # the caller's next request comes soon, often
                    msg = reader.read()  # (request id, operation, its arguments...)
                except Exception:  # closed, or a damaged frame: this client is lost, the others go on
                    break
                if msg.__class__ is not tuple or len(msg) < 2 or msg[1].__class__ is not str:
                    break  # a damaged request, as a damaged frame: the client sees device_down
                if msg[1] == "stop":
                    done.set()
                    break
                if msg[1] == "forget":
                    segs.drop(msg[2])  # damaged (no list of ids): the except below closes the connection
                    continue
                with lock:
                    answer = handle(msg, known)
                try:
                    send_frame(conn, answer, segs, drain=reader)
                except (OSError, EOFError):
                    break
        except Exception:  # whatever else went wrong with this client: it is lost, the connection closed
            pass
        finally:
            reader.close_fds()
            conn.close()
            with lock:
                clients[0] -= 1
                if clients[0] == 0:
                    done.set()  # everyone left

    def acceptor() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with lock:
                if done.is_set():  # stopping: ungreeted, the client starts a new device process
                    conn.close()
                    continue
                clients[0] += 1
                clients[1] += 1
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    def program(source: str) -> Any:
        key = _source_key(source)
        prog = programs.get(key)
        if prog is None:
            prog = programs[key] = cl.Program(ctx, source).build(options=["-cl-kernel-arg-info"])
        return prog

    def build(source: str, name: str) -> list:
        try:
            prog = program(source)
        except cl.RuntimeError as e:
            why = ("the kernel does not compile: it includes a file the device process may not read "
                   "(docs/gpu.md, Confinement)" if "Permission denied" in str(e) else "the kernel does not compile")
            raise _Refused("badarg", f"gpu/kernel: {why}:\n{e}") from None
        try:
            knl = cl.Kernel(prog, name)
        except cl.Error:
            raise _Refused("badarg", f"gpu/kernel: the source defines no kernel named {name}") from None
        params = []
        for i in range(knl.num_args):
            aq = knl.get_arg_info(i, cl.kernel_arg_info.ADDRESS_QUALIFIER)
            tname = knl.get_arg_info(i, cl.kernel_arg_info.TYPE_NAME)
            is_buffer = aq in (cl.kernel_arg_address_qualifier.GLOBAL, cl.kernel_arg_address_qualifier.CONSTANT)
            if is_buffer and tname.replace(" ", "") != "float*":
                raise _Refused("badarg", f"gpu/kernel: parameter {i} of {name} is {tname}: only float* "
                                         "buffers are supported (arrays are float32)")
            if not is_buffer and tname not in SCALARS:
                raise _Refused("badarg", f"gpu/kernel: parameter {i} of {name} has unsupported type {tname}")
            params.append((is_buffer, tname))
        return params

    kernels: dict[tuple[str, str], Any] = {}

    def dispatch(kernel: Any, n: int, args: tuple, outs: tuple) -> list:
        # One cl.Kernel per (source, name): pyopencl builds each new Kernel object's argument
        # setter through an on-disk cache, which took ~30% of this process's time per dispatch.
        knl = kernels.get((kernel.key, kernel.name))
        if knl is None:
            knl = kernels[(kernel.key, kernel.name)] = cl.Kernel(program(kernel.source), kernel.name)
        mf = cl.mem_flags
        cl_args, buffers = [], []
        for x, out, (is_buffer, tname) in zip(args, outs, kernel.params):
            if not is_buffer:
                cl_args.append(np.dtype(SCALARS[tname]).type(x))
            elif out is not None and host_is_device:
                # A CPU device reads and writes host memory itself: copy the input into the
                # caller's result segment once and run the kernel on it in place (a GPU driver
                # copies a USE_HOST_PTR buffer anyway, so there the path below is used).
                out[:] = x
                buf = cl.Buffer(ctx, mf.READ_WRITE | mf.USE_HOST_PTR, hostbuf=out)
                buffers.append((buf, out, True))
                cl_args.append(buf)
            else:
                buf = cl.Buffer(ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=x)
                buffers.append((buf, x if out is None else out, False))
                cl_args.append(buf)
        try:
            knl(cq, (n,), None, *cl_args)
            return _results(args, outs, kernel, buffers)
        finally:  # never answer (and let the caller reuse a segment) while the kernel may run
            cq.finish()

    def _results(args: tuple, outs: tuple, kernel: Any, buffers: list) -> list:
        results = []
        it = iter(buffers)
        for x, out, (is_buffer, _) in zip(args, outs, kernel.params):
            if is_buffer:
                buf, host, in_place = next(it)
                if in_place:  # mapping makes the kernel's writes visible in `out` (no copy here)
                    mapped, _ev = cl.enqueue_map_buffer(cq, buf, cl.map_flags.READ, 0, host.shape, host.dtype)
                    mapped.base.release(cq)
                else:  # small: sent back inline; large: the caller's segment, shared
                    out = np.empty_like(host) if out is None else out
                    cl.enqueue_copy(cq, out, buf)
                results.append(out)
            else:
                results.append(x)
        return results

    def handle(msg: tuple, known: dict[int, Any]) -> tuple:
        rid = msg[0]
        try:
            if msg[1] == "gpu-kernel":  # (rid, "gpu-kernel", source, name)
                value = build(msg[2], msg[3])
            else:  # (rid, "gpu-dispatch", number, the kernel the first time else None, n, args, outs or None)
                _, _op, ref, kernel, n, args, outs = msg
                if kernel is not None:
                    known[ref] = kernel
                value = dispatch(known[ref], n, args, (None,) * len(args) if outs is None else outs)
            return (rid, True, value)
        except _Refused as e:
            return (rid, False, (e.kind, e.message))
        except cl.Error as e:
            return (rid, False, ("badarg", f"gpu/dispatch: OpenCL refused the dispatch: {e}"))
        except Exception as e:  # a bug here must not take the device down for everyone
            return (rid, False, ("badarg", f"gpu: internal error in the device process: {e!r}"))

    # Only now, with every function above defined, are connections accepted (those made
    # earlier wait in the backlog): a connection served before `handle` existed killed its
    # thread and left that client waiting for ever.
    if confined:  # every thread, PoCL's workers included, from here on
        warnings += confine.seccomp()
    threading.Thread(target=acceptor, daemon=True).start()
    # the starter waits for this byte (or for our exit) while it holds the start lock, then
    # reads our warnings to the end of the pipe
    os.write(1, b"r" + "".join(f"lispvm: device process: {w}\n" for w in warnings).encode())
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    done.wait()
    listener.close()  # the socket file stays: the next starter removes it under the start lock


def _cache_dir(private: str) -> str:
    """The directory the device process may write: OpenCL compilers' caches. Per user, kept
    between runs ($XDG_CACHE_HOME/lispvm/device); the node's private directory if that cannot be
    made."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for d in (os.path.join(base, "lispvm", "device"), os.path.join(private, "cache")):
        try:
            os.makedirs(d, mode=0o700, exist_ok=True)
            return d
        except OSError:
            continue
    return private


def _device_rules(cache: str) -> list[tuple[str, int]]:
    """What the device process may open (confine.landlock): Python and its packages, system
    libraries and headers (/usr), OpenCL's and the GPU drivers' configuration and device nodes,
    this process's own /proc entry, the compiler cache (read and write), and the one program
    PoCL runs, the linker (executed). Not /etc, /home, /tmp or the project."""
    import glob

    from .confine import DEVICE, EXECUTE, READ, READ_DIR, READ_FILE, WRITE, WRITE_FILE, elf_interpreter

    # Listing directories everywhere, not reading files: hwloc (PoCL's topology probe) opens "/"
    # and reads /sys and /proc relative to it, and aborts the process if it cannot.
    rules = [("/", READ_DIR)]
    rules += [(p, READ) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}]
    rules += [(p, READ) for p in ("/usr", "/lib", "/lib64", "/lib32", "/libx32", "/opt/rocm", "/etc/OpenCL",
                                  "/etc/ld.so.cache", "/sys", "/proc/self", "/proc/cpuinfo", "/proc/meminfo",
                                  "/proc/stat", "/proc/driver", "/dev/zero", "/dev/urandom")]
    rules.append(("/dev/null", READ_FILE | WRITE_FILE))
    rules += [(p, DEVICE) for p in ("/dev/dri", "/dev/kfd", *glob.glob("/dev/nvidia*"))]
    rules.append((cache, WRITE))
    linker = shutil.which("ld") or "/usr/bin/ld"  # PoCL links each kernel with the system's ld
    if os.path.exists(linker):
        real = os.path.realpath(linker)
        rules.append((real, EXECUTE | READ_FILE))
        interp = elf_interpreter(real)
        if interp:
            rules.append((os.path.realpath(interp), EXECUTE | READ_FILE))
    return rules


class _Refused(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message


__all__ += ["BADARG"]
