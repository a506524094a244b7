"""The VM loop: `run(proc, budget, host) -> outcome`, and the pre-decoder that feeds it.

Owns: executing instructions, frames (as data, never Python recursion), reductions, errors and
`try`, and the hand-over to the fast tier (vm/fast.py). Must never: import the scheduler or the
assembler, log, trace or allocate per instruction (calls allocate the callee's registers; that is
the frame).

Pre-decoding (once per prototype, at load): each 32-bit word becomes a 5-tuple
`(op, a, b, c, nxt)` with constants, globals (GlobalCell), builtins (Python callables) and
prototypes resolved into the operands, jump offsets made absolute, and `nxt` the index of the
instruction that runs next. A conditional and the JMP after it fuse into one tuple whose `c` is
where to go when the test holds and whose `nxt` is where to go when it does not, so `k` costs
nothing at run time. The loop reads `op, a, b, c, pc = code[pc]`: no `pc += 1`, no decoding.

Dispatch is an if-chain ordered by measured frequency (docs/performance.md). Reductions: one per
call of a Lisp function and one per backward jump. When the budget is spent the loop asks
`host.preempt()`; if nobody else wants the CPU it refills the budget and goes on.

Invariant for error positions: a handler raises only before it changes `op, a, b, c, pc`; the
error path finds the faulting instruction from those locals (`_fault_index`).
"""

from __future__ import annotations

import math
import sys
import types
from typing import Any

from . import boxes as _boxes
from . import builtins as B
from . import process as _process_module
from .errors import (
    INT_LIMIT,
    INT_MIN,
    BadBytecode,
    Halt,
    LispError,
    ProcessExit,
    badarg,
    badarity,
    describe,
    limit_error,
    product_too_large,
    undef,
)
from .lbc import Module, Proto
from .opcodes import decode_fields
from .process import BLOCK, DONE, EXITED, FAILED, HALT, WAIT, YIELD, Block, Globals, Process
from .state import VM
from .values import FALSE, TRUE, UNDEF, Box, Builtin, Closure, Cons, Pid, Vec, to_pylist, type_name

__all__ = ["predecode", "run", "call_sync", "Block", "DECODED", "new_process_regs"]

# Decoded operations, numbered hot-first (op counts over the examples and benchmarks). The loop tests a
# range first (groups of eight), then the operations of that group one by one: an operation waits behind
# at most (its group + 1) + 8 tests, and the hottest group behind one. Internal numbers, never stored.
(D_JLTI_RET, D_ADDI_CALLG1, D_ADDRET, D_RETURN, D_JLTI, D_ADDI, D_LOADK, D_MOVE, D_JEQK, D_CALLG,
 D_TAILCALLG, D_ADDI_TAILCALLG1, D_MOVE_TAILSELF1, D_CALLB1, D_CALLB2, D_SEND, D_ADD, D_JEQK_RET,
 D_RECVSTART_PEEK, D_RECV_BEGIN, D_RECVWAIT, D_RECVPEEK, D_RECVTAKE, D_UNLIST, D_LIST, D_JT,
 D_GETGLOBAL, D_HEAD, D_TAIL, D_CONS, D_SUB, D_JLT, D_JLE, D_JGTI, D_JLEI, D_JGEI, D_JEQ,
 D_GETUPVAL, D_CALLB0, D_CALLB3, D_CALLBN, D_JMP, D_JMPBACK, D_MUL, D_EQ, D_LT, D_LE, D_NE, D_NOT,
 D_RECVNEXT, D_CALL, D_TAILCALL, D_APPLY, D_TAILAPPLY, D_RECVSTART, D_CLOSURE, D_DIV, D_IDIV, D_MOD,
 D_NEG, D_VECTOR, D_UNCONS, D_UNVEC, D_GETUPBOX, D_SETUPBOX, D_UNBOX, D_SETBOX, D_BOX, D_LOADNIL,
 D_DEFGLOBAL, D_SETGLOBAL, D_GOFAST, D_HALT, D_SKIPPED) = range(74)

# Superinstructions: made at load time from two adjacent instructions when a measurement showed
# they pay (docs/performance.md). The fused tuple replaces the first; the second keeps its own
# tuple, so a jump to it still works and every index means what the file says.
FUSED = {"D_ADDI_CALLG1": ("ADDI", "CALLG"), "D_ADDI_TAILCALLG1": ("ADDI", "TAILCALLG"),
         "D_ADDRET": ("ADD", "RETURN"), "D_JLTI_RET": ("IFLTI", "RETURN"), "D_JEQK_RET": ("IFEQK", "RETURN"),
         "D_RECVSTART_PEEK": ("RECVSTART", "RECVPEEK"), "D_RECV_BEGIN": ("LOADNIL", "RECVSTART", "RECVPEEK"),
         "D_MOVE_TAILSELF1": ("MOVE", "TAILCALLG")}
# Builtins the loop calls without the Python function in between (same semantics, measured faster).
SPECIALIZED = {"D_SEND": "send"}
_FUSED_CALLS = frozenset({D_ADDI_CALLG1, D_ADDI_TAILCALLG1})  # errors in them belong to the call

DECODED = {name: value for name, value in globals().items() if name.startswith("D_")}

