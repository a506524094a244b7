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
