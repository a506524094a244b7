# Generated from vm/opcodes.py and vm/loopgen.py by `python -m lispvm.vm.loopgen`; do not edit.

"""The loop's decoded operations, numbered in dispatch order (vm/loopgen.py HOT), which
file opcodes become which (internal numbers, never stored), and the builtins that rows of the
instruction table define (Op.builtin), registered when this module is imported."""

from __future__ import annotations

from typing import Any

from .checks import described
from .errors import LispError, badarg
from .registry import builtin

D_IFLTI_RET = 0
D_ADDI_CALLG1 = 1
D_ADDRET = 2
D_RETURN = 3
D_IFLTI = 4
D_ADDI = 5
D_LOADK = 6
D_MOVE = 7
D_IFEQK = 8
D_CALLG = 9
D_ADDI_TAILCALLG1 = 10
D_MOVE_TAILSELF1 = 11
D_TAILCALLG = 12
D_CALLB1 = 13
D_SEND = 14
D_CALLB2 = 15
D_ADD = 16
D_IFEQK_RET = 17
D_RECVSTART_PEEK = 18
D_RECV_BEGIN = 19
D_RECVWAIT = 20
D_RECVPEEK = 21
D_RECVTAKE = 22
D_UNLIST = 23
D_LIST = 24
D_TEST = 25
D_GETGLOBAL = 26
D_HEAD = 27
D_TAIL = 28
D_CONS = 29
D_SUB = 30
D_IFLT = 31
D_IFLE = 32
D_IFGT = 33
D_IFGE = 34
D_IFGTI = 35
D_IFLEI = 36
D_IFGEI = 37
D_IFEQ = 38
D_GETUPVAL = 39
D_CALLB0 = 40
D_CALLB3 = 41
D_CALLBN = 42
D_JMP = 43
D_JMPBACK = 44
D_MUL = 45
D_EQ = 46
D_LT = 47
D_LE = 48
D_GT = 49
D_GE = 50
D_NE = 51
D_NOT = 52
D_RECVNEXT = 53
D_CALL = 54
D_TAILCALL = 55
D_APPLY = 56
D_TAILAPPLY = 57
D_RECVSTART = 58
D_CLOSURE = 59
D_DIV = 60
D_IDIV = 61
D_MOD = 62
D_NEG = 63
D_VECTOR = 64
D_UNCONS = 65
D_UNVEC = 66
D_GETUPBOX = 67
D_SETUPBOX = 68
D_UNBOX = 69
D_SETBOX = 70
D_BOX = 71
D_LOADNIL = 72
D_DEFGLOBAL = 73
D_BOR = 74
D_BXOR = 75
D_BNOT = 76
D_LOOP = 77
D_UNMAPK = 78
D_SELF = 79
D_SETGLOBAL = 80
D_BAND = 81
D_GOFAST = 82
D_GOOSR = 83
D_HALT = 84
D_SKIPPED = 85

