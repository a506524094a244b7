"""Routing: a message or signal from a process to wherever its receiver is, in its sender's order.

Owns: where a process is thought to be (`loc`: last seen; `moved`: shipped from here), delivery
to a local process, forwarding to another scheduler (and telling the sender's scheduler the new
place), the per-pair sequence numbers that keep the events of one sender to one receiver in
order across OS processes (Process.seqs / seqin / held), events that came before their process
(`early`), and the answers for a dead or lost target (noproc, noconnection). Must never: wait,
touch a socket (it queues on the node through Transport.emit), or reorder the events of a pair.

Order (docs/processes.md, "Order of messages"): within one scheduler delivery is immediate. As
soon as a pair of processes talks across OS processes its events carry a sequence number, and
the receiver holds back any that overtook an earlier one on another path (after a move, through
a forwarding scheduler). Pairs that never crossed pay nothing. `Routing` is a mixin of
cluster.ClusterNode: its state is made by `init_routing`.
"""

from __future__ import annotations

from typing import Any

from ..vm.codec import TooLarge, Unsendable, c_queue_next
from ..vm.errors import LispError, badarg, describe, system_limit
from ..vm.process import Process
from ..vm.values import Pid, Ref, intern
from .framing import MSG_SEQ, SMALL_ESTIMATE, message_event, small_item
from .kernel import DEAD, RUNNABLE, WAITING, Scheduler, resolve_name
from .transport import PUSH_BYTES, Link

__all__ = ["NOCONNECTION", "Routing"]

NOCONNECTION = intern("noconnection")
_U64 = 1 << 64


