"""The state the VM loop shares with the fast tier, one object per OS process, passed explicitly,
and the two constants every process and tier share: the halt frame and the WAITING sentinel.

Owns: `VM`, the record that `vm.interp.run` reads from its host (`host.vm`) at the start of every
slice and that the fast tier (vm/fast.py) fills in when it is enabled; HALT_FRAME, the frame at
the bottom of every process's stack (vm/process.py builds stacks on it, vm/codec.py checks it).
Must never: import the loop, the fast tier or the scheduler; nothing here is a module global that
another module assigns.
"""

from __future__ import annotations

from typing import Any

from ._generated_ops import D_HALT
from .lbc import Module, Proto, register
from .values import Closure

__all__ = ["VM", "HALT_FRAME", "WAITING"]

WAITING = object()  # what a compiled receive loop resumed by the loop returns when it must wait again


def _halt_frame() -> tuple:
    """The frame at the bottom of every process's stack: a RETURN into it ends the process, so
    no return path needs to test for an empty stack. Shared by all processes (immutable but for
    its one register, which D_HALT clears), and registered like any module, so that the codec
    can name its prototype when a process moves."""
    p = Proto("halt", 0, False, 1)
    m = Module("<halt>", [p], b"halt-frame")
    register(m)
    p.dcode = [(D_HALT, 0, 0, 0, 0)]
    return (Closure(p, (), "halt"), p.dcode, 0, [None], 0)


HALT_FRAME = _halt_frame()


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
