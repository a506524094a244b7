"""run_all: run every perf/bench_*.py and print one table of lispvm-to-baseline ratios.

Each benchmark script runs as its own pyperf run (with --fast unless --full), writes its results
to OUT_DIR/<name>.json and its ratio rows to OUT_DIR/<name>.summary.json; this script then
prints all the rows together, with the machine they were measured on.

Usage:
  python perf/run_all.py                        # all, pyperf --fast (a few minutes)
  python perf/run_all.py --only fib,ring        # some
  python perf/run_all.py --full --out-dir res/  # pyperf's default number of runs; keep the JSON
  python perf/run_all.py --markdown             # the table also as Markdown (docs/performance.md)
  python -m pyperf compare_to old/fib.json new/fib.json   # compare two kept runs
Arguments after `--` go to every benchmark script (e.g. `-- --rigorous`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import PERF_DIR, format_rows

BENCHES = ["fib", "add", "startup", "ring", "spawn", "pingpong", "stream", "parallel", "memory", "gpu", "maps", "tiers",
           "gabriel", "savina"]


def machine() -> str:
    """One line describing where the numbers come from."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} cores{' (' + model + ')' if model else ''}, {platform.system()} "
            f"{platform.release()}, CPython {platform.python_version()}")


def markdown(summaries: list[dict[str, Any]]) -> list[str]:
    """The rows of every summary as one Markdown table."""
    out = ["| benchmark | ratio | target | verdict | raw (medians) |", "|---|---:|---|---|---|"]
    for s in summaries:
        for r in s["rows"]:
            out.append(f"| {r['label']} | {r['text']} | {r['target']} | {r['verdict']} | {r['raw']} |")
        for what, why in s["unavailable"]:
            out.append(f"| {what} | - | - | not available | {why} |")
        for g in s.get("geomeans", []):
            out.append(f"| geometric mean, {g['label']} ({g['rows']} rows) | {g['ratio']:.2f}x | {g['target']} "
                       f"| {g['verdict']} | |")
    return out


def main() -> int:
    """Run the benchmark scripts one after the other; print the combined ratio table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help=f"comma-separated subset of: {','.join(BENCHES)}")
    ap.add_argument("--full", action="store_true", help="pyperf's default number of runs instead of --fast")
    ap.add_argument("--out-dir", help="keep <name>.json here for pyperf compare_to (default: a temp dir)")
    ap.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    ap.add_argument("--verbose", action="store_true", help="show pyperf's own output (default: --quiet)")
    ap.add_argument("extra", nargs=argparse.REMAINDER, help="after --: passed to every benchmark script")
    a = ap.parse_args()
    names = a.only.split(",") if a.only else BENCHES
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(unknown)}")
    out_dir = Path(a.out_dir or tempfile.mkdtemp(prefix="lispvm-perf-results-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    clash = [n for n in names if (out_dir / f"{n}.json").exists()]
    if clash:  # pyperf refuses to overwrite, and old results are worth keeping: say so up front
        ap.error(f"{out_dir} already holds results for {', '.join(clash)}; choose another --out-dir")
    extra = [x for x in a.extra if x != "--"]

    summaries: list[dict[str, Any]] = []
    failed: list[str] = []
    started = time.monotonic()
    for name in names:
        summary = out_dir / f"{name}.summary.json"
        cmd = [sys.executable, str(PERF_DIR / f"bench_{name}.py"), "-o", str(out_dir / f"{name}.json"),
               "--summary", str(summary), *([] if a.full else ["--fast"]), *([] if a.verbose else ["--quiet"]),
               *extra]
        print(f"=== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.monotonic()
        status = subprocess.call(cmd)
        print(f"=== {name}: {time.monotonic() - t0:.0f} s, status {status}", flush=True)
        if status != 0 or not summary.exists():
            failed.append(f"{name} (status {status})")
            continue
        summaries.append(json.loads(summary.read_text()))

    print()
    print(f"Ratios measured {time.strftime('%Y-%m-%d %H:%M')} on {machine()}, "
          f"pyperf {'default runs' if a.full else '--fast'}, {time.monotonic() - started:.0f} s in all")
    for s in summaries:
        print("\n".join(format_rows(s["title"], s["rows"], [tuple(u) for u in s["unavailable"]])))
        for g in s.get("geomeans", []):  # written by bench_gabriel and bench_savina
            print(f"geometric mean, {g['label']} ({g['rows']} rows): {g['ratio']:.2f}x  "
                  f"target {g['target']} {g['verdict']}")
    if a.markdown:
        print()
        print("\n".join(markdown(summaries)))
    print(f"\nResults (pyperf JSON, for `python -m pyperf compare_to`): {out_dir}")
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