# Which decoded operations each file opcode may become (read by the handler test).
DECODES_TO = {
    "MOVE": ("D_MOVE",), "LOADK": ("D_LOADK",), "LOADI": ("D_LOADK",), "LOADNIL": ("D_LOADK", "D_LOADNIL"),
    "LOADBOOL": ("D_LOADK",), "GETUPVAL": ("D_GETUPVAL",), "GETUPBOX": ("D_GETUPBOX",),
    "SETUPBOX": ("D_SETUPBOX",), "BOX": ("D_BOX",), "UNBOX": ("D_UNBOX",), "SETBOX": ("D_SETBOX",),
    "GETGLOBAL": ("D_GETGLOBAL",), "SETGLOBAL": ("D_SETGLOBAL",), "DEFGLOBAL": ("D_DEFGLOBAL",),
    "CLOSURE": ("D_CLOSURE",), "CALL": ("D_CALL",), "TAILCALL": ("D_TAILCALL",), "CALLG": ("D_CALLG",),
    "TAILCALLG": ("D_TAILCALLG",),
    "CALLB": ("D_CALLB0", "D_CALLB1", "D_CALLB2", "D_CALLB3", "D_CALLBN"),
    "APPLY": ("D_APPLY",), "TAILAPPLY": ("D_TAILAPPLY",), "RETURN": ("D_RETURN",),
    "ADD": ("D_ADD",), "SUB": ("D_SUB",), "MUL": ("D_MUL",), "DIV": ("D_DIV",), "IDIV": ("D_IDIV",),
    "MOD": ("D_MOD",), "ADDI": ("D_ADDI",), "NEG": ("D_NEG",), "NOT": ("D_NOT",), "EQ": ("D_EQ",),
    "NE": ("D_NE",), "LT": ("D_LT",), "LE": ("D_LE",), "JMP": ("D_JMP", "D_JMPBACK", "D_SKIPPED"),
    "TEST": ("D_JT",), "IFEQ": ("D_JEQ",), "IFLT": ("D_JLT",), "IFLE": ("D_JLE",), "IFEQK": ("D_JEQK",),
    "IFEQI": ("D_JEQK",), "IFLTI": ("D_JLTI",), "IFLEI": ("D_JLEI",), "IFGTI": ("D_JGTI",),
    "IFGEI": ("D_JGEI",), "LIST": ("D_LIST",), "VECTOR": ("D_VECTOR",), "CONS": ("D_CONS",),
    "HEAD": ("D_HEAD",), "TAIL": ("D_TAIL",), "UNLIST": ("D_UNLIST",), "UNCONS": ("D_UNCONS",),
    "UNVEC": ("D_UNVEC",), "RECVSTART": ("D_RECVSTART",), "RECVPEEK": ("D_RECVPEEK",),
    "RECVNEXT": ("D_RECVNEXT",), "RECVTAKE": ("D_RECVTAKE",), "RECVWAIT": ("D_RECVWAIT",),
}

# Decoded operations that no file opcode becomes: GOFAST ends every decoded function (index n).
SYNTHETIC = ("D_GOFAST", "D_HALT")

_COND = {"TEST": D_JT, "IFEQ": D_JEQ, "IFLT": D_JLT, "IFLE": D_JLE, "IFEQK": D_JEQK, "IFEQI": D_JEQK,
         "IFLTI": D_JLTI, "IFLEI": D_JLEI, "IFGTI": D_JGTI, "IFGEI": D_JGEI}
_SIMPLE = {"MOVE": D_MOVE, "GETUPVAL": D_GETUPVAL, "GETUPBOX": D_GETUPBOX, "SETUPBOX": D_SETUPBOX,
           "BOX": D_BOX, "UNBOX": D_UNBOX, "SETBOX": D_SETBOX, "CALL": D_CALL, "TAILCALL": D_TAILCALL,
           "APPLY": D_APPLY, "TAILAPPLY": D_TAILAPPLY, "RETURN": D_RETURN, "ADD": D_ADD, "SUB": D_SUB,
           "MUL": D_MUL, "DIV": D_DIV, "IDIV": D_IDIV, "MOD": D_MOD, "ADDI": D_ADDI, "NEG": D_NEG,
           "NOT": D_NOT, "EQ": D_EQ, "NE": D_NE, "LT": D_LT, "LE": D_LE, "LIST": D_LIST,
           "VECTOR": D_VECTOR, "CONS": D_CONS, "HEAD": D_HEAD, "TAIL": D_TAIL, "UNLIST": D_UNLIST,
           "UNCONS": D_UNCONS, "UNVEC": D_UNVEC, "RECVSTART": D_RECVSTART, "RECVTAKE": D_RECVTAKE}


# --- pre-decoding ------------------------------------------------------------------------

def predecode(module: Module, globals_: Globals) -> None:
    """Decode every prototype of `module` for the loop, resolving names in `globals_`."""
    for p in module.protos:
        p.dcode = _decode_proto(p, module, globals_)


def _decode_proto(p: Proto, module: Module, g: Globals) -> list[tuple]:
    out: list[tuple] = []
    code = p.code
    n = len(code)
    for i, word in enumerate(code):
        op, f = decode_fields(word)
        name = op.name
        nxt = i + 1
        a, b, c = f.get("A", 0), f.get("B", 0), f.get("C", 0)
        if name in _COND:
            target = i + 2 + decode_fields(code[i + 1])[1]["sJ"]
            k = f["k"]
            if name == "IFEQK":
                b = p.consts[b]
            when_true, when_false = (target, i + 2) if k else (i + 2, target)
            out.append((_COND[name], a, b, when_true, when_false))
            continue
        if out and out[-1][0] in _FUSED_WITH_NEXT and len(out) == i:
            # the JMP after a conditional or a match: never executed on its own
            out.append((D_SKIPPED, 0, 0, 0, i + 1))
            continue
        if name in ("UNLIST", "UNCONS", "UNVEC"):
            fail = i + 2 + decode_fields(code[i + 1])[1]["sJ"]
            out.append((_SIMPLE[name], a, b, (c, fail), i + 2))
            continue
        if name == "LOADK":
            out.append((D_LOADK, a, p.consts[f["Bx"]], 0, nxt))
        elif name == "LOADI":
            out.append((D_LOADK, a, f["sBx"], 0, nxt))
        elif name == "LOADBOOL":
            out.append((D_LOADK, a, TRUE if b else FALSE, 0, nxt))
        elif name == "LOADNIL":
            out.append((D_LOADK, a, None, 0, nxt) if b == 0 else (D_LOADNIL, a, b, 0, nxt))
        elif name in ("GETGLOBAL", "SETGLOBAL", "DEFGLOBAL"):
            cell = g.cell(p.consts[f["Bx"]].name)
            out.append(({"GETGLOBAL": D_GETGLOBAL, "SETGLOBAL": D_SETGLOBAL, "DEFGLOBAL": D_DEFGLOBAL}[name],
                        a, cell, 0, nxt))
        elif name == "CLOSURE":
            out.append((D_CLOSURE, a, module.protos[f["Bx"]], 0, nxt))
        elif name in ("CALLG", "TAILCALLG"):
            cell = g.cell(p.consts[c].name)
            out.append((D_CALLG if name == "CALLG" else D_TAILCALLG, a, b, cell, nxt))
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
            out.append((D_RECVPEEK if name == "RECVPEEK" else D_RECVWAIT, a, None, nxt + f["sBx"], nxt))
        elif name == "RECVNEXT":
            out.append((D_RECVNEXT, 0, 0, nxt + f["sJ"], nxt))
        elif name == "ADDI":
            out.append((D_ADDI, a, b, c, nxt))
        else:
            out.append((_SIMPLE[name], a, b, c, nxt))
    assert len(out) == n
    _fuse(out, p.name)
    out.append((D_GOFAST, 0, 0, 0, n))  # index n: where _budget_out sends a loop into compiled code
    return out


