"""The prelude (builtins written in Lisp): the shipped vm/prelude.lbc is exactly what
vm/prelude.lisp compiles to today, it loads and verifies, and its functions are reserved names."""

from __future__ import annotations

import pytest

from lispvm.assembler.pipeline import compile_source, reserved_names
from lispvm.assembler.prelude import build
from lispvm.vm import lbc, prelude
from lispvm.vm.builtins import BUILTINS
from lispvm.vm.errors import CompileError
from lispvm.vm.verify import verify
from support import run


def test_shipped_prelude_matches_its_source() -> None:
    with open(prelude.LBC_PATH, "rb") as f:
        shipped = f.read()
    assert shipped == build(), "vm/prelude.lbc is stale: python -m lispvm.assembler.prelude"


def test_build_is_deterministic() -> None:
    assert build() == build()


def test_prelude_loads_and_verifies() -> None:
    module = lbc.load(build())
    verify(module, frozenset(BUILTINS))
    assert module.file == "prelude.lisp"


def test_prelude_names_are_reserved() -> None:
    names = prelude.names()
    assert {"list/map", "list/filter", "list/reduce", "apply"} <= set(names), sorted(names)
    assert set(names) <= reserved_names()


def test_a_program_cannot_redefine_a_prelude_function() -> None:
    with pytest.raises(CompileError) as info:
        compile_source("(print 1)\n(def list/map (f xs) nil)\n", "p.lisp")
    assert (info.value.line, info.value.col) == (2, 1)


def test_reduce_plus_of_floats_is_a_left_fold() -> None:
    """list/reduce + over numbers takes Python's sum where sum is the left fold of + (ints, and
    floats before 3.12, where sum began compensating): ten 0.1s add up as (+ (+ 0.1 0.1) ...)."""
    out, err, status = run(
        "(print (list/reduce + 0.0 (list 0.1 0.1 0.1 0.1 0.1 0.1 0.1 0.1 0.1 0.1))"
        " (loop ((i 0) (a 0.0)) (if (== i 10) a (recur (+ i 1) (+ a 0.1)))))")
    assert status == 0, err
    fold, loop = out.split()
    assert fold == loop == "0.9999999999999999", out