DECODED = {
    "D_IFLTI_RET": D_IFLTI_RET,
    "D_ADDI_CALLG1": D_ADDI_CALLG1,
    "D_ADDRET": D_ADDRET,
    "D_RETURN": D_RETURN,
    "D_IFLTI": D_IFLTI,
    "D_ADDI": D_ADDI,
    "D_LOADK": D_LOADK,
    "D_MOVE": D_MOVE,
    "D_IFEQK": D_IFEQK,
    "D_CALLG": D_CALLG,
    "D_ADDI_TAILCALLG1": D_ADDI_TAILCALLG1,
    "D_MOVE_TAILSELF1": D_MOVE_TAILSELF1,
    "D_TAILCALLG": D_TAILCALLG,
    "D_CALLB1": D_CALLB1,
    "D_SEND": D_SEND,
    "D_CALLB2": D_CALLB2,
    "D_ADD": D_ADD,
    "D_IFEQK_RET": D_IFEQK_RET,
    "D_RECVSTART_PEEK": D_RECVSTART_PEEK,
    "D_RECV_BEGIN": D_RECV_BEGIN,
    "D_RECVWAIT": D_RECVWAIT,
    "D_RECVPEEK": D_RECVPEEK,
    "D_RECVTAKE": D_RECVTAKE,
    "D_UNLIST": D_UNLIST,
    "D_LIST": D_LIST,
    "D_TEST": D_TEST,
    "D_GETGLOBAL": D_GETGLOBAL,
    "D_HEAD": D_HEAD,
    "D_TAIL": D_TAIL,
    "D_CONS": D_CONS,
    "D_SUB": D_SUB,
    "D_IFLT": D_IFLT,
    "D_IFLE": D_IFLE,
    "D_IFGT": D_IFGT,
    "D_IFGE": D_IFGE,
    "D_IFGTI": D_IFGTI,
    "D_IFLEI": D_IFLEI,
    "D_IFGEI": D_IFGEI,
    "D_IFEQ": D_IFEQ,
    "D_GETUPVAL": D_GETUPVAL,
    "D_CALLB0": D_CALLB0,
    "D_CALLB3": D_CALLB3,
    "D_CALLBN": D_CALLBN,
    "D_JMP": D_JMP,
    "D_JMPBACK": D_JMPBACK,
    "D_MUL": D_MUL,
    "D_EQ": D_EQ,
    "D_LT": D_LT,
    "D_LE": D_LE,
    "D_GT": D_GT,
    "D_GE": D_GE,
    "D_NE": D_NE,
    "D_NOT": D_NOT,
    "D_RECVNEXT": D_RECVNEXT,
    "D_CALL": D_CALL,
    "D_TAILCALL": D_TAILCALL,
    "D_APPLY": D_APPLY,
    "D_TAILAPPLY": D_TAILAPPLY,
    "D_RECVSTART": D_RECVSTART,
    "D_CLOSURE": D_CLOSURE,
    "D_DIV": D_DIV,
    "D_IDIV": D_IDIV,
    "D_MOD": D_MOD,
    "D_NEG": D_NEG,
    "D_VECTOR": D_VECTOR,
    "D_UNCONS": D_UNCONS,
    "D_UNVEC": D_UNVEC,
    "D_GETUPBOX": D_GETUPBOX,
    "D_SETUPBOX": D_SETUPBOX,
    "D_UNBOX": D_UNBOX,
    "D_SETBOX": D_SETBOX,
    "D_BOX": D_BOX,
    "D_LOADNIL": D_LOADNIL,
    "D_DEFGLOBAL": D_DEFGLOBAL,
    "D_BOR": D_BOR,
    "D_BXOR": D_BXOR,
    "D_BNOT": D_BNOT,
    "D_LOOP": D_LOOP,
    "D_UNMAPK": D_UNMAPK,
    "D_SELF": D_SELF,
    "D_SETGLOBAL": D_SETGLOBAL,
    "D_BAND": D_BAND,
    "D_GOFAST": D_GOFAST,
    "D_GOOSR": D_GOOSR,
    "D_HALT": D_HALT,
    "D_SKIPPED": D_SKIPPED,
}

