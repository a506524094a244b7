"""Build vm/prelude.lbc from vm/prelude.lisp: `python -m lispvm.assembler.prelude [OUT]`.

The prelude is compiled ahead of time because the VM may not import the compiler; the test
suite checks that the shipped .lbc matches its source.
"""

from __future__ import annotations

import sys

from ..vm import lbc
from ..vm.prelude import LBC_PATH, SOURCE_PATH
from .pipeline import compile_source


def build() -> bytes:
    """The bytes prelude.lisp compiles to."""
    with open(SOURCE_PATH, encoding="utf-8") as f:
        module = compile_source(f.read(), "prelude.lisp", allow_reserved=True)
    return lbc.dump(module)


def main(argv: list[str]) -> int:
    out = argv[0] if argv else LBC_PATH
    data = build()  # before the file is opened: compiling reads the prelude's names from it
    with open(out, "wb") as f:
        f.write(data)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
