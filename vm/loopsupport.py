"""What the generated loop (vm/_generated_loop.py) calls off its fast path: the general call,
the hand-over to the fast tier, the budget's end, and errors.

Owns: entering a function the slow way (rest parameters, wrong arity), calling into and resuming
compiled code, what happens when a budget is spent, and turning an exception into the Lisp error
of the instruction that raised it and the `try` that catches it. Must never: import the loop
(it imports this module), the scheduler or the assembler.

Errors: a handler raises a LispError where the Lisp rule is broken (head of a non-list, an
undefined global, a bad `after`); an operation Python checks itself (`+` on a string, a builtin
called with the wrong number of arguments) raises a Python exception that `python_error` names by
the instruction, its operands and, for a call, the callee's declared parameters — never by the
exception's message. The instruction is recorded where it runs: each fetch binds the decoded
tuple itself (`ins`), and `fault_index` finds that very object in the frame's code.
"""

from __future__ import annotations

from typing import Any

from ._generated_ops import D_ADDI_CALLG1, D_ADDI_TAILCALLG1, operand_error
from .boxes import for_global, key_of, touch
from .checks import call_refused, described, short_repr
from .errors import BadBytecode, LispError, badarg, badarity, limit_error, product_too_large, undef
from .lbc import Proto
from .opcodes import BY_NAME, decode_fields
from .process import FAILED, Process
from .registry import BUILTINS
from .state import HALT_FRAME
from .values import UNDEF, Builtin, Closure, Cons, intern, note_box, to_pylist

_PRELUDE_FILE = "prelude.lisp"  # the source name of vm/prelude.lbc's prototypes (builtins.PRELUDE_FILE)
_LOOP = BY_NAME["LOOP"].num  # the marker before a `loop`'s head (_budget_out's OSR entry)
_DEEP_STACK = 3000  # interpreter frames under a function's budget end that make it a deep recursion

__all__ = ["python_error", "operand_error", "fault_index", "list_of", "undefined_global", "not_a_cons", "INFINITY",
           "for_global", "key_of", "touch", "note_box", "product_too_large", "short_repr", "BadBytecode"]

INFINITY = intern("infinity")  # `after infinity`: wait for ever
_FUSED_CALLS = frozenset({D_ADDI_CALLG1, D_ADDI_TAILCALLG1})  # errors in their call half belong to the call


def list_of(items: list) -> Any:
    """The Lisp list of `items`."""
    out = None
    for x in reversed(items):
        out = Cons(x, out)
    return out


def undefined_global(cell: Any, what: str = "") -> LispError:
    """GETGLOBAL (or, with what="set: ", SETGLOBAL) of a name that is not defined."""
    return undef(f"{what}undefined global {cell.name}")


def not_a_cons(name: str, x: Any) -> LispError:
    """HEAD or TAIL of something that is not a cons."""
    return badarg(f"{name}: expected a non-empty list, got {short_repr(x)}")


def _bad_spread(x: Any) -> LispError:
    return badarg(f"apply: the last argument must be a list, got {short_repr(x)}")


def _bad_after(x: Any) -> LispError:
    return badarg(f"receive: after needs a number of milliseconds, got {short_repr(x)}")


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
    return badarg(f"{what}: {described(f)}")


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


class _Unwound(BaseException):
    """The fast tier's frames, turned back into interpreter frames (see vm/fast.py)."""

    def __init__(self, cl: Closure, pc: int, regs: list, error: BaseException | None, outcome: int | None) -> None:
        super().__init__()
        self.cl, self.pc, self.regs = cl, pc, regs  # the innermost frame, to continue here
        self.error = error  # an error to raise in that frame, or None
        self.outcome = outcome  # None: go on running here; else leave the loop with this outcome


class _Parked:
    """What a compiled function called with `_top` returns when its receive must wait (vm/fast.py
    _Gen.receive_block): the frame it gives back, waiting at its RECVWAIT. Never a Lisp value."""

    __slots__ = ("pc", "regs")

    def __init__(self, pc: int, regs: list) -> None:
        self.pc = pc  # its RECVWAIT
        self.regs = regs  # every register of the frame, exactly the frame's size


