"""The cluster's sockets: one Link per peer scheduler, polled with the node's other descriptors.

Owns: the node's listening socket and its links (a framing.Channel per connection, made on first
use at a path derived from the scheduler number, scheduler/framing.py), events queued for a peer
that is not connected yet, registering them with the node's poller (scheduler/poller.py, which
the device client's socket joins through add_reader), writes that finish (a link with unsent
bytes is polled for writability), and the bound on unsent bytes (back-pressure, charged sends).
Must never: interpret an event beyond handing it to the node (`handle`), block on a socket call,
wait but through the poller, or unpickle anything.

Transport (docs/processes.md, "Transport"; figures in docs/performance.md): an AF_UNIX stream
socket per pair of schedulers; events are encoded when they are queued, so that an over-large one
is refused in its sender, and written once per wake-up. `Transport` is a mixin of
cluster.ClusterNode: its state is made by `init_transport` and read by the other mixins.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import Any

from ..vm.codec import CodecError
from ..vm.process import Block
from .chaos import Chaos
from .events import COUNTED, Refused
from .framing import (
    MSG_BARE,
    MSG_BATCH,
    SMALL_ESTIMATE,
    Channel,
    batch_runs,
    decode_batch,
    decode_event,
    encode_event,
    small_message,
)
from .kernel import Scheduler
from .poller import Poller

__all__ = ["GIVE_WAY", "PUSH_BYTES", "SEND_BUFFER_LIMIT", "Link", "Transport"]

# Unsent bytes a scheduler may hold for its peers before it stops running processes until they
# have read half of them (Transport.backpressure; docs/processes.md, "Back-pressure").
SEND_BUFFER_LIMIT = 64 << 20
# Bytes queued for one peer after which emit writes them at once, inside the slice, and the
# sending process is charged for them (Transport.push, give_way).
PUSH_BYTES = 256 << 10
HELLO_MAX = 1024  # bytes: a connection's first frame is its hello (sid, OS pid, token), far smaller

_BATCH = bytes((MSG_BATCH,))
GIVE_WAY = "give-way"  # Block request of a sender charged for its bytes (never a device request)


class Link(Channel):
    """One socket to one peer scheduler: a framing.Channel that knows which peer it leads to."""

    __slots__ = ("peer",)

    def __init__(self, sock: socket.socket, peer: int | None, chaos: Chaos | None = None) -> None:
        super().__init__(sock, chaos)
        self.peer = peer  # the scheduler at the other end (None until its hello)

    def who(self) -> str:
        return f"peer {self.peer}"

    def queue(self, obj: Any) -> None:
        """As Channel.queue; a small message event (framing.small_message: what emit keeps
        unencoded for a peer still starting, in pending_out) waits unencoded here too, so that
        it is sent in a batch with the others."""
        if obj.__class__ is tuple and small_message(obj):
            self.out.append(obj)
            self.nout += SMALL_ESTIMATE
        else:
            super().queue(obj)


class Transport:
    """The node's sockets (a mixin of cluster.ClusterNode)."""

    def init_transport(self) -> None:
        """Make the node's poller and listening socket; no link yet."""
        self.poller = Poller()  # every descriptor this OS process waits on
        self.links: dict[int, Link] = {}  # peer -> the link this scheduler sends on
        self.all_links: list[Link] = []  # every link, including accepted ones used only to read
        # frames for peers not connected yet, and small message events unencoded (small_message):
        # Link.queue takes both when the link is made
        self.pending_out: dict[int, list[tuple | bytes]] = {}
        self.writing: set[Link] = set()  # links with unsent bytes: polled for POLLOUT as well
        self.charged = False  # a send pushed PUSH_BYTES out during this slice: its process may give way
        self.eof: set[int] = set()  # peers whose connection ended (they closed it, or exited)
        self.secret = b""  # the node's token: a connection's hello must carry it (events._hello_bad)
        self.listener = self._listen()

    def _path(self, sid: int) -> str:
        return os.path.join(self.sockdir, f"s{sid}.sock")

    def _listen(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self._path(self.sid))
        s.listen(64)
        s.setblocking(False)
        self.poller.add_reader(s.fileno(), self._accept)
        return s

    def _add_link(self, sock: socket.socket, peer: int | None) -> Link:
        link = Link(sock, peer, self.chaos)
        self.all_links.append(link)
        self.poller.add_reader(link.fd, lambda: self._read(link))
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
        small = small_message(ev)
        data = ev if small else encode_event(ev)
        if ev[0] in COUNTED:
            self.sent += 1  # counted when sent, queued or not: quiescence must see it in flight
        link = self.links.get(peer)
        if link is None or self.pending_out:  # (connect's work: nothing else to do when neither)
            link = self.connect(peer)
        if link is None:
            self.pending_out.setdefault(peer, []).append(data)
            if self.sid == 0:
                self.start_worker(peer)
            elif peer not in self.asked_start and peer != 0:
                self.asked_start.add(peer)
                self.emit(0, ("start", peer))
            return
        link.out.append(data)  # (a small message unencoded: the flush encodes it with the others)
        n = link.nout + (SMALL_ESTIMATE if small else len(data))
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
            raise Block((GIVE_WAY, msg))

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
            if link.fd in self.poller.readers:  # (not once it is closed)
                self.poller.add_writer(link.fd, lambda: self._writing(link, link.flush()))
        else:
            self.writing.discard(link)
            self.poller.remove_writer(link.fd)

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
        """Write what is queued, then wait up to `timeout` seconds in the poller for input (and
        for links with unsent bytes to take more); handle it. True if any input came."""
        self.flush()
        return self.poller.poll(timeout)

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
            link.close()
        self.listener.close()

    def _read(self, link: Link) -> None:
        payloads = link.read_payloads()
        if payloads is not None:
            try:
                # each event is decoded just before it is applied: an event may make the next one
                # decodable (the `load` of a module typed at lispvm repl, then its closures)
                for payload in payloads:
                    if link.peer is None and len(payload) > HELLO_MAX:
                        # refused before decoding: a stranger's frame must not intern symbols for ever
                        raise Refused(f"a first frame of {len(payload)} bytes, where a hello takes at most {HELLO_MAX}")
                    try:
                        if payload[:1] == _BATCH:
                            if link.peer is not None:  # the commonest frame of a stream: routing.on_batch
                                self.on_batch(link, *batch_runs(payload))
                                continue
                            evs = decode_batch(payload)
                        else:
                            ev = decode_event(payload)
                            evs = None
                    except CodecError as e:
                        link.malformed(e)
                        break
                    if evs is not None:
                        if link.peer is None:
                            self.handle(link, evs[0])  # refused: no hello yet (raises Refused)
                        for ev in evs:
                            self.on_message(link, ev)
                        continue
                    if payload[0] >= MSG_BARE and link.peer is not None:
                        self.on_message(link, ev)
                    else:
                        self.handle(link, ev)
                else:
                    return
            except Refused as e:  # as for a frame the codec refused (Link.read): the rest is not trusted
                sys.stderr.write(f"lispvm: scheduler {self.sid}: a malformed event from "
                                 f"{'an unknown connection' if link.peer is None else f'peer {link.peer}'} "
                                 f"({e}); connection closed\n")
                link.closed = True
        if link.closed:
            if link.peer is not None:
                self.eof.add(link.peer)
            self.writing.discard(link)
            link.wbuf.clear()  # nobody will read it: not "unsent" any more
            self.poller.remove(link.fd)
            link.sock.close()
            if link.peer is not None and link.peer not in self.dead and not self.stopping:
                self.peer_died(link.peer)

    def on_message(self, link: Link, ev: tuple) -> None:
        """A message frame from a greeted peer: the event ClusterNode.handle would accept,
        without its checks of the shape (framing.decode_event made it: a Pid, a sequence
        number or none, kind "m"): they showed in a receiver's profile (docs/performance.md)."""
        self.recvd += 1
        try:
            self.on_ev(link, ev)
        except CodecError as e:  # passing it on after a move: as handle reports it
            sys.stderr.write(f"lispvm: scheduler {self.sid}: a ev event could not be passed on ({e})\n")

    def add_reader(self, fd: int, callback: Any) -> None:
        """Call `callback()` when `fd` is readable (the device client's socket): polled with the links."""
        self.poller.add_reader(fd, callback)

    def remove_reader(self, fd: int) -> None:
        self.poller.remove_reader(fd)