# Which decoded operations each file opcode may become (read by tests/test_opcodes.py).
DECODES_TO = {
    "MOVE": ('D_MOVE',),
    "LOADK": ('D_LOADK',),
    "LOADI": ('D_LOADK',),
    "LOADNIL": ('D_LOADNIL', 'D_LOADK',),
    "LOADBOOL": ('D_LOADK',),
    "GETUPVAL": ('D_GETUPVAL',),
    "GETUPBOX": ('D_GETUPBOX',),
    "SETUPBOX": ('D_SETUPBOX',),
    "BOX": ('D_BOX',),
    "UNBOX": ('D_UNBOX',),
    "SETBOX": ('D_SETBOX',),
    "GETGLOBAL": ('D_GETGLOBAL',),
    "SETGLOBAL": ('D_SETGLOBAL',),
    "DEFGLOBAL": ('D_DEFGLOBAL',),
    "CLOSURE": ('D_CLOSURE',),
    "CALL": ('D_CALL',),
    "TAILCALL": ('D_TAILCALL',),
    "CALLG": ('D_CALLG',),
    "TAILCALLG": ('D_TAILCALLG',),
    "CALLB": ('D_CALLB0', 'D_CALLB1', 'D_CALLB2', 'D_CALLB3', 'D_CALLBN', 'D_SEND',),
    "APPLY": ('D_APPLY',),
    "TAILAPPLY": ('D_TAILAPPLY',),
    "RETURN": ('D_RETURN',),
    "ADD": ('D_ADD',),
    "SUB": ('D_SUB',),
    "MUL": ('D_MUL',),
    "DIV": ('D_DIV',),
    "IDIV": ('D_IDIV',),
    "MOD": ('D_MOD',),
    "ADDI": ('D_ADDI',),
    "NEG": ('D_NEG',),
    "NOT": ('D_NOT',),
    "EQ": ('D_EQ',),
    "NE": ('D_NE',),
    "LT": ('D_LT',),
    "LE": ('D_LE',),
    "JMP": ('D_JMP', 'D_JMPBACK', 'D_SKIPPED',),
    "TEST": ('D_TEST',),
    "IFEQ": ('D_IFEQ',),
    "IFLT": ('D_IFLT',),
    "IFLE": ('D_IFLE',),
    "IFEQK": ('D_IFEQK',),
    "IFEQI": ('D_IFEQK',),
    "IFLTI": ('D_IFLTI',),
    "IFLEI": ('D_IFLEI',),
    "IFGTI": ('D_IFGTI',),
    "IFGEI": ('D_IFGEI',),
    "LIST": ('D_LIST',),
    "VECTOR": ('D_VECTOR',),
    "CONS": ('D_CONS',),
    "HEAD": ('D_HEAD',),
    "TAIL": ('D_TAIL',),
    "UNLIST": ('D_UNLIST',),
    "UNCONS": ('D_UNCONS',),
    "UNVEC": ('D_UNVEC',),
    "RECVPEEK": ('D_RECVPEEK',),
    "RECVNEXT": ('D_RECVNEXT',),
    "RECVTAKE": ('D_RECVTAKE',),
    "RECVWAIT": ('D_RECVWAIT',),
    "RECVSTART": ('D_RECVSTART',),
    "BAND": ('D_BAND',),
    "BOR": ('D_BOR',),
    "BXOR": ('D_BXOR',),
    "BNOT": ('D_BNOT',),
    "UNMAPK": ('D_UNMAPK',),
    "LOOP": ('D_LOOP',),
    "SELF": ('D_SELF',),
    "GT": ('D_GT',),
    "GE": ('D_GE',),
    "IFGT": ('D_IFGT',),
    "IFGE": ('D_IFGE',),
}
FUSED = {
    "D_IFLTI_RET": ('IFLTI', 'RETURN'),
    "D_IFEQK_RET": ('IFEQK', 'RETURN'),
    "D_ADDI_CALLG1": ('ADDI', 'CALLG'),
    "D_ADDI_TAILCALLG1": ('ADDI', 'TAILCALLG'),
    "D_ADDRET": ('ADD', 'RETURN'),
    "D_RECVSTART_PEEK": ('RECVSTART', 'RECVPEEK'),
    "D_RECV_BEGIN": ('LOADNIL', 'RECVSTART', 'RECVPEEK'),
    "D_MOVE_TAILSELF1": ('MOVE', 'TAILCALLG'),
}
SYNTHETIC = ("D_GOFAST", "D_GOOSR", "D_HALT",)
# The decoded form of each conditional and match: fused with the JMP after it.
COND = {
    "TEST": D_TEST,
    "IFEQ": D_IFEQ,
    "IFLT": D_IFLT,
    "IFLE": D_IFLE,
    "IFEQK": D_IFEQK,
    "IFEQI": D_IFEQK,
    "IFLTI": D_IFLTI,
    "IFLEI": D_IFLEI,
    "IFGTI": D_IFGTI,
    "IFGEI": D_IFGEI,
    "IFGT": D_IFGT,
    "IFGE": D_IFGE,
}
MATCH = {
    "UNLIST": D_UNLIST,
    "UNCONS": D_UNCONS,
    "UNVEC": D_UNVEC,
    "UNMAPK": D_UNMAPK,
}
FUSED_WITH_NEXT = frozenset({
    D_TEST,
    D_IFEQ,
    D_IFLT,
    D_IFLE,
    D_IFEQK,
    D_IFLTI,
    D_IFLEI,
    D_IFGTI,
    D_IFGEI,
    D_IFGT,
    D_IFGE,
    D_UNLIST,
    D_UNCONS,
    D_UNVEC,
    D_UNMAPK,
})
# File opcodes decoded by operand kind alone (vm/interp.py _decode_proto).
PLAIN = {
    "MOVE": D_MOVE,
    "LOADK": D_LOADK,
    "LOADNIL": D_LOADNIL,
    "GETUPVAL": D_GETUPVAL,
    "GETUPBOX": D_GETUPBOX,
    "SETUPBOX": D_SETUPBOX,
    "BOX": D_BOX,
    "UNBOX": D_UNBOX,
    "SETBOX": D_SETBOX,
    "GETGLOBAL": D_GETGLOBAL,
    "SETGLOBAL": D_SETGLOBAL,
    "DEFGLOBAL": D_DEFGLOBAL,
    "CLOSURE": D_CLOSURE,
    "CALL": D_CALL,
    "TAILCALL": D_TAILCALL,
    "CALLG": D_CALLG,
    "TAILCALLG": D_TAILCALLG,
    "APPLY": D_APPLY,
    "TAILAPPLY": D_TAILAPPLY,
    "RETURN": D_RETURN,
    "ADD": D_ADD,
    "SUB": D_SUB,
    "MUL": D_MUL,
    "DIV": D_DIV,
    "IDIV": D_IDIV,
    "MOD": D_MOD,
    "ADDI": D_ADDI,
    "NEG": D_NEG,
    "NOT": D_NOT,
    "EQ": D_EQ,
    "NE": D_NE,
    "LT": D_LT,
    "LE": D_LE,
    "JMP": D_JMP,
    "LIST": D_LIST,
    "VECTOR": D_VECTOR,
    "CONS": D_CONS,
    "HEAD": D_HEAD,
    "TAIL": D_TAIL,
    "RECVPEEK": D_RECVPEEK,
    "RECVNEXT": D_RECVNEXT,
    "RECVTAKE": D_RECVTAKE,
    "RECVWAIT": D_RECVWAIT,
    "RECVSTART": D_RECVSTART,
    "BAND": D_BAND,
    "BOR": D_BOR,
    "BXOR": D_BXOR,
    "BNOT": D_BNOT,
    "LOOP": D_LOOP,
    "SELF": D_SELF,
    "GT": D_GT,
    "GE": D_GE,
}


