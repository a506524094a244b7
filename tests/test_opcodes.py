"""The instruction table (vm/opcodes.py, STYLE.md habit 1) and everything read from it: the loop
(vm/_generated_loop.py, vm/_generated_ops.py) and docs/opcodes.md are generated from it and the
files on disk are what the generator writes now, every opcode has a decoded form and a handler in
the loop, every template renders to Python for both tiers, the encoding round-trips for every
opcode, and the text assembly knows every opcode."""

from __future__ import annotations

import inspect
import random
import re
from pathlib import Path

import pytest

from lispvm.assembler.lasm import assemble, disassemble
from lispvm.vm import interp, loopgen, loopsupport, opcodes
from lispvm.vm.errors import LispError
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
    assert DOC.is_file(), "generate it: python -m lispvm.vm.loopgen"
    assert DOC.read_text(encoding="utf-8") == markdown(), "docs/opcodes.md is stale: python -m lispvm.vm.loopgen"


@pytest.mark.parametrize("name", ["vm/_generated_ops.py", "vm/_generated_loop.py", "docs/opcodes.md"])
def test_generated_files_are_what_the_generator_writes(name: str) -> None:
    """A hand edit of a generated file, or a row changed without regenerating, fails here."""
    files = {path.relative_to(REPO).as_posix(): text for path, text in loopgen.generate(REPO).items()}
    path = REPO / name
    assert path.read_text(encoding="utf-8") == files[name], f"{name} is stale: python -m lispvm.vm.loopgen"
    assert files[name].startswith(("# Generated from vm/opcodes.py", "<!-- Generated from vm/opcodes.py"))


def test_the_generator_check_mode_reports_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = loopgen.generate(REPO)
    fake = {tmp_path / p.name: text for p, text in real.items()}
    for p, text in fake.items():
        p.write_text(text + ("# edited by hand\n" if p.name == "_generated_loop.py" else ""), encoding="utf-8")
    monkeypatch.setattr(loopgen, "generate", lambda root: fake)
    assert loopgen.main(["--check"], tmp_path) == 2  # no pyproject.toml: not a source checkout
    (tmp_path / "pyproject.toml").write_text("", encoding="utf-8")
    assert loopgen.main(["--check"], tmp_path) == 1
    assert (tmp_path / "_generated_loop.py").read_text(encoding="utf-8").endswith("# edited by hand\n")
    assert loopgen.main([], tmp_path) == 0  # writes them back
    assert loopgen.main(["--check"], tmp_path) == 0


def _fast_render(op: opcodes.Op) -> str:
    """A template rendered as straight Python, the way the fast tier names things."""
    def reg(field: str, off: int, nfield: str | None = None, nadj: int = 0) -> str:
        if nfield is None:
            return f"r{ {'A': 3, 'B': 5, 'C': 7}[field] + off}"
        return "(" + "".join(f"r{3 + off + j}, " for j in range(2 + nadj)) + ")"

    return opcodes.render(op.template, reg, lambda kind, field: f"{kind.lower()}7",
                          lambda name: "_" + name)


@pytest.mark.parametrize("op", [op for op in OPS if op.template], ids=lambda op: op.name)
def test_every_template_renders_to_python_for_both_tiers(op: opcodes.Op) -> None:
    names = set(re.findall(r"\$(\w+)", op.template + (op.loop or "")))
    assert names <= set(opcodes.TEMPLATE_NAMES), names - set(opcodes.TEMPLATE_NAMES)
    loop = loopgen.loop_source(op)
    assert loop is not None and "$" not in loop and "R[" not in loop
    compile(loop, op.name, "exec")
    fast = _fast_render(op)
    assert "$" not in fast and "R[" not in fast and "regs" not in fast
    compile(fast, op.name, "eval" if "cond" in op.flags else "exec")


def test_hand_written_handlers_are_the_special_ones() -> None:
    """Only calls, returns, jumps, receive, matches, closures (CLOSURE, SELF: the running one)
    and superinstructions are written by hand."""
    special = {n for entry in loopgen.SPECIAL for n in entry.split("|")}
    rows = {op.name for op in OPS if op.name in special}
    assert all(BY_NAME[n].flags & {"call", "return", "jump", "match"} or n.startswith("RECV")
               or n in ("CLOSURE", "SELF")
               for n in rows), rows
    assert not {op.name for op in OPS if op.template} & special


