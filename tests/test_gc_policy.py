"""The collector's settings while a program runs (scheduler/gc_policy.py, issue 16 item 1).

Raised thresholds and gc.freeze must not stop cyclic garbage from being collected: a closure that
holds a box holding the closure (a cycle reference counting never frees), made by the hundred
thousand in the main process and in processes that end, is freed by the collector while the run
goes on. A control run with the collector switched off shows that the count would see it if not.
"""

from __future__ import annotations

import gc
import io

import pytest

from lispvm.assembler.pipeline import compile_source
from lispvm.scheduler import gc_policy
from lispvm.scheduler.runner import run_program
from lispvm.vm.lbc import dump
from lispvm.vm.process import Process
from lispvm.vm.values import Box

# Each (cycle) makes a closure that captured `f`, a boxed variable, then stores the closure in
# it: box -> closure -> box. `churn` makes N of them in the main process; `spawned` makes N
# processes that each make one and end.
PROGRAM = """
(def cycle () (let ((f nil)) (set f (fn () f)) 'ok))
(def churn (n) (if (== n 0) 'done (do (cycle) (churn (- n 1)))))
(def spawned (n) (if (== n 0) 'done (do (spawn cycle) (spawned (- n 1)))))
(def n (parse-int (head (tail (sys/args)))))
(print (if (== (head (sys/args)) "spawn") (spawned n) (churn n)))
"""
N = 120_000
N_PROCS = 20_000


def _live(cls: type) -> int:
    """Objects of `cls` the collector knows about now (no collection is run to count them)."""
    return sum(1 for o in gc.get_objects() if o.__class__ is cls)


@pytest.fixture(scope="module")
def lbc() -> bytes:
    return dump(compile_source(PROGRAM, "cycles.lisp"))


def _run(lbc: bytes, *args: str) -> str:
    out = io.StringIO()
    assert run_program(lbc, list(args), schedulers=1, out=out, jit=False) == 0
    return out.getvalue()


def _counted_at_end(monkeypatch: pytest.MonkeyPatch, *classes: type) -> list[int]:
    """Counts of `classes` taken when the run ends, before the collector's settings are put
    back (afterwards CPython's small threshold would collect at the next allocation anyway)."""
    counts: list[int] = []
    real_restore = gc_policy.restore

    def counting_restore(saved: tuple | None) -> None:
        counts.extend(_live(c) for c in classes)
        real_restore(saved)

    monkeypatch.setattr(gc_policy, "restore", counting_restore)
    return counts


def test_cycles_of_closures_and_boxes_are_collected_during_a_run(lbc: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    gc.collect()
    before = _live(Box)
    assert gc_policy.settings({}) == gc_policy.THRESHOLDS  # what a run gets
    at_end = _counted_at_end(monkeypatch, Box)
    assert _run(lbc, "churn", str(N)) == "done\n"
    assert at_end[0] - before < N // 2  # the collector ran during the run and freed them


def test_cycles_left_by_ended_processes_are_collected(lbc: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    gc.collect()
    boxes, procs = _live(Box), _live(Process)
    at_end = _counted_at_end(monkeypatch, Box, Process)
    assert _run(lbc, "spawn", str(N_PROCS)) == "done\n"
    assert at_end[0] - boxes < N_PROCS // 2
    assert at_end[1] - procs < N_PROCS // 2


def test_control_without_the_collector_the_cycles_stay(lbc: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    gc.collect()
    before = _live(Box)
    at_end = _counted_at_end(monkeypatch, Box)
    gc.disable()
    try:
        assert _run(lbc, "churn", str(N // 4)) == "done\n"
        assert at_end[0] - before >= N // 4  # every cycle is still there: the count sees them
    finally:
        gc.enable()
        gc.collect()


def test_a_run_puts_the_collector_back_as_it_was(lbc: bytes) -> None:
    thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()
    seen: list[tuple] = []
    real_apply = gc_policy.apply

    def spy() -> tuple | None:
        saved = real_apply()
        seen.append((gc.get_threshold(), gc.get_freeze_count()))
        return saved

    gc_policy.apply = spy  # type: ignore[assignment]
    try:
        _run(lbc, "churn", "10")
    finally:
        gc_policy.apply = real_apply  # type: ignore[assignment]
    assert seen[0][0] == gc_policy.THRESHOLDS and seen[0][1] > 0  # raised and frozen during the run
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == frozen  # and put back


def test_overlapping_runs_put_back_what_the_first_found() -> None:
    thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()
    first = gc_policy.apply()
    second = gc_policy.apply()
    gc_policy.restore(first)  # the first to end: the second still runs with the raised settings
    assert gc.get_threshold() == gc_policy.THRESHOLDS
    gc_policy.restore(second)
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == frozen


def test_lispvm_gc_setting() -> None:
    assert gc_policy.settings({"LISPVM_GC": "default"}) is None
    assert gc_policy.settings({"LISPVM_GC": "1000, 5, 7"}) == (1000, 5, 7)
    for bad in ("x", "0,1,1", "1,2", "-5,1,1"):
        assert gc_policy.settings({"LISPVM_GC": bad}) == gc_policy.THRESHOLDS