def operand_error(lisp: str, args: Any) -> LispError:
    """The badarg of the operator `lisp` given operands it refuses, naming them as written."""
    if lisp.startswith("bit/"):
        kinds = "integers"
    else:
        kinds = "numbers" if lisp in ("+", "-", "*", "/", "div", "mod") else "numbers or strings"
    got = " and ".join(described(x) for x in args)
    return badarg(f"{lisp}: expected {kinds}, got {got}")


@builtin("bit/and")
def b_bit_and(b: Any, c: Any) -> Any:
    """(bit/and b c): the BAND instruction's template, as a function."""
    try:
        result = b & c
    except TypeError:
        raise operand_error("bit/and", (b, c,)) from None
    return result


@builtin("bit/or")
def b_bit_or(b: Any, c: Any) -> Any:
    """(bit/or b c): the BOR instruction's template, as a function."""
    try:
        result = b | c
    except TypeError:
        raise operand_error("bit/or", (b, c,)) from None
    return result


@builtin("bit/xor")
def b_bit_xor(b: Any, c: Any) -> Any:
    """(bit/xor b c): the BXOR instruction's template, as a function."""
    try:
        result = b ^ c
    except TypeError:
        raise operand_error("bit/xor", (b, c,)) from None
    return result


@builtin("bit/not")
def b_bit_not(b: Any) -> Any:
    """(bit/not b): the BNOT instruction's template, as a function."""
    try:
        result = ~b
    except TypeError:
        raise operand_error("bit/not", (b,)) from None
    return result