def _fuse(out: list[tuple], self_name: str) -> None:
    """Replace hot instruction pairs by superinstructions (see FUSED)."""
    for i in range(len(out) - 1):
        t, u = out[i], out[i + 1]
        if (t[0] is D_JLTI or t[0] is D_JEQK) and out[t[3]][0] is D_RETURN and t[3] != i:
            # the base case of a recursion: a test whose taken branch returns a register
            out[i] = (D_JLTI_RET if t[0] is D_JLTI else D_JEQK_RET, t[1], t[2], out[t[3]][1], t[4])
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


_FUSED_WITH_NEXT = frozenset({D_JT, D_JEQ, D_JEQK, D_JLT, D_JLE, D_JLTI, D_JLEI, D_JGTI, D_JGEI,
                              D_UNLIST, D_UNCONS, D_UNVEC})


def _halt_frame() -> tuple:
    """The frame at the bottom of every process's stack: a RETURN into it ends the process, so
    no return path needs to test for an empty stack. Shared by all processes (immutable but for
    its one register, which D_HALT clears), and registered for pickling like any code."""
    from .lbc import Module, register

    p = Proto("halt", 0, False, 1)
    m = Module("<halt>", [p], b"halt-frame")
    register(m)
    p.dcode = [(D_HALT, 0, 0, 0, 0)]
    return (Closure(p, (), "halt"), p.dcode, 0, [None], 0)


HALT_FRAME = _halt_frame()
_process_module.BOTTOM[0] = HALT_FRAME


def new_process_regs(fn: Any, args: list) -> tuple[Closure, list]:
    """The first frame of a process running `fn(*args)`: (closure, registers).

    Raises badarity/badarg in the spawner, where the mistake is.
    """
    if fn.__class__ is Closure:
        return fn, _enter(fn.proto, list(args), fn)
    if fn.__class__ is Builtin:
        from .builtins import spawn_trampoline  # a two-instruction closure that applies fn

        tramp = spawn_trampoline()
        return tramp, [fn, _from_pylist(args)] + tramp.proto.pad[1:]
    raise badarg(f"spawn: expected a function, got {type_name(fn)}")


def _from_pylist(items: list) -> Any:
    out = None
    for x in reversed(items):
        out = Cons(x, out)
    return out


def _enter(p: Proto, args: list, f: Any) -> list:
    """Registers for a call of `p` with `args` (the slow path: rest parameters, wrong arity)."""
    n = p.nparams
    if p.rest:
        if len(args) < n:
            raise badarity(f"{f!r} takes at least {n} argument{'s' * (n != 1)}, got {len(args)}")
        rest = None
        for x in reversed(args[n:]):
            rest = Cons(x, rest)
        return args[:n] + [rest] + p.pad[1:]
    if len(args) != n:
        raise badarity(f"{f!r} takes {n} argument{'s' * (n != 1)}, got {len(args)}")
    return args + p.pad


def _not_callable(f: Any, name: str | None = None) -> LispError:
    if f is UNDEF:
        return undef(f"undefined function {name}")
    what = f"{name} is not a function" if name else "not a function"
    return badarg(f"{what}: {type_name(f)} {B.short_repr(f)}")


# --- the loop ------------------------------------------------------------------------------

