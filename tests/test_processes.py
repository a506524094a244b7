"""Processes on one scheduler (issue 4): spawn, mailboxes, selective receive, links, monitors,
exits, timers on a virtual clock, fairness. Every program runs with and without the fast tier."""

from __future__ import annotations

import pytest

from lispvm.scheduler.clock import VirtualClock
from support import run

JIT = [pytest.param(True, id="jit"), pytest.param(False, id="nojit")]


def lines(src: str, jit: bool, **kw: object) -> list[str]:
    out, err, status = run(src, jit=jit, **kw)
    assert status == 0, (out, err)
    return out.splitlines()


@pytest.mark.parametrize("jit", JIT)
def test_spawn_send_receive_order(jit: bool) -> None:
    src = """
    (def collect (n acc) (if (== n 0) (reverse acc) (collect (- n 1) (cons (recv) acc))))
    (def me (self))
    (def sender (k) (list/map (fn (i) (send me (list k i))) (list/range 5)))
    (spawn sender 'a)
    (print (collect 5 nil))
    """
    assert lines(src, jit) == ["((a 0) (a 1) (a 2) (a 3) (a 4))"]


@pytest.mark.parametrize("jit", JIT)
def test_selective_receive_leaves_unmatched_in_order(jit: bool) -> None:
    src = """
    (def me (self))
    (list/map (fn (i) (send me (list 'noise i))) (list/range 3000))
    (send me (list 'wanted 42))
    (print (receive ((list 'wanted x) x)))
    (def drain (n) (receive ((list 'noise i) (if (== i n) (drain (+ n 1)) (list 'out-of-order i n)))
                            (after 0 n)))
    (print (drain 0))
    """
    assert lines(src, jit) == ["42", "3000"]


@pytest.mark.parametrize("jit", JIT)
def test_guards_and_patterns(jit: bool) -> None:
    src = """
    (def me (self))
    (send me [1 2])
    (send me (list 'pair 1 2))
    (send me (cons 'h 't))
    (send me 7)
    (print (receive ((list 'pair a b) :when (> a b) 'wrong) ((list 'pair a b) (+ a b))))
    (print (receive ([a b] (list 'vec a b))))
    (print (receive ((cons 'h t) t)))
    (print (receive (7 'seven)))
    (print (receive (x x) (after 0 'empty)))
    """
    assert lines(src, jit) == ["3", "(vec 1 2)", "t", "seven", "empty"]


@pytest.mark.parametrize("jit", JIT)
def test_links_trap_exit_and_monitors(jit: bool) -> None:
    src = """
    (trap-exit true)
    (def crasher () (head nil))
    (def c (spawn-link crasher))
    (print (receive ((list 'EXIT p why) (list (== p c) (nth why 1)))))
    (def normal () 'ok)
    (def n (spawn-link normal))
    (print (receive ((list 'EXIT p why) why)))
    (def idle () (receive ('never nil)))
    (def i (spawn idle))
    (def r (monitor i))
    (exit i 'kill)
    (print (receive ((list 'DOWN ref p why) (list (== ref r) why))))
    (def gone (spawn normal))
    (timer/sleep 10)
    (def r2 (monitor gone))
    (print (receive ((list 'DOWN ref p why) (list (== ref r2) why))))
    """
    assert lines(src, jit) == ["(true badarg)", "normal", "(true killed)", "(true noproc)"]


@pytest.mark.parametrize("jit", JIT)
def test_untrapped_link_kills_and_normal_does_not(jit: bool) -> None:
    src = """
    (def me (self))
    (def middle ()
      (spawn-link (fn () (throw 'boom)))
      (receive (x x)))
    (def m (spawn middle))
    (def r (monitor m))
    (print (receive ((list 'DOWN ref p why) why)))
    (def middle2 ()
      (spawn-link (fn () 'fine))
      (receive (x (send me (list 'survived x)))))
    (def m2 (spawn middle2))
    (timer/sleep 20)
    (send m2 'poke)
    (print (receive ((list 'survived x) x)))
    """
    assert lines(src, jit) == ["boom", "poke"]


