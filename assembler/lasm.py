"""Text assembly (.lasm): `disassemble(module)` writes it, `assemble(text)` reads it back.

Owns: the assembly syntax. The round trip is exact: assembling the disassembly of any valid
module gives the identical .lbc bytes (tests check every example and benchmark program, and
damaged-then-refused files never get this far). Operands are written in the order of
vm/opcodes.py, so this module knows no instruction by name.

    ; lispvm assembly, format 3
    .module "util.lisp" name="util"  ; a bundled module (docs/modules.md): its functions, then
    .function 0 "main" params=0 rest=0 regs=2   ;  the next .module; the last is the program
    ...
    .end
    .module "fib.lisp"
    .function 1 "fib" params=1 rest=0 regs=4
    .upval 0 3                      ; capture: 0 = parent register, 1 = parent upvalue
    .const 0 s"fib"                 ; constants: nil true false 42 f2.5 "text" s"symbol"
    .try 2 9 12 5                   ;   (1 2 . 3) [1 2]; floats keep every bit (f#x...)
       0: IFLTI 0 2 0 @2:18         ; index: NAME operands... @line:col ; comment
       1: JMP ->3 @2:18             ; jump operands are absolute targets
    .end
"""

from __future__ import annotations

import json
import re
import struct
from typing import Any

from ..vm.errors import INT_LIMIT, INT_MIN, MAX_INT_BITS, BadBytecode, CompileError
from ..vm.lbc import FORMAT_VERSION, MAX_POSITION, Module, Proto, module_name_ok
from ..vm.opcodes import BY_NAME, decode_fields, encode
from ..vm.values import FALSE, TRUE, Cons, Map, Sym, Vec, intern, map_items_sorted, map_of

__all__ = ["disassemble", "assemble"]


# --- writing -------------------------------------------------------------------------------

def _float(x: float) -> str:
    r = repr(x)
    if struct.pack("<d", float(r)) == struct.pack("<d", x):
        return "f" + r
    return "f#x" + struct.pack(">d", x).hex()


def const_text(k: Any) -> str:
    """One constant in assembly syntax (iterative over list spines)."""
    c = k.__class__
    if k is None:
        return "nil"
    if k is TRUE:
        return "true"
    if k is FALSE:
        return "false"
    if c is int:
        if k.bit_length() > _DECIMAL_BITS:  # past the decimal conversion limit: hex is linear
            return ("-" if k < 0 else "") + hex(abs(k))
        return str(k)
    if c is float:
        return _float(k)
    if c is str:
        return json.dumps(k)
    if c is Sym:
        return "s" + json.dumps(k.name)
    if c is Vec:
        return "[" + " ".join(const_text(e) for e in k.items) + "]"
    if c is Map:
        return "{" + " ".join(const_text(e) for kv in map_items_sorted(k) for e in kv) + "}"
    if c is Cons:
        parts = []
        while k.__class__ is Cons:
            parts.append(const_text(k.head))
            k = k.tail
        if k is not None:
            parts += [".", const_text(k)]
        return "(" + " ".join(parts) + ")"
    raise ValueError(f"cannot write a {c.__name__} constant")


def _comment(p: Proto, op: Any, f: dict[str, int]) -> str:
    notes = []
    for field, kind in op.operands:
        v = f[field]
        if kind in ("K", "G", "Y") and v < len(p.consts):
            notes.append(const_text(p.consts[v])[:40])
    return ("  ; " + " ".join(notes)) if notes else ""


def disassemble(module: Module) -> str:
    """The assembly text of `module`, its bundled modules first."""
    out = [f"; lispvm assembly, format {FORMAT_VERSION}"]
    for unit in module.units():
        _unit_text(unit, out)
    return "\n".join(out) + "\n"


def _unit_text(module: Module, out: list[str]) -> None:
    named = f" name={json.dumps(module.name)}" if module.name else ""
    out.append(f".module {json.dumps(module.file)}{named}")
    for p in module.protos:
        out.append(f".function {p.index} {json.dumps(p.name)} params={p.nparams} rest={int(p.rest)} regs={p.nregs}")
        for kind, idx in p.upvals:
            out.append(f".upval {kind} {idx}")
        for i, k in enumerate(p.consts):
            out.append(f".const {i} {const_text(k)}")
        for start, end, handler, reg in p.handlers:
            out.append(f".try {start} {end} {handler} {reg}")
        for i, word in enumerate(p.code):
            op, f = decode_fields(word)
            ops = []
            for field, kind in op.operands:
                v = f[field]
                ops.append(f"->{i + 1 + v}" if kind == "J" else str(v))
            line, col = p.lines[i]
            text = f"{i:6}: {op.name} {' '.join(ops)}".rstrip()
            out.append(f"{text} @{line}:{col}{_comment(p, op, f)}")
        out.append(".end")


