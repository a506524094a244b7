"""`lispvm doctor` (CLI.md): what this machine offers lispvm, always exit 0. The case with no
working device (and the advice) is in test_gpu.py beside the gpu/ error it explains."""

from __future__ import annotations

import pytest

from support import lispvm
from support import opencl as opencl_status

DEVICES, _WHY = opencl_status()


@pytest.mark.opencl
@pytest.mark.skipif(_WHY is not None, reason=_WHY or "")
def test_doctor_names_the_device_gpu_uses_and_it_is_the_first_that_runs_a_kernel() -> None:
    d = lispvm("doctor")
    assert d.returncode == 0 and d.stderr == "", d.stderr
    out = d.stdout.splitlines()
    assert out[0].startswith("Python      3.") and any(ln.startswith("pyopencl ") for ln in out), d.stdout
    runs = [ln for ln in out if ln.endswith(": runs kernels")]
    assert runs, d.stdout
    used = next(ln for ln in out if ln.startswith("gpu/ uses"))
    assert used.split(None, 2)[2] in runs[0], d.stdout
    assert "To get an OpenCL device" not in d.stdout
    assert any(ln.startswith("device process confinement") for ln in out)


def test_doctor_with_a_device_choice_that_names_nothing_says_so_and_exits_0() -> None:
    """LISPVM_OPENCL naming no device: gpu/ would fail, so doctor says why and what to install."""
    d = lispvm("doctor", env={"LISPVM_OPENCL": "no such device anywhere"})
    assert d.returncode == 0 and "Traceback" not in d.stderr, d.stderr
    assert "LISPVM_OPENCL: LISPVM_OPENCL=no such device anywhere names no device" in d.stdout, d.stdout
    assert "gpu/ uses   nothing" in d.stdout and "pip install 'lispvm[cpu-opencl]'" in d.stdout


def test_doctor_takes_no_arguments() -> None:
    r = lispvm("doctor", "extra")
    assert r.returncode == 2 and "unrecognized arguments" in r.stderr and r.stdout == ""


def test_doctor_says_whether_the_c_extensions_run() -> None:
    """pip skips the optional C cells and codec quietly without a compiler: doctor tells."""
    from lispvm.vm import codec, values

    d = lispvm("doctor")
    line = next(ln for ln in d.stdout.splitlines() if ln.startswith("C extensions"))
    if values.SPEEDUPS and codec._C is not None:
        assert "built and used" in line, line
    else:
        assert "pure Python" in line or "LISPVM_PURE" in line, line


@pytest.mark.parametrize("value", ["1", "yes", "0", ""])
def test_one_reading_of_lispvm_pure_for_cells_codec_and_doctor(value: str) -> None:
    """LISPVM_PURE=yes once turned the cells pure while the codec stayed in C, and doctor said
    nothing C was used: the cells, the codec and doctor now read the switch the same way."""
    import os
    import subprocess
    import sys

    pytest.importorskip("lispvm.vm._speedups")
    pytest.importorskip("lispvm.vm._ccodec")
    probe = ("import lispvm.vm.codec as c, lispvm.vm.values as v; "
             "print(v.SPEEDUPS, c._C is not None)")
    env = {**os.environ, "LISPVM_PURE": value}
    got = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True).stdout
    pure = value not in ("", "0")
    assert got.split() == (["False", "False"] if pure else ["True", "True"]), got