def _enter_fast(tier: Any, proc: Process, f: Closure, args: list, caller: tuple | None, top: bool = False) -> Any:
    """Call compiled code from the loop. If it must stop, its frames come back as interpreter
    frames on `proc` (after `caller`, the frame that called) and the loop gets an _Unwound.
    `top` (GOFAST: the compiled function replaces the running frame): the _Parked frame of a
    parking function's wait is returned rather than raised.

    A compiled server loop with nothing to take yet is entered interpreted instead: its wait
    would unwind the compiled frame, while the interpreter's is a return, and the message that
    wakes it resumes it compiled (RECVWAIT)."""
    p = f.proto
    if len(args) != p.nparams and (not p.rest or len(args) < p.nparams):
        _enter(p, args, f)  # raises badarity, as an interpreted call does
    if p in tier.servers:
        mb = proc.mailbox
        if mb is None or proc.mbhead >= len(mb):
            if caller is not None:
                proc.frames.append(caller)
            # exactly the frame's size: `[*args, *pad]` over-allocates, 32 bytes a waiting process
            raise _Unwound(f, 0, args + p.pad, None, None)
    try:
        if p not in tier.parking:
            return tier.fn_for(f)(*args)
        v = tier.fn_for(f)(*args, _top=True)
    except BaseException as e:
        raise tier.unwind(e, proc, caller) from None
    if v.__class__ is _Parked and not top:
        # its receive waits: the frame comes back at its RECVWAIT without a traceback walk, as
        # unwind would give it (the interpreter waits there, or times out into `after`)
        if caller is not None:
            proc.frames.append(caller)
        raise _Unwound(f, v.pc, v.regs, None, None)
    return v


def _resume_fast(tier: Any, proc: Process, f: Closure, regs: list) -> Any:
    """Resume a compiled receive loop at its RECVWAIT (a message came): its value, or
    vm.state.WAITING (the process waits again, its parameters written back to `regs`)."""
    p = f.proto
    try:
        n = p.nparams
        if n == 1:
            return p.fast(regs[0], _top=True)
        if n == 2:  # (not starred: a starred call with a keyword builds a dict and a slice)
            return p.fast(regs[0], regs[1], _top=True)
        return p.fast(*regs[:n], _top=True)
    except BaseException as e:
        raise tier.unwind(e, proc, None) from None


def _budget_out(tier: Any, proc: Process, cl: Closure, pc: int, preempt: Any, regs: list) -> int:
    """The budget is spent: compile the running function if it is hot, move a looping frame
    into compiled code (the GOFAST tuple at the end of its code, or at a `loop`'s head its OSR
    function, vm/fast.py FastTier.osr), or yield (~pc) if the host wants the CPU back. Called
    once per budget, never per instruction.

    With the fast tier, the loop calls it every `tier.check` reductions (FastTier.check): at
    each look but the slice's last, the host is not asked (the process keeps the CPU for its
    whole budget), and a function entered recursively is left alone (a recursion is compiled at
    a budget's end, where its depth is known: below)."""
    if tier is not None:
        p = cl.proto
        left = tier.left - tier.check
        if left > 0:  # a look inside the slice
            tier.left = left
            proc.reds += tier.check  # (the loop reports the reductions since its last refill)
            if pc == 0 and p.fast is None and _recursing(proc, p):
                return pc
            asked, preempt = preempt, _keep
        elif tier.left > 0:  # the slice's last look: the next slice starts here if the host says go on
            tier.left = tier.slice
        if pc == 0 and len(proc.frames) > _DEEP_STACK and proc.frames[-1][0].proto is p and p not in tier.refused:
            # a self-recursion thousands of frames deep: compiled, it would fill Python's stack
            # and be unwound into interpreter frames, which costs more than it saved
            tier.stay_interpreted({p})
        just = p.fast is None and tier.compile(p)  # False at once for a prototype it refused
        if just:
            _caller_loops(tier, proc)
            if preempt is _keep:  # the host's look after a compile (below) comes at any look
                preempt = asked
        if p.fast is not None and pc == 0 and not p.rest:
            go = len(p.code)  # the GOFAST tuple
            # Just compiled: compiled code is preempted only by CPU-time ticks, so the host gets
            # its look now: a scheduler that sees CPU-bound work starts another one here instead
            # of a tick later (docs/performance.md, parallel). A yield resumes at GOFAST, which
            # compiles `p` if the process resumes in an OS process where it is not yet.
            return ~go if just and preempt() else go
        if pc > 0 and p.code[pc - 1] & 0x7F == _LOOP and tier.osr(p, pc) is not None:
            code = p.dcode
            go = next((j for j in range(len(p.code) + 1, len(code)) if code[j][1] == pc), None)
            if go is not None:
                # the loop's marker (no effect) becomes its GOOSR: the next time the interpreter
                # enters this loop (an inner loop, entered again at each turn of the outer one
                # that stays interpreted), it runs compiled from its first turn
                code[pc - 1] = code[go]
            if preempt():  # resume at this loop's GOOSR tuple: in compiled code, not interpreted
                return ~go if go is not None else ~pc
            return _enter_osr(tier, proc, cl, pc, regs)
    return ~pc if preempt() else pc