# --- reading -------------------------------------------------------------------------------

_CTOK = re.compile(r'\s*(?:(?P<p>[()\[\]{}])|(?P<dot>\.(?=[\s)\]}]))|(?P<str>s?"(?:[^"\\]|\\.)*")'
                   r'|(?P<atom>[^\s()\[\]{}"]+))')
_ATTR = re.compile(r"(\w+)=(-?\d+)")


class _AsmError(Exception):
    def __init__(self, col: int, message: str) -> None:
        super().__init__(message)
        self.col = col


def _const_tokens(text: str) -> list[Any]:
    toks = []
    pos = 0
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        m = _CTOK.match(text, pos)
        if m is None or not m.group().strip():
            raise ValueError(f"unreadable constant at {text[pos:pos + 10]!r}")
        toks.append(m)
        pos = m.end()
    return toks


def parse_const(text: str) -> Any:
    """Parse one constant (the inverse of const_text). Raises ValueError."""
    stack: list[list[Any]] = [[]]
    kinds: list[str] = []
    for m in _const_tokens(text):
        if m.group("p") in ("(", "[", "{"):
            stack.append([])
            kinds.append(m.group("p"))
        elif m.group("p") in (")", "]", "}"):
            if not kinds or {"(": ")", "[": "]", "{": "}"}[kinds[-1]] != m.group("p"):
                raise ValueError("unbalanced brackets in constant")
            items = stack.pop()
            kind = kinds.pop()
            if kind != "(":
                if any(x is _DOT_MARK for x in items):
                    raise ValueError("'.' in a vector or map constant")
                if kind == "{" and len(items) % 2:
                    raise ValueError("a map constant needs keys and values in pairs")
                stack[-1].append(Vec(items) if kind == "[" else map_of(*items))
                continue
            tail = None
            if any(x is _DOT_MARK for x in items):
                if len(items) < 3 or items[-2] is not _DOT_MARK or sum(x is _DOT_MARK for x in items) != 1:
                    raise ValueError("misplaced '.' in a list constant")
                tail = items[-1]
                items = items[:-2]
            out = tail
            for x in reversed(items):
                out = Cons(x, out)
            stack[-1].append(out)
        elif m.group("dot"):
            stack[-1].append(_DOT_MARK)
        elif m.group("str"):
            s = m.group("str")
            value = json.loads(s[1:] if s.startswith("s") else s)
            stack[-1].append(intern(value) if s.startswith("s") else value)
        else:
            stack[-1].append(_atom(m.group("atom")))
    if kinds or len(stack[0]) != 1 or stack[0][0] is _DOT_MARK:
        raise ValueError("expected exactly one constant")
    return stack[0][0]


_DOT_MARK = object()
_DECIMAL_BITS = 60_000  # integers this large or smaller print in decimal (below MAX_INT_DIGITS)


def _atom(a: str) -> Any:
    if a == "nil":
        return None
    if a == "true":
        return TRUE
    if a == "false":
        return FALSE
    if a.startswith("f#x"):
        raw = bytes.fromhex(a[3:])
        if len(raw) != 8:
            raise ValueError("bad float bits")
        return struct.unpack(">d", raw)[0]
    if a.startswith("f"):
        return float(a[1:])
    if re.fullmatch(r"-?\d+", a):
        return int(a)
    if re.fullmatch(r"-?0x[0-9a-f]+", a):
        n = int(a, 16)
        if not INT_MIN < n < INT_LIMIT:  # what asm writes, run must load (vm/lbc.py refuses it)
            raise ValueError(f"integer constant of more than {MAX_INT_BITS:,} bits")
        return n
    raise ValueError(f"unknown constant {a!r}")


def _strip_comment(line: str) -> str:
    """Cut a `;` comment, but not a semicolon inside a "string"."""
    in_str = esc = False
    for i, ch in enumerate(line):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch == ";":
            return line[:i]
    return line


