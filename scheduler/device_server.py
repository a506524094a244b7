"""The device process: the node's only OpenCL context and queue, in an OS process of its own.

Owns: the device process's life (listening on the node's device socket, confining itself,
making the OpenCL context, stopping when told or when its last connection closes), serving each
connection in a thread of its own, the kernel cache (built programs by the hash of their source,
on top of PoCL's own cache, and one cl.Kernel per kernel), running dispatches on the client's
shared segments or copies, and turning every failure of a request into an error answer.

Must never: run a request before it is confined (connections are accepted only after Landlock
and seccomp are in force), run two requests on the device at once (one lock; each connection's
requests run in arrival order, so each caller's order is kept), let one client's damaged
request or vanished socket stop the others, or answer while a kernel may still write a segment
the caller will reuse.

Started by scheduler/device_client.py as `python -c "... device_main(path)"`; it writes one
byte, then its warning lines, on its stdout once it listens, and closes it (or "n" and why no
device can run a kernel, and exits). Device choice (scheduler/device_select.py): LISPVM_OPENCL,
with the syntax of pyopencl's PYOPENCL_CTX ("0", "0:1", a name substring); unset, the first
device, GPUs first, that builds and runs a probe kernel.
"""

from __future__ import annotations

import mmap
import os
import resource
import shutil
import signal
import socket
import sys
import threading
from typing import Any

from ..vm.gpu import SCALARS  # our modules before Landlock: their directory is not readable after
from . import confine, device_select
from .clock import BusyWait
from .device_shm import Segments
from .device_wire import (
    FLAT_ANSWER,
    FLAT_REQUEST,
    FORGET,
    HELLO,
    KERNEL,
    SHM_MIN,
    STOP,
    FrameReader,
    flat_parts,
    is_request,
    send_frame,
    send_parts,
    source_key,
)

__all__ = ["device_main", "DeviceServer", "SPIN_S"]

# Seconds a connection's thread reads without sleeping after an answer, for the same caller's
# next request (clock.BusyWait; docs/performance.md, "The device process").
SPIN_S = 200e-6
# Small buffers (fewer than SHM_MIN bytes) a connection keeps between dispatches on a CPU device,
# by (argument position, bytes): making a cl.Buffer and reading it back each time was most of a
# small dispatch's time in the device (docs/performance.md, "Issue 16, wave 5, G").
SMALL_KEEP = 16
COPY, MAP, KEPT = 0, 1, 2  # how a buffer's results reach the host (DeviceServer.results)


def device_main(path: str) -> None:
    """Entry point of the device process: serve requests until told to stop or left alone. When
    no device can run a kernel it says why on its stdout ("n" and one line) and exits 3."""
    try:
        server = DeviceServer(path)
    except device_select.NoDevice as e:
        os.write(1, b"n" + str(e).encode(errors="replace"))
        sys.exit(3)
    server.run()