def run(proc: Process, budget: int, host: Any) -> int:
    """Run `proc` until it waits, ends, or spends `budget` reductions and must yield.

    Returns one of the outcomes in vm.process; the process record holds the state to resume.
    """
    B.ctx.proc = proc
    B.ctx.host = host
    vm = host.vm
    if vm.fast is None and _LEGACY.fast is not None:
        vm = _LEGACY  # transitional: a fast tier enabled through the old module globals
    tier = vm.fast
    eager = vm.eager
    pkey = _boxes.key_of(proc)  # boxes this process owns carry it (vm/boxes.py)
    if tier is not None:
        tier.ns["_PK"] = pkey  # compiled code's owner test reads it
    vm.ticks_left = vm.slice_ticks  # the fast tier's preemption counts this slice from here
    refill = budget
    preempt = host.preempt
    int_min, int_limit = INT_MIN, INT_LIMIT  # locals: MUL tests every integer product against them
    frames = proc.frames
    cl = proc.cl
    code = cl.proto.dcode
    regs = proc.regs
    pc = proc.pc
    op = a = b = c = None
    pending: BaseException | None = None
    if proc.reply_error is not None:  # a BLOCK request failed: raise its error at the call
        pending = LispError(proc.reply_error)
        proc.reply_error = None
    while True:
        try:
            if pending is not None:
                exc, pending = pending, None
                raise exc
            while True:
                op, a, b, c, pc = code[pc]
                if op < D_MOVE:
                    if op is D_JLTI_RET:
                        if regs[a] < b:
                            v = regs[c]
                            cl, code, pc, regs, a = frames.pop()  # the bottom frame is HALT_FRAME
                            regs[a] = v
                    elif op is D_ADDI_CALLG1:  # (f (+ x k)) in one dispatch
                        x = regs[b[0]] + b[1]
                        f = c.v
                        if f.__class__ is Closure and (p := f.proto).arity == 1:
                            frames.append((cl, code, pc, regs, a))
                            regs = [x, *p.pad]
                            cl = f
                            code = p.dcode
                            pc = 0
                            budget -= 1
                            if budget <= 0:
                                budget = refill
                                pc = _budget_out(tier, proc, cl, pc, preempt)
                                if pc < 0:
                                    pc = ~pc
                                    break
                        else:  # anything unusual (compiled, rest, badarity): the unfused pair
                            regs[a + 1] = x
                            pc = _fused_rest(code, pc)
                    elif op is D_ADDRET:
                        x = regs[b] + regs[c] - 0
                        cl, code, pc, regs, a = frames.pop()  # the bottom frame is HALT_FRAME
                        regs[a] = x
                    elif op is D_RETURN:
                        v = regs[a]
                        cl, code, pc, regs, a = frames.pop()  # the bottom frame is HALT_FRAME
                        regs[a] = v
                    elif op is D_JLTI:
                        if regs[a] < b:
                            pc = c
                    elif op is D_ADDI:
                        regs[a] = regs[b] + c  # an int immediate: str + int raises by itself
                    elif op is D_LOADK:
                        regs[a] = b
                elif op < D_RECVSTART_PEEK:
                    if op is D_MOVE:
                        regs[a] = regs[b]
                    elif op is D_JEQK:
                        if regs[a] == b:
                            pc = c
                    elif op is D_CALLG:
                        f = c.v
                        if f.__class__ is Closure:
                            p = f.proto
                            if b == p.arity:  # the common case; -1 sends the rest below
                                frames.append((cl, code, pc, regs, a))
                                if b == 1:
                                    regs = [regs[a + 1], *p.pad]
                                elif b == 2:
                                    regs = [regs[a + 1], regs[a + 2], *p.pad]
                                else:
                                    regs = regs[a + 1:a + 1 + b] + p.pad
                            else:
                                if p.fast is not None or (eager and tier.compile(p)):  # compiled: call it (vm/fast.py)
                                    regs[a] = _enter_fast(tier, proc, f, regs[a + 1:a + 1 + b], (cl, code, pc, regs, a))
                                    continue
                                x = _enter(p, regs[a + 1:a + 1 + b], f)  # raises before any change
                                frames.append((cl, code, pc, regs, a))
                                regs = x
                            cl = f
                            code = p.dcode
                            pc = 0
                            budget -= 1
                            if budget <= 0:
                                budget = refill
                                pc = _budget_out(tier, proc, cl, pc, preempt)
                                if pc < 0:
                                    pc = ~pc
                                    break
                        elif f.__class__ is Builtin:
                            regs[a] = f.fn(*regs[a + 1:a + 1 + b])
                        else:
                            raise _not_callable(f, c.name)
                    elif op is D_ADDI_TAILCALLG1:  # (f (+ x k)) in tail position
                        x = regs[b[0]] + b[1]
                        f = c.v
                        if f.__class__ is Closure and (p := f.proto).arity == 1:
                            regs = [x, *p.pad]
                            cl = f
                            code = p.dcode
                            pc = 0
                            budget -= 1
                            if budget <= 0:
                                budget = refill
                                pc = _budget_out(tier, proc, cl, pc, preempt)
                                if pc < 0:
                                    pc = ~pc
                                    break
                        else:
                            regs[a + 1] = x
                            pc = _fused_rest(code, pc)
                    elif op is D_MOVE_TAILSELF1:
                        if c.v is cl:
                            regs[0] = regs[b]
                            pc = 0
                            budget -= 1
                            if budget <= 0:
                                budget = refill
                                pc = _budget_out(tier, proc, cl, pc, preempt)
                                if pc < 0:
                                    pc = ~pc
                                    break
                        else:
                            regs[a + 1] = regs[b]
                            pc = _fused_rest(code, pc)
                    elif op is D_TAILCALLG:
                        f = c.v
                        if f is cl and 0 < b <= 2 and b == cl.proto.arity:
                            # a loop: reuse the frame's registers (stale temporaries are never read:
                            # the compiler writes every register before reading it). The arguments
                            # sit above the parameters, so the copies cannot overlap.
                            regs[0] = regs[a + 1]
                            if b == 2:
                                regs[1] = regs[a + 2]
                            pc = 0
                            budget -= 1
                            if budget <= 0:
                                budget = refill
                                pc = _budget_out(tier, proc, cl, pc, preempt)
                                if pc < 0:
                                    pc = ~pc
                                    break
                        elif f.__class__ is Closure:
                            p = f.proto
                            if b == p.arity:
                                if b == 1:
                                    regs = [regs[a + 1], *p.pad]
                                elif b == 2:
                                    regs = [regs[a + 1], regs[a + 2], *p.pad]
                                else:
                                    regs = regs[a + 1:a + 1 + b] + p.pad
                            elif p.fast is not None or (eager and tier.compile(p)):  # compiled: call, return
                                v = _enter_fast(tier, proc, f, regs[a + 1:a + 1 + b], None)
                                cl, code, pc, regs, a = frames.pop()
                                regs[a] = v
                                continue
                            else:
                                regs = _enter(p, regs[a + 1:a + 1 + b], f)
                            cl = f
                            code = p.dcode
                            pc = 0
                            budget -= 1
                            if budget <= 0:
                                budget = refill
                                pc = _budget_out(tier, proc, cl, pc, preempt)
                                if pc < 0:
                                    pc = ~pc
                                    break
                        elif f.__class__ is Builtin:
                            v = f.fn(*regs[a + 1:a + 1 + b])
                            cl, code, pc, regs, a = frames.pop()  # the bottom frame is HALT_FRAME
                            regs[a] = v
                        else:
                            raise _not_callable(f, c.name)
                    elif op is D_CALLB1:
                        regs[a] = c(regs[a + 1])
                    elif op is D_SEND:  # (send dest msg), with b_send's checks inline
                        x = regs[a + 1]
                        y = regs[a + 2]
                        if x.__class__ is Pid and not B.BOXES_MADE:
                            host.send(proc, x, y)
                            regs[a] = y
                        else:
                            regs[a] = c(x, y)
                    elif op is D_CALLB2:
                        regs[a] = c(regs[a + 1], regs[a + 2])
                    elif op is D_ADD:
                        regs[a] = regs[b] + regs[c] - 0  # a string result raises (see vm/fast.py)
                    elif op is D_JEQK_RET:
                        if regs[a] == b:
                            v = regs[c]
                            cl, code, pc, regs, a = frames.pop()  # the bottom frame is HALT_FRAME
                            regs[a] = v
                elif op < D_HEAD:
                    if op is D_RECVSTART_PEEK:
                        proc.deadline = None
                        proc.timed_out = False
                        mb = proc.mailbox
                        if mb is not None:
                            proc.scan = x = proc.mbhead
                            if x < len(mb):
                                regs[a] = mb[x]
                            else:
                                pc = c
                        else:
                            proc.scan = 0
                            pc = c
                    elif op is D_RECV_BEGIN:
                        regs[b] = None  # no `after`: wait for ever
                        proc.deadline = None
                        proc.timed_out = False
                        mb = proc.mailbox
                        if mb is not None:
                            proc.scan = x = proc.mbhead
                            if x < len(mb):
                                regs[a] = mb[x]
                            else:
                                pc = c
                        else:
                            proc.scan = 0
                            pc = c
                    elif op is D_RECVWAIT:
                        mb = proc.mailbox
                        if mb is not None and proc.scan < len(mb):
                            # a message came while we were away: scan it (b: the peek's register)
                            p = cl.proto
                            if p.fastwait == pc - 1:  # a compiled receive loop: resume it there
                                proc.regs = regs
                                v = _resume_fast(tier, proc, cl, regs)
                                if v is _WAITING:
                                    proc.cl = cl
                                    proc.pc = pc - 1
                                    vm.used = refill - budget
                                    return WAIT
                                cl, code, pc, regs, a = frames.pop()  # the bottom frame is HALT_FRAME
                                regs[a] = v
                                continue
                            if tier is not None and p.fast is None and not p.nofast:
                                p.hot -= 1
                                if p.hot <= 0:  # woken often: a server loop, maybe (vm/fast.py)
                                    tier.compile(p)
                            if b is None:
                                pc = c
                            else:
                                regs[b] = mb[proc.scan]
                                pc = c + 1
                        elif proc.timed_out:
                            proc.timed_out = False
                            proc.deadline = None
                            proc.scan = proc.mbhead
                        else:
                            x = regs[a]
                            if x is not None:
                                if (x.__class__ is not int and x.__class__ is not float) or not x >= 0:
                                    if x is not B.INFINITY:
                                        raise badarg("receive: after needs a number of milliseconds, "
                                                     f"got {B.short_repr(x)}")
                                    x = None
                                elif x == 0:
                                    proc.scan = proc.mbhead
                                    continue
                            if x is not None and proc.deadline is None:
                                proc.deadline = host.now_ms() + x
                            proc.cl = cl
                            proc.pc = pc - 1
                            proc.regs = regs
                            vm.used = refill - budget
                            return WAIT
                    elif op is D_RECVPEEK:
                        mb = proc.mailbox
                        if mb is not None and proc.scan < len(mb):
                            regs[a] = mb[proc.scan]
                        else:
                            pc = c
                    elif op is D_RECVTAKE:
                        mb = proc.mailbox
                        if proc.scan == 0 and len(mb) == 1:  # taking the only message
                            proc.mailbox = None
                            proc.deadline = None
                        else:
                            proc.take()
                    elif op is D_UNLIST:
                        n, fail = c
                        x = regs[b]
                        if n == 3:  # the usual message shape, unrolled (a Python loop costs 2x)
                            if x.__class__ is Cons:
                                y = x.tail
                                if y.__class__ is Cons:
                                    z = y.tail
                                    if z.__class__ is Cons and z.tail is None:
                                        regs[a] = x.head
                                        regs[a + 1] = y.head
                                        regs[a + 2] = z.head
                                        continue
                            pc = fail
                        else:
                            i = a
                            end = a + n
                            while i < end and x.__class__ is Cons:
                                regs[i] = x.head
                                x = x.tail
                                i += 1
                            if i < end or x is not None:
                                pc = fail
                    elif op is D_LIST:
                        if b == 3:  # the usual message shape, unrolled
                            regs[a] = Cons(regs[a + 1], Cons(regs[a + 2], Cons(regs[a + 3], None)))
                        elif b == 2:
                            regs[a] = Cons(regs[a + 1], Cons(regs[a + 2], None))
                        else:
                            x = None
                            for i in range(a + b, a, -1):
                                x = Cons(regs[i], x)
                            regs[a] = x
                    elif op is D_JT:
                        x = regs[a]
                        if x is not FALSE and x is not None:
                            pc = c
                    elif op is D_GETGLOBAL:
                        x = b.v
                        if x is UNDEF:
                            raise undef(f"undefined global {b.name}")
                        regs[a] = x
                elif op < D_JGEI:
                    if op is D_HEAD:
                        x = regs[b]
                        if x.__class__ is not Cons:
                            raise badarg(f"head: expected a non-empty list, got {B.short_repr(x)}")
                        regs[a] = x.head
                    elif op is D_TAIL:
                        x = regs[b]
                        if x.__class__ is not Cons:
                            raise badarg(f"tail: expected a non-empty list, got {B.short_repr(x)}")
                        regs[a] = x.tail
                    elif op is D_CONS:
                        regs[a] = Cons(regs[b], regs[c])
                    elif op is D_SUB:
                        regs[a] = regs[b] - regs[c]
                    elif op is D_JLT:
                        if regs[a] < regs[b]:
                            pc = c
                    elif op is D_JLE:
                        if regs[a] <= regs[b]:
                            pc = c
                    elif op is D_JGTI:
                        if regs[a] > b:
                            pc = c
                    elif op is D_JLEI:
                        if regs[a] <= b:
                            pc = c
                elif op < D_MUL:
                    if op is D_JGEI:
                        if regs[a] >= b:
                            pc = c
                    elif op is D_JEQ:
                        if regs[a] == regs[b]:
                            pc = c
                    elif op is D_GETUPVAL:
                        regs[a] = cl.upvals[b]
                    elif op is D_CALLB0:
                        regs[a] = c()
                    elif op is D_CALLB3:
                        regs[a] = c(regs[a + 1], regs[a + 2], regs[a + 3])
                    elif op is D_CALLBN:
                        regs[a] = c(*regs[a + 1:a + 1 + b])
                    elif op is D_JMP:
                        pass
                    elif op is D_JMPBACK:
                        budget -= 1
                        if budget <= 0:
                            budget = refill
                            pc = _budget_out(tier, proc, cl, pc, preempt)
                            if pc < 0:
                                pc = ~pc
                                break
                elif op < D_RECVSTART:
                    if op is D_MUL:
                        x = regs[b] * regs[c] - 0  # a string result raises (see vm/fast.py)
                        if x.__class__ is int and not int_min < x < int_limit:
                            raise product_too_large()  # the next product would block the scheduler
                        regs[a] = x
                    elif op is D_EQ:
                        regs[a] = TRUE if regs[b] == regs[c] else FALSE
                    elif op is D_LT:
                        regs[a] = TRUE if regs[b] < regs[c] else FALSE
                    elif op is D_LE:
                        regs[a] = TRUE if regs[b] <= regs[c] else FALSE
                    elif op is D_NE:
                        regs[a] = FALSE if regs[b] == regs[c] else TRUE
                    elif op is D_NOT:
                        x = regs[b]
                        regs[a] = TRUE if x is FALSE or x is None else FALSE
                    elif op is D_RECVNEXT:
                        proc.scan += 1
                        pc = c
                        budget -= 1
                        if budget <= 0:
                            budget = refill
                            pc = _budget_out(tier, proc, cl, pc, preempt)
                            if pc < 0:
                                pc = ~pc
                                break
                    elif op is D_CALL or op is D_TAILCALL or op is D_APPLY or op is D_TAILAPPLY:
                        f = regs[a]
                        if op is D_APPLY or op is D_TAILAPPLY:
                            spread = to_pylist(regs[a + b])
                            if spread is None:
                                raise badarg("apply: the last argument must be a list, "
                                             f"got {B.short_repr(regs[a + b])}")
                            args = regs[a + 1:a + b] + spread
                        else:
                            args = regs[a + 1:a + 1 + b]
                        if f.__class__ is Closure:
                            p = f.proto
                            if p.fast is not None or (eager and tier.compile(p)):
                                if op is D_CALL or op is D_APPLY:
                                    regs[a] = _enter_fast(tier, proc, f, args, (cl, code, pc, regs, a))
                                    continue
                                v = _enter_fast(tier, proc, f, args, None)
                                cl, code, pc, regs, a = frames.pop()
                                regs[a] = v
                                continue
                            newregs = _enter(p, args, f)
                            if op is D_CALL or op is D_APPLY:
                                frames.append((cl, code, pc, regs, a))
                            regs = newregs
                            cl = f
                            code = p.dcode
                            pc = 0
                            budget -= 1
                            if budget <= 0:
                                budget = refill
                                pc = _budget_out(tier, proc, cl, pc, preempt)
                                if pc < 0:
                                    pc = ~pc
                                    break
                        elif f.__class__ is Builtin:
                            v = f.fn(*args)
                            if op is D_CALL or op is D_APPLY:
                                regs[a] = v
                            else:
                                cl, code, pc, regs, a = frames.pop()
                                regs[a] = v
                        else:
                            raise _not_callable(f)
                elif op < D_UNVEC:
                    if op is D_RECVSTART:
                        proc.scan = proc.mbhead
                        proc.deadline = None
                        proc.timed_out = False
                    elif op is D_CLOSURE:
                        regs[a] = _make_closure(b, regs, cl.upvals)
                    elif op is D_DIV:
                        regs[a] = regs[b] / regs[c]
                    elif op is D_IDIV:
                        regs[a] = regs[b] // regs[c]
                    elif op is D_MOD:
                        regs[a] = regs[b] % regs[c] - 0  # a string result raises (see vm/fast.py)
                    elif op is D_NEG:
                        regs[a] = -regs[b]
                    elif op is D_VECTOR:
                        regs[a] = Vec(tuple(regs[a + 1:a + 1 + b]))
                    elif op is D_UNCONS:
                        x = regs[b]
                        if x.__class__ is Cons:
                            regs[a] = x.head
                            regs[a + 1] = x.tail
                        else:
                            pc = c[1]
                elif op < D_SETGLOBAL:
                    if op is D_UNVEC:
                        n, fail = c
                        x = regs[b]
                        if x.__class__ is Vec and len(x.items) == n:
                            regs[a:a + n] = x.items
                        else:
                            pc = fail
                    elif op is D_GETUPBOX:
                        x = cl.upvals[b]
                        if x.owner != pkey:  # a global's or another process's: use our copy
                            x = _boxes.touch(proc, x)
                        regs[a] = x.v
                    elif op is D_SETUPBOX:
                        x = cl.upvals[b]
                        if x.owner != pkey:
                            x = _boxes.touch(proc, x)
                        x.v = regs[a]
                    elif op is D_UNBOX:
                        regs[a] = regs[b].v
                    elif op is D_SETBOX:
                        regs[a].v = regs[b]
                    elif op is D_BOX:
                        regs[a] = Box(regs[a], pkey)
                        B.note_box()
                    elif op is D_LOADNIL:
                        regs[a:a + b + 1] = [None] * (b + 1)
                    elif op is D_DEFGLOBAL:
                        x = regs[a]
                        if x.__class__ is Closure and x.name == "fn":
                            x.name = b.name
                        x = _boxes.for_global(proc, x, b)  # a value, not variables (vm/boxes.py)
                        b.v = x
                        host.define(b.name, x)
                        if tier is not None:
                            tier.on_define(b.name)
                else:
                    if op is D_SETGLOBAL:
                        if b.v is UNDEF:
                            raise undef(f"set: undefined global {b.name}")
                        x = _boxes.for_global(proc, regs[a], b)
                        b.v = x
                        host.define(b.name, x)
                        if tier is not None:
                            tier.on_define(b.name)
                    elif op is D_GOFAST:  # continue this frame's loop in compiled code
                        # resumed after a preemption in an OS process where it is not compiled
                        # yet (see _budget_out): compile it here, or interpret it from its start
                        if cl.proto.fast is None and (tier is None or not tier.compile(cl.proto)):
                            pc = 0
                            continue
                        v = _enter_fast(tier, proc, cl, regs[:cl.proto.nparams], None)
                        cl, code, pc, regs, a = frames.pop()  # the bottom frame is HALT_FRAME
                        regs[a] = v
                    elif op is D_HALT:  # the bottom of every process's stack: its function returned
                        proc.result = regs[0]
                        regs[0] = None  # HALT_FRAME's registers are shared by every process
                        proc.regs = regs
                        vm.used = refill - budget
                        return DONE
                    else:  # D_SKIPPED cannot run: the fused instruction before it jumps over it
                        raise AssertionError(f"internal: decoded op {op} has no handler")
            # budget spent and the host wants the CPU back: the callee or loop head is current
            proc.cl = cl
            proc.pc = pc
            proc.regs = regs
            vm.used = refill  # only a spent budget breaks out of the loop
            return YIELD
        except Exception as exc:
            outcome = _on_error(proc, exc, code, op, a, b, c, pc, cl, regs)
        except Block as blk:
            proc.cl, proc.pc, proc.regs = cl, pc, regs
            proc.ret_reg = a
            proc.request = blk.request
            vm.used = refill - budget
            return BLOCK
        except ProcessExit as ex:
            proc.result = ex.reason
            vm.used = refill - budget
            return EXITED
        except Halt as h:
            proc.result = h.code
            vm.used = refill - budget
            return HALT
        except _Unwound as uw:
            # The fast tier handed back its frames (vm/fast.py): continue them here, or leave.
            cl, pc, regs = uw.cl, uw.pc, uw.regs
            code = cl.proto.dcode
            if uw.error is not None:
                pending = uw.error
            elif uw.outcome is not None:
                proc.cl, proc.pc, proc.regs = cl, pc, regs
                vm.used = refill - budget
                return uw.outcome
            continue
        if outcome is None:  # a try caught it: the handler's frame is current
            cl, pc, regs = proc.cl, proc.pc, proc.regs
            code = cl.proto.dcode
            continue
        vm.used = refill - budget
        return outcome


