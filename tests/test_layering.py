"""Imports point one way (STYLE.md habit 6), read from the source with `ast`: vm/ imports neither
the assembler nor the scheduler; the assembler does not import the scheduler; only
scheduler/device.py imports pyopencl (and only inside the device process's functions); only
scheduler/ starts OS processes; numpy stays out of a VM that has no f32 arrays."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"vm": "lispvm.vm", "assembler": "lispvm.assembler", "scheduler": "lispvm.scheduler"}


def imports(path: Path, package: str) -> list[tuple[str, bool]]:
    """(absolute module name, imported at module level?) for every import in `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    top = {id(node) for node in tree.body}
    for node in tree.body:  # imports under a module-level `if`/`try` still run at import
        if isinstance(node, (ast.If, ast.Try)):
            top |= {id(n) for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [module] + [f"{module}.{a.name}" for a in node.names]
            out += [(name, id(node) in top) for name in names]
    return out


def sources(folder: str) -> list[Path]:
    return sorted((REPO / folder).glob("*.py"))


def all_imports(folder: str) -> dict[str, list[tuple[str, bool]]]:
    return {p.name: imports(p, PACKAGES[folder]) for p in sources(folder)}


def roots(names: list[tuple[str, bool]], *prefixes: str) -> list[str]:
    return sorted({n for n, _ in names if any(n == p or n.startswith(p + ".") for p in prefixes)})


def test_the_import_parser() -> None:
    src = "from ..assembler import lasm\nfrom . import values\nimport os\ndef f():\n    import numpy\n"
    path = REPO / "tests" / "_layering_probe.py"
    try:
        path.write_text(src, encoding="utf-8")
        found = imports(path, "lispvm.vm")
    finally:
        path.unlink()
    assert ("lispvm.assembler", True) in found and ("lispvm.assembler.lasm", True) in found
    assert ("lispvm.vm.values", True) in found and ("os", True) in found and ("numpy", False) in found


def test_every_package_has_sources() -> None:
    for folder in PACKAGES:
        assert sources(folder), folder


@pytest.mark.parametrize("path", sources("vm"), ids=lambda p: p.name)
def test_vm_imports_neither_assembler_nor_scheduler(path: Path) -> None:
    bad = roots(imports(path, "lispvm.vm"), "lispvm.assembler", "lispvm.scheduler")
    assert not bad, f"vm/{path.name} imports {bad}"


@pytest.mark.parametrize("path", sources("assembler"), ids=lambda p: p.name)
def test_assembler_does_not_import_the_scheduler(path: Path) -> None:
    bad = roots(imports(path, "lispvm.assembler"), "lispvm.scheduler")
    assert not bad, f"assembler/{path.name} imports {bad}"


def test_only_the_device_process_imports_pyopencl() -> None:
    for folder in PACKAGES:
        for name, found in all_imports(folder).items():
            hits = [(n, top) for n, top in found if n == "pyopencl" or n.startswith("pyopencl.")]
            if folder == "scheduler" and name == "device.py":
                assert all(not top for _, top in hits), "device.py imports pyopencl at module level"
            else:
                assert not hits, f"{folder}/{name} imports pyopencl"


@pytest.mark.parametrize("module", ["multiprocessing", "subprocess", "concurrent.futures"])
def test_only_the_scheduler_starts_os_processes(module: str) -> None:
    for folder in ("vm", "assembler"):
        for name, found in all_imports(folder).items():
            assert not roots(found, module), f"{folder}/{name} imports {module}"


def test_vm_never_imports_numpy_at_module_level() -> None:
    for name, found in all_imports("vm").items():
        assert not [n for n, top in found if top and n.split(".")[0] == "numpy"], f"vm/{name}"


@pytest.mark.parametrize("module", ["lispvm.vm.interp", "lispvm.vm.builtins", "lispvm.scheduler.runner",
                                    "lispvm.assembler.pipeline"])
def test_importing_does_not_load_numpy_or_pyopencl(module: str) -> None:
    code = (f"import sys, {module}\n"
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('numpy', 'pyopencl', 'multiprocessing'))))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"importing {module} loaded {r.stdout.strip()}"
