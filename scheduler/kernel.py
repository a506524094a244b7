"""The scheduler: one run queue of lightweight processes, driven by one loop.

Owns: a scheduler's processes, run queue and timers, the one scheduler loop (`Scheduler.loop`),
and the outcome of every slice (one trap_* per outcome). Must never: wait itself (while its
loop runs, every wait is its node's: the poll phase, the idle grace, back-pressure, each through
the node's Poller, scheduler/poller.py, or its clock when nothing is polled), know how many OS
processes the node has, or be imported by vm/.

Principles (curio's kernel is the model):
- The VM loop (vm.interp.run) runs one process for one budget and returns an outcome; each
  outcome has one trap_* function here. The loop knows nothing of this module.
- Synchronous process operations (spawn, send, link, monitor, ...) are Host methods the VM calls
  directly: nothing there ever waits.
- The scheduler loop has four phases: fire due timers, run every ready process for one budget,
  and when nothing is ready, the node's idle policy, then its poll (the node's scheduler/poller.py
  Poller, where every file descriptor is waited on: what other OS processes and the device
  process sent; it blocks until the next event or deadline). When every process waits, it
  sleeps: no busy waiting beyond the short spins the idle policy allows.
- Everything node-wide (names, other schedulers, the device process, output) goes through
  `self.node` (scheduler/node.py); with one scheduler the node is this OS process. The node is
  also the loop's policy (`Policy`): the one-scheduler node, the hub and the worker differ only
  there.
- Tracing happens at slice boundaries only, behind one `if self.trace is not None`.
"""

from __future__ import annotations

import heapq
import os
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from ..vm import interp
from ..vm.errors import badarg, describe, report_repr
from ..vm.opcodes import BY_NAME
from ..vm.process import BLOCK, DONE, EXITED, FAILED, HALT, TIMED_OUT, WAIT, YIELD, Process
from ..vm.state import VM
from ..vm.values import Cons, Pid, Ref, Sym, from_list, intern, map_of
from . import chaos
from .clock import MonotonicClock

__all__ = ["Policy", "Scheduler", "Service", "RUNNABLE", "WAITING", "BLOCKED", "DEAD", "YIELDED"]

NEW, RUNNABLE, WAITING, BLOCKED, DEAD = range(5)
HOT_SPAWNS = 32  # processes started with one function before the fast tier compiles it
_RECVSTART = BY_NAME["RECVSTART"].num
YIELDED = object()  # Process.sched marker: its last slice used the whole budget (CPU-bound)
NORMAL, KILL, KILLED, NOPROC = intern("normal"), intern("kill"), intern("killed"), intern("noproc")
EXIT_SYM, DOWN_SYM = intern("EXIT"), intern("DOWN")


class Service(Protocol):
    """Another OS process that answers a scheduler's BLOCK requests (the device client,
    scheduler/device_client.py), in a node's `services` list once started. Its socket is polled
    through the node's add_reader; the policies ask it the two questions below."""

    def outstanding(self) -> int:
        """Requests sent and not answered yet: while any is, a scheduler with nothing else to
        wait for is not deadlocked (an answer will wake a process)."""
        ...

    def new_request(self) -> bool:
        """Whether a request was sent since the last call (the flag is taken): the idle policy
        then polls briefly without sleeping for its answer (node.spin_for_services)."""
        ...