class Refused(Exception):
    """A request the device turns down: answered as (error KIND MESSAGE) to its caller."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message


class DeviceServer:
    """The device process's state: its listener, the OpenCL context and queue, the kernel
    cache, and the count of connected clients."""

    def __init__(self, path: str) -> None:
        """Listen at `path`, confine this process with Landlock (while it has one thread), then
        load numpy and pyopencl and make the context."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the node stops us
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crashing kernel leaves no core file behind
        # Listening first: a client that finds the socket now waits in the backlog until we serve.
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(64)
        cache = cache_dir(os.path.dirname(path))
        # PoCL's kernel cache, pyopencl's and NVIDIA's: all in the one directory we may write
        os.environ.update(POCL_CACHE_DIR=os.path.join(cache, "pocl"), XDG_CACHE_HOME=cache,
                          CUDA_CACHE_PATH=os.path.join(cache, "nv"))
        # pyopencl's own binary cache (used for drivers it thinks keep none, Intel's CPU runtime
        # for one) gives back programs without the argument info gpu/kernel reads
        os.environ["PYOPENCL_NO_CACHE"] = "1"
        self.warnings: list[str] = []
        # pip-installed CPU runtimes (the cpu-opencl extra) join the system's ICD files, in the
        # cache directory, which stays readable under Landlock
        device_select.use_extra_runtimes(cache)
        self.confined = os.environ.get("LISPVM_DEVICE_CONFINE", "1") != "0"
        if self.confined:  # now, while this process has one thread (see confine.py)
            _abi, said = confine.landlock(device_rules(cache))
            self.warnings += said
        else:
            self.warnings.append("LISPVM_DEVICE_CONFINE=0: the device process is not confined; kernels may open "
                                 "any file the user can, start programs and make sockets")

        import numpy as np
        import pyopencl as cl

        self.np, self.cl = np, cl
        # every device in turn until one builds and runs our probe kernel (NoDevice: none does)
        self.ctx, self.tried = device_select.choose(cl, os.environ.get("LISPVM_OPENCL"))
        self.queue = cl.CommandQueue(self.ctx)
        self.host_is_device = all(d.type & cl.device_type.CPU for d in self.ctx.devices)
        self.programs: dict[str, Any] = {}  # source hash -> built cl.Program
        self.kernels: dict[tuple[str, str], Any] = {}  # (source hash, name) -> its one cl.Kernel
        self.kernel_args: dict[tuple[str, str], tuple] = {}  # (source hash, name) -> the arguments it was last given
        self.lock = threading.Lock()  # one request runs on the device at a time; guards the counts
        self.clients = 0  # connected now
        self.done = threading.Event()  # told to stop, or the last client left

    def run(self) -> None:
        """Apply seccomp to every thread, accept connections, say that we listen, and wait until
        told to stop or left alone."""
        if self.confined:  # every thread, PoCL's workers included, from here on
            self.warnings += confine.seccomp()
        # Connections are accepted only now, confined (those made earlier wait in the backlog).
        threading.Thread(target=self.accept, daemon=True).start()
        # the starter waits for this byte (or for our exit) while it holds the start lock, then
        # reads our warnings to the end of the pipe
        os.write(1, b"r" + "".join(f"lispvm: device process: {w}\n" for w in self.warnings).encode())
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        self.done.wait()
        self.listener.close()  # the socket file stays: the next starter removes it under the start lock

    # --- connections ----------------------------------------------------------------------------

    def accept(self) -> None:
        """Accept connections until the listener closes, each served by a thread of its own."""
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                if self.done.is_set():  # stopping: ungreeted, the client starts a new device process
                    conn.close()
                    continue
                self.clients += 1
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        """One scheduler's connection: read each request and run it, in order. The request runs
        in this thread (under the device lock): handing it to another thread would add a thread
        wake-up to every dispatch. A damaged frame or request, or anything else going wrong with
        this client, closes its connection (the client sees device_down); the others go on."""
        segs = Segments()  # this client's shared segments, mapped here once each
        reader = FrameReader(conn, segs, take_fds=True, flat=FLAT_REQUEST)
        busy = BusyWait(SPIN_S)
        known: dict[int, Any] = {}  # the kernels this client sent, by their number
        kept: dict[tuple[int, int], tuple] = {}  # this client's small buffers (small_buffer)
        try:
            send_frame(conn, (0, HELLO, os.getpid()))
        except OSError:
            pass  # the client is gone; the read below ends this thread
        try:
            while True:
                try:
                    if not reader.ready():
                        busy.spin(reader.arrived)  # the caller's next request comes soon, often
                    msg = reader.read()
                except Exception:  # closed, or a damaged frame
                    break
                if not is_request(msg):
                    break  # a damaged request, as a damaged frame
                if msg[1] == STOP:
                    self.done.set()
                    break
                if msg[1] == FORGET:
                    segs.drop(msg[2])  # damaged (no list of ids): the except below closes the connection
                    continue
                with self.lock:
                    answer = self.handle(msg, known, kept)
                # arrays and numbers only (a small dispatch's results): a flat frame, no codec
                flat = flat_parts(FLAT_ANSWER, answer[0], 0, 0, answer[2]) if answer[1] is True else None
                try:
                    if flat is not None:
                        send_parts(conn, *flat, drain=reader)
                    else:
                        send_frame(conn, answer, segs, drain=reader)
                except (OSError, EOFError):
                    break
        except Exception:  # whatever else went wrong with this client: it is lost, the connection closed
            pass
        finally:
            reader.close_fds()
            conn.close()
            with self.lock:
                self.clients -= 1
                if self.clients == 0:
                    self.done.set()  # everyone left

    def handle(self, msg: tuple, known: dict[int, Any], kept: dict | None = None) -> tuple:
        """The answer to one request (device_wire's shapes): its value, or an error that names
        what was refused. `known`: the connection's kernels by number; `kept`: its small buffers."""
        rid = msg[0]
        try:
            if msg[1] == KERNEL:  # (rid, KERNEL, source, name)
                value = self.build(msg[2], msg[3])
            else:  # (rid, DISPATCH, number, the kernel the first time else None, n, args, outs or None)
                _, _op, ref, kernel, n, args, outs = msg
                if kernel is not None:
                    known[ref] = kernel
                value = self.dispatch(known[ref], n, args, (None,) * len(args) if outs is None else outs, kept)
            return (rid, True, value)
        except Refused as e:
            return (rid, False, (e.kind, e.message))
        except self.cl.Error as e:
            return (rid, False, ("badarg", f"gpu/dispatch: OpenCL refused the dispatch: {e}"))
        except Exception as e:  # a bug here must not take the device down for everyone
            return (rid, False, ("badarg", f"gpu: internal error in the device process: {e!r}"))

    # --- kernels --------------------------------------------------------------------------------

    def program(self, source: str) -> Any:
        """The built program of `source`, from the cache or built now (cl.RuntimeError if it does
        not compile)."""
        key = source_key(source)
        prog = self.programs.get(key)
        if prog is None:
            prog = self.programs[key] = self.cl.Program(self.ctx, source).build(options=["-cl-kernel-arg-info"])
        return prog

    def build(self, source: str, name: str) -> list:
        """Build kernel `name` of `source`: its parameters as (is buffer, type name) pairs, or
        Refused (badarg) when it does not compile or takes a parameter arrays cannot fill."""
        cl = self.cl
        try:
            prog = self.program(source)
        except cl.RuntimeError as e:
            why = ("the kernel does not compile: it includes a file the device process may not read "
                   "(docs/gpu.md, Confinement)" if "Permission denied" in str(e) else "the kernel does not compile")
            raise Refused("badarg", f"gpu/kernel: {why}:\n{e}") from None
        try:
            knl = cl.Kernel(prog, name)
        except cl.Error:
            raise Refused("badarg", f"gpu/kernel: the source defines no kernel named {name}") from None
        params = []
        for i in range(knl.num_args):
            aq = knl.get_arg_info(i, cl.kernel_arg_info.ADDRESS_QUALIFIER)
            tname = knl.get_arg_info(i, cl.kernel_arg_info.TYPE_NAME)
            is_buffer = aq in (cl.kernel_arg_address_qualifier.GLOBAL, cl.kernel_arg_address_qualifier.CONSTANT)
            if is_buffer and tname.replace(" ", "") != "float*":
                raise Refused("badarg", f"gpu/kernel: parameter {i} of {name} is {tname}: only float* "
                                        "buffers are supported (arrays are float32)")
            if not is_buffer and tname not in SCALARS:
                raise Refused("badarg", f"gpu/kernel: parameter {i} of {name} has unsupported type {tname}")
            params.append((is_buffer, tname))
        return params

    def small_buffer(self, kept: dict, i: int, nbytes: int) -> tuple:
        """The kept buffer for argument `i` of `nbytes` bytes (kept: a connection's, LRU, at most
        SMALL_KEEP), made now if none is: (host array, cl.Buffer using it, how results are
        read). Its host memory is page aligned, which a CPU runtime uses in place: checked once
        here by mapping it, and then the kernel's writes are in the host array when the queue
        has finished (KEPT, no map per dispatch); otherwise each dispatch maps it (MAP)."""
        cl = self.cl
        entry = kept.pop((i, nbytes), None)
        if entry is None:
            host = self.np.frombuffer(mmap.mmap(-1, nbytes), dtype=self.np.float32)
            buf = cl.Buffer(self.ctx, cl.mem_flags.READ_WRITE | cl.mem_flags.USE_HOST_PTR, hostbuf=host)
            mapped, _ev = cl.enqueue_map_buffer(self.queue, buf, cl.map_flags.READ, 0, host.shape, host.dtype)
            same = mapped.__array_interface__["data"][0] == host.__array_interface__["data"][0]
            mapped.base.release(self.queue)
            self.queue.finish()
            entry = (host, buf, KEPT if same else MAP)
            while len(kept) >= SMALL_KEEP:
                del kept[next(iter(kept))]  # the least recently used
        kept[(i, nbytes)] = entry
        return entry

    def dispatch(self, kernel: Any, n: int, args: tuple, outs: tuple, kept: dict | None = None) -> list:
        """Run `kernel` over `n` work items on `args`; its results (each buffer argument's final
        contents, in `outs`' segments where the caller gave one, each scalar as given). On a CPU
        device a small argument runs in a buffer `kept` by the connection, and its result is
        that buffer's host array, valid until the connection's next request (the answer is
        written before that is read)."""
        cl, np, ctx = self.cl, self.np, self.ctx
        # One cl.Kernel per (source, name): pyopencl builds each new Kernel object's argument
        # setter through an on-disk cache (docs/performance.md, "The device process").
        knl = self.kernels.get((kernel.key, kernel.name))
        if knl is None:
            knl = self.kernels[(kernel.key, kernel.name)] = cl.Kernel(self.program(kernel.source), kernel.name)
        mf = cl.mem_flags
        cl_args, buffers = [], []
        for i, (x, out, (is_buffer, tname)) in enumerate(zip(args, outs, kernel.params)):
            if not is_buffer:
                cl_args.append(np.dtype(SCALARS[tname]).type(x))
            elif out is None and kept is not None and self.host_is_device and 0 < x.nbytes < SHM_MIN:
                host, buf, how = self.small_buffer(kept, i, x.nbytes)
                host[:] = x
                buffers.append((buf, host, how))
                cl_args.append(buf)
            elif out is not None and self.host_is_device:
                # A CPU device reads and writes host memory itself: copy the input into the
                # caller's result segment once and run the kernel on it in place (a GPU driver
                # copies a USE_HOST_PTR buffer anyway, so there the path below is used).
                out[:] = x
                buf = cl.Buffer(ctx, mf.READ_WRITE | mf.USE_HOST_PTR, hostbuf=out)
                buffers.append((buf, out, MAP))
                cl_args.append(buf)
            else:
                buf = cl.Buffer(ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=x)
                buffers.append((buf, x if out is None else out, COPY))
                cl_args.append(buf)
        try:
            # the same arguments as last time (kept buffers, no scalar): not set again
            key = (kernel.key, kernel.name)
            last = self.kernel_args.get(key)
            if last is None or len(last) != len(cl_args) or any(a is not b for a, b in zip(last, cl_args)):
                self.kernel_args[key] = ()  # (if setting fails half way, nothing is known set)
                knl.set_args(*cl_args)
                self.kernel_args[key] = tuple(cl_args)
            cl.enqueue_nd_range_kernel(self.queue, knl, (n,), None)
            return self.results(args, outs, kernel, buffers)
        finally:  # never answer (and let the caller reuse a segment) while the kernel may run
            self.queue.finish()

    def results(self, args: tuple, outs: tuple, kernel: Any, buffers: list) -> list:
        """A dispatch's results: each buffer read back, or mapped or as it is when the kernel ran
        in place (how), each scalar argument as it was."""
        cl, cq = self.cl, self.queue
        results = []
        it = iter(buffers)
        for x, out, (is_buffer, _) in zip(args, outs, kernel.params):
            if is_buffer:
                buf, host, how = next(it)
                if how == KEPT:  # the kernel writes `host` itself; the queue finishes before we answer
                    out = host
                elif how == MAP:  # mapping makes the kernel's writes visible in `host` (no copy here)
                    mapped, _ev = cl.enqueue_map_buffer(cq, buf, cl.map_flags.READ, 0, host.shape, host.dtype)
                    mapped.base.release(cq)
                    out = host
                else:  # small: sent back inline; large: the caller's segment, shared
                    out = self.np.empty_like(host) if out is None else out
                    cl.enqueue_copy(cq, out, buf)
                results.append(out)
            else:
                results.append(x)
        return results


def cache_dir(private: str) -> str:
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


def device_rules(cache: str) -> list[tuple[str, int]]:
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
