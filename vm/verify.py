"""The verifier: every loaded module is checked before any of it runs (OTP's beam_validator).

Owns: the static rules that make the loop safe to run without checks of its own. Every register
index, constant index, upvalue index, prototype index, jump target and try-table entry is in
range; constants have the kind their operand needs (a global's name is a symbol, a builtin's name
names a builtin); conditionals and matches are followed by the JMP they need, and nothing jumps
into the middle of such a pair; no code falls off the end of a function; unused bits are zero.
A `try` handler comes after the range it protects (an error in a handler that can flow back into its own range without a
backward jump would loop for ever without counting a reduction), and no register is read before
it is written on every path to the read (a must-be-written dataflow pass over the prototype's
jumps, conditionals, matches and try edges), so the loop never reads an unset register.
A failure is BadBytecode with a short reason naming the prototype and instruction.
"""

from __future__ import annotations

from .errors import BadBytecode
from .lbc import Module, Proto
from .opcodes import BY_NAME, BY_NUM, decode_fields, unused_bits_clear
from .values import Sym

__all__ = ["verify", "reserved_globals"]

_JMP = BY_NAME["JMP"].num
_SETS = (BY_NAME["DEFGLOBAL"].num, BY_NAME["SETGLOBAL"].num)


def verify(module: Module, builtin_names: frozenset[str] | set[str],
           reserved: frozenset[str] | set[str] = frozenset()) -> None:
    """Raise BadBytecode unless every prototype of `module` is well formed, and (for a program's
    code) defines or assigns no global named in `reserved` (reserved_globals(): as the compiler
    refuses `(def map/get ...)` in source, so the loader refuses it in bytecode)."""
    protos = module.protos
    main = protos[0]
    if main.nparams or main.rest or main.upvals:
        raise BadBytecode("top-level code must take no arguments and capture nothing")
    for p in protos:
        _verify_proto(p, module, builtin_names)
        if reserved:
            for i, word in enumerate(p.code):
                op, f = decode_fields(word)
                if op.num in _SETS:
                    name = p.consts[f["Bx"]]
                    if name.name in reserved:
                        what = "defines" if op.num == _SETS[0] else "assigns"
                        raise _fail(p, i, f"{what} the builtin {name.name}")


def reserved_globals() -> frozenset[str]:
    """The globals a program may not define: the builtins, their constants and the prelude's."""
    from . import prelude  # only where a program is loaded: the prelude's names
    from .registry import BUILTINS, CONSTANTS

    return frozenset(BUILTINS) | frozenset(CONSTANTS) | prelude.names()


def _fail(p: Proto, i: int | None, why: str) -> BadBytecode:
    where = f"function {p.index} ({p.name})" + (f" at {i}" if i is not None else "")
    return BadBytecode(f"{where}: {why}")


def _verify_proto(p: Proto, module: Module, builtin_names: frozenset[str] | set[str]) -> None:
    n = len(p.code)
    if n == 0:
        raise _fail(p, None, "no code")
    if not 1 <= p.nregs <= 255 or p.nparams + (1 if p.rest else 0) > p.nregs:
        raise _fail(p, None, "bad register count")
    if len(p.lines) != n:
        raise _fail(p, None, "line table does not match the code")
    protos = module.protos
    second_half: set[int] = set()  # the JMPs that belong to a conditional or a match
    targets: list[tuple[int, int]] = []  # (from, to) for every jump, checked at the end

    for i, word in enumerate(p.code):
        op = BY_NUM.get(word & 0x7F)
        if op is None:
            raise _fail(p, i, "unknown opcode")
        if not unused_bits_clear(word):
            raise _fail(p, i, "stray bits in instruction")
        _, f = decode_fields(word)
        name = op.name

        def reg(r: int, count: int = 1, i: int = i) -> None:
            if r < 0 or r + count > p.nregs:
                raise _fail(p, i, f"register {r + count - 1} out of range")

        for field, kind in op.operands:
            v = f[field]
            if kind == "R":
                reg(v)
            elif kind == "K":
                if v >= len(p.consts):
                    raise _fail(p, i, "constant index out of range")
            elif kind in ("G", "Y"):
                if v >= len(p.consts) or p.consts[v].__class__ is not Sym:
                    raise _fail(p, i, "name constant missing")
                if kind == "Y" and p.consts[v].name not in builtin_names:
                    raise _fail(p, i, f"unknown builtin {p.consts[v].name}")
            elif kind == "U":
                if v >= len(p.upvals):
                    raise _fail(p, i, "upvalue index out of range")
            elif kind == "P":
                if not 0 < v < len(protos):
                    raise _fail(p, i, "function index out of range")
                for kind_, idx in protos[v].upvals:
                    limit = p.nregs if kind_ == 0 else len(p.upvals)
                    if idx >= limit:
                        raise _fail(p, i, "closure captures out of range")
            elif kind == "J":
                targets.append((i, i + 1 + v))
            elif kind == "F" and v > 1:
                raise _fail(p, i, "flag operand must be 0 or 1")

        for first, count in op.windows(f, "reads") + op.windows(f, "writes"):
            if count > 0:
                reg(first, count)
        if name in ("APPLY", "TAILAPPLY") and f["B"] < 1:
            raise _fail(p, i, "apply needs a list argument")

        if "cond" in op.flags or "match" in op.flags:
            if i + 1 >= n or p.code[i + 1] & 0x7F != _JMP:
                raise _fail(p, i, "conditional not followed by a jump")
            if i + 2 >= n:
                raise _fail(p, i, "code falls off the end")
            second_half.add(i + 1)
        elif op.falls and i + 1 >= n:
            raise _fail(p, i, "code falls off the end")

    for src, dst in targets:
        if not 0 <= dst < n:
            raise _fail(p, src, "jump out of range")
        if dst in second_half:
            raise _fail(p, src, "jump into the middle of a conditional")
    for start, end, handler, r in p.handlers:
        if not (0 <= start < end <= n and 0 <= handler < n) or handler in second_half:
            raise _fail(p, None, "bad try table entry")
        if r >= p.nregs:
            raise _fail(p, None, "try table register out of range")
        if handler < end:
            raise _fail(p, None, "try handler inside or before its own protected range")
    _check_writes(p)