def _keep() -> bool:
    """The host's preempt at a look for hot code inside a slice: the process goes on."""
    return False


def _recursing(proc: Process, p: Proto) -> bool:
    """Whether one of the few frames under the running one runs `p` (a recursion into it)."""
    for fr in proc.frames[-_CALLER_FRAMES:]:
        cl = fr[0]
        if cl.__class__ is Closure and cl.proto is p:
            return True
    return False


_CALLER_FRAMES = 4  # interpreted callers whose running loop _caller_loops compiles


def _caller_loops(tier: Any, proc: Process) -> None:
    """A function was just compiled at a budget's end: the innermost `loop` that each of its
    few nearest interpreted callers is running gets its GOOSR (as _budget_out gives a loop whose
    head the budget ends at), so that the loop's next entry runs compiled. Else a loop around a
    hot call (mandelbrot's grid row around `bounded?`) stays interpreted, calling into compiled
    code at each turn, until a budget happens to end in the caller itself."""
    for fr in proc.frames[-_CALLER_FRAMES:]:
        cl = fr[0]
        if cl.__class__ is not Closure:
            continue
        p, pc = cl.proto, fr[2]
        if p.fast is None and p in tier.refused:
            continue
        words = p.code
        call = pc - 1  # the frame's pc is the instruction after its call
        head = None
        for m in range(min(call, len(words)) - 1, -1, -1):  # the innermost loop around the call
            if words[m] & 0x7F == _LOOP and call < m + 1 + decode_fields(words[m])[1]["Bx"]:
                head = m + 1
                break
        if head is None:
            continue
        code = p.dcode
        go = next((j for j in range(len(words) + 1, len(code)) if code[j][1] == head), None)
        if go is not None and code[head - 1] is not code[go] and tier.osr(p, head) is not None:
            code[head - 1] = code[go]


def _enter_osr(tier: Any, proc: Process, cl: Closure, head: int, regs: list) -> int:
    """Run the rest of the `loop` whose head is `head` in compiled code (vm/fast.py FastTier.osr)
    from the frame's registers; its way out (the loop's end, or a return or tail call inside it)
    is where the interpreter goes on, with the registers then. Interpreted where it cannot be."""
    fn = tier.osr(cl.proto, head) if tier is not None else None
    if fn is None:
        return head
    return _enter_resume(tier, proc, cl, fn, regs)


def _enter_resume(tier: Any, proc: Process, cl: Closure, fn: Any, regs: list) -> int:
    """Run a part compiled on its own (a receive's resume function, vm/fast.py FastTier.resume,
    or a loop's OSR function) from the frame's registers: the pc where the interpreter goes on,
    the registers then in `regs`. A wait in it (or a preemption, an error) unwinds into
    interpreter frames."""
    try:
        pc, out = fn(regs, cl)
    except BaseException as e:
        raise tier.unwind(e, proc, None) from None
    regs[:] = out
    return pc


# --- errors ----------------------------------------------------------------------------------

