"""The node: the schedulers of one running program, and what they share.

Owns: loading the program into each scheduler's OS process, and the one-scheduler node
(LocalNode: everything in this OS process): its names (register/whereis), output, its scheduler
loop's policy (kernel.Policy: when it is idle, a deadlock or a wait for the next timer or the
device process), the end of the node and the exit status. The multi-process node
(scheduler/cluster.py, scheduler/hub.py) offers the same methods to its schedulers. Must never:
start another OS process (but the device process, scheduler/device_client.py), or wait anywhere
but in its poll (its Poller, scheduler/poller.py, or the clock when nothing is polled).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from ..vm import interp, lbc, prelude
from ..vm.builtins import BUILTINS, badarg
from ..vm.process import Globals, Process
from ..vm.values import Closure, Pid, Sym, from_list
from .clock import BusyWait, MonotonicClock
from .kernel import DEAD, Scheduler, Service, crash_line, deadlock_line, main_end, resolve_name
from .poller import Poller

__all__ = ["LocalNode", "load_program", "main_process", "spin_for_services"]

# Seconds an idle scheduler polls without sleeping after sending a service request (a GPU
# dispatch), since a small dispatch is answered sooner than a sleeping process wakes up
# (clock.BusyWait; docs/gpu.md, "Waiting for an answer without sleeping").
SERVICE_SPIN = 200e-6


def spin_for_services(services: list[Service], poll: Callable[[float], bool], busy: BusyWait,
                      timeout: float | None) -> bool:
    """Once per request sent to a service, when the scheduler is first idle after it: poll its
    input without sleeping (BusyWait), for up to SERVICE_SPIN and never past `timeout` seconds
    (the next timer); whether any input came (and was handled by `poll`)."""
    if not [svc for svc in services if svc.new_request()]:  # (every service's flag is taken)
        return False
    return busy.spin(lambda: poll(0), timeout)


def load_program(data: bytes, globals_: Globals) -> lbc.Module:
    """Load, verify and decode a program's bytecode into `globals_` (prelude first), with every
    module bundled in it: each scheduler OS process loads them all (docs/modules.md)."""
    from ..vm import process as vmprocess
    from ..vm.verify import reserved_globals, verify

    module = lbc.load(data)
    units = module.units()
    reserved = reserved_globals()  # no def of a builtin's name, as in source
    for unit in units:
        verify(unit, frozenset(BUILTINS), reserved)
    for unit in units:
        lbc.register(unit)
    vmprocess.CURRENT_GLOBALS = globals_
    prelude.install(globals_)
    for unit in units:
        interp.predecode(unit, globals_)
    return module


def main_process(pid: Pid, module: lbc.Module) -> Process:
    """The process that runs the program's top level: each bundled module's top-level code
    first, in order, then the program's. Later units wait as saved frames, each entered at its
    first instruction when the one above it returns (its return value lands in a register the
    unit writes before reading, which the verifier guarantees)."""
    units = module.units()
    first = units[0].protos[0]
    proc = Process(pid, Closure(first, ()), [None] * first.nregs)
    for unit in reversed(units[1:]):
        p = unit.protos[0]
        proc.frames.append((Closure(p, ()), p.dcode, 0, [None] * p.nregs, 0))
    return proc


class LocalNode:
    """A node of one scheduler, in this OS process."""

    def __init__(self, module: lbc.Module, globals_: Globals, argv: list[str], budget: int,
                 trace: Any = None, out: Any = None, err: Any = None, clock: Any = None, vm: Any = None) -> None:
        self.module = module  # the program
        self.globals = globals_  # global variables
        self.argv = argv  # (sys/args)
        self.nschedulers = 1
        self.out = out or sys.stdout  # where `print` goes
        self.err = err or sys.stderr  # crash reports
        self.names: dict[Sym, Pid] = {}  # registered names
        self.clock = clock or MonotonicClock()  # real time, or a VirtualClock in tests
        self.sched = Scheduler(self, 0, budget, trace, self.clock, vm=vm)
        self.trace = trace
        self.main: Process | None = None  # the process running the program's top level
        self.exit_code: int | None = None  # set when the node ends
        self.poller = Poller()  # the descriptors waited on when idle (the device client's answers)
        self.services: list[Service] = []  # the device client, once a request starts it
        self.busy_wait = BusyWait(SERVICE_SPIN)  # after a request to a service (spin_for_services)

    # --- running: the scheduler loop's policy (kernel.Policy) -------------------------------

    after_pass = None  # nothing to do between passes: one scheduler, nobody to share work with
    wake = None

    def run(self) -> int:
        """Run the program's top level as the main process until the node ends; the status."""
        main = main_process(self.sched.new_pid(), self.module)
        self.main = main
        self.sched.add(main)
        try:
            self.sched.loop(self)
        finally:
            self.flush()
            stop_device()
        return self.exit_code

    def idle(self, deadline: float | None) -> float | None:
        """Nothing is runnable: report a deadlock if nothing can wake the main process (no timer,
        no device answer to come); otherwise how long to wait (kernel.Policy.idle)."""
        polled = self.poller.fds
        if deadline is None and (not polled or not any(svc.outstanding() for svc in self.services)):
            self.deadlock()
            return -1.0
        self.flush()
        delay = self.sched.seconds_until(deadline)
        if (polled and not (self.clock.virtual and delay is not None)
                and spin_for_services(self.services, self.poller.poll, self.busy_wait, delay)):
            return -1.0
        return delay

    def poll(self, timeout: float | None) -> bool:
        """Wait in the poller for a descriptor (the device client's) or the next timer; with
        nothing to poll, sleep until the timer (the clock's sleep is finer than poll's whole
        milliseconds), and a virtual clock jumps to the timer instead of sleeping."""
        if self.poller.fds and not (self.clock.virtual and timeout is not None):
            return self.poller.poll(timeout)
        if timeout:
            self.clock.sleep(timeout)
        return False

    def add_reader(self, fd: int, callback: Any) -> None:
        """Call `callback()` when `fd` is readable (checked when idle and at preemption)."""
        self.poller.add_reader(fd, callback)

    def remove_reader(self, fd: int) -> None:
        self.poller.remove_reader(fd)

    def deadlock(self) -> None:
        self.err.write(deadlock_line(self.main.pid, f" ({len(self.sched.procs)} process(es) waiting, no timers)")
                       + "\n")
        self.exit_code = 1

    def flush(self) -> None:
        try:
            self.out.flush()
        except (OSError, ValueError):
            pass
        if self.trace is not None:
            self.trace.flush()

    # --- what schedulers ask of the node ---------------------------------------------------

    def pending(self) -> bool:
        """Is there input for this scheduler (a reader ready)? Asked when a budget is spent."""
        return bool(self.poller.fds) and self.poller.poll(0)

    def place(self, sched: Scheduler, proc: Process, where: int | None) -> None:
        sched.add(proc)

    def locate(self, pid: Pid) -> Process | None:
        return self.sched.procs.get(pid.key)

    def resolve(self, dest: Any) -> Pid | None:
        return resolve_name(self.names, dest)

    def send_from(self, sched: Scheduler, sender: Any, dest: Any, msg: Any) -> None:
        """A message from `sender` (a Process, or a Pid for timers) to a pid or name."""
        pid = self.resolve(dest)
        proc = self.sched.procs.get(pid.key)
        if proc is not None:
            if sched.trace is not None:
                sched.trace.event(sched, "send", getattr(sender, "pid", sender), to=pid)
            sched.deliver(proc, msg)

    def signal(self, sched: Scheduler, sender: Any, pid: Pid, sig: tuple) -> None:
        kind = sig[0]
        if kind == "exit" or kind == "down":
            sig = (*sig, pid)  # (the receiver's pid last, as kernel.receive_signal reads them)
        self.sched.receive_signal(sig)
        if sched.trace is not None and kind in ("link", "monitor"):
            sched.trace.event(sched, kind, sig[2], target=pid)

    def register(self, sched: Scheduler, name: Sym, pid: Pid) -> None:
        proc = self.sched.procs.get(pid.key)
        if name in self.names:
            raise badarg(f"register: {name.name} is already registered")
        if proc is None or proc.status == DEAD:
            raise badarg(f"register: process {pid!r} is not alive")
        if proc.name is not None:
            raise badarg(f"register: process {pid!r} is already registered as {proc.name.name}")
        self.names[name] = pid
        proc.name = name

    def unregister(self, name: Sym, pid: Pid) -> None:
        if self.names.get(name) == pid:
            del self.names[name]

    def whereis(self, name: Sym) -> Pid | None:
        return self.names.get(name)

    def info_elsewhere(self, sched: Scheduler, proc: Process, pid: Pid) -> Any:
        """sys/info of a pid that is not on the one scheduler: it has ended."""
        return None

    def all_pids(self, sched: Scheduler, proc: Process) -> Any:
        """sys/processes: every live process is on the one scheduler."""
        return from_list(sched.local_pids())

    def request_service(self, sched: Scheduler, proc: Process) -> None:
        if proc.request[0] == "io":
            from .io import service  # only programs that do I/O get here

            service(sched).submit(sched, proc)
            return
        from .device_client import client  # only programs that use gpu/ get here

        client(self).submit(sched, proc)

    def crash_report(self, sched: Scheduler, proc: Process) -> None:
        if proc is not self.main:
            self.flush()
            self.err.write(crash_line(proc, False) + "\n")
            self.err.flush()

    def process_ended(self, sched: Scheduler, proc: Process, reason: Any) -> None:
        if proc is self.main:
            self.exit_code = main_exit(proc, reason, self.flush, self.err)

    def halt(self, code: int) -> None:
        self.exit_code = code

    def output(self, line: str) -> None:
        self.out.write(line + "\n")

    def define(self, sched: Scheduler, name: str, value: Any) -> None:
        pass


def stop_device() -> None:
    """Stop the device process this OS process started, if any (only gpu/ programs load it), and
    close this OS process's I/O services (what processes still own: sockets, ports, files)."""
    io = sys.modules.get("lispvm.scheduler.io")
    if io is not None:
        io.close_all()
    dev = sys.modules.get("lispvm.scheduler.device_client")
    if dev is not None:
        dev.shutdown_all()


def main_exit(proc: Process, reason: Any, flush: Any, err: Any) -> int:
    """The node's exit status when the main process ends, after saying why if it failed."""
    code, line = main_end(proc, reason)
    if line is not None:
        flush()
        err.write(line + "\n")
    return code
