"""A process's state as plain data, the loop's outcomes, the globals table, and the Host protocol.

Owns: everything the VM keeps per process and per node. Must never: import the scheduler. The
scheduler supplies a Host (below) for the synchronous process operations (spawn, send, link...);
everything that must wait comes back from `vm.interp.run` as an outcome instead.

Outcomes of `run(proc, budget)` (a closed set; the scheduler has one trap_* function each):

    YIELD   the reduction budget is spent; the process is runnable
    WAIT    waiting in `receive`: proc.deadline is the absolute ms deadline, or None for ever
    BLOCK   waiting for a service: proc.request says which; the scheduler later puts the answer
            in proc.regs[proc.ret_reg] (or sets proc.reply_error) and makes it runnable
    DONE    the process's function returned proc.result
    FAILED  an uncaught error: proc.result is the raised value, proc.where its (file, line, col)
    EXITED  `(exit reason)`: proc.result is the reason
    HALT    `(halt code)`: proc.result is the exit status for the whole node
"""

from __future__ import annotations

from typing import Any, Protocol

from .state import HALT_FRAME
from .values import UNDEF

YIELD, WAIT, BLOCK, DONE, FAILED, EXITED, HALT = range(7)

# Process.deadline of a receive whose timeout the scheduler has seen pass: below every deadline a
# clock gives, compared with == (a float decoded in another OS process is not the same object)
TIMED_OUT = float("-inf")
OUTCOME_NAMES = ("yield", "wait", "block", "done", "failed", "exited", "halt")


class _Ctx:
    """The running process and its host; set by the loop at the start of each slice."""

    __slots__ = ("proc", "host")

    def __init__(self) -> None:
        self.proc: Any = None  # the running vm.process.Process
        self.host: Any = None  # the scheduler (a vm.process.Host)


ctx = _Ctx()  # what a builtin (vm/builtins.py) or compiled code (vm/fast.py) is running for


class Block(BaseException):
    """Raised by a builtin that must wait for a service (GPU work): the loop returns BLOCK."""

    def __init__(self, request: Any) -> None:
        super().__init__(request)
        self.request = request  # what the scheduler should do on the process's behalf


class Process:
    """One lightweight process. Plain data: the term codec (vm/codec.py) carries its state
    (__getstate__), and it resumes in any OS process that has loaded the same modules
    (prototypes travel by (module key, index), never as code).

    Kept small on purpose (goal: under 1,000 bytes for a process waiting in `receive`): the
    mailbox, links and monitors are None until first used.
    """

    __slots__ = (
        "pid", "cl", "pc", "regs", "frames", "mailbox", "mbhead", "scan", "deadline", "ret_reg",
        "result", "where", "request", "reply_error", "trap_exit", "links", "monitors",
        "name", "status", "sched", "seqs", "seqin", "held", "boxes", "fn", "reds",
    )

    def __init__(self, pid: Any, cl: Any, regs: list) -> None:
        self.pid = pid  # this process's Pid
        self.cl = cl  # closure of the current frame
        self.pc = 0  # index of the next instruction of the current frame
        self.regs = regs  # registers of the current frame
        # saved caller frames: (closure, code, pc, regs, dest register); the first is always
        # vm.state.HALT_FRAME, so that returning from the process's function ends it
        self.frames: list[tuple] = [HALT_FRAME]
        self.mailbox: list | None = None  # messages from index mbhead on are not yet taken, oldest first
        self.mbhead = 0  # index of the oldest message (taking from the front is O(1))
        self.scan = 0  # receive's scan position (an index into mailbox): earlier ones did not match
        # receive timeout (absolute ms), set on the first wait; TIMED_OUT once the scheduler saw
        # it pass (one slot for both: a slot fewer is 16 bytes less per process, as allocated)
        self.deadline: float | None = None
        self.ret_reg = 0  # register that receives a BLOCK request's answer
        self.result: Any = None  # DONE value, FAILED error value, EXITED reason, HALT code
        self.where: tuple[str, int, int] | None = None  # position of an uncaught error
        self.request: Any = None  # BLOCK: what the process waits for
        self.reply_error: Any = None  # BLOCK: an error value to raise instead of an answer
        self.trap_exit = False  # exit signals arrive as (EXIT pid reason) messages
        self.links: set | None = None  # pids linked to this one (scheduler-owned)
        self.monitors: dict | None = None  # ref -> (pid, watcher or watched) (scheduler-owned)
        self.name: Any = None  # registered name, if any (scheduler-owned)
        self.status = 0  # scheduler-owned state (runnable, waiting, ...)
        self.sched: Any = None  # scheduler-owned slot (timer handle, queue marker)
        # Order across OS processes (scheduler/routing.py), made on first use: per receiver, the
        # next sequence number this process sends; per sender, the next one expected here; and
        # messages that arrived ahead of an earlier one.
        self.seqs: dict | None = None  # receiver pid key -> next sequence number to send
        self.seqin: dict | None = None  # sender pid key -> next sequence number expected
        self.held: dict | None = None  # (sender pid key, n) -> event that came early
        # This process's own copies of variables it reached through a global (template id ->
        # Box) or that another process owns (that Box -> Box), made on first touch (vm/boxes.py).
        self.boxes: dict | None = None
        self.fn: str | None = getattr(cl, "name", None)  # the function it started with (sys/info)
        self.reds = 0  # reductions used in its slices so far (sys/info)

    def deliver(self, msg: Any) -> None:
        """Append a message to the mailbox (the caller wakes the process if it waits)."""
        mb = self.mailbox
        if mb is None:
            self.mailbox = [msg]
        else:
            mb.append(msg)

    def take(self) -> None:
        """Remove the message at the scan position (receive matched it); rescan from the oldest."""
        mb = self.mailbox
        s = self.scan
        h = self.mbhead
        if s == h:
            mb[s] = None  # drop the reference now; the slot is reclaimed when the list compacts
            h += 1
            if h == len(mb):
                self.mailbox = None
                h = 0
            elif h >= 32 and 2 * h >= len(mb):
                del mb[:h]
                h = 0
        else:
            del mb[s]
        self.mbhead = self.scan = h
        self.deadline = None

    def pending(self) -> list:
        """The messages not yet taken, oldest first (a copy)."""
        return [] if self.mailbox is None else self.mailbox[self.mbhead:]

    def __getstate__(self) -> tuple:
        """Plain data for another OS process: decoded code is dropped from the frames (it is
        rebuilt from the prototype there) and the mailbox is compacted."""
        state = {s: getattr(self, s) for s in self.__slots__}
        state["frames"] = [(cl, None, pc, regs, dst) for cl, _code, pc, regs, dst in self.frames]
        mb = self.mailbox
        if mb is not None and self.mbhead:
            state["mailbox"] = mb[self.mbhead:]
            state["scan"] = self.scan - self.mbhead
            state["mbhead"] = 0
        state["sched"] = None
        return tuple(state[s] for s in self.__slots__)

    def __setstate__(self, state: tuple) -> None:
        for s, v in zip(self.__slots__, state):
            setattr(self, s, v)
        bottom = HALT_FRAME
        self.frames = [bottom if cl.proto is bottom[0].proto else (cl, cl.proto.dcode, pc, regs, dst)
                       for cl, _code, pc, regs, dst in self.frames]


