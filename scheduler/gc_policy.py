"""How CPython's cyclic garbage collector runs in a scheduler OS process (issue 16, item 1).

Owns: the collector's settings while a program runs in this OS process, and putting back the
ones it found when the run ends (tests, the REPL and an embedding run programs in a process that
is not ours). Must never: switch the collector off (closures that hold boxes holding themselves,
and processes that died in a cycle of links, are freed only by it).

Why: the VM's values are many small objects that live long (cons cells of a big list, closures,
processes), and CPython's collector, left as it is, walks every one of them again and again:

- Everything the start loaded (modules, the prelude, the program's decoded code, builtins) is
  moved to the permanent generation with `gc.freeze()`, so no collection walks it again.
- The youngest generation is collected after many more allocations than CPython's 700: a Lisp
  program allocates cells in long runs (building, reversing, merging a list), most of which are
  freed by reference counting before that, so far fewer objects are promoted into the older
  generations, and a full collection (which walks every live cell) comes that much more rarely.

LISPVM_GC (the environment) overrides the settings for measuring: `default` leaves CPython's
collector as it is (no freeze, thresholds untouched), `G0,G1,G2` sets the three thresholds (the
freeze still happens). docs/performance.md ("The collector") has the measurements.
"""

from __future__ import annotations

import _thread  # (threading itself is not needed by a start that runs no threads)
import gc
import os

__all__ = ["THRESHOLDS", "ENV", "apply", "restore", "settings", "before_exit"]

ENV = "LISPVM_GC"
# (generation 0, generation 1, generation 2) thresholds while a program runs: chosen by the
# sorting and list-building measurements in docs/performance.md
THRESHOLDS = (50_000, 20, 10)


def settings(environ: dict | None = None) -> tuple[int, int, int] | None:
    """The thresholds to use: LISPVM_GC's if it is set and valid, else THRESHOLDS; None means
    leave the collector alone (LISPVM_GC=default). A malformed value is ignored (the defaults)."""
    value = (os.environ if environ is None else environ).get(ENV, "").strip()
    if value == "default":
        return None
    if value:
        parts = value.split(",")
        try:
            nums = tuple(int(p) for p in parts)
        except ValueError:
            return THRESHOLDS
        if len(nums) == 3 and nums[0] > 0 and nums[1] >= 0 and nums[2] >= 0:
            return nums  # type: ignore[return-value]
    return THRESHOLDS


_LOCK = _thread.allocate_lock()
_RUNS: list = [0, None]  # runs going on in this OS process, and what the first one found


def apply() -> tuple | None:
    """Set up the collector for a run, once the program and the prelude are loaded: freeze what
    is loaded, raise the thresholds. Returns what `restore` needs to put things back (None when
    nothing was changed). Runs that overlap in one OS process (threads) share the settings: the
    last one to end puts back what the first one found."""
    wanted = settings()
    if wanted is None:
        return None
    with _LOCK:
        _RUNS[0] += 1
        if _RUNS[0] == 1:
            _RUNS[1] = (gc.get_threshold(), gc.get_freeze_count() == 0)
        gc.freeze()  # everything allocated so far is the load's: it lives as long as the run
        gc.set_threshold(*wanted)
    return ()


def restore(saved: tuple | None) -> None:
    """Put back the collector's settings that `apply` found (this OS process goes on after the
    run: a test runner, the REPL, an embedding)."""
    if saved is None:
        return
    with _LOCK:
        _RUNS[0] -= 1
        if _RUNS[0]:
            return
        thresholds, unfreeze = _RUNS[1]
        _RUNS[1] = None
        gc.set_threshold(*thresholds)
        if unfreeze:  # what the runs froze becomes collectable again; an earlier freeze is not ours
            gc.unfreeze()


def before_exit() -> None:
    """The `lispvm` command's process is about to end: freeze what is left, so that the
    interpreter's last collection at exit does not walk every module and value once more (a
    noticeable part of a short run's time). Only for the command itself: a process that goes on
    (a test runner, an embedding) must not call it."""
    gc.freeze()
