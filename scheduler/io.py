"""The I/O service: what a scheduler does for a process that waits on the outside world.

Owns: the table of I/O operations (`IO_OPS`, filled by `io_op` here and in scheduler/tcp.py,
scheduler/ports.py...), one IoService per scheduler OS process (`service`), its small thread
pool for work that cannot be polled (regular files), the self-pipe through which the pool's
results come back to the scheduler's loop (registered on the node's Poller, so an idle scheduler
sleeps in its poll until I/O or its next timer), the resources processes own (closed when they
end), and standard input (one reader of fd 0 per node: the scheduler 0's; other schedulers ask
it). Must never: run Lisp code or touch a process outside the scheduler's loop (pool threads
only compute and hand a callback to `call_soon_threadsafe`), or block the loop.

A builtin that must wait checks its permission and arguments, then raises
`vm.process.Block(("io", NAME, *args))`; the node's request_service hands it to `service(sched)`
(`submit`), which calls `IO_OPS[NAME](service, proc, args)`. The handler answers at once with
`complete`, or later: from a poller callback, or from a pool thread (`run_in_thread`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import gc
import heapq
import os
import queue
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..vm import handles
from ..vm.errors import LispError, badarg, runtime_error
from ..vm.net_builtins import NOT_OWNER, WOULD_WAIT, closed_error
from ..vm.permissions import os_error
from ..vm.process import Process
from ..vm.values import FALSE, TRUE, from_list

__all__ = ["IO_OPS", "IoService", "io_op", "service"]

IO_OPS: dict[str, Callable[[IoService, Process, tuple], None]] = {}
POOL_SIZE = 4  # threads at most: file work is short, and a scheduler's own CPU is the bottleneck
STDIN_CHUNK = 1 << 16  # bytes read from fd 0 at a time


def io_op(name: str) -> Callable:
    """Decorator: register `fn(service, proc, args)` as the handler of ("io", name, *args)."""

    def deco(fn: Callable[[IoService, Process, tuple], None]) -> Callable:
        IO_OPS[name] = fn
        return fn

    return deco


# The modules that register the operations of a family of names, imported on first use.
PROVIDERS = {"tcp/": ".tcp", "port/": ".ports", "py/": ".pyio"}


def _provider(name: str) -> Callable | None:
    import importlib

    for prefix, mod in PROVIDERS.items():
        if name.startswith(prefix):
            try:
                importlib.import_module(mod, __package__)
            except ImportError:
                return None
            return IO_OPS.get(name)
    return None


def service(sched: Any) -> IoService:
    """The scheduler's IoService, started on first use (a program that does no I/O pays nothing)."""
    svc = sched.io
    if svc is None:
        svc = sched.io = IoService(sched)
        sched.node.services.append(svc)
        _LIVE.append(svc)
    return svc


_LIVE: list[IoService] = []  # this OS process's services (a forked child inherits the list, not them)


def close_all() -> None:
    """The node ends here: close the I/O services this OS process started (not a parent's)."""
    me = os.getpid()
    for svc in [s for s in _LIVE if s.os_pid == me]:
        svc.close()
    _LIVE.clear()


