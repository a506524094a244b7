"""The state the VM loop shares with the fast tier, one object per OS process, passed explicitly.

Owns: `VM`, the record that `vm.interp.run` reads from its host (`host.vm`) at the start of every
slice and that the fast tier (vm/fast.py) fills in when it is enabled. Must never: import the loop,
the fast tier or the scheduler; nothing here is a module global that another module assigns.
"""

from __future__ import annotations

from typing import Any

__all__ = ["VM"]


class VM:
    """What one OS process's loop needs beyond the process it runs.

    A scheduler holds one (`Scheduler(..., vm=vm)`); every scheduler of an OS process shares the
    one that `vm.fast.enable(vm, ...)` was given, so the tick handler and the loop see the same
    counters. Code run outside a scheduler (macros, `call_sync`) gets a fresh one: no fast tier.
    """

    __slots__ = ("fast", "eager", "slice_ticks", "ticks_left", "used")

    def __init__(self) -> None:
        self.fast: Any = None  # the fast tier (vm.fast.FastTier) of this OS process, or None
        self.eager = False  # LISPVM_JIT=eager: the general call path compiles each function at its first call
        self.slice_ticks = 1  # CPU-time ticks a slice of compiled code may run (set by vm.fast.enable)
        self.ticks_left = 1  # ticks left in the current slice (the fast tier's tick handler counts down)
        self.used = 0  # reductions the last slice used (since its last refill), for the trace

    def __repr__(self) -> str:
        return f"<VM fast={self.fast is not None} eager={self.eager} slice_ticks={self.slice_ticks}>"
