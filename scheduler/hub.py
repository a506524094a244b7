"""The hub: scheduler 0, in the command's own OS process, which starts the others and ends the node.

Owns: the run of a program on several OS processes (`run_cluster`), the node's output and exit
status, deciding when to start the next scheduler (CPU-bound work while others are runnable)
and what a new one is told (globals, names, peers, the main pid), the workers' idle reports and
the deadlock decision, the hub's loop policy (short slices while the node can grow, giving work
to idle peers, saying idle), and stopping every worker at the end. Must never: run the main
process anywhere else, report a deadlock while anything is in flight (balance.quiescent), or
leave a worker or the node's directory behind.

(docs/processes.md, "Several OS processes" and "Clean exit".)
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from typing import Any

from ..vm import lbc
from ..vm.process import Globals, Process
from ..vm.values import UNDEF
from .balance import CROWD, POKE_SIGNAL, install_poke
from .cluster import ClusterNode
from .kernel import deadlock_line
from .node import main_process
from .transport import Link
from .workers import fork_worker, keep_for_reaping, reap, remove_dir, settings_of, spawn_worker

__all__ = ["Hub", "PROBE_BUDGET", "run_cluster"]

# Reductions per slice on the hub while it has two or more runnable processes and a scheduler
# still to start (Hub.after_pass): CPU-bound work shows itself sooner, and the next scheduler is
# forked sooner (docs/performance.md, "Scheduler decisions").
PROBE_BUDGET = 1000


class Hub(ClusterNode):
    """Scheduler 0, in the command's OS process: starts the others and ends the node."""

    def __init__(self, *args: Any, out: Any = None, err: Any = None, jit: bool = True,
                 trace_path: str | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.full_budget = self.sched.budget  # (slices are shorter while the node can grow: pass_budget)
        self.probe_budget = min(PROBE_BUDGET, self.full_budget)  # never longer than the user's
        self.out = out or sys.stdout  # where every scheduler's `print` ends up
        self.err = err or sys.stderr
        self.jit = jit
        self.trace_path = trace_path
        self.workers: dict[int, Any] = {}  # k -> its ForkedWorker (or subprocess.Popen)
        self.idle_report: dict[int, tuple] = {}  # k -> (idle?, sent, received, timers, services)
        self.program: bytes = b""  # the .lbc bytes, for workers
        self.builtin_names = _builtin_names()  # globals a new scheduler defines itself, not sent to it

    def start_worker(self, k: int, crowd: bool = False) -> bool:
        """Start scheduler k's OS process (returns at once; it connects when ready); whether it
        was started. For a `crowd` alone (no CPU-bound process) only if the fork takes work with
        it: a crowd of started actors that exchange messages (Savina's big) keeps its messages
        off sockets, and a scheduler with nothing to do only costs its start.

        Forked from this one (workers.fork_worker): the modules are already imported and the
        program compiled, so the new scheduler is ready in milliseconds, where a fresh
        interpreter took longer than many parallel jobs (docs/performance.md). Without os.fork,
        a fresh interpreter is started, which reads the program from the node's private
        directory."""
        if k in self.workers or k == 0 or k >= self.nschedulers or k in self.dead or self.stopping:
            return False
        if crowd and not hasattr(os, "fork"):  # pragma: no cover - every platform lispvm runs on has fork
            return False
        settings = settings_of(self.nschedulers, self.argv, self.full_budget, self.trace_path, self.jit,
                               os.getpid() if self.pokeable else None, self.secret, self.main_pid)
        if hasattr(os, "fork"):
            # The new scheduler's first work goes with it: the child already holds a copy of
            # these processes, so it runs them at once instead of after its hello has been read
            # here and a migration sent back, at this scheduler's next slice boundaries.
            runq = self.sched.runq
            given = self.take_movable(runq, len(runq) // 2, fork=True, spread=crowd)
            if crowd and not given:
                return False

            def record(worker: Any) -> None:
                self.workers[k] = worker
                self.forked.add(k)
                for proc in given:
                    self.handed_over(proc, k)

            loaded = (self.module, self.globals, dict(self.names), given, self.sched.vm)
            if not fork_worker(self.sockdir, k, settings, loaded, (sys.stdout, sys.stderr, self.out, self.err),
                               record):
                runq.extend(given)
                self.dead.add(k)
                return False
        else:  # pragma: no cover - every platform lispvm runs on has fork
            self.workers[k] = spawn_worker(self.sockdir, k, settings, self.program, not self.workers)
        self.started_any = True
        return True

    def pending(self) -> bool:
        """A budget was just spent: that is the CPU-bound evidence maybe_grow waits for, so a
        scheduler is started now rather than after the whole pass, which with several CPU-bound
        processes is several slices later (docs/performance.md, "Scheduler decisions")."""
        self.maybe_grow()
        return super().pending()

    def next_to_start(self) -> int | None:
        """The scheduler to start next, if one is still to be (one whose fork failed never will be)."""
        if self.stopping:
            return None
        return next((k for k in range(1, self.nschedulers) if k not in self.workers and k not in self.dead), None)

    def maybe_grow(self) -> None:
        """A process used a whole budget while others are runnable, and a scheduler is not
        started yet: start one (a forked one connects milliseconds later). Without the
        CPU-bound evidence a ring's set-up started a scheduler that only slowed it down
        (docs/performance.md, "Scheduler decisions"); a crowd is the other evidence
        (grow_for_crowd)."""
        if self.sched.yields and len(self.sched.runq) >= 2:
            k = self.next_to_start()
            if k is not None:
                self.start_worker(k)

    def grow_for_crowd(self) -> None:
        """The run queue has stayed a crowd (balance.crowd_pass) and a scheduler is still to
        start: start one if processes not started yet can go with its fork. Either way the
        next look is after another CROWD_MS of crowd: each look scans the run queue, and the
        scheduler after this one is started only if the crowd outlasts this one's share."""
        k = self.next_to_start()
        if k is not None:
            self.start_worker(k, crowd=True)
            self.crowd_since = self.clock.now_ms()
            self.crowded = False

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
                if cell.v is not UNDEF and name not in self.builtin_names:
                    link.queue(("define", name, cell.v))
            for name, pid in self.names.items():
                link.queue(("register", name, pid, None))
        for j in self.started:
            link.queue(("peer", j))
        link.queue(("mainpid", self.main_pid))
        for j in self.started:
            if j != 0 and j not in self.dead:
                self.emit(j, ("peer", k))
        self.started.add(k)
        for ev2 in self.pending_out.pop(k, ()):
            link.queue(ev2)
        if self.said_idle:  # said before it could hear it: a scheduler forked with work gives some back
            link.queue(("idle", 0))

    def on_pids_gather(self, link: Link, ev: tuple) -> None:
        """A worker's process asks sys/processes: gather every scheduler's pids for it."""
        self.gather(link.peer, ev[1])

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
        worker = self.workers.get(k)
        if worker is not None:
            # its link is gone, so to the node it is gone: make sure of it, and reap it now rather
            # than leave a zombie until the node ends (SIGKILL ends it at once)
            worker.kill()
            worker.wait()
        for j in self.started:
            if j not in (0, k) and j not in self.dead:
                self.emit(j, ("sched_down", k))

    def run(self, main: Process) -> int:
        """Run until the node ends; returns the exit status."""
        self.sched.add(main)
        self.sched.loop(self)
        return self.exit_code

    # --- the scheduler loop's policy (kernel.Policy) ----------------------------------------

    def pass_budget(self) -> int:
        """The next pass's budget: while another scheduler could be started for them, runnable
        processes get short slices, so that a CPU-bound one shows itself (and is compiled)
        sooner and the new scheduler is forked that much sooner."""
        if len(self.sched.runq) >= 2 and self.next_to_start() is not None:
            return self.probe_budget
        return self.full_budget

    def wake(self) -> None:
        """Work again after being idle: the peers hear it before anything else."""
        self.not_idle()
        self.sched.budget = self.pass_budget()

    def after_pass(self) -> None:
        """Share work with idle peers and read input (once a worker exists), start the next
        scheduler if the pass showed CPU-bound work, and choose the next pass's budget."""
        s = self.sched
        if len(s.runq) >= CROWD:
            if self.crowd_pass():
                if self.started_any:
                    # an idle peer's word may be waiting: a crowd's pass is many slices, one
                    # poll more is cheap beside them (between_passes polls every 64 passes)
                    self.poll(0)
                if self.next_to_start() is not None:
                    self.grow_for_crowd()
        elif self.crowd_since is not None:
            self.crowd_over()
        if self.started_any:
            self.balance()
            self.between_passes()
        elif self.chaos is not None:
            self.chaos_migrate()
        if s.yields:
            self.maybe_grow()
        # pass_budget, inline: a call after every pass costs a message ring measurably
        # (docs/performance.md, "Scheduler decisions")
        s.budget = (self.probe_budget if len(s.runq) >= 2 and self.next_to_start() is not None
                    else self.full_budget)

    def idle(self, deadline: float | None) -> float | None:
        """Reap a forked worker that died before its hello, flush output, spin briefly after a
        device request, wait a grace for a reply, report a deadlock if the whole node is
        quiescent, else say idle and wait (re-checking quiescence while workers exist)."""
        died = False
        for k in list(self.forked):  # forked but never connected: it may have died before its hello
            if self.workers[k].poll() is not None:
                self.peer_died(k)  # what it was given is lost: links and monitors say noconnection
                died = True
        if died:
            return -1.0  # round the loop again: that may have woken a process
        try:
            self.out.flush()  # before any wait, spinning included: output is not held back
        except (OSError, ValueError):
            pass
        if self.spin(deadline):
            return -1.0
        if self.started_any and self.grace(deadline):
            return -1.0
        workers = [k for k in self.workers if k not in self.dead]
        if self.quiescent(deadline, self.idle_report, workers):
            self.deadlock()
            return -1.0
        self.say_idle()
        delay = self.sched.seconds_until(deadline)
        if delay is None and workers:
            delay = 0.5  # check quiescence again later: workers may be about to report
        return delay

    def deadlock(self) -> None:
        self.end(1, deadlock_line(self.main_pid))

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
        # The kernel then takes a while more to free its memory, which this process does not
        # wait for (docs/performance.md): an exited worker not yet reaped is reaped at the next
        # run's start or by init when this process ends. (Output sent before the stop is still
        # printed: the links are read until then.)
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
                keep_for_reaping(p)  # it closed its sockets to exit: gone in a moment
                continue
            p.kill()  # still booting, or stuck: a stuck scheduler never hangs the node
            try:
                p.wait(timeout=2.0)
            except timeouts:
                pass
        self.close()
        remove_dir(self.sockdir)


def _builtin_names() -> frozenset:
    """Globals every scheduler defines itself (builtins, constants, the prelude's)."""
    from ..vm import prelude
    from ..vm.builtins import BUILTINS, CONSTANTS

    return frozenset(BUILTINS) | frozenset(CONSTANTS) | prelude.names()


def run_cluster(data: bytes, module: lbc.Module, globals_: Globals, argv: list[str], nsched: int, budget: int,
                trace: Any, trace_path: str | None, jit: bool, out: Any, err: Any, vm: Any = None) -> int:
    """Run a program on a node of up to `nsched` schedulers (the hub's uses `vm`, this OS
    process's VM); returns the exit status."""
    reap()
    sockdir = tempfile.mkdtemp(prefix="lispvm-")
    hub = Hub(0, nsched, sockdir, module, globals_, argv, budget, trace, out=out, err=err, jit=jit,
              trace_path=trace_path, vm=vm)
    hub.program = data
    # A new token per run, known only to its schedulers (inherited at fork, or in the node's
    # private directory): a connection whose hello lacks it is closed (events._hello_bad).
    hub.secret = os.urandom(16)
    return run_hub(hub, main_process(hub.sched.new_pid(), module), jit)


def run_hub(hub: Hub, main: Process, jit: bool) -> int:
    """Run `main` on a prepared hub with the poke signal installed, then shut the node down and
    put the signal back (run_cluster's hub and the repl's); returns the exit status."""
    hub.main_pid = main.pid
    previous: Any = False
    try:
        previous = install_poke(jit, hub.sched.vm)
        hub.pokeable = previous is not False
        return hub.run(main)
    finally:
        hub.shutdown()
        # a worker that is still exiting may poke once more: SIGUSR1's default action would end
        # this process with status 138 after a successful run, so the default is not put back
        if previous is not False:
            keep = previous is None or previous == signal.SIG_DFL
            signal.signal(POKE_SIGNAL, signal.SIG_IGN if keep else previous)
