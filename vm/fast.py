"""The fast tier: hot bytecode functions translated into Python functions, with preemption kept.

Owns: turning a prototype's bytecode into Python source (registers become locals, a self tail
call becomes `continue` in a `while True` loop, `if` trees become `if` statements), calling
between compiled functions directly, and turning compiled frames back into interpreter frames
whenever a process must stop (Pettyjohn et al., "Continuations from generalized stack
inspection", ICFP 2005). Must never: change the .lbc format or what a program prints; keep any
process state that the interpreter frames do not also hold once a process is suspended.

Code: each simple or conditional instruction is its row's template (vm/opcodes.py), rendered
with registers as locals; reads, writes and which rows may be folded into a call's arguments
come from the rows too. Written here: the control instructions (calls, returns, closures,
matches, receive, try) and the rows in _WRITTEN_HERE whose shape here is faster.

State: the VM object it is enabled with (vm/state.py: `vm.fast`, `vm.eager`, the slice's ticks),
and its own table of prototypes (compiled, refused, how often woken). The one slot it writes on a
prototype, `Proto.fast`, is the loop's cache of the compiled function (tested on every general
call), and `Proto.arity` is set to -1 so the loop's inline call path defers to it.

How it holds the VM's promises:
- Preemption: compiled code counts no reductions (a per-call counter costs too much there, see
  docs/performance.md, "The fast tier"). A CPU-time interval timer (SIGVTALRM, every `tick`
  seconds of CPU) runs a handler that, once the slice's ticks are spent and the scheduler says
  someone else is waiting, raises Preempt, but only when the running frame is compiled code at a
  safe point: a function's entry (RESUME) or its loop head (JUMP_BACKWARD). Anywhere else it
  tries again at the next tick. Interpreted code keeps exact reduction counting.
- Suspension: Preempt, RecursionError (deep recursion), a builtin that must wait (Block) and a
  waiting callee that runs interpreted (_NestedSuspend) all unwind the Python stack; `unwind`
  reads each compiled frame from the traceback (registers from f_locals, pc from the line
  table) and rebuilds the interpreter frames, so the process is plain data again.
- Errors: a template raises the Lisp error where its rule is broken (head of a non-list); an
  operation Python checks itself raises a Python exception that vm/loopsupport.py's python_error
  names by the instruction and its operands. The instruction is where the exception was raised:
  the line table maps a generated line to its pc, and the column table the bytecode's columns
  (co_positions) to an argument folded into that line's call. Caught by compiled `try` as Python
  try/except, or by interpreter frames below after the unwind.
- Server loops (a function that is one `receive` without `after` whose clauses end the
  function, _Gen.receive_loop) are resumed by the loop in compiled code at their RECVWAIT when a
  message comes, and their wait returns WAITING instead of unwinding; called from elsewhere, the
  wait raises _Wait and unwinds like a preemption. Any other receive is compiled as a scan of the
  mailbox whose clauses run compiled (_Gen.receive_block); when no message matches, _Wait
  unwinds the frame to its RECVWAIT (an OSR loop's or resume function's frame is given back
  as at its exits) and the interpreter waits (and runs an `after` body). A message that comes
  then is scanned, and the rest of the function run, by the receive's resume function
  (FastTier.resume: compiled from the RECVWAIT on, entering a `loop` it reaches through the
  loop's OSR function), so a function with two receives or a collecting `loop` around one
  runs compiled between its waits.
- A `loop` is a Python while loop (_Gen.loop_block); its JUMP_BACKWARD is a safe point that
  resumes at the loop's head. A loop running in the interpreter is entered in compiled code at
  its head when its budget ends there (FastTier.osr: the loop compiled on its own, on-stack
  replacement).
- Recursion deeper than Python's stack stays interpreted (FastTier.stay_interpreted): a
  function whose compiled frames filled the stack (RecursionError), or whose budget ends
  thousands of frames deep in itself.
"""

from __future__ import annotations

import dis
import os
import re
import signal
import sys
import types
from typing import Any

from . import boxes as _boxes
from . import interp, lbc
from . import values as _values
from .builtins import PURE_BUILTINS, b_empty
from .checks import described, short_repr
from .errors import (
    INT_LIMIT,
    INT_MIN,
    MAX_INT_BITS,
    MAX_TEXT,
    Halt,
    LispError,
    ProcessExit,
    badarg,
    limit_error,
    product_too_large,
    runtime_error,
    undef,
)
from .lbc import Proto
from .loopsupport import (
    _PRELUDE_FILE,
    _enter,
    _not_callable,
    _Parked,
    _Unwound,
    list_of,
    not_a_cons,
    python_error,
    undefined_global,
)
from .opcodes import BY_NAME, OPS, Op, decode_fields, render
from .process import BLOCK, DONE, EXITED, FAILED, HALT, YIELD, Block, ctx
from .registry import BUILTINS
from .state import HALT_FRAME, VM, WAITING
from .values import (
    FALSE,
    TRUE,
    UNDEF,
    Box,
    Builtin,
    Closure,
    Cons,
    Map,
    Pid,
    Ref,
    Sym,
    Vec,
    from_list,
    note_box,
    to_pylist,
)

__all__ = ["FastTier", "Preempt", "enable", "disable", "rearm"]

# LISPVM_FAST_DUMP=1: write the Python source of every function the tier compiles to stderr
# (a debugging aid: read once at import, so the hot path pays nothing)
_DUMP = bool(os.environ.get("LISPVM_FAST_DUMP"))
# Reductions of interpreted code between two looks for hot code (a loop or a function to compile):
# a quarter of the default budget. A loop of twenty instructions a turn ran ~10 ms interpreted
# before its compiled body took over at the budget's end (4,000 turns), ~5 times what compiling it
# costs (docs/performance.md, issue 16 wave 5, F3).
CHECK = 1000
HOT_WAKES = 64  # messages that woke an interpreted receive before the tier tries to compile its function
COMPILED = 0  # functions compiled in this OS process so far (tests check that a mode compiled any)
REFUSED = 0  # functions the tier tried and left to the interpreter (refused)

_RECV = frozenset({"RECVSTART", "RECVPEEK", "RECVNEXT", "RECVTAKE", "RECVWAIT"})
# The prelude's list loops (vm/prelude.lisp) that run as one Python loop when their function is a
# leaf (see FastTier.fused): loop name -> (kind, the function's arity, the instruction whose error
# a list ending in a non-list raises first: map and filter take the tail before calling)
_FUSED_LOOPS = {"sys/map-loop": ("map", 1, "TAIL"), "sys/filter-loop": ("filter", 1, "TAIL"),
                "sys/reduce-loop": ("reduce", 2, "HEAD")}
# Rows a leaf may hold: they compute values, read variables and globals, make closures, branch
# forward and return; none calls Lisp code, waits, loops, or writes a variable, a box or a global.
_LEAF_ROWS = frozenset((
    "MOVE LOADK LOADI LOADNIL LOADBOOL GETUPVAL GETUPBOX UNBOX GETGLOBAL CLOSURE SELF RETURN ADD SUB MUL DIV "
    "IDIV MOD ADDI NEG NOT EQ NE LT LE GT GE TEST IFEQ IFLT IFLE IFGT IFGE IFEQK IFEQI IFLTI IFLEI IFGTI IFGEI "
    "LIST VECTOR CONS HEAD TAIL UNLIST UNCONS UNVEC UNMAPK BAND BOR BXOR BNOT").split())
_LEAF_CALLS = frozenset({"CALLB", "CALLG", "TAILCALLG"})  # calls a leaf may make: of PURE_BUILTINS only

_CATCHABLE = (LispError, TypeError, ZeroDivisionError, OverflowError, ValueError, AttributeError, IndexError,
              MemoryError)


class Preempt(BaseException):
    """Raised by the tick handler at a safe point of compiled code: the slice is over."""


class _NestedSuspend(BaseException):
    """A nested interpreter (a compiled function called an interpreted one) must suspend."""

    def __init__(self, outcome: int, frames: list, cl: Closure, pc: int, regs: list) -> None:
        super().__init__()
        self.outcome, self.frames, self.cl, self.pc, self.regs = outcome, frames, cl, pc, regs


class _Wait(BaseException):
    """Raised by a compiled receive loop that finds no message when it was called, not resumed
    from the loop: its frame becomes an interpreter frame at its RECVWAIT (see FastTier.unwind)."""


def _rwait() -> None:
    raise _Wait()


class _Info:
    """What the unwinder needs to know about one compiled prototype."""

    __slots__ = ("proto", "lines", "cols", "safe", "canonical", "upvals", "code", "source", "restart", "wait",
                 "names", "aliases", "parks")

    def __init__(self, proto: Proto) -> None:
        self.proto = proto
        self.lines: dict[int, tuple[int, str, int]] = {}  # source line -> (pc, kind, dest register)
        # source line -> (first column, end column, pc) of each argument expression folded into
        # that line's call (the line's own pc is the call's)
        self.cols: dict[int, list[tuple[int, int, int]]] = {}
        # bytecode offsets of RESUME and JUMP_BACKWARD -> the pc a frame stopped there resumes
        # at: 0 (the function's start, its parameters in place) or a `loop`'s head
        self.safe: dict[int, int] = {}
        self.canonical = Closure(proto, ())  # stands for the closure of an upvalue-free function
        self.upvals = bool(proto.upvals)  # made per closure (upvalues, SELF): `_cl` is a local
        self.restart: dict[int, int] = {}  # call pc -> first folded instruction's pc
        self.wait = -1  # a receive loop's RECVWAIT pc (see _Gen.receive_loop), else -1
        self.parks = False  # takes _top: its receives' waits give the frame back (_Gen.receive_block)
        self.names = tuple(f"r{i}" for i in range(proto.nregs))  # the registers' local names
        # source line -> {register: ("r", register) or ("k", constant)}: a register that line
        # reads under another name (a copy or constant the generator did not store, _Gen.plan_copies);
        # an error's message names its operands' values from these
        self.aliases: dict[int, dict[int, tuple[str, Any]]] = {}


class _CannotCompile(Exception):
    """A shape the fast tier leaves to the interpreter."""


# --- the tier ------------------------------------------------------------------------------------