class Routing:
    """Where processes are, and delivery in order (a mixin of cluster.ClusterNode)."""

    def init_routing(self) -> None:
        """No process is known elsewhere yet."""
        self.loc: dict[int, int] = {}  # pid key -> scheduler it was last seen on
        self.moved: dict[int, int] = {}  # pid key -> scheduler it was shipped to from here
        self.early: dict[int, list[tuple]] = {}  # pid key -> events that came before the process

    def resolve(self, dest: Any) -> Pid:
        return resolve_name(self.names, dest)

    def where(self, pid: Pid) -> int:
        """The scheduler to send to for `pid`: last seen, forwarded to, or where it was made."""
        k = self.loc.get(pid.key)
        if k is None:
            k = self.moved.get(pid.key, pid.node)
        return k

    def send_from(self, sched: Scheduler, sender: Any, dest: Any, msg: Any) -> None:
        if dest.__class__ is Pid and sender.__class__ is Process:
            # The commonest send that gets here: the next message of a pair that already crosses,
            # small enough to wait unencoded (framing.small_item), to a peer whose link is up.
            # What deliver_or_route and emit would do for it, without their general cases: in C
            # (vm/_ccodec.c queue_next, the checks below in the same order) where it is built.
            seqs = sender.seqs
            if seqs is not None and self.trace is None:
                if not self.pending_out and c_queue_next is not None:
                    link = c_queue_next(seqs, dest, sender.pid.key, msg, sched.procs, self.loc, self.moved,
                                        self.links, self.dead, self.sid)
                    if link is not None:
                        self.sent += 1
                        n = link.nout = link.nout + SMALL_ESTIMATE
                        if n > PUSH_BYTES:
                            self.push(link)
                            self.give_way(sched, msg)
                        return
                elif self.queue_next(sched, seqs, sender, dest, msg):
                    return
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

    def queue_next(self, sched: Scheduler, seqs: dict, sender: Process, dest: Pid, msg: Any) -> bool:
        """send_from's fast path in Python (where vm/_ccodec.c is not built, and while a peer is
        starting): whether the message was queued, the next of its pair, for a peer whose link
        is up or whose scheduler is still starting (a stream's first thousands of messages)."""
        key = dest.key
        seq = seqs.get(key)
        if seq is None or key in sched.procs:
            return False
        k = self.loc.get(key)
        if k is None:
            k = self.moved.get(key, dest.node)
        link = self.links.get(k)
        if link is not None:
            if (not self.pending_out and k != self.sid and k not in self.dead and dest.node < 4096
                    and 0 <= key < _U64 and small_item(msg)):
                seqs[key] = seq + 1
                link.out.append(("ev", dest, sender.pid.key, seq, "m", msg))
                self.sent += 1
                n = link.nout = link.nout + SMALL_ESTIMATE
                if n > PUSH_BYTES:
                    self.push(link)
                    self.give_way(sched, msg)
                return True
        elif self.pending_out:
            # What emit does while the peer forks and says hello: the message kept unencoded in
            # its queue (Link.queue batches it when the link is made).
            queued = self.pending_out.get(k)
            if (queued is not None and k != self.sid and k not in self.started and k not in self.dead
                    and dest.node < 4096 and 0 <= key < _U64 and small_item(msg)):
                seqs[key] = seq + 1
                queued.append(("ev", dest, sender.pid.key, seq, "m", msg))
                self.sent += 1
                if self.charged:
                    self.give_way(sched, msg)
                return True
        return False

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
            # refused at `send` (or gen/reply), in the sender; its next message takes this number
            if kind == "m" or item[0] == "reply":
                if seq is not None:
                    sender.seqs[pid.key] = seq  # type: ignore[union-attr]
                if isinstance(e, Unsendable):  # a Python object (vm/python.py): LANGUAGE.md section 14
                    raise badarg(f"send: {e} ({pid!r} is on scheduler {k})") from None
                raise system_limit(f"send: the message is too large to reach {pid!r} on scheduler {k} ({e})") from None
            if item[0] == "xsignal" and isinstance(e, Unsendable):  # (exit pid reason): refused as send is
                if seq is not None:
                    sender.seqs[pid.key] = seq  # type: ignore[union-attr]
                raise badarg(f"exit: the reason: {e} ({pid!r} is on scheduler {k})") from None
            # a signal still arrives (a link must not be lost): its reason becomes a system_limit error
            why = system_limit(f"the reason is too large to reach scheduler {k} ({e})").value
            self.emit(k, ("ev", pid, skey, seq, kind, tuple(x if i == 0 or x.__class__ is Pid or x.__class__ is Ref
                                                          else why for i, x in enumerate(item))))

    def on_batch(self, link: Link, runs: list, items: tuple) -> None:
        """The messages of a batch frame from a greeted peer (framing.batch_runs: its headers as
        runs of one pair's consecutive numbers), in order. A run that is next in its pair's order,
        to a process here that holds none back, goes into the mailbox at once, as apply_ordered
        would put each of its messages; any other message takes on_message's path. CodecError
        (from a header's unknown mark) leaves the messages before it delivered."""
        procs = self.sched.procs
        i = 0
        for mark, key, skey, seq, count in runs:
            proc = procs.get(key)
            if proc is not None and mark == MSG_SEQ and not proc.held and proc.status != DEAD:
                seqin = proc.seqin
                if seqin is not None and seqin.get(skey) == seq:
                    seqin[skey] = seq + count
                    mb = proc.mailbox
                    if count == 1:
                        if mb is None:
                            proc.mailbox = [items[i]]
                        else:
                            mb.append(items[i])
                    elif mb is None:
                        proc.mailbox = list(items[i:i + count])
                    else:
                        mb.extend(items[i:i + count])
                    if proc.status == WAITING:
                        proc.status = RUNNABLE
                        self.sched.runq.append(proc)
                    self.recvd += count
                    i += count
                    continue
            for j in range(count):  # one at a time, each held back or refused as it must be
                self.on_message(link, message_event((mark, key, skey, seq + j if mark == MSG_SEQ else seq), items[i]))
                i += 1

    def dead_target(self, pid: Pid, sig: tuple, lost: bool) -> None:
        kind = sig[0]
        reason = NOCONNECTION if lost else intern("noproc")
        if kind == "link":
            self.signal(self.sched, None, sig[2], ("exit", pid, reason))
        elif kind == "monitor":
            self.signal(self.sched, None, sig[2], ("down", sig[1], pid, reason))
        elif kind == "info":  # sys/info of a process that has ended
            self.signal(self.sched, None, sig[2], ("inforeply", sig[1], None, sig[2]))

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
