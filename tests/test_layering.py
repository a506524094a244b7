"""Imports point one way (STYLE.md habit 6), read from the source with `ast`: the modules of vm/
import each other without a cycle (an import inside a function counts: it only hides the cycle);
vm/ imports neither the assembler nor the scheduler; the assembler does not import the scheduler; only
scheduler/device_server.py imports pyopencl (and only inside the device process's functions); only
scheduler/ starts OS processes; numpy stays out of a VM that has no f32 arrays."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"vm": "lispvm.vm", "assembler": "lispvm.assembler", "scheduler": "lispvm.scheduler"}


def located_imports(path: Path, package: str) -> list[tuple[str, bool, int]]:
    """(absolute name, imported at module level?, line) for every import in `path`; a
    `from M import x` gives both M and M.x (x may be a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    top = {id(node) for node in tree.body}
    for node in tree.body:  # imports under a module-level `if`/`try` still run at import
        if isinstance(node, (ast.If, ast.Try)):
            top |= {id(n) for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, id(node) in top, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [module] + [f"{module}.{a.name}" for a in node.names]
            out += [(name, id(node) in top, node.lineno) for name in names]
    return out


def imports(path: Path, package: str) -> list[tuple[str, bool]]:
    """(absolute module name, imported at module level?) for every import in `path`."""
    return [(name, top) for name, top, _ in located_imports(path, package)]


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


Graph = dict[str, list[tuple[str, int, bool]]]


def import_graph(folder: Path, package: str = "lispvm.vm") -> Graph:
    """The imports among the modules of `folder` (the package `package`): module -> [(module it
    imports, line, at module level?)]. Every form counts: `import`, `from M import x` (M, or x
    when x is a module), relative or absolute, at module level or inside a function. A
    submodule's implicit import of its package (__init__) is not an edge."""
    modules = {p.stem for p in folder.glob("*.py")} - {"__init__"}
    depth = len(package.split("."))
    graph: Graph = {}
    for path in sorted(folder.glob("*.py")):
        edges = set()
        for name, top, line in located_imports(path, package):
            parts = name.split(".")
            if ".".join(parts[:depth]) == package and len(parts) > depth and parts[depth] in modules:
                edges.add((parts[depth], line, top))
        graph[path.stem] = sorted(edges)
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components of `graph` that hold a cycle, each as a sorted list of
    modules (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w, _, _ in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or any(w == v for w, _, _ in graph.get(v, ())):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def shortest_cycle(graph: Graph, component: list[str]) -> list[str]:
    """One shortest cycle through the first module of `component` (breadth first), closed."""
    start = component[0]
    inside = set(component)
    parent: dict[str, str] = {}
    todo = [start]
    while todo:
        nxt = []
        for v in todo:
            for w, _, _ in graph[v]:
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [start, *reversed(path[:-1]), start] if v != start else [start, start]
                if w in inside and w not in parent:
                    parent[w] = v
                    nxt.append(w)
        todo = nxt
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover


def describe_cycles(graph: Graph, folder: str = "vm") -> str:
    """Every cycle of `graph`, with each import that takes part in it (file:line), for the
    failure message; empty when there is none."""
    out = []
    for component in cycles(graph):
        inside = set(component)
        out.append(f"import cycle among {', '.join(component)}, e.g. {' -> '.join(shortest_cycle(graph, component))}; "
                   "its imports (remove enough of them to break it):")
        for v in component:
            for w, line, top in graph[v]:
                if w in inside:
                    out.append(f"    {folder}/{v}.py:{line} imports {w}" + ("" if top else "  (inside a function)"))
    return "\n".join(out)


def test_the_cycle_finder(tmp_path: Path) -> None:
    """A cycle hidden in a function and made of both relative and absolute imports is found; a
    chain that only points one way is not a cycle."""
    (tmp_path / "a.py").write_text("import os\n\ndef f():\n    from . import b\n", encoding="utf-8")
    (tmp_path / "b.py").write_text("import lispvm.vm.c as c\nfrom .d import x\n", encoding="utf-8")
    (tmp_path / "c.py").write_text("from lispvm.vm.a import f\n", encoding="utf-8")
    (tmp_path / "d.py").write_text("x = 1\n", encoding="utf-8")
    graph = import_graph(tmp_path)
    assert graph["a"] == [("b", 4, False)] and graph["d"] == []
    assert cycles(graph) == [["a", "b", "c"]]
    text = describe_cycles(graph)
    assert "a -> b -> c -> a" in text and "vm/a.py:4 imports b  (inside a function)" in text
    (tmp_path / "c.py").write_text("from lispvm.vm import d\n", encoding="utf-8")
    assert cycles(import_graph(tmp_path)) == [] and describe_cycles(import_graph(tmp_path)) == ""
    assert cycles({"s": [("s", 1, True)]}) == [["s"]]


def test_vm_has_no_import_cycle() -> None:
    """vm/ is layered: no module imports, even inside a function, one that imports it back."""
    graph = import_graph(REPO / "vm")
    assert {"values", "builtins", "interp"} <= set(graph)
    problem = describe_cycles(graph)
    if problem:
        pytest.fail("vm/ is not layered:\n" + problem, pytrace=False)


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
            # device_select.py: only in its report, run as the child process of lispvm doctor
            if folder == "scheduler" and name in ("device_server.py", "device_select.py"):
                assert all(not top for _, top in hits), f"{name} imports pyopencl at module level"
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