class FastTier:
    """Compiled code for one OS process: one namespace, shared by every compiled function, and
    the tier's table of prototypes (compiled, refused, woken)."""

    def __init__(self, vm: VM, globals_: Any) -> None:
        self.vm = vm  # the VM it serves: its tick handler counts down vm.ticks_left
        self.globals = globals_  # the node's vm.process.Globals
        self.codes: dict[Any, _Info] = {}  # code object -> info, for the unwinder and the tick handler
        self.compiled: dict[Proto, _Info] = {}  # every prototype compiled here
        self.servers: set[Proto] = set()  # the compiled receive loops, resumed at their RECVWAIT
        # compiled functions with a receive that is not a server loop's: called with _top by the
        # loop, a wait gives back their frame (_Parked) instead of unwinding (_Gen.receive_block)
        self.parking: set[Proto] = set()
        self.refused: set[Proto] = set()  # prototypes it could not compile: they stay interpreted
        self.wakes: dict[Proto, int] = {}  # wake-ups left before an interpreted receive's function is tried
        # (prototype, loop head pc) -> the loop compiled on its own, entered from the interpreter
        # at that head (on-stack replacement), or None where it cannot be
        self.osrs: dict[tuple[Proto, int], Any] = {}
        self.resumes: dict[tuple[Proto, int], Any] = {}  # (proto, RECVWAIT pc) -> its resume function (resume)
        # kind -> {prototype: the leaf run over a list in one Python loop (see fused), or None
        # where it is no leaf}; compiled list loops look a function up here before calling fused
        self.fusions: dict[str, dict[Proto, Any]] = {kind: {} for kind, _, _ in _FUSED_LOOPS.values()}
        self.loop_errs: dict[str, tuple] = {}  # kind -> positions of its prelude loop's errors
        self.gnames: dict[str, str] = {}  # Lisp global name -> Python identifier suffix
        self.count = 0  # functions compiled, for unique names
        # the interpreter looks for hot code every `check` reductions (at most `every`: the
        # slice's budget in equal parts), and asks the host whether to yield only once a whole
        # budget is spent: `left` of the running slice's reductions are left after this check
        # (0: the slice is one check long), `slice` is the budget (vm/loopsupport.py _budget_out)
        self.every = CHECK
        self.check = CHECK
        self.left = 0
        self.slice = 0
        self.ns: dict[str, Any] = {
            "__builtins__": __builtins__, "_Box": Box, "_tolist": list_of, "_resolve": self.resolve,
            "_apply": self.apply, "_mkclosure": _mkclosure, "_unlist": _unlist, "_uncons": _uncons,
            "_unvec": _unvec, "_lisp_value": self.lisp_value, "_CATCH": _CATCHABLE, "_ctx": ctx,
            "_WAITING": WAITING, "_rwait": _rwait, "_Parked": _Parked, "_touch": _boxes.touch_current, "_Map": Map,
            "_PK": None,  # the running process's key (the loop sets it at each slice)
            "_Closure": Closure, "_fused": self.fused, "_VM": vm, "_Builtin": Builtin, "_Sym": Sym,
            "_Pid": Pid, "_Ref": Ref, "_mkclosure0": _mkclosure0, "_values": _values,
            **{f"_FZ_{kind}": known for kind, known in self.fusions.items()},
        }
        # what the rows' templates name ($name, rendered _name): shared helpers, and this tier's
        # own global stores and boxes
        names = dict(_SHARED_NAMES, set_global=self.setglobal, def_global=self.defglobal,
                     own_box=self.own_box, new_box=self.new_box)
        assert names.keys() == _TEMPLATE_NAMES
        self.ns.update(("_" + n, v) for n, v in names.items())

    # -- compiling -----------------------------------------------------------------------------

    def compile(self, p: Proto) -> bool:
        """Compile `p` if it can be; afterwards p.fast is its function (or, for a prototype with
        upvalues, the factory that makes one per closure). Returns True on success."""
        if p.fast is not None:
            return True
        if p in self.refused:
            return False
        try:
            try:
                fn, info = _Gen(self, p).build()
            except _CannotCompile:
                # not a server loop after all (a clause goes on after the receive): its receive
                # as a scan whose wait is the interpreter's (_Gen.receive_block)
                gen = _Gen(self, p, server=False)
                if gen.recv is not None or not any(name == "RECVSTART" for name, _ in gen.ops):
                    raise
                fn, info = gen.build()
        except Exception as e:  # noqa: BLE001 - whatever went wrong, the interpreter runs it
            # _CannotCompile, or Python refusing the generated source (nesting deeper than its
            # parser or compiler allows: SyntaxError, RecursionError, MemoryError...): the
            # function stays interpreted, which is always correct
            if isinstance(e, RecursionError) and _depth() > sys.getrecursionlimit() // 2:
                return False  # the caller's stack was deep, not the function: try again later
            global REFUSED
            REFUSED += 1
            self.refused.add(p)
            return False
        global COMPILED
        COMPILED += 1
        self.codes[info.code] = info  # type: ignore[attr-defined]
        self.compiled[p] = info
        if info.wait >= 0:
            self.servers.add(p)
        if info.parks:
            self.parking.add(p)
        p.fast = fn
        p.arity = -1  # the interpreter's inline call path now defers to p.fast
        return True

    def woken(self, p: Proto, waiting: int = 1) -> None:
        """Messages woke an interpreted receive of `p` (not compiled), `waiting` of them: once
        HOT_WAKES messages came so, try to compile `p` (a server loop, maybe: see
        _Gen.receive_loop). Counted in messages, not wake-ups: a batch from another scheduler
        wakes its receiver once for hundreds of messages, all handled interpreted otherwise."""
        left = self.wakes.get(p, HOT_WAKES) - waiting
        self.wakes[p] = left
        if left <= 0:
            self.compile(p)

    def release(self) -> None:
        """Give every prototype compiled here back to the interpreter: prototypes outlive a run
        (the prelude is loaded once per OS process), this tier's code does not."""
        for p in self.compiled:
            p.fast = None
            p.arity = -1 if p.rest else p.nparams
        if self.vm.eager:
            for m in list(lbc._REGISTRY.values()):
                for p in m.protos:
                    p.arity = -1 if p.rest else p.nparams
        self.compiled.clear()
        self.osrs.clear()
        self.resumes.clear()
        self.servers.clear()
        self.parking.clear()
        self.refused.clear()
        self.wakes.clear()
        for known in self.fusions.values():
            known.clear()

    def fn_for(self, f: Closure) -> Any:
        """The Python callable for a closure whose prototype is compiled (cached in f.fast)."""
        fn = f.fast
        if fn is None:
            p = f.proto
            fn = f.fast = p.fast(*f.upvals, f) if self.compiled[p].upvals else p.fast
        return fn

    def osr(self, p: Proto, head: int) -> Any:
        """The loop of `p` whose body starts at `head`, compiled on its own: a Python function
        `(regs, closure) -> (pc, registers)` that runs the loop from its head with the frame's
        registers and gives back where the interpreter goes on (the loop's end, or a return or
        tail call inside it, which the interpreter then runs) with the registers then. None where
        it cannot be compiled (the interpreter goes on)."""
        key = (p, head)
        if key in self.osrs:
            return self.osrs[key]
        fn = self.part(p, osr=head)
        self.osrs[key] = fn
        if fn is not None:
            # a receive in the loop waits by giving the frame back: the message that wakes it
            # goes on compiled (resume), back into this loop at its recur
            end = head + decode_fields(p.code[head - 1])[1]["Bx"]
            for w in range(head, min(end, len(p.code))):
                if p.code[w] & 0x7F == _RECVWAIT:
                    self.resumes.setdefault((p, w), self)
        return fn

    def part(self, p: Proto, **where: int) -> Any:
        """A part of `p` compiled on its own (a loop: osr=head, or the rest from a wait: wait=pc),
        or None where it cannot be compiled (the interpreter runs it)."""
        try:
            fn, info = _Gen(self, p, **where).build()
        except Exception:  # noqa: BLE001 - whatever went wrong, the interpreter runs it
            return None
        self.codes[info.code] = info  # type: ignore[attr-defined]
        return fn

    def resume(self, p: Proto, w: int) -> Any:
        """The rest of `p` from its RECVWAIT at `w`, compiled on its own (a compiled receive that is
        not a server loop waited there, interpreted, and a message came): a Python function
        `(regs, closure) -> (pc, registers)` like an OSR loop's, that scans the mailbox from the
        process's scan position, runs the matching clause and the code after the receive, and
        gives back where the interpreter goes on (a return or tail call, a jump it does not
        follow) with the registers then. A loop it reaches is entered through its OSR function.
        So the second receive of `(+ (receive (a a)) (receive (b b)))`, or the code after a
        collecting receive, runs compiled after a wait. None where it cannot be compiled."""
        key = (p, w)
        # compiled at the first wake-up of a compiled function's receive, or of one inside a
        # compiled `loop` (osr marks those: self); else None, and the interpreter scans
        fn = self.resumes.get(key, self if p.fast is not None else None)
        if fn is not self:
            return fn
        fn = self.part(p, wait=w)
        self.resumes[key] = fn
        return fn

    def resolve(self, f: Any) -> Any:
        """A Python callable for any Lisp function value (compiled code's `CALL`)."""
        c = f.__class__
        if c is Builtin:
            return f.fn
        if c is not Closure:
            raise badarg(f"not a function: {described(f)}")
        if self.compile(f.proto):
            return self.fn_for(f)
        fn = f.fast = lambda *args: _nested(f, args)
        return fn

    def apply(self, f: Any, args: list, last: Any) -> Any:
        """Compiled code's APPLY: call `f` with `args` and the elements of the list `last`."""
        spread = to_pylist(last)
        if spread is None:
            raise badarg(f"apply: the last argument must be a list, got {short_repr(last)}")
        fn = f.fast if f.__class__ is Builtin else self.resolve(f)
        return fn(*args, *spread)

    def fused(self, kind: str, f: Closure, a: Any, b: Any) -> tuple:
        """The prelude's list loop `kind` (sys/map-loop f xs acc, sys/filter-loop f xs acc,
        sys/reduce-loop f acc xs) run as one Python loop, when `f` is a leaf: a function whose
        code only computes a value from its arguments and upvalues with the pure builtins
        (PURE_BUILTINS), forward branches and no call of any other function (_leaf).

        Why that is safe: a leaf cannot wait, block, send, loop or call back into code that
        could; it writes no variable, box or global, so running it over part of a list and then
        running the Lisp loop again from the start (after a RecursionError) changes nothing; and
        its fused loop has no safe point (info.safe is empty), so the tick handler never
        preempts inside it. Instead the loop checks the slice between elements: when the slice is
        over and the scheduler wants the CPU, it hands the rest of the list back to the Lisp loop,
        whose head is a safe point. Errors are raised in the fused frame, which the unwinder maps
        to the leaf's instructions as it does the leaf's own frame; a list ending in a non-list
        raises what the Lisp loop raises (empty?, then tail or head) at the loop's own position.

        Returns (0, None, None): not fused here, run the Lisp loop; (1, value, None): done;
        (2, x, y): go on in the Lisp loop with its second and third parameters x and y."""
        p = f.proto
        known = self.fusions[kind]
        fz = known.get(p, False)
        if fz is False:
            fz = known[p] = self.make_fused(kind, p)
        if fz is None:
            return _NOT_FUSED
        if kind == "reduce":
            acc, c = a, b
        else:
            c, acc = a, to_pylist(b)
            if acc is None:
                return _NOT_FUSED
            acc.reverse()
        ups = (*f.upvals, f) if self.compiled_up(p) else ()
        vm = self.vm
        chunk = fz.chunk
        if chunk is not None and (xs := to_pylist(c)) is not None:
            # the leaf as one expression in a list comprehension, a chunk of elements at a time,
            # the slice checked between chunks; an exception sends the chunk (and the rest) to the
            # loop below, which raises it at the leaf's own instruction (a leaf writes nothing, so
            # running it again changes nothing)
            i, n = 0, len(xs)
            try:
                while i < n:
                    if vm.ticks_left <= 0:
                        host = ctx.host
                        if host is not None and host.preempt():
                            return 2, from_list(xs[i:]), from_list(acc[::-1])
                        vm.ticks_left = vm.slice_ticks
                    acc += chunk(*ups, xs if n <= _CHUNK else xs[i:i + _CHUNK])
                    i += _CHUNK
                return 1, from_list(acc), None
            except Exception:  # noqa: BLE001 - the loop below raises it at its instruction
                c = from_list(xs[i:])
        try:
            while True:
                acc, c, stopped = fz(*ups, c, acc)
                if not stopped:
                    break
                host = ctx.host
                if host is not None and host.preempt():
                    if kind == "reduce":
                        return 2, acc, c
                    return 2, c, from_list(acc[::-1])
                vm.ticks_left = vm.slice_ticks  # nobody else wants the CPU: a new slice, as on_tick does
        except RecursionError:
            return _NOT_FUSED  # nothing was changed: the Lisp loop does it all, and meets the limit itself
        if c is not None:  # as the Lisp loop: empty? of what ends the list, then tail (or head) of it
            empty_pos, cell_pos, cell = self.loop_errs[kind]
            try:
                done = b_empty(c)
            except LispError as e:
                e.pos = empty_pos
                raise
            if done is FALSE:
                e = not_a_cons(cell, c)
                e.pos = cell_pos
                raise e
        return 1, (acc if kind == "reduce" else from_list(acc)), None

    def compiled_up(self, p: Proto) -> bool:
        """Whether compiled code of `p` takes its closure's upvalues (and the closure)."""
        return bool(p.upvals) or any(op & 0x7F == _SELF for op in p.code)

    def make_fused(self, kind: str, p: Proto) -> Any:
        """`p` compiled as the body of the Python loop `kind` (see fused), or None where `p` is
        not a leaf taking the loop's arguments, or cannot be compiled."""
        if p.rest or p.nparams != (2 if kind == "reduce" else 1) or not _leaf(p):
            return None
        try:
            fn, info = _Gen(self, p, fuse=kind).build()
        except Exception:  # noqa: BLE001 - whatever went wrong, the Lisp loop runs it
            return None
        self.codes[info.code] = info
        fn.chunk = _chunk_of(self.ns, kind, info.source) if kind != "reduce" else None
        return fn

    def gname(self, name: str) -> str:
        g = self.gnames.get(name)
        if g is None:
            g = self.gnames[name] = str(len(self.gnames))
            self.ns["C_" + g] = self.globals.cell(name)
            self.ns["F_" + g] = self._stub(name)
        return g

    def _stub(self, name: str) -> Any:
        """F_<name> before its first call: find the best callable, install it, call it."""
        def stub(*args: Any) -> Any:
            return self.refresh(name)(*args)

        stub.lisp_stub = True  # type: ignore[attr-defined]
        return stub

    def refresh(self, name: str) -> Any:
        cell = self.globals.cell(name)
        v = cell.v
        if v is UNDEF:
            def missing(*args: Any) -> Any:
                raise undef(f"undefined function {name}")
            fn = missing  # not installed: the global may be defined later
            return fn
        if v.__class__ is Builtin:
            fn = v.fn
        elif v.__class__ is Closure:
            fn = self.fn_for(v) if self.compile(v.proto) else (lambda *args: _nested(v, args))
        else:
            def not_fn(*args: Any) -> Any:
                raise badarg(f"{name} is not a function: {described(v)}")
            fn = not_fn
        self.ns["F_" + self.gname(name)] = fn
        return fn

    def on_define(self, name: str) -> None:
        """A global changed: compiled calls to it must look again."""
        g = self.gnames.get(name)
        if g is not None:
            self.ns["F_" + g] = self._stub(name)

    def own_box(self, box: Box) -> Box:
        """The box itself if the running process owns it, else this process's copy (vm/boxes.py)."""
        return box if box.owner == self.ns["_PK"] else _boxes.touch_current(box)

    def new_box(self, value: Any) -> Box:
        """A box owned by the running process; messages are scanned for boxes from now on."""
        note_box()
        return Box(value, self.ns["_PK"])

    def defglobal(self, cell: Any, value: Any) -> Any:
        if value.__class__ is Closure and value.name == "fn":
            value.name = cell.name
        stored = _boxes.for_global(ctx.proc, value, cell)  # a value, not variables (vm/boxes.py)
        cell.v = stored
        self.on_define(cell.name)
        ctx.host.define(cell.name, stored)
        return value

    def setglobal(self, cell: Any, value: Any) -> Any:
        if cell.v is UNDEF:
            raise undef(f"set: undefined global {cell.name}")
        stored = _boxes.for_global(ctx.proc, value, cell)
        cell.v = stored
        self.on_define(cell.name)
        ctx.host.define(cell.name, stored)
        return value

    # -- preemption -----------------------------------------------------------------------------

    def on_tick(self, signum: int, frame: Any) -> None:
        """SIGVTALRM: preempt compiled code at a safe point once the slice is spent (the loop sets
        vm.ticks_left at the start of every slice)."""
        vm = self.vm
        left = vm.ticks_left - 1
        vm.ticks_left = left
        if left > 0:
            return
        info = self.codes.get(frame.f_code) if frame is not None else None
        if info is None or frame.f_lasti not in info.safe:
            return  # not in compiled code, or not at a safe point: try again at the next tick
        host = ctx.host
        vm.ticks_left = vm.slice_ticks  # a new slice, whether or not we preempt
        if host is None or not host.preempt():
            return  # nobody else wants the CPU
        raise Preempt()

    def on_poke(self, signum: int, frame: Any) -> None:
        """A signal handler for the host: end the running slice of compiled code at its next safe
        point, as if its ticks were spent (the host says why: for a scheduler, another one of the
        node went idle and this one should look at its input now, not at the next tick)."""
        self.vm.ticks_left = 1
        self.on_tick(signum, frame)

    # -- errors and unwinding ------------------------------------------------------------------

    def lisp_value(self, e: BaseException) -> Any:
        """The Lisp value a compiled `try` binds for exception `e`."""
        if isinstance(e, LispError):
            return e.value
        return _positioned(self, e, _innermost(self.codes, e)).value  # type: ignore[union-attr]

    def unwind(self, exc: BaseException, proc: Any, caller: tuple | None) -> BaseException:
        """Turn the compiled frames in `exc`'s traceback into interpreter frames on `proc`.

        `caller` is the interpreter frame that called into compiled code, as the loop pushes
        frames (None for a tail call). Returns the exception the loop should raise: an
        _Unwound (continue, or leave with an outcome), or a positioned LispError.
        """
        if isinstance(exc, (ProcessExit, Halt, KeyboardInterrupt, SystemExit, _Unwound)):
            return exc
        compiled = []
        tb = exc.__traceback__
        while tb is not None:
            info = self.codes.get(tb.tb_frame.f_code)
            if info is not None:
                compiled.append((info, tb))
            tb = tb.tb_next
        if not compiled:
            return _positioned(self, exc, None)
        if isinstance(exc, _CATCHABLE) or not isinstance(exc, (Preempt, RecursionError, Block,
                                                                _NestedSuspend, _Wait)):
            return _positioned(self, exc, compiled[-1], compiled)
        frames = proc.frames
        if caller is not None:
            frames.append(caller)
        innermost = len(compiled) - 1
        cur = None
        if isinstance(exc, RecursionError):
            self.too_deep(compiled)
        for k, (info, tb) in enumerate(compiled):
            if k < innermost and tb.tb_lasti not in info.safe:
                # a frame waiting for its callee (thousands of them after a deep recursion):
                # its interpreter frame goes on after the call with the callee's result
                pc, kind, dst = info.lines.get(tb.tb_lineno, (None, None, 0))
                if kind == "tail":
                    continue  # its result is its callee's: the frame is not needed (nor its locals)
                if pc is not None:
                    loc = tb.tb_frame.f_locals
                    frames.append((loc.get("_cl", info.canonical) if info.upvals else info.canonical,
                                   info.proto.dcode, pc + 1, list(map(loc.get, info.names)), dst))
                    continue
            f = tb.tb_frame
            loc = f.f_locals
            p = info.proto
            regs = list(map(loc.get, info.names))
            cl = loc.get("_cl", info.canonical) if info.upvals else info.canonical
            entry = tb.tb_lasti in info.safe
            if entry:  # at RESUME or a loop head: the frame restarts its body (or a loop) from here
                pc, kind, dst = info.safe[tb.tb_lasti], "entry", 0
                if pc == 0 and p.rest and regs[p.nparams].__class__ is tuple:
                    regs[p.nparams] = list_of(regs[p.nparams])
                if pc == 0 and info.wait >= 0 and (loc.get("_resume") or ("_resume" not in loc and loc.get("_top"))):
                    # a server loop in the middle of its scan (after RECVNEXT, or resumed): go on
                    # at its RECVWAIT, from the scan position, instead of starting the receive
                    # again (guards would run twice)
                    pc = info.wait
                    if "_resume" not in loc:  # stopped before reading the frame's registers back
                        regs = list(proc.regs)
            else:
                pc, kind, dst = info.lines.get(tb.tb_lineno, (None, None, 0))
                if pc is None:  # pragma: no cover - every line of generated code is mapped
                    raise AssertionError(f"fast tier: no pc for line {tb.tb_lineno} of {p.name}")
            if k < innermost:
                if kind == "tail":
                    continue  # its result is its callee's: the frame is not needed
                frames.append((cl, p.dcode, pc + 1, regs, dst))
                continue
            # the innermost compiled frame
            if isinstance(exc, Preempt):
                # raised only at an entry or loop head (see on_tick): pc 0, or a server loop's RECVWAIT
                cur = (cl, pc, regs)
            elif isinstance(exc, RecursionError):
                # the call did not start: do it again, interpreted (from the first instruction
                # folded into its argument list, if any: they are pure)
                cur = (cl, info.restart.get(pc, pc), regs)
            elif isinstance(exc, Block):
                proc.ret_reg = dst
                proc.request = exc.request
                cur = (cl, pc + 1, regs)
            elif isinstance(exc, _Wait):
                cur = (cl, pc, regs)  # its RECVWAIT, which the loop runs again: the wait is the loop's
            elif kind != "tail":  # _NestedSuspend: this frame waits for the nested callee
                frames.append((cl, p.dcode, pc + 1, regs, dst))
        if isinstance(exc, _NestedSuspend):
            frames.extend(exc.frames[1:])  # the nested stack's own HALT_FRAME is not wanted here
            return _Unwound(exc.cl, exc.pc, exc.regs, None, exc.outcome)
        outcome = YIELD if isinstance(exc, Preempt) else BLOCK if isinstance(exc, Block) else None
        assert cur is not None
        return _Unwound(cur[0], cur[1], cur[2], None, outcome)


    def too_deep(self, compiled: list[tuple[_Info, Any]]) -> None:
        """Compiled code recursed deeper than Python's stack (RecursionError): the functions that
        did (a prototype with many frames on it) stay interpreted from now on, where recursion
        costs no Python stack, instead of filling the stack and being unwound again and again
        (docs/performance.md, "Deep recursion"). Compiled callers reach them through a nested
        interpreter."""
        counts: dict[Proto, int] = {}
        for info, _ in compiled:
            counts[info.proto] = counts.get(info.proto, 0) + 1
        self.stay_interpreted({p for p, n in counts.items() if n >= _DEEP_FRAMES})

    def stay_interpreted(self, protos: set[Proto]) -> None:
        """These prototypes recurse too deep for compiled code (see too_deep, and the loop's
        budget end in a deep self-recursion, vm/loopsupport.py _budget_out): interpreted from now
        on (server loops aside), also when called from compiled code."""
        deep = {p for p in protos if p not in self.servers}
        for p in deep:
            p.fast = None
            p.arity = -1 if p.rest else p.nparams
            self.refused.add(p)
        if deep:
            for name in list(self.gnames):
                v = self.globals.cell(name).v
                if v.__class__ is Closure and v.proto in deep:
                    self.on_define(name)


_DEEP_FRAMES = 64  # frames of one prototype in a RecursionError's traceback that make it "deep"