class Policy(Protocol):
    """What a node decides for its scheduler's loop (Scheduler.loop): when to stop, what to do
    between passes over the run queue, what an idle scheduler does, and how it waits for input.
    The one-scheduler node (scheduler/node.py), the hub and the worker (scheduler/hub.py,
    scheduler/cluster.py) are the three policies. Each node also keeps `services`, a list of
    Service, and `poller`, its scheduler/poller.py Poller (add_reader and remove_reader are the
    node's too, for the device client)."""

    services: list[Service]  # started services: idle asks them before reporting a deadlock

    exit_code: int | None  # None while the loop runs; the policy sets it to end the loop
    # Called after each pass over the run queue, or None when there is nothing to do then (the
    # loop then pays one test per pass).
    after_pass: Callable[[], None] | None
    # Called before the first pass after the scheduler was idle, or None.
    wake: Callable[[], None] | None

    def idle(self, deadline: float | None) -> float | None:
        """Nothing is ready and `deadline` (ms, or None) is the next timer: do what an idle
        scheduler does (report a deadlock, tell the peers, spin briefly for an answer) and
        return how long the poll phase may wait, in seconds (None: until input comes), or a
        negative number to go round the loop again without polling (input came, or the node
        ends)."""
        ...

    def poll(self, timeout: float | None) -> bool:
        """Wait up to `timeout` seconds (None: for ever) for input on the node's descriptors, in
        its Poller, and handle what came (messages, device answers); whether anything came."""
        ...


