"""`lispvm doctor` (CLI.md): what this machine offers lispvm, and what to install when gpu/
cannot run.

Owns: the report (Python and the packages lispvm loads, the OpenCL runtimes pip installed, every
OpenCL device with whether our probe kernel builds and runs on it, the device gpu/ would use,
the device process's confinement layers, Python interop) and the advice at its end.

Must never: fail (it is what a user runs when something else failed: every question it cannot
answer is a line of the report, and it exits 0), or load an OpenCL driver in its own process (the
probe runs in a child, scheduler/device_select.py, so a driver that crashes is reported, not
fatal).
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import platform
import subprocess
import sys
import tempfile
from typing import TextIO

from . import device_select

__all__ = ["doctor", "PROBE_TIMEOUT_S"]

PROBE_TIMEOUT_S = 180.0  # a first kernel build on a slow driver takes seconds; a hung one is reported


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _probe() -> tuple[list[dict], str | None]:
    """The device_select report of a child process: its JSON lines, and why it did not end
    well (None when it did)."""
    with tempfile.TemporaryDirectory(prefix="lispvm-doctor-") as d:
        try:
            r = subprocess.run([sys.executable, "-m", "lispvm.scheduler.device_select", d], capture_output=True,
                               text=True, timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return [], f"the OpenCL probe did not finish within {PROBE_TIMEOUT_S:g} s (a driver hangs)"
        except OSError as e:
            return [], f"could not start the OpenCL probe: {e}"
    lines = []
    for ln in r.stdout.splitlines():
        try:
            lines.append(json.loads(ln))
        except ValueError:
            continue  # a driver's own chatter on stdout
    if r.returncode < 0:
        return lines, f"the OpenCL probe was killed by signal {-r.returncode} (a driver crashed)"
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["no message"])[-1]
        return lines, f"the OpenCL probe failed: {last}"
    return lines, None


def _confinement() -> str:
    """Which layers the device process would apply here (docs/gpu.md, Confinement)."""
    if os.environ.get("LISPVM_DEVICE_CONFINE", "1") == "0":
        return "off (LISPVM_DEVICE_CONFINE=0)"
    from . import confine

    try:
        abi = confine.landlock_abi()
    except Exception as e:  # no cffi, no syscall: the device process would warn the same way
        abi, why = 0, str(e)
    else:
        why = ""
    parts = [f"Landlock ABI {abi}" if abi > 0 else f"no Landlock ({why or 'not enabled in this kernel'})"]
    parts.append("seccomp filter" if platform.machine() in ("x86_64", "AMD64") else
                 f"no seccomp filter ({platform.machine()}: the filter's table is x86_64's)")
    return ", ".join(parts)


def _c_extensions() -> str:
    """Whether the optional C cells and codec were built (pip skips them quietly without a C
    compiler, and lispvm then runs on their pure-Python twins, slower)."""
    import importlib.util

    from ..vm import codec, values

    found = [m for m in ("_speedups", "_ccodec") if importlib.util.find_spec(f"lispvm.vm.{m}") is not None]
    used = values.SPEEDUPS and codec._C is not None
    if used:
        return "built and used (lists and the codec in C)"
    if values.PURE and len(found) == 2:
        return "built, not used: LISPVM_PURE is set"
    return (f"{'only ' + ', '.join(found) if found else 'not'} built: lists and the codec run in pure Python, "
            "slower (install a C compiler and Python's headers, then install lispvm again)")


def doctor(out: TextIO) -> int:
    """Write the report to `out`; always 0 (CLI.md: doctor says, it does not fail)."""
    w = out.write
    w(f"Python      {platform.python_version()} ({sys.executable})\n")
    w(f"lispvm      {_version('lispvm') or 'not installed (running from a checkout)'}\n")
    for dist in ("numpy", "pyopencl", "pocl-binary-distribution", "intel-opencl-rt"):
        w(f"{dist:<27} {_version(dist) or 'not installed'}\n")
    w(f"C extensions   {_c_extensions()}\n")
    lines, failure = _probe()
    head = next((x for x in lines if "extra_runtimes" in x), {})
    extra = head.get("extra_runtimes") or []
    w(f"OpenCL ICD files   {head.get('vendors', device_select.system_vendors())}"
      + (f" and from pip: {', '.join(extra)}\n" if extra else " (no OpenCL runtime from pip)\n"))
    cl = next((x for x in lines if "pyopencl" in x), None)
    if cl is not None and cl["pyopencl"] is None:
        w(f"pyopencl cannot be loaded: {cl['why']}\n")
    devices = [x for x in lines if "device" in x]
    if devices:
        w("OpenCL devices, in the order gpu/ tries them (GPUs first):\n")
        for x in devices:
            state = "runs kernels" if x["ok"] else f"cannot run a kernel: {x['why']}"
            w(f"  {x['index']:<5} {x['platform']} / {x['device']} ({x['type']}, {x['version']}): {state}\n")
    elif cl is not None and cl["pyopencl"] is not None:
        w("OpenCL devices: none (no OpenCL platform is installed)\n")
    if failure:
        w(f"OpenCL probe: {failure}\n")
    for x in lines:
        if "wanted_fails" in x:
            w(f"LISPVM_OPENCL: {x['wanted_fails']}\n")
    chosen = next((x["chosen"] for x in lines if "chosen" in x), None)
    if chosen is not None:
        name = next((f"{x['platform']} / {x['device']}" for x in devices if x["index"] == chosen), chosen)
        w(f"gpu/ uses   {name}\n")
    else:
        w("gpu/ uses   nothing: no OpenCL device here builds and runs a kernel, so gpu/kernel and "
          "gpu/dispatch fail with no_device (gpu/array and the other array builtins still work)\n")
    w(f"device process confinement   {_confinement()}\n")
    w("Python interop   with `lispvm run --allow-python` (docs/python.md)\n")
    if chosen is None:
        w("\nTo get an OpenCL device:\n"
          "  - any CPU, from PyPI:  pip install 'lispvm[cpu-opencl]'  (Intel's CPU runtime for OpenCL, about "
          "270 MB to download and 830 MB installed, under Intel's licence; it runs on AMD CPUs too)\n"
          "  - Debian or Ubuntu:    apt install pocl-opencl-icd  (PoCL on the system's LLVM)\n"
          "  - a GPU: its vendor's OpenCL driver (NVIDIA's, AMD's ROCm, Intel's compute runtime)\n"
          "then run `lispvm doctor` again.\n")
    out.flush()
    return 0
