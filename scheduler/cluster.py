"""The node of several OS processes: one scheduler each, a mesh of Unix sockets between them.

Owns: starting scheduler OS processes lazily (multiprocessing "spawn": nothing is forked), the
transport, routing messages and signals to wherever a process is, moving processes to idle
schedulers, node-wide globals, names and output, faults, and a clean end. Scheduler 0 runs in the
command's own OS process and is the hub: it owns names, output, the exit status and the other
schedulers' lives. A program that never has two runnable processes never starts a second OS
process (the hub starts one when its run queue holds two).

Transport (measured, docs/performance.md): an AF_UNIX stream socket per pair of schedulers, made
on first use at a path derived from the scheduler number; events are batched per peer and written
once per wake-up, each event a frame of vm/codec.py (8-byte length + the term; docs/codec.md). A round
trip on such a socket measured 8.6 us against 16.1 us for multiprocessing.Pipe. The Link class is
the whole transport interface (queue, flush, read), so a network transport can stand in.

Order: messages from one process to another arrive in the order sent whatever moves. Within one
scheduler delivery is immediate. As soon as a pair of processes talks across OS processes, its
events carry a sequence number (Process.seqs / seqin / held) and the receiver delivers them in
order, holding back any that overtook an earlier one on another path (after a move, through a
forwarding scheduler). Pairs that never crossed pay nothing.

Moving: a scheduler with two or more runnable processes ships one to a scheduler that announced
it is idle (push, so idle schedulers never poll). The process travels as plain data; prototypes
by (module key, index). The old scheduler keeps a forwarding entry; the senders' schedulers learn
the new place when a forwarded event reaches them.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
from _operator import _compare_digest  # hmac.compare_digest, without importing hashlib
from collections import deque
from typing import Any

from ..vm import interp, lbc
from ..vm.builtins import badarg
from ..vm.codec import CodecError, TooLarge, decode, encode, encode_frame
from ..vm.errors import LispError, describe, report_repr, system_limit
from ..vm.process import Block, Globals, Process
from ..vm.values import UNDEF, Closure, Pid, Ref, Sym, intern
from .chaos import Chaos
from .clock import BusyWait, MonotonicClock
from .framing import Channel
from .kernel import BLOCKED, DEAD, RUNNABLE, WAITING, YIELDED, Scheduler, crash_line
from .node import SERVICE_SPIN, spin_for_services

# numpy's BLAS starts a thread pool when numpy is imported (by a gpu/ builtin), and a scheduler
# process must stay single-threaded to fork its workers safely; nothing here uses BLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__all__ = ["Hub", "run_cluster", "worker_main"]

NORMAL = intern("normal")
NOCONNECTION = intern("noconnection")


class Link(Channel):
    """One socket to one peer scheduler: a framing.Channel that knows which peer it leads to."""

    __slots__ = ("peer",)

    def __init__(self, sock: socket.socket, peer: int | None, chaos: Chaos | None = None) -> None:
        super().__init__(sock, chaos)
        self.peer = peer  # the scheduler at the other end (None until its hello)

    def who(self) -> str:
        return f"peer {self.peer}"


class ClusterNode:
    """The node as one scheduler OS process sees it (the hub, or a worker)."""

    def __init__(self, sid: int, nsched: int, sockdir: str, module: lbc.Module, globals_: Globals,
                 argv: list[str], budget: int, trace: Any = None) -> None:
        self.sid = sid  # this scheduler's number
        self.nschedulers = nsched  # how many the node may have
        self.sockdir = sockdir  # where the schedulers' sockets live
        self.module = module
        self.globals = globals_
        self.argv = argv
        self.clock = MonotonicClock()
        self.sched = Scheduler(self, sid, budget, trace, self.clock)
        self.trace = trace
        self.poller = select.poll()  # C-level; the selectors module cost a few us per wait
        self.fds: dict[int, tuple] = {}  # fd -> (kind, object)
        self.listener = self._listen()
        self.links: dict[int, Link] = {}  # peer -> the link this scheduler sends on
        self.all_links: list[Link] = []  # every link, including accepted ones used only to read
        self.pending_out: dict[int, list[tuple | bytes]] = {}  # events (or their frames) for peers not connected yet
        self.started: set[int] = {0}  # schedulers known to be running
        self.dead: set[int] = set()  # schedulers known to have died
        self.loc: dict[int, int] = {}  # pid key -> scheduler it was last seen on
        self.moved: dict[int, int] = {}  # pid key -> scheduler it was shipped to from here
        self.names: dict[Sym, Pid] = {}  # registered names (the hub's copy is the authority)
        self.named: dict[int, Sym] = {}  # pid key -> its name in `names` (the reverse index)
        self.deferred: dict[Sym, list[Pid]] = {}  # (hub) registers that came while the name was bound
        self.freed: dict[Sym, Pid] = {}  # name -> the last pid it was freed from here (that process ended)
        self.freed_serial = 0  # changes of `freed`, so that a move tells a peer only what is new
        self.told: dict[int, dict[Sym, Pid]] = {}  # peer -> the entries of `freed` sent to it with a process
        self.told_serial: dict[int, int] = {}  # peer -> freed_serial when it was last told
        self.idle_peers: set[int] = set()  # peers that said they have nothing to run
        self.readers: dict[int, Any] = {}  # extra fds (the device client) -> callback
        self.services: list[Any] = []  # objects with outstanding() (device requests in flight)
        self.busy_wait = BusyWait(SERVICE_SPIN)  # and new_request() (spin_for_services)
        self.grace_wait = BusyWait(GRACE_SPIN)
        self.said_idle = False  # announced idle and not busy since
        self.recvd = 0  # Lisp events received, for quiescence detection
        self.sent = 0  # Lisp events sent (or queued for a peer not connected yet)
        self.stopping = False
        self.exit_code: int | None = None
        self.started_any = sid != 0  # a worker exists: the hub must watch its listener
        self.asked_start: set[int] = set()  # peers this worker asked the hub to start
        self.os_pids: dict[int, int] = {}  # scheduler -> its OS pid (to poke it, see say_idle)
        self.pokeable = True  # this OS process handles POKE_SIGNAL (run_cluster, worker_main)
        self.eof: set[int] = set()  # peers whose connection ended (they closed it, or exited)
        self.forked: set[int] = set()  # (hub) workers forked with a copy of the node's state, before their hello
        self.passes = 0  # passes over the run queue since the last poll for input
        self.cpu_bound = False  # a process used up a whole budget here since this scheduler was last idle
        self.writing: set[Link] = set()  # links with unsent bytes: polled for POLLOUT as well
        self.early: dict[int, list[tuple]] = {}  # pid key -> events that came before the process
        self.chaos = self.sched.chaos  # LISPVM_CHAOS's choices, or None
        self.last_report: tuple | None = None  # (worker) the idle report last sent to the hub
        self.charged = False  # a send pushed PUSH_BYTES out during this slice: its process may give way
        self.secret = b""  # the node's token: a connection's hello must carry it (_hello_bad)
        self.greeted: set[int] = set()  # peers whose hello came on a connection they made to us

    # --- sockets -------------------------------------------------------------------------

    def _path(self, sid: int) -> str:
        return os.path.join(self.sockdir, f"s{sid}.sock")

    def _listen(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self._path(self.sid))
        s.listen(64)
        s.setblocking(False)
        self._watch(s.fileno(), ("accept", None))
        return s

    def _add_link(self, sock: socket.socket, peer: int | None) -> Link:
        link = Link(sock, peer, self.chaos)
        self.all_links.append(link)
        self._watch(sock.fileno(), ("link", link))
        return link

    def connect(self, peer: int) -> Link | None:
        """The link to send to `peer` on: the one chosen before, or a new connection."""
        link = self.links.get(peer)
        if link is None:
            for lk in self.all_links:  # a connection the peer made to us
                if lk.peer == peer and not lk.closed:
                    link = self.links[peer] = lk
                    break
        if link is not None:
            if self.pending_out and peer in self.pending_out:
                # queued before it was known to be started; its hello (it connected to us first)
                # gave us this link: they go first. (Left here, they were never sent: a process
                # shipped to a scheduler that was starting was lost, issue 12.)
                for ev in self.pending_out.pop(peer):
                    link.queue(ev)
            return link
        if peer not in self.started or peer in self.dead:
            return None
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self._path(peer))
        except OSError:
            s.close()
            return None
        link = self._add_link(s, peer)
        link.queue(("hello", self.sid, os.getpid() if self.pokeable else None, self.secret))
        self.links[peer] = link
        for ev in self.pending_out.pop(peer, ()):
            link.queue(ev)
        return link

    def emit(self, peer: int, ev: tuple) -> None:
        """Queue an event for a peer (flushed at the end of this wake-up). Encoded here, before
        anything is counted or queued: an event over vm.codec.MAX_MESSAGE raises TooLarge with
        nothing changed, so that `send` can refuse it (deliver_or_route)."""
        if peer in self.dead:
            return
        data = encode_frame(ev)
        if ev[0] in _COUNTED:
            self.sent += 1  # counted when sent, queued or not: quiescence must see it in flight
        link = self.connect(peer)
        if link is None:
            self.pending_out.setdefault(peer, []).append(data)
            if self.sid == 0:
                self.start_worker(peer)
            elif peer not in self.asked_start and peer != 0:
                self.asked_start.add(peer)
                self.emit(0, ("start", peer))
            return
        link.out.append(data)
        n = link.nout + len(data)
        link.nout = n
        if n > PUSH_BYTES:
            self.push(link)

    def push(self, link: Link) -> None:
        """More than PUSH_BYTES queued for one peer within a wake-up: write them now, without
        waiting (a flood of large messages held back even the earlier ones until the slice ended,
        and queued without bound: issue 12), and have the process that sent them give way
        (send_from): it was charged for the bytes it encoded."""
        self._writing(link, link.flush())
        self.charged = True

    def flush(self) -> None:
        """Write what every link has queued; a link with bytes left is watched for POLLOUT, so
        that the scheduler goes on writing whenever the socket takes more, busy or idle."""
        chaos = self.chaos
        for link in self.all_links:
            if link.out or link.wbuf:
                if chaos is not None and chaos.pause() and not link.closed:
                    self._writing(link, True)  # a delayed flush: the next poll returns at once and writes
                    continue
                self._writing(link, link.flush())
        if self.trace is not None:
            self.trace.flush()

    def _writing(self, link: Link, left: bool) -> None:
        """Watch the link's socket for writability while it has bytes left, and only then."""
        if left == (link in self.writing):
            return
        if left:
            self.writing.add(link)
            events = select.POLLIN | select.POLLOUT
        else:
            self.writing.discard(link)
            events = select.POLLIN
        if link.fd in self.fds:
            self.poller.modify(link.fd, events)

    def unsent(self) -> int:
        """Bytes written by processes here that no socket has taken yet (0: nothing waits)."""
        return sum(len(link.wbuf) + (1 if link.out else 0) for link in self.writing)

    def backpressure(self) -> None:
        """Past SEND_BUFFER_LIMIT unsent bytes, run no process until the peers have read all but
        half of them: the peers' input keeps being read meanwhile (two schedulers writing to each
        other never wait on each other), and a peer that dies takes its bytes with it."""
        if not self.writing or self.unsent() <= SEND_BUFFER_LIMIT:
            return
        while self.writing and self.exit_code is None and self.unsent() > SEND_BUFFER_LIMIT // 2:
            self.poll(1.0)
            if self.sid != 0 and 0 in self.dead:
                return

    def drain(self, timeout: float) -> None:
        """Write everything still unsent, reading meanwhile, for up to `timeout` seconds (a
        scheduler's last words: output lines, its trace's end)."""
        deadline = time.monotonic() + timeout
        self.flush()
        while self.writing:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.poll(left)

    def poll(self, timeout: float | None) -> bool:
        """Wait up to `timeout` seconds for input; handle it. True if anything came."""
        self.flush()
        try:
            ready = self.poller.poll(None if timeout is None else timeout * 1000.0)
        except InterruptedError:  # pragma: no cover - PEP 475 retries poll
            return False
        fds = self.fds
        got = False
        for fd, revents in ready:
            entry = fds.get(fd)
            if entry is None:
                continue
            kind, obj = entry
            if kind == "accept":
                self._accept()
            elif kind == "link":
                if revents & select.POLLOUT and obj in self.writing:
                    self._writing(obj, obj.flush())
                    if not revents & _READABLE:
                        continue  # only writable: no input came
                self._read(obj)
            else:
                obj()
            got = True
        return got

    def _accept(self) -> None:
        while True:
            try:
                s, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            self._add_link(s, None)

    def close(self) -> None:
        """Close every socket now (a worker's peers take their EOF for its exit)."""
        for link in self.all_links:
            try:
                link.sock.close()
            except OSError:
                pass
        self.listener.close()

    def _read(self, link: Link) -> None:
        events = link.read()
        if events is not None:
            try:
                for ev in events:
                    self.handle(link, ev)
                return
            except _Refused as e:  # as for a frame the codec refused (Link.read): the rest is not trusted
                sys.stderr.write(f"lispvm: scheduler {self.sid}: a malformed event from "
                                 f"{'an unknown connection' if link.peer is None else f'peer {link.peer}'} "
                                 f"({e}); connection closed\n")
                link.closed = True
        if link.closed:
            if link.peer is not None:
                self.eof.add(link.peer)
            self.writing.discard(link)
            link.wbuf.clear()  # nobody will read it: not "unsent" any more
            self._unwatch(link.fd)
            link.sock.close()
            if link.peer is not None and link.peer not in self.dead and not self.stopping:
                self.peer_died(link.peer)

    # --- what the scheduler asks of the node -------------------------------------------------

    def pending(self) -> bool:
        """Asked when a budget is spent: is there input? (Also a chance to flush.) Free until
        a second scheduler or the device process exists."""
        if not self.all_links and not self.readers and not self.started_any:
            return False
        got = self.poll(0)
        if self.idle_peers:
            self.balance()
            self.flush()  # the idle peer gets its share now, not after this scheduler's next slice (4 ms)
        if self.writing:
            self.backpressure()
        return got

    def add_reader(self, fd: int, callback: Any) -> None:
        self.readers[fd] = callback
        self._watch(fd, ("reader", callback))

    def remove_reader(self, fd: int) -> None:
        if self.readers.pop(fd, None) is not None:
            self._unwatch(fd)

    def _watch(self, fd: int, entry: tuple) -> None:
        self.fds[fd] = entry
        self.poller.register(fd, select.POLLIN)

    def _unwatch(self, fd: int) -> None:
        if self.fds.pop(fd, None) is not None:
            self.poller.unregister(fd)

    def place(self, sched: Scheduler, proc: Process, where: int | None) -> None:
        if where is None:
            sched.add(proc)
            return
        k = where % self.nschedulers
        if k == self.sid:
            sched.add(proc)
        else:
            self.ship(proc, k)

    def ship(self, proc: Process, k: int) -> None:
        """Send a process (not running, not in the run queue) to scheduler k; one too large to
        travel (vm.codec.MAX_MESSAGE) stays here, runnable (a placement is not a pinning)."""
        was = proc.status
        try:
            # with the names freed here that k may not know of yet: a supervisor that saw the
            # DOWN here and is moved must find the name free there (causal order, as in Erlang)
            news = self.news_for(k)
            self.emit(k, ("proc", proc, was, news))
        except TooLarge:
            self.sched.add(proc)
            return
        if news:
            self.told.setdefault(k, {}).update(news)
        self.told_serial[k] = self.freed_serial
        self.handed_over(proc, k)

    def handed_over(self, proc: Process, k: int) -> None:
        """Scheduler k has `proc` now (shipped, or in the copy a fork gave it): forget it here."""
        key = proc.pid.key
        self.sched.procs.pop(key, None)
        self.moved[key] = k
        self.loc[key] = k
        proc.status = 0
        if self.trace is not None:
            self.trace.event(self.sched, "migrate", proc.pid, to=k)

    def adopt(self, proc: Process, was: int) -> None:
        """`proc` runs here from now on (shipped here, or handed over at this scheduler's fork)."""
        key = proc.pid.key
        self.moved.pop(key, None)
        self.loc[key] = self.sid
        self.sched.procs[key] = proc
        if proc.name is None and key in self.named:
            # registered while it travelled: the news reached this scheduler before the process
            # did, and the one it left had already shipped it (the name was then never freed)
            proc.name = self.named[key]
        if was == WAITING:
            proc.status = WAITING
            self.sched.trap_wait(proc)
        else:
            proc.status = RUNNABLE
            self.sched.runq.append(proc)
        early = self.early.pop(key, None) if self.early else None
        if early:
            for ev in early:  # events that overtook it, in their senders' order (apply_ordered)
                self.apply_ordered(proc, ev[2], ev[3], ev[4], ev[5])

    def resolve(self, dest: Any) -> Pid:
        if dest.__class__ is Sym:
            pid = self.names.get(dest)
            if pid is None:
                raise badarg(f"send: no process is registered as {dest.name}")
            return pid
        return dest

    def where(self, pid: Pid) -> int:
        """The scheduler to send to for `pid`: last seen, forwarded to, or where it was made."""
        k = self.loc.get(pid.key)
        if k is None:
            k = self.moved.get(pid.key, pid.node)
        return k

    def send_from(self, sched: Scheduler, sender: Any, dest: Any, msg: Any) -> None:
        if sender.__class__ is not Process:  # a timer's message: no process runs to raise in
            try:
                pid = self.resolve(dest)
                if self.trace is not None:
                    self.trace.event(sched, "send", sender, to=pid)
                self.deliver_or_route(None, pid, "m", msg)
            except LispError as e:
                self.timer_send_failed(sched, sender, e.value)
            return
        pid = self.resolve(dest)
        if self.trace is not None:
            self.trace.event(sched, "send", sender.pid, to=pid)
        self.deliver_or_route(sender, pid, "m", msg)
        if self.charged:
            self.give_way(sched, msg)

    def give_way(self, sched: Scheduler, msg: Any) -> None:
        """The running process's sends queued PUSH_BYTES for a peer (push): it ends its slice if
        this scheduler holds more than SEND_BUFFER_LIMIT unsent bytes (the scheduler then waits
        until the peers have read half of them, backpressure, before it runs any process:
        request_service) or if another process or a timer is due here; `send` then returns
        `msg` when it runs again."""
        self.charged = False
        t = sched.timers
        if (sched.runq or self.unsent() > SEND_BUFFER_LIMIT
                or (t and t[0][0] <= self.clock.now_ms())):
            raise Block((_GIVE_WAY, msg))

    def timer_send_failed(self, sched: Scheduler, owner: Any, error: Any) -> None:
        """A timer/send-after message could not be sent (too large to cross, or to a name no
        longer registered): never silently; the process that set the timer gets the error as an
        exit signal, if it is still here, and the node says so on standard error."""
        self.error_line(f"lispvm: timer/send-after of {owner!r}: {describe(error)}")
        proc = sched.procs.get(owner.key) if owner.__class__ is Pid else None
        if proc is not None:
            sched.exit_signal_to(proc, proc.pid, error, linked=False)

    def signal(self, sched: Scheduler, sender: Any, pid: Pid, sig: tuple) -> None:
        if sig[0] in ("exit", "down"):
            sig = (*sig, pid)
        if self.trace is not None and sig[0] in ("link", "monitor"):
            self.trace.event(sched, sig[0], sender.pid if sender is not None else None, target=pid)
        self.deliver_or_route(sender, pid, "s", sig)

    def deliver_or_route(self, sender: Process | None, pid: Pid, kind: str, item: Any) -> None:
        """Deliver a message ("m") or signal ("s") from `sender` to `pid`, wherever it is."""
        proc = self.sched.procs.get(pid.key)
        seq = None
        skey = None
        if sender is not None and (proc is None or (sender.seqs is not None and pid.key in sender.seqs)):
            # this pair crosses (or crossed) OS processes: number its events
            seqs = sender.seqs
            if seqs is None:
                seqs = sender.seqs = {}
            seq = seqs.get(pid.key, 0)
            seqs[pid.key] = seq + 1
            skey = sender.pid.key
        if proc is not None:
            self.apply_ordered(proc, skey, seq, kind, item)
            return
        k = self.where(pid)
        if k == self.sid or k in self.dead:
            if kind == "s":  # to a dead process: links and monitors answer noproc / noconnection
                self.dead_target(pid, item, k in self.dead)
            return
        try:
            self.emit(k, ("ev", pid, skey, seq, kind, item))
        except TooLarge as e:
            if kind == "m":  # refused at `send`, in the sender; its next message takes this number
                if seq is not None:
                    sender.seqs[pid.key] = seq  # type: ignore[union-attr]
                raise system_limit(f"send: the message is too large to reach {pid!r} on scheduler {k} ({e})") from None
            # a signal still arrives (a link must not be lost): its reason becomes a system_limit error
            why = system_limit(f"the reason is too large to reach scheduler {k} ({e})").value
            self.emit(k, ("ev", pid, skey, seq, kind, tuple(x if i == 0 or x.__class__ is Pid or x.__class__ is Ref
                                                          else why for i, x in enumerate(item))))

    def dead_target(self, pid: Pid, sig: tuple, lost: bool) -> None:
        kind = sig[0]
        reason = NOCONNECTION if lost else intern("noproc")
        if kind == "link":
            self.signal(self.sched, None, sig[2], ("exit", pid, reason))
        elif kind == "monitor":
            self.signal(self.sched, None, sig[2], ("down", sig[1], pid, reason))

    def apply_ordered(self, proc: Process, skey: int | None, seq: int | None, kind: str, item: Any) -> None:
        """Apply an event to a local process, in its sender's order."""
        if seq is None:
            self._apply(proc, kind, item)
            return
        seqin = proc.seqin
        if seqin is None:
            seqin = proc.seqin = {}
        expected = seqin.get(skey, 0)
        if seq > expected:  # an earlier one is still on its way: hold this one back
            if proc.held is None:
                proc.held = {}
            proc.held[(skey, seq)] = (kind, item)
            return
        if seq < expected:  # pragma: no cover - each event is sent once
            return
        self._apply(proc, kind, item)
        expected += 1
        held = proc.held
        while held and (skey, expected) in held:
            k2, it2 = held.pop((skey, expected))
            self._apply(proc, k2, it2)
            expected += 1
        seqin[skey] = expected

    def _apply(self, proc: Process, kind: str, item: Any) -> None:
        if proc.status == DEAD:
            return
        if kind == "m":
            self.sched.deliver(proc, item)
        else:
            if self.named and (item[0] == "down" or item[0] == "exit"):
                # the process these are about has ended: its name is freed here before the
                # watcher sees them (Erlang's order), whatever path its own unregister takes
                dead = item[2] if item[0] == "down" else item[1]
                name = self.named.get(dead.key)
                if name is not None:
                    self.unregister(name, dead)
            self.sched.receive_signal(item)

    def register(self, sched: Scheduler, name: Sym, pid: Pid) -> None:
        if name in self.names:
            raise badarg(f"register: {name.name} is already registered")
        proc = sched.procs.get(pid.key)
        if proc is not None:
            if proc.name is not None:
                raise badarg(f"register: process {pid!r} is already registered as {proc.name.name}")
            proc.name = name
        elif self.gone(pid):  # it ran here (or on a scheduler that died) and has ended
            raise badarg(f"register: process {pid!r} is not alive")
        self.bind(name, pid)
        # (with the holder this scheduler saw end: the hub may not have heard of that end yet)
        self.to_hub_or_all(("register", name, pid, self.freed.get(name)))

    def gone(self, pid: Pid) -> bool:
        """Known here to have ended: not here, and last seen here (never shipped away), or on a
        scheduler that died. (A process elsewhere may have ended too: that scheduler frees the
        name when the register reaches it, name_here.)"""
        if pid.key in self.sched.procs:
            return False
        k = self.where(pid)
        return k == self.sid or k in self.dead

    def bind(self, name: Sym, pid: Pid) -> None:
        """Bind `name` to `pid` in this scheduler's copy of the names (and the reverse index)."""
        old = self.names.get(name)
        if old is not None and old != pid:
            if self.named.get(old.key) is name:
                del self.named[old.key]
            proc = self.sched.procs.get(old.key)
            if proc is not None and proc.name is name:
                proc.name = None  # (the hub gave the name to another: see on_register)
        self.names[name] = pid
        self.named[pid.key] = name

    def unbind(self, name: Sym) -> None:
        """Remove `name` from this scheduler's copy of the names: its process has ended."""
        pid = self.names.pop(name, None)
        if pid is not None:
            self.freed[name] = pid
            self.freed_serial += 1
            if self.named.get(pid.key) is name:
                del self.named[pid.key]

    def unregister(self, name: Sym, pid: Pid) -> None:
        """`pid` has ended: free its name here and node-wide (through the hub)."""
        if self.names.get(name) == pid:
            self.unbind(name)
            self.to_hub_or_all(("unregister", name, pid))
            if self.sid == 0:
                self.next_deferred(name)
        elif self.sid == 0:
            self.undefer(name, pid)

    def news_for(self, k: int) -> tuple:
        """The names freed here that scheduler k has not been told of with a process yet."""
        if not self.freed or self.told_serial.get(k) == self.freed_serial:
            return ()
        told = self.told.get(k, {})
        return tuple((name, pid) for name, pid in self.freed.items() if told.get(name) != pid)

    def learn_freed(self, news: tuple) -> None:
        """Names a moved process's old scheduler had seen freed: freed here before it runs."""
        for name, pid in news:
            if self.names.get(name) == pid:
                self.unbind(name)
                if self.sid == 0:
                    self.tell_workers(("unregister", name, pid))
                    self.next_deferred(name)

    def whereis(self, name: Sym) -> Pid | None:
        return self.names.get(name)

    def to_hub_or_all(self, ev: tuple) -> None:
        """Node-wide state changes go through the hub, which tells everyone else."""
        if self.sid == 0:
            self.tell_workers(ev)
        else:
            self.emit(0, ev)

    def tell_workers(self, ev: tuple, skip: int | None = None) -> None:
        """(Hub) A node-wide change, to every worker but `skip`."""
        for k in self.started:
            if k != 0 and k != skip and k not in self.dead:
                self.emit(k, ev)
        for k in self.forked:  # not connected yet: queued for its hello (see Hub.on_hello)
            self.pending_out.setdefault(k, []).append(ev)

    def define(self, sched: Scheduler, name: str, value: Any) -> None:
        try:
            self.to_hub_or_all(("define", name, value))
        except TooLarge as e:
            raise system_limit(f"def {name}: the value is too large to reach the other schedulers ({e})") from None

    def request_service(self, sched: Scheduler, proc: Process) -> None:
        req = proc.request
        if req[0] is _GIVE_WAY:  # (give_way) past the bound, this scheduler waits between slices as ever
            self.backpressure()
            sched.complete(proc, value=req[1])
            return
        from .device import client

        client(self).submit(sched, proc)

    def crash_report(self, sched: Scheduler, proc: Process) -> None:
        if proc.pid != MAIN_PID[0]:
            self.error_line(crash_line(proc, False))

    def process_ended(self, sched: Scheduler, proc: Process, reason: Any) -> None:
        if proc.pid == MAIN_PID[0]:
            if reason is NORMAL:
                self.main_done(0, None)
            elif proc.where is not None:
                self.main_done(1, crash_line(proc, True))
            else:
                self.main_done(1, f"lispvm: the main process exited with reason {report_repr(reason)}")

    def halt(self, code: int) -> None:
        self.main_done(code, None)

    # --- moving work to idle schedulers ---------------------------------------------------------

    def balance(self) -> None:
        """After a pass over the run queue: give an idle peer its share of the CPU-bound
        runnable processes (shipping one at a time left it under-loaded: measured 1.48x instead
        of 1.7x on parallel.lisp 8 30 with two schedulers)."""
        runq = self.sched.runq
        while self.idle_peers and len(runq) >= 2:
            share = len(runq) // (len(self.idle_peers) + 1)
            k = min(self.idle_peers)
            procs = self.take_movable(runq, max(1, share))
            if not procs:
                return  # nothing CPU-bound yet: k stays idle, and gets work once something is
            self.idle_peers.discard(k)
            for proc in procs:
                self.ship(proc, k)

    @staticmethod
    def take_movable(runq: deque, n: int) -> list[Process]:
        """Up to n processes taken out of the run queue to run elsewhere: CPU-bound ones (they
        used up their last budget), and ones not started yet whose function is the function a
        CPU-bound one there started with (eight jobs spawned at once: moving only those that had
        had a first slice left the second scheduler waiting for 4 ms slices here). Never the main
        process.

        Processes that only ever run briefly (a ring's nodes, servers) stay where they are:
        moving them would put every message they exchange on a socket."""
        origins = {_origin(p) for p in runq if p.sched is YIELDED}
        main = MAIN_PID[0]
        taken: list[Process] = []
        for i in range(len(runq) - 1, -1, -1):
            if len(taken) >= n:
                break
            p = runq[i]
            if p.pid == main or p.status != RUNNABLE:
                continue
            if p.sched is YIELDED or (p.pc == 0 and len(p.frames) == 1 and p.cl.proto in origins):
                del runq[i]
                taken.append(p)
        return taken

    # --- incoming events ---------------------------------------------------------------------

    def handle(self, link: Link, ev: tuple) -> None:
        """Apply one event read from `link`. One of the wrong kind or shape for this scheduler,
        or any before a valid hello, raises _Refused (never from our own peers: whoever sent it
        is cut off, _read), so that nothing a connection sends can crash the node."""
        kind = ev[0] if ev.__class__ is tuple and ev else None
        check = _SHAPES.get(kind) if kind.__class__ is str else None
        if check is None:
            raise _Refused("not an event")
        if link.peer is None:
            if kind != "hello":
                raise _Refused(f"{kind} before a hello")
        elif kind == "hello":
            raise _Refused("a second hello")
        why = check(self, ev)
        if why is None and kind in _BY_NAME and not hasattr(self, _BY_NAME[kind]):
            why = f"not sent to scheduler {self.sid}"  # (a stop to the hub, an out to a worker)
        if why is not None:
            raise _Refused(f"{kind}: {why}")
        if kind in _COUNTED:
            self.recvd += 1
        try:
            _HANDLERS[kind](self, link, ev)
        except CodecError as e:  # passing on a well-formed event whose envelope grew past the limit:
            # the peer did nothing wrong, so its connection stays; the event is reported, not hidden
            sys.stderr.write(f"lispvm: scheduler {self.sid}: a {kind} event could not be passed on ({e})\n")
        # pragma: no cover - the checks above come first; a handler's slip still never ends the node
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:  # pragma: no cover
            raise _Refused(f"{kind}: {e.__class__.__name__}: {e}") from None

    def on_hello(self, link: Link, ev: tuple) -> None:
        self.greeted.add(ev[1])
        link.peer = ev[1]
        if ev[2] is not None:  # None: it cannot take a poke (see _install_poke)
            self.os_pids[ev[1]] = ev[2]
        self.links.setdefault(ev[1], link)

    def on_ev(self, link: Link, ev: tuple) -> None:
        _, pid, skey, seq, kind, item = ev
        proc = self.sched.procs.get(pid.key)
        if proc is not None:
            self.apply_ordered(proc, skey, seq, kind, item)
            return
        fwd = self.moved.get(pid.key)
        if fwd is not None and fwd != self.sid and fwd not in self.dead:
            self.emit(fwd, ev)  # it moved on: pass it along, and tell the sender's scheduler
            if link.peer is not None and link.peer != fwd:
                self.emit(link.peer, ("moved", pid.key, fwd))
            return
        if fwd is None and self.loc.get(pid.key, pid.node) != self.sid:
            # Never here yet: it is on its way (a scheduler that forwarded an event to here told
            # the sender's, whose next events can overtake the process on another socket; they
            # were dropped, which LISPVM_CHAOS's delayed writes showed). Applied when it comes.
            self.early.setdefault(pid.key, []).append(ev)
            return
        if kind == "s":
            self.dead_target(pid, item, fwd in self.dead if fwd is not None else False)

    def on_moved(self, link: Link, ev: tuple) -> None:
        self.loc[ev[1]] = ev[2]

    def on_proc(self, link: Link, ev: tuple) -> None:
        if ev[3]:
            self.learn_freed(ev[3])
        self.adopt(ev[1], ev[2])
        self.not_idle()

    def on_define(self, link: Link, ev: tuple) -> None:
        _, name, value = ev
        self.globals.cell(name).v = value
        if interp.FAST is not None:
            interp.FAST.on_define(name)
        if self.sid == 0:
            self.tell_workers(ev, link.peer)

    def on_register(self, link: Link, ev: tuple) -> None:
        """A name bound or freed elsewhere. The hub's copy is the authority, and each worker's
        copy follows the hub's changes in the hub's order: a worker takes a register from the
        hub as it is; the hub takes one from a worker if the name is free there, and otherwise
        defers it until the name is freed. (A worker checks a register against its own copy,
        which may not have seen the old holder's unregister yet at the hub: a supervisor that
        got the DOWN, was moved, and registered the name again; refusing it there left the
        name unbound though its register had said true.)"""
        name, pid = ev[1], ev[2]
        hub = self.sid == 0
        if ev[0] == "register":
            if hub:
                held = self.names.get(name)
                if held is not None and held == ev[3]:
                    # the worker saw the holder end (its DOWN, or its unregister) before this
                    # scheduler did: the name is free, and its later messages must find the new pid
                    self.unbind(name)
                    self.tell_workers(("unregister", name, held))
                    held = None
                if held is not None and held != pid:
                    self.deferred.setdefault(name, []).append(pid)
                    return
                if held == pid:
                    return
            self.bind(name, pid)
            if hub:
                self.tell_workers(ev, link.peer)
            self.name_here(name, pid)
            return
        if self.names.get(name) == pid:
            self.unbind(name)
            if hub:
                self.tell_workers(ev, link.peer)
                self.next_deferred(name)
        elif hub:
            self.undefer(name, pid)

    def undefer(self, name: Sym, pid: Pid) -> None:
        """(Hub) `pid` ended before the name it was registered under was freed: forget that."""
        waiting = self.deferred.get(name)
        if waiting and pid in waiting:
            waiting.remove(pid)
            if not waiting:
                del self.deferred[name]

    def next_deferred(self, name: Sym) -> None:
        """(Hub) `name` was freed: give it to the first register that waited for it."""
        waiting = self.deferred.pop(name, None)
        if not waiting:
            return
        pid = waiting.pop(0)
        if waiting:
            self.deferred[name] = waiting
        self.bind(name, pid)
        self.tell_workers(("register", name, pid, None))
        self.name_here(name, pid)

    def name_here(self, name: Sym, pid: Pid) -> None:
        """A name was registered elsewhere for `pid`: if the process is here, it carries the
        name, so that its end frees the name node-wide (a name registered for a process on
        another scheduler was never freed: issue 12); if it has already ended here, free it now."""
        key = pid.key
        proc = self.sched.procs.get(key)
        if proc is not None:
            if proc.name is None:
                proc.name = name
        elif self.gone(pid):
            self.unregister(name, pid)  # it ran here, never left, and is gone

    def on_idle(self, link: Link, ev: tuple) -> None:
        self.idle_peers.add(ev[1])

    def on_busy(self, link: Link, ev: tuple) -> None:
        self.idle_peers.discard(ev[1])

    def on_peer(self, link: Link, ev: tuple) -> None:
        k = ev[1]
        self.started.add(k)
        if k in self.pending_out:
            self.connect(k)
        if self.said_idle and k != self.sid:
            self.emit(k, ("idle", self.sid))  # it did not exist when this scheduler said so

    def on_start(self, link: Link, ev: tuple) -> None:
        self.start_worker(ev[1])

    def start_worker(self, k: int) -> None:  # pragma: no cover - only the hub starts workers
        pass

    def on_sched_down(self, link: Link, ev: tuple) -> None:
        if ev[1] not in self.dead:
            self.peer_died(ev[1])

    def between_passes(self) -> None:
        """Input between two passes over the run queue: after a pass that used whole budgets
        (the poll is then cheap by comparison), or every 64 passes. Polling after every pass
        cost a message-passing ring a syscall per message; a long computation polls anyway
        whenever a budget runs out (pending). If nothing is runnable, idle() waits for input."""
        if self.sched.yields:
            self.cpu_bound = True
        if self.chaos is not None:
            self.chaos_migrate()
        if not self.sched.runq:
            return
        self.passes += 1
        if self.sched.yields or self.passes >= 64 or self.writing:  # (writing: the socket may take more now)
            self.passes = 0
            self.poll(0)
            if self.writing:
                self.backpressure()

    def chaos_migrate(self) -> None:
        """(LISPVM_CHAOS) Now and then move a runnable process, any but the main one, to another
        scheduler, started or not, whether or not that one said it is idle."""
        runq = self.sched.runq
        if self.nschedulers < 2 or not runq or not self.chaos.migrate():
            return
        proc = runq[self.chaos.pick(len(runq))]
        if proc.pid == MAIN_PID[0] or proc.status != RUNNABLE:
            return
        k = self.chaos.pick(self.nschedulers - 1)
        k = k + 1 if k >= self.sid else k  # any scheduler but this one
        if k in self.dead or self.stopping:
            return
        runq.remove(proc)
        self.ship(proc, k)

    def spin(self, deadline: float | None) -> bool:
        """After a device request: poll without sleeping for a moment, never past the next
        timer's `deadline` (ms); whether input came."""
        delay = None if deadline is None else (deadline - self.clock.now_ms()) / 1000.0
        return spin_for_services(self.services, self.poll, self.busy_wait, delay)

    def grace(self, deadline: float | None) -> bool:
        """Wait briefly for input before telling anyone this scheduler is idle: a reply usually
        comes within tens of microseconds, and announcing every wait woke the peers for nothing
        (the far ping-pong round trip fell from 108 us to ...; docs/performance.md)."""
        if self.said_idle:
            return False
        if not self.sched.procs or self.cpu_bound:
            # no process here can get a reply, or this scheduler has just run out of CPU-bound
            # work (a budget was used up since it was last idle): say so at once, while a busy
            # peer still has work to share
            return self.poll(0)
        t = IDLE_GRACE
        if deadline is not None:
            t = min(t, max(0.0, (deadline - self.clock.now_ms()) / 1000.0))
        # Not when a timer falls due within the grace: poll() waits whole milliseconds, so a
        # spin before it made every such timer fire one spin late (timer/sleep 1: 116 -> 216 us
        # over its deadline, a review found).
        if t >= IDLE_GRACE and self.grace_wait.spin(lambda: self.poll(0), t):
            return True
        return self.poll(t)

    def not_idle(self) -> None:
        if self.said_idle:
            self.said_idle = False
            self.last_report = None  # the hub drops its copy on "busy": the next one must be sent
            for k in self.started:
                if k != self.sid and k not in self.dead:
                    self.emit(k, ("busy", self.sid))

    def say_idle(self) -> None:
        """Tell the peers this scheduler has nothing to run, and poke those not known to be idle
        themselves (POKE_SIGNAL): a peer running compiled code reads its input at its next
        CPU-time tick, 4 ms away where the kernel ticks at 250 Hz, and the poke ends its slice
        at once, so that it gives away work while there is still some to give."""
        self.cpu_bound = False
        if not self.said_idle:
            self.said_idle = True
            poke = []
            for k in self.started:
                if k != self.sid and k not in self.dead:
                    self.emit(k, ("idle", self.sid))
                    if k not in self.idle_peers and k in self.os_pids:
                        poke.append(self.os_pids[k])
            self.flush()  # the event first, so that the poked peer finds it
            for pid in poke:
                try:
                    os.kill(pid, POKE_SIGNAL)
                except OSError:
                    pass  # it has just exited: the link's EOF says so

    def peer_died(self, k: int) -> None:
        """Scheduler k is gone: its processes are lost; tell the links and monitors here."""
        self.dead.add(k)
        self.idle_peers.discard(k)
        self.links.pop(k, None)
        self.pending_out.pop(k, None)
        self.forked.discard(k)
        for proc in list(self.sched.procs.values()):
            if proc.links:
                for other in list(proc.links):
                    if self.where(other) == k:
                        proc.links.discard(other)
                        self.sched.exit_signal_to(proc, other, NOCONNECTION, linked=True)
            if proc.monitors:
                for ref, (role, other) in list(proc.monitors.items()):
                    if role == "of" and self.where(other) == k:
                        self._apply(proc, "s", ("down", ref, other, NOCONNECTION, proc.pid))
        if self.sid == 0:
            self.worker_died(k)


