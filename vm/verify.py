"""The verifier: every loaded module is checked before any of it runs (OTP's beam_validator).

Owns: the static rules that make the loop safe to run without checks of its own. Every register
index, constant index, upvalue index, prototype index, jump target and try-table entry is in
range; constants have the kind their operand needs (a global's name is a symbol, a builtin's name
names a builtin); conditionals and matches are followed by the JMP they need, and nothing jumps
into the middle of such a pair; no code falls off the end of a function; unused bits are zero.
A failure is BadBytecode with a short reason naming the prototype and instruction.
"""

from __future__ import annotations

from .errors import BadBytecode
from .lbc import Module, Proto
from .opcodes import BY_NAME, BY_NUM, decode_fields, unused_bits_clear
from .values import Sym

__all__ = ["verify"]

_NO_FALLTHROUGH = frozenset({"RETURN", "TAILCALL", "TAILCALLG", "TAILAPPLY", "JMP", "RECVNEXT"})
_JMP = BY_NAME["JMP"].num


def verify(module: Module, builtin_names: frozenset[str] | set[str]) -> None:
    """Raise BadBytecode unless every prototype of `module` is well formed."""
    protos = module.protos
    main = protos[0]
    if main.nparams or main.rest or main.upvals:
        raise BadBytecode("top-level code must take no arguments and capture nothing")
    for p in protos:
        _verify_proto(p, module, builtin_names)


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

        a, b, c = f.get("A", 0), f.get("B", 0), f.get("C", 0)
        if name in ("CALL", "TAILCALL", "CALLG", "TAILCALLG", "CALLB", "LIST", "VECTOR", "LOADNIL"):
            reg(a, b + 1)
        elif name in ("APPLY", "TAILAPPLY"):
            if b < 1:
                raise _fail(p, i, "apply needs a list argument")
            reg(a, b + 1)
        elif name in ("UNLIST", "UNVEC"):
            reg(a, max(c, 1))
        elif name == "UNCONS":
            reg(a, 2)

        if "cond" in op.flags or "match" in op.flags:
            if i + 1 >= n or p.code[i + 1] & 0x7F != _JMP:
                raise _fail(p, i, "conditional not followed by a jump")
            if i + 2 >= n:
                raise _fail(p, i, "code falls off the end")
            second_half.add(i + 1)
        elif name not in _NO_FALLTHROUGH and i + 1 >= n:
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