class GlobalCell:
    """One global variable. Decoded instructions hold the cell, so a lookup is an attribute read."""

    __slots__ = ("name", "v", "boxfree")

    def __init__(self, name: str) -> None:
        self.name = name  # the global's name
        self.v: Any = UNDEF  # its value, UNDEF until defined
        # the last value stored here that was found to hold no box (vm/boxes.py for_global): the
        # scan of the next value stops there, so `(set log (cons x log))` is not O(length of log)
        self.boxfree: Any = None

    def __reduce__(self) -> tuple:
        return (_cell_by_name, (self.name,))


class Globals:
    """The node's global variables (one table per OS process, kept in step by the scheduler)."""

    def __init__(self) -> None:
        self.cells: dict[str, GlobalCell] = {}  # name -> cell
        self.on_change: Any = None  # called with (name, value) after def/set, for replication

    def cell(self, name: str) -> GlobalCell:
        c = self.cells.get(name)
        if c is None:
            c = self.cells[name] = GlobalCell(name)
        return c

    def get(self, name: str) -> Any:
        c = self.cells.get(name)
        return UNDEF if c is None else c.v


CURRENT_GLOBALS: Globals | None = None  # the table that decoded GlobalCells resolve in (use_globals)


def use_globals(globals_: Globals | None) -> Globals | None:
    """Make `globals_` the table that GlobalCells decoded in this OS process resolve in (the
    node's, when a run starts; None for none); returns the table it replaces."""
    global CURRENT_GLOBALS
    previous, CURRENT_GLOBALS = CURRENT_GLOBALS, globals_
    return previous


def release_globals(globals_: Globals) -> None:
    """Forget `globals_` if it is the current table (a finished run leaves none of its values
    reachable from this module)."""
    global CURRENT_GLOBALS
    if CURRENT_GLOBALS is globals_:
        CURRENT_GLOBALS = None


def _cell_by_name(name: str) -> GlobalCell:
    assert CURRENT_GLOBALS is not None
    return CURRENT_GLOBALS.cell(name)


class Host(Protocol):
    """What the loop asks of whoever runs it (the scheduler, or a bare runner for macros).

    Every method is synchronous and never waits; waiting is an outcome of `run`.
    """

    def spawn(self, parent: Process, fn: Any, args: list, link: bool, where: int | None) -> Any: ...
    def send(self, sender: Process, dest: Any, msg: Any) -> None: ...
    def register(self, proc: Process, name: Any, pid: Any) -> None: ...
    def whereis(self, name: Any) -> Any: ...
    def link(self, proc: Process, pid: Any) -> None: ...
    def unlink(self, proc: Process, pid: Any) -> None: ...
    def monitor(self, proc: Process, pid: Any) -> Any: ...
    def demonitor(self, proc: Process, ref: Any) -> None: ...
    def exit_signal(self, proc: Process, pid: Any, reason: Any) -> None: ...
    def make_ref(self) -> Any: ...
    def send_after(self, proc: Process, ms: float, dest: Any, msg: Any) -> Any: ...
    def output(self, line: str) -> None: ...
    def now_ms(self) -> float: ...
    def schedulers(self) -> int: ...
    def scheduler_id(self) -> int: ...
    def os_pid(self) -> int: ...
    def args(self) -> list[str]: ...
    def define(self, name: str, value: Any) -> None: ...
    def preempt(self) -> bool: ...
    # LANGUAGE.md sections 12 and 13: a reply that is dropped once its caller stopped waiting
    # (its monitor `ref` is gone), and introspection (may raise Block when the answer is elsewhere)
    def reply(self, proc: Process, pid: Any, ref: Any, msg: Any) -> None: ...
    def process_info(self, proc: Process, pid: Any) -> Any: ...
    def processes(self, proc: Process) -> Any: ...
