"""The .lbc file (vm/lbc.py) and the verifier (vm/verify.py): dump/load round trips, and the
damaged-file matrix: every truncation, every single flipped bit, appended bytes, random bytes,
text and empty files, CRLF damage, and body damage behind a recomputed checksum (which reaches
the parser and the verifier). Each is refused with BadBytecode, never another exception or a
hang; through the command, `lispvm run` and `lispvm dis` exit 2 with exactly
`FILE: not a valid bytecode file (REASON)`. Then hand-built modules break each verifier rule."""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import BENCH, EXAMPLES, shared_programs

from lispvm.assembler.lasm import assemble
from lispvm.assembler.pipeline import compile_source
from lispvm.vm import lbc
from lispvm.vm.builtins import BUILTINS
from lispvm.vm.errors import BadBytecode
from lispvm.vm.lbc import Module, Proto
from lispvm.vm.opcodes import BY_NAME, encode
from lispvm.vm.verify import verify

Runner = Callable[..., tuple[str, str, int]]
NAMES = frozenset(BUILTINS)
FIB = """; naive recursion. Argument: n (default 30).
(def fib (n) (if (< n 2) n (+ (fib (- n 1)) (fib (- n 2)))))
(def args (sys/args))
(def n (if (empty? args) 30 (parse-int (head args))))
(print (fib n))
"""
RICH = """
(def k '(1 2.5 "s\\n\\"q\\"" sym (nested (deep)) [1 [2]] (a . b) nil true false -99999999999999999999))
(def f (x & rest) (try (list x rest k) (catch e e)))
(def g (x) (fn (y) (set x (+ x y)) x))
(def r () (receive ((list 'a b) b) ([c d] c) ((cons h t) :when (> h 0) t) (after 10 'none)))
(print (f 1 2 3) ((g 1) 2) (r) -0.0 1e300 (/ 1 3))
"""


def fib_source() -> str:
    """../shared/bench/fib.lisp when present, else the same program inline."""
    path = BENCH / "fib.lisp"
    return path.read_text(encoding="utf-8") if path.is_file() else FIB


@pytest.fixture(scope="module")
def fib_bytes() -> bytes:
    return lbc.dump(compile_source(fib_source(), "fib.lisp"))


def check(data: bytes) -> None:
    """Load and verify, as `lispvm run` does."""
    verify(lbc.load(data), NAMES)


def refused(data: bytes) -> str:
    """The reason `data` is refused; fails the test if it is accepted or raises anything else."""
    try:
        check(data)
    except BadBytecode as e:
        assert e.reason and "\n" not in e.reason
        return e.reason
    raise AssertionError(f"damaged file accepted: {data[:40].hex()}...")


def with_header(body: bytes) -> bytes:
    """A file around `body` with a correct header (length and checksum recomputed)."""
    head = struct.pack("<8sHHI", lbc.MAGIC, lbc.FORMAT_VERSION, 0, 20 + len(body))
    return head + struct.pack("<I", zlib.crc32(body, zlib.crc32(head))) + body


# --- round trips ---------------------------------------------------------------------------

@pytest.mark.parametrize("src", [FIB, RICH, "(print 1)", ""], ids=["fib", "rich", "tiny", "empty"])
def test_dump_load_round_trip(src: str) -> None:
    module = compile_source(src, "rt.lisp")
    data = lbc.dump(module)
    loaded = lbc.load(data)
    verify(loaded, NAMES)
    assert lbc.dump(loaded) == data
    assert loaded.file == "rt.lisp"
    for a, b in zip(module.protos, loaded.protos, strict=True):
        assert (a.name, a.nparams, a.rest, a.nregs, a.upvals, a.code, a.lines, a.handlers) == \
               (b.name, b.nparams, b.rest, b.nregs, b.upvals, b.code, b.lines, b.handlers)
        assert len(a.consts) == len(b.consts)