def test_the_loop_expands_the_call_prologue_from_one_place() -> None:
    source = (REPO / "vm" / "_generated_loop.py").read_text(encoding="utf-8")
    assert source.count("pc = _budget_out(tier, proc, cl, pc, preempt, regs)") >= 9
    assert loopgen.MACROS["@COUNT"].count("_budget_out") == 1
    assert sum(text.count("= _budget_out(") for text in loopgen.SPECIAL.values()) == 0
    assert sum(text.count("frames.pop()") for text in loopgen.SPECIAL.values()) == 0


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_windows_name_register_operands(op: opcodes.Op) -> None:
    """Every register operand is in a window, and every window parses."""
    vals = {f: 3 for f in op.fields}
    for w in op.reads + op.writes:
        opcodes.window(w, vals)
    regs = {f for f, k in op.operands if k == "R"}
    covered = {re.match(r"[ABC]", w).group(0) for w in op.reads + op.writes}
    assert regs <= covered, (op.name, regs - covered)


def _callb_proto(name: str, nargs: int) -> Proto:
    from lispvm.vm.values import intern

    p = Proto("t", 0, False, 8)
    p.consts = [intern(name)]
    p.code = [encode(BY_NAME["CALLB"], {"A": 0, "B": nargs, "C": 0})]
    return p


def test_a_builtin_arity_error_is_known_by_its_parameters_not_its_message() -> None:
    """python_error classifies by the builtin's declared parameters and words the error itself
    (the builtin's Lisp name and counts), so CPython's text never reaches the user."""
    err = loopsupport.python_error(_callb_proto("head", 2), 0, [None] * 8, TypeError("worded differently"))
    assert isinstance(err, LispError)
    assert repr(err.value) == '(error badarity "head takes 1 argument, got 2")'
    # a TypeError from inside a builtin given the right count is no arity error
    err = loopsupport.python_error(_callb_proto("head", 1), 0, [None] * 8, TypeError("takes 1 positional argument"))
    assert repr(err.value) == '(error badarg "head: cannot take nil")'


def test_no_error_is_classified_by_its_message() -> None:
    for module in (loopsupport, interp):
        source = inspect.getsource(module)
        assert "positional argument" not in source and '" in text' not in source


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
    assert not missing, f"no `op is D_...` test in vm/_generated_loop.py for {missing}: python -m lispvm.vm.loopgen"


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


BAND_PROGRAM = """
(def band (x y) (bit/and x y))
(def f bit/and)
(print (band 12 10) (band -1 255) (band (* 1000000000000 1000000000000) 4095) (f 6 3) (apply bit/and (list 7 5)))
(print (try (band 1.5 2) (catch e e)))
(print (try (band "a" 2) (catch e e)))
(print (try (band true nil) (catch e e)))
(print (try (f 1.5 2) (catch e e)))
(print (try (f 1 2 3) (catch e (head (tail e)))))
"""
BAND_OUTPUT = """8 255 0 2 5
(error badarg "bit/and: expected integers, got float 1.5 and integer 2")
(error badarg "bit/and: expected integers, got string \\"a\\" and integer 2")
(error badarg "bit/and: expected integers, got boolean true and nil")
(error badarg "bit/and: expected integers, got float 1.5 and integer 2")
badarity
"""


