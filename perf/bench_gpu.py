"""bench_gpu: kernel dispatches through the device process against pyopencl used directly.

Workload: ../shared/bench/gpu_dispatch.lisp: M dispatches in a row of a kernel that adds 1.0 to
each float of an array, each dispatch's output feeding the next.
- small: `lispvm run gpu_dispatch.lbc 1000 1024` minus the same with M=1, so net of start-up,
  the device process's start and the kernel's build: 999 dispatches of 1024 floats, each a
  round trip to the device process. Target (issue 6): at most 2x direct pyopencl.
- large: `lispvm run gpu_dispatch.lbc 41 4194304` minus M=1: forty dispatches of 4M floats (16 MiB
  in and out each). Target (issue 6): within 1.2x of direct pyopencl.
- baseline, in the pyperf worker: the same kernel, context and queue made once beforehand, then
  per dispatch what a program does by hand: a buffer copied from the host array, the kernel, a
  copy back into a new host array, finish. Same device (LISPVM_OPENCL / PYOPENCL_CTX, else the
  first one pyopencl finds).

Values are seconds per dispatch. Without an OpenCL device it prints "not available".

Usage: python perf/bench_gpu.py [--fast] [-o result.json] [--m 1000] [--size 1024] [--big-m 41]
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from common import SHARED_BENCH, Ratio, Suite, lispvm_command, net_command, run_checked

KERNEL = "__kernel void inc(__global float* v) { int i = get_global_id(0); v[i] = v[i] + 1.0f; }"
BIG = 4 * 1024 * 1024


def _context() -> tuple:
    """A context and queue on the device lispvm's device process picks: its choice
    (scheduler/device_select.py, the pip-installed runtimes included), not pyopencl's first
    device, which on this project's machines is a PoCL that cannot build a kernel."""
    import tempfile

    from lispvm.scheduler import device_select

    # before pyopencl first lists platforms: the ICD loader reads its vendors once
    device_select.use_extra_runtimes(os.path.join(tempfile.gettempdir(), "lispvm-bench-gpu"))
    import pyopencl as cl

    ctx, _tried = device_select.choose(cl, os.environ.get("LISPVM_OPENCL"))
    return ctx, cl.CommandQueue(ctx)


def direct_dispatches(loops: int, m: int, size: int) -> float:
    """pyperf time function: `loops` x M dispatches made with pyopencl in this process."""
    import numpy as np
    import pyopencl as cl

    ctx, cq = _context()
    knl = cl.Kernel(cl.Program(ctx, KERNEL).build(), "inc")
    mf = cl.mem_flags
    a = np.zeros(size, dtype=np.float32)

    def once(a: np.ndarray) -> np.ndarray:
        buf = cl.Buffer(ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=a)
        knl(cq, (size,), None, buf)
        out = np.empty_like(a)
        cl.enqueue_copy(cq, out, buf)
        cq.finish()
        return out

    a = once(a)  # warm: the kernel's first launch and the allocator
    t0 = time.perf_counter()
    for _ in range(loops * m):
        a = once(a)
    dt = time.perf_counter() - t0
    if a[0] != 1 + loops * m:
        raise RuntimeError(f"direct pyopencl computed {a[0]}, expected {1 + loops * m}")
    return dt


def opencl_reason() -> str | None:
    """None when pyopencl finds a device, else why not (asked in a child process)."""
    code = "import pyopencl as cl; print(sum(len(p.get_devices()) for p in cl.get_platforms()))"
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return "pyopencl did not answer in 120 s"
    if r.returncode != 0 or r.stdout.strip() in ("", "0"):
        return "pyopencl finds no OpenCL device: " + (r.stderr.strip().splitlines() or ["no platform"])[-1]
    return None


def main() -> None:
    """Register the benchmarks, run them (pyperf), print the ratios."""
    suite = Suite("gpu", {"gpu": SHARED_BENCH / "gpu_dispatch.lisp"}, processes=6)
    suite.option("--m", type=int, default=1000, help="small dispatches (default 1000)")
    suite.option("--size", type=int, default=1024, help="floats per small dispatch (default 1024)")
    suite.option("--big-m", type=int, default=41, help="4M-float dispatches (default 41)")
    args = suite.parse()
    m, size, big_m = args.m, args.size, args.big_m
    cmd = [*lispvm_command(), "run", str(suite.lbc("gpu"))]
    ok = suite.available("opencl", opencl_reason, "gpu (no OpenCL device)") and suite.available(
        "gpu", lambda: suite.compiled("gpu")() or run_checked([*cmd, "3", "16"], "3.0"), "gpu lispvm")
    if ok:
        suite.time_func("gpu-small-direct", direct_dispatches, m - 1, size, inner_loops=m - 1)
        suite.time_func("gpu-small-lispvm", net_command, [*cmd, str(m), str(size)], [*cmd, "1", str(size)],
                        inner_loops=m - 1)
        suite.time_func("gpu-4M-direct", direct_dispatches, big_m - 1, BIG, inner_loops=big_m - 1)
        suite.time_func("gpu-4M-lispvm", net_command, [*cmd, str(big_m), str(BIG)], [*cmd, "1", str(BIG)],
                        inner_loops=big_m - 1)
    suite.report([
        Ratio(f"gpu {m} dispatches of {size} floats: lispvm / direct pyopencl (issue 6)", "gpu-small-lispvm",
              "gpu-small-direct", ("<=", 2), unit="dispatch"),
        Ratio("gpu dispatch of 4M floats: lispvm / direct pyopencl (issue 6)", "gpu-4M-lispvm", "gpu-4M-direct",
              ("<=", 1.2), unit="dispatch"),
    ])


if __name__ == "__main__":
    main()
