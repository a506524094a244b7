"""The device process: the node's only OpenCL context and queue, in an OS process of its own.

Owns: starting the device process on the first gpu/ call that needs it (and only then; no other
process of ours imports pyopencl), the client each scheduler OS process uses to reach it, the
wire format, building kernels once per source (a cache keyed by the source's hash, on top of
PoCL's own cache), running dispatches, and faults. Must never: block a scheduler while a kernel
runs: a dispatching Lisp process is BLOCKED (vm/process.py) and the others keep running; the
answer arrives on a socket the scheduler polls with its other input.

Wire: an AF_UNIX stream socket per scheduler OS process, at a path in the node's private
directory. A frame is a header (lengths), a pickle (protocol 5) of (request id, operation,
payload), and the pickle's out-of-band buffers (numpy arrays) written straight from their memory
with sendmsg and read straight into theirs with recv_into: one copy through the kernel each way,
no copy through a bytes object. The device process reads every connection in a thread of its
own and runs requests one at a time, in arrival order, so each caller's order is kept.

Device choice: LISPVM_OPENCL, with the syntax of pyopencl's PYOPENCL_CTX ("0", "0:1", a name
substring); unset, the first platform's first device.
"""

from __future__ import annotations

import os
import pickle
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any

from ..vm.errors import runtime_error
from ..vm.values import F32Array, from_list, intern

__all__ = ["client", "DeviceClient", "device_main", "shutdown_all"]

DEVICE_DOWN = intern("device_down")
BADARG = intern("badarg")
_HEAD = struct.Struct("<IIQ")  # number of buffers, pickle length, total length of buffers
_CLIENTS: list[DeviceClient] = []


# --- framing (both ends) ----------------------------------------------------------------------

def send_frame(sock: socket.socket, obj: Any) -> None:
    """Pickle `obj` with its arrays out of band and write it in one sendmsg."""
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(obj, 5, buffer_callback=buffers.append)
    views = [b.raw() for b in buffers]
    lengths = struct.pack(f"<{len(views)}Q", *(v.nbytes for v in views))
    parts = [_HEAD.pack(len(views), len(data), sum(v.nbytes for v in views)), lengths, data, *views]
    total = sum(len(p) if isinstance(p, (bytes, bytearray)) else p.nbytes for p in parts)
    sent = sock.sendmsg(parts)
    if sent < total:  # a large frame: write the rest (the device drains its sockets in threads)
        rest = b"".join(bytes(p) for p in parts)[sent:]
        sock.sendall(rest)


