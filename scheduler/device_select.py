"""Which OpenCL device the device process uses: every platform the loader offers, plus the CPU
runtimes installed from PyPI, tried in turn until one builds and runs a kernel.

Owns: finding pip-installed OpenCL runtimes (Intel's CPU runtime of the `cpu-opencl` extra) and
making the ICD loader see them (a vendors directory that holds the system's ICD files and
theirs, named by OCL_ICD_VENDORS in this process's own environment), the order devices are
tried in, the probe (build and run a small kernel, check its result), and the report both the
device process and `lispvm doctor` give of what was tried.

Must never: import pyopencl at module level (the caller passes it in, after confinement in the
device process), or write outside the directory it is given.

Run as `python -m lispvm.scheduler.device_select CACHE_DIR`, it prints the probe of every
device as JSON lines (what `lispvm doctor` reads, in a child, so that a driver that crashes
takes down only the probe).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import site
import sys
import time
from typing import Any

__all__ = ["PROBE_SOURCE", "extra_icds", "system_vendors", "use_extra_runtimes", "candidates", "probe", "choose",
           "NoDevice", "INSTALL_HINT"]

# Our own kernel: every device must build it, run it and give back exactly this.
PROBE_SOURCE = "__kernel void lispvm_probe(__global float *a) { a[get_global_id(0)] += 1.0f; }"

# What to tell the user when no device runs a kernel (the gpu/ error and lispvm doctor).
INSTALL_HINT = ("`lispvm doctor` says what this machine has; `pip install 'lispvm[cpu-opencl]'` "
                "(Intel's CPU runtime) or `apt install pocl-opencl-icd` gives a CPU device")

# OpenCL runtimes from PyPI: (the ICD file name we give it, its library, relative to a prefix).
# Intel's wheels put their libraries in PREFIX/lib (with a RUNPATH of $ORIGIN, so nothing else
# is needed to load them) and an ICD file holding a conda placeholder path, which we do not use.
PIP_RUNTIMES = (("lispvm-intel-cpu.icd", os.path.join("lib", "libintelocl.so")),)


_PIP_ADDED = False  # use_extra_runtimes added Intel's CPU runtime that the system does not register


class NoDevice(Exception):
    """No device built and ran the probe kernel; the message lists what was tried."""


def _prefixes() -> list[str]:
    """Where pip may have put a runtime's data files: this environment, then the user's."""
    out = []
    for p in (sys.prefix, sys.exec_prefix, getattr(site, "USER_BASE", None) or ""):
        if p and p not in out:
            out.append(p)
    return out


def extra_icds() -> list[tuple[str, str]]:
    """The pip-installed OpenCL runtimes found: (ICD file name, absolute library path); none
    when LISPVM_PIP_OPENCL=0."""
    found: list[tuple[str, str]] = []
    if os.environ.get("LISPVM_PIP_OPENCL") == "0":
        return found
    for name, rel in PIP_RUNTIMES:
        for prefix in _prefixes():
            lib = os.path.join(prefix, rel)
            if os.path.exists(lib):
                found.append((name, os.path.realpath(lib)))
                break
    return found


def system_vendors() -> str:
    """The directory of the system's ICD files: OCL_ICD_VENDORS as the caller had it (a
    directory), else /etc/OpenCL/vendors."""
    v = os.environ.get("LISPVM_SYSTEM_ICD_VENDORS") or os.environ.get("OCL_ICD_VENDORS")
    return v if v and os.path.isdir(v) else "/etc/OpenCL/vendors"


def use_extra_runtimes(cache: str) -> list[str]:
    """Make the ICD loader of this process see the pip-installed runtimes beside the system's:
    a vendors directory below `cache` with a copy of each system ICD file and one file per
    runtime found, named by OCL_ICD_VENDORS. Call before pyopencl first lists platforms (the
    loader reads its vendors once). Returns the libraries added (none: nothing is changed)."""
    extras = extra_icds()
    if not extras:
        return []
    sysdir = system_vendors()
    files: dict[str, str] = {}
    try:
        for n in sorted(os.listdir(sysdir)):
            if n.endswith(".icd"):
                with open(os.path.join(sysdir, n), encoding="utf-8", errors="replace") as f:
                    files[n] = f.read()
    except OSError:
        pass  # no system ICD files: only ours
    global _PIP_ADDED
    # a system that registers Intel's runtime itself: its platform is the system's, not ours
    _PIP_ADDED = not any("intelocl" in text for text in files.values())
    for n, lib in extras:
        files[n] = lib + "\n"
    # Named by its contents, made whole under a temporary name and renamed: device processes of
    # other nodes share the cache and may do the same at the same moment.
    key = hashlib.blake2b(json.dumps(files, sort_keys=True).encode(), digest_size=8).hexdigest()
    target = os.path.join(cache, f"icd-{key}")
    if not os.path.isdir(target):
        tmp = f"{target}.{os.getpid()}.tmp"
        os.makedirs(tmp, exist_ok=True)
        for n, text in files.items():
            with open(os.path.join(tmp, n), "w", encoding="utf-8") as f:
                f.write(text)
        try:
            os.rename(tmp, target)
        except OSError:  # another process made it first
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    os.environ["LISPVM_SYSTEM_ICD_VENDORS"] = sysdir  # children (a restarted probe) find the system's again
    os.environ["OCL_ICD_VENDORS"] = target
    return [lib for _n, lib in extras]


def _bundled_icd(cl: Any) -> bool:
    """Whether pyopencl's wheel carries an ICD of its own (the PoCL of pocl-binary-distribution),
    which its loader always lists after the vendors directory's."""
    import glob

    return bool(glob.glob(os.path.join(os.path.dirname(cl.__file__), ".libs", "*.icd")))


