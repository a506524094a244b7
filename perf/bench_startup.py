"""bench_startup: a whole `lispvm run hello.lbc` process against `python -c pass`.

Workload: perf/programs/hello.lisp (one `print`), compiled to .lbc beforehand, so the time is
interpreter start-up, lispvm's imports, loading and verifying the bytecode (and loading the
prelude), running one line and exiting. Target: within 3x of `python -c pass` of the same
interpreter (issue 16; same venv, so both pay the same site/.pth processing).

pyperf's workers do not inherit PYTHONDONTWRITEBYTECODE: with it set (as in some shells), every
module of lispvm changed since its .pyc was written is compiled again at every start, which is
not what an installed lispvm does.

Benchmarks (pyperf bench_command: wall time of the process, in one run):
- startup-python: python -c pass
- startup-lispvm: lispvm run hello.lbc          (the console script of this venv)

Usage: python perf/bench_startup.py [--fast] [-o result.json]
"""

from __future__ import annotations

import sys

from common import PROGRAMS, Ratio, Suite, lispvm_command, run_checked


def main() -> None:
    """Register the benchmarks, run them (pyperf), print the ratio."""
    suite = Suite("startup", {"hello": PROGRAMS / "hello.lisp"})
    suite.parse()
    cmd = [*lispvm_command(), "run", str(suite.lbc("hello"))]
    ok = suite.available("startup", lambda: suite.compiled("hello")() or run_checked(cmd, "hello"),
                         "startup lispvm")
    suite.command("startup-python", [sys.executable, "-c", "pass"])
    if ok:
        suite.command("startup-lispvm", cmd)
    suite.report([Ratio("lispvm run hello.lbc / python -c pass", "startup-lispvm", "startup-python", ("<=", 3))])


if __name__ == "__main__":
    main()