def _make_closure(p: Proto, regs: list, upvals: tuple) -> Closure:
    """CLOSURE: capture from the creating frame's registers (kind 0) or upvalues (kind 1).

    A function of its own so that `regs` stays a fast local in the loop: a comprehension in
    the loop would turn it into a cell (LOAD_DEREF on every register access).
    """
    return Closure(p, tuple([regs[i] if k == 0 else upvals[i] for k, i in p.upvals]))


def _fused_rest(code: list[tuple], nxt: int) -> int:
    """Where a superinstruction continues when it cannot take its fast path: the index of its
    second half, which then runs on its own."""
    return nxt - 1


def _fault_index(code: list[tuple], op: Any, a: Any, b: Any, c: Any, pc: Any) -> int:
    """The index of the instruction that raised, from the loop's locals (see module doc)."""
    cands = [pc - 1, pc - 2] if isinstance(pc, int) else []
    if isinstance(c, int):
        cands.append(c - 2)
    for i in cands:
        if 0 <= i < len(code):
            t = code[i]
            if t[0] is op and t[1] is a and t[2] is b and t[3] is c and t[4] == pc:
                return i
    return max(0, (pc if isinstance(pc, int) else 1) - 1)


_LISP_NAMES = {"ADD": "+", "ADDI": "+", "SUB": "-", "MUL": "*", "DIV": "/", "IDIV": "div", "MOD": "mod",
               "NEG": "-", "LT": "<", "LE": "<=", "IFLT": "<", "IFLE": "<=", "IFLTI": "<", "IFLEI": "<=",
               "IFGTI": ">", "IFGEI": ">=", "HEAD": "head", "TAIL": "tail"}