class Scheduler:
    """One scheduler. Implements vm.process.Host for the processes it runs."""

    def __init__(self, node: Any, sid: int, budget: int = 4000, trace: Any = None, clock: Any = None,
                 vm: VM | None = None) -> None:
        self.node = node  # node-wide services: names, routing, output, halt (scheduler/node.py)
        self.clock = clock or MonotonicClock()  # now_ms() for timers; a VirtualClock in tests
        self.id = sid  # this scheduler's index, 0..N-1
        self.budget = budget  # reductions per slice
        self.vm = vm if vm is not None else VM()  # the loop's state, shared by this OS process's schedulers
        self.trace = trace  # a scheduler.trace.Tracer, or None (then tracing costs one test)
        self.procs: dict[int, Process] = {}  # live processes on this scheduler, by Pid.key
        self.runq: deque[Process] = deque()  # runnable processes, in order
        self.timers: list[tuple[float, int, Any]] = []  # heap of (deadline ms, seq, process or send)
        self.seq = 0  # tie-breaker for the timer heap, and pid/ref serial numbers
        self.refs = 0  # serial numbers of refs made here
        self.os_pid_ = os.getpid()  # for (sys/os-pid)
        self.yields = 0  # processes that used a whole budget in the last pass (CPU-bound work)
        self.chaos = chaos.make(sid)  # LISPVM_CHAOS's seeded choices, or None (then one test per slice)
        self.io: Any = None  # its scheduler/io.py IoService, once a process asks for I/O
        # prototype -> processes spawned with it so far, until the fast tier decides (see spawn):
        # then whether its processes start in compiled code
        self.spawned: dict[Any, int | bool] = {}

    # --- the loop ------------------------------------------------------------------------

    def loop(self, policy: Policy) -> None:
        """Run this scheduler until `policy.exit_code` is set, in four phases: fire the timers
        that are due, run every ready process for one budget, and when nothing is ready, the
        policy's idle step and then its poll, with the timeout the idle step chose from the next
        timer. This is the only scheduler loop: the nodes supply policies, not loops."""
        runq = self.runq
        timers = self.timers
        clock = self.clock
        after_pass = policy.after_pass
        wake = policy.wake
        idle = policy.idle
        poll = policy.poll
        idled = False
        while policy.exit_code is None:
            if timers:
                self.fire_timers(clock.now_ms())
            if runq:
                if idled:
                    idled = False
                    if wake is not None:
                        wake()
                self.run_ready(policy)
                if after_pass is not None:
                    after_pass()
                continue
            if policy.exit_code is not None:
                break
            idled = True
            timeout = idle(self.next_deadline())
            if timeout is None or timeout >= 0.0:
                poll(timeout)

    def seconds_until(self, deadline: float | None) -> float | None:
        """Seconds from now to `deadline` (ms; never negative), or None for no deadline."""
        return None if deadline is None else max(0.0, (deadline - self.clock.now_ms()) / 1000.0)

    def run_ready(self, policy: Policy | None = None) -> None:
        """Phase two: run each process that is ready now for one budget. Under a `policy` with
        nothing to do between passes (after_pass None: one scheduler), while processes are ready
        and no timer is set the next pass follows here, as the loop would start it, without
        going round the loop (a ring or a ping-pong runs one process a pass)."""
        runq = self.runq
        budget = self.budget
        trace = self.trace
        run = interp.run
        ch = self.chaos
        vm = self.vm
        timers = self.timers
        more = policy is not None and policy.after_pass is None
        while True:
            n = len(runq)
            self.yields = 0
            while n and runq:
                n -= 1
                proc = runq.popleft()
                if proc.status != RUNNABLE:
                    continue
                if trace is not None:
                    trace.slice_in(self, proc)
                outcome = run(proc, budget if ch is None else ch.budget(budget), self)
                # sys/info's reductions: the interpreter's count, at least one per slice (compiled
                # code counts time, not calls); one add per slice, none per instruction
                proc.reds += vm.used or 1
                if trace is not None:
                    trace.slice_out(self, proc, outcome)
                if outcome == WAIT and proc.deadline is None:  # the common case, inline
                    proc.status = WAITING
                else:
                    _TRAPS[outcome](self, proc)
            if not more or not runq or timers or policy.exit_code is not None:
                return

    def fire_timers(self, now: float) -> None:
        """Phase one: wake processes whose receive timed out; deliver timer/send-after."""
        timers = self.timers
        while timers and timers[0][0] <= now:
            deadline, _, what = heapq.heappop(timers)
            if what.__class__ is Process:
                if what.deadline != deadline:
                    continue  # stale: that receive ended (or waits on another deadline)
                if what.status == WAITING:
                    what.deadline = TIMED_OUT
                    self.wake(what)
                    if self.trace is not None:
                        self.trace.event(self, "timeout", what.pid)
                elif what.status == RUNNABLE:
                    # Woken by a message that it has not yet looked at when its deadline came:
                    # this is the only entry for that deadline (trap_wait pushes one), so if the
                    # message does not match, its receive must time out at once. Dropping the
                    # entry left it waiting with no timer: a false deadlock (issue 12).
                    what.deadline = TIMED_OUT
            else:
                _, sender, dest, msg = what
                self.node.send_from(self, sender, dest, msg)

    def next_deadline(self) -> float | None:
        """The earliest timer, skipping stale receive timeouts."""
        timers = self.timers
        while timers:
            deadline, _, what = timers[0]
            if what.__class__ is Process and (what.status != WAITING or what.deadline != deadline):
                heapq.heappop(timers)
                continue
            return deadline
        return None

    def complete(self, proc: Process, value: Any = None, error: Any = None) -> None:
        """A service (the device process) answered a BLOCK request: resume the process with
        `value` in the waiting register, or raise the Lisp error value `error` at the call."""
        if proc.status != BLOCKED:
            return  # it died meanwhile
        if error is not None:
            proc.reply_error = error
        else:
            proc.regs[proc.ret_reg] = value
        proc.request = None
        proc.status = RUNNABLE
        self.runq.append(proc)

    def wake(self, proc: Process) -> None:
        if proc.status == WAITING or proc.status == NEW:
            proc.status = RUNNABLE
            self.runq.append(proc)

    # --- traps: one per outcome ------------------------------------------------------------

    def trap_yield(self, proc: Process) -> None:
        proc.sched = YIELDED
        self.yields += 1
        self.runq.append(proc)
        # A whole budget was used: input (another scheduler ready for work, a reply) is checked
        # now rather than after the whole pass, which with several CPU-bound processes is several
        # whole budgets away.
        self.node.pending()

    def trap_wait(self, proc: Process) -> None:
        proc.status = WAITING
        d = proc.deadline
        if d is not None and proc.sched != d:
            proc.sched = d  # one heap entry per deadline, however often the process wakes
            self.seq += 1
            heapq.heappush(self.timers, (d, self.seq, proc))

    def trap_block(self, proc: Process) -> None:
        proc.status = BLOCKED
        self.node.request_service(self, proc)

    def trap_done(self, proc: Process) -> None:
        self.finish(proc, NORMAL)

    def trap_failed(self, proc: Process) -> None:
        self.node.crash_report(self, proc)
        self.finish(proc, proc.result)

    def trap_exited(self, proc: Process) -> None:
        self.finish(proc, proc.result)

    def trap_halt(self, proc: Process) -> None:
        self.node.halt(proc.result)

    # --- process lifecycle -----------------------------------------------------------------

    def new_pid(self) -> Pid:
        self.seq += 1
        return Pid(self.id, self.seq)

    def add(self, proc: Process) -> None:
        """Take a process (new, or moved here) and make it runnable."""
        self.procs[proc.pid.key] = proc
        proc.status = RUNNABLE
        self.runq.append(proc)

    def finish(self, proc: Process, reason: Any) -> None:
        """A process ended: tell its links and monitors, forget it."""
        proc.status = DEAD
        proc.result = reason
        self.procs.pop(proc.pid.key, None)
        if self.trace is not None:
            self.trace.event(self, "exit", proc.pid, reason=reason)
        if proc.name is not None:
            self.node.unregister(proc.name, proc.pid)
        if proc.links:
            for other in proc.links:
                self.node.signal(self, proc, other, ("exit", proc.pid, reason))
        if proc.monitors:
            for ref, (role, other) in proc.monitors.items():
                if role == "by":  # `other` watches us
                    self.node.signal(self, proc, other, ("down", ref, proc.pid, reason))
        proc.links = proc.monitors = None
        proc.mailbox = None
        proc.frames = []
        proc.regs = []
        if self.io is not None:  # what it waited on or owned (files, sockets, ports) is let go
            self.io.process_ended(proc)
        self.node.process_ended(self, proc, reason)

    def kill(self, proc: Process, reason: Any) -> None:
        """End a process that is not running now (an exit signal)."""
        if proc.status == DEAD:
            return
        self.finish(proc, reason)

    def receive_signal(self, sig: tuple) -> None:
        """Apply a link/monitor signal addressed to a process on this scheduler."""
        kind = sig[0]
        target = self.procs.get((sig[1] if kind in ("link", "unlink") else sig[-1]).key)
        if kind == "exit":  # ("exit", from, reason, to)
            _, frm, reason, to = sig
            target = self.procs.get(to.key)
            if target is None:
                return
            if target.links is not None:
                target.links.discard(frm)
            self.exit_signal_to(target, frm, reason, linked=True)
        elif kind == "xsignal":  # ("xsignal", from, reason, to): (exit pid reason)
            _, frm, reason, to = sig
            target = self.procs.get(to.key)
            if target is not None:
                self.exit_signal_to(target, frm, reason, linked=False)
        elif kind == "down":  # ("down", ref, pid, reason, to)
            _, ref, pid, reason, to = sig
            target = self.procs.get(to.key)
            if target is not None and target.monitors and target.monitors.pop(ref, None) is not None:
                self.deliver(target, from_list([DOWN_SYM, ref, pid, reason]))
        elif kind == "link":  # ("link", to, from)
            _, to, frm = sig
            if target is None:
                self.node.signal(self, None, frm, ("exit", to, NOPROC))
            else:
                if target.links is None:
                    target.links = set()
                target.links.add(frm)
        elif kind == "unlink":  # ("unlink", to, from)
            if target is not None and target.links:
                target.links.discard(sig[2])
        elif kind == "monitor":  # ("monitor", ref, watcher, to)
            _, ref, watcher, to = sig
            target = self.procs.get(to.key)
            if target is None:
                self.node.signal(self, None, watcher, ("down", ref, to, NOPROC))
            else:
                if target.monitors is None:
                    target.monitors = {}
                target.monitors[ref] = ("by", watcher)
        elif kind == "demonitor":  # ("demonitor", ref, to)
            _, ref, to = sig
            target = self.procs.get(to.key)
            if target is not None and target.monitors:
                target.monitors.pop(ref, None)
        elif kind == "pull":  # ("pull", scheduler, to): tcp/owner there named it (scheduler/balance.py)
            if target is not None and target.status != DEAD:
                self.node.pulled(target, sig[1])
        elif kind == "reply":  # ("reply", ref, msg, to): gen/call's answer, kept only while awaited
            _, ref, msg, to = sig
            if target is not None and target.monitors and ref in target.monitors:
                self.deliver(target, Cons(ref, Cons(msg, None)))
        elif kind == "info":  # ("info", ref, asker, to): sys/info from another scheduler
            _, ref, asker, to = sig
            data = None if target is None or target.status == DEAD else info_items(self, target, None)
            self.node.signal(self, None, asker, ("inforeply", ref, data, asker))
        elif kind == "inforeply":  # ("inforeply", ref, info items or nil, to)
            _, ref, data, to = sig
            req = None if target is None or target.status != BLOCKED else target.request
            if req is not None and req[0] == "info" and req[-1] == ref:
                self.complete(target, info_value(data))

    def exit_signal_to(self, target: Process, frm: Pid, reason: Any, linked: bool) -> None:
        """Erlang's rules: `kill` cannot be trapped; trapped signals become messages; a
        `normal` signal from a link is ignored."""
        if reason is KILL and not linked:
            self.kill_or_raise(target, KILLED)
        elif target.trap_exit:
            self.deliver(target, from_list([EXIT_SYM, frm, reason]))
        elif reason is NORMAL and (linked or frm != target.pid):
            return
        else:
            self.kill_or_raise(target, reason)

    def kill_or_raise(self, target: Process, reason: Any) -> None:
        if target is interp.B.ctx.proc and target.status == RUNNABLE and self.running(target):
            from ..vm.errors import ProcessExit

            raise ProcessExit(reason)  # the running process signalled itself
        self.kill(target, reason)

    def running(self, proc: Process) -> bool:
        """Is `proc` the process in its slice right now (not queued)? Only asked on exit signals."""
        return proc not in self.runq and proc.status == RUNNABLE

    def deliver(self, proc: Process, msg: Any) -> None:
        """Put a message in a local process's mailbox and wake it if it waits."""
        proc.deliver(msg)
        if proc.status == WAITING:
            proc.status = RUNNABLE
            self.runq.append(proc)

    # --- Host: what the VM calls -----------------------------------------------------------

    def preempt(self) -> bool:
        """Asked when a budget is spent: should the running process give way?"""
        if self.runq or self.node.pending():
            return True
        t = self.timers
        return bool(t) and t[0][0] <= self.clock.now_ms()

    def spawn(self, parent: Process, fn: Any, args: list, link: bool, where: int | None) -> Pid:
        cl, regs = interp.new_process_regs(fn, args)
        self.seq = seq = self.seq + 1  # new_pid, written out: a process spawned per message
        proc = Process(Pid(self.id, seq), cl, regs)
        tier = self.vm.fast
        if tier is not None:
            # A function that many processes start with is compiled, and its processes start
            # in compiled code (the GOFAST tuple at the end of its code): each of them may run
            # it too briefly for its budget ever to end, which is where the loop compiles. Not
            # one whose compiled waits would unwind (a receive in a function compiled some other
            # way, vm/fast.py): the interpreter waits for less. A server loop's wait returns, and
            # so does a parking function's (fib actors': FastTier.parking).
            p = cl.proto
            start = self.spawned.get(p, 0)
            if start.__class__ is int:
                start += 1
                if start >= HOT_SPAWNS or p.fast is not None:
                    start = (p.fast is not None or tier.compile(p)) and not p.rest and (
                        p in tier.servers or p in tier.parking
                        or not any(w & 0x7F == _RECVSTART for w in p.code))
                self.spawned[p] = start
            if start is True:
                proc.pc = len(p.code)
        proc.fn = fn.name  # (a builtin runs in a trampoline closure: the name is the builtin's)
        if link:
            proc.links = {parent.pid}
            if parent.links is None:
                parent.links = set()
            parent.links.add(proc.pid)
        if self.trace is not None:
            self.trace.event(self, "spawn", proc.pid, parent=parent.pid, fn=cl.name)
        self.node.place(self, proc, where)
        return proc.pid

    def send(self, sender: Process, dest: Any, msg: Any) -> None:
        if dest.__class__ is Pid:
            proc = self.procs.get(dest.key)
            if proc is not None:  # the common case, inline: a local process
                if self.trace is not None:
                    self.trace.event(self, "send", sender.pid, to=dest)
                if sender.seqs is not None and dest.key in sender.seqs:
                    self.node.send_from(self, sender, dest, msg)  # an ordered pair (routing.py)
                    return
                mb = proc.mailbox
                if mb is None:
                    proc.mailbox = [msg]
                else:
                    mb.append(msg)
                if proc.status == WAITING:
                    proc.status = RUNNABLE
                    self.runq.append(proc)
                return
        self.node.send_from(self, sender, dest, msg)

    def register(self, proc: Process, name: Sym, pid: Pid) -> None:
        self.node.register(self, name, pid)

    def whereis(self, name: Sym) -> Pid | None:
        return self.node.whereis(name)

    def link(self, proc: Process, pid: Pid) -> None:
        if pid == proc.pid:
            return
        if proc.links is None:
            proc.links = set()
        proc.links.add(pid)
        self.node.signal(self, proc, pid, ("link", pid, proc.pid))

    def unlink(self, proc: Process, pid: Pid) -> None:
        if proc.links:
            proc.links.discard(pid)
        self.node.signal(self, proc, pid, ("unlink", pid, proc.pid))

    def monitor(self, proc: Process, pid: Pid) -> Ref:
        ref = self.make_ref()
        if proc.monitors is None:
            proc.monitors = {}
        proc.monitors[ref] = ("of", pid)
        self.node.signal(self, proc, pid, ("monitor", ref, proc.pid, pid))
        return ref

    def demonitor(self, proc: Process, ref: Ref) -> None:
        if proc.monitors and ref in proc.monitors:
            _, pid = proc.monitors.pop(ref)
            self.node.signal(self, proc, pid, ("demonitor", ref, pid))

    def exit_signal(self, proc: Process, pid: Pid, reason: Any) -> None:
        self.node.signal(self, proc, pid, ("xsignal", proc.pid, reason, pid))

    def make_ref(self) -> Ref:
        self.refs += 1
        return Ref(self.id, self.refs)

    def send_after(self, proc: Process, ms: float, dest: Any, msg: Any) -> Ref:
        self.seq += 1
        heapq.heappush(self.timers, (self.clock.now_ms() + ms, self.seq, ("send", proc.pid, dest, msg)))
        return self.make_ref()

    def output(self, line: str) -> None:
        self.node.output(line)

    def now_ms(self) -> float:
        return self.clock.now_ms()

    def schedulers(self) -> int:
        return self.node.nschedulers

    def scheduler_id(self) -> int:
        return self.id

    def os_pid(self) -> int:
        return self.os_pid_

    def args(self) -> list[str]:
        return self.node.argv

    def define(self, name: str, value: Any) -> None:
        self.node.define(self, name, value)

    def reply(self, proc: Process, pid: Pid, ref: Ref, msg: Any) -> None:
        """gen/reply: `(ref msg)` to `pid`, delivered only if it still monitors `ref` (a caller
        that gave up demonitored it, so a late reply leaves nothing in its mailbox)."""
        self.node.signal(self, proc, pid, ("reply", ref, msg, pid))

    def process_info(self, proc: Process, pid: Pid) -> Any:
        """sys/info: the map for a process here, else what the node knows (None for a dead
        one; a cluster node raises Block and asks the process's scheduler)."""
        target = self.procs.get(pid.key)
        if target is not None and target.status != DEAD:
            return info_value(info_items(self, target, proc))
        return self.node.info_elsewhere(self, proc, pid)

    def processes(self, proc: Process) -> Any:
        """sys/processes: the live pids of the node (a cluster node raises Block and asks the
        other schedulers)."""
        return self.node.all_pids(self, proc)

    def local_pids(self) -> list[Pid]:
        """The live processes of this scheduler, by pid key."""
        return sorted((p.pid for p in self.procs.values() if p.status != DEAD), key=_pid_key)


