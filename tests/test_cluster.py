"""Schedulers in several OS processes (issue 5): the same output with 1 and 4 schedulers, order
kept while processes move, a scheduler killed mid-run, nothing left behind after any end."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest

import test_processes as tp
from support import lispvm, our_processes, run

PROGRAMS = {
    name: getattr(tp, name) for name in dir(tp)
    if name.startswith("test_") and name not in ("test_timers_on_a_virtual_clock", "test_a_million_messages",
                                                "test_waiting_process_memory_is_small",
                                                "test_crash_report_is_one_line_with_position",
                                                "test_main_failure_and_halt_statuses",
                                                "test_deadlock_is_reported_not_a_hang",
                                                "test_output_does_not_depend_on_reductions")
}


def _sources() -> list[str]:
    """The Lisp programs of test_processes.py, taken from its tests' source text."""
    import inspect

    out = []
    for fn in PROGRAMS.values():
        text = inspect.getsource(fn)
        start = text.index('"""', text.index("src =")) + 3
        out.append(text[start:text.index('"""', start)])
    return out


@pytest.mark.parametrize("src", _sources(), ids=sorted(PROGRAMS))
def test_same_output_with_one_and_four_schedulers(src: str) -> None:
    one = run(src, schedulers=1)
    four = run(src, schedulers=4)
    assert one[2] == 0 and four == one


ORDER = """
(def busy (n) (if (== n 0) 0 (busy (- n 1))))
(def set-nth (xs k v) (if (== k 0) (cons v (tail xs)) (cons (head xs) (set-nth (tail xs) (- k 1) v))))
(def sender (k i n dst)
  (if (== i n) 'done (do (send dst (list k i (sys/scheduler-id))) (busy 300) (sender k (+ i 1) n dst))))
(def check (counts left scheds)
  (if (== left 0)
      (list 'ok counts scheds)
      (receive ((list k i s)
                (busy 50)
                (if (== i (nth counts k))
                    (check (set-nth counts k (+ i 1)) (- left 1) (if (list/contains? s scheds) scheds (cons s scheds)))
                    (list 'out-of-order k i (nth counts k)))))))
(def me (self))
(def c (spawn (fn () (send me (check (list 0 0 0 0 0 0 0 0) 16000 nil)))))
(list/map (fn (k) (spawn sender k 0 2000 c)) (list/range 8))
(def r (recv))
(print (head r) (nth r 1))
(print (> (length (nth r 2)) 1))
"""


def test_order_kept_while_processes_move() -> None:
    """8 senders x 2000 messages to one receiver; the busy senders move between schedulers
    (the receiver records on which schedulers they ran: more than one)."""
    out, err, status = run(ORDER, schedulers=4)
    assert status == 0, err
    first, moved = out.splitlines()
    assert first == "ok (2000 2000 2000 2000 2000 2000 2000 2000)"
    assert moved == "true", "no process ran on a second scheduler: the test did not exercise moves"


def test_a_new_scheduler_takes_work_with_it() -> None:
    """CPU-bound jobs spawned at once: when the second scheduler is forked, half of them go with
    it (they run there before its hello is even read), and there they see the names registered
    and the globals defined before the fork, and globals defined after it."""
    src = """
    (def fib (n) (if (< n 2) n (+ (fib (- n 1)) (fib (- n 2)))))
    (register 'boss (self))
    (def early 'e)
    (def job (i) (let ((r (fib 22))) (receive ('go (send 'boss (list (sys/scheduler-id) i r early late))))))
    (def pids (list/map (fn (i) (spawn (fn () (job i)))) (list/range 6)))
    (timer/sleep 50)
    (def late 'l)
    (list/map (fn (p) (send p 'go)) pids)
    (def got (list/map (fn (i) (recv)) (list/range 6)))
    (print (list/sort (list/map (fn (m) (nth m 1)) got)))
    (print (list/map (fn (m) (list/to-vec (tail (tail m)))) got))
    (print (list/contains? 1 (list/map head got)))
    """
    out, err, status = run(src, schedulers=2)
    assert status == 0, err
    ids, values, moved = out.splitlines()
    assert ids == "(0 1 2 3 4 5)"
    assert values == " ".join(["([17711 e l]"] + ["[17711 e l]"] * 4 + ["[17711 e l])"])
    assert moved == "true", "no job ran on the second scheduler"


