"""The VM loop's front: the pre-decoder that feeds it, processes' first frames, and running a
function to completion outside a scheduler. The loop itself, `run(proc, budget, host) -> outcome`,
is generated (vm/_generated_loop.py, from vm/opcodes.py by vm/loopgen.py); its slow paths and
errors are in vm/loopsupport.py.

Owns: pre-decoding and superinstructions, `new_process_regs`, `call_sync`. Must never: import the
scheduler or the assembler; the loop it feeds never logs, traces or allocates per instruction
(calls allocate the callee's registers; that is the frame).

Pre-decoding (once per prototype, at load): each 32-bit word becomes a 5-tuple
`(op, a, b, c, nxt)` with constants, globals (GlobalCell), builtins (Python callables) and
prototypes resolved into the operands by their kind (vm/opcodes.py), jump offsets made absolute,
and `nxt` the index of the instruction that runs next. A conditional and the JMP after it fuse
into one tuple whose `c` is where to go when the test holds and whose `nxt` is where to go when
it does not, so `k` costs nothing at run time. The loop reads `op, a, b, c, pc = code[pc]`: no
`pc += 1`, no decoding.

Dispatch is an if-chain in the order of vm/loopgen.py HOT (measured frequency,
docs/performance.md). Reductions: one per call of a Lisp function and one per backward jump.
When the budget is spent the loop asks `host.preempt()`; if nobody else wants the CPU it refills
the budget and goes on. The loop's state beyond the process (the fast tier, its slice) is the
host's `vm` (vm/state.py).
"""

from __future__ import annotations

from typing import Any

from . import builtins as B
from ._generated_loop import run
from ._generated_ops import (
    COND,
    D_ADD,
    D_ADDI,
    D_ADDI_CALLG1,
    D_ADDI_TAILCALLG1,
    D_ADDRET,
    D_CALLB0,
    D_CALLB1,
    D_CALLB2,
    D_CALLB3,
    D_CALLBN,
    D_CALLG,
    D_GOFAST,
    D_GOOSR,
    D_IFEQK,
    D_IFEQK_RET,
    D_IFLTI,
    D_IFLTI_RET,
    D_JMP,
    D_JMPBACK,
    D_LOADK,
    D_LOADNIL,
    D_MOVE,
    D_MOVE_TAILSELF1,
    D_RECV_BEGIN,
    D_RECVPEEK,
    D_RECVSTART,
    D_RECVSTART_PEEK,
    D_RECVWAIT,
    D_RETURN,
    D_SEND,
    D_SKIPPED,
    D_TAILCALLG,
    DECODED,
    DECODES_TO,
    FUSED,
    FUSED_WITH_NEXT,
    MATCH,
    PLAIN,
    SYNTHETIC,
)
from .errors import BadBytecode, LispError, badarg
from .lbc import Module, Proto, register
from .loopsupport import _enter, _not_callable, _Unwound, list_of, python_error
from .opcodes import BY_NAME, decode_fields, encode
from .process import DONE, EXITED, FAILED, YIELD, Globals, Process
from .state import HALT_FRAME, VM, WAITING
from .values import FALSE, TRUE, Builtin, Closure, type_name

__all__ = ["predecode", "run", "call_sync", "new_process_regs", "spawn_trampoline", "HALT_FRAME", "WAITING",
           "DECODED", "DECODES_TO", "FUSED", "SYNTHETIC", "SPECIALIZED", "python_error",
           "_enter", "_not_callable", "_Unwound"]  # the last three: the fast tier calls them through here

_LOOP = BY_NAME["LOOP"].num
_RECVSTART = BY_NAME["RECVSTART"].num
_CALLB = BY_NAME["CALLB"].num
_SPAWNS = frozenset({"spawn", "spawn-link", "spawn-on", "spawn-monitor"})  # builtins that start a process

# Builtins the loop calls without the Python function in between (same semantics, measured faster).
SPECIALIZED = {"D_SEND": "send"}

# --- pre-decoding ------------------------------------------------------------------------

def predecode(module: Module, globals_: Globals) -> None:
    """Decode every prototype of `module` for the loop, resolving names in `globals_`."""
    for p in module.protos:
        p.dcode = _decode_proto(p, module, globals_)


def _resolve(kind: str, v: int, p: Proto, module: Module, g: Globals) -> Any:
    """An operand as the loop holds it: a constant, a global's cell, a prototype, or the number."""
    if kind == "K":
        return p.consts[v]
    if kind == "G":
        return g.cell(p.consts[v].name)
    if kind == "P":
        return module.protos[v]
    return v


