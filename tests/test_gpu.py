"""GPU work in the device process (issue 6), on PoCL's CPU device when there is no GPU.

Tests that need any OpenCL device are marked `opencl` and skip when pyopencl finds none; tests
that need a real GPU are marked `gpu` and skip without one."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

from support import SHARED, FakeTime, lispvm, run
from support import opencl as opencl_status

DEVICES, _WHY = opencl_status()
opencl = pytest.mark.skipif(_WHY is not None, reason=_WHY or "")
needs_gpu = pytest.mark.skipif(_WHY is not None or "GPU" not in DEVICES,
                               reason=_WHY or "no GPU: only the PoCL CPU device")

@pytest.fixture
def private_tmp() -> Iterator[str]:
    """A short private TMPDIR for the node (its sockets' paths must stay under 108 bytes): what
    a test looks for in it, and the device processes whose arguments name it, are its own."""
    d = tempfile.mkdtemp(prefix="lvg")
    yield d
    for pid in our_devices(d):
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(d, ignore_errors=True)


def our_devices(tmp: str) -> list[int]:
    """The live device processes of nodes whose TMPDIR is `tmp` (their socket path names it)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(b"device_main" in a for a in args) and any(a.startswith(tmp.encode()) for a in args):
            found.append(int(entry))
    return found


def start_lispvm(prog: str, tmp: str, *args: str) -> subprocess.Popen:
    """`lispvm run ARGS PROG` with TMPDIR=tmp, its output read as it comes."""
    exe = os.path.join(os.path.dirname(sys.executable), "lispvm")
    return subprocess.Popen([exe, "run", *args, prog], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": tmp}, start_new_session=True)


# A kernel that kills the device process as a buggy one would: a store to address 0 (SIGSEGV).
CRASH_SRC = '''(def crash-src "__kernel void crash(__global float* v) { *((volatile __global int*)0) = 1; }")
(def inc-src "__kernel void inc(__global float* v) { int i = get_global_id(0); v[i] += 1.0f; }")
'''

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
    from lispvm.scheduler.device_wire import SHM_MIN

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
def test_device_crash_gives_device_down_then_restarts(private_tmp: str) -> None:
    src = """
    (def inc (gpu/kernel "__kernel void inc(__global float* v) { int i = get_global_id(0); v[i] += 1.0f; }" "inc"))
    (def slow (gpu/kernel "__kernel void slow(__global float* v, int n) { int i = get_global_id(0); float s = v[i];
                           for (int j = 0; j < n; j++) { s = s * 0.999999f + 1.0f; } v[i] = s; }" "slow"))
    (print (gpu/to-list (head (gpu/dispatch inc 2 (gpu/zeros 2)))))
    (print (try (gpu/dispatch slow 64 (gpu/zeros 64) 2000000000) (catch e (nth e 1))))
    (print (gpu/to-list (head (gpu/dispatch inc 2 (gpu/zeros 2)))))
    """
    prog = os.path.join(private_tmp, "crash.lisp")
    with open(prog, "w") as f:
        f.write(src)
    p = start_lispvm(prog, private_tmp, "--schedulers", "1")
    assert p.stdout.readline() == "(1.0 1.0)\n"
    time.sleep(0.5)  # the slow dispatch is running
    pids = our_devices(private_tmp)
    assert pids, "no device process found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    out, err = p.communicate(timeout=120)
    assert (out, p.returncode) == ("device_down\n(1.0 1.0)\n", 0), err
    time.sleep(0.5)
    assert not our_devices(private_tmp)


@pytest.mark.opencl
@opencl
def test_no_device_process_or_directory_left(private_tmp: str) -> None:
    r = lispvm("run", str(SHARED / "examples" / "07_gpu.lisp"), env={"TMPDIR": private_tmp})
    assert r.returncode == 0
    time.sleep(0.3)
    assert not our_devices(private_tmp)
    assert os.listdir(private_tmp) == []
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
    from lispvm.scheduler.device_wire import SHM_MIN

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

    from lispvm.scheduler.device_shm import Segments
    from lispvm.scheduler.device_wire import SHM_MIN

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


def test_frame_reader_says_when_a_whole_frame_has_arrived() -> None:
    """The device process busy-waits on `arrived` after each answer: half a frame is not a
    frame, a whole one is, a closed peer raises EOFError as read does."""
    import socket

    from lispvm.scheduler.device_wire import FrameReader, send_frame

    a, b = socket.socketpair()
    with a, b:
        reader = FrameReader(b)
        assert not reader.arrived()  # nothing sent: does not block
        send_frame(a, (7, "forget", [1, 2]))
        raw = reader.sock.recv(65536)
        a.sendall(raw[:5])
        assert not reader.arrived()
        a.sendall(raw[5:])
        assert reader.arrived() and reader.read() == (7, "forget", [1, 2])
        a.close()
        with pytest.raises(EOFError):
            reader.arrived()


def test_busy_wait_polls_for_its_limit_and_backs_off_when_the_core_is_wanted(monkeypatch: pytest.MonkeyPatch) -> None:
    """BusyWait returns as soon as poll says so, gives up after its limit or a shorter one (the
    next timer), and after a slow sched_yield (another task wanted the core: each spin would
    cost a time slice) stops spinning for a while, twice as long each time in a row. Time is a
    fake clock that only yields move (support.FakeTime): whatever the machine's load, the same
    polls happen."""
    from lispvm.scheduler.clock import BusyWait

    clock = FakeTime(step=BusyWait.SLOW_YIELD / 5).install(monkeypatch)  # quick yields
    answers = iter([False, False, True])
    busy = BusyWait(1.0)
    assert busy.spin(lambda: next(answers)) and next(answers, "used up") == "used up"
    t0 = clock.now
    assert not busy.spin(lambda: False, 0.002)
    assert t0 + 0.002 <= clock.now < t0 + 0.002 + 2 * clock.step  # it spun for its limit, no longer
    assert not busy.spin(lambda: True, 0.0)  # a timer due now: no spin, not even one poll

    clock.step = 4 * BusyWait.SLOW_YIELD  # as on a loaded machine: each yield gives the core away
    polls: list[int] = []

    def poll() -> bool:
        polls.append(1)
        return False

    assert not busy.spin(poll) and len(polls) == 1  # the first slow yield ends it
    assert busy.backoff == 2 * BusyWait.FIRST_BACKOFF and busy.off_until == clock.now + BusyWait.FIRST_BACKOFF
    assert not busy.spin(poll) and len(polls) == 1  # backing off: no poll at all
    clock.now = busy.off_until
    assert not busy.spin(poll) and busy.backoff == 4 * BusyWait.FIRST_BACKOFF
    clock.step = BusyWait.SLOW_YIELD / 5
    clock.now = busy.off_until
    assert busy.spin(lambda: True) and busy.backoff == BusyWait.FIRST_BACKOFF  # a quiet spin resets it


def test_an_idle_scheduler_spins_once_per_service_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """spin_for_services busy-waits only when a request was sent since it last looked (not at
    every idle while one is outstanding), and never past the next timer (on a fake clock)."""
    from lispvm.scheduler.clock import BusyWait
    from lispvm.scheduler.node import SERVICE_SPIN, spin_for_services

    class Service:
        def __init__(self) -> None:
            self.fresh = False

        def new_request(self) -> bool:
            fresh, self.fresh = self.fresh, False
            return fresh

    polls: list[float] = []

    def never(timeout: float) -> bool:
        polls.append(timeout)
        return False

    svc, busy = Service(), BusyWait(SERVICE_SPIN)
    assert not spin_for_services([svc], never, busy, None) and polls == []
    svc.fresh = True
    clock = FakeTime().install(monkeypatch)
    t0 = clock.now
    assert not spin_for_services([Service(), svc], never, busy, None)
    assert clock.now >= t0 + SERVICE_SPIN and polls and set(polls) == {0}
    n = len(polls)
    assert not spin_for_services([svc], never, busy, None) and len(polls) == n  # once per request
    svc.fresh = True
    assert not spin_for_services([svc], never, busy, -0.001) and len(polls) == n  # a timer is due


SLOW_KERNEL = '''(def slow (gpu/kernel "__kernel void slow(__global float* v, int m) {
  float a = v[0]; for (int j = 0; j < m; j++) { a = a * 1.0000001f + 0.5f; } v[0] = a; }" "slow"))
'''


@pytest.mark.opencl
@opencl
def test_a_virtual_clock_run_does_not_depend_on_how_fast_the_device_answers() -> None:
    """Under a VirtualClock an idle scheduler with a timer jumps to it without looking at its
    input (so a run gives the same result every time): the busy-wait for a device answer must
    not look either. A fast dispatch against a 1000 ms receive timeout: always the timeout."""
    from lispvm.scheduler.clock import VirtualClock

    src = SLOW_KERNEL + """
    (gpu/dispatch slow 1 (gpu/zeros 1) 10)
    (def me (self))
    (spawn (fn () (gpu/dispatch slow 1 (gpu/zeros 1) 10) (send me 'gpu)))
    (print (receive ('gpu 'answer) (after 1000 'timeout)))
    """
    assert {run(src, clock=VirtualClock()) for _ in range(10)} == {("timeout\n", "", 0)}


@pytest.mark.opencl
@opencl
def test_no_false_deadlock_while_a_worker_waits_on_a_long_dispatch() -> None:
    """The hub took the node for deadlocked when a worker's last idle report said "nothing
    pending" and the messages since had cancelled out in the counts (main sends 'go, the
    server on the worker answers 'ack and then waits on a dispatch of a few ms). A worker's
    busy now voids its report."""
    src = SLOW_KERNEL + """
    (def burn (k) (if (== k 0) 'ok (burn (- k 1))))
    (def serve (main)
      (receive ('go (send main 'ack) (gpu/dispatch slow 1 (gpu/zeros 1) 3000000) (send main 'done) (serve main))
               ('stop 'ok)))
    (def srv (main) (burn 3000000) (send main (list 'ready (self) (sys/scheduler-id))) (serve main))
    (def me (self))
    (spawn srv me)
    (spawn srv me)
    (def a (receive ((list 'ready p s) (list p s))))
    (def b (receive ((list 'ready p s) (list p s))))
    (def w (if (== (nth a 1) 0) (head b) (head a)))
    (def rounds (k) (if (== k 0) 'fin
      (do (timer/sleep 10) (send w 'go) (receive ('ack 'ok)) (receive ('done 'ok)) (rounds (- k 1)))))
    (print (rounds 15))
    (send (head a) 'stop)
    (send (head b) 'stop)
    """
    assert run(src, schedulers=2) == ("fin\n", "", 0)


@pytest.mark.opencl
@opencl
def test_device_restarts_after_its_starter_scheduler_and_then_the_device_died(private_tmp: str) -> None:
    """Scheduler 1 starts the device process and is killed; then the device dies. Only the
    starter could remove the start lock, so every later gpu/ call of scheduler 0 failed with
    "did not start"; now the next call starts a new device whoever started the old one."""
    prog = os.path.join(private_tmp, "restart.lisp")
    with open(prog, "w") as f:
        f.write(CRASH_SRC + """
    (def me (self))
    (def starter (spawn-on 1 (fn () (gpu/kernel inc-src "inc")
                                    (send me (list 'started (sys/os-pid) (sys/scheduler-id))) (receive (x x)))))
    (def ref (monitor starter))
    (receive ((list 'started ospid sid) (print "started" ospid sid)))
    (print (gpu/to-list (head (gpu/dispatch (gpu/kernel inc-src "inc") 2 (gpu/zeros 2)))))
    (receive ((list 'DOWN r p why) (print "down" why)))
    (print (try (gpu/dispatch (gpu/kernel crash-src "crash") 1 (gpu/zeros 1)) (catch e (nth e 1))))
    (print (try (gpu/to-list (head (gpu/dispatch (gpu/kernel inc-src "inc") 2 (gpu/zeros 2)))) (catch e e)))
    """)
    p = start_lispvm(prog, private_tmp, "--schedulers", "2")
    try:
        first = p.stdout.readline().split()
        assert first[0] == "started" and first[2] == "1", (first, p.stderr.read() if not first else "")
        os.kill(int(first[1]), signal.SIGKILL)  # scheduler 1, which started the device process
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert out.splitlines() == ["(1.0 1.0)", "down noconnection", "device_down", "(1.0 1.0)"], err
    assert p.returncode == 0, err
    deadline = time.monotonic() + 30
    while our_devices(private_tmp) and time.monotonic() < deadline:  # told to stop at the node's end
        time.sleep(0.1)
    assert not our_devices(private_tmp)


@pytest.mark.opencl
@opencl
def test_a_device_crash_fails_only_the_requests_in_flight_on_another_scheduler(private_tmp: str) -> None:
    """Scheduler 0 starts the device; a process on scheduler 1 makes it crash and then
    dispatches 40 times at once. Only the crashing request gets device_down: scheduler 1's
    next requests restart the device (before, 8-49 of them failed while scheduler 0, the
    starter, had not yet noticed the crash and removed its lock)."""
    prog = os.path.join(private_tmp, "inflight.lisp")
    with open(prog, "w") as f:
        f.write(CRASH_SRC + """
    (def inc (gpu/kernel inc-src "inc"))
    (def crash (gpu/kernel crash-src "crash"))
    (def me (self))
    (def count-errors (k errs) (if (== k 0) errs
      (count-errors (- k 1) (+ errs (try (do (gpu/dispatch inc 2 (gpu/zeros 2)) 0) (catch e 1))))))
    (def w () (let ((where (sys/scheduler-id))
                    (crashed (try (gpu/dispatch crash 1 (gpu/zeros 1)) (catch e (nth e 1)))))
                (send me (list where crashed (count-errors 40 0) (sys/scheduler-id)))))
    (spawn-on 1 w)
    (print (receive (x x)))
    (print (gpu/to-list (head (gpu/dispatch inc 2 (gpu/zeros 2)))))
    """)
    p = start_lispvm(prog, private_tmp, "--schedulers", "2")
    try:
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert (out, p.returncode) == ("(1 device_down 0 1)\n(1.0 1.0)\n", 0), err


def lisp_string(text: str) -> str:
    """`text` as a Lisp string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.mark.opencl
@opencl
def test_a_kernel_cannot_include_files_outside_the_system(private_tmp: str) -> None:
    """The OpenCL compiler runs in the device process, which may read only what builds need:
    `#include "/etc/passwd"` and a file of the user's fail to build, with a clear error and
    nothing of their content (before, the passwd lines were quoted in the build log and a
    user's file was compiled in)."""
    secret = os.path.join(private_tmp, "secret.h")
    with open(secret, "w") as f:
        f.write("#define SECRET 4242.0f\n")
    passwd = lisp_string('#include "/etc/passwd"\n__kernel void k(__global float* a) { a[0] = 1.0f; }')
    mine = lisp_string(f'#include "{secret}"\n__kernel void k(__global float* a) {{ a[0] = SECRET; }}')
    prog = os.path.join(private_tmp, "include.lisp")
    with open(prog, "w") as f:
        f.write(f"""
    (def try-kernel (src) (try (gpu/get (head (gpu/dispatch (gpu/kernel src "k") 1 (gpu/zeros 1))) 0) (catch e e)))
    (def e1 (try-kernel {passwd}))
    (print (nth e1 1))
    (print (nth e1 2))
    (print (try-kernel {mine}))
    """)
    r = lispvm("run", prog, env={"TMPDIR": private_tmp})
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and lines[0] == "badarg", (r.stdout, r.stderr)
    assert lines[1].startswith("gpu/kernel: the kernel does not compile: it includes a file the device process "
                               "may not read"), lines[1]
    assert "root:" not in r.stdout and "4242" not in r.stdout
    assert "cannot open file '/etc/passwd'" in r.stdout and f"cannot open file '{secret}'" in r.stdout


# Raw system calls from a kernel (x86_64 inline asm): open(O_CREAT), socket(AF_INET), kill(parent,
# 0), execve(/bin/sh -c ...). Each result (a negative errno when refused) goes into the output.
EVIL = r'''
static long sys3(long n, long a, long b, long c) {
  long ret;
  __asm__ volatile ("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
  return ret;
}
__kernel void evil(__global float* out) {
  out[0] = (float) sys3(2, (long)"OPENED", 0101, 0644);
  out[1] = (float) sys3(41, 2, 1, 0);
  out[2] = (float) sys3(62, sys3(110, 0, 0, 0), 0, 0);
  ulong argv[4] = {(ulong)"/bin/sh", (ulong)"-c", (ulong)"echo pwned > EXECUTED", 0};
  out[3] = (float) sys3(59, (long)"/bin/sh", (long)argv, 0);
}
'''


@pytest.mark.opencl
@opencl
@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the kernel's inline asm is x86_64's")
def test_a_kernel_making_raw_system_calls_cannot_open_files_run_programs_or_make_sockets(private_tmp: str) -> None:
    """Before confinement the kernel created OPENED, and execve replaced the device process
    with a shell that wrote EXECUTED. Now open and execve fail with EACCES (Landlock), socket
    and a signal to the parent scheduler with EPERM (seccomp), and the device keeps working."""
    opened, executed = os.path.join(private_tmp, "opened"), os.path.join(private_tmp, "executed")
    src = EVIL.replace("OPENED", opened).replace("EXECUTED", executed)
    prog = os.path.join(private_tmp, "evil.lisp")
    with open(prog, "w") as f:
        f.write(f"""
    (def evil (gpu/kernel {lisp_string(src)} "evil"))
    (print (try (gpu/to-list (head (gpu/dispatch evil 1 (gpu/zeros 4)))) (catch e e)))
    (def inc (gpu/kernel "__kernel void inc(__global float* v) {{ v[get_global_id(0)] += 1.0f; }}" "inc"))
    (print (gpu/to-list (head (gpu/dispatch inc 2 (gpu/zeros 2)))))
    """)
    r = lispvm("run", prog, env={"TMPDIR": private_tmp})
    time.sleep(0.3)  # a shell started by the kernel would have written by now
    assert not os.path.exists(opened) and not os.path.exists(executed)
    if r.returncode == 1 and "in asm" in r.stderr:
        # Intel's CPU runtime compiles through SPIR: x86 inline assembly does not build at all
        assert "badarg: gpu/kernel: the kernel does not compile" in r.stderr, r.stderr
        return
    assert (r.stdout, r.returncode) == ("(-13.0 -1.0 -1.0 -13.0)\n(1.0 1.0)\n", 0), r.stderr


@pytest.mark.opencl
@opencl
def test_confinement_can_be_switched_off_and_says_so(private_tmp: str) -> None:
    """LISPVM_DEVICE_CONFINE=0 (for a GPU driver that needs more than docs/gpu.md lists): the
    device process runs unconfined, and the node says so on stderr, once."""
    secret = os.path.join(private_tmp, "secret.h")
    with open(secret, "w") as f:
        f.write("#define SECRET 4242.0f\n")
    src = lisp_string(f'#include "{secret}"\n__kernel void k(__global float* a) {{ a[0] = SECRET; }}')
    prog = os.path.join(private_tmp, "off.lisp")
    with open(prog, "w") as f:
        f.write(f'(print (gpu/get (head (gpu/dispatch (gpu/kernel {src} "k") 1 (gpu/zeros 1))) 0))\n')
    r = lispvm("run", prog, env={"TMPDIR": private_tmp, "LISPVM_DEVICE_CONFINE": "0"})
    assert (r.stdout, r.returncode) == ("4242.0\n", 0), r.stderr
    assert r.stderr.count("lispvm: device process: LISPVM_DEVICE_CONFINE=0: the device process is not confined") == 1


def test_without_landlock_or_seccomp_confinement_warns_instead_of_failing() -> None:
    """A kernel without Landlock (ENOSYS), or an architecture whose system call table the
    filter does not have: a warning each, no exception (run in a child: nothing is applied)."""
    code = """
import errno, platform
from lispvm.scheduler import confine
def nosys(nr, *args):
    raise OSError(errno.ENOSYS, "Function not implemented")
confine._syscall = nosys
print(confine.landlock([("/usr", confine.READ)]))
platform.machine = lambda: "riscv64"
print(confine.seccomp())
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.splitlines()
    assert first == ("(0, ['Landlock is not available (Function not implemented): kernels may open any file the "
                     "user can and start programs'])")
    assert "seccomp filter not applied on riscv64" in second


@pytest.mark.skipif(not os.path.exists("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"), reason="no x86_64 header")
def test_the_seccomp_table_has_x86_64s_numbers() -> None:
    from lispvm.scheduler.confine import DENIED_X86_64, SELF_ONLY_X86_64

    numbers = {}
    with open("/usr/include/x86_64-linux-gnu/asm/unistd_64.h") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[0] == "#define" and parts[1].startswith("__NR_"):
                numbers[parts[1][5:]] = int(parts[2])
    table = {**DENIED_X86_64, **SELF_ONLY_X86_64}
    assert {k: numbers.get(k) for k in table if k in numbers} == {k: v for k, v in table.items() if k in numbers}
    assert len([k for k in table if k in numbers]) >= len(table) - 2  # the header may predate a call or two


class _FakeNode:
    """The node a DeviceClient registers its socket with, for tests that drive the client by hand."""

    def add_reader(self, fd: int, callback: object) -> None:
        pass

    def remove_reader(self, fd: int) -> None:
        pass


class _FakeSched:
    """A scheduler that records the requests a DeviceClient completes: (process, value, error)."""

    trace = None

    def __init__(self) -> None:
        self.done: list = []

    def complete(self, proc: object, value: object = None, error: object = None) -> None:
        self.done.append((proc, value, error))


class _Evil:
    """Unpickling this runs a shell command (what a pickle on a socket allowed)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.path}",))


def test_a_frame_is_never_unpickled(tmp_path: os.PathLike) -> None:
    """A frame whose message is a pickle that runs a command: the reader refuses it (the codec's
    version byte) and nothing runs. With pickle framing the command ran."""
    import pickle
    import socket
    import struct

    from lispvm.scheduler.device_wire import FrameReader
    from lispvm.vm.codec import CodecError

    marker = os.path.join(tmp_path, "ran")
    payload = pickle.dumps((1, True, _Evil(marker)), 5)
    a, b = socket.socketpair()
    with a, b:
        a.sendall(struct.pack("<IIII", 0, len(payload), 0, 0) + payload)
        with pytest.raises(CodecError):
            FrameReader(b).read()
    assert not os.path.exists(marker)


def test_a_damaged_or_forged_answer_fails_the_request_not_the_scheduler() -> None:
    """The device process runs kernels, so the client trusts nothing it says: an answer of the
    wrong shape, or one passing a file descriptor, ends the connection and the waiting request
    gets device_down; the scheduler goes on."""
    import socket

    from lispvm.scheduler.device_client import DeviceClient
    from lispvm.scheduler.device_wire import FrameReader, send_frame

    def answer_with(frame_sender: object) -> list:
        client = DeviceClient(_FakeNode())
        a, b = socket.socketpair()
        with a:
            client.sock, client.reader = b, FrameReader(b, client.segs)
            sched = _FakeSched()
            client.pending[5] = [sched, "P", ("gpu-kernel", "src", "k"), 0.0, ()]
            frame_sender(a)
            client.on_readable()
            assert client.sock is None and not client.pending
            return sched.done

    # a kernel's parameters that are not (bool, str) pairs
    done = answer_with(lambda a: send_frame(a, (5, True, [("float*", 1)])))
    assert [(p, v) for p, v, _e in done] == [("P", None)]
    assert repr(done[0][2]) == ('(error device_down "the device process sent a damaged answer: malformed '
                                'kernel parameters")')

    def with_fd(a: socket.socket) -> None:
        import array
        import struct

        from lispvm.vm import codec

        msg = codec.encode((5, True, []))
        r, w = os.pipe()
        try:
            a.sendmsg([struct.pack("<IIII", 0, len(msg), 0, 0), msg],
                      [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [r]))])
        finally:
            os.close(r)
            os.close(w)

    done = answer_with(with_fd)
    assert repr(done[0][2]) == ('(error device_down "the device process sent a damaged answer: the device process '
                                'sent file descriptors")')


