"""The generator of the VM loop: `python -m lispvm.vm.loopgen` writes vm/_generated_ops.py (the
decoded operations and their tables), vm/_generated_loop.py (`run`, the loop) and docs/opcodes.md
from the instruction table (vm/opcodes.py) and the hand-written handlers below.

Owns: the loop's dispatch order (HOT, hot-first groups), the call/budget prologue and the frame
pop (written once here, expanded where a handler says @ENTER, @COUNT, @PUSH or @POP), and the
handlers of the instructions whose behaviour is special: calls, returns, jumps, receive, matches
and the superinstructions. Every other instruction's handler is its row's template, rendered.
Must never: be imported at run time (the generated files are; tests/test_opcodes.py regenerates
them and fails on any difference).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .opcodes import OPS, Op, markdown, render

__all__ = ["generate", "HOT", "SPECIAL", "main"]

HEADER = "# Generated from vm/opcodes.py and vm/loopgen.py by `python -m lispvm.vm.loopgen`; do not edit.\n"

# The dispatch order, hottest first (operation counts over the examples and benchmarks, see
# docs/performance.md): the loop tests a group's range first (`op < first of the next group`),
# then the operations of that group one by one, so an operation waits behind its group's rank
# plus its place in the group. Names are file opcodes (their row's handler) or the decoded
# operations of SPECIAL; several names joined by "|" share one handler.
HOT: tuple[tuple[str, ...], ...] = (
    ("IFLTI_RET", "ADDI_CALLG1", "ADDRET", "RETURN", "IFLTI", "ADDI", "LOADK"),
    ("MOVE", "IFEQK", "CALLG", "ADDI_TAILCALLG1", "MOVE_TAILSELF1", "TAILCALLG", "CALLB1", "SEND",
     "CALLB2", "ADD", "IFEQK_RET"),
    ("RECVSTART_PEEK", "RECV_BEGIN", "RECVWAIT", "RECVPEEK", "RECVTAKE", "UNLIST", "LIST", "TEST",
     "GETGLOBAL"),
    ("HEAD", "TAIL", "CONS", "SUB", "IFLT", "IFLE", "IFGT", "IFGE", "IFGTI", "IFLEI"),
    ("IFGEI", "IFEQ", "GETUPVAL", "CALLB0", "CALLB3", "CALLBN", "JMP", "JMPBACK"),
    ("MUL", "EQ", "LT", "LE", "GT", "GE", "NE", "NOT", "RECVNEXT", "CALL|TAILCALL|APPLY|TAILAPPLY"),
    ("RECVSTART", "CLOSURE", "DIV", "IDIV", "MOD", "NEG", "VECTOR", "UNCONS"),
    ("UNVEC", "GETUPBOX", "SETUPBOX", "UNBOX", "SETBOX", "BOX", "LOADNIL", "DEFGLOBAL"),
    ("SETGLOBAL", "BAND", "GOFAST", "GOOSR", "HALT", "SKIPPED"),
)

# File opcodes that decode as another one (the predecoder resolves their operand into its slot).
DECODE_AS = {"LOADI": "LOADK", "LOADBOOL": "LOADK", "IFEQI": "IFEQK"}

# Decoded operations that are not one file opcode each, and which file opcodes they come from
# (the predecoder in vm/interp.py chooses them; tests/test_opcodes.py checks both sides).
EXTRA_DECODES = {
    "LOADNIL": ("LOADK",),  # LOADNIL of one register is a LOADK of nil
    "CALLB": ("CALLB0", "CALLB1", "CALLB2", "CALLB3", "CALLBN", "SEND"),  # by argument count; send inline
    "JMP": ("JMPBACK", "SKIPPED"),  # a backward jump counts a reduction; the JMP of a fused pair never runs
}
# Superinstructions: two or three adjacent instructions in one dispatch (made by interp._fuse).
FUSED = {"IFLTI_RET": ("IFLTI", "RETURN"), "IFEQK_RET": ("IFEQK", "RETURN"), "ADDI_CALLG1": ("ADDI", "CALLG"),
         "ADDI_TAILCALLG1": ("ADDI", "TAILCALLG"), "ADDRET": ("ADD", "RETURN"),
         "RECVSTART_PEEK": ("RECVSTART", "RECVPEEK"), "RECV_BEGIN": ("LOADNIL", "RECVSTART", "RECVPEEK"),
         "MOVE_TAILSELF1": ("MOVE", "TAILCALLG")}
# GOFAST ends every decoded function, a GOOSR per `loop` follows it; HALT is the bottom frame's code
SYNTHETIC = ("GOFAST", "GOOSR", "HALT")

# The macros of the hand-written handlers, written once.
MACROS = {
    # count one reduction; when the budget is spent, compile, go compiled, or yield (_budget_out)
    "@COUNT": "budget -= 1\n"
              "if budget <= 0:\n"
              "    budget = refill\n"
              "    pc = _budget_out(tier, proc, cl, pc, preempt, regs)\n"
              "    if pc < 0:\n"
              "        pc = ~pc\n"
              "        break",
    # run the closure f (its prototype p) from its first instruction: a call's prologue
    "@ENTER": "cl = f\ncode = p.dcode\npc = 0\n@COUNT",
    # the caller's frame, to come back to with the result in its register a
    "@PUSH": "frames.append((cl, code, pc, regs, a))",
    # the callee's registers: the b arguments from R[a+1], then its other registers (p.pad)
    "@ARGS": "if b == 1:\n"
             "    regs = [regs[a + 1], *p.pad]\n"
             "elif b == 2:\n"
             "    regs = [regs[a + 1], regs[a + 2], *p.pad]\n"
             "else:\n"
             "    regs = regs[a + 1:a + 1 + b] + p.pad",
    # return v to the caller (the bottom frame is HALT_FRAME, so the stack is never empty)
    "@POP": "v = {0}\ncl, code, pc, regs, a = frames.pop()\nregs[a] = v",
}

# Hand-written handlers, in the loop's own names (regs, a, b, c, pc, cl, proc, host, tier...).
SPECIAL: dict[str, str] = {
    "IFLTI_RET": """\
