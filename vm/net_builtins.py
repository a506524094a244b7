"""The tcp/ and port/ builtins (LANGUAGE.md section 14): sockets, listeners and subprocesses.

Owns: checking each call's arguments and permission, the owner rule (only a socket's or port's
owner reads from it, switches it or hands it on), and the fast paths that need no wait (data
already received, a send the kernel takes whole, closing). Must never: import the scheduler, or
wait: a call that must wait raises vm.process.Block with ("io", NAME, *args) and the scheduler's
I/O service (scheduler/io.py, handlers in scheduler/tcp.py and scheduler/ports.py) resumes the
process with the answer.

A resource lives in the OS process of the scheduler that made it (vm/handles.py). A call on a
handle held by another scheduler also raises Block: its handler moves the calling process there
with the call (docs/processes.md, "Sockets and ports").
"""

from __future__ import annotations

from typing import Any

from . import handles
from .checks import check_int, check_str, described, short_repr
from .errors import badarg, runtime_error
from .handles import Handle
from .permissions import check_net, check_run
from .process import Block, ctx
from .registry import builtin
from .values import FALSE, TRUE, Cons, Pid, intern, type_name

__all__ = ["encode_text", "not_owner", "closed_error"]

MAX_PORT = 65535
NOT_OWNER = intern("not_owner")
CLOSED = intern("closed")
WOULD_WAIT = object()  # a resource's try_* answer: nothing to give without waiting


def encode_text(name: str, data: Any) -> bytes:
    """A string's bytes as sent (UTF-8; bytes received that were not UTF-8 travel back as they
    came, through surrogateescape)."""
    s = check_str(name, data)
    try:
        return s.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as e:
        raise badarg(f"{name}: the string cannot be encoded as UTF-8 ({e.reason} at {e.start})") from None


def not_owner(name: str, h: Handle, owner: Any) -> Any:
    """(error not_owner ...): only the owner reads, switches or hands on."""
    return runtime_error(NOT_OWNER, f"{name}: {h!r} is owned by {owner!r}, not by {ctx.proc.pid!r}")


def closed_error(name: str, h: Handle) -> Any:
    """(error closed ...): the resource was closed (by a call, its owner's end, or the peer)."""
    return runtime_error(CLOSED, f"{name}: {h!r} is closed")


def _handle(name: str, x: Any, *kinds: str) -> Handle:
    if x.__class__ is Handle and x.kind in kinds:
        return x
    want = " or ".join(kinds)
    raise badarg(f"{name}: expected a {want}, got {type_name(x) if x.__class__ is not Handle else x.kind} "
                 f"{short_repr(x)}")


def _local(name: str, h: Handle, args: tuple) -> Any:
    """The resource `h` names here; if another scheduler holds it, the call goes there with its
    process (Block); if it is gone, (error closed ...)."""
    res = handles.lookup(h)
    if res is not None:
        return res
    where = handles.moved(h)
    if (h.sched != ctx.host.scheduler_id() and where is None) or (where is not None and where != handles.CLOSED_HERE):
        raise Block(("io", name, *args))  # (held elsewhere, or handed to a process elsewhere since)
    raise closed_error(name, h)


def _port_number(name: str, port: Any) -> int:
    port = check_int(name, port)
    if not 0 <= port <= MAX_PORT:
        raise badarg(f"{name}: a port number is 0 to {MAX_PORT}, got {port}")
    return port


def _host(name: str, host: Any) -> str:
    host = check_str(name, host)
    if not host or len(host) > 253 or "\x00" in host:
        raise badarg(f"{name}: not a host name: {short_repr(host)}")
    return host


# --- TCP -------------------------------------------------------------------------------------


@builtin("tcp/listen")
def b_listen(port: Any, host: Any = "0.0.0.0") -> Handle:
    port = _port_number("tcp/listen", port)
    host = _host("tcp/listen", host)
    check_net("tcp/listen", host, port)
    raise Block(("io", "tcp/listen", host, port))


@builtin("tcp/port")
def b_port(listener: Any) -> int:
    h = _handle("tcp/port", listener, "listener", "socket")
    res = _local("tcp/port", h, (h,))
    return res.port


@builtin("tcp/accept")
def b_accept(listener: Any) -> Handle:
    h = _handle("tcp/accept", listener, "listener")
    res = _local("tcp/accept", h, (h,))
    got = res.try_accept(ctx.proc)
    if got is WOULD_WAIT:
        raise Block(("io", "tcp/accept", h, True))  # (True: tried just now, the handler waits at once)
    return got


CONNECT_TIMEOUT_MS = 30_000  # tcp/connect's deadline when the call names none (docs/io.md)
MAX_TIMEOUT_MS = 2**31 - 1  # about 24.8 days: the longest a timeout may be (poll's own limit)


@builtin("tcp/connect")
def b_connect(host: Any, port: Any, timeout: Any = CONNECT_TIMEOUT_MS) -> Handle:
    host = _host("tcp/connect", host)
    port = _port_number("tcp/connect", port)
    if port == 0:
        raise badarg("tcp/connect: port 0 cannot be connected to")
    if timeout is not None:
        if timeout.__class__ is not int or not 0 <= timeout <= MAX_TIMEOUT_MS:
            raise badarg(f"tcp/connect: the timeout is milliseconds from 0 to {MAX_TIMEOUT_MS:,}, or nil for "
                         f"none, got {described(timeout)}")
    check_net("tcp/connect", host, port)
    raise Block(("io", "tcp/connect", host, port, timeout))