_CALL_OPS = frozenset({"CALL", "CALLG", "TAILCALL", "TAILCALLG", "CALLB", "APPLY", "TAILAPPLY"})


def python_error(proto: Proto, pc: int, regs: list, exc: BaseException) -> LispError:
    """The Lisp error for a Python exception raised by instruction `pc` (interpreted or compiled):
    the message names the Lisp operator and the offending values, the same in both tiers."""
    if isinstance(exc, LispError):
        return exc
    if isinstance(exc, RecursionError):
        return badarg("value nested too deeply to process")
    limit = limit_error(exc)  # out of memory, an int too large to print: (error system_limit ...)
    if limit is not None:
        return limit
    if not isinstance(exc, (TypeError, ZeroDivisionError, OverflowError, ValueError, AttributeError, IndexError)):
        raise exc
    try:
        op, f = decode_fields(proto.code[pc])
    except (IndexError, KeyError):
        return badarg(f"bad argument ({exc})")
    name = op.name
    text = str(exc)
    if name in _CALL_OPS:
        if isinstance(exc, TypeError) and ("positional argument" in text or "takes" in text or "required" in text):
            return badarity(f"wrong number of arguments ({text})")
        return badarg(f"not a function ({text})")
    lisp = _LISP_NAMES.get(name, "operation")
    if isinstance(exc, ZeroDivisionError):
        return badarg(f"{lisp}: division by zero")
    if isinstance(exc, OverflowError):
        return badarg(f"{lisp}: result too large for a float")
    a, b, c = f.get("A", 0), f.get("B", 0), f.get("C", 0)
    r = regs.__getitem__
    try:
        if name in ("ADD", "SUB", "MUL", "DIV", "IDIV", "MOD", "LT", "LE"):
            args = (r(b), r(c))
        elif name == "ADDI":  # (- x 1) compiles to ADDI x -1: name it as written
            args = (r(b), abs(c))
            if c < 0:
                lisp = "-"
        elif name in ("NEG", "HEAD", "TAIL"):
            args = (r(b),)
        elif name in ("IFLT", "IFLE"):
            args = (r(a), r(b))
        elif name in ("IFLTI", "IFLEI", "IFGTI", "IFGEI"):
            args = (r(a), b)
        else:
            return badarg(f"bad argument ({text})")
    except (IndexError, TypeError):
        return badarg(f"bad argument ({text})")
    if name in ("HEAD", "TAIL"):
        return badarg(f"{lisp}: expected a non-empty list, got {B.short_repr(args[0])}")
    kinds = "numbers" if lisp in ("+", "-", "*", "/", "div", "mod") else "numbers or strings"
    got = " and ".join(f"{type_name(x)} {B.short_repr(x)}" for x in args)
    return badarg(f"{lisp}: expected {kinds}, got {got}")


