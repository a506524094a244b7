"""perf/common.py's net time (big run less small run): a sample that comes out negative under
load is measured on, never handed to pyperf (which refuses a negative value and ended the whole
script: bench_savina died twice so), and never clamped or filtered (that would bias the figure)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

PERF = Path(__file__).resolve().parents[1] / "perf"


def _common() -> ModuleType:
    sys.path.insert(0, str(PERF))
    try:
        spec = importlib.util.spec_from_file_location("perf_common_under_test", PERF / "common.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod  # (its dataclasses look their module up)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(PERF))


def _fake_runs(monkeypatch: pytest.MonkeyPatch, mod: ModuleType, times: list[float]) -> Iterator[float]:
    """timed_run answers these wall times in turn (big, small, big, small, ...)."""
    it = iter(times)
    monkeypatch.setattr(mod, "timed_run", lambda cmd: next(it))
    return it


def test_positive_sample_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _common()
    _fake_runs(monkeypatch, mod, [1.0, 0.5, 1.2, 0.5])
    assert mod.net_command(2, ["big"], ["small"]) == pytest.approx(1.2)


def test_negative_sample_measured_on_with_every_pair_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _common()
    # first 2 pairs: -0.3 and +0.1 (total -0.2 <= 0); 2 more: +0.3, +0.2 -> mean of all 4 is 0.075
    rest = _fake_runs(monkeypatch, mod, [0.2, 0.5, 0.6, 0.5, 0.8, 0.5, 0.7, 0.5, 9.0])
    value = mod.net_command(2, ["big"], ["small"])
    assert value == pytest.approx(2 * (-0.3 + 0.1 + 0.3 + 0.2) / 4)  # the negative pair counts too
    assert value > 0
    assert next(rest) == 9.0  # exactly 4 pairs were run


def test_never_positive_is_not_measurable(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _common()
    calls = []

    def run(cmd: list[str]) -> float:
        calls.append(cmd[0])
        return 0.5 if cmd[0] == "big" else 0.6

    monkeypatch.setattr(mod, "timed_run", run)
    with pytest.raises(mod.NotMeasurable, match="not measurable"):
        mod.net_command(3, ["big"], ["small"])
    assert calls.count("big") == 3 * mod.NET_MAX_PAIRS


def test_asyncio_negative_sample_measured_on(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _common()
    pairs = iter([-0.1, 0.3])
    monkeypatch.setattr(mod.time, "perf_counter", _clock(pairs))

    async def nothing(n: int) -> None:
        return None

    assert mod.net_asyncio(1, nothing, 10) == pytest.approx((-0.1 + 0.3) / 2)


def _clock(nets: Iterator[float]):  # noqa: ANN202 - a perf_counter stand-in
    """perf_counter readings t0, t1, t2 per pair such that (t1 - t0) - (t2 - t1) is each net in turn."""
    readings: list[float] = []
    t = 0.0
    for net in nets:
        readings += [t, t + 1.0 + net, t + 2.0 + net]
        t += 10.0
    it = iter(readings)
    return lambda: next(it)


def test_savina_asyncio_twin_negative_sample_measured_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench_savina's asyncio side had its own loop of pairs, which pyperf refused the same way."""
    _common()
    sys.path.insert(0, str(PERF))
    try:
        spec = importlib.util.spec_from_file_location("perf_bench_savina_under_test", PERF / "bench_savina.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(PERF))

    async def nothing(*args: int) -> None:
        return None

    monkeypatch.setitem(mod.PYTHON, "fake", (nothing, (10,), (1,), None))
    monkeypatch.setattr(mod.time, "perf_counter", _clock(iter([-0.1, 0.3])))
    assert mod.asyncio_time(1, "fake") == pytest.approx((-0.1 + 0.3) / 2)


def test_only_picks_in_order_and_refuses_an_unknown_name() -> None:
    """`--only tak,nope` once ran tak alone and said nothing of nope (a typo measured nothing)."""
    common = _common()
    names = ["tak", "sieve", "deriv"]
    assert common.pick(names, None) == names
    assert common.pick(names, "deriv,tak") == ["tak", "deriv"]
    with pytest.raises(SystemExit, match="unknown program.*nope; choose from tak,sieve,deriv"):
        common.pick(names, "tak,nope")