class IoService:
    """I/O for the processes of one scheduler (kernel.Service: while a process waits on it, or a
    resource that can send messages is open, its scheduler is not deadlocked)."""

    def __init__(self, sched: Any) -> None:
        self.sched = sched  # the scheduler whose processes this serves
        self.os_pid = os.getpid()  # the OS process it belongs to
        self.node = sched.node
        self.poller = self.node.poller  # the node's scheduler/poller.py Poller
        self.blocked: dict[int, Process] = {}  # pid key -> a process waiting on an I/O request
        self.owned: dict[int, list] = {}  # pid key -> resources it owns (closed when it ends)
        self.stdin: StdinReader | None = None  # (scheduler 0) the node's reader of fd 0
        self._calls: deque[Callable[[], None]] = deque()  # from pool threads, run in the loop
        self._rfd, self._wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.poller.add_reader(self._rfd, self._drain)
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # pool threads waiting for a job
        self._lock = threading.Lock()  # guards _idle against the pool threads
        self._pipe_lock = threading.Lock()  # the pipe is closed only while no thread writes to it
        self._spin = False  # a job was handed to the pool since new_request was last asked
        self._timers: _Timers | None = None  # deadlines of calls that wait with a timeout (started on first use)

    # --- kernel.Service --------------------------------------------------------------------

    def outstanding(self) -> int:
        """Processes waiting on I/O, plus owned resources that may still send messages (a
        resource says so with a true `wakes` attribute: an active socket, a port)."""
        n = len(self.blocked)
        for res in self.owned.values():
            for r in res:
                if getattr(r, "wakes", False):
                    n += 1
        return n

    def new_request(self) -> bool:
        spin, self._spin = self._spin, False
        return spin

    # --- requests --------------------------------------------------------------------------

    def submit(self, sched: Any, proc: Process) -> None:
        """Handle the BLOCK request ("io", NAME, *args) of `proc`."""
        req = proc.request
        self.blocked[proc.pid.key] = proc
        op = IO_OPS.get(req[1]) if len(req) > 1 else None
        if op is None and len(req) > 1 and req[1].__class__ is str:
            op = _provider(req[1])
        try:
            if op is None:
                raise badarg(f"no I/O operation {req[1:2]!r}")
            op(self, proc, req[2:])
        except LispError as e:
            self.complete(proc, error=e.value)
        except OSError as e:
            self.complete(proc, error=os_error(e, req[1]))

    def complete(self, proc: Process, value: Any = None, error: Any = None) -> None:
        """Resume `proc` with `value`, or raise the Lisp error value `error` at its call (nothing
        if it ended meanwhile)."""
        self.blocked.pop(proc.pid.key, None)
        self.sched.complete(proc, value, error)

    def run_in_thread(self, proc: Process, fn: Callable, *args: Any) -> None:
        """Run `fn(*args)` in the pool; its value completes `proc`, an OSError becomes
        `(error <errno name> "...")` and a LispError its value."""
        name = proc.request[1] if proc.request else None

        def job() -> None:
            try:
                value, error = fn(*args), None
            except OSError as e:
                value, error = None, os_error(e, name)
            except LispError as e:
                value, error = None, e.value
            except (ValueError, MemoryError) as e:  # (a decoding error, a file too large)
                value, error = None, badarg(f"{name}: {e}").value
            self.call_soon_threadsafe(lambda: self.complete(proc, value, error))

        self.submit_job(job)

    def submit_job(self, job: Callable[[], None]) -> None:
        """Run `job()` in the pool (it must report back through call_soon_threadsafe)."""
        self._spin = True
        with self._lock:
            start = self._idle == 0 and len(self._threads) < POOL_SIZE
        if start:
            t = threading.Thread(target=self._worker, name=f"lispvm-io-{len(self._threads)}", daemon=True)
            self._threads.append(t)
            t.start()
        self._jobs.put(job)

    def _worker(self) -> None:
        jobs = self._jobs
        while True:
            with self._lock:
                self._idle += 1
            job = jobs.get()
            with self._lock:
                self._idle -= 1
            if job is None:
                return
            try:
                job()
            except BaseException as e:  # pragma: no cover - a job reports its own errors
                self.call_soon_threadsafe(functools.partial(_raise, e))

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> None:
        """From any thread: run `callback()` in the scheduler's loop, at its next poll (never,
        once the service is closed: a job still running at the node's end is forgotten)."""
        self._calls.append(callback)  # (deque.append is atomic)
        with self._pipe_lock:  # a closed pipe's number may already be another file's
            if self._wfd < 0:
                return
            try:
                os.write(self._wfd, b"\0")
            except (BlockingIOError, OSError):
                pass  # the pipe is full: a wake-up is pending anyway

    def _drain(self) -> None:
        try:
            while os.read(self._rfd, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        calls = self._calls
        while calls:
            calls.popleft()()

    def call_later(self, seconds: float, callback: Callable[[], None]) -> list:
        """Run `callback()` in the scheduler's loop once `seconds` have passed (a deadline of a
        call that waits on the outside world: tcp/connect's timeout); give the entry to
        `cancel_timer` to forget it. A thread of the service sleeps until the earliest deadline
        and hands the callback to call_soon_threadsafe: the scheduler's own timers are its
        processes' (receive ... after), and a deadline here must wake a scheduler asleep in
        its poll as any other I/O does."""
        if self._timers is None:
            self._timers = _Timers(self)
        return self._timers.add(seconds, callback)

    @staticmethod
    def cancel_timer(entry: list | None) -> None:
        """The deadline `entry` (from call_later) is not wanted any more."""
        if entry is not None:
            entry[2] = None

    # --- resources -------------------------------------------------------------------------

    def own(self, proc: Process, resource: Any) -> None:
        """`resource.close()` runs when `proc` ends (unless disowned first)."""
        self.owned.setdefault(proc.pid.key, []).append(resource)

    def disown(self, proc: Any, resource: Any) -> None:
        """Forget that `proc` (a Process or a Pid) owns `resource` (it was closed, or handed on)."""
        key = proc.key if hasattr(proc, "key") else proc.pid.key
        res = self.owned.get(key)
        if res is not None:
            try:
                res.remove(resource)
            except ValueError:
                pass
            if not res:
                del self.owned[key]

    def process_ended(self, proc: Process) -> None:
        """`proc` ended: it waits on nothing any more, and what it owned is closed."""
        key = proc.pid.key
        was = self.blocked.pop(key, None)
        if self.stdin is not None:
            self.stdin.forget(proc.pid)
        if was is not None and self.sched.id != 0 and (proc.request or ())[1:2] == ("io/read-line",):
            self.node.emit(0, ("stdin_cancel", proc.pid))  # the line it asked for is not taken
        for res in self.owned.pop(key, ()):
            try:
                res.close()
            except Exception as e:  # noqa: BLE001 - a failing close must not end the scheduler
                sys.stderr.write(f"lispvm: closing {res!r} of {proc.pid!r} failed: {e}\n")

    def close(self) -> None:
        """The node ends: close every owned resource, stop the pool, close the self-pipe."""
        # A resource closed here may go on the CLOSING list (a port's child killed but not dead
        # yet, a socket with bytes still to write), and a second close() is what ends those (it
        # reaps the child): the list taken before the first round did not hold them, so the node
        # ended before its children did, leaving them to init (tests/test_ports.py).
        done: set[tuple[Any, int]] = set()  # (owner key, resource): each closed once where it is
        while todo := [(k, r) for k, rs in self.owned.items() for r in rs if (k, id(r)) not in done]:
            for key, res in todo:
                done.add((key, id(res)))
                try:
                    res.close()
                except Exception:  # noqa: BLE001,S110 - the node is ending: nothing to tell
                    pass
        self.owned.clear()
        if self.stdin is not None:
            self.stdin.close()
        if self._timers is not None:
            self._timers.stop()
        for _ in self._threads:
            self._jobs.put(None)
        self.poller.remove(self._rfd)
        with self._pipe_lock:
            for fd in (self._rfd, self._wfd):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._rfd = self._wfd = -1


class _Timers:
    """The I/O service's deadlines: a heap of [when, seq, callback] and one daemon thread that
    sleeps until the earliest, then hands its callback to the scheduler's loop. A cancelled
    entry has callback None and is dropped when it comes up."""

    def __init__(self, svc: IoService) -> None:
        self.svc = svc
        self.heap: list[list] = []
        self.cond = threading.Condition()
        self.seq = 0
        self.stopped = False
        threading.Thread(target=self._run, name="lispvm-io-timers", daemon=True).start()

    def add(self, seconds: float, callback: Callable[[], None]) -> list:
        with self.cond:
            self.seq += 1
            entry = [time.monotonic() + max(0.0, seconds), self.seq, callback]
            heapq.heappush(self.heap, entry)
            if self.heap[0] is entry:
                self.cond.notify()
        return entry

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.heap.clear()
            self.cond.notify()

    def _run(self) -> None:
        heap, cond = self.heap, self.cond
        with cond:
            while not self.stopped:
                while heap and heap[0][2] is None:
                    heapq.heappop(heap)
                if not heap:
                    cond.wait()
                    continue
                delay = heap[0][0] - time.monotonic()
                if delay > 0:
                    cond.wait(delay)
                    continue
                self.svc.call_soon_threadsafe(functools.partial(_fire, heapq.heappop(heap)))


def _fire(entry: list) -> None:
    """In the scheduler's loop: a deadline came. Its callback runs unless cancel_timer blanked
    it first (both happen in the loop, so a cancel is never overtaken)."""
    callback = entry[2]
    if callback is not None:
        entry[2] = None
        callback()


def _raise(e: BaseException) -> None:  # pragma: no cover - a pool job's slip, reported in the loop
    raise e


class StdinReader:
    """The node's one reader of fd 0: lines go to the waiting processes in the order they asked.
    It polls fd 0 only while someone waits (a pipe, a terminal or a file), reads what is there
    with one os.read (never blocking: poll said it is ready, and a terminal gives a line at a
    time), and keeps what it read beyond a line for the next asker. fd 0 is left blocking: its
    file description is shared with the shell."""

    def __init__(self, svc: IoService) -> None:
        self.svc = svc
        self.buf = bytearray()
        self.eof = False
        self.waiting: deque[tuple[Any, Callable[[Any, Any], None]]] = deque()  # (who, answer(value, error))
        self.polled = False
        if sys.__stdin__ is None:  # fd 0 was closed when this OS process started (its number may
            self.eof = True  # since have been reused for another file: it is never read)

    def ask(self, who: Any, answer: Callable[[Any, Any], None]) -> None:
        """`answer(line_or_None, error)` once the next line (or the end) is there."""
        self.waiting.append((who, answer))
        self._serve()
        if self.waiting and not self.eof and not self.polled:
            try:
                self.svc.poller.add_reader(0, self._readable)
                self.polled = True
            except (OSError, ValueError) as e:  # fd 0 is closed: that is the end of the input
                self.eof = True
                if isinstance(e, OSError) and e.errno not in (9, None):
                    self._fail(os_error(e, "io/read-line"))
                self._serve()

    def forget(self, pid: Any) -> None:
        """The process `pid`, which waited for a line, ended."""
        if self.waiting:
            self.waiting = deque(w for w in self.waiting if w[0] != pid)
            self._unpoll_if_idle()

    def _readable(self) -> None:
        try:
            data = os.read(0, STDIN_CHUNK)
        except BlockingIOError:
            return
        except OSError as e:
            self.eof = True
            self._fail(os_error(e, "io/read-line"))
            return
        if data:
            self.buf += data
        else:
            self.eof = True
        self._serve()

    def _fail(self, error: Any) -> None:
        while self.waiting:
            self.waiting.popleft()[1](None, error)
        self._unpoll_if_idle()

    def _serve(self) -> None:
        buf = self.buf
        while self.waiting:
            i = buf.find(b"\n")
            if i >= 0:
                line = bytes(buf[:i])
                del buf[:i + 1]
            elif self.eof and buf:
                line = bytes(buf)
                buf.clear()
            elif self.eof:
                line = None
            else:
                break
            if line is not None:
                if line.endswith(b"\r"):
                    line = line[:-1]
                line = line.decode("utf-8", "replace")
            self.waiting.popleft()[1](line, None)
        self._unpoll_if_idle()

    def _unpoll_if_idle(self) -> None:
        # a ready fd 0 with nobody to read it would wake every poll: it is polled only on demand
        if self.polled and (not self.waiting or self.eof):
            self.svc.poller.remove_reader(0)
            self.polled = False

    def close(self) -> None:
        if self.polled:
            self.svc.poller.remove_reader(0)
            self.polled = False


# --- files: each call is one job in the pool (a regular file cannot be polled) ---------------

_NOT_REGULAR = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                (stat.S_ISSOCK, "a socket"))