if regs[a] < b:
    @POP regs[c]""",
    "IFEQK_RET": """\
if regs[a] == b:
    @POP regs[c]""",
    "ADDI_CALLG1": """\
# (f (+ x k)) in one dispatch
x = regs[b[0]] + b[1]
f = c.v
if f.__class__ is Closure and (p := f.proto).arity == 1:
    @PUSH
    regs = [x, *p.pad]
    @ENTER
else:  # anything unusual (compiled, rest, badarity): the unfused pair
    regs[a + 1] = x
    pc = _fused_rest(code, pc)""",
    "ADDI_TAILCALLG1": """\
# (f (+ x k)) in tail position
x = regs[b[0]] + b[1]
f = c.v
if f.__class__ is Closure and (p := f.proto).arity == 1:
    regs = [x, *p.pad]
    @ENTER
else:
    regs[a + 1] = x
    pc = _fused_rest(code, pc)""",
    "ADDRET": """\
@POP regs[b] + regs[c] - 0""",
    "MOVE_TAILSELF1": """\
if c.v is cl:
    regs[0] = regs[b]
    pc = 0
    @COUNT
else:
    regs[a + 1] = regs[b]
    pc = _fused_rest(code, pc)""",
    "RETURN": """\
@POP regs[a]""",
    "CALLG": """\
f = c.v
if f.__class__ is Closure:
    p = f.proto
    if b == p.arity:  # the common case; -1 sends the rest below
        @PUSH
        @ARGS
    else:
        if p.fast is not None or (eager and tier.compile(p)):  # compiled: call it (vm/fast.py)
            regs[a] = _enter_fast(tier, proc, f, regs[a + 1:a + 1 + b], (cl, code, pc, regs, a))
            continue
        x = _enter(p, regs[a + 1:a + 1 + b], f)  # raises before any change
        @PUSH
        regs = x
    @ENTER
