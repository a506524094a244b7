"""Running a program: pick the node (one scheduler here, or several OS processes), run, exit status.

Owns: the choice between LocalNode (one scheduler, this OS process) and the multi-process
node (scheduler/hub.py), this OS process's VM state (one vm.state.VM, given to the fast tier and
to every scheduler here), the tracer's life, and the fast tier's switch. Must never: leave
anything of a finished run alive in this OS process (its values, its registered module, its
tracer), or let a bad LISPVM_CHAOS end in a traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ..vm import builtins as B
from ..vm import fast, lbc, process
from ..vm.process import Globals
from ..vm.state import VM
from . import chaos, gc_policy
from .node import LocalNode, load_program

__all__ = ["run_program"]


def run_program(data: bytes, argv: list[str], schedulers: int | None = None, reductions: int = 4000,
                trace: str | None = None, jit: bool = True, out: Any = None, err: Any = None,
                clock: Any = None) -> int:
    """Run the program in `data` (.lbc bytes); returns the node's exit status."""
    try:
        seed = chaos.seed()
    except ValueError as e:
        (err or sys.stderr).write(f"lispvm: {e}\n")
        return 2
    status = _run(data, argv, schedulers, reductions, trace, jit, out, err, clock)
    if seed is not None and status != 0:
        # a failing run under chaos names its seed: the same seed repeats the same choices
        (err or sys.stderr).write(f"lispvm: chaos: {chaos.ENV}={seed} was set (exit status {status})\n")
    return status


def _run(data: bytes, argv: list[str], schedulers: int | None, reductions: int, trace: str | None, jit: bool,
         out: Any, err: Any, clock: Any) -> int:
    globals_ = Globals()
    module = load_program(data, globals_)
    n = schedulers if schedulers is not None else (os.cpu_count() or 1)
    tracer = None
    if trace:
        from .trace import make_tracer  # structlog is imported only when tracing

        if trace != "-":
            open(trace, "w").close()  # a new trace; every scheduler then appends to it
        tracer = make_tracer(trace, 0)
    vm = VM()  # this OS process's: its scheduler and fast tier share it
    tier = fast.enable(vm, globals_, reductions) if jit else None
    gc_saved = gc_policy.apply()  # what is loaded now lives as long as the run
    try:
        if n <= 1 or clock is not None:  # a virtual clock only makes sense in one OS process
            return LocalNode(module, globals_, list(argv), reductions, tracer, out, err, clock, vm=vm).run()
        from .hub import run_cluster

        return run_cluster(data, module, globals_, list(argv), n, reductions, tracer, trace, jit, out, err, vm=vm)
    finally:
        gc_policy.restore(gc_saved)
        if tier is not None:
            fast.disable(vm)
        # Nothing of this OS process may keep the finished run's values alive for later runs here
        # (tests, an embedding, a REPL): gpu/ arrays kept their memfds.
        B.ctx.proc = B.ctx.host = None  # the last process run, its scheduler, node and globals
        if process.CURRENT_GLOBALS is globals_:
            process.CURRENT_GLOBALS = None
        for unit in module.units():  # their decoded code holds the run's global cells
            if lbc._REGISTRY.get(unit.key) is unit:
                del lbc._REGISTRY[unit.key]
        if tracer is not None:
            tracer.close()