def candidates(cl: Any) -> list[tuple[int, int, Any, Any]]:
    """Every (platform index, device index, platform, device) in the order they are tried: GPUs
    and accelerators first (a real GPU beats a CPU driver listed before it); then the system's
    platforms, in the loader's order; then the runtimes from pip (the user installed them for a
    CPU the others cannot serve); then the PoCL bundled with pyopencl's wheel, whose LLVM does not
    know CPUs newer than it. The loader lists a vendors directory in no fixed order, hence the
    ranks."""
    out = []
    try:
        platforms = cl.get_platforms()
    except cl.Error:  # the loader found no platform at all
        return []
    bundled = len(platforms) - 1 if _bundled_icd(cl) else -1
    pip_names = {"Intel(R) OpenCL"} if _PIP_ADDED else set()
    for pi, p in enumerate(platforms):
        try:
            devices = p.get_devices()
        except cl.Error:
            continue
        rank = 2 if pi == bundled else 1 if p.name.strip() in pip_names else 0
        for di, d in enumerate(devices):
            out.append((rank, pi, di, p, d))
    out.sort(key=lambda c: (not (c[4].type & (cl.device_type.GPU | cl.device_type.ACCELERATOR)), c[0], c[1], c[2]))
    return [c[1:] for c in out]


def probe(cl: Any, device: Any) -> tuple[Any, str | None]:
    """(a context on `device`, None) when it builds and runs the probe kernel correctly, else
    (None, why in one line)."""
    import warnings

    import numpy as np

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pyopencl's "non-empty compiler output"
            ctx = cl.Context([device])
            queue = cl.CommandQueue(ctx)
            prog = cl.Program(ctx, PROBE_SOURCE).build()
            a = np.arange(64, dtype=np.float32)
            buf = cl.Buffer(ctx, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR, hostbuf=a)
            prog.lispvm_probe(queue, (64,), None, buf)
            out = np.empty_like(a)
            cl.enqueue_copy(queue, out, buf)
            queue.finish()
    except Exception as e:  # a build log, a driver's refusal: the reason this device is skipped
        m = re.search(r"error: [^\n]*", str(e))  # a build log's first error says it best
        text = m.group(0) if m else str(e).split(" - ")[0].split("\n")[0]
        return None, " ".join(text.split())[:200] or type(e).__name__
    if not np.array_equal(out, a + 1):
        return None, "the probe kernel ran but gave a wrong result"
    return ctx, None