@pytest.mark.opencl
@opencl
def test_a_malformed_request_closes_its_connection_and_the_device_serves_on(private_tmp: str) -> None:
    """A well-framed request that is not (id, operation, ...) (a number, a 1-tuple, a bad
    `forget`) raised in the serving thread outside its try: the thread died, the connection
    stayed open (its client waited for ever) and the device's client count never went down, so
    the device outlived its node. Now such a request is a damaged frame: the connection closes
    and the device goes on serving, and exits when its real client leaves."""
    import glob
    import socket

    from lispvm.scheduler.device_wire import FrameReader, send_frame

    src = """
    (def k (gpu/kernel "__kernel void k(__global float* a) { int i = get_global_id(0); a[i] = a[i] + 1; }" "k"))
    (print (gpu/to-list (head (gpu/dispatch k 2 (gpu/zeros 2)))))
    (timer/send-after 600000 (self) 'go)
    (recv)
    """
    prog = os.path.join(private_tmp, "wait.lisp")
    with open(prog, "w") as f:
        f.write(src)
    p = start_lispvm(prog, private_tmp, "--schedulers", "1")
    try:
        assert p.stdout.readline() == "(1.0 1.0)\n"
        [path] = glob.glob(os.path.join(private_tmp, "lispvm-*", "device.sock"))
        for bad in (5, (1,), (1, 2), [1, "gpu-kernel"], (1, "forget", 7)):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(60)  # a hang fails the test instead of the run
                s.connect(path)
                reader = FrameReader(s)
                assert reader.read()[1] == "hello"
                send_frame(s, bad)
                with pytest.raises(EOFError):
                    reader.read()
        with socket.socket(socket.AF_UNIX) as s:  # the device still serves a new client
            s.settimeout(60)
            s.connect(path)
            reader = FrameReader(s)
            assert reader.read()[1] == "hello"
            send_frame(s, (9, "gpu-kernel", "__kernel void z(__global float* a) { }", "z"))
            rid, ok, _ = reader.read()
            assert (rid, ok) == (9, True)
        assert our_devices(private_tmp)
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
    for _ in range(600):  # its last client gone, the device process ends (polled, not timed)
        if not our_devices(private_tmp):
            break
        time.sleep(0.1)
    assert not our_devices(private_tmp), "the device process outlived its node"


