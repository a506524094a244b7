"""The instruction table (vm/opcodes.py, STYLE.md habit 1) and everything read from it:
docs/opcodes.md is generated from it, every opcode has a decoded form and a handler in the loop,
the encoding round-trips for every opcode, and the text assembly knows every opcode."""

from __future__ import annotations

import inspect
import random
import re
from pathlib import Path

import pytest

from lispvm.assembler.lasm import assemble, disassemble
from lispvm.vm import interp, opcodes
from lispvm.vm.lbc import Module, Proto
from lispvm.vm.opcodes import (
    BY_NAME,
    MAX_I,
    MAX_SBX,
    MAX_SJ,
    MAXARG_BX,
    MIN_I,
    MIN_SBX,
    MIN_SJ,
    OPS,
    decode_fields,
    encode,
    markdown,
)

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "opcodes.md"
FIELDS = {"ABC": {"A", "B", "C", "k"}, "ABx": {"A", "Bx"}, "AsBx": {"A", "sBx"}, "sJ": {"sJ"}}
KINDS = set("RKUPGYISNFJ")


def test_docs_opcodes_md_is_generated_from_the_table() -> None:
    assert DOC.is_file(), "generate it: python -m lispvm.vm.opcodes > docs/opcodes.md"
    assert DOC.read_text(encoding="utf-8") == markdown(), \
        "docs/opcodes.md is stale: python -m lispvm.vm.opcodes > docs/opcodes.md"


def test_markdown_lists_every_opcode() -> None:
    text = markdown()
    for op in OPS:
        assert f"| {op.num} | `{op.name}` |" in text


def test_numbers_and_names_are_unique_and_in_range() -> None:
    nums = [op.num for op in OPS]
    names = [op.name for op in OPS]
    assert len(set(nums)) == len(nums)
    assert len(set(names)) == len(names)
    assert all(0 <= n <= 127 for n in nums)
    assert set(BY_NAME) == set(names)
    assert all(re.fullmatch(r"[A-Z]+", n) for n in names), "the assembler reads names as [A-Z]+"


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_rows_are_well_formed(op: opcodes.Op) -> None:
    assert op.fmt in FIELDS
    fields = [f for f, _ in op.operands]
    assert len(set(fields)) == len(fields)
    assert set(fields) <= FIELDS[op.fmt], (op.fmt, fields)
    assert {k for _, k in op.operands} <= KINDS
    assert op.flags <= {"jump", "cond", "match", "call", "tail", "return", "leaves"}
    assert op.meaning and "\n" not in op.meaning
    if "cond" in op.flags:
        assert op.fmt == "ABC" and ("k", "F") in op.operands
    if "jump" in op.flags:
        assert any(k == "J" for _, k in op.operands)
    if "tail" in op.flags:
        assert {"call", "return"} <= op.flags


def test_every_opcode_has_a_decoded_form() -> None:
    assert set(interp.DECODES_TO) == {op.name for op in OPS}
    for name, decoded in interp.DECODES_TO.items():
        assert decoded, name
        for d in decoded:
            assert d in interp.DECODED, f"{name} decodes to unknown {d}"


def _handled() -> set[str]:
    return set(re.findall(r"\bop is (D_[A-Z0-9_]+)", inspect.getsource(interp.run)))


def test_every_decoded_operation_has_a_handler() -> None:
    handled = _handled()
    named = {d for ds in interp.DECODES_TO.values() for d in ds}
    named |= set(interp.FUSED) | set(interp.SPECIALIZED) | set(interp.SYNTHETIC)
    missing = sorted(named - handled - {"D_SKIPPED"})
    assert not missing, f"no `op is D_...` test in interp.run for {missing}"


def test_every_decoded_operation_is_reachable() -> None:
    """No handler for a decoded operation that nothing produces."""
    produced = {d for ds in interp.DECODES_TO.values() for d in ds}
    produced |= set(interp.FUSED) | set(interp.SPECIALIZED) | set(interp.SYNTHETIC)
    assert set(interp.DECODED) - produced == set()
    assert _handled() <= set(interp.DECODED)


def test_decoded_numbers_are_distinct() -> None:
    values = list(interp.DECODED.values())
    assert len(set(values)) == len(values)


def _random_operands(op: opcodes.Op, rng: random.Random) -> dict[str, int]:
    vals = {}
    for field, kind in op.operands:
        if field == "sBx":
            vals[field] = rng.choice([MIN_SBX, MAX_SBX, 0, -1, rng.randint(MIN_SBX, MAX_SBX)])
        elif field == "sJ":
            vals[field] = rng.choice([MIN_SJ, MAX_SJ, 0, -1, rng.randint(MIN_SJ, MAX_SJ)])
        elif field == "Bx":
            vals[field] = rng.choice([0, MAXARG_BX, rng.randint(0, MAXARG_BX)])
        elif field == "k" or kind == "F":
            vals[field] = rng.randint(0, 1)
        elif kind == "I":
            vals[field] = rng.choice([MIN_I, MAX_I, 0, rng.randint(MIN_I, MAX_I)])
        else:
            vals[field] = rng.choice([0, 255, rng.randint(0, 255)])
    return vals


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_encode_decode_round_trip(op: opcodes.Op) -> None:
    rng = random.Random(op.num)
    for _ in range(300):
        vals = _random_operands(op, rng)
        word = encode(op, vals)
        assert 0 <= word < 1 << 32
        assert word & 0x7F == op.num
        back, fields = decode_fields(word)
        assert back is op
        assert {f: fields[f] for f, _ in op.operands} == vals
        assert opcodes.unused_bits_clear(word)


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_encode_refuses_out_of_range_operands(op: opcodes.Op) -> None:
    for field, kind in op.operands:
        too_big = {"sBx": MAX_SBX + 1, "sJ": MAX_SJ + 1, "Bx": MAXARG_BX + 1, "k": 2}.get(field)
        if too_big is None:
            too_big = MAX_I + 1 if kind == "I" else (2 if kind == "F" else 256)
        with pytest.raises(ValueError):
            encode(op, {field: too_big})
        too_small = {"sBx": MIN_SBX - 1, "sJ": MIN_SJ - 1}.get(field, MIN_I - 1 if kind == "I" else -1)
        with pytest.raises(ValueError):
            encode(op, {field: too_small})


def test_unknown_opcode_numbers_do_not_decode() -> None:
    used = {op.num for op in OPS}
    for n in range(128):
        if n not in used:
            with pytest.raises(KeyError):
                decode_fields(n)
            assert not opcodes.unused_bits_clear(n)


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_the_assembly_text_knows_every_opcode(op: opcodes.Op) -> None:
    rng = random.Random(1000 + op.num)
    p = Proto("main", 0, False, 255)
    for i in range(20):
        vals = _random_operands(op, rng)
        if "sJ" in vals:  # absolute targets must not be negative in the text
            vals["sJ"] = max(vals["sJ"], -(i + 1))
        if op.name == "RECVPEEK" or op.name == "RECVWAIT":
            vals["sBx"] = max(vals["sBx"], -(i + 1))
        p.code.append(encode(op, vals))
        p.lines.append((i + 1, 1))
    text = disassemble(Module("ops.lisp", [p]))
    again = assemble(text, "ops.lasm")
    assert again.protos[0].code == p.code