def _open_regular(path: str, flags: int, mode: str) -> Any:
    """The text file at `path`, refused unless it is a regular file: a FIFO, a terminal or a
    device would hold a pool thread for ever (or, like /dev/zero, read without end), and a few
    such calls would starve every file call of the scheduler. Opened without blocking (a FIFO
    without a writer or reader answers at once), checked with fstat, then read or written."""
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
            what = next((w for test, w in _NOT_REGULAR if test(st.st_mode)), "not a file")
            raise OSError(errno.EINVAL, f"Not a regular file ({what})", path)
        os.set_blocking(fd, True)
        if "b" in mode:
            return open(fd, mode)
        return open(fd, mode, encoding="utf-8", newline="")
    except BaseException:
        os.close(fd)
        raise


def _read_text(path: str) -> str:
    with _open_regular(path, os.O_RDONLY, "r") as f:
        return f.read()


LINES_CHUNK = 1 << 20  # bytes file/lines reads at a time into one reused buffer
BATCH_CHUNK = 1 << 16  # bytes of a file/read-lines batch: small enough that its text stays in the CPU's cache


def _lines(path: str) -> Any:
    with _open_regular(path, os.O_RDONLY, "rb") as f:
        lines = split_lines(f.fileno())
    with _no_gc():
        return from_list(lines)