@pytest.mark.parametrize("jit", JIT)
def test_exit_signals_kill_is_untrappable(jit: bool) -> None:
    src = """
    (def me (self))
    (def trapper () (trap-exit true) (send me 'ready) (receive (x (send me (list 'got x))) ))
    (def t (spawn trapper))
    (receive ('ready nil))
    (exit t 'please)
    (print (receive ((list 'got x) (nth x 2))))
    (def t2 (spawn trapper))
    (receive ('ready nil))
    (def r (monitor t2))
    (exit t2 'kill)
    (print (receive ((list 'DOWN ref p why) why)))
    """
    assert lines(src, jit) == ["please", "killed"]


@pytest.mark.parametrize("jit", JIT)
def test_register_whereis_and_send_to_name(jit: bool) -> None:
    src = """
    (def echo () (receive ((list from x) (send from x) (echo))))
    (register 'echo (spawn echo))
    (send 'echo (list (self) 'hi))
    (print (receive (x x)) (pid? (whereis 'echo)) (whereis 'nobody))
    (print (try (send 'nobody 1) (catch e (nth e 1))))
    (print (try (register 'echo (self)) (catch e (nth e 1))))
    """
    assert lines(src, jit) == ["hi true nil", "badarg", "badarg"]


@pytest.mark.parametrize("jit", JIT)
def test_bad_arguments_raise_spec_errors(jit: bool) -> None:
    src = """
    (print (try (send 5 'x) (catch e (nth e 1))))
    (print (try (spawn 5) (catch e (nth e 1))))
    (print (try (receive (x x) (after "soon" 1)) (catch e (nth e 1))))
    (print (try (exit 5 'x) (catch e (nth e 1))))
    (print (try (spawn (fn (a) a)) (catch e (nth e 1))))
    (print (try (monitor 'x) (catch e (nth e 1))))
    """
    assert lines(src, jit) == ["badarg", "badarg", "badarg", "badarg", "badarity", "badarg"]


def test_crash_report_is_one_line_with_position() -> None:
    src = "(spawn (fn () (head nil)))\n(timer/sleep 10)\n(print 'done)\n"
    out, err, status = run(src)
    assert status == 0 and out == "done\n"
    assert err.count("\n") == 1 and "test.lisp:1:15:" in err and "crashed" in err and "badarg" in err


def test_main_failure_and_halt_statuses() -> None:
    out, err, status = run("(print 1)\n(head nil)\n(print 2)\n")
    assert (out, status) == ("1\n", 1) and err.startswith("test.lisp:2:1: error: badarg")
    assert run("(spawn (fn () (halt 7)))\n(receive (x x))\n")[2] == 7
    out, err, status = run("(exit 'bye)")
    assert status == 1 and "bye" in err


def test_deadlock_is_reported_not_a_hang() -> None:
    out, err, status = run("(receive (x x))")
    assert status == 1 and "deadlock" in err


@pytest.mark.parametrize("jit", JIT)
def test_timers_on_a_virtual_clock(jit: bool) -> None:
    src = """
    (def t0 (now-ms))
    (timer/sleep 60000)
    (print (- (now-ms) t0))
    (timer/send-after 500 (self) 'late)
    (timer/send-after 100 (self) 'early)
    (print (receive (x x)) (receive (x x)))
    (print (receive (x x) (after 250 'timeout)) (- (now-ms) t0))
    (def me (self))
    (spawn (fn () (timer/sleep 30) (send me 'woke)))
    (print (receive ('never 1) (after 1000 'gave-up)) (receive (x x)))
    """
    out = lines(src, jit, clock=VirtualClock())
    assert out == ["60000.0", "early late", "timeout 60750.0", "gave-up woke"]


@pytest.mark.parametrize("jit", JIT)
def test_fairness_spinners_do_not_starve_a_printer(jit: bool) -> None:
    src = """
    (def spin (n) (spin (+ n 1)))
    (spawn spin 0)
    (spawn spin 0)
    (def count (k) (if (== k 0) 'done (do (print k) (count (- k 1)))))
    (print (count 3))
    (halt 0)
    """
    assert lines(src, jit) == ["3", "2", "1", "done"]