def _pid_key(pid: Pid) -> int:
    return pid.key


_INFO_KEYS = tuple(intern(k) for k in ("status", "mailbox", "reductions", "scheduler", "function", "links",
                                       "monitors", "registered"))
_STATUS = {RUNNABLE: intern("runnable"), NEW: intern("runnable"), WAITING: intern("waiting"),
           BLOCKED: intern("waiting")}
_RUNNING = intern("running")


def info_items(sched: Scheduler, proc: Process, running: Process | None) -> Any:
    """What sys/info says of `proc` (a process of `sched`), as a Lisp list of the values in
    _INFO_KEYS order: plain data, so that it crosses to the asker's scheduler with the codec."""
    mb = proc.mailbox
    links = sorted(proc.links, key=_pid_key) if proc.links else ()
    mons = sorted((p for role, p in proc.monitors.values() if role == "of"), key=_pid_key) if proc.monitors else ()
    status = _RUNNING if proc is running else _STATUS.get(proc.status, _STATUS[WAITING])
    return from_list([status, 0 if mb is None else len(mb) - proc.mbhead, proc.reds, sched.id,
                      intern(proc.fn or "?"), from_list(links), from_list(mons), proc.name])


def info_value(items: Any) -> Any:
    """The sys/info map from info_items' list, or None for a dead process."""
    if items is None:
        return None
    kvs: list = []
    for k in _INFO_KEYS:
        kvs.append(k)
        kvs.append(items.head)
        items = items.tail
    return map_of(*kvs)