def split_lines(fd: int, chunk: int = LINES_CHUNK) -> list[str]:
    """The lines of the UTF-8 text read from `fd` to its end, without their `\\n` (a last line
    without one counts). Read a chunk at a time into one buffer, each chunk decoded and split up
    to its last newline: the same memory is read into again and again, where reading the whole
    file first, then decoding it, then splitting it wrote three copies of it into fresh pages
    (docs/performance.md, "Files: reading a large log"). A newline byte never occurs inside a
    UTF-8 sequence, so a chunk cut after one decodes alone."""
    out: list[str] = []
    buf = bytearray(chunk)
    view = memoryview(buf)
    rest = bytearray()  # the start of a line that the chunks read so far have not ended
    offset = 0  # bytes of the file before `rest` (for the position of a decoding error)
    while True:
        n = os.readv(fd, [buf])
        if n == 0:
            break
        end = buf.rfind(b"\n", 0, n)
        if end < 0:  # (a line longer than a chunk)
            rest += view[:n]
            continue
        if rest:
            rest += view[:end]
            text = _decode(rest, offset)
            offset += len(rest) + 1
            rest = bytearray()
        else:
            text = _decode(view[:end], offset)
            offset += end + 1
        out += text.split("\n")
        rest += view[end + 1:n]
    if rest:
        out.append(_decode(rest, offset))
    return out