def test_round_trip_of_every_shared_program() -> None:
    files = shared_programs(EXAMPLES) + shared_programs(BENCH)
    if not files:
        pytest.skip("../shared is missing")
    for path in files:
        data = lbc.dump(compile_source(path.read_text(encoding="utf-8"), path.name))
        assert lbc.dump(lbc.load(data)) == data, path.name


def test_header_layout(fib_bytes: bytes) -> None:
    magic, version, flags, length, crc = struct.unpack_from("<8sHHII", fib_bytes)
    assert magic == b"\x89LBC\r\n\x1a\n" and version == lbc.FORMAT_VERSION and flags == 0
    assert length == len(fib_bytes)
    assert crc == zlib.crc32(fib_bytes[20:], zlib.crc32(fib_bytes[:16]))


def test_dump_is_deterministic() -> None:
    assert lbc.dump(compile_source(RICH, "d.lisp")) == lbc.dump(compile_source(RICH, "d.lisp"))


# --- the damaged-file matrix ---------------------------------------------------------------

def test_every_truncation_is_refused(fib_bytes: bytes) -> None:
    reasons = {refused(fib_bytes[:n]) for n in range(len(fib_bytes))}
    assert reasons <= {"too short", "bad magic", "truncated"}, reasons


def test_every_single_bit_flip_is_refused(fib_bytes: bytes) -> None:
    assert len(fib_bytes) * 8 <= 40_000, "the program grew: sample bits instead"
    for bit in range(len(fib_bytes) * 8):
        data = bytearray(fib_bytes)
        data[bit // 8] ^= 1 << (bit % 8)
        refused(bytes(data))


@pytest.mark.parametrize("extra", [b"\0", b"x", b"\n", b"\0" * 100], ids=["nul", "x", "newline", "100"])
def test_appended_bytes_are_refused(fib_bytes: bytes, extra: bytes) -> None:
    assert refused(fib_bytes + extra) == "trailing bytes"


def test_a_file_twice_is_refused(fib_bytes: bytes) -> None:
    assert refused(fib_bytes + fib_bytes) == "trailing bytes"


def test_random_bytes_are_refused() -> None:
    rng = random.Random(20240601)
    for _ in range(2000):
        n = rng.choice([0, 1, 7, 8, 19, 20, 21, 64, 300, 5000])
        refused(bytes(rng.randrange(256) for _ in range(n)))
        refused(lbc.MAGIC + bytes(rng.randrange(256) for _ in range(n)))


@pytest.mark.parametrize("data, reason", [
    (b"", "too short"),
    (b"(print \"hello\")\n", "bad magic"),
    (b"; lispvm assembly, format 1\n.module \"x\"\n", "bad magic"),
    (b"\x89LBC", "too short"),
    (b"\x89LBC\r\n\x1a\n", "too short"),
    (b"\x7fELF" + bytes(60), "bad magic"),
])
def test_text_empty_and_foreign_files(data: bytes, reason: str) -> None:
    assert refused(data) == reason


def test_header_fields_each_have_a_reason(fib_bytes: bytes) -> None:
    def patched(offset: int, fmt: str, value: int) -> bytes:
        d = bytearray(fib_bytes)
        struct.pack_into(fmt, d, offset, value)
        return bytes(d)

    newer = lbc.FORMAT_VERSION + 1
    assert refused(patched(8, "<H", newer)) == (f"unsupported format version {newer}; this lispvm reads version "
                                                f"{lbc.FORMAT_VERSION}: compile the program again from its source")
    assert refused(patched(10, "<H", 1)) == "unknown flags"
    assert refused(patched(12, "<I", len(fib_bytes) + 1)) == "truncated"
    assert refused(patched(12, "<I", len(fib_bytes) - 1)) == "trailing bytes"
    crc = struct.unpack_from("<I", fib_bytes, 16)[0]
    assert refused(patched(16, "<I", crc ^ 1)) == "checksum mismatch"
    assert refused(b"X" + fib_bytes[1:]) == "bad magic"


def test_text_mode_damage_is_refused(fib_bytes: bytes) -> None:
    assert refused(fib_bytes.replace(b"\r\n", b"\n")) == "bad magic"
    assert refused(fib_bytes.replace(b"\n", b"\r\n")) == "bad magic"
    assert refused(bytes(b & 0x7F for b in fib_bytes)) == "bad magic"
    assert refused(fib_bytes[: fib_bytes.index(b"\x1a")]) == "too short"


def _body_mutants(body: bytes, rng: random.Random) -> list[bytes]:
    out = []
    for bit in range(len(body) * 8):  # every bit of the body
        b = bytearray(body)
        b[bit // 8] ^= 1 << (bit % 8)
        out.append(bytes(b))
    out += [body[:n] for n in range(len(body))]  # every truncation
    for _ in range(3000):  # a few bytes replaced at random
        b = bytearray(body)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        out.append(bytes(b))
    for _ in range(300):  # random insertions and deletions
        b = bytearray(body)
        i = rng.randrange(len(b))
        if rng.random() < 0.5:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            del b[i:i + rng.randint(1, 8)]
        out.append(bytes(b))
    return out


@pytest.mark.parametrize("src", [FIB, RICH], ids=["fib", "rich"])
def test_body_damage_behind_a_good_checksum(src: str) -> None:
    """Damage the checksum cannot catch (it was recomputed): the parser and the verifier either
    refuse with BadBytecode or accept a well-formed module; nothing else escapes."""
    body = lbc.dump(compile_source(src, "m.lisp"))[20:]
    accepted = 0
    for mutant in _body_mutants(body, random.Random(7)):
        try:
            check(with_header(mutant))
            accepted += 1
        except BadBytecode as e:
            assert e.reason
    assert accepted > 0  # some damage (a changed constant) leaves a valid program: fine


def test_deeply_nested_constant_is_refused_not_a_recursion_error() -> None:
    depth = 5000
    body = bytearray(b"\x01\x00")  # one unit, the program, not a module
    lbc._bytes(body, b"deep.lisp")
    lbc._uv(body, 1)  # one prototype
    lbc._bytes(body, b"main")
    body += bytes([0, 0, 1, 0])  # nparams, rest, nregs, upvalues
    lbc._uv(body, 1)  # one constant: (((...)))
    body += bytes([lbc.K_LIST, 1]) * depth + bytes([lbc.K_NIL]) * (2 * depth)
    body += bytes([0, 0])
    assert refused(with_header(bytes(body))) == "constant nested too deeply"


# --- through the command -------------------------------------------------------------------

def _cli_cases(fib_bytes: bytes) -> dict[str, bytes]:
    def flip(bit: int) -> bytes:
        d = bytearray(fib_bytes)
        d[bit // 8] ^= 1 << (bit % 8)
        return bytes(d)

    rng = random.Random(3)
    return {
        "empty": b"",
        "text": b"(print \"hello\")\n",
        "truncated-5": fib_bytes[:5],
        "truncated-header": fib_bytes[:19],
        "truncated-20": fib_bytes[:20],
        "truncated-last": fib_bytes[:-1],
        "magic-bit": flip(3),
        "version-bit": flip(8 * 8),
        "flags-bit": flip(10 * 8 + 4),
        "length-bit": flip(12 * 8),
        "crc-bit": flip(16 * 8 + 7),
        "body-bit": flip(len(fib_bytes) * 8 - 9),
        "appended": fib_bytes + b"\n",
        "random": bytes(rng.randrange(256) for _ in range(300)),
        "crlf": fib_bytes.replace(b"\n", b"\r\n"),
        "unknown-builtin": with_header(fib_bytes[20:].replace(b"parse-int", b"parse-inx")),
    }


@pytest.mark.parametrize("case", ["empty", "text", "truncated-5", "truncated-header", "truncated-20",
                                  "truncated-last", "magic-bit", "version-bit", "flags-bit", "length-bit",
                                  "crc-bit", "body-bit", "appended", "random", "crlf", "unknown-builtin"])
def test_damaged_files_through_the_command(cli: Runner, tmp_path: Path, fib_bytes: bytes, case: str) -> None:
    data = _cli_cases(fib_bytes)[case]
    reason = refused(data)
    (tmp_path / "damaged.lbc").write_bytes(data)
    for command in ("run", "dis"):
        out, err, status = cli(command, "damaged.lbc", timeout=60)
        assert status == 2, (command, err)
        assert err == f"damaged.lbc: not a valid bytecode file ({reason})\n", (command, err)
        assert out == ""


def test_the_undamaged_file_runs(cli: Runner, tmp_path: Path, fib_bytes: bytes) -> None:
    (tmp_path / "fib.lbc").write_bytes(fib_bytes)
    assert cli("run", "fib.lbc", "15") == ("610\n", "", 0)


# --- the verifier, with hand-built modules -------------------------------------------------

BASE = """.module "v.lisp"
.function 0 "main" params=0 rest=0 regs=3
.const 0 s"print"
.const 1 "hello"
.const 2 s"nope"
.const 3 s"g"
{code}.end
.function 1 "f" params=1 rest=0 regs=2
.upval 0 1
     0: GETUPVAL 1 0 @2:1
     1: RETURN 1 @2:1
.end
"""
GOOD = """     0: LOADK 1 1 @1:1
     1: TEST 1 0 @1:1
     2: JMP ->4 @1:1
     3: CALLB 0 1 0 @1:1
     4: CLOSURE 2 1 @1:1
     5: RETURN 1 @1:1
"""


def module_of(code: str) -> Module:
    return assemble(BASE.format(code=code), "v.lasm")


def test_the_hand_built_module_is_valid() -> None:
    verify(module_of(GOOD), NAMES)


@pytest.mark.parametrize("old, new, reason", [
    ("LOADK 1 1", "LOADK 3 1", "register 3 out of range"),
    ("CALLB 0 1 0", "CALLB 1 2 0", "register 3 out of range"),
    ("JMP ->4", "JMP ->6", "jump out of range"),
    ("JMP ->4", "JMP ->-1", "jump out of range"),
    ("LOADK 1 1", "LOADK 1 4", "constant index out of range"),
    ("CALLB 0 1 0", "CALLB 0 1 2", "unknown builtin nope"),
    ("CALLB 0 1 0", "CALLB 0 1 1", "name constant missing"),
    ("CALLB 0 1 0", "CALLG 0 1 1", "name constant missing"),
    ("     5: RETURN 1 @1:1\n", "     5: JMP ->2 @1:1\n", "jump into the middle of a conditional"),
    ("     5: RETURN 1 @1:1\n", "     5: MOVE 0 1 @1:1\n", "code falls off the end"),
    ("     2: JMP ->4 @1:1\n", "     2: MOVE 0 0 @1:1\n", "conditional not followed by a jump"),
    ("CLOSURE 2 1", "CLOSURE 2 2", "function index out of range"),
    ("CLOSURE 2 1", "CLOSURE 2 0", "function index out of range"),
    ("LOADK 1 1", "GETUPVAL 1 0", "upvalue index out of range"),
    ("     0: LOADK 1 1 @1:1\n", "     0: GETGLOBAL 1 1 @1:1\n", "name constant missing"),
])
def test_verifier_rules(old: str, new: str, reason: str) -> None:
    code = GOOD.replace(old, new)
    assert code != GOOD
    with pytest.raises(BadBytecode) as info:
        verify(module_of(code), NAMES)
    assert info.value.reason.endswith(reason), info.value.reason
    assert info.value.reason.startswith("function 0 (main)")


def edited(edit: Callable[[Module], None]) -> Module:
    module = module_of(GOOD)
    edit(module)
    return module


def _set(proto: Proto, i: int, name: str, **vals: int) -> None:
    proto.code[i] = encode(BY_NAME[name], vals)


@pytest.mark.parametrize("edit, reason", [
    (lambda m: _set(m.protos[1], 0, "GETUPVAL", A=2, B=0), "register 2 out of range"),
    (lambda m: _set(m.protos[1], 0, "GETUPVAL", A=1, B=1), "upvalue index out of range"),
    (lambda m: m.protos[1].upvals.__setitem__(0, (0, 3)), "closure captures out of range"),
    (lambda m: m.protos[1].upvals.__setitem__(0, (1, 0)), "closure captures out of range"),
    (lambda m: m.protos[0].code.__setitem__(5, 0x7F), "unknown opcode"),
    (lambda m: m.protos[0].code.__setitem__(5, m.protos[0].code[5] | 1 << 30), "stray bits in instruction"),
    (lambda m: m.protos[0].lines.pop(), "line table does not match the code"),
    (lambda m: (m.protos[0].code.clear(), m.protos[0].lines.clear()), "no code"),
    (lambda m: m.protos[0].handlers.append((0, 9, 5, 1)), "bad try table entry"),
    (lambda m: m.protos[0].handlers.append((3, 2, 5, 1)), "bad try table entry"),
    (lambda m: m.protos[0].handlers.append((0, 3, 2, 1)), "bad try table entry"),
    (lambda m: m.protos[0].handlers.append((0, 3, 5, 3)), "try table register out of range"),
    (lambda m: _set(m.protos[0], 3, "APPLY", A=0, B=0), "apply needs a list argument"),
    (lambda m: _set(m.protos[0], 3, "LIST", A=1, B=2), "register 3 out of range"),
    (lambda m: _set(m.protos[0], 3, "UNCONS", A=2, B=0), "register 3 out of range"),
    (lambda m: setattr(m.protos[0], "nparams", 1), "top-level code must take no arguments"),
    (lambda m: m.protos[0].upvals.append((0, 0)), "top-level code must take no arguments"),
    (lambda m: setattr(m.protos[1], "nregs", 0), "bad register count"),
])
def test_verifier_rules_on_edited_code(edit: Callable[[Module], None], reason: str) -> None:
    module = edited(edit)
    with pytest.raises(BadBytecode) as info:
        verify(module, NAMES)
    assert reason in info.value.reason, info.value.reason


def test_a_match_needs_its_jump() -> None:
    code = GOOD.replace("     1: TEST 1 0 @1:1\n", "     1: UNCONS 1 1 @1:1\n")
    verify(module_of(code), NAMES)
    bad = code.replace("     2: JMP ->4 @1:1\n", "     2: MOVE 0 0 @1:1\n")
    with pytest.raises(BadBytecode, match="conditional not followed by a jump"):
        verify(module_of(bad), NAMES)


def test_verifier_refusal_survives_dump_and_load() -> None:
    """A module the verifier refuses is refused the same way after a trip through the file."""
    module = module_of(GOOD.replace("JMP ->4", "JMP ->6"))
    data = lbc.dump(module)
    assert "jump out of range" in refused(data)


def test_flag_operands_must_be_0_or_1() -> None:
    """Operand kind F is a flag (0/1): LOADBOOL with B=2 is as malformed as a stray bit (the
    table says it loads false, the loop would load true)."""
    module = module_of(GOOD)
    main = module.protos[0]
    main.code[0] = BY_NAME["LOADBOOL"].num | 1 << 7 | 2 << 16  # LOADBOOL A=1 B=2, built by hand
    with pytest.raises(BadBytecode):
        verify(module, NAMES)


# --- varints (issue 12, item 11) -------------------------------------------------------------

def _one_const_file(const: bytes, count_prefix: bytes | None = None) -> bytes:
    """A file whose main function returns its only constant, the encoded bytes `const`;
    `count_prefix` replaces the encoding of the constant count (1)."""
    body = bytearray(b"\x01\x00")  # one unit, the program, not a module
    lbc._bytes(body, b"v.lisp")
    lbc._uv(body, 1)
    lbc._bytes(body, b"main")
    body += bytes([0, 0, 1, 0])  # nparams, rest, nregs, upvalues
    body += count_prefix if count_prefix is not None else b"\x01"
    body += const
    lbc._uv(body, 2)
    body += struct.pack("<2I", encode(BY_NAME["LOADK"], {"A": 0, "Bx": 0}), encode(BY_NAME["RETURN"], {"A": 0}))
    body += bytes([2, 1, 0, 1, 0])  # lines, no handlers
    return with_header(bytes(body))


def test_a_long_integer_constant_loads_in_linear_time() -> None:
    """The largest integer constant allowed (vm/errors.py MAX_INT_BITS, 150 KB): shifting each
    7-bit group into a growing int made the loader quadratic (minutes at 1.6 MB, before constants
    were bounded); converting once is linear. One bit more is refused (test_lasm.py)."""
    from lispvm.vm.errors import MAX_INT_BITS

    n = (1 << MAX_INT_BITS) - 12345
    body = bytearray([lbc.K_INT])
    lbc._sv(body, n)
    data = _one_const_file(bytes(body))
    module = lbc.load(data)  # a loader that hangs here fails at the suite's timeout (pyproject.toml)
    assert module.protos[0].consts == [n]


@pytest.mark.parametrize("count", [b"\x81\x00", b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
                                   b"\x81" + b"\x80" * 5000 + b"\x00"], ids=["zero-group", "11-bytes", "5000-bytes"])
def test_absurd_varints_are_refused(count: bytes) -> None:
    """More bytes than the value needs (a zero last group, or more groups than the field's limit
    allows) is bad bytecode, not a value."""
    const = bytes([lbc.K_NIL])
    assert refused(_one_const_file(const, count)) in ("varint too long", "count out of range")
    assert refused(_one_const_file(const, b"\x81\x00")) == "varint too long"


def test_an_overlong_integer_constant_is_refused() -> None:
    assert refused(_one_const_file(bytes([lbc.K_INT, 0x82, 0x80, 0x80, 0x00]))) == "varint too long"
    assert lbc.load(_one_const_file(bytes([lbc.K_INT, 0x82, 0x01]))).protos[0].consts == [65]


# --- registers written before read, and try handlers (issue 12, item 7) ------------------------

@pytest.mark.parametrize("code, reason", [
    # R0 is written by the CALLB on one path only: the jump from 2 reaches RETURN 0 without it
    (GOOD.replace("RETURN 1", "RETURN 0"), "at 5: register 0 read before it is written"),
    (GOOD.replace("LOADK 1 1", "LOADK 2 1"), "at 1: register 1 read before it is written"),
    # a match writes its registers only when it matches: not on the jump to the failure label
    (GOOD.replace("     1: TEST 1 0 @1:1\n", "     1: UNCONS 1 1 @1:1\n").replace("CLOSURE 2 1", "MOVE 0 1")
     .replace("RETURN 1", "RETURN 2"),
     "at 5: register 2 read before it is written"),
    (GOOD.replace("     3: CALLB 0 1 0 @1:1\n", "     3: CALL 0 1 @1:1\n"),
     "at 3: register 0 read before it is written"),
])
def test_a_register_read_before_its_write_is_refused(code: str, reason: str) -> None:
    with pytest.raises(BadBytecode) as info:
        verify(module_of(code), NAMES)
    assert info.value.reason == f"function 0 (main) {reason}"


def test_a_handler_sees_the_caught_value_but_not_what_the_failing_call_would_have_written() -> None:
    code = """     0: LOADK 1 1 @1:1
     1: CALLB 0 1 0 @1:1
     2: RETURN 0 @1:1
     3: RETURN {reg} @1:1
"""
    module = module_of(code.format(reg=2))
    module.protos[0].handlers.append((1, 2, 3, 2))  # (try (print "hello") (catch e e))
    verify(module, NAMES)
    module = module_of(code.format(reg=0))
    module.protos[0].handlers.append((1, 2, 3, 2))
    with pytest.raises(BadBytecode, match="at 3: register 0 read before it is written"):
        verify(module, NAMES)


@pytest.mark.parametrize("handler", [(0, 4, 3, 1), (0, 4, 0, 1), (3, 5, 0, 1)], ids=["inside", "start", "before"])
def test_a_try_handler_that_can_flow_into_its_own_range_is_refused(handler: tuple[int, int, int, int]) -> None:
    """An error in the range jumps to the handler; if the handler is inside the range (or before
    it, falling through into it) the same error repeats for ever without a reduction."""
    module = module_of(GOOD)
    module.protos[0].handlers.append(handler)
    with pytest.raises(BadBytecode, match="try handler inside or before its own protected range"):
        verify(module, NAMES)


HOSTILE = {
    # (head nil) in a try whose handler is the failing instruction itself
    "try-loop": (""".module "h.lisp"
.function 0 "main" params=0 rest=0 regs=2
.try 0 2 1 1
     0: LOADNIL 0 0 @1:1
     1: HEAD 1 0 @1:1
     2: RETURN 1 @1:1
.end
""", "function 0 (main): try handler inside or before its own protected range"),
    # print R1, which nothing wrote (nil in the interpreter, NameError in the fast tier)
    "unset-register": (""".module "h.lisp"
.function 0 "main" params=0 rest=0 regs=2
.const 0 s"print"
     0: CALLB 0 1 0 @1:1
     1: RETURN 0 @1:1
.end
""", "function 0 (main) at 0: register 1 read before it is written"),
    # (def map/get ...) in bytecode: refused as the compiler refuses it in source
    "defines-a-builtin": (""".module "h.lisp"
.function 0 "main" params=0 rest=0 regs=1
.const 0 s"map/get"
     0: LOADNIL 0 0 @1:1
     1: DEFGLOBAL 0 0 @1:1
     2: RETURN 0 @1:1
.end
""", "function 0 (main) at 1: defines the builtin map/get"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_bytecode_through_the_command(cli: Runner, tmp_path: Path, case: str) -> None:
    text, reason = HOSTILE[case]
    data = lbc.dump(assemble(text, "h.lasm"))
    (tmp_path / "bad.lbc").write_bytes(data)
    for flags in ((), ("--no-jit",)):
        out, err, status = cli("run", *flags, "bad.lbc", timeout=60)
        assert (out, err, status) == ("", f"bad.lbc: not a valid bytecode file ({reason})\n", 2)


def test_every_compiled_program_verifies() -> None:
    """The compiler's output passes the new rules: every test program and shared example."""
    files = sorted((Path(__file__).parent / "programs").rglob("*.lisp"))
    files += shared_programs(EXAMPLES) + shared_programs(BENCH)
    assert files
    for path in files:
        verify(lbc.load(lbc.dump(compile_source(path.read_text(encoding="utf-8"), path.name))), NAMES)


@pytest.mark.parametrize("op", ["def", "set"])
def test_bytecode_that_defines_a_builtin_is_refused(op: str) -> None:
    """As source is refused (`def: cannot redefine the builtin map/get`), so is bytecode that
    defines or assigns a builtin's, a constant's or a prelude function's name: the loader passes
    reserved_globals() to the verifier."""
    from lispvm.vm.values import intern
    from lispvm.vm.verify import reserved_globals

    src = "(def mine (x) x)" if op == "def" else "(def mine 1)\n(set mine 2)"
    reserved = reserved_globals()
    for name in ("map/get", "list/map", "nil"):
        if name not in reserved:
            continue
        module = compile_source(src, "p.lisp")
        verify(module, frozenset(BUILTINS), reserved)  # the program as compiled is fine
        main = module.protos[0]
        main.consts = [intern(name) if getattr(c, "name", None) == "mine" else c for c in main.consts]
        with pytest.raises(BadBytecode, match=f"(defines|assigns) the builtin {name}"):
            verify(module, frozenset(BUILTINS), reserved)
    assert {"map/get", "list/map"} <= reserved
