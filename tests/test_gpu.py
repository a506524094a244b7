"""GPU work in the device process (issue 6), on PoCL's CPU device when there is no GPU.

Tests that need any OpenCL device are marked `opencl` and skip when pyopencl finds none; tests
that need a real GPU are marked `gpu` and skip without one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from support import SHARED, lispvm, run
from support import opencl as opencl_status

DEVICES, _WHY = opencl_status()
opencl = pytest.mark.skipif(_WHY is not None, reason=_WHY or "")
needs_gpu = pytest.mark.skipif(_WHY is not None or "GPU" not in DEVICES,
                               reason=_WHY or "no GPU: only the PoCL CPU device")

SAXPY = '''(def saxpy (gpu/kernel
  "__kernel void saxpy(__global const float* x, __global float* y, float a) {
     int i = get_global_id(0); y[i] = a * x[i] + y[i]; }"
  "saxpy"))
'''


def test_arrays_need_no_device() -> None:
    src = """
    (def a (gpu/array (list 1 2.5 3)))
    (print (gpu/to-list a) (gpu/len a) (gpu/get a 1) a (gpu/to-list (gpu/zeros 2)))
    (print (try (gpu/get a 3) (catch e (nth e 1))) (try (gpu/array (list 1 "x")) (catch e (nth e 1))))
    (def me (self))
    (spawn (fn () (send me a)))
    (print (== (recv) a))
    """
    assert run(src) == ("(1.0 2.5 3.0) 3 2.5 #<f32[3]> (0.0 0.0)\nbadarg badarg\ntrue\n", "", 0)


@pytest.mark.opencl
@opencl
def test_reference_example() -> None:
    r = lispvm("run", str(SHARED / "examples" / "07_gpu.lisp"))
    assert (r.stdout, r.returncode) == ("(11.0 22.0 33.0)\n", 0), r.stderr


@pytest.mark.opencl
@opencl
@pytest.mark.parametrize("schedulers", [1, 2])
def test_saxpy_inputs_unchanged_and_concurrent_dispatches(schedulers: int) -> None:
    src = SAXPY + """
    (def x (gpu/array (list 1 2 3 4)))
    (def y (gpu/array (list 1 1 1 1)))
    (def out (gpu/dispatch saxpy 4 x y 2.0))
    (print (gpu/to-list (nth out 1)) (gpu/to-list y) (nth out 2))
    (def me (self))
    (def worker (k) (send me (list k (gpu/get (nth (gpu/dispatch saxpy 4 x y (+ k 0.0)) 1) 3))))
    (list/map (fn (k) (spawn worker k)) (list/range 30))
    (print (list/map (fn (k) (receive ((list j v) :when (== j k) v))) (list/range 5)))
    (def order (k acc) (if (== k 0) (reverse acc)
                           (order (- k 1) (cons (gpu/get (nth (gpu/dispatch saxpy 1 x y (+ k 0.0)) 1) 0) acc))))
    (print (order 4 nil))
    """
    out, err, status = run(src, schedulers=schedulers)
    assert status == 0, err
    assert out.splitlines() == ["(3.0 5.0 7.0 9.0) (1.0 1.0 1.0 1.0) 2.0", "(1.0 5.0 9.0 13.0 17.0)",
                                "(5.0 4.0 3.0 2.0)"]


@pytest.mark.opencl
@opencl
@pytest.mark.parametrize("schedulers", [1, 2])
def test_large_arrays_travel_in_shared_memory_and_inputs_stay(schedulers: int) -> None:
    """Arrays of SHM_MIN bytes and more go through reused memfd segments (and on a CPU device
    the kernel runs in place in the result's segment): results, unchanged inputs, a long chain
    of dispatches, messages and no fd left behind must all be as with small arrays."""
    from lispvm.scheduler.device import SHM_MIN

    n = SHM_MIN // 4 + 3
    src = SAXPY + f"""
    (def inc (gpu/kernel "__kernel void inc(__global float* v) {{ int i = get_global_id(0); v[i] += 1.0f; }}" "inc"))
    (def n {n})
    (def x (gpu/array (list/range n)))
    (def y (gpu/zeros n))
    (def out (gpu/dispatch saxpy n x y 2.0))
    (def r (nth out 1))
    (print (gpu/get r 0) (gpu/get r (- n 1)) (gpu/get y (- n 1)) (gpu/get x (- n 1)) (gpu/get (head out) 5))
    (def again (nth (gpu/dispatch saxpy n x r 1.0) 1))
    (print (gpu/get again (- n 1)) (gpu/get r (- n 1)))
    (def go (i a) (if (== i 0) a (go (- i 1) (head (gpu/dispatch inc n a)))))
    (def z (go 40 y))
    (print (gpu/get z 0) (gpu/get z (- n 1)) (gpu/get y 0))
    (def me (self))
    (def echo (spawn (fn () (receive ((list from v) (send from (list 'back v)))))))
    (send echo (list me z))
    (receive ((list 'back w) (print (== w z) (gpu/len w))))
    """
    import gc

    last = float(n - 1)
    fds = []
    for _ in range(2):  # the second run must not hold more memfds than the first: segments are reused
        out, err, status = run(src, schedulers=schedulers)
        assert status == 0, err
        assert out.splitlines() == [f"0.0 {2 * last} 0.0 {last} 5.0", f"{3 * last} {2 * last}", "40.0 40.0 0.0",
                                    f"true {n}"]
        gc.collect()
        fds.append(len(os.listdir("/proc/self/fd")))
    assert fds[1] <= fds[0], fds


@pytest.mark.opencl
@opencl
def test_build_errors_and_wrong_arguments() -> None:
    src = SAXPY + """
    (def x (gpu/array (list 1 2)))
    (def e1 (try (gpu/kernel "__kernel void k( { }" "k") (catch e e)))
    (print (nth e1 1) (> (length (str/split (nth e1 2) "expected")) 1))  ; the build log is in the message
    (print (try (gpu/kernel "__kernel void k(__global float* a) { }" "nope") (catch e (nth e 2))))
    (print (try (gpu/dispatch saxpy 2 x x) (catch e (nth e 2))))
    (print (try (gpu/dispatch saxpy 2 x 1.0 2.0) (catch e (nth e 2))))
    (print (try (gpu/dispatch saxpy 4 x x 1.0) (catch e (nth e 1))))
    (print (try (gpu/dispatch 'saxpy 2 x x 1.0) (catch e (nth e 1))))
    (print (try (gpu/kernel "__kernel void k(__global int* a) { }" "k") (catch e (nth e 1))))
    """
    out, err, status = run(src)
    assert status == 0, err
    assert out.splitlines() == [
        "badarg true",
        "gpu/kernel: the source defines no kernel named nope",
        "gpu/dispatch: kernel saxpy takes 3 arguments, got 2",
        "gpu/dispatch: argument 1 of kernel saxpy is float*: expected an f32 array, got float 1.0",
        "badarg", "badarg", "badarg"]


@pytest.mark.opencl
@opencl
def test_device_crash_gives_device_down_then_restarts(tmp_path: os.PathLike) -> None:
    src = """
    (def inc (gpu/kernel "__kernel void inc(__global float* v) { int i = get_global_id(0); v[i] += 1.0f; }" "inc"))
    (def slow (gpu/kernel "__kernel void slow(__global float* v, int n) { int i = get_global_id(0); float s = v[i];
                           for (int j = 0; j < n; j++) { s = s * 0.999999f + 1.0f; } v[i] = s; }" "slow"))
    (print (gpu/to-list (head (gpu/dispatch inc 2 (gpu/zeros 2)))))
    (print (try (gpu/dispatch slow 64 (gpu/zeros 64) 2000000000) (catch e (nth e 1))))
    (print (gpu/to-list (head (gpu/dispatch inc 2 (gpu/zeros 2)))))
    """
    prog = os.path.join(tmp_path, "crash.lisp")
    with open(prog, "w") as f:
        f.write(src)
    exe = os.path.join(os.path.dirname(sys.executable), "lispvm")
    p = subprocess.Popen([exe, "run", "--schedulers", "1", prog], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    assert p.stdout.readline() == "(1.0 1.0)\n"
    time.sleep(0.5)  # the slow dispatch is running
    pids = subprocess.run(["pgrep", "-f", "device_main"], capture_output=True, text=True).stdout.split()
    assert pids, "no device process found"
    for pid in pids:
        os.kill(int(pid), signal.SIGKILL)
    out, err = p.communicate(timeout=120)
    assert (out, p.returncode) == ("device_down\n(1.0 1.0)\n", 0), err
    time.sleep(0.5)
    assert not subprocess.run(["pgrep", "-f", "device_main"], capture_output=True, text=True).stdout.strip()


@pytest.mark.opencl
@opencl
def test_no_device_process_or_directory_left(tmp_path: os.PathLike) -> None:
    before = set(os.listdir("/tmp"))
    r = lispvm("run", str(SHARED / "examples" / "07_gpu.lisp"))
    assert r.returncode == 0
    time.sleep(0.3)
    assert not subprocess.run(["pgrep", "-f", "device_main"], capture_output=True, text=True).stdout.strip()
    assert not [d for d in set(os.listdir("/tmp")) - before if d.startswith("lispvm")]
    if os.path.isdir("/dev/shm"):
        assert not [f for f in os.listdir("/dev/shm") if "lispvm" in f]


def test_programs_without_gpu_never_load_numpy_or_pyopencl(tmp_path: os.PathLike) -> None:
    prog = os.path.join(tmp_path, "p.lisp")
    with open(prog, "w") as f:
        f.write("(print (+ 1 2))")
    code = ("import sys, io; from lispvm.scheduler.cli import main; rc = main(['run', '--schedulers', '1', "
            f"{prog!r}]); print(sorted(m for m in ('numpy', 'pyopencl', 'multiprocessing', 'structlog') "
            "if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.splitlines() == ["3", "[]"], r.stderr


@pytest.mark.gpu
@needs_gpu
def test_on_a_real_gpu() -> None:
    src = SAXPY + """
    (def n 1000000)
    (def x (gpu/array (list/range n)))
    (def y (gpu/zeros n))
    (print (gpu/get (nth (gpu/dispatch saxpy n x y 3.0) 1) 999999))
    """
    assert run(src) == ("2999997.0\n", "", 0)


@pytest.mark.opencl
@opencl
def test_gpu_events_in_the_trace_and_on_the_device_row(tmp_path: os.PathLike) -> None:
    import json

    prog = os.path.join(tmp_path, "t.lisp")
    with open(prog, "w") as f:
        f.write(SAXPY + "(def out (gpu/dispatch saxpy 4 (gpu/array (list 1 2 3 4)) (gpu/zeros 4) 2.0))\n"
                        "(print (gpu/to-list (nth out 1)))")
    trace = os.path.join(tmp_path, "t.jsonl")
    r = lispvm("run", "--trace", trace, prog)
    assert (r.stdout, r.returncode) == ("(2.0 4.0 6.0 8.0)\n", 0), r.stderr
    with open(trace) as f:
        events = [json.loads(line) for line in f]
    kinds = [e["event"] for e in events if e["event"].startswith("gpu_")]
    assert kinds == ["gpu_build", "gpu_built", "gpu_dispatch_start", "gpu_transfer", "gpu_dispatch_end"], kinds
    transfer = next(e for e in events if e["event"] == "gpu_transfer")
    assert (transfer["kernel"], transfer["inline_bytes"], transfer["shared_bytes"]) == ("saxpy", 32, 0)
    chrome = os.path.join(tmp_path, "t.json")
    r = lispvm("trace", trace, "--chrome", chrome)
    assert r.returncode == 0, r.stderr
    with open(chrome) as f:
        data = json.load(f)
    rows = data["traceEvents"] if isinstance(data, dict) else data
    assert any(e.get("name") == "process_name" and e.get("args", {}).get("name") == "device" for e in rows)
    assert sum(1 for e in rows if e.get("cat") == "gpu") == 5


@pytest.mark.opencl
@opencl
def test_large_inline_frames_both_ways_do_not_deadlock() -> None:
    """Arrays just under SHM_MIN travel inline; three of them make a request and an answer
    larger than a socket's buffer. Four processes dispatching at once once blocked the client
    sending while the device was blocked answering."""
    from lispvm.scheduler.device import SHM_MIN

    n = SHM_MIN // 4 - 536
    src = f"""
    (def k3 (gpu/kernel "__kernel void k3(__global float* a, __global float* b, __global float* c) {{
                           int i = get_global_id(0); a[i] += 1.0f; b[i] += 2.0f; c[i] += 3.0f; }}" "k3"))
    (def a (gpu/zeros {n}))
    (def me (self))
    (def loop (i acc) (if (== i 0) acc (loop (- i 1) (gpu/get (nth (gpu/dispatch k3 {n} a a a) 2) 7))))
    (def w (k) (send me (list k (loop 15 0))))
    (list/map (fn (k) (spawn w k)) (list/range 4))
    (print (list/map (fn (k) (receive ((list j v) :when (== j k) v))) (list/range 4)))
    """
    assert run(src) == ("(3.0 3.0 3.0 3.0)\n", "", 0)


def test_free_segments_are_bounded_in_all_and_forgotten_by_the_device() -> None:
    """Freed segments are kept up to a total count and size, not per size: arrays of 120
    different large sizes, each dropped after use, must not leave 120 mappings (each holding
    fds) behind, and the device is told to forget those it had."""
    import gc

    from lispvm.scheduler.device import SHM_MIN, Segments

    segs = Segments()
    for k in range(120):
        view = segs.alloc(SHM_MIN + 4 * k)
        segs.sent.add(max(segs.maps))  # as if its fd had gone to the device
        del view
        gc.collect()
    assert len(segs.maps) <= Segments.KEEP_FREE and len(segs.free) <= Segments.KEEP_FREE
    assert segs.free_bytes <= Segments.KEEP_FREE_BYTES
    assert len(segs.forget) == 120 - len(segs.maps) and not set(segs.forget) & set(segs.maps)
    again = segs.alloc(SHM_MIN + 4 * 119)  # the most recently freed size is reused, not remade
    assert segs.next_id == 120 and again.nbytes == SHM_MIN + 4 * 119


def test_frame_reader_spins_until_a_whole_frame_or_its_time_is_up() -> None:
    """The device process reads without sleeping for a while after each answer: a whole frame
    ends the spin at once, half a frame or none does not, and the spin stops after its time."""
    import socket

    from lispvm.scheduler.device import FrameReader, send_frame

    a, b = socket.socketpair()
    with a, b:
        reader = FrameReader(b)
        t0 = time.perf_counter()
        assert not reader.spin(0.002)  # nothing sent: gives up after its time, not before
        assert 0.002 <= time.perf_counter() - t0 < 1.0
        send_frame(a, (7, ("forget", [1, 2])))
        raw = reader.sock.recv(65536)
        a.sendall(raw[:5])  # half a frame is not a frame
        assert not reader.spin(0.001)
        a.sendall(raw[5:])
        assert reader.spin(1.0) and reader.read() == (7, ("forget", [1, 2]))
        a.close()
        with pytest.raises(EOFError):  # a closed peer ends the spin with EOFError, as read does
            reader.spin(1.0)


def test_an_idle_scheduler_spins_only_while_a_service_request_is_outstanding() -> None:
    """spin_for_services polls without sleeping while a request is out (a GPU dispatch), returns
    as soon as input is handled, and gives up after SERVICE_SPIN; with nothing outstanding it
    returns at once without polling."""
    from lispvm.scheduler.node import SERVICE_SPIN, spin_for_services

    class Service:
        def __init__(self, n: int) -> None:
            self.n = n

        def outstanding(self) -> int:
            return self.n

    polls: list[float] = []

    def never(timeout: float) -> bool:
        polls.append(timeout)
        return False

    assert not spin_for_services([Service(0)], never) and polls == []
    t0 = time.perf_counter()
    assert not spin_for_services([Service(0), Service(1)], never)
    assert time.perf_counter() - t0 >= SERVICE_SPIN and polls and set(polls) == {0}
    answers = iter([False, False, True])
    assert spin_for_services([Service(1)], lambda timeout: next(answers))
    assert next(answers, "used up") == "used up"