# --- trying the platforms in turn (scheduler/device_select.py) --------------------------------------

# Every PoCL build fails with this (PoCL reads it; other drivers do not): as PoCL's wheel fails on a
# CPU newer than its LLVM. An empty OCL_ICD_VENDORS hides the system's platforms (Debian's PoCL).
NO_POCL = {"POCL_EXTRA_BUILD_FLAGS": "-include /nonexistent/lispvm-test.h"}
GPU_PROG = str(SHARED / "examples" / "07_gpu.lisp")


def test_no_device_fails_gpu_calls_with_one_line_naming_lispvm_doctor(private_tmp: str) -> None:
    """With every platform unable to build (PoCL refusing, no other ICD, no pip runtime on the
    path), gpu/kernel fails with no_device: what was tried and where to look, exit 1; the array
    builtins still work; lispvm doctor says the same and what to install, and exits 0."""
    empty = os.path.join(private_tmp, "vendors")
    os.mkdir(empty)
    prog = os.path.join(private_tmp, "nodev.lisp")
    with open(prog, "w") as f:
        f.write("""(print (gpu/to-list (gpu/array (list 1 2))))
(print (try (gpu/kernel "__kernel void k(__global float* a) { a[0] = 1.0f; }" "k") (catch e (nth e 1))))
(gpu/kernel "__kernel void k(__global float* a) { a[0] = 1.0f; }" "k")
""")
    env = {"TMPDIR": private_tmp, "OCL_ICD_VENDORS": empty, "LISPVM_PIP_OPENCL": "0", **NO_POCL}
    r = lispvm("run", prog, env=env)
    assert r.stdout == "(1.0 2.0)\nno_device\n" and r.returncode == 1, (r.stdout, r.stderr)
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "nodev.lisp:3:" in err[0] and "`lispvm doctor`" in err[0], err
    assert "error: no_device: gpu/kernel: no OpenCL device can run a kernel here (tried Portable Computing " \
        "Language" in err[0], err
    assert not our_devices(private_tmp)
    d = lispvm("doctor", env=env)
    assert d.returncode == 0 and "Traceback" not in d.stderr, d.stderr
    assert "cannot run a kernel" in d.stdout and "gpu/ uses   nothing" in d.stdout, d.stdout
    assert "pip install 'lispvm[cpu-opencl]'" in d.stdout and "apt install pocl-opencl-icd" in d.stdout