def kind(cl: Any, d: Any) -> str:
    """A device's type in one word (drivers set DEFAULT and other bits beside it)."""
    t = d.type
    return "GPU" if t & cl.device_type.GPU else "accelerator" if t & cl.device_type.ACCELERATOR else \
        "CPU" if t & cl.device_type.CPU else cl.device_type.to_string(t)


def describe(p: Any, d: Any) -> str:
    """A device as the reports name it: its platform and its name."""
    return f"{p.name.strip()} / {d.name.strip()}"


def choose(cl: Any, wanted: str | None = None) -> tuple[Any, list[tuple[str, str | None]]]:
    """The context gpu/ uses and the list of (device, why it was skipped or None) tried.

    `wanted` (LISPVM_OPENCL, the syntax of PYOPENCL_CTX) names the device; otherwise every
    device is tried in candidates' order and the first whose probe passes is used. Raises
    NoDevice when none does."""
    tried: list[tuple[str, str | None]] = []
    if wanted:
        os.environ["PYOPENCL_CTX"] = wanted
        try:
            ctx = cl.create_some_context(interactive=False)
        except Exception as e:
            raise NoDevice(f"LISPVM_OPENCL={wanted} names no device ({' '.join(str(e).split())}); "
                           + INSTALL_HINT) from None
        d = ctx.devices[0]
        ctx, why = probe(cl, d)
        tried.append((describe(d.platform, d), why))
        if ctx is None:
            raise NoDevice(f"the device LISPVM_OPENCL={wanted} names cannot run a kernel ({why}); " + INSTALL_HINT)
        return ctx, tried
    for _pi, _di, p, d in candidates(cl):
        ctx, why = probe(cl, d)
        tried.append((describe(p, d), why))
        if ctx is not None:
            return ctx, tried
    if not tried:
        raise NoDevice("no OpenCL platform is installed; " + INSTALL_HINT)
    said = "; ".join(f"{name}: {why}" for name, why in tried)
    raise NoDevice(f"no OpenCL device can run a kernel here (tried {said}); " + INSTALL_HINT)


def report(cache: str) -> None:
    """Print, as JSON lines, what `lispvm doctor` shows: the runtimes added, every device and its
    probe, and the one gpu/ would use."""
    added = use_extra_runtimes(cache)
    print(json.dumps({"extra_runtimes": added, "vendors": system_vendors()}), flush=True)
    try:
        import pyopencl as cl
    except Exception as e:
        print(json.dumps({"pyopencl": None, "why": f"{type(e).__name__}: {e}"}), flush=True)
        return
    print(json.dumps({"pyopencl": cl.VERSION_TEXT}), flush=True)
    chosen = None
    for pi, di, p, d in candidates(cl):
        t0 = time.perf_counter()
        ctx, why = probe(cl, d)
        if ctx is not None and chosen is None:
            chosen = f"{pi}:{di}"
        print(json.dumps({"platform": p.name.strip(), "version": " ".join(p.version.split()[:4]),
                          "device": d.name.strip(), "type": kind(cl, d), "index": f"{pi}:{di}", "ok": ctx is not None,
                          "why": why, "seconds": round(time.perf_counter() - t0, 3)}), flush=True)
    wanted = os.environ.get("LISPVM_OPENCL")
    if wanted:
        try:
            ctx, _tried = choose(cl, wanted)
            chosen = f"LISPVM_OPENCL={wanted}: {describe(ctx.devices[0].platform, ctx.devices[0])}"
        except NoDevice as e:
            chosen = None
            print(json.dumps({"wanted_fails": str(e)}), flush=True)
    print(json.dumps({"chosen": chosen}), flush=True)


if __name__ == "__main__":
    report(sys.argv[1])