_NOT_FUSED = (0, None, None)
_SELF = BY_NAME["SELF"].num
_RECVWAIT = BY_NAME["RECVWAIT"].num


_CHUNK = 512  # elements of a fused list comprehension between two looks at the slice (FastTier.fused)
_REG = re.compile(r"r\d+")


def _chunk_of(ns: dict, kind: str, src: str) -> Any:
    """The fused loop of a straight-line leaf (every instruction one assignment of a register)
    as a list comprehension over a Python list of elements, or None. The assignments are folded
    into one expression: a constant or a name anywhere; any other value only where it is always
    evaluated (not in a branch of a conditional or after the first operand of `and`/`or`), used
    once, and holding no temporary. So the expression computes what the statements compute,
    and raises when one of them would (which one may differ: FastTier.fused runs the statements
    again to raise the right error)."""
    import ast

    lines = src.split("\n")
    try:
        start = lines.index("        while True:") + 1
        header = lines[0]
    except ValueError:
        return None
    defs: dict[str, tuple[ast.expr, bool]] = {}  # register -> (its expression, a computed one not yet used)
    result = None
    for text in lines[start:]:
        if text == "            break":
            break
        if not text.startswith("            ") or text[12] == " ":
            return None
        try:
            stmt = ast.parse(text[12:]).body[0]
        except SyntaxError:
            return None
        if stmt.__class__ is not ast.Assign or len(stmt.targets) != 1 or stmt.targets[0].__class__ is not ast.Name:
            return None
        target = stmt.targets[0].id
        expr = _fold(stmt.value, defs, True)
        if expr is None:
            return None
        if target == "_v":
            result = expr
            continue
        if not _REG.fullmatch(target) or target == "r0" or defs.get(target, (None, False))[1]:
            return None  # the loop's variable written, or a value dropped that might raise
        if any(n.__class__ is ast.NamedExpr for n in ast.walk(expr)):
            return None  # a temporary: moving it could interleave with another's
        defs[target] = (expr, expr.__class__ not in (ast.Name, ast.Constant))
    else:
        return None
    if result is None or any(left for _, left in defs.values()):
        return None
    for n in ast.walk(result):
        if n.__class__ is ast.Name and _REG.fullmatch(n.id) and n.id != "r0":
            return None
    result = _known(result, ns)
    body = ast.unparse(result)
    if kind == "map":
        comp = f"[{body} for r0 in _xs]"
    else:
        test = result
        if (test.__class__ is ast.IfExp and test.body.__class__ is ast.Name and test.orelse.__class__ is ast.Name
                and {test.body.id, test.orelse.id} == {"_TRUE", "_FALSE"}):
            cond = ast.unparse(test.test)
            cond = f"not ({cond})" if test.body.id == "_FALSE" else f"({cond})"
        else:
            cond = f"(_v := {body}) is not _FALSE and _v is not None"
        comp = f"[r0 for r0 in _xs if {cond}]"
    params = header[header.index("(") + 1:header.index(")")].split(", ")
    params = [q for q in params if q not in ("_c", "_acc", "_out")]
    out = [f"def _chunk({', '.join(params + ['_xs'])}):"]
    out += [t for t in lines[1:start] if t.startswith("    _B")]
    out.append(f"    return {comp}")
    try:
        exec("\n".join(out) + "\n", ns)
    except SyntaxError:
        return None
    return ns.pop("_chunk")


def _fold(expr: Any, defs: dict, always: bool) -> Any:
    """`expr` with each register defined before replaced by its expression (see _chunk_of), or
    None where that is not allowed. `always`: this node is evaluated whenever its line is."""
    import ast

    if expr.__class__ is ast.Name and _REG.fullmatch(expr.id):
        if expr.id == "r0":
            return expr
        d = defs.get(expr.id)
        if d is None:
            return None  # a register this leaf did not write here: not straight-line
        value, unused = d
        if not unused:
            return value if value.__class__ in (ast.Name, ast.Constant) else None  # used twice
        if not always:
            return None
        defs[expr.id] = (value, False)
        return value
    for field, old in ast.iter_fields(expr):
        if isinstance(old, ast.AST):
            sub = _fold(old, defs, always and not _conditional(expr, field, 0)) if isinstance(old, ast.expr) else old
            if sub is None:
                return None
            setattr(expr, field, sub)
        elif isinstance(old, list):
            for k, item in enumerate(old):
                if isinstance(item, ast.expr):
                    sub = _fold(item, defs, always and not _conditional(expr, field, k))
                    if sub is None:
                        return None
                    old[k] = sub
                elif isinstance(item, ast.AST) and not isinstance(item, (ast.operator, ast.cmpop, ast.boolop,
                                                                              ast.unaryop, ast.expr_context)):
                    return None
    return expr


def _known(expr: Any, ns: dict) -> Any:
    """`expr` with what its string constants make known written as constants: the class test
    of one (`K.__class__ is str`: True) and its length (`len(K)`), `and` without its true
    operands (the inline str tests each argument's class and the total length)."""
    import ast

    def text(node: Any) -> bool:
        return node.__class__ is ast.Name and node.id[:1] == "K" and ns.get(node.id).__class__ is str

    class Fold(ast.NodeTransformer):
        def visit_Compare(self, node: Any) -> Any:
            self.generic_visit(node)
            left = node.left
            if (len(node.ops) == 1 and node.ops[0].__class__ is ast.Is and left.__class__ is ast.Attribute
                    and left.attr == "__class__" and text(left.value) and node.comparators[0].__class__ is ast.Name
                    and node.comparators[0].id == "str"):
                return ast.Constant(True)
            return node

        def visit_Call(self, node: Any) -> Any:
            self.generic_visit(node)
            if (node.func.__class__ is ast.Name and node.func.id == "len" and len(node.args) == 1
                    and not node.keywords and text(node.args[0])):
                return ast.Constant(len(ns[node.args[0].id]))
            return node

        def visit_BoolOp(self, node: Any) -> Any:
            self.generic_visit(node)
            if node.op.__class__ is ast.And:
                rest = [v for v in node.values if not (v.__class__ is ast.Constant and v.value is True)]
                if not rest:
                    return ast.Constant(True)
                if len(rest) == 1:
                    return rest[0]
                node.values = rest
            return node

    return Fold().visit(expr)