def _span(first: int, count: int) -> int:
    return ((1 << count) - 1) << first if count > 0 else 0


def _effects(p: Proto, word: int) -> tuple[int, int]:
    """(registers read, registers written) of one instruction, as bit sets: its row's windows
    (vm/opcodes.py), and for CLOSURE the registers its prototype captures."""
    op, f = decode_fields(word)
    reads = writes = 0
    for first, count in op.windows(f, "reads"):
        reads |= _span(first, count)
    for first, count in op.windows(f, "writes"):
        writes |= _span(first, count)
    if op.name == "CLOSURE" and p.module:
        for kind, idx in p.module.protos[f["Bx"]].upvals:
            if kind == 0:
                reads |= 1 << idx
    return reads, writes


def _check_writes(p: Proto) -> None:
    """Refuse a register read that some path reaches before any write to it (must-analysis)."""
    n = len(p.code)
    every = (1 << p.nregs) - 1
    effects = [_effects(p, w) for w in p.code]
    succs: list[list[tuple[int, bool]]] = []  # (next pc, whether the instruction's writes happened)
    for i, w in enumerate(p.code):
        op = BY_NUM[w & 0x7F]
        name = op.name
        out: list[tuple[int, bool]] = []
        if name in ("JMP", "RECVNEXT"):
            out.append((i + 1 + decode_fields(w)[1]["sJ"], True))
        elif name in ("RECVPEEK", "RECVWAIT"):
            out.append((i + 1 + decode_fields(w)[1]["sBx"], name == "RECVWAIT"))
            out.append((i + 1, True))
        elif "cond" in op.flags:
            out += [(i + 1, True), (i + 2, True)]
        elif "match" in op.flags:
            out += [(i + 1, False), (i + 2, True)]
        elif op.falls:
            out.append((i + 1, True))
        succs.append(out)
    covers: list[list[tuple[int, int]]] = [[] for _ in range(n)]  # the try entries around each pc
    for lo, hi, handler, r in p.handlers:
        for i in range(lo, hi):
            covers[i].append((handler, r))
    start = _span(0, p.nparams + (1 if p.rest else 0))
    state = [every] * n  # registers certainly written on entry to each instruction
    state[0] = start
    seen = [False] * n
    seen[0] = True
    work = [0]
    while work:
        i = work.pop()
        s = state[i]
        reads, writes = effects[i]
        for j, done in succs[i]:
            t = s | writes if done else s
            if not seen[j] or state[j] & t != state[j]:
                state[j] = t if not seen[j] else state[j] & t
                seen[j] = True
                work.append(j)
        for handler, r in covers[i]:
            t = s | (1 << r)
            if not seen[handler] or state[handler] & t != state[handler]:
                state[handler] = t if not seen[handler] else state[handler] & t
                seen[handler] = True
                work.append(handler)
    for i in range(n):
        if not seen[i]:
            continue
        missing = effects[i][0] & ~state[i]
        if missing:
            reg = (missing & -missing).bit_length() - 1
            raise _fail(p, i, f"register {reg} read before it is written")
