"""Stress (issue 12, "What to build" C and E): Savina-style actor workloads and the issue's
cross-scheduler reproducers, each run through `lispvm run --schedulers N` (N = 1, 2, 4) with two
busy loops competing for the cores, their standard output and exit status compared exactly; and
a subset on 2 and 4 schedulers under chaos mode (LISPVM_CHAOS=SEED: seeded preemptions,
migrations, split and delayed writes, small socket buffers).

The programs are tests/programs/stress/NAME.lisp; NAME.out is the expected output, written by
make_expected.py from the programs' parameters in Python (never from a lispvm run), and
NAME.ARG.out the output with ARG as the program's argument (those runs are `slow`). Every
../shared/stress/*.lisp with its .out runs too.

Environment:
- LISPVM_CHAOS_SEEDS=N runs every chaos test with seeds 1..N (default 3); LISPVM_CHAOS_SEEDS=7,19
  runs those seeds, LISPVM_CHAOS_SEEDS=21-40 that range (support.chaos_seeds, test_cluster's too).
  A failing chaos run names its seed and the command that reproduces it.
- LISPVM_CHAOS_PROGRAMS=all, or a comma-separated list of names, widens the chaos subset.
- LISPVM_STRESS_REPEAT=N runs every test under load N times (default 1), e.g. to count how many
  of 12 runs of `-k ordering-s2` pass.
- LISPVM_STRESS_TIMEOUT=S limits each run (default 90 s); a run past it fails as a hang.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import BusyLoops, chaos_seeds, lispvm_command, run_command

REPO = Path(__file__).resolve().parents[1]
PROGRAMS = REPO / "tests" / "programs" / "stress"
SHARED_STRESS = REPO.parent / "shared" / "stress"
TIMEOUT = float(os.environ.get("LISPVM_STRESS_TIMEOUT", "90"))
REPEAT = int(os.environ.get("LISPVM_STRESS_REPEAT", "1"))

# The chaos subset by default: one program of each kind of traffic (many senders to one, a ring
# crossing schedulers at every hop, random peers, a broker, a large value, a burst).
CHAOS_DEFAULT = ["ordering", "thread_ring", "big", "chameneos", "cross_list", "across_schedulers"]


@dataclass(frozen=True)
class Case:
    """One program run: its file, its arguments and the file holding its expected output."""

    name: str
    path: Path
    args: tuple[str, ...]
    expected: Path

    @property
    def id(self) -> str:
        return ".".join((self.name, *self.args))


def _cases() -> list[Case]:
    cases = []
    for out in sorted(PROGRAMS.glob("*.out")):
        name, _, arg = out.name[: -len(".out")].partition(".")
        cases.append(Case(name, PROGRAMS / f"{name}.lisp", tuple(arg.split(",")) if arg else (), out))
    if SHARED_STRESS.is_dir():
        for src in sorted(SHARED_STRESS.glob("*.lisp")):
            if src.with_suffix(".out").exists():
                cases.append(Case(src.stem, src, (), src.with_suffix(".out")))
    return cases


CASES = _cases()


def _chaos_cases() -> list[Case]:
    text = os.environ.get("LISPVM_CHAOS_PROGRAMS", "").strip()
    names = None if text == "all" else (text.split(",") if text else CHAOS_DEFAULT)
    return [c for c in CASES if not c.args and (names is None or c.name in names)]


def _params(cases: list[Case], repeat: int = 1) -> list:
    """Each case (`repeat` times, as NAME-runK), the ones with arguments marked slow."""
    return [pytest.param(c, id=c.id if repeat == 1 else f"{c.id}-run{k}", marks=[pytest.mark.slow] if c.args else [])
            for c in cases for k in range(1, repeat + 1)]


def _first_difference(got: str, want: str) -> str:
    """Where the output first differs, in one short paragraph (outputs can be a megabyte)."""
    g, w = got.splitlines(), want.splitlines()
    for i, (a, b) in enumerate(zip(g, w)):
        if a != b:
            return f"line {i + 1} differs:\n  want {b[:200]!r}\n  got  {a[:200]!r}"
    return f"{len(g)} lines where {len(w)} were expected; last line got {(g or [''])[-1][:200]!r}"


def check(case: Case, schedulers: int, loops: BusyLoops, chaos: int | None = None) -> None:
    """Run one case and fail with the way to reproduce it unless stdout and status are exact."""
    env = {k: v for k, v in os.environ.items() if k not in ("LISPVM_DEBUG", "LISPVM_CHAOS")}
    if chaos is not None:
        env["LISPVM_CHAOS"] = str(chaos)
    argv = lispvm_command() + ["run", "--schedulers", str(schedulers), str(case.path), *case.args]
    shown = shlex.join(["lispvm", "run", "--schedulers", str(schedulers), os.path.relpath(case.path, REPO),
                        *case.args])
    repro = (f"chaos seed {chaos}; reproduce: LISPVM_CHAOS={chaos} {shown}" if chaos is not None
             else f"reproduce: {shown}") + " (with two busy loops beside)\n"
    assert loops.alive() == loops.n, "a busy loop ended early: the run would not be under load"
    r: subprocess.CompletedProcess = run_command(argv, timeout=TIMEOUT, env=env, context=repro)
    want = case.expected.read_text()
    if r.stdout != want or r.returncode != 0:
        pytest.fail(f"{repro}exit status {r.returncode} (want 0); "
                    f"{'stdout as expected' if r.stdout == want else _first_difference(r.stdout, want)}\n"
                    f"stderr: {r.stderr[-600:]!r}", pytrace=False)


@pytest.mark.stress
@pytest.mark.parametrize("schedulers", [1, 2, 4], ids=lambda n: f"s{n}")
@pytest.mark.parametrize("case", _params(CASES, REPEAT))
def test_program_under_load(case: Case, schedulers: int, busy_loops: BusyLoops) -> None:
    """Each stress program gives exactly its expected output on 1, 2 and 4 schedulers while two
    busy loops compete for the cores."""
    check(case, schedulers, busy_loops)


@pytest.mark.stress
@pytest.mark.chaos
@pytest.mark.parametrize("seed", chaos_seeds(), ids=lambda n: f"seed{n}")
@pytest.mark.parametrize("schedulers", [2, 4], ids=lambda n: f"s{n}")
@pytest.mark.parametrize("case", _params(_chaos_cases()))
def test_program_under_chaos(case: Case, schedulers: int, seed: int, busy_loops: BusyLoops) -> None:
    """The same under LISPVM_CHAOS=seed, with the busy loops too; the failure names the seed."""
    check(case, schedulers, busy_loops, chaos=seed)


def test_every_program_has_its_expected_output() -> None:
    """No program is silently left out of the runs above: each .lisp here has a NAME.out, and the
    expected outputs are the ones make_expected.py computes."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_expected", PROGRAMS / "make_expected.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert {p.stem for p in PROGRAMS.glob("*.lisp")} == {c.name for c in CASES if c.path.parent == PROGRAMS}
    for name, text in module.EXPECTED.items():
        assert (PROGRAMS / name).read_text() == text, f"{name} is not what make_expected.py computes"