def test_moved_as_its_function_was_compiled() -> None:
    """A process preempted right after its function was compiled resumes on a scheduler that was
    forked before that compile (where the function is still bytecode)."""
    src = """
    (def a (n) (if (< n 2) n (+ (a (- n 1)) (a (- n 2)))))
    (def b (n) (if (< n 2) n (+ (b (- n 1)) (b (- n 2)))))
    (def me (self))
    (list/map (fn (i) (spawn (fn () (send me (a 20))))) (list/range 4))
    (list/map (fn (i) (recv)) (list/range 4))
    (timer/sleep 20)
    (list/map (fn (i) (spawn (fn () (send me (list (b 22) (sys/scheduler-id)))))) (list/range 4))
    (def got (list/map (fn (i) (recv)) (list/range 4)))
    (print (list/map head got) (list/contains? 1 (list/map (fn (m) (nth m 1)) got)))
    """
    for _ in range(3):
        out, err, status = run(src, schedulers=2)
        assert (out, status) == ("(17711 17711 17711 17711) true\n", 0), err


def test_a_node_run_from_a_thread() -> None:
    """run_program with several schedulers from a thread other than the main one (where no
    signal handler can be set: no poke is sent to it) works and leaves nothing behind."""
    import threading

    before = _sockdirs()
    src = """
    (def fib (n) (if (< n 2) n (+ (fib (- n 1)) (fib (- n 2)))))
    (def me (self))
    (list/map (fn (i) (spawn (fn () (send me (fib 20))))) (list/range 4))
    (print (list/reduce + 0 (list/map (fn (i) (recv)) (list/range 4))))
    """
    results: list = []
    for _ in range(3):
        t = threading.Thread(target=lambda: results.append(run(src, schedulers=2)))
        t.start()
        t.join(60)
    assert results == [("27060\n", "", 0)] * 3
    _assert_nothing_left(before, None)


def test_a_poke_never_kills_a_scheduler(tmp_path: os.PathLike) -> None:
    """POKE_SIGNAL (sent by a scheduler that went idle to its busy peers) only ends a slice
    early: poking both schedulers of a node over and over changes nothing in the output."""
    from lispvm.scheduler.cluster import POKE_SIGNAL

    prog = os.path.join(tmp_path, "poke.lisp")
    with open(prog, "w") as f:
        f.write("""
        (def fib (n) (if (< n 2) n (+ (fib (- n 1)) (fib (- n 2)))))
        (def me (self))
        (list/map (fn (i) (spawn (fn () (send me (fib 25))))) (list/range 8))
        (print (list/reduce + 0 (list/map (fn (i) (recv)) (list/range 8))))
        """)
    exe = os.path.join(os.path.dirname(sys.executable), "lispvm")
    proc = subprocess.Popen([exe, "run", "--schedulers", "2", prog], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    pokes = 0
    first = None
    while proc.poll() is None:
        kids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        if not kids:  # schedulers poke each other only once both are up (and handle the signal)
            time.sleep(0.001)
            continue
        first = first or time.monotonic()
        # the hub only while the jobs surely run: once its workers have stopped it puts its
        # previous handler back, as no scheduler of its can poke it any more
        hub = [proc.pid] if time.monotonic() - first < 0.015 else []
        for pid in [*hub, *map(int, kids)]:
            try:
                os.kill(pid, POKE_SIGNAL)
                pokes += 1
            except ProcessLookupError:
                pass
        time.sleep(0.002)
    out, err = proc.communicate(timeout=30)
    assert (out, proc.returncode) == (f"{8 * 75025}\n", 0), err
    assert pokes > 0


def test_spawn_on_and_where_a_process_runs() -> None:
    src = """
    (def me (self))
    (def report () (send me (list (sys/scheduler-id) (sys/os-pid))))
    (spawn-on 1 report)
    (spawn-on 0 report)
    (def a (recv))
    (def b (recv))
    (print (list/sort (list (head a) (head b))) (!= (nth a 1) (nth b 1)) (sys/schedulers))
    """
    out, err, status = run(src, schedulers=2)
    assert (out, status) == ("(0 1) true 2\n", 0), err


def test_globals_names_and_links_across_schedulers() -> None:
    src = """
    (def counter 10)
    (def me (self))
    (def far () (register 'far (self)) (send me 'registered) (receive ((list from x) (send from (+ x counter)))))
    (spawn-on 1 far)
    (receive ('registered nil))
    (send 'far (list me 5))
    (print (receive (x x)))
    (trap-exit true)
    (def doomed () (receive (x (throw x))))
    (def d (spawn-on 1 doomed))
    (link d)
    (send d 'bang)
    (print (receive ((list 'EXIT p why) why)))
    (def m (spawn-on 1 (fn () (receive (x x)))))
    (def r (monitor m))
    (send m 'stop)
    (print (receive ((list 'DOWN ref p why) why)))
    """
    out, err, status = run(src, schedulers=2)
    assert (out, status) == ("15\nbang\nnormal\n", 0), err


def _sockdirs() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "lispvm-*")))