def _conditional(node: Any, field: str, k: int) -> bool:
    """Whether node's `field` (item k) is evaluated only on some paths of the node."""
    import ast

    c = node.__class__
    if c is ast.IfExp:
        return field != "test"
    if c is ast.BoolOp:
        return k > 0
    if c is ast.Compare:
        return field == "comparators" and k > 0  # a chain stops at its first false comparison
    return c in (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _leaf(p: Proto) -> bool:
    """Whether `p` is a leaf (see FastTier.fused): only _LEAF_ROWS, forward jumps, and calls of
    PURE_BUILTINS (their names cannot be redefined: the compiler and the loader refuse it)."""
    for word in p.code:
        op, f = decode_fields(word)
        name = op.name
        if name in _LEAF_ROWS:
            continue
        if name == "JMP" and f["sJ"] >= 0:
            continue
        if name in _LEAF_CALLS and p.consts[f["C"]].name in PURE_BUILTINS:
            continue
        return False
    return True


def _depth() -> int:
    """Python frames on the stack now (only asked when compiling failed)."""
    n, f = 0, sys._getframe()
    while f is not None:
        n, f = n + 1, f.f_back
    return n


# --- helpers that compiled code calls ---------------------------------------------------------

def _mkclosure(p: Proto, upvals: tuple) -> Closure:
    return Closure(p, upvals)


def _mkclosure0(p: Proto) -> Closure:
    """A closure of a prototype without upvalues (nor SELF): its compiled function, if any, is
    the prototype's own, so calls need not resolve it (FastTier.fn_for would give the same)."""
    c = Closure(p, ())
    c.fast = p.fast
    return c


if _values._speedups is not None:  # the C closure: made without a Python frame (an edit by S)
    _mkclosure = Closure  # noqa: F811 - the same call, Closure(p, upvals)
    _mkclosure0 = _values._speedups.closure0  # noqa: F811 - the same closure as above, in C


def _unlist(x: Any, n: int) -> tuple | None:
    items = []
    while x.__class__ is Cons and len(items) < n:
        items.append(x.head)
        x = x.tail
    return tuple(items) if x is None and len(items) == n else None


def _uncons(x: Any) -> tuple | None:
    return (x.head, x.tail) if x.__class__ is Cons else None


def _unvec(x: Any, n: int) -> tuple | None:
    return x.items if x.__class__ is Vec and len(x.items) == n else None


def _innermost(codes: dict, exc: BaseException) -> tuple | None:
    """(info, traceback entry) of the innermost compiled frame `exc` passed through, or None."""
    where = None
    tb = exc.__traceback__
    while tb is not None:
        info = codes.get(tb.tb_frame.f_code)
        if info is not None:
            where = (info, tb)
        tb = tb.tb_next
    return where


def _fault_pc(info: _Info, tb: Any) -> int:
    """The instruction whose code raised in compiled frame `tb`: its line's pc (the line table),
    or the pc of the argument expression folded into that line's call whose columns hold the
    failing bytecode (Python records the position of each bytecode: co_positions)."""
    pc = info.lines.get(tb.tb_lineno, (0,))[0]
    spans = info.cols.get(tb.tb_lineno)
    if spans:
        positions = list(tb.tb_frame.f_code.co_positions())
        i = tb.tb_lasti // 2  # one entry per 2-byte code unit
        if 0 <= i < len(positions):
            _, _, col, end = positions[i]
            for start, stop, k in spans:
                if col is not None and end is not None and start <= col and end <= stop:
                    return k
    return pc


def _positioned(tier: FastTier | None, exc: BaseException, where: tuple | None,
                outer: list | None = None) -> BaseException:
    """`exc` as a LispError carrying the position of the compiled frame `where` (info, tb),
    with the same message the interpreter gives (python_error). `outer`: the compiled frames it
    passed through, outermost first, where a position in the prelude moves to the program's call."""
    if not isinstance(exc, (LispError, RecursionError) + _CATCHABLE):
        return exc
    if where is None:
        if isinstance(exc, LispError):
            return exc
        limit = limit_error(exc)  # out of memory, an int too large to print: as the interpreter says
        if limit is not None:
            return limit
        return badarg("value nested too deeply to process") if isinstance(exc, RecursionError) \
            else badarg(f"bad argument ({exc})")
    info, tb = where
    pc = _fault_pc(info, tb)
    if isinstance(exc, LispError):
        err = exc
    else:
        loc = tb.tb_frame.f_locals
        regs = [loc.get(f"r{i}") for i in range(info.proto.nregs)]
        for i, (kind, v) in info.aliases.get(tb.tb_lineno, {}).items():
            regs[i] = regs[v] if kind == "r" else v
        err = _call_error(tier, info.proto, pc, regs, exc) or python_error(info.proto, pc, regs, exc)
    if err.pos is None:
        err.pos = info.proto.position(pc)
    if outer and err.pos[0] == _PRELUDE_FILE:
        # the prelude's builtins fail only on what they were given: report the program's call
        for oinfo, otb in reversed(outer):
            if oinfo.lines.get(otb.tb_lineno, (0, ""))[1] == "tail":
                continue  # a frame that tail-called is gone in the interpreter: its caller's call it is
            m = oinfo.proto.module
            if m is not None and m.file != _PRELUDE_FILE:
                err.pos = oinfo.proto.position(_fault_pc(oinfo, otb))
                break
    return err


_CALLS = frozenset({"CALL", "TAILCALL", "CALLG", "TAILCALLG", "APPLY", "TAILAPPLY"})


def _call_error(tier: FastTier | None, p: Proto, pc: int, regs: list, exc: BaseException) -> LispError | None:
    """The interpreter's error for the call at pc, which Python refused to make: a callee that
    is no function (AttributeError on `.fast`), or a Lisp function given the wrong number of
    arguments (TypeError). None for a builtin (the interpreter's python_error says it)."""
    op, f = decode_fields(p.code[pc])
    name = op.name
    if name not in _CALLS:
        return None
    a, b = f.get("A", 0), f.get("B", 0)
    n = b
    if name in ("CALLG", "TAILCALLG"):
        callee = tier.globals.get(p.consts[f["C"]].name) if tier is not None else None
    else:
        callee = regs[a]
        if name in ("APPLY", "TAILAPPLY"):
            spread = to_pylist(regs[a + b])
            if spread is None:
                return None
            n = b - 1 + len(spread)
    if callee.__class__ is Closure:
        if isinstance(exc, TypeError):
            try:
                _enter(callee.proto, [None] * n, callee)  # raises the interpreter's badarity
            except LispError as e:
                return e
        return None
    if callee.__class__ is Builtin or name in ("CALLG", "TAILCALLG"):
        return None  # a builtin's own message; a global that is no function raised already
    return _not_callable(callee)


def _nested(f: Closure, args: tuple) -> Any:
    """Run an interpreted function to completion from compiled code (a nested loop)."""
    proc = ctx.proc
    host = ctx.host
    saved = (proc.frames, proc.cl, proc.pc, proc.regs)
    cl, regs = interp.new_process_regs(f, list(args))
    proc.frames, proc.cl, proc.pc, proc.regs = [HALT_FRAME], cl, 0, regs
    # the nested loop counts a slice of its own: the interrupted one's counts come back after it,
    # or a caller that runs such code at every turn would never reach its slice's end and yield
    vm = host.vm
    tier = vm.fast
    counts, ticks = (tier.left, tier.slice, tier.check), vm.ticks_left
    try:
        outcome = interp.run(proc, 4000, host)  # (starts a slice of CPU-time ticks: vm.ticks_left)
    finally:
        tier.left, tier.slice, tier.check = counts
        # the ticks it spent count against the caller's slice: a compiled loop calling it at every
        # turn, its ticks reset each time, was never preempted
        vm.ticks_left = ticks - max(0, vm.slice_ticks - vm.ticks_left)
    result, nested = proc.result, (proc.frames, proc.cl, proc.pc, proc.regs)
    proc.frames, proc.cl, proc.pc, proc.regs = saved
    ctx.proc = proc
    if outcome == DONE:
        return result
    if outcome == FAILED:
        where = proc.where
        proc.where = None
        raise LispError(result, where)
    if outcome == EXITED:
        raise ProcessExit(result)
    if outcome == HALT:
        raise Halt(result)
    raise _NestedSuspend(outcome, *nested)


# --- code generation ----------------------------------------------------------------------------

# What the generator takes from the rows of vm/opcodes.py (a new simple opcode needs nothing here):
# a conditional or match opens an `if`; a row whose template is one assignment `R[A] = expr`
# (no call, no temporary) may be folded into a call's arguments; a `return` row leaves the function.
_BRANCHES = frozenset(op.name for op in OPS if op.flags & {"cond", "match"})
_EXITS = frozenset(op.name for op in OPS if "return" in op.flags)
_ASSIGNMENT = re.compile(r"R\[A\] = ([^\n]+)")
_CALL_OR_TEMP = re.compile(r"[\w\])]\s*\(|\b[xy]\b")


def _pure_expr(op: Op) -> str | None:
    """The expression template of a row that only computes R[A] from its operands, or None."""
    m = _ASSIGNMENT.fullmatch(op.template or "")
    if m is None or _CALL_OR_TEMP.search(m.group(1)) or op.writes != ("A",):
        return None
    return m.group(1)


_PURE = {op.name: e for op in OPS if (e := _pure_expr(op)) is not None}  # name -> expression template
# ADD and MOD: a unary + where the row has `- 0` (both raise for a string, the one value whose +
# or % is no number, and leave every number as it is): for a float, `- 0` is a mixed float and
# int subtraction that CPython does not specialise, while unary + of an int or a float is one
# call returning it
_SIGNED = ("ADD", "MOD")
for _name in _SIGNED:
    assert _PURE[_name].endswith(" - 0"), _name
    _PURE[_name] = "+(" + _PURE[_name][:-4] + ")"
# Rows with a template whose shape here is written by hand: boxes resolved once per call (see
# build), a box made inline, a list built inline as the loop's own shape of LIST does, and a
# `loop`'s marker, which opens a while loop (_Gen.loop_block).
# HEAD and TAIL read the cell's slot without testing its class first: any other Lisp value has
# no such attribute, and the AttributeError is the row's error (python_error names head or tail).
# MUL tests the product's class instead of computing `- 0` (which makes a repeated string an
# error) on every product: for a float that is a mixed float and int subtraction, not specialised.
# ADD and MOD take a unary + instead of their `- 0` (see _SIGNED below).
_WRITTEN_HERE = frozenset({"GETUPBOX", "SETUPBOX", "BOX", "LIST", "LOOP", "HEAD", "TAIL", "MUL", "ADD", "MOD"})
# The $names of the templates and what they are in compiled code (the tier adds its own four).
_SHARED_NAMES: dict[str, Any] = {
    "TRUE": TRUE, "FALSE": FALSE, "UNDEF": UNDEF, "Cons": Cons, "Vec": Vec, "INT_MIN": INT_MIN,
    "INT_LIMIT": INT_LIMIT, "product_too_large": product_too_large, "undefined_global": undefined_global,
    "not_a_cons": not_a_cons, "list_of": list_of,
}
_TEMPLATE_NAMES = frozenset(_SHARED_NAMES) | {"set_global", "def_global", "own_box", "new_box"}
# Builtins that compiled code computes inline instead of calling (CALLB of NAME with N arguments):
# NAME -> (N, expression). {0} {1} are the argument registers, {f} the builtin itself, which the
# expression calls for any case it does not decide, so that errors and their messages are the
# builtin's own; x and y are temporaries. Each expression must give what the builtin gives.
_INLINE: dict[str, tuple[int, str]] = {
    "not": (1, "_TRUE if (x := {0}) is _FALSE or x is None else _FALSE"),
    "nil?": (1, "_TRUE if {0} is None else _FALSE"),
    "list?": (1, "_TRUE if (x := {0}) is None or x.__class__ is _Cons else _FALSE"),
    "empty?": (1, "_TRUE if (x := {0}) is None else _FALSE if x.__class__ is _Cons else {f}(x)"),
    "int?": (1, "_TRUE if {0}.__class__ is int else _FALSE"),
    "float?": (1, "_TRUE if {0}.__class__ is float else _FALSE"),
    "number?": (1, "_TRUE if (x := {0}.__class__) is int or x is float else _FALSE"),
    "string?": (1, "_TRUE if {0}.__class__ is str else _FALSE"),
    "symbol?": (1, "_TRUE if {0}.__class__ is _Sym else _FALSE"),
    "vector?": (1, "_TRUE if {0}.__class__ is _Vec else _FALSE"),
    "fn?": (1, "_TRUE if (x := {0}.__class__) is _Closure or x is _Builtin else _FALSE"),
    "pid?": (1, "_TRUE if {0}.__class__ is _Pid else _FALSE"),
    "ref?": (1, "_TRUE if {0}.__class__ is _Ref else _FALSE"),
    "bool?": (1, "_TRUE if (x := {0}) is _TRUE or x is _FALSE else _FALSE"),
    # a closure is never one of the builtins list/map and friends apply natively
    "sys/native-fn?": (1, "_FALSE if (x := {0}).__class__ is not _Builtin else {f}(x)"),
    "str": (1, "x if (x := {0}).__class__ is str and len(x) <= " + str(MAX_TEXT) + " else {f}(x)"),
    "str/find": (2, "(None if (y := x.find(y)) < 0 else y) if (x := {0}).__class__ is str "
                    "and (y := {1}).__class__ is str else {f}({0}, {1})"),
}
# The same builtins as the test of a branch (`(if (empty? xs) ...)`: a CALLB whose register
# only the TEST after it reads): an expression true when the builtin's value is truthy, so
# that no _TRUE or _FALSE is made and tested again (see _Gen.plan_copies).
_INLINE_TEST: dict[str, str] = {
    "not": "(x := {0}) is _FALSE or x is None",
    "nil?": "{0} is None",
    "list?": "(x := {0}) is None or x.__class__ is _Cons",
    # b_empty decides what is neither nil nor a cell (and raises for a non-collection)
    "empty?": "(x := {0}) is None or x.__class__ is not _Cons and ((y := {f}(x)) is not _FALSE and y is not None)",
    "int?": "{0}.__class__ is int",
    "float?": "{0}.__class__ is float",
    "number?": "(x := {0}.__class__) is int or x is float",
    "string?": "{0}.__class__ is str",
    "symbol?": "{0}.__class__ is _Sym",
    "vector?": "{0}.__class__ is _Vec",
    "fn?": "(x := {0}.__class__) is _Closure or x is _Builtin",
    "pid?": "{0}.__class__ is _Pid",
    "ref?": "{0}.__class__ is _Ref",
    "bool?": "(x := {0}) is _TRUE or x is _FALSE",
    # found (an index, even 0) is true: `in` is find's >= 0 without a method call
    "str/find": "y in x if (x := {0}).__class__ is str and (y := {1}).__class__ is str "
                "else ((x := {f}({0}, {1})) is not _FALSE and x is not None)",
}
# Rows whose value a TEST right after may read as a condition instead (R[B], R[C] their operands).
_ROW_TEST: dict[str, str] = {
    "NOT": "(x := {B}) is _FALSE or x is None",
    "EQ": "{B} == {C}",
    "NE": "not ({B} == {C})",
    "LT": "{B} < {C}",
    "LE": "{B} <= {C}",
    "GT": "{B} > {C}",
    "GE": "{B} >= {C}",
}
# Straight-line rows that never leave the frame but by an error: no call, wait or jump. Between a
# copy (MOVE, LOADK, LOADI) and its one reader, or a value and the MOVE that takes it, only these
# may run for the generator to skip the copy (nothing can unwind the frame to the interpreter
# while the skipped register is out of date: see _Gen.plan_copies).
_QUIET = frozenset((
    "MOVE LOADK LOADI LOADBOOL GETUPVAL UNBOX GETGLOBAL ADD SUB MUL DIV IDIV MOD ADDI NEG NOT EQ NE LT LE GT GE "
    "CONS HEAD TAIL LIST VECTOR BAND BOR BXOR BNOT SELF").split())
# Of those, the rows that write R[A] once at their end (`R[A] = ...` last), never reading it
# after: they may write a MOVE's destination instead of their own register.
_RETARGETABLE = _QUIET - {"LOADBOOL", "MOVE"}
# Rows written by hand in a typed loop (_Gen.simple), and their Python operator.
_TYPED = {"ADD": "+", "SUB": "-", "MUL": "*", "MOD": "%"}
# A typed loop's int registers bounded at entry (loop_bounds): within 2 ** 64, a compare of small ints
_BOUND_BITS = 64
_BOUND = 1 << _BOUND_BITS
# Rows that read each operand once, as the one reader of a folded sum in a typed loop (_Gen.fold_into).
_NUMBER_READERS = frozenset(("MOVE ADD SUB MUL MOD ADDI IFEQ IFLT IFLE IFGT IFGE IFEQI IFLTI IFLEI IFGTI IFGEI "
                             "LT LE GT GE EQ").split())
# `send` to a pid straight to the host (the message path: b_send's frame less per message); a
# name, or any message once a Box was ever made (copied, vm/boxes.py), goes through the builtin.
_INLINE["send"] = (2, "(_ctx.host.send(_ctx.proc, x, (y := {1})) or y) if (x := {0}).__class__ is _Pid "
                      "and not _values.BOXES_MADE else {f}(x, {1})")
# What an actor asks of its process and of a vector of peers at each message (Savina big: pick a
# random peer, send it (list 'ping (self))); each as the builtin gives it, anything else to it.
_INLINE["self"] = (0, "_ctx.proc.pid")
_INLINE["vec/len"] = (1, "len(x.items) if (x := {0}).__class__ is _Vec else {f}(x)")
_INLINE["vec/get"] = (2, "x.items[y] if (x := {0}).__class__ is _Vec and (y := {1}).__class__ is int "
                         "and 0 <= y < len(x.items) else {f}({0}, {1})")
# Calls written by hand below whose argument registers may hold folded expressions.
_FOLDING_CALLS = frozenset({"CALLG", "TAILCALLG", "CALLB"})


_RESUME_OP = dis.opmap["RESUME"]
_JUMP_BACK_OP = dis.opmap["JUMP_BACKWARD"]
_EXT_ARG_OP = dis.opmap["EXTENDED_ARG"]


def _cache_table() -> list[int] | None:
    """The inline cache entries after each opcode (CPython's table: a list by opcode up to 3.12,
    a dict by name in 3.13), or None where it has another shape (then dis is asked instead)."""
    import opcode

    e = getattr(opcode, "_inline_cache_entries", None)
    if isinstance(e, dict):
        return [e.get(opcode.opname[i], 0) for i in range(256)]
    if isinstance(e, list) and len(e) >= 256:
        return list(e[:256])
    return None


_CACHES = _cache_table()


def _dis_resumes_and_jumps(code: types.CodeType) -> tuple[list[int], list[tuple[int, int | None]]]:
    """_resumes_and_jumps read through dis: where this Python's opcode module has no cache table
    to read raw bytecode with (and the reference tests compare the raw reading with)."""
    instrs = list(dis.get_instructions(code))
    line_at: dict[int, int | None] = {}
    line = None
    for ins in instrs:
        start = ins.starts_line  # a bool from 3.13 on, the line itself before
        if start is True:
            start = ins.line_number  # type: ignore[attr-defined]
        if start is not None and start is not False:
            line = start
        line_at[ins.offset] = line
    return ([ins.offset for ins in instrs if ins.opname == "RESUME"],
            [(ins.offset, line_at.get(ins.argval)) for ins in instrs if ins.opname == "JUMP_BACKWARD"])


def _resumes_and_jumps(code: types.CodeType) -> tuple[list[int], list[tuple[int, int | None]]]:
    """The offsets of `code`'s RESUMEs, and each JUMP_BACKWARD's offset with the source line of
    the instruction it jumps to (the last line started there or before, as dis counts it).
    Read from the raw bytecode: dis.get_instructions made a third of a build's time."""
    caches = _CACHES
    if caches is None:
        return _dis_resumes_and_jumps(code)
    co = code.co_code
    # an even offset holds an opcode (a cache entry is CACHE, 0): bytes.find, not a loop in Python
    found: list[list[int]] = []
    for want_op in (_RESUME_OP, _JUMP_BACK_OP):
        at: list[int] = []
        i = co.find(want_op)
        while i >= 0:
            if not i & 1:
                at.append(i)
            i = co.find(want_op, i + 1)
        found.append(at)
    resumes = found[0]
    jumps: list[tuple[int, int]] = []
    for i in found[1]:
        arg, k, shift = co[i + 1], i - 2, 8
        while k >= 0 and co[k] == _EXT_ARG_OP:
            arg |= co[k + 1] << shift
            k, shift = k - 2, shift + 8
        # relative to the instruction after it and its caches
        jumps.append((i, i + 2 + 2 * caches[_JUMP_BACK_OP] - 2 * arg))
    if not jumps:
        return resumes, []
    want = {t for _, t in jumps}
    line_of: dict[int, int | None] = {}
    last = None
    for start, end, line in code.co_lines():
        if line is not None:
            last = line
        for t in want:
            if start <= t < end:
                line_of[t] = last
    return resumes, [(o, line_of.get(t)) for o, t in jumps]


def _reads_writes(name: str, f: dict[str, int], p: Proto) -> tuple[set[int], set[int]]:
    """Registers an instruction reads and writes (for the inliner's liveness test), from its row."""
    if name == "CLOSURE":  # it reads the registers its prototype captures (no window: a list)
        sub = p.module.protos[f["Bx"]]
        return {i for kind, i in sub.upvals if kind == 0}, {f.get("A", 0)}
    op = BY_NAME[name]
    sets = []
    for which in ("reads", "writes"):
        regs: set[int] = set()
        for first, count in op.windows(f, which):
            regs.update(range(first, first + count))
        sets.append(regs)
    return sets[0], sets[1]


def _liveness(succ: list[tuple[int, ...]], effects: list[tuple[set[int], set[int]]]) -> list[set[int]]:
    """The registers live after each instruction (read on some path before written), given each
    instruction's successors and (reads, kills): the usual backward dataflow to a fixed point."""
    n = len(effects)
    live_in: list[set[int]] = [set() for _ in range(n)]
    out: list[set[int]] = [set() for _ in range(n)]
    changed = True
    while changed:
        changed = False
        for i in range(n - 1, -1, -1):
            o: set[int] = set()
            for j in succ[i]:
                if j < n:
                    o |= live_in[j]
            reads, kills = effects[i]
            li = reads | (o - kills)
            if li != live_in[i] or o != out[i]:
                live_in[i], out[i] = li, o
                changed = True
    return out


class _Gen:
    """Python source for one prototype (see the module doc)."""

    def __init__(self, tier: FastTier, p: Proto, osr: int | None = None, server: bool = True,
                 fuse: str | None = None, wait: int | None = None) -> None:
        self.tier = tier
        self.p = p
        self.ops: list[tuple[str, dict[str, int]]] = []
        for word in p.code:
            op, f = decode_fields(word)
            self.ops.append((op.name, f))
        # what each instruction reads and writes, worked out once: the dataflows ask again and
        # again (half of a build's time was spent in _reads_writes before)
        self.rws = [(frozenset(r), frozenset(w)) for r, w in (_reads_writes(name, f, p) for name, f in self.ops)]
        # made per closure: it has upvalues, or reads the running closure (SELF)
        self.up = bool(p.upvals) or any(name == "SELF" for name, _ in self.ops)
        # compiling only the rest of the function from this RECVWAIT pc (FastTier.resume), or None;
        # then written as an OSR function (osr is the same pc: its exits, no safe point at entry)
        self.wait = wait
        if wait is not None:
            osr = wait
        self.osr = osr  # compiling only the loop whose head is this pc (FastTier.osr), or None
        self.loops: list[tuple[int, int]] = []  # (head, end) of the loops being emitted, innermost last
        self.loop_lines: dict[int, int] = {}  # first source lines of each `while` body -> its head pc
        self.again = False  # a self tail call left the innermost while being emitted (_again)
        self.parks = False  # the function takes _top (set by build: a plain function with a receive)
        if wait is not None:
            self.recv = None
        elif osr is not None:
            if osr < 1 or self.ops[osr - 1][0] != "LOOP":
                raise _CannotCompile("no loop here")
            if any(h[0] < osr <= h[1] for h in p.handlers):
                raise _CannotCompile("a loop inside a try")  # its handler would see stale registers
            # a receive in the loop is a scan (receive_block) whose wait gives the frame back
            # to the interpreter at its RECVWAIT, and a message resumes it (FastTier.resume)
            self.recv = None
        else:  # (after reg, peek reg, RECVWAIT pc), or None
            self.recv = self.receive_loop() if server and fuse is None else None
        self.fuse = fuse  # compiling the leaf `p` as the body of FastTier.fused's loop of this kind, or None
        # this is one of the prelude's list loops (_FUSED_LOOPS): its entry tries FastTier.fused
        self.fusing = None
        loop = _FUSED_LOOPS.get(p.name)
        if loop is not None and osr is None and fuse is None and p.module is not None \
                and p.module.file == _PRELUDE_FILE and p.nparams == 3 and not p.rest and not self.up:
            names = [name for name, _ in self.ops]
            if "CALLB" in names and loop[2] in names:
                self.fusing = loop[0]
                tier.loop_errs[loop[0]] = (p.position(names.index("CALLB")), p.position(names.index(loop[2])),
                                           loop[2].lower())
        if p.handlers and len(p.handlers) > 0:
            # start pc -> the trys that start there, outermost first (p.handlers is innermost first)
            self.handlers: dict[int, list[tuple]] = {}
            for h in reversed(p.handlers):
                self.handlers.setdefault(h[0], []).append(h)
        else:
            self.handlers = {}
        self.open: set[tuple] = set()  # the trys being emitted (their bodies start at their own pc)
        self.out: list[str] = []
        self.info = _Info(p)
        # ASCII letters and digits only: Python normalises identifiers (NFKC: `ﬁb` is `fib`)
        # and refuses some letters-and-digits (`f²`); the number keeps names unique
        safe = "".join(ch if ch.isascii() and ch.isalnum() else "_" for ch in p.name)
        self.fname = f"lisp_{tier.count}_{safe[:40]}"
        tier.count += 1
        self.consts: dict[int, str] = {}
        self.floats: set[int] = set()  # registers known to hold a float here (see known_floats)
        self.floats_at = -1  # the instruction they are known before
        self.targets = self.jump_targets()
        self.inlined: dict[int, str] = {}  # pc of a pure instruction folded into the next call
        self.restart: dict[int, int] = {}  # call pc -> first pc to re-run after deep recursion
        self.arg_cols: dict[int, tuple[str, list[tuple[int, int, int]]]] = {}  # see args()
        self.skip: set[int] = set()  # instructions not emitted: a copy forwarded, a fused test's value
        self.subst: dict[int, dict[int, tuple[str, Any]]] = {}  # pc -> registers it names otherwise
        self.fused_tests: dict[int, int] = {}  # TEST pc -> pc of the instruction whose value it tests
        self.alias: dict[int, tuple[str, Any]] | None = None  # self.subst of the instruction being emitted
        self.live: list[set[int]] | None = None  # registers live after each instruction (plan_copies)
        self.facts: dict[int, dict[int, type]] | None = None  # pc -> number registers' classes there (typed loop)
        self.small: set[int] = set()  # int products of the typed loop that stay far under the int limit (loop_bounds)
        self.eff: list[tuple[set[int], set[int]]] | None = None  # (reads, writes) as emitted (plan_copies)
        self.pending: dict[int, tuple[str, int]] = {}  # register -> (expression, pc of its one reader): see fold_into
        self.succ: list[tuple[int, ...]] = []  # each instruction's successors (live_out)
        self.live_eff: list[set[int]] | None = None  # liveness as emitted (live_emitted, plan_copies)
        # registers live after each instruction, or None where the flow is not simple (live_out)
        self.live_after = self.live_out()
        self.pending_reads: dict[int, set[int]] = {}  # register -> every register its folded expression reads
        self.plan_inlining()
        self.plan_copies()

    def receive_loop(self) -> tuple[int, int, int, int] | None:
        """The one receive shape compiled resumable: a function whose last act is a `receive`
        without `after` whose clauses each end the function (return, or call: a server loop such
        as `(def node (next) (receive (msg ... (node next))))`, or an actor step such as
        `(def ping (p n) (send p 'ping) (receive ('pong (ping p (- n 1)))))`), with any code
        before it that falls into it. Its wait resumes in compiled code (the loop calls the
        function with _top at its RECVWAIT: vm/loopgen.py), so a process serving messages runs
        compiled between two waits. Any other receive is a receive_block.
        Returns (after register, peek register, RECVWAIT pc, the receive's first pc), or None if
        there is none."""
        ops = self.ops
        if not any(name in _RECV for name, _ in ops):
            return None
        p = self.p
        if self.up or p.rest or p.handlers or len(ops) < 5:
            return None
        k = next(i for i, (name, _) in enumerate(ops) if name == "RECVSTART") - 1
        if k < 0 or k + 2 >= len(ops):
            return None
        (n0, f0), (n1, _), (n2, f2) = ops[k], ops[k + 1], ops[k + 2]
        if n0 != "LOADNIL" or f0.get("B", 0) != 0 or n1 != "RECVSTART" or n2 != "RECVPEEK":
            return None
        peek = k + 2
        w = peek + 1 + f2["sBx"]
        if not peek + 2 <= w < len(ops) or ops[w][0] != "RECVWAIT" or ops[w - 1][0] != "RECVNEXT":
            return None
        if ops[w][1].get("A") != f0.get("A") or w + 1 + ops[w][1]["sBx"] != peek or w + ops[w - 1][1]["sJ"] != peek:
            return None
        for i, (name, _) in enumerate(ops):
            if name in _RECV and i not in (k + 1, peek, w - 1, w) and not (name == "RECVTAKE" and peek < i < w - 1):
                return None
        return f0["A"], f2["A"], w, k

    def receive_block(self, pc: int, e: int, ind: int, resumed: bool = False) -> int:
        """Any other receive (RECVSTART at pc): the scan of the mailbox as a Python while loop
        whose clauses are any region. A message that matches is taken and its clause runs here,
        compiled; when the mailbox holds no match the wait is the interpreter's: _Wait unwinds
        this frame to its RECVWAIT, which waits, times out into the `after` body, or scans the
        messages that come, interpreted. So the `after` body is never run here; the code goes
        on after the receive. `resumed`: a resume function's (FastTier.resume) scan, which goes on
        from the process's scan position (the receive was started, interpreted)."""
        ops = self.ops
        if pc + 1 >= len(ops) or ops[pc + 1][0] != "RECVPEEK":
            raise _CannotCompile("receive layout")
        peek = pc + 1
        msg = ops[peek][1]["A"]
        w = peek + 1 + ops[peek][1]["sBx"]
        if not peek + 2 <= w < len(ops) or ops[w][0] != "RECVWAIT" or ops[w - 1][0] != "RECVNEXT" \
                or w + ops[w - 1][1]["sJ"] != peek or w + 1 + ops[w][1]["sBx"] != peek:
            raise _CannotCompile("receive layout")
        end = e  # where a clause goes on after its body: past the `after` body
        for i in range(peek + 1, w - 1):
            if ops[i][0] == "JMP" and self.target(i) > w:
                end = self.target(i)
                break
        if end > e:
            raise _CannotCompile("receive range")
        L = self.line
        L(ind, "_p = _ctx.proc", pc)
        if not resumed:
            L(ind, "_p.scan = _p.mbhead", pc)
            L(ind, "_p.deadline = None", pc)
        outer = self.open_while(ind)
        L(ind, "while True:", peek)
        self.loop_lines[len(self.out)] = -1  # not a safe point: the scan is under way
        self.loop_lines[len(self.out) + 1] = -1
        L(ind + 1, "_mb = _p.mailbox", peek)
        L(ind + 1, "if _mb is None or _p.scan >= len(_mb):", peek)
        if self.osr is not None:
            if self.pending:
                raise _CannotCompile("a folded value across a wait")
            # an OSR or resume function gives its frame back: the interpreter's RECVWAIT waits
            L(ind + 2, self.exit_to(w), w)
        else:
            if self.parks and not self.pending:  # called by the loop: the frame goes back to it
                L(ind + 2, "if _top:", w)
                regs = ", ".join(self.r(i) for i in range(self.p.nregs))
                L(ind + 3, f"return _Parked({w}, [{regs}])", w)
            L(ind + 2, "_rwait()", w)  # the interpreter's RECVWAIT waits (unwound, see unwind)
        L(ind + 1, f"{self.r(msg)} = _mb[_p.scan]", peek)
        self.loops.append((-1, end))  # a clause's JMP to the end leaves the scan (break)
        self.region(peek + 1, w - 1, ind + 1)
        self.loops.pop()
        L(ind + 1, "_p.scan += 1", w - 1)
        self.close_while(ind, outer)
        return end

    def jump_targets(self) -> set[int]:
        out = set()
        for i, (name, f) in enumerate(self.ops):
            if name == "JMP":
                out.add(i + 1 + f["sJ"])
        for start, end, handler, _ in self.p.handlers:
            out.update((start, end, handler))
        return out

    def plan_inlining(self) -> None:
        """Fold pure instructions that compute a call's arguments into the call expression,
        when the register dies at the call: `r2 = F(r0 - 1)` instead of two statements."""
        for j, (name, f) in enumerate(self.ops):
            if name not in _FOLDING_CALLS or j in self.targets or self.inline_call(name, f) is not None:
                continue
            a, b = f.get("A", 0), f.get("B", 0)
            args = set(range(a + 1, a + b + 1))
            group: list[int] = []
            k = j - 1
            while k >= 0 and k + 1 not in self.targets:
                kname, kf = self.ops[k]
                if kname not in _PURE:
                    break
                reads, writes = self.rws[k]
                (dst,) = writes
                if dst not in args or reads & args or not self.dead_after(dst, j):
                    break
                group.append(k)
                k -= 1
            if group:
                for k in group:
                    self.inlined[k] = self.expr_of(k)
                self.restart[j] = min(group)

    def successors(self, i: int) -> tuple[int, ...]:
        """The instructions control may reach next from instruction i: none after a return or a
        tail call (a self tail call reads its arguments only), two after a branch."""
        name = self.ops[i][0]
        if name == "JMP":
            return (self.target(i),)
        if name in _BRANCHES:
            return (i + 1, i + 2)
        if not BY_NAME[name].falls:
            return ()
        return (i + 1,)

    def live_out(self) -> list[set[int]] | None:
        """The registers live after each instruction (read on some path before written), or None
        where the function's control flow is not this simple graph (a try, whose handler is
        entered from anywhere in it, or a receive)."""
        ops, p = self.ops, self.p
        if p.handlers or any(name in _RECV for name, _ in ops):
            return None
        succ: list[tuple[int, ...]] = []
        effects = []
        for i, (name, _) in enumerate(ops):
            op = BY_NAME[name]
            succ.append(self.successors(i))
            reads, writes = self.rws[i]
            # a match writes its registers only when it matches: it kills nothing
            effects.append((reads, set() if "match" in op.flags else writes))
        self.succ = succ
        return _liveness(succ, effects)

    def live_emitted(self) -> list[set[int]]:
        """live_out over the instructions as emitted (self.eff): a forwarded copy or a MOVE whose
        value was written straight to its destination does nothing where it stood, and its
        reader reads the source; fold_into needs this one (the bytecode's says a register is
        dead after an instruction when a forwarded copy still reads it later)."""
        assert self.eff is not None
        fused = set(self.fused_tests.values())
        effects = []
        for i, (name, _) in enumerate(self.ops):
            if i in self.skip and i not in fused:
                effects.append((set(), set()))
            else:
                reads, writes = self.eff[i]
                effects.append((reads, set() if "match" in BY_NAME[name].flags else writes))
        return _liveness(self.succ, effects)

    def quiet(self, i: int) -> bool:
        """Is instruction i one that cannot leave the frame but by an error (_QUIET, or an inline builtin)?"""
        name, f = self.ops[i]
        return name in _QUIET or (name == "CALLB" and self.inline_call(name, f) is not None)

    def plan_copies(self) -> None:
        """Fewer stores of registers that die at once (none changes what the interpreter would
        see if the frame were unwound: each skipped register is dead or not yet needed there):
        - a copy (MOVE, LOADK, LOADI) read by one later instruction only, with nothing but quiet
          rows between that touch neither register: that reader names the source instead
          (`r8 = 31; x = r3 * r8` is `x = r3 * 31`);
        - a value (a quiet row or a call) whose register a later MOVE copies and nothing else
          reads: it is written straight to the MOVE's destination (`r7 = F(...); r4 = r7` is
          `r4 = F(...)`; unwound inside the call, the interpreter goes on at the call's next
          instruction and does the copy itself);
        - a comparison, `not` or type predicate whose value only the TEST right after reads:
          the test is the predicate (`if r3 is None:` instead of making _TRUE and testing it).
        An error in such a line still names its operands' values: the line's aliases (_Info)."""
        if self.fuse is not None:
            return
        out = self.live_after
        if out is None:
            return
        self.live = out
        ops, p, targets = self.ops, self.p, self.targets
        n = len(ops)
        # each instruction's registers as emitted: a retargeted value writes the MOVE's
        # destination, a reader of a forwarded copy reads the copy's source
        rw = list(self.rws)
        for i, (name, f) in enumerate(ops):  # values written straight to a MOVE's destination
            a = f.get("A", 0)
            if i in self.inlined or not (name in _RETARGETABLE or name in ("CALL", "CALLG", "CALLB")):
                continue
            reads, writes = rw[i]
            if writes != {a} or a in reads:
                continue
            for j in range(i + 1, n):
                if j in targets or j in self.inlined:
                    break
                jname, jf = ops[j]
                if jname == "MOVE" and jf.get("B", 0) == a:
                    d = jf.get("A", 0)
                    if a not in out[j] and d != a and \
                            not any(d in rw[k][0] or d in rw[k][1] for k in range(i + 1, j)):
                        self.skip.add(j)
                        self.subst[i] = {a: ("r", d)}
                        rw[i] = (reads, {d})
                    break
                if not self.quiet(j) or a in rw[j][0] or a in rw[j][1]:
                    break
        for i, (name, f) in enumerate(ops):  # copies read by one later instruction only
            if name not in ("MOVE", "LOADK", "LOADI", "LOADBOOL") or i in self.inlined or i in self.skip \
                    or i in self.subst:
                continue
            a, b = f.get("A", 0), f.get("B", 0)
            src: tuple[str, Any] = ("r", b) if name == "MOVE" else \
                ("k", p.consts[f["Bx"]] if name == "LOADK" else f["sBx"] if name == "LOADI" else TRUE if b else FALSE)
            if name == "MOVE" and b == a:
                continue
            if src[0] == "k" and not (src[1] is None or src[1] is TRUE or src[1] is FALSE
                                      or src[1].__class__ in (int, float, str, Sym)):
                continue  # only a literal or a constant's name: each use is one load
            for j in range(i + 1, n):
                if j in self.skip and j not in targets:
                    continue  # a copy not made: its value is written where it is made
                if j in targets or j in self.inlined:
                    break
                jname, jf = ops[j]
                reads, writes = rw[j]
                if a in reads:
                    consumer = (jname in _QUIET or jname == "RETURN" or "cond" in BY_NAME[jname].flags
                                or (jname == "CALLB" and self.inline_call(jname, jf) is not None))
                    if consumer and a not in out[j] and a not in writes and \
                            not (src[0] == "r" and b in writes) and a not in self.subst.get(j, {}):
                        self.skip.add(i)
                        self.subst.setdefault(j, {})[a] = src
                        rw[j] = ((reads - {a}) | ({b} if src[0] == "r" else set()), writes)
                    break
                if not self.quiet(j) or a in writes or (src[0] == "r" and b in writes):
                    break
        self.eff = rw  # what each instruction reads and writes as emitted (see fold_into)
        # a predicate only the next TEST reads
        for i in range(n - 1):
            name, f = ops[i]
            tname, tf = ops[i + 1]
            if tname != "TEST" or i + 1 in targets or i in self.skip or i in self.inlined:
                continue
            a = f.get("A", 0)
            if tf.get("A", 0) != a or a in out[i + 1] or a in self.subst.get(i, {}) or i + 1 in self.subst:
                continue
            if name in _ROW_TEST or (name == "CALLB" and p.consts[f["C"]].name in _INLINE_TEST
                                     and self.inline_call(name, f) is not None):
                self.skip.add(i)
                self.fused_tests[i + 1] = i
        self.live_eff = self.live_emitted()

    def test_form(self, pc: int) -> str:
        """The condition form of the predicate at pc (see plan_copies), its registers aliased."""
        name, f = self.ops[pc]
        self.alias = self.subst.get(pc)
        try:
            if name == "CALLB":
                bname = self.p.consts[f["C"]].name
                a = f.get("A", 0)
                return _INLINE_TEST[bname].format(*(self.r(a + 1 + j) for j in range(f.get("B", 0))),
                                                  f=self.k(BUILTINS[bname].fn))
            return _ROW_TEST[name].format(B=self.r(f.get("B", 0)), C=self.r(f.get("C", 0)))
        finally:
            self.alias = None

    def inline_call(self, name: str, f: dict[str, int]) -> str | None:
        """The inline expression of a CALLB of a builtin in _INLINE with its number of
        arguments (they are then never folded: plain registers), or None."""
        if name != "CALLB":
            return None
        bname = self.p.consts[f["C"]].name
        row = _INLINE.get(bname)
        a, b = f.get("A", 0), f.get("B", 0)
        if bname == "str" and 2 <= b <= 8 and not _values.SPEEDUPS:
            # strings joined by +, when all are strings and the result is no longer than str allows
            # (with the extension, str is one C call, which costs less than these tests)
            regs = [self.r(a + 1 + j) for j in range(b)]
            test = " and ".join(f"{r}.__class__ is str" for r in regs)
            size = " + ".join(f"len({r})" for r in regs)
            fn = self.k(BUILTINS[bname].fn)
            return f"({' + '.join(regs)}) if {test} and {size} <= {MAX_TEXT} else {fn}({', '.join(regs)})"
        if row is None or row[0] != b:
            return None
        return row[1].format(*(self.r(a + 1 + j) for j in range(b)), f=self.k(BUILTINS[bname].fn))

    def dead_after(self, reg: int, j: int) -> bool:
        """Is `reg` written (or the function left) before any read, after instruction j?"""
        if self.live_after is not None:
            return reg not in self.live_after[j]  # on every path, across branches and joins too
        for i in range(j + 1, len(self.ops)):
            if i in self.targets:
                return False
            name, f = self.ops[i]
            if name in _BRANCHES or name == "JMP":
                return False
            reads, writes = self.rws[i]
            if reg in reads:
                return False
            if reg in writes:
                return True
            if name in _EXITS:
                return True
        return False

    def expr_of(self, k: int) -> str:
        """The expression of pure instruction k, to fold into a call's arguments."""
        name, f = self.ops[k]
        expr = self.render(_PURE[name], f)
        return f"({expr})" if " " in expr else expr

    # emission helpers
    def line(self, indent: int, text: str, pc: int | None = None, kind: str = "op", dst: int = 0,
             args: bool = False) -> None:
        """Emit a line of source for instruction pc; `args`: it ends with the argument list of
        pc's call (then the columns of its folded expressions go to the column table)."""
        self.out.append("    " * indent + text)
        if self.alias:
            self.info.aliases[len(self.out)] = self.alias
        if pc is not None:
            self.info.lines[len(self.out)] = (pc, kind, dst)
            if args and pc in self.arg_cols:
                arglist, cols = self.arg_cols[pc]
                base = 4 * indent + text.rfind(arglist)  # the argument list is the line's last
                self.info.cols[len(self.out)] = [(base + s, base + e, k) for s, e, k in cols]

    def k(self, value: Any) -> str:
        c = value.__class__
        if value is None:
            return "None"
        if value is TRUE:
            return "_TRUE"
        if value is FALSE:
            return "_FALSE"
        # a negative literal in parentheses: a template may put `.attr` after it, and
        # `-2.5.__class__` is -(2.5.__class__)
        if c is int:
            return repr(value) if value >= 0 else f"({value!r})"
        if c is float and value == value and value not in (float("inf"), float("-inf")):
            text = repr(value)
            return f"({text})" if text.startswith("-") else text
        name = f"K{id(value)}"
        self.tier.ns[name] = value
        return name

    def r(self, i: int) -> str:
        alias = self.alias
        if alias is not None and i in alias:
            kind, v = alias[i]
            if kind == "k":
                return self.k(v)
            i = v
        if self.pending and i in self.pending:  # a folded value's one reader (fold_into)
            return self.pending.pop(i)[0]
        return f"r{i}"

    def args(self, a: int, n: int, pc: int | None = None) -> str:
        """The argument list of a call at pc: registers, or the folded expressions. The columns
        of those that can raise, relative to the list, are left in self.arg_cols[pc] for line()."""
        folded = {}
        if pc is not None and pc in self.restart:
            for k in range(self.restart[pc], pc):
                folded[self.ops[k][1]["A"]] = k
        parts, cols, at = [], [], 0
        for j in range(n):
            k = folded.get(a + 1 + j)
            text = self.r(a + 1 + j) if k is None else self.inlined[k]
            if k is not None:
                cols.append((at, at + len(text), k))
            parts.append(text)
            at += len(text) + 2
        text = ", ".join(parts)
        if cols:
            self.arg_cols[pc] = (text, cols)  # type: ignore[index]
        return text

    # building
    def build(self) -> tuple[Any, _Info]:
        p = self.p
        params = [self.r(i) for i in range(p.nparams)]
        if p.rest:
            params.append("*" + self.r(p.nparams))
        up = self.up
        self.info.upvals = up
        base = 1 if up else 0
        if self.osr is not None:
            up = False
            self.info.upvals = True  # _cl is its parameter
            if self.wait is not None:
                self.resume_body()
            else:
                self.osr_body()
        elif self.fuse is not None:
            up = False  # one function taking the upvalues, not a factory of one per closure
        elif up:
            ups = [f"U{i}" for i in range(len(p.upvals))]
            self.line(0, f"def make_{self.fname}({', '.join(ups + ['_cl'])}):")
        if self.osr is not None:
            pass
        elif self.fuse is not None:
            self.fused_body()
        elif self.recv is not None:
            self.receive_body(params)
        else:
            # A function with a receive that the loop calls (vm/loopsupport.py _enter_fast: a
            # process started at its GOFAST, fib actors') takes `_top`: then a wait returns its
            # frame (_Parked) instead of raising _Wait, whose unwind walks the traceback. Every
            # register is bound from the start, so that the frame given back has them all.
            self.parks = self.info.parks = (not up and not p.rest and self.fusing is None
                                            and any(name == "RECVSTART" for name, _ in self.ops))
            self.line(base, f"def {self.fname}({', '.join(params + (['*', '_top=False'] if self.parks else []))}):",
                      0, "entry")
            if self.parks and p.nregs > p.nparams:
                self.line(base + 1, " = ".join(self.r(i) for i in range(p.nparams, p.nregs)) + " = None", 0, "entry")
            if up:
                # never runs (compiled to a NOP), but makes _cl a free variable of the function,
                # so that the unwinder finds the closure (and its upvalues) in the frame's locals
                self.line(base + 1, "if False: _cl", 0, "entry")
                # the boxes this call reads or assigns, each resolved once: its own, or this
                # process's copy (the owner test of vm/boxes.py, once per call, not per access)
                for b in sorted({f.get("B", 0) for name, f in self.ops if name in ("GETUPBOX", "SETUPBOX")}):
                    self.line(base + 1, f"_B{b} = U{b} if U{b}.owner == _PK else _touch(U{b})", 0, "entry")
            if p.rest:
                self.line(base + 1, f"{self.r(p.nparams)} = _tolist({self.r(p.nparams)})", 0, "entry")
            if self.fusing is not None:
                # one of the prelude's list loops: its function a leaf, the whole list in one
                # Python loop (FastTier.fused); else, or for the rest of a long list, the Lisp loop
                self.line(base + 1, f"if r0.__class__ is _Closure and _FZ_{self.fusing}.get(r0.proto, 0) is not None:",
                          0, "entry")
                self.line(base + 2, f"_k, _x, _y = _fused({self.fusing!r}, r0, r1, r2)", 0, "entry")
                self.line(base + 2, "if _k == 1:", 0, "entry")
                self.line(base + 3, "return _x", 0, "entry")
                self.line(base + 2, "if _k == 2:", 0, "entry")
                self.line(base + 3, "r1, r2 = _x, _y", 0, "entry")
            self.line(base + 1, "while True:", 0, "entry")
            self.loop_lines[len(self.out)] = 0
            self.loop_lines[len(self.out) + 1] = 0
            self.region(0, len(self.ops), base + 2)
        if up:
            self.line(1, f"return {self.fname}")
        src = "\n".join(self.out) + "\n"
        # exec of the source string, not compile(): the builtin compile() sets up the ast
        # module's types on its first call in a process, most of the first compiled function's
        # cost (docs/performance.md); exec does not. The file name is put on the code objects
        # after, for tracebacks and profilers.
        ns = self.tier.ns
        if _DUMP:
            sys.stderr.write(f"# lispvm fast tier: {p.name}\n{src}\n")
        exec(src, ns)
        made = ns.pop(f"make_{self.fname}" if up else self.fname)
        made.__code__ = _named(made.__code__, f"<lispvm fast {p.name}>")
        if up:
            # the inner function's code object is a constant of the factory's code
            inner = next(c for c in made.__code__.co_consts if hasattr(c, "co_name") and c.co_name == self.fname)
        else:
            inner = made.__code__
        # a fused loop has no safe point: it checks the slice itself (FastTier.fused)
        self.info.safe = {} if self.fuse is not None else self.safe_points(inner)
        self.info.code = inner
        self.info.restart = dict(self.restart)
        self.info.source = src  # type: ignore[attr-defined]
        if not up and self.fuse is None:
            ns[self.fname] = made  # self tail calls compare F_<name> with this
        return made, self.info

    def safe_points(self, code: types.CodeType) -> dict[int, int]:
        """Where the tick handler may preempt: RESUME (the function's start; not in an OSR loop,
        whose registers are not loaded yet) and each JUMP_BACKWARD, at the head of the loop it
        jumps to (found by the source line of its target)."""
        if self.osr is not None and not any(h >= 0 for h in self.loop_lines.values()):
            return {}  # a resume function with no loop of its own (a receive's scan is no safe point)
        resumes, jumps = _resumes_and_jumps(code)
        safe = {}
        if self.osr is None:
            for offset in resumes:
                safe[offset] = 0
        for offset, line in jumps:
            head = self.loop_lines.get(line)  # type: ignore[arg-type]
            if head is not None and head >= 0:
                safe[offset] = head
        return safe

    def fused_body(self) -> None:
        """The leaf `p` as the body of a Python loop over a list (FastTier.fused): map appends
        each value, filter each element whose value is true, reduce carries the value on. It
        stops at the first cell after the slice ended (ticks_left spent), returning
        (values or accumulator, the rest of the list, whether it stopped early)."""
        p, L = self.p, self.line
        kind = self.fuse
        acc = "_acc" if kind == "reduce" else "_out"
        ups = [f"U{i}" for i in range(len(p.upvals))] + ["_cl"] if self.up else []
        L(0, f"def {self.fname}({', '.join(ups + ['_c', acc])}):")
        L(1, "_T = _VM")
        if kind != "reduce":
            L(1, "_add = _out.append")
        for b in sorted({f.get("B", 0) for name, f in self.ops if name == "GETUPBOX"}):
            L(1, f"_B{b} = U{b} if U{b}.owner == _PK else _touch(U{b})")
        L(1, "while _c.__class__ is _Cons:")
        L(2, "if _T.ticks_left <= 0:")
        L(3, f"return {acc}, _c, True")
        if kind == "reduce":
            L(2, "r0, r1 = _acc, _c.head")
        else:
            L(2, "r0 = _e = _c.head")
        L(2, "while True:")
        self.region(0, len(self.ops), 3)
        if kind == "map":
            L(2, "_add(_v)")
        elif kind == "filter":
            L(2, "if _v is not _FALSE and _v is not None:")
            L(3, "_add(_e)")
        else:
            L(2, "_acc = _v")
        L(2, "_c = _c.tail")
        L(1, f"return {acc}, _c, False")

    def osr_body(self) -> None:
        """An OSR function: the registers from the frame, the loop, then the way out at its end."""
        p, L = self.p, self.line
        head = self.osr
        L(0, f"def {self.fname}(_R, _cl):", head)
        regs = ", ".join(self.r(i) for i in range(p.nregs))
        L(1, f"{regs}, = _R", head)
        if p.upvals:
            L(1, f"{', '.join(f'U{i}' for i in range(len(p.upvals)))}, = _cl.upvals", head)
            for b in sorted({f.get("B", 0) for name, f in self.ops if name in ("GETUPBOX", "SETUPBOX")}):
                L(1, f"_B{b} = U{b} if U{b}.owner == _PK else _touch(U{b})", head)
        end = self.loop_block(head - 1, self.ops[head - 1][1], len(self.ops), 1)
        L(1, self.exit_to(end), end)

    def resume_body(self) -> None:
        """A resume function (FastTier.resume): the registers from the frame, the receive's scan
        going on from the process's scan position (its start already done, interpreted), then
        the code after the receive to the function's end. The function's last instruction is a
        return or tail call, so every way through ends in an exit to the interpreter."""
        p, L = self.p, self.line
        w = self.wait
        assert w is not None
        ops = self.ops
        if not 0 <= w < len(ops) or ops[w][0] != "RECVWAIT" or ops[-1][0] not in _EXITS:
            raise _CannotCompile("no receive here")
        start = w + ops[w][1]["sBx"]  # RECVWAIT jumps back to its RECVPEEK, after the RECVSTART
        if start < 0 or ops[start][0] != "RECVSTART":
            raise _CannotCompile("receive layout")
        L(0, f"def {self.fname}(_R, _cl):", w)
        regs = ", ".join(self.r(i) for i in range(p.nregs))
        L(1, f"{regs}, = _R", w)
        if p.upvals:
            L(1, f"{', '.join(f'U{i}' for i in range(len(p.upvals)))}, = _cl.upvals", w)
            for b in sorted({f.get("B", 0) for name, f in ops if name in ("GETUPBOX", "SETUPBOX")}):
                L(1, f"_B{b} = U{b} if U{b}.owner == _PK else _touch(U{b})", w)
        end = self.receive_block(start, len(ops), 1, resumed=True)
        self.region(end, len(ops), 1)

    def receive_body(self, params: list[str]) -> None:
        """A receive loop (see receive_loop): the code before the receive, then its start, peek
        and scan written out, its clauses as any region. `_resume` (the loop resuming the
        function at its RECVWAIT) skips the code before and the start, so the scan goes on from
        where it stopped, and `_top` (the function is the process's current frame, called by the
        loop) makes a wait a return of WAITING with the registers written back to the frame's,
        instead of a _Wait to unwind. One flag for both (only the loop resumes, and it resumes
        only the current frame, with the frame's registers in proc.regs, read back here),
        keyword-only: a call with one argument too many must be a badarity, as for any function.
        Every register is bound from the start (None, as the interpreter's frame has it), so the
        write-back and the unwinder always find them all."""
        after, msg, w, k = self.recv
        peek = k + 2  # the RECVPEEK
        p, L = self.p, self.line
        self.info.wait = w
        L(0, f"def {self.fname}({', '.join(params + ['*', '_top=False'])}):", 0, "entry")
        L(1, "_p = _ctx.proc", 0, "entry")
        allregs = ", ".join(self.r(i) for i in range(p.nregs))
        if k:
            L(1, "if _top:", 0, "entry")
            L(2, f"{allregs}, = _p.regs", 0, "entry")
            if p.nregs > p.nparams:
                L(1, "else:", 0, "entry")
                L(2, " = ".join(self.r(i) for i in range(p.nparams, p.nregs)) + " = None", 0, "entry")
        L(1, "_resume = _top", 0, "entry")
        L(1, "while True:", 0, "entry")
        L(2, f"{self.r(after)} = None", k)
        L(2, "if _resume:", k + 1)
        L(3, "_resume = False", k + 1)
        L(2, "else:", k + 1)
        if k:
            self.region(0, k, 3)
            L(3, f"{self.r(after)} = None", k)  # the code before may have used its register
        L(3, "_p.scan = _p.mbhead", k + 1)
        L(3, "_p.deadline = None", k + 1)
        L(2, "_mb = _p.mailbox", peek)
        L(2, "if _mb is not None and _p.scan < len(_mb):", peek)
        L(3, f"{self.r(msg)} = _mb[_p.scan]", peek)
        L(2, "elif _top:", w)
        if k:
            L(3, f"_p.regs[:] = {allregs},", w)
        elif p.nparams:
            L(3, "_R = _p.regs", w)
            for i in range(p.nparams):
                L(3, f"_R[{i}] = {self.r(i)}", w)
        L(3, "return _WAITING", w)
        L(2, "else:", w)
        L(3, "_rwait()", w)
        self.region(peek + 1, w - 1, 2)
        L(2, "_p.scan += 1", w - 1)
        L(2, "_resume = True", w - 1)
        L(2, "continue", w - 1)

    def target(self, i: int) -> int:
        """Where the JMP at i goes."""
        name, f = self.ops[i]
        assert name == "JMP"
        return i + 1 + f["sJ"]

    def region(self, s: int, e: int, ind: int) -> None:
        """Emit [s, e): control leaves by falling to e, returning or continuing the loop."""
        pc = s
        emitted = False
        while pc < e:
            h = next((h for h in self.handlers.get(pc, ()) if h not in self.open), None)
            if h is not None:
                pc = self.try_block(h, e, ind)
                emitted = True
                continue
            name, f = self.ops[pc]
            if pc in self.skip and pc + 1 in self.fused_tests:
                pc += 1  # the TEST after it is this predicate (plan_copies)
                continue
            if name in _BRANCHES:
                pc = self.if_block(pc, e, ind)
                emitted = True
                continue
            if name == "LOOP":
                pc = self.loop_block(pc, f, e, ind)
                emitted = True
                continue
            if name == "RECVSTART":
                pc = self.receive_block(pc, e, ind)
                emitted = True
                continue
            if name == "JMP" and any(self.target(pc) == h for h, _ in self.loops[:-1]):
                raise _CannotCompile("recur out of a receive")  # Python has no continue of an outer loop
            if name == "JMP" and self.loops and self.target(pc) in self.loops[-1]:
                # a recur (back to the head) or the loop's end
                self.line(ind, "continue" if self.target(pc) == self.loops[-1][0] else "break", pc)
                pc += 1
                emitted = True
                continue
            if name == "JMP":
                t = self.target(pc)
                if t == e and pc == e - 1:
                    pc += 1
                    continue
                if pc < t <= e and not any(j in self.targets for j in range(pc + 1, t)):
                    pc = t  # over code that nothing jumps to (a test the compiler decided)
                    continue
                if self.wait is not None and not self.loops and not self.pending:
                    # a resume function (FastTier.resume) started inside a structure it does not
                    # see: a recur to a `loop`'s head goes on in that loop's OSR function (which
                    # gives back its own way out), any other jump is the interpreter's
                    self.exit_jump(pc, t, ind)
                    pc += 1
                    emitted = True
                    continue
                raise _CannotCompile("unstructured jump")
            if pc in self.skip:
                self.known_floats(pc, name, f)  # a skipped copy still carries what it copies
            elif pc not in self.inlined:
                self.alias = self.subst.get(pc)
                self.simple(pc, name, f, ind)
                self.alias = None
                emitted = True
            pc += 1
        if not emitted:
            self.line(ind, "pass")

    def loop_block(self, pc: int, f: dict[str, int], e: int, ind: int) -> int:
        """A `loop` (the LOOP marker at pc, its body up to its end) as a Python while loop: a
        recur is `continue`, leaving it `break`; its JUMP_BACKWARD is a safe point that resumes
        at the loop's head (see build). A loop whose numbers keep their class from turn to turn
        (loop_types) is written twice: under a test of those classes at entry, a copy whose
        arithmetic on them is untested (see typed), else the plain one."""
        head = pc + 1
        end = head + f["Bx"]
        if not end <= e:
            raise _CannotCompile("loop range")
        outer = self.open_while(ind)
        guard = self.loop_types(pc, head, end) if self.facts is None else None
        if guard is not None:
            facts, test, ints = guard
            small, bounded = self.loop_bounds(head, end, facts, ints)
            if small:
                test += "".join(f" and {-_BOUND} < r{r} < {_BOUND}" for r in sorted(bounded))
            self.line(ind, f"if {test}:", pc)
            self.facts, self.small = facts, small
            try:
                self.while_loop(pc, head, end, ind + 1)
            finally:
                self.facts, self.small = None, set()
            self.line(ind, "else:", pc)
            self.while_loop(pc, head, end, ind + 1)
        else:
            self.while_loop(pc, head, end, ind)
        self.close_while(ind, outer)
        return end

    def while_loop(self, pc: int, head: int, end: int, ind: int) -> None:
        """The Python while loop of the `loop` whose LOOP marker is at pc (see loop_block)."""
        self.line(ind, "while True:", pc)
        self.loop_lines[len(self.out)] = head  # the `while` line and the body's first
        self.loop_lines[len(self.out) + 1] = head
        self.loops.append((head, end))
        self.region(head, end, ind + 1)
        if self.pending:  # pragma: no cover - fold_into picks readers that name their operands
            raise _CannotCompile("a folded value was not read")
        self.line(ind + 1, "break")
        self.loops.pop()

    def fold_into(self, i: int, name: str, f: dict[str, int], x: type, y: type) -> int | None:
        """In a typed loop: the one instruction that reads the value of arithmetic i, when i
        cannot raise (a sum or difference of two ints or two floats, a product of floats, a
        remainder of ints by a constant other than 0) and that reader is a number operation whose
        operands are all numbers (so that no error of it names i's value, which no register
        holds): i's expression is then written into the reader's. Only quiet rows between them,
        none writing i's operands; None otherwise."""
        eff, live, facts = self.eff, self.live_eff, self.facts
        a, c = f.get("A", 0), f.get("C", 0)
        if eff is None or live is None or facts is None or a in self.subst.get(i, {}):
            return None  # (its value written to a MOVE's register: that MOVE is its reader)
        if name in ("ADD", "SUB") and x is not y:
            return None  # an int and a float: a huge int raises OverflowError
        if name == "MUL" and (x is not float or y is not float) and i not in self.small:
            return None  # an int product has its range test, unless loop_bounds keeps it small
        if name == "MOD":
            k = self.subst.get(i, {}).get(c)
            if not (x is int and y is int and k is not None and k[0] == "k" and k[1].__class__ is int and k[1] != 0):
                return None
        # the registers the expression reads where it is written: its operands and, through an
        # operand that is itself a folded expression, that one's (a chain of folds is read late)
        reads = set(eff[i][0])
        for r in eff[i][0]:
            if r in self.pending:
                reads |= self.pending_reads.get(r, set())
        for j in range(i + 1, len(self.ops)):
            if j in self.targets or j in self.inlined:
                return None
            if j in self.skip and j not in self.fused_tests.values():
                continue  # a forwarded copy reads at its reader (eff), a skipped MOVE at its value
            jname, jf = self.ops[j]
            jreads, jwrites = eff[j]
            if a in jreads:
                # (a typed row names its operands before its own register: it may write it)
                if jname not in _NUMBER_READERS or (a in jwrites and jname not in _TYPED) \
                        or (a in live[j] and a not in jwrites) \
                        or j not in facts \
                        or a in self.subst.get(j, {}):
                    return None
                st = facts[j]
                if any(self.operand_class(j, r, st) not in (int, float) for r in self.rws[j][0]):
                    return None
                # read once: (+ i i) of a folded i would take the expression for its first
                # operand only (a set of reads cannot tell); an operand that is a forwarded copy
                # of i (MOVE t i; ADD x t i) reads it too
                alias = self.subst.get(j, {})
                if [alias[r][1] if r in alias and alias[r][0] == "r" else r
                        for first, count in BY_NAME[jname].windows(jf, "reads")
                        for r in range(first, first + count)].count(a) != 1:
                    return None
                self.pending_reads[a] = reads
                return j
            if not self.quiet(j) or a in jwrites or jwrites & reads:
                return None
        return None

    def operand_class(self, pc: int, reg: int, st: dict[int, type]) -> type | None:
        """The class of register `reg` as instruction pc reads it (through its aliases), per `st`."""
        alias = self.subst.get(pc)
        if alias is not None and reg in alias:
            kind, v = alias[reg]
            if kind == "k":
                return v.__class__ if v.__class__ in (int, float) else None
            reg = v
        return st.get(reg)

    def step_types(self, pc: int, st: dict[int, type]) -> dict[int, type]:
        """The number registers' classes after instruction pc as emitted (a skipped copy does
        nothing; a value written to a MOVE's register is that register's), given `st` before.
        Only int and float are followed; anything else a register gets is forgotten."""
        name, f = self.ops[pc]
        st = dict(st)
        b, c = f.get("B", 0), f.get("C", 0)
        _, writes = self.rws[pc]
        if pc in self.skip:
            if pc in self.fused_tests.values():  # the predicate is its test: its register is dead
                for r in writes:
                    st.pop(r, None)
            return st  # else a copy forwarded to its reader, or a MOVE done by its value's writer
        got: type | None = None
        if name == "LOADI":
            got = int
        elif name == "LOADK":
            v = self.p.consts[f["Bx"]]
            got = v.__class__ if v.__class__ in (int, float) else None
        elif name == "MOVE":
            got = self.operand_class(pc, b, st)
        elif name in ("ADDI", "NEG"):
            got = self.operand_class(pc, b, st)
        elif name in ("ADD", "SUB", "MUL", "MOD", "IDIV", "DIV"):
            x, y = self.operand_class(pc, b, st), self.operand_class(pc, c, st)
            if x in (int, float) and y in (int, float):
                # a number and a number give a number or raise: an int only of two ints
                got = float if (x is float or y is float or name == "DIV") else int
        self.set_fact(pc, name, writes, st, got)
        return st

    def set_fact(self, pc: int, name: str, writes: set[int], st: dict[int, Any], got: Any) -> None:
        """After instruction pc: what it writes is no longer known, except `got` (a class or a
        bound, or None) for its one register, which is the MOVE's register where its value is
        written straight there."""
        for r in writes:
            st.pop(r, None)
        if len(writes) != 1:
            return
        dst = next(iter(writes))
        alias = self.subst.get(pc)
        if got is not None:
            if alias is not None and dst in alias and alias[dst][0] == "r" and name != "MOVE":
                dst = alias[dst][1]  # written straight to the MOVE's register
            st[dst] = got
        elif alias is not None and dst in alias and alias[dst][0] == "r":
            st.pop(alias[dst][1], None)

    def loop_types(self, pc: int, head: int, end: int) -> tuple[dict[int, dict[int, type]], str, set[int]] | None:
        """Classes (int or float) for registers live at the loop's head that every turn keeps,
        when some arithmetic in the loop reads them: (the classes known before each instruction
        of the loop when those hold at its head, the entry test). None where nothing is gained
        or the function's flow is not simple (no liveness: a try or a receive); third, the
        registers guarded as ints."""
        live = self.live
        if live is None or self.fuse is not None or end - head > 400:
            return None
        ops = self.ops
        cands = sorted(live[pc])
        arith = {"ADD", "SUB", "MUL", "MOD", "IDIV", "DIV", "ADDI", "NEG"}
        if not any(ops[j][0] in arith for j in range(head, end)):
            return None
        written = set()
        for j in range(head, end):
            written |= self.rws[j][1]
        # a guess: an int, or a float where the loop starts it as one or mixes it with one
        guess: dict[int, type] = {r: int for r in cands}
        for _ in range(6):
            facts, back = self.flow_types(head, end, guess)
            new: dict[int, type] = {}
            for r, t in guess.items():
                # written in the loop: kept only where every jump back gives it a number (a
                # register some jump back leaves unknown, such as a list accumulator, is dropped)
                bt = back.get(r) if r in written else t
                if r not in written:
                    # read-only: a float if some arithmetic mixes it with a float
                    for j in range(head, end):
                        name, f = ops[j]
                        if name in ("ADD", "SUB", "MUL", "DIV") and j in facts:
                            regs = (f.get("B", 0), f.get("C", 0))
                            if r in regs:
                                other = regs[1] if regs[0] == r else regs[0]
                                if self.operand_class(j, other, facts[j]) is float:
                                    bt = float
                if bt in (int, float):
                    new[r] = bt
            if new == guess:
                break
            guess = new
        else:
            return None
        facts, back = self.flow_types(head, end, guess)
        if any(back.get(r) is not t for r, t in guess.items() if r in written):
            return None
        # only the registers some arithmetic of the loop reads
        used = set()
        for j in range(head, end):
            name, f = ops[j]
            if name in arith:
                used |= self.rws[j][0]
        guess = {r: t for r, t in guess.items() if r in used}
        if not guess:
            return None
        facts, back = self.flow_types(head, end, guess)
        if any(back.get(r) is not t for r, t in guess.items() if r in written):
            return None
        test = " and ".join(f"r{r}.__class__ is {t.__name__}" for r, t in sorted(guess.items()))
        return facts, test, {r for r, t in guess.items() if t is int}

    def loop_bounds(self, head: int, end: int, facts: dict[int, dict[int, type]],
                    ints: set[int]) -> tuple[set[int], set[int]]:
        """The int products of a typed loop that cannot reach the Lisp int limit, when the int
        registers `ints` are within _BOUND at the loop's head: (those products' pcs, the registers
        the entry test must bound). A register stays bounded where every turn gives it back
        within _BOUND (a remainder by a constant, a small product plus a small sum); a counter
        that grows each turn does not, and a product it reads keeps its test."""
        written: set[int] = set()
        for j in range(head, end):
            written |= self.rws[j][1]
        at = {r: _BOUND_BITS for r in ints}
        for _ in range(8):
            before, back = self.flow_bits(head, end, facts, at)
            new = {r: _BOUND_BITS for r in at
                   if r not in written or (back.get(r) is not None and back[r] <= _BOUND_BITS)}
            if new == at:
                break
            at = new
        else:
            return set(), set()
        small = set()
        for j, bits in before.items():
            name, f = self.ops[j]
            if name == "MUL" and j not in self.skip:
                x, y = self.operand_bits(j, f["B"], bits), self.operand_bits(j, f["C"], bits)
                if x is not None and y is not None and x + y <= MAX_INT_BITS:
                    small.add(j)  # |product| < 2 ** (x + y) <= INT_LIMIT
        return small, set(at)

    def operand_bits(self, pc: int, reg: int, bits: dict[int, int]) -> int | None:
        """A bound on the bit length of int register `reg` as instruction pc reads it (through
        its aliases: a constant's own), per `bits`; None where none is known."""
        alias = self.subst.get(pc)
        if alias is not None and reg in alias:
            kind, v = alias[reg]
            if kind == "k":
                return abs(v).bit_length() if v.__class__ is int else None
            reg = v
        return bits.get(reg)

    def step_bits(self, pc: int, bits: dict[int, int], st: dict[int, type]) -> dict[int, int]:
        """Bit-length bounds of the int registers after instruction pc (see step_types, whose
        classes `st` before it are the loop's facts): an int constant its own, a sum one more
        than its larger operand, a product the sum of its operands', a remainder its divisor's,
        a floor quotient its dividend's. Anything else a register gets is forgotten."""
        name, f = self.ops[pc]
        bits = dict(bits)
        _, writes = self.rws[pc]
        if pc in self.skip:
            if pc in self.fused_tests.values():
                for r in writes:
                    bits.pop(r, None)
            return bits
        b, c = f.get("B", 0), f.get("C", 0)
        got: int | None = None
        if name == "LOADI":
            got = abs(f["sBx"]).bit_length()
        elif name == "LOADK":
            v = self.p.consts[f["Bx"]]
            got = abs(v).bit_length() if v.__class__ is int else None
        elif name in ("MOVE", "NEG"):
            got = self.operand_bits(pc, b, bits)
        elif name == "ADDI":
            x = self.operand_bits(pc, b, bits)
            got = None if x is None else max(x, abs(c).bit_length()) + 1
        elif name in ("ADD", "SUB", "MUL"):
            x, y = self.operand_bits(pc, b, bits), self.operand_bits(pc, c, bits)
            if x is not None and y is not None:
                got = max(x, y) + 1 if name != "MUL" else x + y
        elif name == "MOD":
            # Python's remainder is smaller than its divisor in magnitude (0 raises: no value)
            if self.operand_class(pc, b, st) is int:
                got = self.operand_bits(pc, c, bits)
        elif name == "IDIV":
            if self.operand_class(pc, c, st) is int:
                got = self.operand_bits(pc, b, bits)  # |x // y| <= |x| for an int y other than 0
        self.set_fact(pc, name, writes, bits, got if got is not None and got <= MAX_INT_BITS else None)
        return bits

    def flow_bits(self, head: int, end: int, facts: dict[int, dict[int, type]],
                  at_head: dict[int, int]) -> tuple[dict[int, dict[int, int]], dict[int, int]]:
        """(bit-length bounds before each instruction of the loop [head, end) reached from its
        head with `at_head`, the bounds at the jumps back to it: the largest of every jump's).
        At a join a bound that grew is dropped, so that an inner loop's counter ends the walk."""
        return self.loop_flow(
            head, end, at_head,
            lambda j, st: self.step_bits(j, st, facts[j]) if j in facts else None,
            lambda back, st: {r: max(v, st[r]) for r, v in back.items() if st.get(r) is not None},
            lambda v, now: now is not None and now <= v)

    def flow_types(self, head: int, end: int, at_head: dict[int, type]) -> tuple[dict[int, dict[int, type]], dict]:
        """(classes before each instruction of the loop [head, end) reached from its head with
        `at_head`, the classes at the jumps back to the head: a register in one only where
        every jump back agrees)."""
        return self.loop_flow(
            head, end, at_head, self.step_types,
            lambda back, st: {r: t for r, t in back.items() if st.get(r) is t},
            lambda t, now: now is t)

    def loop_flow(self, head: int, end: int, at_head: dict, step: Any, join_back: Any,
                  keep: Any) -> tuple[dict[int, dict], dict]:
        """The forward dataflow both loop analyses share: the state before each instruction of
        [head, end) reached from `head` with `at_head` (`step(pc, state)` the state after pc,
        None where the walk stops), and the states at the jumps back to the head combined by
        `join_back`; at a join a register stays only where `keep(old, new)`."""
        ops = self.ops
        before: dict[int, dict] = {head: dict(at_head)}
        back: dict | None = None
        work = [head]
        while work:
            j = work.pop()
            st = step(j, before[j])
            if st is None:
                continue
            name = ops[j][0]
            for k in self.successors(j):
                if k == head and name == "JMP":
                    back = dict(st) if back is None else join_back(back, st)
                    continue
                if not head <= k < end:
                    continue
                if k not in before:
                    before[k] = dict(st)
                    work.append(k)
                else:
                    merged = {r: v for r, v in before[k].items() if keep(v, st.get(r))}
                    if merged != before[k]:
                        before[k] = merged
                        work.append(k)
        return before, (back or {})

    def open_while(self, ind: int) -> bool:
        """Before an inner while: its self-tail-call flag starts false (see close_while)."""
        outer, self.again = self.again, False
        if self.osr is None and not self.up:
            self.line(ind, "_again = False")
        return outer

    def close_while(self, ind: int, outer: bool) -> None:
        """After an inner while: a self tail call in it (it set _again and broke out) goes on
        leaving the whiles around it, up to the function's own loop, which it continues."""
        if self.again:
            self.line(ind, "if _again:")
            if self.loops:
                self.line(ind + 1, "break")
            else:
                self.line(ind + 1, "continue")
        self.again = outer or (self.again and bool(self.loops))

    def exit_jump(self, pc: int, t: int, ind: int) -> None:
        """A resume function's JMP at pc to t, outside any structure it emits (see region)."""
        fn = self.tier.osr(self.p, t) if t < pc and t >= 1 and self.ops[t - 1][0] == "LOOP" else None
        if fn is None:
            self.line(ind, self.exit_to(t), pc)
            return
        name = f"_OSR_{self.tier.count}"
        self.tier.count += 1
        self.tier.ns[name] = fn
        regs = ", ".join(self.r(i) for i in range(self.p.nregs))
        # the frame is the OSR function's from here: an unwind drops this one (its result is the callee's)
        self.line(ind, f"return {name}(({regs},), _cl)", pc, "tail")

    def exit_to(self, pc: int) -> str:
        """An OSR loop's way out: back to the interpreter at pc with every register."""
        regs = ", ".join(self.r(i) for i in range(self.p.nregs))
        return f"return {pc}, ({regs},)"

    def cond_expr(self, pc: int) -> tuple[str, list[str]]:
        """(expression true when the instruction's test holds, statements to run when it does):
        a conditional's template, or a match written here."""
        name, f = self.ops[pc]
        op = BY_NAME[name]
        if "cond" in op.flags:
            if op.template is None:
                raise _CannotCompile(f"{name} has no template")
            return f"({self.render(op.template, f)})", []
        a, b, c = f.get("A", 0), f.get("B", 0), f.get("C", 0)
        if name == "UNLIST" and 1 <= c <= 4:
            # written out: a message's shape test without a call (docs/performance.md, "Server
            # loops and the ring")
            cells = [self.r(b)]
            tests = [f"{cells[0]}.__class__ is _Cons"]
            for j in range(1, c):
                tests.append(f"(_t{j} := {cells[-1]}.tail).__class__ is _Cons")
                cells.append(f"_t{j}")
            tests.append(f"{cells[-1]}.tail is None")
            regs = ", ".join(self.r(a + j) for j in range(c))
            heads = ", ".join(f"{cell}.head" for cell in cells)
            return "(" + " and ".join(tests) + ")", [f"{regs}, = {heads},"]
        if name == "UNLIST":
            regs = ", ".join(self.r(a + j) for j in range(c))
            binds = [f"{regs}, = _m" if c else "pass"]
            return f"((_m := _unlist({self.r(b)}, {c})) is not None)", binds
        if name == "UNVEC":
            regs = ", ".join(self.r(a + j) for j in range(c))
            binds = [f"{regs}, = _m" if c else "pass"]
            return f"((_m := _unvec({self.r(b)}, {c})) is not None)", binds
        if name == "UNCONS":
            return f"((_m := _uncons({self.r(b)})) is not None)", [f"{self.r(a)}, {self.r(a + 1)} = _m"]
        if name == "UNMAPK":
            key = self.k(self.p.consts[c])
            rb = self.r(b)
            return f"({rb}.__class__ is _Map and (_m := {rb}.m.get({key}, _UNDEF)) is not _UNDEF)", \
                [f"{self.r(a)} = _m"]
        raise _CannotCompile(name)  # pragma: no cover

    def if_block(self, pc: int, e: int, ind: int) -> int:
        name, f = self.ops[pc]
        at = self.fused_tests.get(pc, pc)  # the predicate's pc, when the test is its predicate
        if at != pc:
            expr, binds = f"({self.test_form(at)})", []
        else:
            self.alias = self.subst.get(pc)
            expr, binds = self.cond_expr(pc)
            self.alias = None
        jt = self.target(pc + 1)  # the JMP after the test
        match = "match" in BY_NAME[name].flags
        k = 0 if match else f.get("k", 0)
        # k=0: the test holding skips the jump (continue at pc+2); k=1: the test holding jumps.
        if k:
            if binds:
                raise _CannotCompile("match with inverted sense")  # pragma: no cover
            expr = f"not {expr}"
        if not pc + 2 <= jt <= e:
            raise _CannotCompile("jump out of region")
        then_end, join = jt, None
        if jt - 1 >= pc + 2 and self.ops[jt - 1][0] == "JMP" and jt < self.target(jt - 1) <= e:
            join = self.target(jt - 1)
            then_end = jt - 1
        self.alias = self.subst.get(at)
        self.line(ind, f"if {expr}:", at)
        self.alias = None
        for stmt in binds:
            self.line(ind + 1, stmt, pc)
        if then_end > pc + 2:
            self.region(pc + 2, then_end, ind + 1)
        elif not binds:
            self.line(ind + 1, "pass")
        if join is not None:
            self.line(ind, "else:")
            self.region(jt, join, ind + 1)
            return join
        return jt

    def try_block(self, h: tuple, e: int, ind: int) -> int:
        start, end, handler, reg = h
        if not start < end <= e or end >= len(self.ops):
            raise _CannotCompile("try range")
        after_name, _ = self.ops[end]
        if after_name == "JMP":
            join = self.target(end)
            if not (end + 1 == handler and handler < join <= e):
                raise _CannotCompile("try layout")
            self.line(ind, "try:")
            self.open.add(h)
            self.region(start, end, ind + 1)
            self.open.discard(h)
            self.line(ind, "except _CATCH as _e:")
            self.line(ind + 1, f"{self.r(reg)} = _lisp_value(_e)", handler)
            self.region(handler, join, ind + 1)
            return join
        if after_name == "RETURN" and end + 1 == handler:
            # a try in tail position: the handler returns on every path, up to the region's end
            self.line(ind, "try:")
            self.open.add(h)
            self.region(start, end, ind + 1)
            self.open.discard(h)
            self.line(ind, "except _CATCH as _e:")
            self.line(ind + 1, f"{self.r(reg)} = _lisp_value(_e)", handler)
            self.region(handler, e, ind + 1)
            self.simple(end, "RETURN", self.ops[end][1], ind)
            return e
        raise _CannotCompile("try layout")

    def render(self, template: str, f: dict[str, int]) -> str:
        """`template` (a row's, see vm/opcodes.py) for operands `f`, in this tier's names:
        registers are locals `rN`, a window a tuple display (also an assignment target),
        constants literals or namespace names, globals their cells `C_N`, upvalues `UN`, and
        `$name` the namespace's `_name` (see _TEMPLATE_NAMES)."""
        p = self.p

        def reg(field: str, off: int, nfield: str | None = None, nadj: int = 0) -> str:
            first = f.get(field, 0) + off
            if nfield is None:
                return self.r(first)
            return "(" + "".join(f"{self.r(first + j)}, " for j in range(f.get(nfield, 0) + nadj)).rstrip() + ")"

        def operand(kind: str, field: str) -> str:
            v = f.get(field, 0)
            if kind == "K":
                return self.k(p.consts[v])
            if kind == "G":
                return "C_" + self.tier.gname(p.consts[v].name)
            if kind == "U":
                return f"U{v}"
            return repr(v)  # I: an immediate

        def name(n: str) -> str:
            if n not in _TEMPLATE_NAMES:
                raise _CannotCompile(f"template name ${n} is not bound in the fast tier")
            return "_" + n

        return render(template, reg, operand, name)

    def known_floats(self, pc: int, name: str, f: dict[str, int]) -> bool:
        """Follow the registers known to hold a float along straight-line code (a float
        constant, a copy of one, a product, sum or difference with one); whether an operand of
        this instruction is one. Forgotten at a jump target, after any other instruction, and
        in a function with a try or a receive (a handler is entered from anywhere in its try)."""
        kf = self.floats
        if self.floats_at != pc or pc in self.targets or self.p.handlers or self.recv is not None:
            kf.clear()
        self.floats_at = pc + 1
        a, b, c = f.get("A", 0), f.get("B", 0), f.get("C", 0)
        if name == "LOADK":
            if self.p.consts[f["Bx"]].__class__ is float:
                kf.add(a)
            else:
                kf.discard(a)
            return False
        if name == "MOVE":
            if b in kf:
                kf.add(a)
            else:
                kf.discard(a)
            return False
        if name in ("MUL", "ADD", "SUB"):
            known = b in kf or c in kf
            if known:
                kf.add(a)
            else:
                kf.discard(a)
            return known
        kf.clear()
        return False

    def simple(self, pc: int, name: str, f: dict[str, int], ind: int) -> None:
        """Emit a straight-line instruction: its row's template, or, for the control
        instructions (calls, returns, closures, receive) and the few whose shape here differs
        from the template for speed, the code written below."""
        a, b, c = f.get("A", 0), f.get("B", 0), f.get("C", 0)
        # its own register may be its operand, folded (fold_into): naming it as the target must
        # not take the folded expression (a value written to a MOVE's register: that register)
        own = self.alias[a][1] if self.alias and a in self.alias and self.alias[a][0] == "r" else a
        held = self.pending.pop(own, None)
        ra, L = self.r(a), self.line
        if held is not None:
            self.pending[own] = held
        p = self.p
        op = BY_NAME[name]
        floats = self.known_floats(pc, name, f)
        if self.facts is not None and name in _TYPED and pc in self.facts:
            # in a typed loop (loop_types): two numbers, whose sum or remainder is a number
            # (no unary + to refuse a string) and whose product needs only the int range test
            st = self.facts[pc]
            x, y = self.operand_class(pc, b, st), self.operand_class(pc, c, st)
            if x in (int, float) and y in (int, float):
                j = self.fold_into(pc, name, f, x, y)
                rb, rc = self.r(b), self.r(c)
                if j is not None:
                    self.pending[a] = (f"({rb} {_TYPED[name]} {rc})", j)
                    return
                if name == "MUL" and x is int and y is int and pc not in self.small:
                    L(ind, f"{ra} = {rb} * {rc}", pc, "op", a)
                    L(ind, f"if not _INT_MIN < {ra} < _INT_LIMIT:", pc, "op", a)
                    L(ind + 1, "raise _product_too_large()", pc, "op", a)
                else:
                    L(ind, f"{ra} = {rb} {_TYPED[name]} {rc}", pc, "op", a)
                return
        if self.facts is not None and name == "ADDI" and pc in self.facts:
            x = self.operand_class(pc, b, self.facts[pc])
            if x in (int, float) and (j := self.fold_into(pc, name, f, x, x)) is not None:
                self.pending[a] = (f"({self.render(_PURE[name], f)})", j)  # a number plus an int: no error
                return
        if name == "MUL" and floats:
            # a float times any Lisp value is a float, or the TypeError (or OverflowError) that
            # the tested product raises too: nothing to test
            L(ind, f"{ra} = {self.r(b)} * {self.r(c)}", pc, "op", a)
            return
        if op.template is not None and name not in _WRITTEN_HERE:
            dst = op.windows(f, "writes")[0][0] if op.writes else 0
            for text in self.render(op.template, f).split("\n"):
                L(ind, text, pc, "op", dst)
            return
        if name in _SIGNED:
            L(ind, f"{ra} = {self.render(_PURE[name], f)}", pc, "op", a)
        elif name in ("HEAD", "TAIL"):
            L(ind, f"{ra} = {self.r(b)}.{name.lower()}", pc, "op", a)
        elif name == "MUL":
            L(ind, f"x = {self.r(b)} * {self.r(c)}", pc, "op", a)
            # a float first: one test for it, two for an int (whose range test costs more anyway)
            L(ind, "if x.__class__ is not float:", pc, "op", a)
            L(ind + 1, "if x.__class__ is int:", pc, "op", a)
            L(ind + 2, "if not _INT_MIN < x < _INT_LIMIT:", pc, "op", a)
            L(ind + 3, "raise _product_too_large()", pc, "op", a)
            L(ind + 1, "else:", pc, "op", a)
            L(ind + 2, "x - 0  # a repeated string is no number: the TypeError is *'s error", pc, "op", a)
            L(ind, f"{ra} = x", pc, "op", a)
        elif name == "GETUPBOX":  # _B<b>: the box resolved at entry (see build)
            L(ind, f"{ra} = _B{b}.v", pc)
        elif name == "SETUPBOX":
            L(ind, f"_B{b}.v = {ra}", pc)
        elif name == "BOX":
            note_box()  # when compiled: messages must be scanned once this code can run
            L(ind, f"{ra} = _Box({ra}, _PK)", pc)
        elif name == "LIST":  # a chain of conses, as the loop's own shape of LIST: no helper call
            expr = "None"
            for j in range(b, 0, -1):
                expr = f"_Cons({self.r(a + j)}, {expr})"
            L(ind, f"{ra} = {expr}", pc)
        elif name == "CLOSURE":
            sub = p.module.protos[f["Bx"]]
            pname = self.k(sub)
            caps = ", ".join((self.r(i) if kind == 0 else f"U{i}") for kind, i in sub.upvals)
            if not sub.upvals and not self.tier.compiled_up(sub):
                L(ind, f"{ra} = _mkclosure0({pname})", pc)
            else:
                L(ind, f"{ra} = _mkclosure({pname}, ({caps}{',' if sub.upvals else ''}))", pc)
        elif name == "SELF":
            L(ind, f"{ra} = _cl", pc)
        elif self.osr is not None and name in _EXITS:
            # a return or tail call inside an OSR loop: the interpreter does it (from the first
            # instruction folded into its arguments, if any: they are pure)
            L(ind, self.exit_to(self.restart.get(pc, pc)), pc)
        elif name in ("CALL", "TAILCALL"):
            call = f"({ra}.fast or _resolve({ra}))({self.args(a, b)})"
            if name == "CALL":
                L(ind, f"{ra} = {call}", pc, "call", a)
            else:
                L(ind, f"return {call}", pc, "tail", a)
        elif name in ("CALLG", "TAILCALLG"):
            gname = p.consts[c].name
            g = self.tier.gname(gname)
            call = f"F_{g}({self.args(a, b, pc)})"
            if name == "CALLG":
                L(ind, f"{ra} = {call}", pc, "call", a, args=True)
            elif self.fuse is not None:  # a leaf's tail call of a pure builtin: the loop body's value
                L(ind, f"_v = {call}", pc, "call", a, args=True)
                L(ind, "break", pc)
            elif gname == p.name and not p.rest and b == p.nparams and not self.up:
                # a self tail call, while the global still names this function: loop (for a
                # server loop without parameters too: as a call, each of its waits unwound);
                # from inside a `loop` or a receive's scan, through their `break` (see again)
                L(ind, f"if F_{g} is {self.fname}:", pc)
                if b:
                    params = ", ".join(self.r(j) for j in range(b))
                    L(ind + 1, f"{params}, = {self.args(a, b, pc)},", pc, args=True)
                if self.loops:
                    L(ind + 1, "_again = True", pc)
                    L(ind + 1, "break", pc)
                    self.again = True
                else:
                    L(ind + 1, "continue", pc, "loop")
                L(ind, f"return {call}", pc, "tail", a, args=True)
            else:
                L(ind, f"return {call}", pc, "tail", a, args=True)
        elif name == "CALLB" and (expr := self.inline_call(name, f)) is not None:
            L(ind, f"{ra} = {expr}", pc, "call", a)
        elif name == "CALLB":
            bname = p.consts[c].name
            fn = self.k(BUILTINS[bname].fn)
            L(ind, f"{ra} = {fn}({self.args(a, b, pc)})", pc, "call", a, args=True)
        elif name in ("APPLY", "TAILAPPLY"):
            fixed = ", ".join(self.r(a + 1 + j) for j in range(b - 1))
            call = f"_apply({ra}, [{fixed}], {self.r(a + b)})"
            if name == "APPLY":
                L(ind, f"{ra} = {call}", pc, "call", a)
            else:
                L(ind, f"return {call}", pc, "tail", a)
        elif name == "RETURN" and self.fuse is not None:  # the loop's body: its value, then on
            L(ind, f"_v = {ra}", pc)
            L(ind, "break", pc)
        elif name == "RETURN":
            L(ind, f"return {ra}", pc)
        elif name == "RECVTAKE":  # only inside a receive's clauses (see receive_loop, receive_block)
            # Process.take written out: the only message (a ring's, ping-pong's), then the oldest
            # of several (a counter's: a Python call less per message); a selective match calls it
            L(ind, "if _p.scan == 0 and len(_mb := _p.mailbox) == 1:", pc)
            L(ind + 1, "_p.mailbox = None", pc)
            L(ind + 1, "_p.deadline = None", pc)
            L(ind, "elif _p.scan == (_h := _p.mbhead):", pc)
            L(ind + 1, "_mb[_h] = None", pc)
            L(ind + 1, "_h += 1", pc)
            L(ind + 1, "if _h == len(_mb):", pc)
            L(ind + 2, "_p.mailbox = None", pc)
            L(ind + 2, "_h = 0", pc)
            L(ind + 1, "elif _h >= 32 and _h + _h >= len(_mb):", pc)
            L(ind + 2, "del _mb[:_h]", pc)
            L(ind + 2, "_h = 0", pc)
            L(ind + 1, "_p.mbhead = _p.scan = _h", pc)
            L(ind + 1, "_p.deadline = None", pc)
            L(ind, "else:", pc)
            L(ind + 1, "_p.take()", pc)
        else:  # the other RECV ops are written by receive_body; a new row needs its template
            raise _CannotCompile(f"{name} has no template")


def _named(code: types.CodeType, filename: str) -> types.CodeType:
    """`code`, and the code objects among its constants, with `filename` as their file name."""
    consts = tuple(_named(c, filename) if c.__class__ is types.CodeType else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


# --- preemption by CPU-time ticks ---------------------------------------------------------------

_CALL_SECONDS = 0.25e-6  # what one interpreted call (one reduction) costs on fib (docs/performance.md)


def enable(vm: VM, globals_: Any, reductions: int = 4000, tick: float = 0.001) -> FastTier | None:
    """Switch the fast tier on for `vm`, the VM of this OS process's schedulers (signal
    handlers are per OS process); returns the tier (also vm.fast), or None where it cannot run
    (not the main thread: signal handlers can only be set there)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    tier = vm.fast = FastTier(vm, globals_)
    if os.environ.get("LISPVM_JIT", "") == "eager":
        # every function is compiled at its first call (a tier differential: tests run
        # programs so and compare with --no-jit): calls take the interpreter's general path,
        # which asks vm.eager (docs/performance.md, "The fast tier")
        vm.eager = True
        for m in list(lbc._REGISTRY.values()):
            for p in m.protos:
                p.arity = -1
    # A slice of compiled code lasts about as long as `reductions` interpreted calls. One tick
    # more: the first tick a slice sees comes at any time after its start, so only the ticks
    # after it measure the slice (else a process that ran briefly was preempted, and moved, as a
    # CPU-bound one: docs/performance.md, "Server loops and the ring").
    vm.slice_ticks = max(1, round(reductions * _CALL_SECONDS / tick)) + 1
    rearm(vm, tick)
    if sys.getrecursionlimit() < 8000:
        sys.setrecursionlimit(8000)
    return tier


def rearm(vm: VM, tick: float = 0.001) -> None:
    """Start the tick timer for vm's fast tier: at enable(), and again in a child of fork(),
    which inherits the fast tier (and its compiled functions) but not the parent's interval timer."""
    signal.signal(signal.SIGVTALRM, vm.fast.on_tick)
    signal.setitimer(signal.ITIMER_VIRTUAL, tick, tick)


def disable(vm: VM) -> None:
    """Switch vm's fast tier off (tests run every program with and without it)."""
    tier = vm.fast
    if tier is not None:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0, 0)
        signal.signal(signal.SIGVTALRM, signal.SIG_DFL)
        tier.release()
    vm.fast = None
    vm.eager = False


__all__ += ["runtime_error"]