def _send(name: str, kind: str, target: Any, data: Any) -> Any:
    """tcp/send and port/send: write now when the resource is here and its queue has room."""
    h = _handle(name, target, kind)
    payload = encode_text(name, data)
    res = _local(name, h, (h, data))
    if res.try_send(payload):
        return TRUE
    raise Block(("io", name, h))  # (queued: it waits for the unsent bytes to drain)


@builtin("tcp/send")
def b_send(sock: Any, data: Any) -> Any:
    return _send("tcp/send", "socket", sock, data)


def _recv(name: str, sock: Any, line: bool) -> Any:
    h = _handle(name, sock, "socket")
    res = _local(name, h, (h,))
    if res.owner != ctx.proc.pid:
        raise not_owner(name, h, res.owner)
    got = res.try_recv(name, line)
    if got is WOULD_WAIT:
        raise Block(("io", name, h, True))  # (True: tried just now, the handler waits at once)
    return got


@builtin("tcp/recv")
def b_recv(sock: Any) -> Any:
    return _recv("tcp/recv", sock, False)


@builtin("tcp/recv-line")
def b_recv_line(sock: Any) -> Any:
    return _recv("tcp/recv-line", sock, True)


ONCE = intern("once")
MAX_ACTIVE_COUNT = 1 << 20  # (scheduler/tcp.py caps the sum of counts at the same number)


def _active_mode(mode: Any) -> Any:
    """tcp/active's second argument: true (no limit), false (passive again), 'once (1) or a
    count of messages from 1 to MAX_ACTIVE_COUNT."""
    if mode is TRUE or mode is FALSE:
        return mode is TRUE
    if mode is ONCE:
        return 1
    if mode.__class__ is int and 1 <= mode <= MAX_ACTIVE_COUNT:
        return mode
    raise badarg(f"tcp/active: expected true, false, 'once or a count of messages from 1 to {MAX_ACTIVE_COUNT:,}, "
                 f"got {described(mode)}")


@builtin("tcp/active")
def b_active(sock: Any, mode: Any = TRUE) -> Any:
    h = _handle("tcp/active", sock, "socket")
    how = _active_mode(mode)
    res = _local("tcp/active", h, (h, mode))
    if res.owner != ctx.proc.pid:
        raise not_owner("tcp/active", h, res.owner)
    res.set_active(how)
    return TRUE


def _messages_about(proc: Any, h: Handle, tags: tuple) -> list:
    """Take out of `proc`'s mailbox, in order, the messages `(TAG h ...)` not yet received."""
    mb = proc.mailbox
    if mb is None:
        return []
    taken, kept = [], []
    for msg in mb[proc.mbhead:]:
        if msg.__class__ is Cons and msg.head in tags and msg.tail.__class__ is Cons and msg.tail.head == h:
            taken.append(msg)
        else:
            kept.append(msg)
    if taken:
        proc.mailbox = kept or None
        proc.mbhead = proc.scan = 0
    return taken


def hand_over(name: str, x: Any, pid: Any, kinds: tuple, tags: tuple) -> Any:
    """tcp/owner and port/owner: `pid` owns the resource from now on, and gets the messages
    about it that its old owner had not received yet, before any new one."""
    h = _handle(name, x, *kinds)
    if pid.__class__ is not Pid:
        raise badarg(f"{name}: expected a pid, got {described(pid)}")
    res = _local(name, h, (h, pid))
    proc = ctx.proc
    if res.owner != proc.pid:
        raise not_owner(name, h, res.owner)
    if pid == proc.pid:
        return TRUE
    res.check_owner(name, pid)
    # the resource delivers them, then its new ones, once the new owner runs where it is
    res.set_owner(pid, _messages_about(proc, h, tags))
    return TRUE


TCP_TAGS = (intern("tcp"), intern("tcp-closed"), intern("tcp-passive"))
PORT_TAGS = (intern("port"),)


@builtin("tcp/owner")
def b_owner(sock: Any, pid: Any) -> Any:
    return hand_over("tcp/owner", sock, pid, ("socket", "listener"), TCP_TAGS)


@builtin("tcp/close")
def b_close(sock: Any) -> Any:
    h = _handle("tcp/close", sock, "socket", "listener")
    res = handles.lookup(h)
    if res is None:
        where = handles.moved(h)
        if (h.sched != ctx.host.scheduler_id() and where is None) or (
                where is not None and where != handles.CLOSED_HERE):
            raise Block(("io", "tcp/close", h))
        return TRUE  # closed already: closing again is harmless, as in Erlang
    res.close()
    return TRUE


# --- ports -----------------------------------------------------------------------------------


@builtin("port/open")
def b_port_open(program: Any, args: Any = None) -> Handle:
    program = check_str("port/open", program)
    if not program or "\x00" in program:
        raise badarg(f"port/open: not a program name: {short_repr(program)}")
    argv = []
    c = args
    while c.__class__ is Cons:
        a = c.head
        if a.__class__ is not str or "\x00" in a:
            raise badarg(f"port/open: the arguments must be strings, got {described(a)}")
        argv.append(a)
        c = c.tail
    if c is not None:
        raise badarg(f"port/open: expected a list of arguments, got {described(args)}")
    check_run("port/open", program)
    raise Block(("io", "port/open", program, tuple(argv)))


@builtin("port/send")
def b_port_send(port: Any, data: Any) -> Any:
    return _send("port/send", "port", port, data)


@builtin("port/close")
def b_port_close(port: Any) -> Any:
    h = _handle("port/close", port, "port")
    res = handles.lookup(h)
    if res is None:
        if h.sched != ctx.host.scheduler_id():
            raise Block(("io", "port/close", h))
        return TRUE
    res.close_input()
    return TRUE


@builtin("port/owner")
def b_port_owner(port: Any, pid: Any) -> Any:
    return hand_over("port/owner", port, pid, ("port",), PORT_TAGS)