def assemble(text: str, file: str = "<lasm>") -> Module:
    """Parse assembly text into a Module (a `.module` before the last starts a bundled module).
    Raises CompileError at the offending line."""
    source = None
    name = ""
    units: list[Module] = []
    protos: list[Proto] = []
    cur: Proto | None = None
    lines = text.split("\n")
    for ln, raw in enumerate(lines, 1):
        line = _strip_comment(raw).rstrip()
        if not line.strip():
            continue
        col = len(line) - len(line.lstrip()) + 1
        try:
            word, _, rest = line.strip().partition(" ")
            if word == ".module":
                if cur is not None:
                    raise _AsmError(col, ".module inside a .function")
                if source is not None:  # the previous unit is complete: a bundled module
                    if not protos:
                        raise _AsmError(col, "a .module needs at least one .function")
                    if not name:
                        raise _AsmError(col, "a bundled .module needs name=\"NAME\"")
                    units.append(Module(source, protos, name=name))
                    protos = []
                m = re.fullmatch(r'("(?:[^"\\]|\\.)*")(?:\s+name=("(?:[^"\\]|\\.)*"))?', rest.strip())
                if not m:
                    raise _AsmError(col, 'expected .module "FILE" or .module "FILE" name="NAME"')
                source = json.loads(m.group(1))
                name = json.loads(m.group(2)) if m.group(2) else ""
                if m.group(2) and not module_name_ok(name):
                    raise _AsmError(col, f"bad module name {name!r}")
                if name and any(u.name == name for u in units):
                    raise _AsmError(col, f"module {name} is bundled twice")
            elif word == ".function":
                m = re.fullmatch(r'(\d+)\s+("(?:[^"\\]|\\.)*")\s+(.*)', rest)
                if not m:
                    raise _AsmError(col, "expected .function INDEX \"NAME\" params=N rest=0|1 regs=N")
                if int(m.group(1)) != len(protos):
                    raise _AsmError(col, f"expected function {len(protos)}")
                attrs = dict(_ATTR.findall(m.group(3)))
                if set(attrs) != {"params", "rest", "regs"}:
                    raise _AsmError(col, "expected params=N rest=0|1 regs=N")
                cur = Proto(json.loads(m.group(2)), int(attrs["params"]), attrs["rest"] == "1", int(attrs["regs"]))
                if attrs["rest"] not in ("0", "1") or not 1 <= cur.nregs <= 255 or not 0 <= cur.nparams <= 255:
                    raise _AsmError(col, "bad function attributes")
                protos.append(cur)
            elif word == ".end":
                if cur is None:
                    raise _AsmError(col, ".end without .function")
                cur = None
            elif cur is None:
                raise _AsmError(col, f"{word} outside a .function")
            elif word == ".upval":
                kind, idx = (int(x) for x in rest.split())
                if kind not in (0, 1) or not 0 <= idx <= 255:
                    raise _AsmError(col, "bad upvalue")
                cur.upvals.append((kind, idx))
            elif word == ".const":
                idx, _, ctext = rest.partition(" ")
                if int(idx) != len(cur.consts):
                    raise _AsmError(col, f"expected constant {len(cur.consts)}")
                cur.consts.append(parse_const(ctext))
            elif word == ".try":
                vals = [int(x) for x in rest.split()]
                if len(vals) != 4 or min(vals) < 0 or vals[3] > 255:
                    raise _AsmError(col, "expected .try START END HANDLER REG")
                cur.handlers.append(tuple(vals))  # type: ignore[arg-type]
            else:
                _instruction(cur, line.strip(), col)
        except _AsmError as e:
            raise CompileError(file, ln, e.col, str(e)) from None
        except (ValueError, json.JSONDecodeError) as e:
            raise CompileError(file, ln, col, f"bad assembly: {e}") from None
    if cur is not None:
        raise CompileError(file, len(lines), 1, "missing .end")
    if source is None or not protos:
        raise CompileError(file, 1, 1, "expected .module and at least one .function")
    program = Module(source, protos, name=name)
    program.bundled = units
    return program


def _instruction(p: Proto, text: str, col: int) -> None:
    m = re.fullmatch(r"(\d+):\s*([A-Z]+)((?:\s+\S+)*?)\s+@(-?\d+):(\d+)", text)
    if not m:
        raise _AsmError(col, "expected INDEX: NAME operands... @LINE:COL")
    i, name = int(m.group(1)), m.group(2)
    if i != len(p.code):
        raise _AsmError(col, f"expected instruction {len(p.code)}")
    op = BY_NAME.get(name)
    if op is None:
        raise _AsmError(col, f"unknown instruction {name}")
    args = m.group(3).split()
    if len(args) != len(op.operands):
        raise _AsmError(col, f"{name} takes {len(op.operands)} operands, got {len(args)}")
    vals: dict[str, int] = {}
    for (field, kind), a in zip(op.operands, args):
        if kind == "J":
            if not a.startswith("->"):
                raise _AsmError(col, f"{name}: jump operand must be ->TARGET")
            vals[field] = int(a[2:]) - (i + 1)
        else:
            vals[field] = int(a)
    try:
        p.code.append(encode(op, vals))
    except ValueError as e:
        raise _AsmError(col, str(e)) from None
    src_line, src_col = int(m.group(4)), int(m.group(5))
    if not (0 <= src_line < MAX_POSITION and 0 <= src_col < MAX_POSITION):
        raise _AsmError(col, f"position @{src_line}:{src_col} out of range (0 to {MAX_POSITION - 1})")
    p.lines.append((src_line, src_col))


__all__ += ["const_text", "parse_const", "BadBytecode"]