def fault_index(code: list[tuple], ins: tuple | None, pc: int) -> int:
    """The index of the decoded instruction that raised: `ins` is the tuple the loop fetched last
    (it binds it with every fetch), found here by identity, never by comparing values.

    `ins` None, or not in `code`: the error came back from a call (a failed request, an unwound
    callee) into this frame, whose call instruction is the one before `pc`."""
    if ins is not None:
        if pc > 0 and code[pc - 1] is ins:  # the usual place: the instruction fell through
            return pc - 1
        for i, t in enumerate(code):
            if t is ins:
                return i
    return max(0, pc - 1)


def _callee(name: str, f: dict[str, int], proto: Proto, pc: int, regs: list) -> tuple[Any, list]:
    """(the called value, its arguments) of the call instruction `name` at `pc`."""
    a, b = f.get("A", 0), f.get("B", 0)
    if name == "CALLB":
        return BUILTINS[proto.consts[f["C"]].name], regs[a + 1:a + b + 1]
    if name in ("CALLG", "TAILCALLG"):  # the decoded CALLG holds the global's cell
        return proto.dcode[pc][3].v, regs[a + 1:a + b + 1]
    if name in ("APPLY", "TAILAPPLY"):
        spread = to_pylist(regs[a + b])
        return regs[a], regs[a + 1:a + b] + (spread if spread is not None else [])
    return regs[a], regs[a + 1:a + b + 1]


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
    text = str(exc)
    if "call" in op.flags:
        if isinstance(exc, TypeError):
            try:
                callee, args = _callee(op.name, f, proto, pc, regs)
            except (IndexError, KeyError, AttributeError, TypeError):
                callee, args = None, []
            if callee.__class__ is Builtin:  # its signature, not the message, says if it was arity
                return call_refused(callee.name, callee.fn, args)
        return badarg(f"not a function ({text})")
    lisp = op.lisp or "operation"
    if isinstance(exc, ZeroDivisionError):
        return badarg(f"{lisp}: division by zero")
    if isinstance(exc, OverflowError):
        return badarg(f"{lisp}: result too large for a float")
    if op.lisp is None:
        return badarg(f"bad argument ({text})")
    # the operands as written: the registers it reads, then its immediate (ADDI's, IFLTI's)
    try:
        args = [regs[first] for first, _ in op.windows(f, "reads")]
    except (IndexError, TypeError):
        return badarg(f"bad argument ({text})")
    for field, kind in op.operands:
        if kind == "I":
            v = f[field]
            if op.name == "ADDI":  # (- x 1) compiles to ADDI x -1: name it as written
                if v < 0:
                    lisp = "-"
                v = abs(v)
            args.append(v)
    if lisp in ("head", "tail"):
        return not_a_cons(lisp, args[0])
    return operand_error(lisp, args)


def _on_error(proc: Process, exc: Exception, code: list, ins: tuple | None, pc: int,
              cl: Closure, regs: list) -> int | None:
    """Find a `try` for the error, innermost frame first. Returns None when one caught it
    (proc.cl/pc/regs then hold the handler's frame) or FAILED."""
    if isinstance(exc, LispError) and exc.pos is not None:
        err, where, i = exc, exc.pos, None
    else:
        i = fault_index(code, ins, pc) if code is not None else 0
        if code is not None and code[i][0] in _FUSED_CALLS and not isinstance(exc, TypeError):
            i += 1  # the call half failed: report the call's position
        err = python_error(cl.proto, i, regs, exc)
        where = cl.proto.position(i)
    value = err.value
    frames = proc.frames
    at = i if i is not None else pc - 1
    in_prelude = where[0] == _PRELUDE_FILE
    if in_prelude and i is None and cl.proto.module is not None and cl.proto.module.file != _PRELUDE_FILE:
        where, in_prelude = cl.proto.position(at), False  # it came back from the program's call
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
        if in_prelude and cl.proto.module is not None and cl.proto.module.file != _PRELUDE_FILE:
            # the prelude's builtins fail only on what they were given: report the program's call
            where, in_prelude = cl.proto.position(at), False