def _on_error(proc: Process, exc: Exception, code: list, op: Any, a: Any, b: Any, c: Any, pc: Any,
              cl: Closure, regs: list) -> int | None:
    """Find a `try` for the error, innermost frame first. Returns None when one caught it
    (proc.cl/pc/regs then hold the handler's frame) or FAILED."""
    if isinstance(exc, LispError) and exc.pos is not None:
        err, where, i = exc, exc.pos, None
    else:
        i = _fault_index(code, op, a, b, c, pc) if code is not None else 0
        if code is not None and code[i][0] in _FUSED_CALLS and not isinstance(exc, TypeError):
            i += 1  # the call half failed: report the call's position
        err = python_error(cl.proto, i, regs, exc)
        where = cl.proto.position(i)
    value = err.value
    frames = proc.frames
    at = i if i is not None else (pc - 1 if isinstance(pc, int) else 0)
    while True:
        for start, end, handler, reg in cl.proto.handlers:
            if start <= at < end:
                regs[reg] = value
                proc.cl, proc.pc, proc.regs = cl, handler, regs
                return None
        if frames[-1] is HALT_FRAME:
            proc.result = value
            proc.where = where
            proc.cl, proc.regs = cl, regs
            return FAILED
        cl, _code, ret_pc, regs, _dst = frames.pop()
        at = ret_pc - 1  # the call instruction