class FrameReader:
    """Reads frames from one stream socket. A single recv may return the end of one frame and
    the start of the next (a client pipelines requests; answers arrive back to back), so bytes
    past the current frame stay in `buf` for the next call."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def _fill(self, n: int) -> None:
        """Read until at least `n` bytes are buffered; EOFError when the peer closed."""
        buf, sock = self.buf, self.sock
        while len(buf) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError
            buf += chunk

    def ready(self) -> bool:
        """Whether a whole frame is already buffered (reading it will not block)."""
        buf = self.buf
        if len(buf) < _HEAD.size:
            return False
        nbuf, plen, blen = _HEAD.unpack_from(buf)
        return len(buf) >= _HEAD.size + 8 * nbuf + plen + blen

    def read(self) -> Any:
        """Read one frame (blocking). A small frame usually takes one recv; the arrays of a
        large one are read straight into their own buffers."""
        self._fill(_HEAD.size)
        buf = self.buf
        nbuf, plen, _blen = _HEAD.unpack_from(buf)
        meta = _HEAD.size + 8 * nbuf + plen
        self._fill(meta)
        lengths = struct.unpack_from(f"<{nbuf}Q", buf, _HEAD.size) if nbuf else ()
        data = bytes(buf[_HEAD.size + 8 * nbuf:meta])
        pos = meta
        buffers = []
        for n in lengths:
            out = bytearray(n)
            k = min(n, len(buf) - pos)
            out[:k] = buf[pos:pos + k]
            pos += k
            if k < n:  # the buffer is used up: the rest of this array comes straight off the socket
                view = memoryview(out)
                while k < n:
                    got = self.sock.recv_into(view[k:])
                    if got == 0:
                        raise EOFError
                    k += got
            buffers.append(out)
        del buf[:pos]  # what follows belongs to the next frame
        return pickle.loads(data, buffers=buffers)


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
        self.proc: subprocess.Popen | None = None  # the device process, if this OS process started it
        self.dir: str | None = None  # the node's directory holding the device socket
        self.own_dir = False
        self.pending: dict[int, tuple] = {}  # request id -> (scheduler, process, request, start time)
        self.next_id = 0
        self.built: dict[tuple[str, str], Any] = {}  # (source hash, name) -> Kernel answered before

    def outstanding(self) -> int:
        return len(self.pending)

    def _path(self) -> str:
        if self.dir is None:
            d = getattr(self.node, "sockdir", None)
            if d is None:
                d = tempfile.mkdtemp(prefix="lispvm-dev-")
                self.own_dir = True
            self.dir = d
        return os.path.join(self.dir, "device.sock")

    def _connect(self) -> None:
        path = self._path()
        for _ in range(2):
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(path)
                self.sock = s
                self.reader = FrameReader(s)
                self.node.add_reader(s.fileno(), self.on_readable)
                return
            except OSError:
                s.close()
                self._start(path)
        raise OSError("the device process did not start")

    def _start(self, path: str) -> None:
        """Start the device process (once per node: a lock file elects who) and wait for it."""
        lock = path + ".lock"
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.close(fd)
            mine = True
        except FileExistsError:
            mine = False
        if mine:
            code = "import sys; from lispvm.scheduler.device import device_main; device_main(sys.argv[1])"
            # stderr too: PoCL's compiler prints diagnostics there; build logs reach the program
            # in the error's message instead
            self.proc = subprocess.Popen([sys.executable, "-c", code, path], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         close_fds=True)
        deadline = time.monotonic() + 60.0
        while not os.path.exists(path):  # pyopencl and the context take about a second to load
            if self.proc is not None and self.proc.poll() is not None:
                os.unlink(lock)
                raise OSError("the device process exited at start (is an OpenCL platform installed?)")
            if time.monotonic() > deadline:
                raise OSError("the device process did not start within 60 s")
            time.sleep(0.005)

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
            self.next_id += 1
            self.pending[self.next_id] = (sched, proc, req, time.monotonic())
            if sched.trace is not None:
                sched.trace.event(sched, "gpu_dispatch_start" if req[0] == "gpu-dispatch" else "gpu_build", proc.pid,
                                  kernel=req[1].name if req[0] == "gpu-dispatch" else req[2])
            send_frame(self.sock, (self.next_id, req))
        except OSError as e:
            self.pending.pop(self.next_id, None)
            sched.complete(proc, error=runtime_error(DEVICE_DOWN, f"the device process is not available: {e}").value)
            self._drop()

    def on_readable(self) -> None:
        """An answer (or the end of the device process): complete the waiting process."""
        try:
            answer = self.reader.read()
        except (EOFError, OSError):
            self._device_died()
            return
        self._answer(*answer)
        while self.reader is not None and self.reader.ready():  # answers that came with the same recv
            self._answer(*self.reader.read())  # whole in the buffer: no I/O, cannot fail

    def _answer(self, rid: int, ok: bool, value: Any) -> None:
        entry = self.pending.pop(rid, None)
        if entry is None:
            return
        sched, proc, req, _t0 = entry
        if sched.trace is not None:
            sched.trace.event(sched, "gpu_dispatch_end" if req[0] == "gpu-dispatch" else "gpu_built", proc.pid)
        if not ok:
            kind, message = value
            sched.complete(proc, error=runtime_error(intern(kind), message).value)
        elif req[0] == "gpu-kernel":
            from ..vm.gpu import Kernel

            kernel = Kernel(req[1], req[2], tuple(value), _source_key(req[1]))
            self.built[(kernel.key, kernel.name)] = kernel
            sched.complete(proc, value=kernel)
        else:
            out = []
            for x in value:
                if hasattr(x, "dtype"):
                    x.setflags(write=False)
                    out.append(F32Array(x))
                else:
                    out.append(x)
            sched.complete(proc, value=from_list(out))

    def _device_died(self) -> None:
        """Every process waiting on the device gets (error device_down ...); the next gpu/ call
        starts a new device process (kernels are rebuilt from their source)."""
        pending, self.pending = self.pending, {}
        self._drop()
        self.built.clear()
        for sched, proc, _req, _t in pending.values():
            sched.complete(proc, error=runtime_error(DEVICE_DOWN, "the device process died").value)

    def _drop(self) -> None:
        if self.sock is not None:
            self.node.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
            self.reader = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None
            if self.dir is not None:
                for name in ("device.sock", "device.sock.lock"):
                    try:
                        os.unlink(os.path.join(self.dir, name))
                    except FileNotFoundError:
                        pass

    def shutdown(self) -> None:
        """At the node's end: stop the device process if this OS process started it."""
        if self.sock is not None:
            try:
                send_frame(self.sock, (0, ("stop",)))
            except OSError:
                pass
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if self.sock is not None:
            self.node.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
            self.reader = None
        if self.own_dir and self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)


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
    import signal
    import threading

    import numpy as np
    import pyopencl as cl

    from ..vm.gpu import SCALARS

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the node stops us
    if os.environ.get("LISPVM_OPENCL"):
        os.environ["PYOPENCL_CTX"] = os.environ["LISPVM_OPENCL"]
    ctx = cl.create_some_context(interactive=False)
    cq = cl.CommandQueue(ctx)
    programs: dict[str, Any] = {}
    lock = threading.Lock()  # one request runs on the device at a time
    clients = [0, 0]  # connected now, ever connected
    done = threading.Event()

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    def serve(conn: socket.socket) -> None:
        """One scheduler's connection: read each request and run it, in order. The request
        runs in this thread (under the device lock): handing it to another thread cost a
        thread wake-up, about a third of a small dispatch's time."""
        reader = FrameReader(conn)
        while True:
            try:
                rid, req = reader.read()
            except Exception:  # closed, or a damaged frame: this client is lost, the others go on
                break
            if req[0] == "stop":
                done.set()
                break
            with lock:
                answer = handle(rid, req)
            try:
                send_frame(conn, answer)
            except OSError:
                break
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
            raise _Refused("badarg", f"gpu/kernel: the kernel does not compile:\n{e}") from None
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

    def dispatch(kernel: Any, n: int, args: tuple) -> list:
        # One cl.Kernel per (source, name): pyopencl builds each new Kernel object's argument
        # setter through an on-disk cache, which took ~30% of this process's time per dispatch.
        knl = kernels.get((kernel.key, kernel.name))
        if knl is None:
            knl = kernels[(kernel.key, kernel.name)] = cl.Kernel(program(kernel.source), kernel.name)
        mf = cl.mem_flags
        cl_args, buffers = [], []
        for x, (is_buffer, tname) in zip(args, kernel.params):
            if is_buffer:
                buf = cl.Buffer(ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=x)
                buffers.append((buf, x))
                cl_args.append(buf)
            else:
                cl_args.append(np.dtype(SCALARS[tname]).type(x))
        knl(cq, (n,), None, *cl_args)
        results = []
        it = iter(buffers)
        for x, (is_buffer, _) in zip(args, kernel.params):
            if is_buffer:
                buf, host = next(it)
                out = np.empty_like(host)
                cl.enqueue_copy(cq, out, buf)
                results.append(out)
            else:
                results.append(x)
        cq.finish()
        return results

    def handle(rid: int, req: tuple) -> tuple:
        try:
            value = build(req[1], req[2]) if req[0] == "gpu-kernel" else dispatch(req[1], req[2], req[3])
            return (rid, True, value)
        except _Refused as e:
            return (rid, False, (e.kind, e.message))
        except cl.Error as e:
            return (rid, False, ("badarg", f"gpu/dispatch: OpenCL refused the dispatch: {e}"))
        except Exception as e:  # a bug here must not take the device down for everyone
            return (rid, False, ("badarg", f"gpu: internal error in the device process: {e!r}"))

    # Only now, with every function above defined, may a client connect: a connection served
    # before `handle` existed killed its thread and left that client waiting for ever.
    tmp = path + f".{os.getpid()}"
    listener.bind(tmp)
    listener.listen(64)
    threading.Thread(target=acceptor, daemon=True).start()
    os.rename(tmp, path)  # the path appears only when requests can be served
    done.wait()
    listener.close()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class _Refused(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message


__all__ += ["BADARG"]