def _decode(data: Any, offset: int) -> str:
    try:
        return str(data, "utf-8")
    except UnicodeDecodeError as e:  # (a ValueError: the pool makes it badarg)
        raise ValueError(f"not UTF-8 text: byte 0x{data[e.start]:02x} at offset {offset + e.start:,}") from None


_gc_lock = threading.Lock()
_gc_state = [0, False]  # pool jobs building a long list now; whether the collector ran before the first


def _after_fork_in_child() -> None:
    """A scheduler forked while a pool job had the collector paused: the child has no such job
    (threads do not survive a fork), so its collector runs again and its lock is free."""
    global _gc_lock
    _gc_lock = threading.Lock()
    for res in handles.live():  # the parent's open files are not this process's to read
        if isinstance(res, FileReader):
            res._close_fd()
            handles.forget(res.handle)
    if _gc_state[0]:
        _gc_state[0] = 0
        if _gc_state[1]:
            gc.enable()


os.register_at_fork(after_in_child=_after_fork_in_child)


@contextlib.contextmanager
def _no_gc() -> Any:
    """Pause the cyclic collector while a job builds a long list of new cells: each cell is a
    new tracked object, so the collector would otherwise run over and over on the growing list
    (most of the time of a long file/lines, docs/performance.md); cells make no cycles."""
    with _gc_lock:
        if _gc_state[0] == 0:
            _gc_state[1] = gc.isenabled()
            gc.disable()
        _gc_state[0] += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_state[0] -= 1
            if _gc_state[0] == 0 and _gc_state[1]:
                gc.enable()