elif f.__class__ is Builtin:
    regs[a] = f.fn(*regs[a + 1:a + 1 + b])
else:
    raise _not_callable(f, c.name)""",
    "TAILCALLG": """\
f = c.v
if f is cl and 0 < b <= 2 and b == cl.proto.arity:
    # a loop: reuse the frame's registers (stale temporaries are never read: the compiler
    # writes every register before reading it). The arguments sit above the parameters, so the
    # copies cannot overlap.
    regs[0] = regs[a + 1]
    if b == 2:
        regs[1] = regs[a + 2]
    pc = 0
    @COUNT
elif f.__class__ is Closure:
    p = f.proto
    if b == p.arity:
        @ARGS
    elif p.fast is not None or (eager and tier.compile(p)):  # compiled: call, return
        v = _enter_fast(tier, proc, f, regs[a + 1:a + 1 + b], None)
        @POP v
        continue
    else:
        regs = _enter(p, regs[a + 1:a + 1 + b], f)
    @ENTER
elif f.__class__ is Builtin:
    @POP f.fn(*regs[a + 1:a + 1 + b])
else:
    raise _not_callable(f, c.name)""",
    "CALLB0": "regs[a] = c()",
    "CALLB1": "regs[a] = c(regs[a + 1])",
    "CALLB2": "regs[a] = c(regs[a + 1], regs[a + 2])",
    "CALLB3": "regs[a] = c(regs[a + 1], regs[a + 2], regs[a + 3])",
    "CALLBN": "regs[a] = c(*regs[a + 1:a + 1 + b])",
    "SEND": """\
# (send dest msg), with b_send's checks inline
x = regs[a + 1]
y = regs[a + 2]
if x.__class__ is Pid and not _values.BOXES_MADE:
    host.send(proc, x, y)
    regs[a] = y
else:
    regs[a] = c(x, y)""",
    "CALL|TAILCALL|APPLY|TAILAPPLY": """\
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
        @POP v
        continue
    newregs = _enter(p, args, f)
    if op is D_CALL or op is D_APPLY:
        @PUSH
    regs = newregs
    @ENTER
elif f.__class__ is Builtin:
    v = f.fn(*args)
    if op is D_CALL or op is D_APPLY:
        regs[a] = v
    else:
        @POP v
else:
    raise _not_callable(f)""",
    "CLOSURE": "regs[a] = _make_closure(b, regs, cl.upvals)",
    "JMP": "pass",
    "JMPBACK": "@COUNT",
    "UNLIST": """\
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
        pc = fail""",
    "UNCONS": """\
x = regs[b]
if x.__class__ is Cons:
    regs[a] = x.head
    regs[a + 1] = x.tail
else:
    pc = c[1]""",
    "UNMAPK": """\
x = regs[b]
if x.__class__ is _values.Map and (x := x.m.get(c[0], UNDEF)) is not UNDEF:
    regs[a] = x
else:
    pc = c[1]""",
    "SELF": "regs[a] = cl",
    "UNVEC": """\
n, fail = c
x = regs[b]
if x.__class__ is Vec and len(x.items) == n:
    regs[a:a + n] = x.items
else:
    pc = fail""",
    "RECVSTART": """\
proc.scan = proc.mbhead
proc.deadline = None""",
    "RECVSTART_PEEK": """\
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
    pc = c""",
    "RECVPEEK": """\
mb = proc.mailbox
if mb is not None and proc.scan < len(mb):
    regs[a] = mb[proc.scan]
else:
    pc = c""",
    "RECVNEXT": """\
proc.scan += 1
pc = c
@COUNT""",
    "RECVTAKE": """\
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
    proc.take()""",
    "RECVWAIT": """\
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
            @POP v
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
    return WAIT""",
    "GOFAST": """\
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
@POP v""",
    "GOOSR": """\
# a frame that yielded at a `loop`'s head (a = the head): on in the loop's compiled code
pc = _enter_osr(tier, proc, cl, a, regs)""",
    "HALT": """\