def _decode_proto(p: Proto, module: Module, g: Globals) -> list[tuple]:
    out: list[tuple] = []
    code = p.code
    n = len(code)
    for i, word in enumerate(code):
        op, f = decode_fields(word)
        name = op.name
        nxt = i + 1
        if name in COND:
            target = i + 2 + decode_fields(code[i + 1])[1]["sJ"]
            b = _resolve(dict(op.operands).get("B", "N"), f["B"], p, module, g)  # IFEQK's constant
            when_true, when_false = (target, i + 2) if f["k"] else (i + 2, target)
            out.append((COND[name], f.get("A", 0), b, when_true, when_false))
            continue
        if out and out[-1][0] in FUSED_WITH_NEXT and len(out) == i:
            # the JMP after a conditional or a match: never executed on its own
            out.append((D_SKIPPED, 0, 0, 0, i + 1))
            continue
        a, b, c = f.get("A", 0), f.get("B", 0), f.get("C", 0)
        if name in MATCH:
            fail = i + 2 + decode_fields(code[i + 1])[1]["sJ"]
            # C by its kind: a count (UNLIST, UNVEC) or a constant (UNMAPK's key)
            c = _resolve(dict(op.operands).get("C", "N"), c, p, module, g)
            out.append((MATCH[name], a, b, (c, fail), i + 2))
        elif name == "LOADI":
            out.append((D_LOADK, a, f["sBx"], 0, nxt))
        elif name == "LOADBOOL":
            out.append((D_LOADK, a, TRUE if b else FALSE, 0, nxt))
        elif name == "LOADNIL":
            out.append((D_LOADK, a, None, 0, nxt) if b == 0 else (D_LOADNIL, a, b, 0, nxt))
        elif name == "CALLB":
            bname = p.consts[c].name
            fn = B.BUILTINS.get(bname)
            if fn is None:
                raise BadBytecode(f"unknown builtin {bname}")
            dop = (D_CALLB0, D_CALLB1, D_CALLB2, D_CALLB3)[b] if b <= 3 else D_CALLBN
            if bname == "send" and b == 2:
                dop = D_SEND
            out.append((dop, a, b, fn.fn, nxt))
        elif name == "JMP":
            target = nxt + f["sJ"]
            out.append((D_JMPBACK if target <= i else D_JMP, 0, 0, 0, target))
        elif name in ("RECVPEEK", "RECVWAIT"):
            out.append((PLAIN[name], a, None, nxt + f["sBx"], nxt))
        elif name == "RECVNEXT":
            out.append((PLAIN[name], 0, 0, nxt + f["sJ"], nxt))
        else:  # by operand kind: B/Bx/sBx go to slot b, C to slot c
            slots = {"A": a, "B": b, "C": c}
            for field, kind in op.operands:
                slots["B" if field in ("Bx", "sBx") else field] = _resolve(kind, f[field], p, module, g)
            out.append((PLAIN[name], slots["A"], slots["B"], slots["C"], nxt))
    assert len(out) == n
    _fuse(out, p.name)
    out.append((D_GOFAST, 0, 0, 0, n))  # index n: where _budget_out sends a loop into compiled code
    for i, word in enumerate(code):  # after it, one GOOSR per `loop`: a yield at its head resumes there
        if word & 0x7F == _LOOP:
            out.append((D_GOOSR, i + 1, 0, 0, i + 1))
            body = code[i + 1:i + 1 + decode_fields(word)[1]["Bx"]]
            if any(w & 0x7F == _RECVSTART or (w & 0x7F == _CALLB and p.consts[decode_fields(w)[1]["C"]].name in _SPAWNS)
                   for w in body):
                # a loop around a receive (a collecting loop: a result from each of thousands of
                # processes) or a spawn (a fork loop: thousands of processes) goes into compiled
                # code at its entry, not after a budget of interpreted turns (vm/fast.py
                # FastTier.osr: a receive's wait gives the frame back, a message resumes it)
                out[i] = out[-1]
    return out