def _write(path: str, text: str, mode: str) -> Any:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "a" else 0)
    with _open_regular(path, flags, mode) as f:
        if mode == "w":
            f.truncate(0)  # (after the check: a FIFO or device is refused untouched)
        f.write(text)
    return TRUE


def _exists(path: str) -> Any:
    return TRUE if os.path.exists(path) else FALSE


def _list_dir(path: str) -> Any:
    return from_list(sorted(os.listdir(path)))


def _delete(path: str) -> Any:
    if not os.path.islink(path) and os.path.isdir(path):
        os.rmdir(path)  # (an empty directory; rmdir's error names a full one)
    else:
        os.unlink(path)
    return TRUE


def _pool_op(job: Any, *extra: Any) -> Any:
    """An io handler that runs `job(*args, *extra)` in the pool (every file/ call is one)."""

    def op(svc: IoService, proc: Process, args: tuple) -> None:
        svc.run_in_thread(proc, job, *args, *extra)

    return op


for _name, _job, _extra in (
    ("file/read", _read_text, ()), ("file/lines", _lines, ()), ("file/write", _write, ("w",)),
    ("file/append", _write, ("a",)), ("file/exists?", _exists, ()), ("file/list-dir", _list_dir, ()),
    ("file/delete", _delete, ()),
):
    io_op(_name)(_pool_op(_job, *_extra))


# --- reading a file a batch of lines at a time (file/open, file/read-lines, file/close) ---------

_NOWAIT = getattr(os, "RWF_NOWAIT", 0)  # preadv's flag: read only what the page cache holds (Linux)