# the bottom of every process's stack: its function returned
proc.result = regs[0]
regs[0] = None  # HALT_FRAME's registers are shared by every process
proc.regs = regs
vm.used = refill - budget
return DONE""",
}
# RECVSTART fused with its RECVPEEK, when the receive has no `after`: the same scan's start
SPECIAL["RECV_BEGIN"] = "regs[b] = None  # no `after`: wait for ever\n" + SPECIAL["RECVSTART_PEEK"]

# What the loop calls a template's $names (the others keep their name).
LOOP_NAMES = {"INT_MIN": "int_min", "INT_LIMIT": "int_limit"}
_SLOT = {"A": "a", "B": "b", "C": "c", "Bx": "b", "sBx": "b"}


def _loop_reg(field: str, off: int, nfield: str | None = None, nadj: int = 0) -> str:
    base = _SLOT[field] + (f" + {off}" if off else "")
    if nfield is None:
        return f"regs[{base}]"
    count = _SLOT[nfield] + (f" + {nadj}" if nadj > 0 else f" - {-nadj}" if nadj else "")
    return f"regs[{base}:{base} + {count}]"


def _loop_operand(kind: str, field: str) -> str:
    return f"cl.upvals[{_SLOT[field]}]" if kind == "U" else _SLOT[field]


def loop_source(op: Op) -> str | None:
    """The loop's handler of a row with a template (None for the hand-written ones)."""
    text = op.loop or op.template
    if text is None:
        return None
    out = render(text, _loop_reg, _loop_operand, lambda n: LOOP_NAMES.get(n, n))
    if "cond" in op.flags:
        return f"if {out}:\n    pc = c"
    return out


def _expand(text: str) -> list[str]:
    """Handler text with its @macros expanded (keeping their indentation)."""
    out: list[str] = []
    for line in text.split("\n"):
        stripped = line.lstrip()
        ind = line[: len(line) - len(stripped)]
        word, _, arg = stripped.partition(" ")
        if word in MACROS:
            body = MACROS[word]
            if "{0}" in body:  # @POP expr: evaluated before the pop (it reads the callee's registers)
                body = body.format(arg)
                if arg == "v":
                    body = body.split("\n", 1)[1]
            out += [ind + x for x in _expand(body)]
        else:
            out.append(line)
    return out


def handlers() -> dict[str, str]:
    """Every decoded operation's handler (by HOT name), hand-written or rendered from its row."""
    out: dict[str, str] = {}
    for op in OPS:
        if op.name in DECODE_AS:
            continue
        src = loop_source(op)
        if src is not None:
            out[op.name] = src
    for name, src in SPECIAL.items():
        if name in out:
            raise ValueError(f"{name}: both a template and a hand-written handler")
        out[name] = src
    return out


def order() -> tuple[tuple[str, ...], ...]:
    """HOT, with any handler it does not list (a row just added) at the front of its last,
    coldest group: a new instruction needs no place in HOT until it is worth a faster one."""
    listed = {entry for group in HOT for entry in group}
    extra = tuple(name for name in handlers() if name not in listed)
    return HOT[:-1] + (extra + HOT[-1],)


def decoded_names() -> list[str]:
    """The decoded operations in dispatch order (their numbers)."""
    return [n for group in order() for entry in group for n in entry.split("|")]


def _check() -> None:
    names = decoded_names()
    if len(set(names)) != len(names):
        raise ValueError("a decoded operation is listed twice in HOT")
    have = set(handlers()) | {"SKIPPED"}
    listed = {entry for group in HOT for entry in group}
    if listed - have:
        raise ValueError(f"vm/loopgen.py HOT lists {sorted(listed - have)}, which have no handler: neither a row "
                         "of vm/opcodes.py with a template nor a hand-written SPECIAL entry")
    for op in OPS:
        if op.name not in DECODE_AS and op.name not in names and op.name not in EXTRA_DECODES:
            raise ValueError(f"{op.name} has no decoded operation")


