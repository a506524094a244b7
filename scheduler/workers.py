"""Workers: starting, naming and reaping the OS processes of schedulers 1..N-1, and their main.

Owns: forking a new scheduler from the hub (`fork_worker`) or, where there is no fork, starting
a fresh interpreter that reads the program from the node's private directory (`spawn_worker`);
what the child does first (closing inherited descriptors, naming itself `lispvm-sched-K`) and
last (`os._exit`); the settings a worker gets from the hub; `worker_main`, a worker's whole
life; ForkedWorker, the hub's handle on a forked child; reaping workers that were still exiting
at the end of an earlier run; removing the node's directory. Must never: return from a forked
child into the parent's code, start a thread in a scheduler process (forking stays safe only
while there is none), or leave a worker running after the run.

Forking is what makes a new scheduler ready in milliseconds: the child has the program already
loaded, verified, decoded and compiled, and a copy of the processes given to it
(docs/processes.md, "Several OS processes"; docs/performance.md for the start's costs).
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from ..vm.codec import decode, encode
from ..vm.process import Globals, Process
from ..vm.state import VM
from .balance import install_poke
from .cluster import Worker
from .kernel import RUNNABLE

# numpy's BLAS starts a thread pool when numpy is imported (by a gpu/ builtin), and a scheduler
# process must stay single-threaded to fork its workers safely; nothing here uses BLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__all__ = ["ForkedWorker", "fork_worker", "reap", "remove_dir", "spawn_worker", "worker_main"]

CONFIG_LIMIT = 1 << 40  # the no-fork worker's settings file holds the whole program: no message limit
_UNREAPED: list[Any] = []  # workers of an earlier run of this OS process that were exiting at its end


def settings_of(nsched: int, argv: list[str], budget: int, trace_path: str | None, jit: bool,
                hub_pid: int | None, secret: bytes, main_pid: Any) -> tuple:
    """What a worker needs to know of the node (worker_main unpacks it in this order)."""
    return (nsched, argv, budget, trace_path, jit, hub_pid, secret, main_pid)


def fork_worker(sockdir: str, k: int, settings: tuple, loaded: tuple, streams: tuple,
                record: Callable[[ForkedWorker], None]) -> bool:
    """Fork scheduler k from this (the hub's) OS process; whether it was forked. The child runs
    worker_main with `loaded` (the module, globals, names, the processes given to it and the
    VM, as the hub has them) and never returns; `record` is called with the child's handle
    before Ctrl-C or SIGTERM can reach the hub, so that its shutdown stops the child."""
    for stream in streams:
        try:
            stream.flush()  # nothing buffered here may be written twice
        except (AttributeError, OSError, ValueError):
            pass
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        try:
            pid = os.fork()
        except OSError:  # no memory or process left for it: the node goes on without it
            return False
        if pid == 0:  # never returns; the program is already loaded and compiled here
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the hub's to handle
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            _forked_worker(sockdir, k, settings, loaded)
        record(ForkedWorker(pid))
        return True
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def spawn_worker(sockdir: str, k: int, settings: tuple, program: bytes, first: bool) -> Any:  # pragma: no cover
    """Where there is no fork: start scheduler k as a fresh interpreter, which reads the
    settings and the program from the node's private directory (written by the `first`)."""
    import subprocess

    if first:
        with open(os.path.join(sockdir, "config"), "wb") as f:
            f.write(encode((settings, program), limit=CONFIG_LIMIT))
    code = ("import sys; from lispvm.scheduler.workers import worker_main; "
            "worker_main(sys.argv[1], int(sys.argv[2]))")
    return subprocess.Popen([sys.executable, "-c", code, sockdir, str(k)],
                            stdin=subprocess.DEVNULL, close_fds=True)


class ForkedWorker:
    """A forked scheduler process, with the part of subprocess.Popen's interface the hub uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                done, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -1
                return self.returncode
            if done:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Its exit status, once it has exited; TimeoutError after `timeout` seconds.

        Waits on a pidfd where there is one: a sleep-and-check loop delayed the end of every run
        with two schedulers, and importing subprocess for its TimeoutExpired cost more still
        (docs/performance.md, "Messages between OS processes")."""
        deadline = None if timeout is None else time.monotonic() + timeout
        fd = -1
        if self.poll() is None and hasattr(os, "pidfd_open"):
            try:
                fd = os.pidfd_open(self.pid)
            except OSError:
                fd = -1
        try:
            while self.poll() is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"scheduler process {self.pid} did not exit in {timeout} s")
                if fd >= 0:
                    p = select.poll()
                    p.register(fd, select.POLLIN)
                    p.poll(None if left is None else left * 1000.0)  # readable once it has exited
                else:
                    time.sleep(0.001)
        finally:
            if fd >= 0:
                os.close(fd)
        return self.returncode  # type: ignore[return-value]

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def reap() -> None:
    """Reap the workers of earlier runs (run_program called again in one OS process)."""
    _UNREAPED[:] = [p for p in _UNREAPED if p.poll() is None]