def _assert_nothing_left(before: set[str], program: str | None) -> None:
    """No scheduler (named, or any process still running `program`: a forked scheduler keeps
    the command line it was forked with) and no socket directory is left."""
    for _ in range(50):
        if not our_processes(program) and not (_sockdirs() - before):
            return
        time.sleep(0.1)
    assert not our_processes(program), "a scheduler process is still running"
    assert not (_sockdirs() - before), "a socket directory was left behind"


KEEP_BUSY = """
(def spin (n) (spin (+ n 1)))
(spawn-on 1 spin 0)
(spawn-on 0 spin 0)
(print 'started)
"""


@pytest.mark.parametrize("ending", ["normal", "halt", "crash", "SIGINT", "SIGTERM"])
def test_nothing_left_after_any_end(ending: str, tmp_path: os.PathLike) -> None:
    before = _sockdirs()
    src = KEEP_BUSY + {"normal": "(timer/sleep 300)\n(halt 0)\n", "halt": "(timer/sleep 300)\n(halt 3)\n",
                       "crash": "(timer/sleep 300)\n(head nil)\n", "SIGINT": "(receive (x x))\n",
                       "SIGTERM": "(receive (x x))\n"}[ending]
    prog = os.path.join(tmp_path, "p.lisp")
    with open(prog, "w") as f:
        f.write(src)
    exe = os.path.join(os.path.dirname(sys.executable), "lispvm")
    proc = subprocess.Popen([exe, "run", "--schedulers", "2", prog], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "started\n"
    if ending.startswith("SIG"):
        time.sleep(0.5)  # let the second scheduler start
        proc.send_signal(getattr(signal, ending))
    out, err = proc.communicate(timeout=30)
    expected = {"normal": 0, "halt": 3, "crash": 1, "SIGINT": 130, "SIGTERM": 143}[ending]
    assert proc.returncode == expected, err
    assert "Traceback" not in err
    if ending.startswith("SIG"):
        assert err.count("\n") == 1
    _assert_nothing_left(before, prog)


def test_scheduler_killed_mid_run(tmp_path: os.PathLike) -> None:
    """SIGKILL the OS process of scheduler 1: its processes are gone, links and monitors get
    noconnection, and the node goes on."""
    before = _sockdirs()
    src = """
    (def me (self))
    (def victim () (send me (list 'pid (sys/os-pid))) (receive ('never nil)))
    (def v (spawn-on 1 victim))
    (def r (monitor v))
    (trap-exit true)
    (def v2 (spawn-on 1 victim))
    (link v2)
    (print (receive ((list 'pid p) p)))
    (receive ((list 'pid p) p))
    (print (receive ((list 'DOWN ref p why) why)))
    (print (receive ((list 'EXIT p why) why)))
    (print 'still-running)
    """
    prog = os.path.join(tmp_path, "k.lisp")
    with open(prog, "w") as f:
        f.write(src)
    exe = os.path.join(os.path.dirname(sys.executable), "lispvm")
    proc = subprocess.Popen([exe, "run", "--schedulers", "2", prog], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    os_pid = int(proc.stdout.readline())
    assert os_pid != proc.pid
    os.kill(os_pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    assert (out, proc.returncode) == ("noconnection\nnoconnection\nstill-running\n", 0), err
    _assert_nothing_left(before, prog)


def test_new_scheduler_killed_as_it_starts(tmp_path: os.PathLike) -> None:
    """SIGKILL a forked scheduler as soon as it exists, before or just after its hello: the jobs
    it was given are gone (their monitors say noconnection) and the node never hangs."""
    before = _sockdirs()
    prog = os.path.join(tmp_path, "early.lisp")
    with open(prog, "w") as f:
        f.write("""
        (def fib (n) (if (< n 2) n (+ (fib (- n 1)) (fib (- n 2)))))
        (def me (self))
        (def jobs (list/map (fn (i) (spawn (fn () (send me (fib 25))))) (list/range 6)))
        (list/map (fn (p) (monitor p)) jobs)
        (def loop (left lost)
          (if (== left 0) lost
              (receive ((list 'DOWN r p why) (loop (- left 1) (if (== why 'normal) lost (+ lost 1))))
                       (n (loop left lost)))))
        (def lost (loop 6 0))
        (print (if (> lost 0) 'lost-some 'lost-none))
        """)
    exe = os.path.join(os.path.dirname(sys.executable), "lispvm")
    for _ in range(3):
        proc = subprocess.Popen([exe, "run", "--schedulers", "2", prog], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        killed = False
        while proc.poll() is None and not killed:
            for pid in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split():
                os.kill(int(pid), signal.SIGKILL)
                killed = True
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert out in ("lost-some\n", "lost-none\n")
        assert out == "lost-some\n" or not killed, "the killed scheduler's jobs still finished"
    _assert_nothing_left(before, prog)


def test_command_with_four_schedulers_runs_examples() -> None:
    examples = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared",
                            "examples")
    if not os.path.isdir(examples):
        pytest.skip("../shared/examples is not beside the repository")
    for name in ("04_processes", "05_links", "06_parallel_map"):
        r = lispvm("run", "--schedulers", "4", os.path.join(examples, name + ".lisp"))
        with open(os.path.join(examples, name + ".out")) as f:
            assert (r.stdout, r.returncode) == (f.read(), 0), r.stderr


def test_the_node_directory_is_removed_whatever_it_holds(tmp_path: os.PathLike) -> None:
    """Sockets and files are unlinked one by one; anything else (a directory) falls back to
    rmtree: nothing is left either way."""
    import socket

    from lispvm.scheduler.cluster import _remove_dir

    for nested in (False, True):
        d = os.path.join(tmp_path, f"node{nested}")
        os.mkdir(d)
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(os.path.join(d, "sched-0.sock"))
        open(os.path.join(d, "config"), "wb").close()
        if nested:
            os.mkdir(os.path.join(d, "sub"))
            open(os.path.join(d, "sub", "x"), "wb").close()
        _remove_dir(d)
        assert not os.path.exists(d)


TWO_CPU_BOUND = """
(def spin (n) (if (== n 0) 'ok (spin (- n 1))))
(def me (self))
(spawn (fn () (send me (spin 20000))))
(spawn (fn () (send me (spin 20000))))
(print (recv) (recv))
"""


def _hub_budgets(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The slice budget of every pass the hub makes with two or more runnable processes."""
    from lispvm.scheduler import kernel

    budgets: list[int] = []
    run_ready = kernel.Scheduler.run_ready

    def spy(self: kernel.Scheduler) -> None:
        if self.id == 0 and len(self.runq) >= 2:
            budgets.append(self.budget)
        run_ready(self)

    monkeypatch.setattr(kernel.Scheduler, "run_ready", spy)
    return budgets


def test_short_slices_while_the_node_can_grow_never_exceed_the_users_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub's slices are shortened to PROBE_BUDGET while a scheduler is still to start, so
    that CPU-bound work shows itself sooner; a smaller --reductions stays smaller (it was raised
    to 1000)."""
    from lispvm.scheduler.cluster import PROBE_BUDGET

    budgets = _hub_budgets(monkeypatch)
    assert run(TWO_CPU_BOUND, schedulers=2, reductions=10, jit=False) == ("ok ok\n", "", 0)
    assert budgets and max(budgets) == 10
    budgets.clear()
    assert run(TWO_CPU_BOUND, schedulers=2, reductions=20000, jit=False) == ("ok ok\n", "", 0)
    assert budgets[0] == PROBE_BUDGET  # before the second scheduler is started


def test_a_failed_fork_ends_the_short_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the second scheduler cannot be forked the node goes on alone, with the user's
    budget again (a failed fork left the hub on 1000-reduction slices for good)."""
    from lispvm.scheduler import cluster

    def no_fork() -> int:
        raise OSError("no more processes")

    monkeypatch.setattr(cluster.os, "fork", no_fork)
    budgets = _hub_budgets(monkeypatch)
    assert run(TWO_CPU_BOUND, schedulers=2, reductions=20000, jit=False) == ("ok ok\n", "", 0)
    assert budgets[0] == cluster.PROBE_BUDGET and budgets[-1] == 20000 and budgets.count(cluster.PROBE_BUDGET) == 1


def test_the_idle_grace_never_spins_past_a_timer_due_within_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The grace's busy-wait runs only when no timer falls due within the grace: poll() waits
    whole milliseconds, so a spin before it made such timers fire one spin late."""
    from lispvm.scheduler import cluster

    limits: list[float] = []
    spin = cluster.BusyWait.spin

    def spy(self: cluster.BusyWait, poll: object, limit: float | None = None) -> bool:
        limits.append(limit)
        return spin(self, poll, limit)

    monkeypatch.setattr(cluster.BusyWait, "spin", spy)
    src = """
    (def idle () (receive ('stop 'ok)))
    (def peer (spawn-on 1 idle))
    (def me (self))
    (spawn (fn () (send me 'tick)))
    (def loop (n) (if (== n 0) 'done (do (timer/sleep 1) (loop (- n 1)))))
    (print (loop 30))
    (send peer 'stop)
    """
    assert run(src, schedulers=2) == ("done\n", "", 0)
    assert all(limit is not None and limit >= cluster.IDLE_GRACE for limit in limits), limits
