"""Actors in compiled code (issue 16, Savina on one scheduler): a function whose last act is a
`receive` with code before it (send, then wait: ping-pong, chameneos, a worker) is resumed in
compiled code at its wait, like a server loop, with every register of its frame kept across the
wait; a function spawned often starts its processes in compiled code."""

from __future__ import annotations

import re

import pytest

from support import fast_tier, run, spy_compiled, spy_made

# Each shape below waits hundreds of times, so that after its first wait (unwound) every later
# one is the resumable wait: a wrong register, a prefix run twice or a lost scan position shows
# in the printed sums.
ACTORS = """
(def echo () (receive ((list from x) (send from x) (echo)) ('stop 'ok)))
(def e (spawn echo))
(def me (self))
; code before the receive, a let-bound temporary read in a clause after many waits
(def step (n acc)
  (if (== n 0) acc
      (let ((t (* n 3)) (u (list 'x n)))
        (send e (list me t))
        (receive (v (step (- n 1) (+ acc v t (nth u 1))))))))
(print (step 300 0))
; a selective receive after a send: the other messages stay, in order, and the send before it
; runs once per call (a prefix run again on a resume would send twice)
(def sel (n got)
  (send e (list me (list 'want n)))
  (send me (list 'noise n))
  (receive ((list 'want k) (if (== k 1) (reverse (cons k got)) (sel (- k 1) (cons k got))))))
(print (length (sel 200 nil)))
(def drain (acc) (receive ((list 'noise k) (drain (+ acc k))) (after 0 acc)))
(print (drain 0))
; a worker that tests its count before waiting, as fork-join does
(def worker (main m acc)
  (if (== m 0) (send main acc)
      (receive (x (worker main (- m 1) (+ acc (* x x)))))))
(def ws (list/map (fn (i) (spawn worker me 50 i)) (list/range 8)))
(def feed (j) (when (< j 50) (list/map (fn (w) (send w j)) ws) (feed (+ j 1))))
(feed 0)
(print (list/reduce + 0 (list/map (fn (w) (receive (s s))) ws)))
(send e 'stop)
"""

ACTORS_OUT = "316050\n200\n20100\n323428\n"  # 7 * (1 + ... + 300); noise 1 + ... + 200; 8 * 40425 + 28