class FileReader:
    """An open file read a batch of lines at a time: `#<file S.N>`, owned by the process that
    opened it (closed when it ends). Each batch is the complete lines of the next chunk of
    BATCH_CHUNK bytes (more if a line is longer), decoded, split and made a Lisp list in the
    scheduler's loop when the program asks (`take`: a small piece of work). A chunk that small
    is decoded, split and made a list while it is still in the CPU's cache, and its strings and
    cells are freed before the next: about three times cheaper than a megabyte at a time
    (docs/performance.md, "I/O remainders"). The chunk is
    read at once when the page cache holds it (preadv with RWF_NOWAIT never waits for the
    disk), else in the pool while the owner waits. A read ahead in a pool thread was measured
    first: the thread and the program then took turns for the one GIL at every chunk, and the
    handoffs cost more than the reads (docs/performance.md, "I/O remainders"). The same buffer
    is read into again and again, and a batch becomes garbage once the program has gone past
    it: a file of any size is read in bounded memory. vm/io_builtins.py calls `take` (a batch
    now, or WOULD_WAIT) and `close`."""

    kind = "file"
    wakes = False  # (it sends no messages: io.IoService.outstanding)

    def __init__(self, svc: IoService, proc: Process, fd: int, path: str) -> None:
        self.svc = svc
        self.fd = fd
        self.path = path
        self.owner = proc.pid
        self.buf = bytearray(BATCH_CHUNK)
        self.pos = 0  # the file offset of the next read
        self.nowait = bool(_NOWAIT)  # this system's preadv takes RWF_NOWAIT (found out on first use)
        self.got: Any = None  # bytes read by the pool, or its OSError
        self.rest = bytearray()  # the start of a line not ended by the chunks taken so far
        self.offset = 0  # bytes of the file before `rest`
        self.ended = False  # the end was given (or an error): nil from now on
        self.reading = False  # a pool job is reading the next chunk
        self.waiter: Process | None = None  # the owner, waiting for that chunk
        self.closed = False
        self.handle = handles.register(self.kind, svc.sched.id, self)
        svc.own(proc, self)

    def take(self) -> Any:
        """The next batch (a Lisp list, or None at the end) if the chunks it needs can be read
        without waiting; WOULD_WAIT if not (a read is then under way in the pool). Raises a read
        or decoding error (a LispError) once; the file then reads as ended."""
        while not self.ended:
            n = self.got
            if n is None:
                if self.reading:
                    return WOULD_WAIT
                n = self._read_cached()
                if n is None:
                    self._read_in_pool()
                    return WOULD_WAIT
            else:
                self.got = None
            if isinstance(n, OSError):
                self.ended = True
                raise LispError(os_error(n, "file/read-lines"))
            self.pos += n
            try:
                lines = self._lines_of(n)
            except ValueError as e:
                self.ended = True
                raise badarg(f"file/read-lines: {e}") from None
            if lines:
                with _no_gc():
                    return from_list(lines)
        return None

    def _read_cached(self) -> Any:
        """Bytes read into buf now from the page cache, an OSError, or None (it would wait)."""
        if not self.nowait:
            return None
        try:
            return os.preadv(self.fd, [self.buf], self.pos, _NOWAIT)
        except BlockingIOError:
            return None
        except OSError as e:
            if e.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                self.nowait = False  # (an older kernel or another file system: the pool reads)
                return None
            return e

    def _read_in_pool(self) -> None:
        self.reading = True
        fd, buf, pos = self.fd, self.buf, self.pos

        def job() -> None:
            try:
                got: Any = os.preadv(fd, [buf], pos)
            except OSError as e:
                got = e
            self.svc.call_soon_threadsafe(lambda: self._arrived(got))

        self.svc.submit_job(job)

    def _lines_of(self, n: int) -> list[str] | None:
        """The complete lines of the chunk `buf[:n]` after `rest` (none if no newline ended one:
        a line longer than a chunk); at the end (n == 0), the last line, if any."""
        buf, rest = self.buf, self.rest
        if n == 0:
            self.ended = True
            if not rest:
                return None
            line = _decode(rest, self.offset)
            rest.clear()
            return [line]
        view = memoryview(buf)
        end = buf.rfind(b"\n", 0, n)
        if end < 0:
            rest += view[:n]
            return None
        if rest:
            rest += view[:end]
            text = _decode(rest, self.offset)
            self.offset += len(rest) + 1
            rest.clear()
        else:
            text = _decode(view[:end], self.offset)
            self.offset += end + 1
        rest += view[end + 1:n]
        return text.split("\n")

    def wait(self, proc: Process) -> None:
        """The owner waits in file/read-lines: answered when the pool's read is there."""
        self.waiter = proc
        if not self.reading and self.got is None:
            self._read_in_pool()

    def _arrived(self, got: Any) -> None:
        self.reading = False
        if self.closed:
            self._close_fd()
            return
        self.got = got
        proc = self.waiter
        if proc is None:
            return
        try:
            batch = self.take()
        except LispError as e:
            self.waiter = None
            self.svc.complete(proc, error=e.value)
            return
        if batch is not WOULD_WAIT:
            self.waiter = None
            self.svc.complete(proc, batch)

    def close(self) -> None:
        """file/close, or the owner ended: the file is closed (once a read in the pool is done)."""
        if self.closed:
            return
        self.closed = True
        handles.forget(self.handle)
        self.svc.disown(self.owner, self)
        self.ended = True
        if self.waiter is not None:
            proc, self.waiter = self.waiter, None
            self.svc.complete(proc, error=closed_error("file/read-lines", self.handle).value)
        if not self.reading:
            self._close_fd()

    def _close_fd(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


@io_op("file/open")
def _op_open(svc: IoService, proc: Process, args: tuple) -> None:
    path = args[0]

    def job() -> None:
        try:
            f = _open_regular(path, os.O_RDONLY, "rb")
            fd, err = os.dup(f.fileno()), None
            f.close()
        except OSError as e:
            fd, err = -1, os_error(e, "file/open")
        svc.call_soon_threadsafe(lambda: _opened(svc, proc, path, fd, err))

    svc.submit_job(job)


def _opened(svc: IoService, proc: Process, path: str, fd: int, err: Any) -> None:
    if err is not None:
        svc.complete(proc, error=err)
    elif proc.status == _dead_status():  # (it ended while the file was opened)
        os.close(fd)
    else:
        os.set_inheritable(fd, False)
        svc.complete(proc, FileReader(svc, proc, fd, path).handle)


def _dead_status() -> Any:
    from .kernel import DEAD

    return DEAD


def _file_here(svc: IoService, proc: Process, name: str, h: Any) -> FileReader | None:
    """The reader `h` names here, or None after sending the caller where it is (or failing)."""
    res = handles.lookup(h)
    if res is not None:
        return res
    if h.sched != svc.sched.id and hasattr(svc.node, "migrate"):
        svc.node.migrate(svc.sched, proc, h.sched)
        return None
    svc.complete(proc, error=closed_error(name, h).value)
    return None


def _not_owner(name: str, res: FileReader, proc: Process) -> Any:
    return runtime_error(NOT_OWNER, f"{name}: {res.handle!r} is owned by {res.owner!r}, not by {proc.pid!r}").value


@io_op("file/read-lines")
def _op_read_lines(svc: IoService, proc: Process, args: tuple) -> None:
    res = _file_here(svc, proc, "file/read-lines", args[0])
    if res is None:
        return
    if res.owner != proc.pid:
        svc.complete(proc, error=_not_owner("file/read-lines", res, proc))
        return
    got = res.take()
    if got is WOULD_WAIT:
        res.wait(proc)
    else:
        svc.complete(proc, got)


@io_op("file/close")
def _op_close(svc: IoService, proc: Process, args: tuple) -> None:
    res = _file_here(svc, proc, "file/close", args[0])
    if res is not None:
        if res.owner != proc.pid:
            svc.complete(proc, error=_not_owner("file/close", res, proc))
            return
        res.close()
        svc.complete(proc, TRUE)


# --- standard input ----------------------------------------------------------------------------

@io_op("io/read-line")
def _op_read_line(svc: IoService, proc: Process, args: tuple) -> None:
    def answer(value: Any, error: Any) -> None:
        svc.complete(proc, value, error)

    if svc.sched.id == 0:
        stdin_reader(svc).ask(proc.pid, answer)
    else:
        svc.node.emit(0, ("stdin", proc.pid))  # scheduler 0 reads fd 0 for the whole node


def on_stdin_event(node: Any, link: Any, ev: tuple) -> None:
    """The stdin events of a node of several schedulers (scheduler/events.py's shapes)."""
    from .events import Refused
    from .kernel import BLOCKED

    kind, pid = ev[0], ev[1]
    if kind == "stdin_line":
        if node.sid == 0:
            raise Refused("stdin_line: not sent to scheduler 0")
        proc = node.sched.procs.get(pid.key)
        if proc is not None and proc.status == BLOCKED and proc.request[1:2] == ("io/read-line",):
            service(node.sched).complete(proc, ev[2], ev[3])
        return
    if node.sid != 0:
        raise Refused(f"{kind}: only scheduler 0 reads standard input")
    reader = stdin_reader(service(node.sched))
    if kind == "stdin_cancel":
        reader.forget(pid)
        return
    k = link.peer

    def answer(value: Any, error: Any) -> None:
        if k not in node.dead:
            node.emit(k, ("stdin_line", pid, value, error))

    reader.ask(pid, answer)


def stdin_reader(svc: IoService) -> StdinReader:
    if svc.stdin is None:
        svc.stdin = StdinReader(svc)
    return svc.stdin