def _origin(proc: Process) -> Any:
    """The prototype of the function a process started with (its oldest frame's)."""
    frames = proc.frames
    return (frames[1][0] if len(frames) > 1 else proc.cl).proto


_COUNTED = frozenset({"ev", "proc"})
_CONFIG_LIMIT = 1 << 40  # the no-fork worker's settings file holds the whole program: no message limit
_READABLE = select.POLLIN | select.POLLHUP | select.POLLERR
# Unsent bytes a scheduler may hold for its peers before it stops running processes until they
# have read half of them (ClusterNode.backpressure; docs/processes.md, "Back-pressure").
SEND_BUFFER_LIMIT = 64 << 20
# Bytes queued for one peer after which emit writes them at once, inside the slice, and the
# sending process is charged for them (ClusterNode.push, give_way).
PUSH_BYTES = 256 << 10
_GIVE_WAY = "give-way"  # Block request of a sender charged for its bytes (never a device request)
_UNREAPED: list[Any] = []  # workers of an earlier run of this OS process that were exiting at its end


def _reap() -> None:
    """Reap the workers of earlier runs (run_program called again in one OS process)."""
    _UNREAPED[:] = [p for p in _UNREAPED if p.poll() is None]


POKE_SIGNAL = signal.SIGUSR1  # "a peer went idle": ends a slice of compiled code early (say_idle)