def ops_source() -> str:
    """vm/_generated_ops.py: the decoded operations' numbers, what each file opcode becomes, and
    the builtins that rows define."""
    _check()
    names = decoded_names()
    lines = [HEADER, '"""The loop\'s decoded operations, numbered in dispatch order (vm/loopgen.py HOT), which',
             'file opcodes become which (internal numbers, never stored), and the builtins that rows of the',
             'instruction table define (Op.builtin), registered when this module is imported."""', "",
             "from __future__ import annotations", "",
             "from typing import Any", "",
             "from .checks import described",
             "from .errors import LispError, badarg",
             "from .registry import builtin",
             ""]
    for i, n in enumerate(names):
        lines.append(f"D_{n} = {i}")
    lines += ["", "DECODED = {"] + [f'    "D_{n}": D_{n},' for n in names] + ["}", ""]
    decodes_to: dict[str, list[str]] = {}
    for op in OPS:
        first = DECODE_AS.get(op.name, op.name)
        own = [f"D_{first}"] if first in names else []
        decodes_to[op.name] = own + [f"D_{x}" for x in EXTRA_DECODES.get(op.name, ())]
    lines.append("# Which decoded operations each file opcode may become (read by tests/test_opcodes.py).")
    lines.append("DECODES_TO = {")
    for name, ds in decodes_to.items():
        lines.append(f'    "{name}": ({"".join(repr(d) + ", " for d in ds).rstrip()}),')
    lines.append("}")
    lines += ["FUSED = {"] + [f'    "D_{k}": {v!r},' for k, v in FUSED.items()] + ["}"]
    lines.append("SYNTHETIC = (" + ", ".join(f'"D_{s}"' for s in SYNTHETIC) + ",)")
    cond = [op.name for op in OPS if "cond" in op.flags]
    match = [op.name for op in OPS if "match" in op.flags]
    lines.append("# The decoded form of each conditional and match: fused with the JMP after it.")
    lines += ["COND = {"] + [f'    "{n}": D_{DECODE_AS.get(n, n)},' for n in cond] + ["}"]
    lines += ["MATCH = {"] + [f'    "{n}": D_{n},' for n in match] + ["}"]
    fused_with_next = dict.fromkeys(DECODE_AS.get(n, n) for n in cond + match)
    lines += ["FUSED_WITH_NEXT = frozenset({"] + [f"    D_{n}," for n in fused_with_next] + ["})"]
    plain = [op.name for op in OPS if op.name not in DECODE_AS and "cond" not in op.flags
             and "match" not in op.flags and op.name in names]
    lines.append("# File opcodes decoded by operand kind alone (vm/interp.py _decode_proto).")
    lines += ["PLAIN = {"] + [f'    "{n}": D_{n},' for n in plain] + ["}"]
    lines.append("")
    return "\n".join(lines) + OPS_SUPPORT + builtins_source() + "\n"


LOOP_HEAD = '''\
"""The VM loop, `run(proc, budget, host) -> outcome` (see vm/interp.py for the decoded code it
runs and vm/loopgen.py for where each handler comes from)."""

from __future__ import annotations

from typing import Any

from . import values as _values
{D_IMPORTS}from .boxes import BARE
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
'''

LOOP_TAIL = '''\
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
'''


def loop_source_file() -> str:
    """vm/_generated_loop.py: `run`, its dispatch in HOT's order."""
    _check()
    hs = handlers()
    hot = order()
    used = sorted({n for group in hot for entry in group for n in entry.split("|") if n != "SKIPPED"}
                  | {"APPLY", "TAILAPPLY", "CALL", "TAILCALL"}, key=str.lower)  # as ruff's isort orders them
    imports = "from ._generated_ops import (\n" + "".join(f"    D_{n},\n" for n in used) + ")\n"
    out = [HEADER + LOOP_HEAD.replace("{D_IMPORTS}", imports).rstrip("\n")]
    ind = " " * 16
    names = decoded_names()
    for gi, group in enumerate(hot):
        if gi == 0:
            out.append(f"{ind}if op < D_{hot[1][0].split('|')[0]}:")
        elif gi < len(hot) - 1:
            out.append(f"{ind}elif op < D_{hot[gi + 1][0].split('|')[0]}:")
        else:
            out.append(f"{ind}else:")
        first = True
        for entry in group:
            if entry == "SKIPPED":
                continue
            test = " or ".join(f"op is D_{n}" for n in entry.split("|"))
            out.append(f"{ind}    {'if' if first else 'elif'} {test}:")
            first = False
            out += [f"{ind}        {line}" if line else "" for line in _expand(hs[entry])]
        if gi == len(hot) - 1:
            out.append(f"{ind}    else:  # D_SKIPPED cannot run: the fused instruction before it jumps over it")
            out.append(f"{ind}        raise AssertionError(f\"internal: decoded op {{op}} has no handler\")")
    assert names[-1] == "SKIPPED"
    out.append(LOOP_TAIL.rstrip("\n"))
    return "\n".join(out) + "\n"