def _fuse(out: list[tuple], self_name: str) -> None:
    """Replace hot instruction pairs by superinstructions (vm/loopgen.py FUSED)."""
    for i in range(len(out) - 1):
        t, u = out[i], out[i + 1]
        if (t[0] is D_IFLTI or t[0] is D_IFEQK) and out[t[3]][0] is D_RETURN and t[3] != i:
            # the base case of a recursion: a test whose taken branch returns a register
            out[i] = (D_IFLTI_RET if t[0] is D_IFLTI else D_IFEQK_RET, t[1], t[2], out[t[3]][1], t[4])
            continue
        if t[0] is D_ADDI and (u[0] is D_CALLG or u[0] is D_TAILCALLG) and u[2] == 1 and t[1] == u[1] + 1:
            # (f (+ x k)): compute the argument and call, as one dispatch
            out[i] = (D_ADDI_CALLG1 if u[0] is D_CALLG else D_ADDI_TAILCALLG1, u[1], (t[2], t[3]), u[3], u[4])
        elif t[0] is D_ADD and u[0] is D_RETURN and u[1] == t[1]:
            out[i] = (D_ADDRET, t[1], t[2], t[3], u[4])
        elif t[0] is D_RECVSTART and u[0] is D_RECVPEEK:
            out[i] = (D_RECVSTART_PEEK, u[1], u[2], u[3], u[4])
        elif t[0] is D_MOVE and u[0] is D_TAILCALLG and u[2] == 1 and t[1] == u[1] + 1 and u[3].name == self_name:
            # a loop that passes a variable to itself: (loop x); taken only when the global still
            # holds this very closure, else the pair runs unfused
            out[i] = (D_MOVE_TAILSELF1, u[1], t[2], u[3], u[4])
    for i in range(len(out) - 1):
        t, u = out[i], out[i + 1]
        if t[0] is D_LOADK and t[2] is None and u[0] is D_RECVSTART_PEEK:
            # a receive with no `after`: its timeout register is nil
            out[i] = (D_RECV_BEGIN, u[1], t[1], u[3], u[4])
    for i, t in enumerate(out):
        if t[0] is D_RECVWAIT and out[t[3]][0] is D_RECVPEEK:
            # on wake-up, peek right here (one dispatch less per message): b = the peek's register
            out[i] = (D_RECVWAIT, t[1], out[t[3]][1], t[3], t[4])


# --- processes' first frames -------------------------------------------------------------------

_TRAMPOLINE: list[Closure] = []


def spawn_trampoline() -> Closure:
    """A closure whose code is `return R[0](...R[1])`: a process that runs a builtin."""
    if not _TRAMPOLINE:
        p = Proto("apply", 2, False, 2)
        p.code = [encode(BY_NAME["TAILAPPLY"], {"A": 0, "B": 1})]
        p.lines = [(0, 0)]
        m = Module("<spawn>", [p], b"spawn-trampoline")
        register(m)
        predecode(m, Globals())
        _TRAMPOLINE.append(Closure(p, (), "apply"))
    return _TRAMPOLINE[0]


def new_process_regs(fn: Any, args: list) -> tuple[Closure, list]:
    """The first frame of a process running `fn(*args)`: (closure, registers).

    Raises badarity/badarg in the spawner, where the mistake is.
    """
    if fn.__class__ is Closure:
        # (_enter makes a new list of its own: a list is not copied first)
        return fn, _enter(fn.proto, args if args.__class__ is list else list(args), fn)
    if fn.__class__ is Builtin:
        tramp = spawn_trampoline()  # a two-instruction closure that applies fn
        return tramp, [fn, list_of(args)] + tramp.proto.pad[1:]
    raise badarg(f"spawn: expected a function, got {type_name(fn)}")


# --- running to completion, for macros and tests ---------------------------------------------

class _BareHost:
    """A host for code that runs outside any scheduler (macros at compile time)."""

    def __init__(self, out: Any = None) -> None:
        self.out = out
        self.defined: dict[str, Any] = {}
        self.vm = VM()  # no fast tier: macros run interpreted

    def preempt(self) -> bool:
        return False

    def output(self, line: str) -> None:
        import sys

        (self.out or sys.stdout).write(line + "\n")

    def define(self, name: str, value: Any) -> None:
        pass

    def now_ms(self) -> float:
        import time

        return time.monotonic() * 1000.0

    def __getattr__(self, name: str) -> Any:
        def refuse(*args: Any) -> Any:
            raise badarg(f"{name.replace('_', '-')}: processes are not available here (at compile time)")

        return refuse


def call_sync(fn: Any, args: list, host: Any = None, budget: int = 1 << 60,
              spent: BaseException | None = None) -> Any:
    """Call a Lisp function to completion without a scheduler; raises LispError on failure, and
    `spent` when the host ends the run at a budget's end (the macro expander's limit)."""
    cl, regs = new_process_regs(fn, args)
    proc = Process(None, cl, regs)
    outcome = run(proc, budget, host or _BareHost())
    if outcome == DONE:
        return proc.result
    if outcome == YIELD and spent is not None:
        raise spent
    if outcome == FAILED:
        raise LispError(proc.result, proc.where)
    if outcome == EXITED:
        raise LispError(proc.result)
    raise LispError(B.runtime_error_value("badarg", "this code cannot wait here (no scheduler)"))