def test_actor_steps_resume_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both tiers print the same, and the compiled run really took the resumable shape for the
    functions with code before their receive (the servers' set of the tier)."""
    servers = spy_compiled(monkeypatch, lambda tier, p: p in tier.servers)
    assert run(ACTORS, jit=True) == (ACTORS_OUT, "", 0)
    assert {"echo", "step", "sel"} <= set(servers), servers
    assert run(ACTORS, jit=False) == (ACTORS_OUT, "", 0)
    assert run(ACTORS, jit=True, schedulers=2) == (ACTORS_OUT, "", 0)


def test_resumable_receive_shapes() -> None:
    """Which functions are resumed compiled at their wait: code that falls into a last receive
    without `after` whose clauses end the function. A receive inside one branch, one whose value
    is used after it, one with `after`, or two receives stay scans whose wait is the
    interpreter's."""
    src = """
    (def ping (p n) (if (== n 0) 'done (do (send p n) (receive ('pong (ping p (- n 1)))))))
    (def held (p n) (let ((t (* n 2))) (send p t) (receive (x (+ x t)))))
    (def branch (n) (if (> n 0) (receive (x x)) 0))
    (def used (n) (print (receive (x x))) (used n))
    (def timed (p) (send p 1) (receive (x x) (after 10 'none)))
    (def two (p) (send p 1) (+ (receive (a a)) (receive (b b))))
    """
    with fast_tier(src) as (tier, by_name):
        for name in ("ping", "held"):
            assert tier.compile(by_name[name]) and tier.compiled[by_name[name]].wait > 0, name
            source = tier.compiled[by_name[name]].source  # type: ignore[attr-defined]
            assert "return _WAITING" in source and "_p.regs[:] =" in source, source
        for name in ("branch", "used", "timed", "two"):
            assert tier.compile(by_name[name]) and by_name[name] not in tier.servers, name
        assert tier.servers == {by_name["ping"], by_name["held"]}


SPAWNED = """
(def work (x) (loop ((i 0) (a x)) (if (== i 40) a (recur (+ i 1) (mod (+ (* a 31) i) 1000003)))))
(def child (main) (receive (x (send main (work x)))))
(def pair (main) (send main (+ (receive (a a)) (receive (b b)))))
(def me (self))
(loop ((i 0)) (when (< i 100) (send (spawn child me) i) (recur (+ i 1))))
(print (loop ((i 0) (acc 0)) (if (== i 100) acc (recur (+ i 1) (+ acc (receive (s s)))))))
(loop ((i 0)) (when (< i 100) (let ((p (spawn pair me))) (send p i) (send p 1)) (recur (+ i 1))))
(print (loop ((i 0) (acc 0)) (if (== i 100) acc (recur (+ i 1) (+ acc (receive (s s)))))))
"""


def test_a_function_spawned_often_starts_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Processes that each run their function too briefly for a budget to end (fork-join
    creation) get it compiled once it was spawned HOT_SPAWNS times, and the next ones start in
    compiled code (their first pc is the GOFAST tuple after the code), also one with two
    receives, whose waits give its frame back (FastTier.parking). Both tiers print the same."""
    from lispvm.scheduler import kernel

    starts: dict[str, list[int]] = {}
    real = kernel.Scheduler.spawn

    def spy(self: kernel.Scheduler, parent: object, fn: object, args: list, link: bool, where: object) -> object:
        pid = real(self, parent, fn, args, link, where)  # type: ignore[arg-type]
        proc = self.procs[pid.key]
        starts.setdefault(proc.cl.proto.name, []).append(proc.pc)
        return pid

    monkeypatch.setattr(kernel.Scheduler, "spawn", spy)
    interpreted = run(SPAWNED, jit=False)
    starts.clear()
    out = run(SPAWNED, jit=True)
    assert out == interpreted and out[0].split()[1] == "5050", out
    child, pair = starts["child"], starts["pair"]
    hot = kernel.HOT_SPAWNS
    assert set(child[:hot - 1]) == {0} and child[-1] > 0 and len(set(child[hot:])) == 1, child
    assert set(pair[:hot - 1]) == {0} and pair[-1] > 0 and len(set(pair[hot:])) == 1, pair


PARKS = """
(def pair (main) (send main (+ (receive (a a)) (receive (b b)))))
(def waiter (main) (send main (list 'w (receive ('never 1) (after 2 'timeout)))))
(def bad (main) (send main (+ (receive (a a)) 'x)))
(def sel (main k) (send main (list 's k (receive ((list 'b x) x)) (receive (y y)))))
(def me (self))
(def rest (ms) (receive ('never nil) (after ms nil)))
(def spawn-n (f n) (loop ((i 0) (acc nil)) (if (== i n) (reverse acc) (recur (+ i 1) (cons (spawn f me) acc)))))
; each process runs (and waits: no message yet) before anything is sent to it
(def ps (spawn-n pair 60))
(rest 1)
(list/map (fn (p) (send p 3) (send p 4)) ps)
(print (loop ((i 0) (acc 0)) (if (== i 60) acc (recur (+ i 1) (+ acc (receive (s s)))))))
(def ws (spawn-n waiter 40))
(print (loop ((i 0) (acc nil)) (if (== i 40) (length acc) (recur (+ i 1) (cons (receive ((list 'w 'timeout) 1)) acc)))))
(def ks (spawn-n pair 40))
(rest 1)
(def ms (list/map (fn (p) (monitor p)) ks))
(list/map (fn (p) (send p 1) (exit p 'stop)) ks)
(print (loop ((i 0) (acc 0)) (if (== i 40) acc (recur (+ i 1) (+ acc (receive ((list 'DOWN r p 'stop) 1)))))))
(def bs (spawn-n bad 35))
(rest 1)
(list/map (fn (p) (send p 1)) bs)
(rest 5)
(def ss (list/map (fn (k) (spawn sel me k)) (list/range 40)))
(rest 1)
(list/map (fn (p) (send p (list 'a 1)) (send p (list 'b 2))) ss)
(def got (m) (receive ((list 's k x y) (+ k x (head (tail y)))) (after m nil)))
(print (loop ((i 0) (acc 0)) (if (== i 40) acc (recur (+ i 1) (+ acc (got 1000))))))
"""


def test_a_process_started_compiled_waits_by_giving_its_frame_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """A function with a receive that is not a server loop, spawned often, starts compiled and
    its waits give the frame back (vm/loopsupport.py _Parked) to the interpreter's RECVWAIT: a
    second receive after the first, an `after` that times out, a kill while waiting, a crash
    after the wait and a selective receive that leaves a message behind print and report what
    the interpreter does."""
    from lispvm.vm import loopsupport

    parked: list[int] = []
    real = loopsupport._Parked.__init__

    def spy(self: object, pc: int, regs: list) -> None:
        parked.append(len(regs))
        real(self, pc, regs)  # type: ignore[arg-type]

    monkeypatch.setattr(loopsupport._Parked, "__init__", spy)
    interpreted = run(PARKS, jit=False)
    assert interpreted[0] == "420\n40\n40\n900\n" and interpreted[2] == 0, interpreted
    assert interpreted[1].count("crashed: badarg: +: ") == 35, interpreted
    assert not parked
    assert run(PARKS, jit=True) == interpreted
    assert len(parked) >= 60 + 40 + 40 + 35 + 40 - 4 * 32, len(parked)


WAKE_EDGES = """
(def collect (n acc) (receive ((list 'v x) (if (== n 1) (+ acc (head x)) (collect (- n 1) (+ acc (head x)))))))
(def me (self))
(def echo () (receive ((list from x) (send from x) (echo))))
(def e (spawn echo))
; each message wakes its receiver: the feeder waits for an echo before the next one
(def feed (to i bad)
  (when (> i 0)
    (send to (list 'v (if (== i bad) 5 (list i))))
    (send e (list (self) 'go))
    (receive ('go (feed to (- i 1) bad)))))
(spawn feed me 200 0)
(print (collect 200 0))
(spawn feed me 200 50)
(print (try (collect 200 0) (catch e (list 'caught (nth e 1)))))
(def bad (n) (receive ((list 'v x) (bad (+ n (head x))))))
(def b (spawn bad 0))
(monitor b)
(spawn feed b 200 20)
(print (receive ((list 'DOWN r p why) (nth why 1))))
"""


@pytest.mark.parametrize("jit", [True, False])
def test_a_woken_receive_loop_returns_and_fails_as_interpreted(jit: bool) -> None:
    """A compiled receive loop woken by each of hundreds of messages (resumed at the start of
    the loop's run, vm/loopgen.py) returns its value to its caller, raises an error into a
    caller's `try`, and crashes at the clause's own position, as the interpreter does."""
    crash = "test.lisp:16:46: process #<pid 0.5> crashed: badarg: head: expected a non-empty list, got 5\n"
    assert run(WAKE_EDGES, jit=jit) == ("20100\n(caught badarg)\nbadarg\n", crash, 0)


BURST = """
(def main (self))
(def sink (n) (receive (x (if (== x 'end) (send main n) (sink (+ n 1))))))
(def s (spawn (fn () (send main 'ready) (sink 0))))
(receive ('ready nil))
(def burst (i) (when (< i 100) (send s i) (burst (+ i 1))))
(burst 0)
(send s 'end)
(print (receive (n n)))
"""


def test_a_receive_woken_once_by_many_messages_is_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tier counts the messages that woke an interpreted receive, not the wake-ups: a burst
    (a batch from another scheduler wakes its receiver once for hundreds) compiles it at once."""
    compiled = spy_compiled(monkeypatch)
    assert run(BURST, jit=True) == ("100\n", "", 0)
    assert "sink" in compiled, compiled


WAITERS = """
(def waiter (parent) (send parent 'up) (receive ('stop 'ok)))
(def me (self))
(def ps (list/map (fn (i) (spawn waiter me)) (list/range 100)))
(def wait-up (k) (if (== k 0) 'ok (receive ('up (wait-up (- k 1))))))
(wait-up 100)
(list/map (fn (p) (send p 'stop)) ps)
(print 'done)
"""


def test_a_waiting_process_started_compiled_is_as_small_as_an_interpreted_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """bench_memory's waiter (code before its receive) spawned often starts at its GOFAST tuple
    and, its mailbox empty, is entered interpreted: its registers are then a list of exactly
    the frame's size, as the interpreter's own are (`[*args, *pad]` over-allocated 32 bytes a
    process). And a Process is 26 slots: 240 bytes, where 27 were allocated as 256."""
    import sys

    from lispvm.scheduler import kernel
    from lispvm.vm.process import WAIT, Process

    sizes: list[tuple[int, int]] = []
    real = kernel.interp.run

    def spy(proc: Process, budget: int, host: object) -> int:
        outcome = real(proc, budget, host)
        if outcome == WAIT and proc.fn == "waiter":
            sizes.append((sys.getsizeof(proc.regs), sys.getsizeof([None] * len(proc.regs))))
        return outcome

    monkeypatch.setattr(kernel.interp, "run", spy)
    assert run(WAITERS, jit=True) == ("done\n", "", 0)
    assert len(sizes) >= 100 and all(a == b for a, b in sizes), sizes
    assert sys.getsizeof(Process(None, None, [])) <= 240


TAKES = """
(def drain (acc) (receive ((list 'noise j) (drain (+ acc j))) (after 0 acc)))
(def counter (k n)
  (receive ((list 'inc d) (counter (+ k d) (+ n 1)))
           ((list 'get from) (send from (list k n (drain 0))))))
(def me (self))
(def c (spawn counter 0 0))
(loop ((i 0)) (when (< i 300)
  (send c (list 'inc i))
  (when (== (mod i 7) 0) (send c (list 'noise i)))
  (recur (+ i 1))))
(send c (list 'get me))
(print (receive (r r)))
"""


def test_a_compiled_receive_takes_from_a_long_mailbox(monkeypatch: pytest.MonkeyPatch) -> None:
    """A compiled receive loop takes its matches from a mailbox of hundreds (RECVTAKE written
    out: the oldest message, the list compacted past 32 taken, the last one emptying it) with
    unmatched messages between them (taken from the middle by Process.take), and leaves the
    unmatched ones in order for a later receive: both tiers print the same."""
    interpreted = run(TAKES, jit=False)
    assert interpreted == ("(44850 300 6321)\n", "", 0)
    monkeypatch.setenv("LISPVM_JIT", "eager")
    servers = spy_compiled(monkeypatch, lambda tier, p: p in tier.servers)
    assert run(TAKES, jit=True) == interpreted
    assert "counter" in servers, servers


SENDS = """
(def echo () (receive ((list from x) (send from x) (echo))))
(register 'echoer (spawn echo))
(def me (self))
(def make-counter () (let ((n 0)) (fn () (set n (+ n 1)) n)))
(def ask (to x) (send to (list me x)) (receive (v v)))
(def round (to x) (let ((r (send to (list me x)))) (list (nth r 1) (receive (v v)))))
(print (ask (whereis 'echoer) 1) (ask 'echoer 2) (round 'echoer 0) (round (whereis 'echoer) nil))
(def c (make-counter))
(c)
(def c2 (ask 'echoer c))
(print (c) (c2) (c) (c2))
(print (try (send 5 'x) (catch e e)) (try (send 'nobody 'x) (catch e e)))
"""


def test_a_compiled_send_is_the_builtins(monkeypatch: pytest.MonkeyPatch) -> None:
    """`send` in compiled code goes to the host directly for a pid: its value is the message
    (nil and false included), and a name, a closure over an assigned variable (copied with its
    box: the two counters go their own ways) or a wrong destination (its error) take the
    builtin. Both tiers print the same."""
    interpreted = run(SENDS, jit=False)
    assert interpreted[1:] == ("", 0) and interpreted[0].split("\n")[:2] == ["1 2 (0 0) (nil nil)", "2 2 3 3"], \
        interpreted
    monkeypatch.setenv("LISPVM_JIT", "eager")
    compiled = spy_compiled(monkeypatch)
    assert run(SENDS, jit=True) == interpreted
    assert {"ask", "round"} <= set(compiled), compiled


PEERS = """
(def pick (vs k) (vec/get vs (mod k (vec/len vs))))
(def me-too () (list (self) (pid? (self))))
(def vs (list/to-vec (list 'a 'b 'c)))
(print (pick vs 4) (pick vs 0) (== (head (me-too)) (self)) (nth (me-too) 1))
(print (try (vec/get vs 3) (catch e e)) (try (vec/get vs -1) (catch e e)) (try (vec/get vs 1.0) (catch e e)))
(print (try (vec/get (list 1) 0) (catch e e)) (try (vec/len 'x) (catch e e)) (try (pick nil 1) (catch e e)))
(print (vec/get (vec/set vs 1 'z) 1) (vec/len (vec/push vs 'd)))
"""


def test_compiled_self_and_vector_reads_are_the_builtins(monkeypatch: pytest.MonkeyPatch) -> None:
    """`self`, `vec/get` and `vec/len` written out in compiled code (an actor picking a peer)
    give what the builtins give, errors included (an index out of range, negative or not an
    int, a list or a symbol for a vector; a persistent vector after vec/set): both tiers print
    the same."""
    interpreted = run(PEERS, jit=False)
    assert interpreted[1:] == ("", 0) and interpreted[0].startswith("b a true true\n(error badarg"), interpreted
    monkeypatch.setenv("LISPVM_JIT", "eager")
    compiled = spy_compiled(monkeypatch)
    assert run(PEERS, jit=True) == interpreted
    assert {"pick", "me-too"} <= set(compiled), compiled


# A compiled receive that is not a server loop, waiting: two receives in one expression (fib
# actors), a collecting `loop` around a receive at the top level (fork-join), a selective one
# that leaves other messages, one with `after` in a loop, an error after the second receive, a
# process killed in its second wait. Each waits, and is woken by hundreds of messages.
RESUMES = """
(def fib (n parent)
  (if (< n 2) (send parent n)
      (do (spawn fib (- n 1) (self)) (spawn fib (- n 2) (self))
          (send parent (+ (receive (a a)) (receive (b b)))))))
(spawn fib 11 (self))
(print (receive (v v)))
(def me (self))
(def child (i) (send me (list 'noise i)) (send me (list 'r i (* i i))))
(loop ((i 0)) (when (< i 300) (spawn child i) (recur (+ i 1))))
(print (loop ((i 0) (acc 0)) (if (== i 300) acc (recur (+ i 1) (+ acc (receive ((list 'r k v) (+ k v))))))))
(print (loop ((i 0) (acc 0)) (if (== i 300) acc (recur (+ i 1) (+ acc (receive ((list 'noise k) k)))))))
(def late (i) (timer/sleep 1) (send me (list 'late i)))
(loop ((i 0)) (when (< i 100) (spawn late i) (recur (+ i 1))))
(print (loop ((i 0) (acc 0)) (if (== i 100) acc (recur (+ i 1) (+ acc (receive ((list 'late k) k)))))))
(print (loop ((i 0) (miss 0)) (if (== i 3) miss (recur (+ i 1) (+ miss (receive ('never 0) (after 1 1)))))))
(def adder (parent) (send parent 'up) (send parent (+ (receive (a (send parent 'got) a)) (receive (b b)))))
(def start-adder (a) (let ((p (spawn adder me))) (receive ('up nil)) (send p a) (receive ('got nil)) p))
(def sum-of (a b) (send (start-adder a) b) (receive (s s)))
(print (loop ((i 0) (acc 0)) (if (== i 200) acc (recur (+ i 1) (+ acc (sum-of i 1))))))
(exit (start-adder 1) 'stop)
(send (start-adder 1) 'x)
(timer/sleep 20)
(print 'end)
"""

RESUMES_OUT = "89\n8999900\n44850\n4950\n3\n20100\nend\n"


def test_a_compiled_receive_goes_on_compiled_after_its_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a wait in a compiled receive that is not a server loop, the woken scan and the code
    after it run compiled (FastTier.resume), and a `loop` around a receive runs compiled (its
    OSR function waits by giving its frame back): the same output and crash as the
    interpreter's, on one scheduler and on two (where a waiting process may move)."""
    from lispvm.vm import fast
    from lispvm.vm.opcodes import decode_fields

    resumed = spy_made(monkeypatch, "resume")
    loops: list[str] = []  # the OSR functions made of loops with a receive in them
    real_osr = fast.FastTier.osr

    def spy_osr(self: fast.FastTier, p: object, head: int) -> object:
        new = (p, head) not in self.osrs
        fn = real_osr(self, p, head)
        code = p.code  # type: ignore[attr-defined]
        body = code[head:head + decode_fields(code[head - 1])[1]["Bx"]]
        if new and fn is not None and any(decode_fields(w)[0].name == "RECVSTART" for w in body):
            loops.append(p.name)  # type: ignore[attr-defined]
        return fn

    monkeypatch.setattr(fast.FastTier, "osr", spy_osr)
    interpreted = run(RESUMES, jit=False)
    assert interpreted[0] == RESUMES_OUT and interpreted[2] == 0, interpreted
    assert "crashed: badarg: +: " in interpreted[1], interpreted
    assert run(RESUMES, jit=True) == interpreted
    assert {"fib", "adder", "main"} <= set(resumed), resumed
    assert loops.count("main") == 4, loops  # the top level's four loops around a receive
    two = run(RESUMES, jit=True, schedulers=2)  # pids are numbered per scheduler there
    assert re.sub(r"#<pid [0-9.]+>", "", two[1]) == re.sub(r"#<pid [0-9.]+>", "", interpreted[1])
    assert (two[0], two[2]) == (RESUMES_OUT, 0)


FORKS = """
(def me (self))
(def child (i) (send me (* i i)))
(loop ((i 0)) (when (< i 300) (spawn child i) (recur (+ i 1))))
(print (loop ((i 0) (acc 0)) (if (== i 300) acc (recur (+ i 1) (+ acc (receive (s s)))))))
(def linked (loop ((i 0) (ps nil)) (if (== i 50) ps (recur (+ i 1) (cons (spawn-link child i) ps)))))
(print (length linked) (loop ((i 0) (acc 0)) (if (== i 50) acc (recur (+ i 1) (+ acc (receive (s s)))))))
(def watched (loop ((i 0) (n 0)) (if (== i 20) n (do (spawn-monitor child i) (recur (+ i 1) (+ n 1))))))
(print watched)
(loop ((i 0)) (when (< i 3) (spawn (if (== i 2) 'oops child) i) (recur (+ i 1))))
"""


def test_a_loop_that_spawns_runs_compiled_from_its_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A `loop` whose body spawns (a fork loop: thousands of processes, once) goes into compiled
    code at its entry (its OSR function), not after a budget of interpreted turns; its values,
    the processes it starts and the error of a bad spawn in it are the interpreter's."""

    loops = spy_made(monkeypatch, "osr")
    interpreted = run(FORKS, jit=False)
    assert interpreted[0] == "8955050\n50 40425\n20\n" and interpreted[2] == 1, interpreted
    assert "spawn: expected a function" in interpreted[1], interpreted
    assert not loops
    assert run(FORKS, jit=True) == interpreted
    # the three loops that spawn (300, 50 and 20 turns: under one budget) and the collecting ones
    assert loops.count("main") >= 6, loops