@pytest.mark.parametrize("mode", ["interpreted", "eager"])
def test_band_the_opcode_a_row_added(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """BAND (bit/and) came as one row with its template: it compiles inline, and the loop, the
    fast tier and the builtin's value all run it, with the same errors."""
    _run_rows_program(BAND_PROGRAM, BAND_OUTPUT, {"band": "BAND"}, mode, monkeypatch)


def _run_rows_program(program: str, expected: str, inline: dict[str, str], mode: str,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Compile `program`, check that each function named in `inline` is its row's instruction and
    RETURN, run it interpreted or with every function compiled eagerly, and compare its output."""
    import io

    from lispvm.assembler.pipeline import compile_source
    from lispvm.scheduler.runner import run_program
    from lispvm.vm import fast, lbc

    module = compile_source(program, "rows.lisp")
    for name, op in inline.items():
        proto = next(p for p in module.protos if p.name == name)
        assert [decode_fields(w)[0].name for w in proto.code] == [op, "RETURN"]
    if mode == "eager":
        monkeypatch.setenv("LISPVM_JIT", "eager")
    else:
        monkeypatch.delenv("LISPVM_JIT", raising=False)
    compiled, refused = fast.COMPILED, fast.REFUSED
    out, err = io.StringIO(), io.StringIO()
    status = run_program(lbc.dump(module), [], schedulers=1, jit=mode == "eager", out=out, err=err)
    assert (status, err.getvalue()) == (0, "")
    assert out.getvalue() == expected
    if mode == "eager":
        assert fast.COMPILED > compiled and fast.REFUSED == refused, f"the fast tier did not compile {inline}"


BITS_PROGRAM = """
(def bor (x y) (bit/or x y))
(def bxor (x y) (bit/xor x y))
(def bnot (x) (bit/not x))
(print (bor 12 10) (bxor 12 10) (bnot 0) (bnot -1) (bnot 5) (bor (* 1000000000000 1000000000000) 1)
       (apply bit/not (list 7)) ((fn (f) (f 6 3)) bit/xor))
(print (try (bor 1.5 2) (catch e e)))
(print (try (bxor "a" 2) (catch e e)))
(print (try (bnot true) (catch e e)))
(print (try (bnot 1.5) (catch e e)))
(print (try ((fn (f) (f 1 2)) bit/not) (catch e (head (tail e)))))
(print (try (bit/or 1 2 4) (catch e (head (tail e)))))
"""
BITS_OUTPUT = """14 6 -1 0 -6 1000000000000000000000001 -8 5
(error badarg "bit/or: expected integers, got float 1.5 and integer 2")
(error badarg "bit/xor: expected integers, got string \\"a\\" and integer 2")
(error badarg "bit/not: expected integers, got boolean true")
(error badarg "bit/not: expected integers, got float 1.5")
badarity
badarity
"""


@pytest.mark.parametrize("mode", ["interpreted", "eager"])
def test_bor_bxor_bnot_each_one_row(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """BOR, BXOR and BNOT were added as three rows of vm/opcodes.py and nothing else by hand: two
    binary rows and a unary one compile inline, and run the same in both tiers and as values."""
    _run_rows_program(BITS_PROGRAM, BITS_OUTPUT, {"bor": "BOR", "bxor": "BXOR", "bnot": "BNOT"}, mode,
                      monkeypatch)


def test_a_rows_builtin_is_in_the_table_once_vm_builtins_is_imported() -> None:
    """The verifier of `lispvm run`/`dis` reads the table before the loop is imported: a row's
    builtin must be there already (a call of bit/and with three arguments is a CALLB of it)."""
    import subprocess
    import sys

    code = ("import sys; from lispvm.vm.builtins import BUILTINS; "
            "assert 'lispvm.vm.interp' not in sys.modules; print(sorted(op.builtin for op in "
            "__import__('lispvm.vm.opcodes', fromlist=['OPS']).OPS if op.builtin and op.builtin not in BUILTINS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (out.returncode, out.stdout.strip()) == (0, "[]"), out.stderr


def test_a_row_defining_a_builtin_must_have_an_inlinable_shape() -> None:
    """The compiler inlines a row's builtin as R[A] := f(R[B], R[C]) or R[A] := f(R[B]); a row of
    another shape is refused where it is declared, and the unary shape is inlined for one argument."""
    with pytest.raises(ValueError, match="defines a builtin"):
        opcodes._op(120, "BSHAPE", "ABC", "A:R B:R C:R", "", "R[A] := f(R[A], R[B], R[C])", "A B C", "A",
                    template="R[A] = R[A] + R[B] + R[C]", builtin="bit/shape")
    unary = opcodes._op(121, "BUN", "ABC", "A:R B:R", "", "R[A] := ~R[B]", "B", "A", template="R[A] = ~R[B]",
                        builtin="bit/un")
    assert unary.reads == ("B",)
    with pytest.raises(ValueError, match="has no operand C"):
        opcodes.encode(unary, {"A": 1, "B": 2, "C": 3})