def _pip_runtime() -> bool:
    from lispvm.scheduler import device_select

    return bool(device_select.extra_icds())


@pytest.mark.opencl
@pytest.mark.skipif(not _pip_runtime(), reason="the cpu-opencl extra (Intel's CPU runtime) is not installed; "
                                                "pip install -e '.[dev]' installs it")
def test_a_platform_that_cannot_build_is_passed_over_for_the_pip_cpu_runtime(private_tmp: str) -> None:
    """A machine like the one of issue 15: no system OpenCL, and PoCL failing every build. The
    device process passes PoCL over and uses Intel's runtime from the cpu-opencl extra (an ICD
    file it writes and names in its own environment), confined as ever; doctor says so."""
    empty = os.path.join(private_tmp, "vendors")
    os.mkdir(empty)
    env = {"TMPDIR": private_tmp, "OCL_ICD_VENDORS": empty, **NO_POCL}
    r = lispvm("run", "--schedulers", "2", GPU_PROG, env=env)
    assert (r.stdout, r.stderr, r.returncode) == ("(11.0 22.0 33.0)\n", "", 0)
    d = lispvm("doctor", env=env)
    assert d.returncode == 0, d.stderr
    assert "gpu/ uses   Intel(R) OpenCL" in d.stdout, d.stdout
    lines = d.stdout.splitlines()
    i = next(k for k, ln in enumerate(lines) if "Intel(R) OpenCL /" in ln)
    assert "runs kernels" in lines[i] and "cannot run a kernel" in lines[i + 1], d.stdout