def keep_for_reaping(worker: Any) -> None:
    """A worker that closed its sockets to exit: reaped by the next run's reap (or by init)."""
    _UNREAPED.append(worker)


def _forked_worker(sockdir: str, k: int, settings: tuple, loaded: tuple) -> None:
    """In the child of a fork: become scheduler k, then leave with os._exit, so that nothing of
    the parent (its finally blocks, atexit handlers, buffered output, a test runner around it)
    runs here."""
    code = 1
    try:
        import gc

        gc.freeze()  # the parent's objects stay as they are: none is finalized (closing an fd) here
        _close_inherited()  # the parent's sockets: peers must see EOF when the parent closes
        _set_name(f"lispvm-sched-{k}")
        # Only if the program used the GPU (importing the device client here would slow every
        # new scheduler's start, docs/performance.md).
        device = sys.modules.get(__package__ + ".device_client")
        if device is not None:
            device.forget_inherited()  # the parent's device connection is not ours to stop
        worker_main(sockdir, k, settings, loaded)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


def _close_inherited() -> None:
    """Close every descriptor but 0, 1 and 2: the open ones, listed by /proc (closing the whole
    range one by one slowed every start, docs/performance.md), or the whole range where there is
    no /proc."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        try:
            import resource

            top = min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 1 << 16)
        except (ImportError, ValueError, OSError):
            top = 1024
        os.closerange(3, top)
        return
    for fd in fds:
        if fd > 2:
            try:
                os.close(fd)
            except OSError:
                pass  # the directory listing's own descriptor, closed already


def remove_dir(path: str) -> None:
    """Remove the node's directory: its sockets (and the no-fork fallback's config) are plain
    entries, unlinked one by one, which is faster than shutil.rmtree's first call at the end of
    every run (docs/performance.md); rmtree is kept for anything else."""
    try:
        for name in os.listdir(path):
            os.unlink(os.path.join(path, name))
        os.rmdir(path)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


def _set_name(name: str) -> None:
    """Name this process (Linux: /proc/PID/comm, what `ps -o comm` and `top` show)."""
    try:  # what prctl(PR_SET_NAME) sets, without ctypes or a text file object (both slow a start)
        fd = os.open("/proc/self/comm", os.O_WRONLY)
        try:
            os.write(fd, name[:15].encode())
        finally:
            os.close(fd)
    except OSError:
        pass


def worker_main(sockdir: str, k: int, settings: tuple | None = None, loaded: tuple | None = None) -> None:
    """Entry point of scheduler k's OS process. In a child forked from the hub, `settings` are
    the node's (settings_of, Hub.start_worker) and `loaded` its module and globals as the hub has them
    (verified, decoded, with the fast tier's compiled functions); otherwise both are read from
    the node's directory and the program is loaded."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the hub's to handle
    names: dict = {}
    given: list[Process] = []
    if loaded is not None:
        module, globals_, names, given, vm = loaded  # the hub's VM: its fast tier came with the fork
    else:
        vm = VM()
        with open(os.path.join(sockdir, "config"), "rb") as f:
            settings, program = decode(f.read(), limit=CONFIG_LIMIT)
        from .node import load_program

        globals_ = Globals()
        module = load_program(program, globals_)
    nsched, argv, budget, trace_path, jit, hub_pid, secret, main_pid = settings
    trace = None
    if trace_path:  # the tracing module imports structlog, whose import cost is paid only when tracing
        from .trace import make_tracer

        trace = make_tracer(trace_path, k)
    node = Worker(k, nsched, sockdir, module, globals_, argv, budget, trace, main_pid=main_pid, vm=vm)
    node.hub_pid = hub_pid
    node.secret = secret
    for name, pid in names.items():
        node.bind(name, pid)
    for proc in given:
        node.adopt(proc, RUNNABLE)
    if jit:
        from ..vm import fast

        if loaded is not None and vm.fast is not None:
            fast.rearm(vm)  # a fork keeps the compiled code but not the interval timer
        else:
            fast.enable(vm, globals_, budget)
    node.pokeable = install_poke(jit, vm) is not False
    try:
        node.run()
    finally:
        if 0 not in node.dead:
            node.drain(2.0)  # output and events written before the stop are not cut off
        if trace is not None:
            trace.close()  # all of it written before the hub sees this scheduler end
        from .node import stop_device

        stop_device()
        node.close()
        if 0 in node.dead and not node.stopping:
            # The hub was killed (SIGKILL leaves it no chance): the schedulers that survive it
            # remove the node's directory (whichever comes last finds it gone: no error).
            remove_dir(sockdir)
