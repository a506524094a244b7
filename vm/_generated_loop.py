# Generated from vm/opcodes.py and vm/loopgen.py by `python -m lispvm.vm.loopgen`; do not edit.
"""The VM loop, `run(proc, budget, host) -> outcome` (see vm/interp.py for the decoded code it
runs and vm/loopgen.py for where each handler comes from)."""

from __future__ import annotations

from typing import Any

from . import values as _values
from ._generated_ops import (
    D_ADD,
    D_ADDI,
    D_ADDI_CALLG1,
    D_ADDI_TAILCALLG1,
    D_ADDRET,
    D_APPLY,
    D_BAND,
    D_BNOT,
    D_BOR,
    D_BOX,
    D_BXOR,
    D_CALL,
    D_CALLB0,
    D_CALLB1,
    D_CALLB2,
    D_CALLB3,
    D_CALLBN,
    D_CALLG,
    D_CLOSURE,
    D_CONS,
    D_DEFGLOBAL,
    D_DIV,
    D_EQ,
    D_GE,
    D_GETGLOBAL,
    D_GETUPBOX,
    D_GETUPVAL,
    D_GOFAST,
    D_GOOSR,
    D_GT,
    D_HALT,
    D_HEAD,
    D_IDIV,
    D_IFEQ,
    D_IFEQK,
    D_IFEQK_RET,
    D_IFGE,
    D_IFGEI,
    D_IFGT,
    D_IFGTI,
    D_IFLE,
    D_IFLEI,
    D_IFLT,
    D_IFLTI,
    D_IFLTI_RET,
    D_JMP,
    D_JMPBACK,
    D_LE,
    D_LIST,
    D_LOADK,
    D_LOADNIL,
    D_LOOP,
    D_LT,
    D_MOD,
    D_MOVE,
    D_MOVE_TAILSELF1,
    D_MUL,
    D_NE,
    D_NEG,
    D_NOT,
    D_RECV_BEGIN,
    D_RECVNEXT,
    D_RECVPEEK,
    D_RECVSTART,
    D_RECVSTART_PEEK,
    D_RECVTAKE,
    D_RECVWAIT,
    D_RETURN,
    D_SELF,
    D_SEND,
    D_SETBOX,
    D_SETGLOBAL,
    D_SETUPBOX,
    D_SUB,
    D_TAIL,
    D_TAILAPPLY,
    D_TAILCALL,
    D_TAILCALLG,
    D_TEST,
    D_UNBOX,
    D_UNCONS,
    D_UNLIST,
    D_UNMAPK,
    D_UNVEC,
    D_VECTOR,
)
from .boxes import BARE
from .errors import INT_LIMIT, INT_MIN, Halt, LispError, ProcessExit
from .loopsupport import (
    INFINITY,
    _bad_after,
    _bad_spread,
    _budget_out,
    _enter,
    _enter_fast,
    _enter_osr,
    _enter_resume,
    _fused_rest,
    _make_closure,
    _not_callable,
    _on_error,
    _Parked,
    _resume_fast,
    _Unwound,
    for_global,
    list_of,
    not_a_cons,
    note_box,
    product_too_large,
    touch,
    undefined_global,
)
from .process import BLOCK, DONE, EXITED, HALT, TIMED_OUT, WAIT, YIELD, Block, Process, ctx
from .state import WAITING
from .values import FALSE, TRUE, UNDEF, Box, Builtin, Closure, Cons, Pid, Vec, to_pylist

__all__ = ["run"]


