"""Text assembly (assembler/lasm.py, `lispvm dis` / `lispvm asm`): the round trip source ->
bytes -> text -> bytes is byte-identical for every shared program, in process and through the
command; constants of every kind survive it; assembly errors are `FILE:LINE:COL: message`."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lispvm.assembler.lasm import assemble, const_text, disassemble, parse_const
from lispvm.assembler.pipeline import compile_source
from lispvm.vm import lbc
from lispvm.vm.builtins import BUILTINS
from lispvm.vm.errors import CompileError
from lispvm.vm.lbc import Module, Proto
from lispvm.vm.opcodes import BY_NAME, encode
from lispvm.vm.values import FALSE, TRUE, Cons, Sym, Vec, intern
from lispvm.vm.verify import verify

Runner = Callable[..., tuple[str, str, int]]


def round_trip(module: Module) -> tuple[bytes, bytes]:
    """(dump of module, dump of assemble(disassemble(module)))."""
    data = lbc.dump(module)
    again = assemble(disassemble(lbc.load(data)), "rt.lasm")
    return data, lbc.dump(again)


# --- every shared program ------------------------------------------------------------------

def test_in_process_round_trip_of_example(example: Path) -> None:
    data, again = round_trip(compile_source(example.read_text(encoding="utf-8"), example.name))
    assert again == data


def test_in_process_round_trip_of_bench_program(bench_program: Path) -> None:
    data, again = round_trip(compile_source(bench_program.read_text(encoding="utf-8"), bench_program.name))
    assert again == data


def _cli_round_trip(cli: Runner, tmp_path: Path, program: Path) -> None:
    src = tmp_path / program.name
    src.write_bytes(program.read_bytes())
    assert cli("asm", program.name, "-o", "a.lbc")[2] == 0
    out, err, status = cli("dis", "a.lbc", "-o", "a.lasm")
    assert (out, err, status) == ("", "", 0)
    out, err, status = cli("asm", "a.lasm", "-o", "b.lbc")
    assert (out, err, status) == ("", "", 0)
    assert (tmp_path / "a.lbc").read_bytes() == (tmp_path / "b.lbc").read_bytes()
    out, _, status = cli("dis", "b.lbc")  # to standard output: the same text
    assert status == 0 and out == (tmp_path / "a.lasm").read_text(encoding="utf-8")


def test_command_round_trip_of_example(cli: Runner, tmp_path: Path, example: Path) -> None:
    _cli_round_trip(cli, tmp_path, example)


def test_command_round_trip_of_bench_program(cli: Runner, tmp_path: Path, bench_program: Path) -> None:
    _cli_round_trip(cli, tmp_path, bench_program)


def test_prelude_round_trips() -> None:
    from lispvm.vm.prelude import LBC_PATH

    with open(LBC_PATH, "rb") as f:
        data = f.read()
    assert lbc.dump(assemble(disassemble(lbc.load(data)))) == data


def test_assembled_text_runs(cli: Runner, tmp_path: Path) -> None:
    (tmp_path / "p.lisp").write_text('(def f (x) (* x 2))\n(print (f 21) "ok")\n', encoding="utf-8")
    assert cli("asm", "p.lisp")[2] == 0
    assert cli("dis", "p.lbc", "-o", "p.lasm")[2] == 0
    (tmp_path / "p.lbc").unlink()
    assert cli("run", "p.lasm") == ("42 ok\n", "", 0)
    assert cli("asm", "p.lasm", "-o", "q.lbc")[2] == 0
    assert cli("run", "q.lbc") == ("42 ok\n", "", 0)


# --- constants of every kind ---------------------------------------------------------------

def lst(*items: Any, tail: Any = None) -> Any:
    out = tail
    for x in reversed(items):
        out = Cons(x, out)
    return out


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


def same(a: Any, b: Any) -> bool:
    """Identity of constants: floats bit for bit, symbols by identity, the rest structurally."""
    if a.__class__ is not b.__class__:
        return False
    if isinstance(a, float):
        return bits(a) == bits(b)
    if isinstance(a, Cons):
        return same(a.head, b.head) and same(a.tail, b.tail)
    if isinstance(a, Vec):
        return len(a.items) == len(b.items) and all(same(x, y) for x, y in zip(a.items, b.items))
    if isinstance(a, Sym) or a is None or a is TRUE or a is FALSE:
        return a is b
    return a == b


NEG_NAN = struct.unpack("<d", struct.pack("<Q", 0xFFF8_0000_0000_0001))[0]
CONSTANTS = [
    None, TRUE, FALSE, 0, -1, 42, 2**200, -(3**150),
    0.0, -0.0, 1.5, 1e16, 1e300, 5e-324, math.inf, -math.inf, math.nan, NEG_NAN, 0.1 + 0.2,
    "", "plain", 'with "quotes"', "new\nline", "tab\there", "back\\slash", "semi;colon @1:2",
    "h\u00e9llo \u4e16\u754c \U0001f600", "\u2028", "\x00\x7f", "\ud800",
    intern("sym"), intern("a b"), intern('q"uote'), intern("nil"), intern("true"), intern("."),
    intern(";"), intern("f1.5"), intern("-1"), intern("math/sin"), intern("\u00e9t\u00e9"),
    lst(1, 2, 3), lst(1, tail=2), lst(1, 2, tail=intern("c")), lst(lst(lst(None)), Vec(())),
    lst(1, tail=Vec((2,))), lst("s", tail="t"), lst(1, tail=2.5),
    Vec(()), Vec((1, Vec((2, lst(3, tail=4))), "x", intern("y"), None)),
    lst(*range(500)),
]


@pytest.mark.parametrize("k", CONSTANTS, ids=[f"{i}-{type(k).__name__}" for i, k in enumerate(CONSTANTS)])
def test_constant_text_round_trip(k: Any) -> None:
    assert same(parse_const(const_text(k)), k)


def test_every_constant_kind_survives_dis_and_asm() -> None:
    main = Proto("main", 0, False, 2)
    main.consts = list(CONSTANTS)
    for i in range(len(CONSTANTS)):
        main.code.append(encode(BY_NAME["LOADK"], {"A": 1, "Bx": i}))
        main.lines.append((i + 1, 3))
    main.code.append(encode(BY_NAME["RETURN"], {"A": 1}))  # R1 is written; R0 never is
    main.lines.append((9999, 1))
    module = Module('odd "name".lisp\n', [main])
    verify(module, frozenset(BUILTINS))
    data, again = round_trip(module)
    assert again == data
    back = lbc.load(again).protos[0].consts
    assert len(back) == len(CONSTANTS)
    for a, b in zip(CONSTANTS, back):
        assert same(a, b), (a, b)


def test_constants_from_source_survive(run_here: Runner) -> None:
    src = """
    (def k '(1 -0.0 1e400 -1e400 "q\\"\\n" (a . b) [1 [2 (3)]] nil true false sym 123456789012345678901234567890))
    (print k)
    """
    data, again = round_trip(compile_source(src, "k.lisp"))
    assert again == data
    out, err, status = run_here(src)
    assert status == 0, err
    assert out == '(1 -0.0 inf -inf "q\\"\\n" (a . b) [1 [2 (3)]] nil true false sym 123456789012345678901234567890)\n'


def test_names_with_odd_characters_survive() -> None:
    main = Proto('ma"in\n\u00e9', 0, False, 1)
    main.code = [encode(BY_NAME["RETURN"], {"A": 0})]
    main.lines = [(1, 1)]
    data, again = round_trip(Module("dir with space/\u4e16.lisp", [main]))
    assert again == data


def test_big_integer_constants_survive() -> None:
    """Integers have arbitrary precision: a 5000-digit constant (built by a macro, say) too."""
    main = Proto("main", 0, False, 2)
    main.consts = [7**6000, -(10**4400)]
    main.code = [encode(BY_NAME["LOADK"], {"A": 1, "Bx": 0}), encode(BY_NAME["RETURN"], {"A": 1})]
    main.lines = [(1, 1), (1, 1)]
    data, again = round_trip(Module("big.lisp", [main]))
    assert again == data


# --- assembly errors -----------------------------------------------------------------------

HEAD = '.module "c.lisp"\n.function 0 "main" params=0 rest=0 regs=2\n'
TAIL = "     1: RETURN 0 @1:1\n.end\n"


@pytest.mark.parametrize("text, line, col, words", [
    (HEAD + "     0: LOADI 0 999999 @1:1\n" + TAIL, 3, 6, "out of range"),
    (HEAD + "     0: FOO 1 2 @1:1\n" + TAIL, 3, 6, "unknown instruction FOO"),
    (HEAD + "     0: MOVE 0 @1:1\n" + TAIL, 3, 6, "takes 2 operands"),
    (HEAD + "     0: MOVE 0 x @1:1\n" + TAIL, 3, 6, ""),
    (HEAD + "     0: JMP 3 @1:1\n" + TAIL, 3, 6, "->TARGET"),
    (HEAD + "     0: MOVE 0 300 @1:1\n" + TAIL, 3, 6, "out of range"),
    (HEAD + "     0: MOVE 0 1\n" + TAIL, 3, 6, "@LINE:COL"),
    (HEAD + "     5: MOVE 0 1 @1:1\n" + TAIL, 3, 6, "expected instruction 0"),
    (HEAD + ".const 0 (1 2\n     0: MOVE 0 1 @1:1\n" + TAIL, 3, 1, "constant"),
    (HEAD + ".const 1 nil\n     0: MOVE 0 1 @1:1\n" + TAIL, 3, 1, "expected constant 0"),
    (HEAD + ".const 0 banana\n     0: MOVE 0 1 @1:1\n" + TAIL, 3, 1, "banana"),
    (HEAD + ".upval 2 0\n     0: MOVE 0 1 @1:1\n" + TAIL, 3, 1, "upvalue"),
    (HEAD + ".try 1 2\n     0: MOVE 0 1 @1:1\n" + TAIL, 3, 1, ".try"),
    (HEAD + "     0: MOVE 0 1 @1:1\n     1: RETURN 0 @1:1\n", 5, 1, "missing .end"),  # at the end
    ('.module "c.lisp"\n.function 0 "main" params=0 rest=2 regs=2\n' + TAIL, 2, 1, ""),
    ('.module "c.lisp"\n.function 3 "main" params=0 rest=0 regs=2\n' + TAIL, 2, 1, "expected function 0"),
    ('.module "c.lisp"\n     0: RETURN 0 @1:1\n', 2, 6, "outside a .function"),
    ('.function 0 "main" params=0 rest=0 regs=2\n     0: RETURN 0 @1:1\n.end\n', 1, 1, ".module"),
], ids=["sbx-range", "unknown-op", "operand-count", "not-a-number", "jump-syntax", "b-range", "no-position",
        "index", "const-open", "const-index", "const-word", "upval", "try", "no-end", "rest", "function-index",
        "outside", "no-module"])
def test_assembly_errors_have_positions(text: str, line: int, col: int, words: str) -> None:
    with pytest.raises(CompileError) as info:
        assemble(text, "c.lasm")
    e = info.value
    assert (e.file, e.line, e.col) == ("c.lasm", line, col), str(e)
    assert words in e.message
    assert "\n" not in str(e)


@pytest.mark.parametrize("body", [
    "     0: FOO 1 2 @1:1\n" + TAIL,
    "     0: JMP ->7 @1:1\n" + TAIL,
])
def test_assembly_errors_through_the_command(cli: Runner, tmp_path: Path, body: str) -> None:
    (tmp_path / "c.lasm").write_text(HEAD + body, encoding="utf-8")
    for args in (("asm", "c.lasm"), ("run", "c.lasm")):
        out, err, status = cli(*args)
        assert status == 1, err
        assert out == "" and err.startswith("c.lasm:") and err.count("\n") == 1, err
        line, col = err.split(":")[1:3]
        assert line.isdigit() and col.isdigit(), err
        assert "Traceback" not in err
    assert not (tmp_path / "c.lbc").exists()


def test_assembler_refuses_positions_the_file_cannot_hold(cli: Runner, tmp_path: Path) -> None:
    """What `lispvm asm` writes, `lispvm run` must load: a column beyond the file format's
    range is an assembly error, not a file that the loader later refuses."""
    text = HEAD + "     0: LOADNIL 0 0 @1:99999999999\n" + TAIL
    (tmp_path / "c.lasm").write_text(text, encoding="utf-8")
    _, err, status = cli("asm", "c.lasm", "-o", "c.lbc")
    if status == 0:
        out, err, status = cli("run", "c.lbc")
        assert status == 0, f"asm wrote a file that run refuses: {err.strip()}"
    else:
        assert status == 1 and err.startswith("c.lasm:3:"), err


def test_an_integer_past_the_decimal_limit_survives_dis_and_asm() -> None:
    """Printing it in decimal raised ValueError (`lispvm dis` exited 70): it prints in hex."""
    big = (1 << 200_000) + 12345
    main = Proto("main", 0, False, 2)
    main.consts = [big, -big, 10**19]
    main.code = [encode(BY_NAME["LOADK"], {"A": 1, "Bx": i}) for i in range(3)]
    main.code.append(encode(BY_NAME["RETURN"], {"A": 1}))
    main.lines = [(1, 1)] * 4
    module = Module("big.lisp", [main])
    verify(module, frozenset(BUILTINS))
    data, again = round_trip(module)
    assert again == data
    assert lbc.load(again).protos[0].consts == [big, -big, 10**19]
    assert "-0x1" in disassemble(module) and str(10**19) in disassemble(module)


@pytest.mark.parametrize("attrs", ["params=-1 rest=0 regs=2", "params=0 rest=0 regs=-3", "params=256 rest=0 regs=2"])
def test_negative_or_too_large_function_attributes_are_refused(cli: Runner, tmp_path: Path, attrs: str) -> None:
    """`params=-1` passed the check and failed writing the file (ValueError in lbc, exit 70)."""
    (tmp_path / "c.lasm").write_text(f'.module "c.lisp"\n.function 0 "main" {attrs}\n{TAIL}', encoding="utf-8")
    for args in (("asm", "c.lasm", "-o", "c.lbc"), ("run", "c.lasm")):
        assert cli(*args) == ("", "c.lasm:2:1: bad function attributes\n", 1)
    assert not (tmp_path / "c.lbc").exists()


@pytest.mark.parametrize("position", ["@-1:1", "@1:-17", "@-1:-17"])
def test_negative_positions_are_refused(position: str) -> None:
    with pytest.raises(CompileError) as info:
        assemble(HEAD + f"     0: LOADNIL 0 0 {position}\n" + TAIL, "c.lasm")
    assert (info.value.line, info.value.col) == (3, 6), str(info.value)


def test_writing_a_negative_count_is_a_clear_error() -> None:
    from lispvm.vm.lbc import dump

    module = assemble(HEAD + "     0: LOADNIL 0 0 @1:1\n" + TAIL, "c.lasm")
    module.protos[0].nparams = -1
    with pytest.raises(ValueError, match="negative number -1"):
        dump(module)


def test_an_integer_constant_over_the_product_limit_is_refused() -> None:
    """A .lasm or .lbc file could carry an integer of millions of bits (hex has no digit limit),
    which one multiplication would then take seconds over: constants are bounded like products
    (vm/errors.py MAX_INT_BITS), the largest allowed one still loads."""
    from lispvm.vm.errors import INT_LIMIT, MAX_INT_BITS

    def module_with(k: int) -> Module:
        main = Proto("main", 0, False, 2)
        main.consts = [k]
        main.code = [encode(BY_NAME["LOADK"], {"A": 1, "Bx": 0}), encode(BY_NAME["RETURN"], {"A": 1})]
        main.lines = [(1, 1)] * 2
        return Module("big.lisp", [main])

    ok_ = module_with(-(INT_LIMIT - 1))
    assert lbc.load(lbc.dump(ok_)).protos[0].consts == [-(INT_LIMIT - 1)]
    assert assemble(disassemble(ok_), "ok.lasm").protos[0].consts == [-(INT_LIMIT - 1)]
    big = module_with(INT_LIMIT)
    with pytest.raises(lbc.BadBytecode, match=f"integer constant of more than {MAX_INT_BITS:,} bits"):
        lbc.load(lbc.dump(big))
    with pytest.raises(CompileError, match=f"integer constant of more than {MAX_INT_BITS:,} bits"):
        assemble(disassemble(big), "big.lasm")