def _install_poke(jit: bool) -> Any:
    """Handle POKE_SIGNAL in this scheduler's OS process (its default action would kill it);
    returns the handler it replaced. Off the main thread (a run started from a thread, where
    the fast tier is off too) no handler can be set and no peer is told this process's pid."""
    import threading

    from ..vm import fast

    if threading.current_thread() is not threading.main_thread():
        return False
    previous = signal.getsignal(POKE_SIGNAL)
    signal.signal(POKE_SIGNAL, fast.on_poke if jit and fast.TIER is not None else signal.SIG_IGN)
    return previous


# The first part of the grace, in seconds, is spent polling without sleeping (clock.BusyWait):
# a reply from another scheduler usually comes sooner than this one would wake up from poll
# (the far ping-pong round trip went from 66 to 26 us, under a Pipe round trip's 44).
GRACE_SPIN = 100e-6
# Reductions per slice on the hub while it has two or more runnable processes and a scheduler
# still to start (Hub.run). parallel.lisp 8 24: the second scheduler forked 0.9 ms sooner, and
# 2 schedulers took 27.0 instead of 27.8 ms (medians of 50 interleaved runs each).
PROBE_BUDGET = 1000
IDLE_GRACE = 0.002  # seconds without input before a scheduler says it is idle


class Hub(ClusterNode):
    """Scheduler 0, in the command's OS process: starts the others and ends the node."""

    def __init__(self, *args: Any, out: Any = None, err: Any = None, jit: bool = True,
                 trace_path: str | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.full_budget = self.sched.budget  # (slices are shorter while the node can grow: run)
        self.probe_budget = min(PROBE_BUDGET, self.full_budget)  # never longer than the user's
        self.out = out or sys.stdout  # where every scheduler's `print` ends up
        self.err = err or sys.stderr
        self.jit = jit
        self.trace_path = trace_path
        self.workers: dict[int, Any] = {}  # k -> its ForkedWorker (or subprocess.Popen)
        self.idle_report: dict[int, tuple] = {}  # k -> (idle?, sent, received, timers, services)
        self.program: bytes = b""  # the .lbc bytes, for workers

    # --- workers -----------------------------------------------------------------------------

    def start_worker(self, k: int) -> None:
        """Start scheduler k's OS process (returns at once; it connects when ready).

        Forked from this one: the modules are already imported, so the new scheduler is ready
        in a few milliseconds instead of the ~100 ms a fresh interpreter took to import lispvm,
        which was longer than many parallel jobs (docs/performance.md). Safe because a
        scheduler process never imports pyopencl (the device process does) and runs no other
        thread; the child closes every inherited descriptor and never returns into this
        process's code (_forked_worker). numpy, if a gpu/ builtin loaded it, runs no threads
        (OPENBLAS_NUM_THREADS=1, set at the top of this module). Without os.fork, a fresh interpreter is
        started, which reads the program from the node's private directory."""
        if k in self.workers or k == 0 or k >= self.nschedulers or k in self.dead or self.stopping:
            return
        settings = (self.nschedulers, self.argv, self.full_budget, self.trace_path, self.jit,
                    os.getpid() if self.pokeable else None, self.secret)
        if hasattr(os, "fork"):
            for stream in (sys.stdout, sys.stderr, self.out, self.err):
                try:
                    stream.flush()  # nothing buffered here may be written twice
                except (AttributeError, OSError, ValueError):
                    pass
            # The new scheduler's first work goes with it: the child already holds a copy of
            # these processes, so it runs them at once instead of after its hello has been read
            # here and a migration sent back, at this scheduler's next slice boundaries (~8 ms
            # of a 25 ms parallel.lisp run).
            runq = self.sched.runq
            given = self.take_movable(runq, len(runq) // 2)
            # Ctrl-C and SIGTERM wait until the child has its own handlers and the parent has
            # recorded the child (so that shutdown stops it).
            held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            try:
                try:
                    pid = os.fork()
                except OSError:  # no memory or process left for it: the node goes on without it
                    runq.extend(given)
                    self.dead.add(k)
                    return
                if pid == 0:  # never returns; the program is already loaded and compiled here
                    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the hub's to handle
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    signal.pthread_sigmask(signal.SIG_SETMASK, held)
                    _forked_worker(self.sockdir, k, settings, (self.module, self.globals, dict(self.names), given))
                self.workers[k] = ForkedWorker(pid)
                self.forked.add(k)
                for proc in given:
                    self.handed_over(proc, k)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
        else:  # pragma: no cover - every platform lispvm runs on has fork
            import subprocess

            if not self.workers:
                with open(os.path.join(self.sockdir, "config"), "wb") as f:
                    f.write(encode((settings, self.program), limit=_CONFIG_LIMIT))
            code = ("import sys; from lispvm.scheduler.cluster import worker_main; "
                    "worker_main(sys.argv[1], int(sys.argv[2]))")
            self.workers[k] = subprocess.Popen([sys.executable, "-c", code, self.sockdir, str(k)],
                                               stdin=subprocess.DEVNULL, close_fds=True)
        self.started_any = True

    def pending(self) -> bool:
        """A budget was just spent: that is the CPU-bound evidence maybe_grow waits for, so a
        scheduler is started now rather than after the whole pass (eight 4 ms slices of
        parallel.lisp put the start at 33 ms and the first migration at 50 ms)."""
        self.maybe_grow()
        return super().pending()

    def next_to_start(self) -> int | None:
        """The scheduler to start next, if one is still to be (one whose fork failed never will be)."""
        if self.stopping:
            return None
        return next((k for k in range(1, self.nschedulers) if k not in self.workers and k not in self.dead), None)

    def maybe_grow(self) -> None:
        """A process used a whole budget while others are runnable, and a scheduler is not
        started yet: start one (a forked one connects about 10 ms later). Without the
        CPU-bound evidence a ring's set-up started a scheduler that only cost it: 25% slower."""
        if self.sched.yields and len(self.sched.runq) >= 2:
            k = self.next_to_start()
            if k is not None:
                self.start_worker(k)

    def on_hello(self, link: Link, ev: tuple) -> None:
        k = ev[1]
        super().on_hello(link, ev)
        if k in self.started:
            return
        # a new scheduler: tell it the node's state, then tell everyone it exists; a forked one
        # has the state as of its fork, and what changed since is in pending_out
        if k in self.forked:
            self.forked.discard(k)
        else:
            for name, cell in self.globals.cells.items():
                if cell.v is not UNDEF and name not in _BUILTIN_NAMES[0]:
                    link.queue(("define", name, cell.v))
            for name, pid in self.names.items():
                link.queue(("register", name, pid, None))
        for j in self.started:
            link.queue(("peer", j))
        link.queue(("mainpid", MAIN_PID[0]))
        for j in self.started:
            if j != 0 and j not in self.dead:
                self.emit(j, ("peer", k))
        self.started.add(k)
        for ev2 in self.pending_out.pop(k, ()):
            link.queue(ev2)
        if self.said_idle:  # said before it could hear it: a scheduler forked with work gives some back
            link.queue(("idle", 0))

    def on_out(self, link: Link, ev: tuple) -> None:
        self.output(ev[1])

    def on_err(self, link: Link, ev: tuple) -> None:
        self.error_line(ev[1])

    def on_main_done(self, link: Link, ev: tuple) -> None:
        self.end(ev[1], ev[2])

    def on_idle_report(self, link: Link, ev: tuple) -> None:
        self.idle_report[ev[1]] = ev[2:]

    def on_busy(self, link: Link, ev: tuple) -> None:
        """A worker runs again: its last idle report no longer holds. (Kept, it let the hub
        take a node for deadlocked while that worker waited on a long GPU dispatch: the
        report said "nothing pending", and the messages since had cancelled out in the
        counts.) A worker says busy before anything it sends after its report."""
        super().on_busy(link, ev)
        self.idle_report.pop(ev[1], None)

    def output(self, line: str) -> None:
        self.out.write(line + "\n")

    def error_line(self, line: str) -> None:
        try:
            self.out.flush()
        except (OSError, ValueError):
            pass
        self.err.write(line + "\n")
        self.err.flush()

    def main_done(self, code: int, message: str | None) -> None:
        self.end(code, message)

    def end(self, code: int, message: str | None) -> None:
        if self.exit_code is None:
            if message:
                self.error_line(message)
            self.exit_code = code

    def worker_died(self, k: int) -> None:
        if self.stopping:
            return
        for j in self.started:
            if j not in (0, k) and j not in self.dead:
                self.emit(j, ("sched_down", k))
        if MAIN_LOC[0] == k:
            self.end(1, f"lispvm: scheduler {k} (running the main process) died")

    # --- the loop --------------------------------------------------------------------------

    def run(self, main: Process) -> int:
        """Run until the node ends; returns the exit status."""
        s = self.sched
        s.add(main)
        while self.exit_code is None:
            if s.timers:
                s.fire_timers(self.clock.now_ms())
            if s.runq:
                if self.said_idle:
                    self.not_idle()
                if s.yields:
                    self.maybe_grow()
                # While another scheduler could be started for them, runnable processes get
                # short slices: a CPU-bound one shows itself (and is compiled) after ~0.3 ms of
                # interpretation instead of ~1.2, and the new scheduler is forked that much sooner.
                s.budget = (self.probe_budget if len(s.runq) >= 2 and self.next_to_start() is not None
                            else self.full_budget)
                s.run_ready()
                if self.started_any:
                    self.balance()
                    self.between_passes()
                elif self.chaos is not None:
                    self.chaos_migrate()
                continue
            if self.exit_code is not None:
                break
            self.idle()
        return self.exit_code

    def idle(self) -> None:
        s = self.sched
        for k in list(self.forked):  # forked but never connected: it may have died before its hello
            if self.workers[k].poll() is not None:
                self.peer_died(k)  # what it was given is lost: links and monitors say noconnection
        if s.runq:
            return  # woken by that
        try:
            self.out.flush()  # before any wait, spinning included: output is not held back
        except (OSError, ValueError):
            pass
        d = s.next_deadline()
        if self.spin(d):
            return
        if self.started_any and self.grace(d):
            return
        busy_elsewhere = any(not r[0] or r[3] or r[4] for k, r in self.idle_report.items() if k not in self.dead)
        started_workers = [k for k in self.workers if k not in self.dead]
        if (d is None and not any(svc.outstanding() for svc in self.services)
                and all(k in self.idle_report for k in started_workers) and not busy_elsewhere
                and not self.pending_out and not self.writing and self._quiet()):
            self.deadlock()
            return
        self.say_idle()
        delay = None if d is None else max(0.0, (d - self.clock.now_ms()) / 1000.0)
        if delay is None and started_workers:
            delay = 0.5  # check quiescence again later: workers may be about to report
        self.poll(delay)

    def _quiet(self) -> bool:
        """No Lisp event in flight anywhere: everything sent has been received."""
        sent = self.sent + sum(r[1] for r in self.idle_report.values())
        recvd = self.recvd + sum(r[2] for r in self.idle_report.values())
        return sent == recvd

    def deadlock(self) -> None:
        self.end(1, f"lispvm: deadlock: the main process {MAIN_PID[0]!r} waits for a message that no "
                    "process can send")

    def shutdown(self) -> None:
        """Stop every worker and remove the sockets: nothing of ours is left running."""
        from .node import stop_device

        self.stopping = True
        stop_device()
        for k in self.workers:
            if k not in self.dead:
                self.emit(k, ("stop",))
        try:
            self.flush()
        except OSError:
            pass
        # A worker closes its sockets as it exits: its EOF says it has stopped running our code.
        # The kernel then takes ~1.3 ms more to free its memory, which this process does not
        # wait for (it was 5% of a parallel.lisp run): an exited worker not yet reaped is reaped
        # at the next run's start or by init when this process ends. (Output sent before the
        # stop is still printed: the links are read until then.)
        deadline = time.monotonic() + 2.0
        while True:  # (a hello read here makes a worker started: it is waited for too)
            waiting = [k for k in self.workers if k in self.started and k not in self.dead and k not in self.eof]
            left = deadline - time.monotonic()
            if not waiting or left <= 0:
                break
            self.poll(left)
        timeouts: tuple = (TimeoutError,)
        if "subprocess" in sys.modules:  # only the no-fork fallback's workers raise its TimeoutExpired
            timeouts += (sys.modules["subprocess"].TimeoutExpired,)
        for k, p in self.workers.items():
            if p.poll() is not None:
                continue
            if k in self.eof and k not in self.dead:
                _UNREAPED.append(p)  # it closed its sockets to exit: gone in a moment
                continue
            p.kill()  # still booting, or stuck: a stuck scheduler never hangs the node
            try:
                p.wait(timeout=2.0)
            except timeouts:
                pass
        self.close()
        _remove_dir(self.sockdir)


class Worker(ClusterNode):
    """Scheduler k > 0, in its own OS process."""

    hub_pid: int | None = None  # the hub's OS pid, if it handles POKE_SIGNAL

    def output(self, line: str) -> None:
        self.emit(0, ("out", line))

    def error_line(self, line: str) -> None:
        self.emit(0, ("err", line))

    def main_done(self, code: int, message: str | None) -> None:
        self.emit(0, ("main_done", code, message))

    def worker_died(self, k: int) -> None:
        pass

    def on_stop(self, link: Link, ev: tuple) -> None:
        self.stopping = True
        self.exit_code = 0

    def on_mainpid(self, link: Link, ev: tuple) -> None:
        MAIN_PID[0] = ev[1]

    def run(self) -> None:
        s = self.sched
        hub = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            hub.connect(self._path(0))
        except OSError:  # the hub died before this scheduler was ready: so has the node
            hub.close()
            self.dead.add(0)
            return
        link = self._add_link(hub, 0)
        if self.hub_pid is not None:  # None: the hub cannot take a poke (see _install_poke)
            self.os_pids[0] = self.hub_pid  # (the hub sends no hello: it uses this link)
        link.queue(("hello", self.sid, os.getpid() if self.pokeable else None, self.secret))
        # before the first slice: the hub queues what is meant for us until it reads this
        self._writing(link, link.flush())
        self.links[0] = link
        while self.exit_code is None:
            if 0 in self.dead:
                return  # the hub is gone: so is the node
            if s.timers:
                s.fire_timers(self.clock.now_ms())
            if s.runq:
                self.not_idle()
                self.last_report = None
                s.run_ready()
                self.balance()
                self.between_passes()
                continue
            d = s.next_deadline()
            if self.spin(d):
                continue
            if self.grace(d):
                continue
            self.say_idle()
            self.flush()  # so that bytes the sockets cannot take yet count as work (self.writing)
            busy = bool(d is not None or any(svc.outstanding() for svc in self.services) or self.writing)
            report = ("idle_report", self.sid, True, self.sent, self.recvd, busy, False)
            if report != self.last_report:  # (a wake-up only to write more says nothing new)
                self.last_report = report
                self.emit(0, report)
            delay = None if d is None else max(0.0, (d - self.clock.now_ms()) / 1000.0)
            self.poll(delay)


MAIN_PID: list[Pid | None] = [None]  # the main process's pid, node-wide
MAIN_LOC: list[int] = [0]  # the scheduler the main process is on (it is never moved)
_BUILTIN_NAMES: list[frozenset] = [frozenset()]

_HANDLERS = {
    "hello": ClusterNode.on_hello, "ev": ClusterNode.on_ev, "moved": ClusterNode.on_moved,
    "proc": ClusterNode.on_proc, "define": ClusterNode.on_define, "register": ClusterNode.on_register,
    "unregister": ClusterNode.on_register, "idle": ClusterNode.on_idle,
    "peer": ClusterNode.on_peer, "sched_down": ClusterNode.on_sched_down, "start": ClusterNode.on_start,
}


def _dispatch(name: str) -> Any:
    def h(node: ClusterNode, link: Link, ev: tuple) -> None:
        getattr(node, name)(link, ev)
    return h


_BY_NAME = {"hello": "on_hello", "out": "on_out", "err": "on_err", "main_done": "on_main_done",
            "idle_report": "on_idle_report", "busy": "on_busy", "stop": "on_stop", "mainpid": "on_mainpid"}
for _ev, _m in _BY_NAME.items():
    _HANDLERS[_ev] = _dispatch(_m)


class _Refused(Exception):
    """An event that no scheduler of this node sends (ClusterNode.handle): its connection is cut."""


def _sid(node: ClusterNode, k: Any) -> bool:
    """`k` can be a scheduler number of this node."""
    return k.__class__ is int and 0 <= k < node.nschedulers


def _hello_bad(node: ClusterNode, ev: tuple) -> str | None:
    """A hello must come from another scheduler of this node that has not said hello before
    (a forged one made the node take a live scheduler for dead), with the node's token."""
    if len(ev) != 4 or not _sid(node, ev[1]) or not (ev[2] is None or (ev[2].__class__ is int and ev[2] > 0)):
        return "wrong shape"
    if ev[3].__class__ is not bytes or not _compare_digest(ev[3], node.secret):
        return "not this node's token"
    k = ev[1]
    if k == node.sid or k in node.greeted or k in node.dead:
        return f"scheduler {k} is connected already"
    return None


# Signals as ClusterNode.signal and the kernel make them: their fields' classes (None: any value).
_SIGNAL_SHAPES: dict[str, tuple] = {
    "exit": (Pid, None, Pid), "xsignal": (Pid, None, Pid), "down": (Ref, Pid, None, Pid),
    "link": (Pid, Pid), "unlink": (Pid, Pid), "monitor": (Ref, Pid, Pid), "demonitor": (Ref, Pid),
}


def _ev_bad(node: ClusterNode, ev: tuple) -> str | None:
    if len(ev) != 6 or ev[1].__class__ is not Pid:
        return "wrong shape"
    skey, seq = ev[2], ev[3]
    if not ((skey is None and seq is None) or (skey.__class__ is int and seq.__class__ is int and seq >= 0)):
        return "wrong sequence"
    if ev[4] == "m":
        return None
    item = ev[5]
    if ev[4] != "s" or item.__class__ is not tuple or not item or item[0].__class__ is not str:
        return "neither a message nor a signal"
    fields = _SIGNAL_SHAPES.get(item[0])
    if fields is None or len(item) != len(fields) + 1 or any(
            c is not None and x.__class__ is not c for c, x in zip(fields, item[1:])):
        return "not a signal"
    return None


def _names_bad(news: Any) -> bool:
    return news.__class__ is not tuple or any(
        x.__class__ is not tuple or len(x) != 2 or x[0].__class__ is not Sym or x[1].__class__ is not Pid for x in news)


def _shape(*fields: Any) -> Any:
    """A check that the event has these fields after its kind: a class, a tuple of classes, a
    predicate taking (node, value), or None for any value."""
    def bad(node: ClusterNode, ev: tuple) -> str | None:
        if len(ev) != len(fields) + 1:
            return "wrong length"
        for f, x in zip(fields, ev[1:]):
            if f is None:
                continue
            if f.__class__ is type or f.__class__ is tuple:
                if x.__class__ not in (f if f.__class__ is tuple else (f,)):
                    return "wrong shape"
            elif not f(node, x):
                return "wrong shape"
        return None
    return bad


_NONE = type(None)
_SHAPES: dict[str, Any] = {
    "hello": _hello_bad,
    "ev": _ev_bad,
    "moved": _shape(int, _sid),
    "proc": _shape(Process, int, lambda node, news: not _names_bad(news)),
    "define": _shape(str, None),
    "register": _shape(Sym, Pid, (Pid, _NONE)),
    "unregister": _shape(Sym, Pid),
    "idle": _shape(_sid),
    "busy": _shape(_sid),
    "peer": _shape(_sid),
    "sched_down": _shape(lambda node, k: _sid(node, k) and k != node.sid),
    "start": _shape(_sid),
    "out": _shape(str),
    "err": _shape(str),
    "main_done": _shape(int, (str, _NONE)),
    "idle_report": _shape(_sid, bool, int, int, bool, bool),
    "stop": _shape(),
    "mainpid": _shape(Pid),
}


def _builtin_names() -> frozenset:
    """Globals every scheduler defines itself (builtins, constants, the prelude's)."""
    from ..vm import prelude
    from ..vm.builtins import BUILTINS, CONSTANTS

    return frozenset(BUILTINS) | frozenset(CONSTANTS) | prelude.names()


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

        Waits on a pidfd where there is one: a 1 ms sleep-and-check loop cost the end of every
        run with two schedulers up to a millisecond (and importing subprocess for its
        TimeoutExpired, 3 ms)."""
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
        device = sys.modules.get(__package__ + ".device")  # imported only if the program used the GPU
        if device is not None:  # (importing it here cost the new scheduler 8 ms of a 12 ms start)
            device._CLIENTS.clear()  # the parent's device connection is not ours to stop
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
    range one by one took 0.4 ms of a new scheduler's 2.5 ms start), or the whole range."""
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


def _remove_dir(path: str) -> None:
    """Remove the node's directory: its sockets (and the no-fork fallback's config) are plain
    entries, unlinked one by one; shutil.rmtree, kept for anything else, took 0.27 ms on its
    first call here against 0.08, at the end of every run with two schedulers."""
    try:
        for name in os.listdir(path):
            os.unlink(os.path.join(path, name))
        os.rmdir(path)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


def _set_name(name: str) -> None:
    """Name this process (Linux: /proc/PID/comm, what `ps -o comm` and `top` show)."""
    try:  # what prctl(PR_SET_NAME) sets, without ctypes; no text file object (0.1 ms of a start)
        fd = os.open("/proc/self/comm", os.O_WRONLY)
        try:
            os.write(fd, name[:15].encode())
        finally:
            os.close(fd)
    except OSError:
        pass


def worker_main(sockdir: str, k: int, settings: tuple | None = None, loaded: tuple | None = None) -> None:
    """Entry point of scheduler k's OS process. In a child forked from the hub, `settings` are
    the node's (Hub.start_worker) and `loaded` its module and globals as the hub has them
    (verified, decoded, with the fast tier's compiled functions); otherwise both are read from
    the node's directory and the program is loaded."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the hub's to handle
    names: dict = {}
    given: list[Process] = []
    if loaded is not None:
        module, globals_, names, given = loaded
    else:
        with open(os.path.join(sockdir, "config"), "rb") as f:
            settings, program = decode(f.read(), limit=_CONFIG_LIMIT)
        from .node import load_program

        globals_ = Globals()
        module = load_program(program, globals_)
    nsched, argv, budget, trace_path, jit, hub_pid, secret = settings
    trace = None
    if trace_path:  # the tracing module imports structlog: 110 ms, paid only when tracing
        from .trace import make_tracer

        trace = make_tracer(trace_path, k)
    node = Worker(k, nsched, sockdir, module, globals_, argv, budget, trace)
    node.hub_pid = hub_pid
    node.secret = secret
    for name, pid in names.items():
        node.bind(name, pid)
    for proc in given:
        node.adopt(proc, RUNNABLE)
    if jit:
        from ..vm import fast

        if loaded is not None and fast.TIER is not None:
            fast.rearm()  # a fork keeps the compiled code but not the interval timer
        else:
            fast.enable(globals_, budget)
    node.pokeable = _install_poke(jit) is not False
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
            _remove_dir(sockdir)


def run_cluster(data: bytes, module: lbc.Module, globals_: Globals, argv: list[str], nsched: int, budget: int,
                trace: Any, trace_path: str | None, jit: bool, out: Any, err: Any) -> int:
    """Run a program on a node of up to `nsched` schedulers; returns the exit status."""
    _reap()
    sockdir = tempfile.mkdtemp(prefix="lispvm-")
    _BUILTIN_NAMES[0] = _builtin_names()
    hub = Hub(0, nsched, sockdir, module, globals_, argv, budget, trace, out=out, err=err, jit=jit,
              trace_path=trace_path)
    hub.program = data
    # A new token per run, known only to its schedulers (inherited at fork, or in the node's
    # private directory): a connection whose hello lacks it is closed (_hello_bad).
    hub.secret = os.urandom(16)
    main = Process(hub.sched.new_pid(), Closure(module.protos[0], ()), [None] * module.protos[0].nregs)
    MAIN_PID[0] = main.pid
    MAIN_LOC[0] = 0
    previous: Any = False
    try:
        previous = _install_poke(jit)
        hub.pokeable = previous is not False
        return hub.run(main)
    finally:
        hub.shutdown()
        # a worker that is still exiting may poke once more: SIGUSR1's default action would end
        # this process with status 138 after a successful run, so the default is not put back
        if previous is not False:
            keep = previous is None or previous == signal.SIG_DFL
            signal.signal(POKE_SIGNAL, signal.SIG_IGN if keep else previous)


__all__ += ["Link", "ClusterNode", "Worker", "BLOCKED"]