# The wording of an operand a row's operator refuses, written into vm/_generated_ops.py: the
# builtins that rows define raise it, and vm/loopsupport.py's python_error names a failed
# instruction with it (the module sits below both, and below vm/builtins.py, which imports it
# through vm/process.py, so a row's builtin is in the table whenever the table is complete).
OPS_SUPPORT = '''

def operand_error(lisp: str, args: Any) -> LispError:
    """The badarg of the operator `lisp` given operands it refuses, naming them as written."""
    if lisp.startswith("bit/"):
        kinds = "integers"
    else:
        kinds = "numbers" if lisp in ("+", "-", "*", "/", "div", "mod") else "numbers or strings"
    got = " and ".join(described(x) for x in args)
    return badarg(f"{lisp}: expected {kinds}, got {got}")
'''


def _builtin_param(field: str, off: int, nfield: str | None = None, nadj: int = 0) -> str:
    if nfield is not None or off:
        raise ValueError("a row's builtin takes its operands as parameters: no windows")
    return "result" if field == "A" else field.lower()


def builtins_source() -> str:
    """The builtins that rows define (Op.builtin): a function that runs the row's template on
    its arguments, raising the instruction's error for operands Python refuses."""
    out: list[str] = []
    for op in OPS:
        if op.builtin is None:
            continue
        params = [w for w in op.reads]
        body = render(op.template or "", _builtin_param, _loop_operand, lambda n: LOOP_NAMES.get(n, n))
        fn = "b_" + "".join(ch if ch.isalnum() else "_" for ch in op.builtin)
        args = ", ".join(f"{p.lower()}: Any" for p in params)
        names = [p.lower() for p in params]
        lisp = op.lisp or op.builtin
        out += ["", "", f'@builtin("{op.builtin}")', f"def {fn}({args}) -> Any:",
                f'    """({op.builtin} {" ".join(names)}): the {op.name} instruction\'s template, as a function."""',
                "    try:"]
        out += [f"        {line}" for line in body.split("\n")]
        out += ["    except TypeError:",
                f'        raise operand_error("{lisp}", ({", ".join(names)},)) from None',
                "    return result"]
    return "\n".join(out)


def generate(root: Path) -> dict[Path, str]:
    """The generated files' paths under `root` (the package directory) and their text."""
    return {root / "vm" / "_generated_ops.py": ops_source(),
            root / "vm" / "_generated_loop.py": loop_source_file(),
            root / "docs" / "opcodes.md": markdown()}


def main(argv: list[str] | None = None, root: Path | None = None) -> int:
    """Write the generated files under `root` (the package directory), or with --check report
    the stale ones (exit status 1)."""
    ap = argparse.ArgumentParser(prog="python -m lispvm.vm.loopgen", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="write nothing; fail if a file differs")
    args = ap.parse_args(argv)
    root = root or Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        # an installed copy (site-packages): its rows are not the ones being edited
        print(f"loopgen: {root} is an installed copy, not a source checkout; install the checkout "
              "editable (pip install -e '.[dev]') and run this again", file=sys.stderr)
        return 2
    stale = []
    for path, text in generate(root).items():
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old != text:
            stale.append(path)
            if not args.check:
                path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'} {path.relative_to(root)}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())