def run(proc: Process, budget: int, host: Any) -> int:
    """Run `proc` until it waits, ends, or spends `budget` reductions and must yield.

    Returns one of the outcomes in vm.process; the process record holds the state to resume.
    """
    ctx.proc = proc
    ctx.host = host
    vm = host.vm
    tier = vm.fast
    pid = proc.pid  # boxes this process owns carry its key (vm/boxes.py key_of, written out)
    pkey = BARE if pid is None else pid.key
    vm.ticks_left = vm.slice_ticks  # the fast tier's preemption counts this slice from here
    cl = proc.cl
    pc = proc.pc
    pending: BaseException | None = None
    if tier is not None:
        tier.ns["_PK"] = pkey  # compiled code's owner test reads it
        p = cl.proto
        if (p in tier.servers and (f := p.fast) is not None and (mb := proc.mailbox) is not None
                and proc.scan < len(mb) and p.dcode[pc][0] is D_RECVWAIT and proc.reply_error is None):
            # The usual wake-up of an actor: a compiled receive loop waiting at its RECVWAIT and a
            # message to scan. Resumed here as RECVWAIT would (_resume_fast, written out: this is
            # every message's wake-up in a ring), without the loop's set-up; whatever does not
            # end in another wait goes on in the loop below as it would there.
            try:
                # one to three parameters called positionally: a starred call with a keyword
                # builds a dict and a slice (~600 machine instructions a wake-up)
                if (n := p.nparams) == 1:
                    v = f(proc.regs[0], _top=True)
                elif n == 2:
                    r = proc.regs
                    v = f(r[0], r[1], _top=True)
                elif n == 3:
                    r = proc.regs
                    v = f(r[0], r[1], r[2], _top=True)
                else:
                    v = f(*proc.regs[:n], _top=True)
            except BaseException as e:  # unwound or positioned: the loop handles it
                try:
                    pending = tier.unwind(e, proc, None)
                except BaseException as e2:  # (what _resume_fast would have raised instead)
                    pending = e2
                pc += 1  # as RECVWAIT raised it
            else:
                if v is WAITING:
                    vm.used = 0
                    return WAIT
                cl, _, pc, regs, a = proc.frames.pop()
                regs[a] = v
                proc.cl, proc.pc, proc.regs = cl, pc, regs
    eager = vm.eager
    refill = budget
    if tier is not None:
        if budget > tier.every:  # looks for hot code every tier.check reductions (_budget_out)
            # the slice in equal looks of at most `every`: a budget of 1001 is two looks of 501,
            # not a look of 1000 and one of 1000 more (the budget rounded up by under one per look)
            looks = -(-budget // tier.every)
            tier.check = -(-budget // looks)
            tier.slice = tier.left = looks * tier.check
            refill = budget = tier.check
        else:
            tier.left = 0
    preempt = host.preempt
    int_min, int_limit = INT_MIN, INT_LIMIT  # locals: MUL tests every integer product against them
    frames = proc.frames
    code = cl.proto.dcode
    regs = proc.regs
    op = a = b = c = ins = None
    if proc.reply_error is not None:  # a BLOCK request failed: raise its error at the call
        pending = LispError(proc.reply_error)
        proc.reply_error = None
    while True:
        try:
            if pending is not None:
                exc, pending = pending, None
                raise exc
            while True:
                op, a, b, c, pc = ins = code[pc]
                if op < D_MOVE:
                    if op is D_IFLTI_RET:
                        if regs[a] < b:
                            v = regs[c]
                            cl, code, pc, regs, a = frames.pop()
                            regs[a] = v
                    elif op is D_ADDI_CALLG1:
                        # (f (+ x k)) in one dispatch
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
                                pc = _budget_out(tier, proc, cl, pc, preempt, regs)
                                if pc < 0:
                                    pc = ~pc
                                    break
                        else:  # anything unusual (compiled, rest, badarity): the unfused pair
                            regs[a + 1] = x
                            pc = _fused_rest(code, pc)
                    elif op is D_ADDRET:
                        v = regs[b] + regs[c] - 0
                        cl, code, pc, regs, a = frames.pop()
                        regs[a] = v
                    elif op is D_RETURN:
                        v = regs[a]
                        cl, code, pc, regs, a = frames.pop()
                        regs[a] = v
                    elif op is D_IFLTI:
                        if regs[a] < b:
                            pc = c
                    elif op is D_ADDI:
                        regs[a] = regs[b] + c
                    elif op is D_LOADK:
                        regs[a] = b
                elif op < D_RECVSTART_PEEK:
                    if op is D_MOVE:
                        regs[a] = regs[b]
                    elif op is D_IFEQK:
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
                                pc = _budget_out(tier, proc, cl, pc, preempt, regs)
                                if pc < 0:
                                    pc = ~pc
                                    break
                        elif f.__class__ is Builtin:
                            regs[a] = f.fn(*regs[a + 1:a + 1 + b])
                        else:
                            raise _not_callable(f, c.name)
                    elif op is D_ADDI_TAILCALLG1:
                        # (f (+ x k)) in tail position
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
                                pc = _budget_out(tier, proc, cl, pc, preempt, regs)
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
                                pc = _budget_out(tier, proc, cl, pc, preempt, regs)
                                if pc < 0:
                                    pc = ~pc
                                    break
                        else:
                            regs[a + 1] = regs[b]
                            pc = _fused_rest(code, pc)
                    elif op is D_TAILCALLG:
                        f = c.v
                        if f is cl and 0 < b <= 2 and b == cl.proto.arity:
                            # a loop: reuse the frame's registers (stale temporaries are never read: the compiler
                            # writes every register before reading it). The arguments sit above the parameters, so the
                            # copies cannot overlap.
                            regs[0] = regs[a + 1]
                            if b == 2:
                                regs[1] = regs[a + 2]
                            pc = 0
                            budget -= 1
                            if budget <= 0:
                                budget = refill
                                pc = _budget_out(tier, proc, cl, pc, preempt, regs)
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
                                pc = _budget_out(tier, proc, cl, pc, preempt, regs)
                                if pc < 0:
                                    pc = ~pc
                                    break
                        elif f.__class__ is Builtin:
                            v = f.fn(*regs[a + 1:a + 1 + b])
                            cl, code, pc, regs, a = frames.pop()
                            regs[a] = v
                        else:
                            raise _not_callable(f, c.name)
                    elif op is D_CALLB1:
                        regs[a] = c(regs[a + 1])
                    elif op is D_SEND:
                        # (send dest msg), with b_send's checks inline
                        x = regs[a + 1]
                        y = regs[a + 2]
                        if x.__class__ is Pid and not _values.BOXES_MADE:
                            host.send(proc, x, y)
                            regs[a] = y
                        else:
                            regs[a] = c(x, y)
                    elif op is D_CALLB2:
                        regs[a] = c(regs[a + 1], regs[a + 2])
                    elif op is D_ADD:
                        regs[a] = regs[b] + regs[c] - 0
                    elif op is D_IFEQK_RET:
                        if regs[a] == b:
                            v = regs[c]
                            cl, code, pc, regs, a = frames.pop()
                            regs[a] = v
                elif op < D_HEAD:
                    if op is D_RECVSTART_PEEK:
                        proc.deadline = None
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
                            if tier is not None:
                                p = cl.proto
                                if p.fast is None:
                                    tier.woken(p, len(mb) - proc.scan)  # by many messages: a server loop, maybe
                                if p in tier.servers:
                                    # compiled as a receive loop, whose one RECVWAIT is this one: resume it there (any
                                    # other compiled receive waits here interpreted, and goes on so)
                                    proc.regs = regs
                                    v = _resume_fast(tier, proc, cl, regs)
                                    if v is WAITING:
                                        proc.cl = cl
                                        proc.pc = pc - 1
                                        vm.used = refill - budget
                                        return WAIT
                                    cl, code, pc, regs, a = frames.pop()
                                    regs[a] = v
                                    continue
                                elif (f := tier.resume(p, pc - 1)) is not None:
                                    # any other compiled receive waited here: the scan and the rest of the function
                                    # from here in compiled code (FastTier.resume), up to where it gives back
                                    pc = _enter_resume(tier, proc, cl, f, regs)
                                    continue
                            if b is None:
                                pc = c
                            else:
                                regs[b] = mb[proc.scan]
                                pc = c + 1
                        elif proc.deadline == TIMED_OUT:
                            proc.deadline = None
                            proc.scan = proc.mbhead
                        else:
                            x = regs[a]
                            if x is not None:
                                if (x.__class__ is not int and x.__class__ is not float) or not x >= 0:
                                    if x is not INFINITY:
                                        raise _bad_after(x)
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
                        elif proc.scan == (x := proc.mbhead):  # the oldest of several: Process.take written out
                            mb[x] = None
                            x += 1
                            if x == len(mb):
                                proc.mailbox = None
                                x = 0
                            elif x >= 32 and x + x >= len(mb):
                                del mb[:x]
                                x = 0
                            proc.mbhead = proc.scan = x
                            proc.deadline = None
                        else:
                            proc.take()
                    elif op is D_UNLIST:
                        n, fail = c
                        x = regs[b]
                        if n == 3:  # the usual message shape, unrolled (a Python loop costs more, docs/performance.md)
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
                            regs[a] = list_of(regs[a + 1:a + 1 + b])
                    elif op is D_TEST:
                        if (x := regs[a]) is not FALSE and x is not None:
                            pc = c
                    elif op is D_GETGLOBAL:
                        x = b.v
                        if x is UNDEF:
                            raise undefined_global(b)
                        regs[a] = x
                elif op < D_IFGEI:
                    if op is D_HEAD:
                        x = regs[b]
                        if x.__class__ is not Cons:
                            raise not_a_cons("head", x)
                        regs[a] = x.head
                    elif op is D_TAIL:
                        x = regs[b]
                        if x.__class__ is not Cons:
                            raise not_a_cons("tail", x)
                        regs[a] = x.tail
                    elif op is D_CONS:
                        regs[a] = Cons(regs[b], regs[c])
                    elif op is D_SUB:
                        regs[a] = regs[b] - regs[c]
                    elif op is D_IFLT:
                        if regs[a] < regs[b]:
                            pc = c
                    elif op is D_IFLE:
                        if regs[a] <= regs[b]:
                            pc = c
                    elif op is D_IFGT:
                        if regs[a] > regs[b]:
                            pc = c
                    elif op is D_IFGE:
                        if regs[a] >= regs[b]:
                            pc = c
                    elif op is D_IFGTI:
                        if regs[a] > b:
                            pc = c
                    elif op is D_IFLEI:
                        if regs[a] <= b:
                            pc = c
                elif op < D_MUL:
                    if op is D_IFGEI:
                        if regs[a] >= b:
                            pc = c
                    elif op is D_IFEQ:
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
                            pc = _budget_out(tier, proc, cl, pc, preempt, regs)
                            if pc < 0:
                                pc = ~pc
                                break
                elif op < D_RECVSTART:
                    if op is D_MUL:
                        x = regs[b] * regs[c] - 0
                        if x.__class__ is int and not int_min < x < int_limit:
                            raise product_too_large()
                        regs[a] = x
                    elif op is D_EQ:
                        regs[a] = TRUE if regs[b] == regs[c] else FALSE
                    elif op is D_LT:
                        regs[a] = TRUE if regs[b] < regs[c] else FALSE
                    elif op is D_LE:
                        regs[a] = TRUE if regs[b] <= regs[c] else FALSE
                    elif op is D_GT:
                        regs[a] = TRUE if regs[b] > regs[c] else FALSE
                    elif op is D_GE:
                        regs[a] = TRUE if regs[b] >= regs[c] else FALSE
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
                            pc = _budget_out(tier, proc, cl, pc, preempt, regs)
                            if pc < 0:
                                pc = ~pc
                                break
                    elif op is D_CALL or op is D_TAILCALL or op is D_APPLY or op is D_TAILAPPLY:
                        f = regs[a]
                        if op is D_APPLY or op is D_TAILAPPLY:
                            spread = to_pylist(regs[a + b])
                            if spread is None:
                                raise _bad_spread(regs[a + b])
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
                                pc = _budget_out(tier, proc, cl, pc, preempt, regs)
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
                    elif op is D_CLOSURE:
                        regs[a] = _make_closure(b, regs, cl.upvals)
                    elif op is D_DIV:
                        regs[a] = regs[b] / regs[c]
                    elif op is D_IDIV:
                        regs[a] = regs[b] // regs[c]
                    elif op is D_MOD:
                        regs[a] = regs[b] % regs[c] - 0
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
                elif op < D_BOR:
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
                            x = touch(proc, x)
                        regs[a] = x.v
                    elif op is D_SETUPBOX:
                        x = cl.upvals[b]
                        if x.owner != pkey:
                            x = touch(proc, x)
                        x.v = regs[a]
                    elif op is D_UNBOX:
                        regs[a] = regs[b].v
                    elif op is D_SETBOX:
                        regs[a].v = regs[b]
                    elif op is D_BOX:
                        regs[a] = Box(regs[a], pkey)
                        note_box()
                    elif op is D_LOADNIL:
                        regs[a:a + b + 1] = [None] * (b + 1)
                    elif op is D_DEFGLOBAL:
                        x = regs[a]
                        if x.__class__ is Closure and x.name == "fn":
                            x.name = b.name
                        x = for_global(proc, x, b)  # a value, not variables (vm/boxes.py)
                        b.v = x
                        host.define(b.name, x)
                        if tier is not None:
                            tier.on_define(b.name)
                else:
                    if op is D_BOR:
                        regs[a] = regs[b] | regs[c]
                    elif op is D_BXOR:
                        regs[a] = regs[b] ^ regs[c]
                    elif op is D_BNOT:
                        regs[a] = ~regs[b]
                    elif op is D_LOOP:
                        pass
                    elif op is D_UNMAPK:
                        x = regs[b]
                        if x.__class__ is _values.Map and (x := x.m.get(c[0], UNDEF)) is not UNDEF:
                            regs[a] = x
                        else:
                            pc = c[1]
                    elif op is D_SELF:
                        regs[a] = cl
                    elif op is D_SETGLOBAL:
                        if b.v is UNDEF:
                            raise undefined_global(b, "set: ")
                        x = for_global(proc, regs[a], b)
                        b.v = x
                        host.define(b.name, x)
                        if tier is not None:
                            tier.on_define(b.name)
                    elif op is D_BAND:
                        regs[a] = regs[b] & regs[c]
                    elif op is D_GOFAST:
                        # continue this frame's loop in compiled code; resumed after a preemption in an OS process where
                        # it is not compiled yet (see _budget_out): compile it here, or interpret it from its start
                        if cl.proto.fast is None and (tier is None or not tier.compile(cl.proto)):
                            pc = 0
                            continue
                        v = _enter_fast(tier, proc, cl, regs[:cl.proto.nparams], None, True)
                        if v.__class__ is _Parked:
                            # a parking function waited (vm/fast.py): the frame it gave back waits at its RECVWAIT
                            pc = v.pc
                            regs = v.regs
                            continue
                        cl, code, pc, regs, a = frames.pop()
                        regs[a] = v
                    elif op is D_GOOSR:
                        # a frame that yielded at a `loop`'s head (a = the head): on in the loop's compiled code
                        pc = _enter_osr(tier, proc, cl, a, regs)
                    elif op is D_HALT:
                        # the bottom of every process's stack: its function returned
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
            outcome = _on_error(proc, exc, code, ins, pc, cl, regs)
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
                ins = None  # the error belongs to the call this frame made (fault_index)
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