_TRAPS = {
    YIELD: Scheduler.trap_yield, WAIT: Scheduler.trap_wait, BLOCK: Scheduler.trap_block,
    DONE: Scheduler.trap_done, FAILED: Scheduler.trap_failed, EXITED: Scheduler.trap_exited,
    HALT: Scheduler.trap_halt,
}


def crash_line(proc: Process, main: bool) -> str:
    """The one line printed when a process dies of an uncaught error."""
    file, line, col = proc.where or ("?", 0, 0)
    what = describe(proc.result)
    if main:
        return f"{file}:{line}:{col}: error: {what}"
    return f"{file}:{line}:{col}: process {proc.pid!r} crashed: {what}"


def main_end(proc: Process, reason: Any) -> tuple[int, str | None]:
    """The node's exit status when the main process `proc` ends with `reason`, and the line
    saying why if it failed (None: nothing to say)."""
    if reason is NORMAL:
        return 0, None
    if proc.where is not None:  # an uncaught error (the VM recorded where it was raised)
        return 1, crash_line(proc, True)
    return 1, f"lispvm: the main process exited with reason {report_repr(reason)}"


def resolve_name(names: dict, dest: Any) -> Any:
    """The pid a send to `dest` goes to: a registered name's pid (badarg when nothing is
    registered under it), or `dest` itself. Both nodes keep `names`; this is their one rule."""
    if dest.__class__ is Sym:
        pid = names.get(dest)
        if pid is None:
            raise badarg(f"send: no process is registered as {dest.name}")
        return pid
    return dest


def deadlock_line(main: Pid, detail: str = "") -> str:
    """The line reporting that the main process `main` can never be woken; `detail` (with its
    leading space) says what the node knows of the rest."""
    return f"lispvm: deadlock: the main process {main!r} waits for a message that no process can send{detail}"


__all__ += ["crash_line", "deadlock_line", "main_end", "resolve_name", "Cons"]