@pytest.mark.parametrize("jit", JIT)
def test_output_does_not_depend_on_reductions(jit: bool) -> None:
    src = """
    (def fib (n) (if (< n 2) n (+ (fib (- n 1)) (fib (- n 2)))))
    (def me (self))
    (def worker (k) (send me (list k (fib (+ 10 k)))))
    (list/map (fn (k) (spawn worker k)) (list/range 6))
    (print (list/sort (list/map (fn (i) (receive ((list k v) (* 1000 v)))) (list/range 6))))
    (def ring (n) (if (== n 0) (self) (spawn (fn (next) (receive (x (send next (+ x 1))))) (ring (- n 1)))))
    (send (ring 50) 0)
    (print (recv))
    """
    outs = {tuple(lines(src, jit, reductions=r)) for r in (1, 7, 100, 4000)}
    assert len(outs) == 1
    assert outs.pop()[1] == "50"


@pytest.mark.slow
def test_a_million_messages() -> None:
    src = """
    (def sink (n) (if (== n 0) 'done (receive (_ (sink (- n 1))))))
    (def me (self))
    (def s (spawn (fn () (send me (sink 1000000)))))
    (def pump (i) (if (== i 0) 'sent (do (send s i) (pump (- i 1)))))
    (print (pump 1000000))
    (print (recv))
    """
    assert lines(src, True) == ["sent", "done"]


def test_waiting_process_memory_is_small() -> None:
    """Structure check behind the 1,000-byte goal (the figure itself is measured in perf/)."""
    from lispvm.vm.process import Process

    p = Process(None, None, [None] * 4)
    assert not hasattr(p, "__dict__") and p.mailbox is None and p.links is None


def _high_pipe() -> tuple[int, int]:
    """A pipe whose read end is numbered past select.select's FD_SETSIZE (1024)."""
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if max(soft, hard if hard != resource.RLIM_INFINITY else soft) < 1100:
        pytest.skip("the descriptor limit is below 1100")
    if soft < 1100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1100, hard))
    r, w = os.pipe()
    high = os.dup2(r, 1090)
    os.close(r)
    return high, w


def test_the_one_scheduler_node_polls_descriptors_past_1024() -> None:
    """The node's poll phase waits in its Poller (select.poll): a descriptor numbered past 1024
    (a program with many files or connections open) is polled like any other, where
    select.select refused it (ValueError)."""
    import os

    from lispvm.scheduler.node import LocalNode

    r, w = _high_pipe()
    try:
        node = LocalNode(None, None, [], 4000)  # type: ignore[arg-type]
        got: list[bytes] = []
        node.add_reader(r, lambda: got.append(os.read(r, 10)))
        assert node.pending() is False and got == []
        os.write(w, b"x")
        assert node.pending() is True and got == [b"x"]
        node.remove_reader(r)
        os.write(w, b"y")
        assert node.pending() is False and got == [b"x"]
    finally:
        os.close(r)
        os.close(w)


def test_poller_calls_writers_while_registered_and_readers_on_input() -> None:
    """A writer is called while its fd takes more and it is registered; only a readable fd
    counts as input (poll's result); remove forgets both."""
    import os

    from lispvm.scheduler.poller import Poller

    r, w = _high_pipe()
    try:
        p = Poller()
        calls: list[str] = []
        p.add_writer(w, lambda: calls.append("w"))
        p.add_reader(r, lambda: calls.append(f"r{os.read(r, 10)!r}"))
        assert p.poll(0) is False and calls == ["w"]  # writable only: no input
        p.remove_writer(w)
        os.write(w, b"z")
        assert p.poll(1.0) is True and calls == ["w", "rb'z'"]
        p.remove(r)
        os.write(w, b"z")
        assert len(p) == 0 and p.poll(0) is False and calls == ["w", "rb'z'"]
    finally:
        os.close(r)
        os.close(w)