def test_flat_frames_carry_small_dispatches_and_their_answers() -> None:
    """A dispatch of small arrays and numbers, and its answer, travel as flat frames (no codec)
    and read back as the tuples the codec's frames give; what cannot go flat (an int beyond
    int64, an array of SHM_MIN bytes, a non-contiguous or big-endian one, anything else) is
    refused so that the caller sends a codec frame."""
    import math
    import socket

    import numpy as np

    from lispvm.scheduler import device_wire as wire

    arr = np.arange(5, dtype=np.float32)
    values = (arr, 7, -(1 << 63), (1 << 63) - 1, 2.5, -0.0, float("nan"), np.zeros(0, dtype=np.float32))
    a, b = socket.socketpair()
    with a, b:
        wire.send_parts(a, *wire.flat_parts(wire.FLAT_REQUEST, 9, 3, 5, values))
        wire.send_parts(a, *wire.flat_parts(wire.FLAT_REQUEST, 10, 3, 1, (arr,)))  # back to back
        reader = wire.FrameReader(b, flat=wire.FLAT_REQUEST)
        assert reader.arrived()
        rid, op, ref, kernel, n, args, outs = reader.read()
        assert (rid, op, ref, kernel, n, outs) == (9, wire.DISPATCH, 3, None, 5, None)
        assert args[0].dtype == np.float32 and args[0].tolist() == arr.tolist() and args[7].size == 0
        assert args[1:6] == (7, -(1 << 63), (1 << 63) - 1, 2.5, -0.0) and math.copysign(1, args[5]) == -1
        assert [type(x) for x in args[1:7]] == [int, int, int, float, float, float] and math.isnan(args[6])
        assert reader.ready() and reader.read()[:2] == (10, wire.DISPATCH) and not reader.ready()
        wire.send_parts(b, *wire.flat_parts(wire.FLAT_ANSWER, 9, 0, 0, [arr + 1, 2.0]))
        answer = wire.FrameReader(a).read()
        assert answer[:2] == (9, True) and answer[2][0].tolist() == (arr + 1).tolist() and answer[2][1] == 2.0
        # a client does not take a flat request, nor a device a flat answer, for its own kind
        wire.send_parts(b, *wire.flat_parts(wire.FLAT_REQUEST, 9, 3, 5, (arr,)))
        with pytest.raises(codec_error()):
            wire.FrameReader(a).read()
    big = np.zeros(wire.SHM_MIN // 4, dtype=np.float32)
    for refused in ((1 << 63,), (-(1 << 63) - 1,), (big,), (np.arange(10, dtype=np.float32)[::2],),
                    (arr.astype(">f4"),), ("text",), (arr.reshape(5, 1),)):
        assert wire.flat_parts(wire.FLAT_REQUEST, 1, 1, 1, refused) is None


def codec_error() -> type:
    from lispvm.vm.codec import CodecError

    return CodecError


@pytest.mark.parametrize("damage", ["kind", "odd size", "sizes", "header"])
def test_a_damaged_flat_frame_is_refused(damage: str) -> None:
    """The device runs kernels, so a flat answer is checked as a codec frame is: an unknown value
    kind, an array whose bytes are not whole floats, or arrays that do not add up to the
    header's count are a damaged frame (the connection then ends: device_down)."""
    import socket
    import struct

    from lispvm.scheduler import device_wire as wire

    head = struct.Struct("<IIIIIQ")
    slot = struct.Struct("<Bq")
    frame = {"kind": head.pack(wire.FLAT_ANSWER, 1, 0, 1, 0, 0) + slot.pack(9, 0),
             "odd size": head.pack(wire.FLAT_ANSWER, 1, 0, 1, 6, 0) + slot.pack(0, 6) + b"\0" * 6,
             "sizes": head.pack(wire.FLAT_ANSWER, 1, 0, 2, 8, 0) + slot.pack(0, 8) + slot.pack(0, 8) + b"\0" * 8,
             "header": head.pack(wire.FLAT_ANSWER, 1, 0, 1, 1 << 30, 0)}[damage]
    a, b = socket.socketpair()
    with a, b:
        a.sendall(frame)
        with pytest.raises(codec_error()):
            wire.FrameReader(b).read()


def test_the_client_sends_a_known_kernels_small_dispatch_flat() -> None:
    """Once the connection knows the kernel, a small dispatch goes as a flat frame and its flat
    answer completes the process with the same values a codec answer gives; a kernel the
    connection does not know yet, or pending segment forgets, go as a codec frame."""
    import socket
    import struct

    import numpy as np

    from lispvm.scheduler import device_wire as wire
    from lispvm.scheduler.device_client import DeviceClient
    from lispvm.vm.gpu import Kernel

    class Proc:
        pid = 1

        def __init__(self, request: tuple) -> None:
            self.request = request

    src = "__kernel void k(__global float* v, float a) { v[get_global_id(0)] += a; }"
    kernel = Kernel(src, "k", ((True, "float*"), (False, "float")), wire.source_key(src))
    arr = np.ones(4, dtype=np.float32)
    arr.setflags(write=False)
    client = DeviceClient(_FakeNode())
    a, b = socket.socketpair()
    with a, b:
        client.sock, client.reader = b, wire.FrameReader(b, client.segs)
        sched = _FakeSched()
        client.submit(sched, Proc(("gpu-dispatch", kernel, 4, (arr, 2.0))))
        first = struct.unpack_from("<I", a.recv(65536))[0]
        assert first <= wire.MAX_ARRAYS  # a codec frame: the kernel goes whole the first time
        client.submit(sched, Proc(("gpu-dispatch", kernel, 4, (arr, 3.0))))
        raw = a.recv(65536)
        assert struct.unpack_from("<I", raw)[0] == wire.FLAT_REQUEST
        rid = struct.unpack_from("<I", raw, 4)[0]
        wire.send_parts(a, *wire.flat_parts(wire.FLAT_ANSWER, rid, 0, 0, [arr + 3, 3.0]))
        client.on_readable()
        (proc, value, error), = sched.done
        assert error is None and repr(value) == "(#<f32[4]> 3.0)" and rid not in client.pending
        assert value.head.data.tolist() == [4.0] * 4 and not value.head.data.flags.writeable  # arrays are values
        client.segs.forget.append(99)  # a forget to send first: a codec frame again
        client.submit(sched, Proc(("gpu-dispatch", kernel, 4, (arr, 3.0))))
        assert struct.unpack_from("<I", a.recv(65536))[0] <= wire.MAX_ARRAYS


_KEPT_SCRIPT = """
import os, sys, tempfile
import numpy as np
from lispvm.scheduler import device_select
from lispvm.scheduler.device_server import KEPT, SMALL_KEEP, DeviceServer
from lispvm.scheduler.device_wire import DISPATCH, KERNEL
from lispvm.vm.gpu import Kernel
from lispvm.scheduler.device_wire import source_key
os.environ["PYOPENCL_NO_CACHE"] = "1"  # as the device process: a cached binary has no argument info
with tempfile.TemporaryDirectory(prefix="lispvm-kept-") as d:
    device_select.use_extra_runtimes(d)
    import pyopencl as cl
    srv = DeviceServer.__new__(DeviceServer)
    srv.np, srv.cl = np, cl
    srv.ctx, _ = device_select.choose(cl, os.environ.get("LISPVM_OPENCL"))
    srv.queue = cl.CommandQueue(srv.ctx)
    srv.host_is_device = all(dev.type & cl.device_type.CPU for dev in srv.ctx.devices)
    srv.programs, srv.kernels, srv.kernel_args = {}, {}, {}
    src = ("__kernel void k(__global float* x, __global float* y, float a) {"
           " int i = get_global_id(0); y[i] += a * x[i]; x[i] = -1.0f; }")
    ok, params = srv.handle((1, KERNEL, src, "k"), {})[1:]
    kernel = Kernel(src, "k", tuple(params), source_key(src))
    known, kept = {1: kernel}, {}
    def go(x, y, a):
        rid, ok, value = srv.handle((2, DISPATCH, 1, None, len(x), (x, y, a), None), known, kept)
        assert ok, value
        return [v.tolist() if hasattr(v, "tolist") else v for v in value]
    x = np.arange(4, dtype=np.float32)
    print(go(x, np.ones(4, dtype=np.float32), 2.0), x.tolist())
    bufs = {k: v[1] for k, v in kept.items()}
    print(go(x, x, 1.0))  # one array for two parameters: two buffers, as with copies
    print(all(kept[k][1] is bufs[k] for k in bufs), sorted(kept), srv.host_is_device,
          [v[2] == KEPT for v in kept.values()])
    for n in range(1, SMALL_KEEP + 4):
        assert go(np.ones(n, dtype=np.float32), np.zeros(n, dtype=np.float32), 3.0) == [[-1.0] * n, [3.0] * n, 3.0]
    print(len(kept) == SMALL_KEEP)
"""


@pytest.mark.opencl
@opencl
def test_the_device_keeps_small_buffers_between_dispatches() -> None:
    """On a CPU device a connection's small arguments run in buffers kept between dispatches (by
    position and size, at most SMALL_KEEP, the least recently used let go) and used in place
    (KEPT: no map per dispatch): results are those of fresh buffers, one array given for two
    parameters still gets two buffers, inputs are not changed."""
    r = subprocess.run([sys.executable, "-c", _KEPT_SCRIPT], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["[[-1.0, -1.0, -1.0, -1.0], [1.0, 3.0, 5.0, 7.0], 2.0] [0.0, 1.0, 2.0, 3.0]",
                         "[[-1.0, -1.0, -1.0, -1.0], [0.0, 2.0, 4.0, 6.0], 1.0]"]
    if "True" in lines[2].split()[-3]:  # a CPU device (the only one kept buffers are for)
        assert lines[2:] == ["True [(0, 16), (1, 16)] True [True, True]", "True"]