class _Unwound(BaseException):
    """The fast tier's frames, turned back into interpreter frames (see vm/fast.py)."""

    def __init__(self, cl: Closure, pc: int, regs: list, error: BaseException | None, outcome: int | None) -> None:
        super().__init__()
        self.cl, self.pc, self.regs = cl, pc, regs  # the innermost frame, to continue here
        self.error = error  # an error to raise in that frame, or None
        self.outcome = outcome  # None: go on running here; else leave the loop with this outcome


_WAITING: Any = None  # vm.fast.WAITING, set by vm.fast when it is imported

# Transitional, until vm/fast.py takes the VM it serves (`enable(vm, ...)`): the old module names
# FAST, EAGER, SLICE_TICKS, TICKS_LEFT and USED read and write one process-wide VM, which run()
# uses when the host's own VM has no fast tier.
_LEGACY = VM()
_LEGACY_NAMES = {"FAST": "fast", "EAGER": "eager", "SLICE_TICKS": "slice_ticks", "TICKS_LEFT": "ticks_left",
                 "USED": "used"}


def _legacy_vm() -> VM:
    host = B.ctx.host
    vm = getattr(host, "vm", None)
    return _LEGACY if vm is None or (vm.fast is None and _LEGACY.fast is not None) else vm


class _CompatModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        field = _LEGACY_NAMES.get(name)
        if field is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        return getattr(_legacy_vm() if field in ("ticks_left", "used") else _LEGACY, field)

    def __setattr__(self, name: str, value: Any) -> None:
        field = _LEGACY_NAMES.get(name)
        if field is None:
            super().__setattr__(name, value)
        else:
            setattr(_legacy_vm() if field == "ticks_left" else _LEGACY, field, value)


sys.modules[__name__].__class__ = _CompatModule


def _enter_fast(tier: Any, proc: Process, f: Closure, args: list, caller: tuple | None) -> Any:
    """Call compiled code from the loop. If it must stop, its frames come back as interpreter
    frames on `proc` (after `caller`, the frame that called) and the loop gets an _Unwound.

    A compiled server loop with nothing to take yet is entered interpreted instead: its wait
    would unwind the compiled frame (~5 us), while the interpreter's is a return, and the
    message that wakes it resumes it compiled (RECVWAIT)."""
    p = f.proto
    if len(args) != p.nparams and (not p.rest or len(args) < p.nparams):
        _enter(p, args, f)  # raises badarity, as an interpreted call does
    if p.fastwait >= 0:
        mb = proc.mailbox
        if mb is None or proc.mbhead >= len(mb):
            if caller is not None:
                proc.frames.append(caller)
            raise _Unwound(f, 0, [*args, *p.pad], None, None)
    try:
        return tier.fn_for(f)(*args)
    except BaseException as e:
        raise tier.unwind(e, proc, caller) from None


def _resume_fast(tier: Any, proc: Process, f: Closure, regs: list) -> Any:
    """Resume a compiled receive loop at its RECVWAIT (a message came): its value, or
    vm.fast.WAITING (the process waits again, its parameters written back to `regs`)."""
    p = f.proto
    try:
        n = p.nparams
        if n == 1:
            return p.fast(regs[0], _top=True)
        return p.fast(*regs[:n], _top=True)
    except BaseException as e:
        raise tier.unwind(e, proc, None) from None


def _budget_out(tier: Any, proc: Process, cl: Closure, pc: int, preempt: Any) -> int:
    """The budget is spent: compile the running function if it is hot, move a looping frame
    into compiled code (the GOFAST tuple at the end of its code), or yield (~pc) if the host
    wants the CPU back. Called once per budget, never per instruction."""
    if tier is not None:
        p = cl.proto
        just = p.fast is None and not p.nofast and tier.compile(p)
        if p.fast is not None and pc == 0 and not p.rest:
            go = len(p.dcode) - 1
            # Just compiled: compiled code is preempted only by CPU-time ticks (4 ms apart where
            # the kernel's clock ticks at 250 Hz), so the host gets its look now: a scheduler that
            # sees CPU-bound work starts another one here instead of ~5 ms later
            # (docs/performance.md, parallel). A yield resumes at GOFAST, which compiles `p` if
            # the process resumes in an OS process where it is not yet.
            return ~go if just and preempt() else go
    return ~pc if preempt() else pc


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


__all__ += ["describe", "math"]
