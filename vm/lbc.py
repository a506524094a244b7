"""The `.lbc` bytecode file: the in-memory Module and Proto, and dump and load side by side.

Owns: the byte layout documented in docs/lbc-format.md. Must never: accept a file it does not
fully understand. The loader checks the header field by field, then a CRC-32 over every other
byte (so any single flipped bit, any truncation and any appended byte is refused), then parses
with bounds checks; vm/verify.py then checks the code itself. Every refusal is a BadBytecode with
a short fixed reason, which the command prints as `FILE: not a valid bytecode file (reason)`.

Layout (little-endian; varint = unsigned LEB128, svarint = zigzag LEB128):

    offset size  field
    0      8     magic  89 'L' 'B' 'C' 0D 0A 1A 0A   (catches 7-bit and CRLF damage, like PNG)
    8      2     format version (FORMAT_VERSION)
    10     2     flags, must be 0
    12     4     total file length in bytes
    16     4     CRC-32 (zlib) of bytes 0..15 followed by bytes 20..end
    20     ...   body: the units (bundled modules, then the program), each a module name, a
                 source name and the prototypes (see docs/lbc-format.md)
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

from .errors import INT_LIMIT, INT_MIN, MAX_INT_BITS, BadBytecode
from .values import FALSE, TRUE, Cons, Map, Sym, Vec, intern, map_items_sorted, map_of

_K_INT_BOUND = 2 * INT_LIMIT  # the zigzag varint of the largest allowed integer constant, and one more

__all__ = ["MAGIC", "FORMAT_VERSION", "Proto", "Module", "dump", "load", "MAX_CONST_DEPTH", "module_name_ok"]

MAGIC = b"\x89LBC\r\n\x1a\n"
FORMAT_VERSION = 3
HEADER = struct.Struct("<8sHHII")  # magic, version, flags, length, crc
MAX_CONST_DEPTH = 200  # quoted data nests at most this deep (the loader's recursion is bounded)
MAX_POSITION = 1 << 31  # line and column numbers are below this
MAX_UNITS = 10_000  # modules one file may bundle (a bound on the loader's count, like any other)

# Constant tags.
K_NIL, K_FALSE, K_TRUE, K_INT, K_FLOAT, K_STR, K_SYM, K_LIST, K_VEC, K_MAP = range(10)


class Proto:
    """A function prototype: code and everything needed to run and to report errors.

    The first block of fields is what the file holds; the second is derived when loading.
    """

    __slots__ = (
        "name", "nparams", "rest", "nregs", "upvals", "code", "consts", "lines", "handlers",
        "index", "module", "dcode", "pad", "arity", "fast",
    )

    def __init__(self, name: str, nparams: int, rest: bool, nregs: int) -> None:
        self.name = name  # function name, for #<fn NAME> and error reports
        self.nparams = nparams  # required parameters (R[0]..R[nparams-1])
        self.rest = rest  # True if `& rest` collects further arguments into R[nparams]
        self.nregs = nregs  # registers in a frame, 1..255
        self.upvals: list[tuple[int, int]] = []  # capture list: (0, parent register) | (1, parent upvalue)
        self.code: list[int] = []  # 32-bit instruction words
        self.consts: list[Any] = []  # constant pool
        self.lines: list[tuple[int, int]] = []  # (line, col) of each instruction
        self.handlers: list[tuple[int, int, int, int]] = []  # try table: (start, end, handler pc, reg), innermost first
        self.index = 0  # position in the module
        self.module: Module | None = None  # owning module
        self.dcode: list[tuple] | None = None  # decoded instructions, made by vm.interp.predecode
        self.pad: list[Any] = []  # [None] * (registers after the parameters), to build frames fast
        self.arity = -1  # argument count the loop may call inline; -1 (rest parameter, or the fast
        # tier has this function) sends calls down the slower general path: one comparison
        self.fast: Any = None  # the fast tier's code, or None: the loop's cache (the tier keeps the rest)

    def position(self, pc: int) -> tuple[str, int, int]:
        """(file, line, col) of instruction `pc`, read only when reporting."""
        file = self.module.file if self.module else "?"
        if 0 <= pc < len(self.lines):
            line, col = self.lines[pc]
            return file, line, col
        return file, 0, 0

    def __reduce__(self) -> tuple:
        # Code is shared by identity: a prototype travels as (module key, index) and is found in
        # the registry of the receiving OS process, where the same module was loaded.
        return (_proto_by_key, (self.module.key if self.module else b"", self.index))


class Module:
    """A compiled file: prototypes, with protos[0] the top-level code.

    The program's Module also holds, in `bundled`, the modules it requires (directly or not), in
    the order their top-level code runs, each before the modules that require it; they are
    Modules of their own (own file name, prototypes and key) with an empty `bundled`.
    """

    def __init__(self, file: str, protos: list[Proto], key: bytes = b"", name: str = "") -> None:
        self.file = file  # source file name, for positions in messages
        self.protos = protos  # all prototypes; protos[0] takes no arguments and runs the file
        self.key = key  # identity of the module across OS processes (a hash of its bytes)
        self.name = name  # the name in the file's `(module NAME)`, or "" for a file that is not a module
        self.bundled: list[Module] = []  # required modules, in the order they run (program only)
        for i, p in enumerate(protos):
            p.index, p.module = i, self
            p.pad = [None] * (p.nregs - p.nparams)
            p.arity = -1 if p.rest else p.nparams


    def units(self) -> list[Module]:
        """The bundled modules, then this one: what a node loads, and runs in this order."""
        return [*self.bundled, self]


_REGISTRY: dict[bytes, Module] = {}


def register(module: Module) -> None:
    """Make `module` findable by key, for prototypes arriving from other OS processes."""
    _REGISTRY[module.key] = module


def _proto_by_key(key: bytes, index: int) -> Proto:
    try:
        return _REGISTRY[key].protos[index]
    except (KeyError, IndexError):
        raise BadBytecode(f"code for prototype {index} of module {key.hex()} is not loaded here") from None


# --- writing -------------------------------------------------------------------------------

def _uv(out: bytearray, n: int) -> None:
    if n < 0:  # a Module built in Python with a negative count or position: say so, not int() of "b1"
        raise ValueError(f"cannot store the negative number {n} as an unsigned varint")
    if n >> 63:  # a big integer: cut its binary digits into groups once (shifting is quadratic)
        bits = bin(n)[2:]
        groups = [int(bits[max(0, i - 7):i], 2) for i in range(len(bits), 0, -7)]
        out += bytes([g | 0x80 for g in groups[:-1]])
        out.append(groups[-1])
        return
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return


def _sv(out: bytearray, n: int) -> None:
    _uv(out, (n << 1) if n >= 0 else ((-n << 1) - 1))


def _bytes(out: bytearray, b: bytes) -> None:
    _uv(out, len(b))
    out += b


def _const(out: bytearray, k: Any, depth: int = 0) -> None:
    if depth > MAX_CONST_DEPTH:
        raise ValueError(f"quoted constant nested more than {MAX_CONST_DEPTH} deep")
    c = k.__class__
    if k is None:
        out.append(K_NIL)
    elif k is FALSE:
        out.append(K_FALSE)
    elif k is TRUE:
        out.append(K_TRUE)
    elif c is int:
        out.append(K_INT)
        _sv(out, k)
    elif c is float:
        out.append(K_FLOAT)
        out += struct.pack("<d", k)
    elif c is str:
        out.append(K_STR)
        _bytes(out, k.encode("utf-8", "surrogatepass"))
    elif c is Sym:
        out.append(K_SYM)
        _bytes(out, k.name.encode("utf-8", "surrogatepass"))
    elif c is Cons:
        items = []
        while k.__class__ is Cons:
            items.append(k.head)
            k = k.tail
        out.append(K_LIST)
        _uv(out, len(items))
        for x in items:
            _const(out, x, depth + 1)
        _const(out, k, depth + 1)
    elif c is Vec:
        out.append(K_VEC)
        _uv(out, len(k.items))
        for x in k.items:
            _const(out, x, depth + 1)
    elif c is Map:  # a quoted map literal; entries in key order, so the bytes are the same every run
        out.append(K_MAP)
        _uv(out, len(k.m))
        for key, v in map_items_sorted(k):
            _const(out, key, depth + 1)
            _const(out, v, depth + 1)
    else:
        raise ValueError(f"cannot store a {c.__name__} as a constant")


def dump(module: Module) -> bytes:
    """The bytes of `module` (with its bundled modules) as a .lbc file."""
    body = bytearray()
    units = module.units()
    _uv(body, len(units))
    for unit in units:
        _bytes(body, unit.name.encode("utf-8", "surrogatepass"))
        _unit(body, unit)
    length = HEADER.size + len(body)
    head = struct.pack("<8sHHI", MAGIC, FORMAT_VERSION, 0, length)
    crc = zlib.crc32(body, zlib.crc32(head))
    return head + struct.pack("<I", crc) + bytes(body)


def _unit(body: bytearray, module: Module) -> None:
    _bytes(body, module.file.encode("utf-8", "surrogatepass"))
    _uv(body, len(module.protos))
    for p in module.protos:
        _bytes(body, p.name.encode("utf-8", "surrogatepass"))
        _uv(body, p.nparams)
        body.append(1 if p.rest else 0)
        body.append(p.nregs)
        _uv(body, len(p.upvals))
        for kind, idx in p.upvals:
            body.append(kind)
            body.append(idx)
        _uv(body, len(p.consts))
        for k in p.consts:
            _const(body, k)
        _uv(body, len(p.code))
        body += struct.pack(f"<{len(p.code)}I", *p.code)
        prev = 0
        for line, col in p.lines:
            _sv(body, line - prev)
            _uv(body, col)
            prev = line
        _uv(body, len(p.handlers))
        for start, end, target, reg in p.handlers:
            _uv(body, start)
            _uv(body, end)
            _uv(body, target)
            body.append(reg)


# --- reading -------------------------------------------------------------------------------

class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise BadBytecode("truncated")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def uv(self, limit: int = 1 << 32) -> int:
        """An unsigned LEB128 varint no larger than `limit`, in time linear in its length."""
        data, pos = self.data, self.pos
        n = shift = 0
        while pos < len(data) and shift < 63:  # the common short case: a few small ints
            b = data[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                self.pos = pos
                if not b and shift:  # a zero last group: more bytes than the value needs
                    raise BadBytecode("varint too long")
                if n > limit:
                    raise BadBytecode("count out of range")
                return n
            shift += 7
        # A long varint (a big integer constant): find its end first, refusing one longer than
        # `limit` needs, then convert it in one step; shifting into a growing int is quadratic.
        most = -(-max(limit.bit_length(), 1) // 7)
        end = self.pos
        while True:
            if end >= len(data):
                raise BadBytecode("truncated")
            if end - self.pos >= most:
                raise BadBytecode("varint too long")
            if not data[end] & 0x80:
                if not data[end]:
                    raise BadBytecode("varint too long")
                break
            end += 1
        groups = data[self.pos:end + 1]
        self.pos = end + 1
        bits = "".join([format(b & 0x7F, "07b") for b in reversed(groups)])
        n = int(bits, 2)  # base 2 converts in linear time
        if n > limit:
            raise BadBytecode("count out of range")
        return n

    def sv(self, limit: int = 1 << 32) -> int:
        n = self.uv(limit)
        return (n >> 1) if not n & 1 else -((n + 1) >> 1)

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise BadBytecode("truncated")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def text(self) -> str:
        raw = self.take(self.uv(len(self.data)))
        try:
            return raw.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise BadBytecode("bad text") from None

    def const(self, depth: int = 0) -> Any:
        if depth > MAX_CONST_DEPTH:
            raise BadBytecode("constant nested too deeply")
        tag = self.byte()
        if tag == K_NIL:
            return None
        if tag == K_FALSE:
            return FALSE
        if tag == K_TRUE:
            return TRUE
        if tag == K_INT:
            try:  # a fixed bound: one the size of the file was an allocation per constant
                n = self.sv(_K_INT_BOUND)
            except BadBytecode as e:
                if str(e) != "count out of range":
                    raise
                n = INT_LIMIT  # longer than any allowed constant: refused just below
            if not INT_MIN < n < INT_LIMIT:  # bounded as `*` bounds products (docs/language.md)
                raise BadBytecode(f"integer constant of more than {MAX_INT_BITS:,} bits")
            return n
        if tag == K_FLOAT:
            return struct.unpack("<d", self.take(8))[0]
        if tag == K_STR:
            return self.text()
        if tag == K_SYM:
            return intern(self.text())
        if tag == K_LIST:
            items = [self.const(depth + 1) for _ in range(self.uv(len(self.data)))]
            out = self.const(depth + 1)
            for x in reversed(items):
                out = Cons(x, out)
            return out
        if tag == K_VEC:
            return Vec([self.const(depth + 1) for _ in range(self.uv(len(self.data)))])
        if tag == K_MAP:
            return map_of(*[self.const(depth + 1) for _ in range(2 * self.uv(len(self.data)))])
        raise BadBytecode("unknown constant tag")


def load(data: bytes) -> Module:
    """Parse a .lbc file. Raises BadBytecode; the caller runs vm.verify.verify next."""
    if len(data) < HEADER.size:
        raise BadBytecode("too short" if data[:8] == MAGIC[: len(data[:8])] else "bad magic")
    magic, version, flags, length, crc = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BadBytecode("bad magic")
    if version != FORMAT_VERSION:
        raise BadBytecode(f"unsupported format version {version}; this lispvm reads version "
                          f"{FORMAT_VERSION}: compile the program again from its source")
    if flags != 0:
        raise BadBytecode("unknown flags")
    if length != len(data):
        raise BadBytecode("truncated" if len(data) < length else "trailing bytes")
    if zlib.crc32(data[20:], zlib.crc32(data[:16])) != crc:
        raise BadBytecode("checksum mismatch")
    r = _Reader(data, HEADER.size)
    count = r.uv(MAX_UNITS)
    if count < 1:
        raise BadBytecode("no code")
    import hashlib

    key = hashlib.blake2b(data, digest_size=8).digest()
    units = []
    for i in range(count):
        name = r.text()
        if (name or i < count - 1) and not module_name_ok(name):
            raise BadBytecode("bad module name")
        if name and any(u.name == name for u in units):
            raise BadBytecode("module bundled twice")
        # the program keeps the file's key; a bundled module's is derived from it and its place
        ukey = key if i == count - 1 else hashlib.blake2b(key + i.to_bytes(4, "little"), digest_size=8).digest()
        units.append(Module(*_read_unit(r, data), ukey, name))
    if r.pos != len(data):
        raise BadBytecode("trailing bytes")
    program = units[-1]
    program.bundled = units[:-1]
    return program


def module_name_ok(name: str) -> bool:
    """A module name as `(module NAME)` allows it (assembler/modules.py checks the same)."""
    return name.isascii() and name[:1].isalpha() and all(c.isalnum() or c in "_-" for c in name)


def _read_unit(r: _Reader, data: bytes) -> tuple[str, list[Proto]]:
    file = r.text()
    protos = []
    for _ in range(r.uv(len(data))):
        name = r.text()
        nparams = r.uv(255)
        rest = r.byte()
        nregs = r.byte()
        if rest > 1:
            raise BadBytecode("bad rest flag")
        if nregs < 1 or nparams + rest > nregs:
            raise BadBytecode("bad register count")
        p = Proto(name, nparams, bool(rest), nregs)
        for _ in range(r.uv(255)):
            kind, idx = r.byte(), r.byte()
            if kind > 1:
                raise BadBytecode("bad upvalue kind")
            p.upvals.append((kind, idx))
        p.consts = [r.const() for _ in range(r.uv(len(data)))]
        n = r.uv(len(data) // 4)
        p.code = list(struct.unpack(f"<{n}I", r.take(4 * n)))
        line = 0
        for _ in range(n):
            line += r.sv(1 << 33)
            if not 0 <= line < MAX_POSITION:
                raise BadBytecode("line number out of range")
            p.lines.append((line, r.uv(MAX_POSITION - 1)))
        for _ in range(r.uv(len(data))):
            p.handlers.append((r.uv(n), r.uv(n), r.uv(n), r.byte()))
        protos.append(p)
    if not protos:
        raise BadBytecode("no code")
    return file, protos
