"""Placement across schedulers: a crowd of runnable processes as growth evidence, which processes
may move (scheduler/balance.py crowd_pass, take_movable; scheduler/hub.py grow_for_crowd)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from lispvm.scheduler import balance, hub
from lispvm.scheduler.balance import BACKLOG, CROWD, CROWD_MS, Balancing
from lispvm.scheduler.clock import VirtualClock
from lispvm.scheduler.kernel import RUNNABLE, YIELDED
from lispvm.vm.values import Pid
from support import run


class _Node(Balancing):
    """Just enough of a cluster node for the balancing decisions."""

    def __init__(self) -> None:
        self.init_balancing()
        self.clock = VirtualClock()
        self.main_pid = Pid(0, 1)
        self.sched = SimpleNamespace(io=None)


def _proc(serial: int, *, reds: int = 0, mailbox: int = 0, yielded: bool = False) -> Any:
    """A runnable process as take_movable sees it: started (reds), its mailbox, CPU-bound or not."""
    return SimpleNamespace(n=serial, pid=Pid(0, serial), status=RUNNABLE, sched=YIELDED if yielded else None,
                           pc=5, frames=[None, None], cl=SimpleNamespace(proto=object()), reds=reds,
                           mailbox=list(range(mailbox)) if mailbox else None, mbhead=0)


def test_a_crowd_is_a_run_queue_that_stays_long_for_crowd_ms() -> None:
    node = _Node()
    assert not node.crowd_pass()  # the first long pass only starts the count
    node.clock.now += CROWD_MS / 2
    assert not node.crowd_pass() and not node.crowded
    node.clock.now += CROWD_MS / 2
    assert node.crowd_pass() and node.crowded
    node.crowd_over()  # one short pass ends it: a ring's set-up is a crowd for a pass or two
    assert not node.crowded and node.crowd_since is None
    assert not node.crowd_pass()


def test_in_a_crowd_only_processes_with_a_backlog_move_and_the_main_process_never() -> None:
    """Actors holding a message or two (pairs pinging each other) stay: their messages would
    cross sockets from then on; workers fed faster than they compute may go."""
    node = _Node()
    chatty = [_proc(10 + i, reds=5, mailbox=1) for i in range(CROWD)]
    fed = [_proc(100 + i, reds=5, mailbox=BACKLOG) for i in range(4)]
    main = _proc(1, reds=5, mailbox=BACKLOG)
    runq = balance.deque([main, *chatty, *fed])
    assert node.take_movable(runq, 10) == []  # not a crowd yet: only CPU-bound ones would go
    node.crowded = True
    taken = node.take_movable(runq, 10)
    assert [p.n for p in taken] == [103]  # one at a time (BACKLOG_SHIP): test below
    assert main in runq and all(p in runq for p in chatty)
    taken = node.take_movable(runq, 10, fork=True)  # a fork copies them for free: all of them
    assert sorted(p.n for p in taken) == [100, 101, 102]
    assert main in runq and all(p in runq for p in chatty)


def test_an_idle_peer_gets_one_process_with_a_backlog_at_a_time() -> None:
    """fork-join workers fed by the main process: a peer whose workers ran out of messages
    between two batches said idle, and took half of this run queue (with hundreds of messages
    each) at once: it then had 24 workers of 32 and this scheduler finished early and waited.
    One at a time, each after an idle report of its own, the shares meet where both are busy."""
    assert balance.BACKLOG_SHIP == 1
    node = _Node()
    fed = [_proc(100 + i, reds=5, mailbox=BACKLOG * 20) for i in range(CROWD)]
    runq = balance.deque(fed)
    node.crowded = True
    assert len(node.take_movable(runq, len(runq) // 2)) == 1
    assert len(runq) == CROWD - 1
    cpu = [_proc(200 + i, reds=4000, yielded=True) for i in range(4)]  # CPU-bound ones: by share
    for p in cpu:
        p.frames = [None]  # (its function is its current closure's: _origin)
    runq.extend(cpu)
    taken = node.take_movable(runq, 4)
    assert sorted(p.n for p in taken) == [200, 201, 202, 203]


def test_a_fork_in_a_crowd_takes_processes_not_started_yet_and_leaves_started_ones() -> None:
    """A fork copies the processes it takes for free: jobs not started yet go with it (their
    pid keys are never given twice), started ones without a backlog stay."""
    node = _Node()
    started = [_proc(10 + i, reds=3) for i in range(CROWD)]
    fresh = [_proc(100 + i) for i in range(CROWD)]
    runq = balance.deque([*started, *fresh])
    taken = node.take_movable(runq, len(runq) // 2, fork=True, spread=True)
    assert taken and all(p in fresh for p in taken) and all(p in runq for p in started)
    assert CROWD // 4 <= len(taken) <= 3 * CROWD // 4  # about half of them (test below)
    short = balance.deque(fresh[:CROWD - 1])  # fewer than a crowd: nothing but CPU-bound ones
    assert node.take_movable(short, 8, fork=True) == []


def test_a_fork_for_a_used_up_budget_takes_one_stretch_of_a_ring() -> None:
    """The main process spawning a ring of 2,000 nodes at once uses up its budget: the fork
    then takes the last half of the nodes, one stretch of the ring (two hops a lap cross a
    socket); hashed places (the crowd's fair half) put every other hop on one: 2.2 to 4.8 times
    the wall time of 20,000 hops."""
    node = _Node()
    ring = [_proc(100 + i, mailbox=1) for i in range(2000)]
    runq = balance.deque(ring)
    taken = node.take_movable(runq, len(runq) // 2, fork=True)
    assert sorted(p.n for p in taken) == [100 + i for i in range(1000, 2000)]
    assert list(runq) == ring[:1000]


def _fib_frontier(n: int, levels: int) -> list[int]:
    """The arguments of the fib processes runnable after `levels` passes of fib actors (each
    spawns fib(n-1) then fib(n-2)): the run queue's order."""
    front = [n]
    for _ in range(levels):
        front = [m for k in front if k >= 2 for m in (k - 1, k - 2)]
    return front


def _fib_calls(n: int, memo: dict[int, int] = {}) -> int:  # noqa: B006 - a memo on purpose
    if n not in memo:
        memo[n] = 1 if n < 2 else 1 + _fib_calls(n - 1) + _fib_calls(n - 2)
    return memo[n]


@pytest.mark.parametrize("levels", [4, 6, 8, 10])
def test_a_fork_takes_a_fair_half_of_a_trees_work(levels: int) -> None:
    """The run queue's order is not fair: fib actors' lies larger subtree first at every level,
    so its last half (what a fork took before) held 38% of the work, and every other one too;
    the scheduler that kept the rest did 1.6 times the other's share (hub 100 ms, worker 64)."""
    node = _Node()
    front = _fib_frontier(19, levels)
    fresh = [_proc(1000 + i) for i in range(len(front))]
    work = {p.n: _fib_calls(k) for p, k in zip(fresh, front, strict=True)}
    runq = balance.deque(fresh)
    taken = node.take_movable(runq, len(runq) // 2, fork=True, spread=True)
    share = sum(work[p.n] for p in taken) / sum(work.values())
    assert 0.45 <= share <= 0.55, share
    assert 0.4 <= len(taken) / len(fresh) <= 0.6


def test_a_fork_for_a_crowd_alone_needs_work_to_take(monkeypatch: pytest.MonkeyPatch) -> None:
    """grow_for_crowd starts no scheduler when nothing could go with the fork, and looks again
    only after another CROWD_MS (each look scans the run queue)."""
    forks: list[int] = []
    monkeypatch.setattr(hub, "fork_worker", lambda *a: forks.append(1) or True)
    h = hub.Hub.__new__(hub.Hub)
    _Node.__init__(h)  # the balancing state, a virtual clock
    h.sched = SimpleNamespace(io=None, runq=balance.deque(_proc(10 + i, reds=3) for i in range(CROWD)),
                              vm=None)
    h.workers, h.dead, h.nschedulers, h.stopping, h.started_any = {}, set(), 2, False, False
    h.full_budget, h.trace_path, h.jit, h.pokeable, h.secret, h.argv = 4000, None, True, False, b"", []
    h.module = h.globals = h.out = h.err = None
    h.names, h.forked, h.moved, h.loc = {}, set(), {}, {}
    h.sockdir, h.trace = "/nonexistent", None
    h.crowd_since, h.crowded = 0.0, True
    h.clock.now = 10.0
    h.grow_for_crowd()
    assert forks == [] and not h.crowded and h.crowd_since == 10.0 and not h.started_any
    h.sched.runq.append(_proc(99))
    h.sched.runq.extend(_proc(200 + i) for i in range(CROWD))
    h.crowded = True
    h.clock.now = 20.0
    h.grow_for_crowd()
    assert forks == [1] and h.started_any and h.crowd_since == 20.0 and not h.crowded


FIB_ACTORS = """
(def union (a b) (list/filter (fn (x) (not (list/contains? x b))) a))
(def fib (n parent)
  (if (< n 2)
      (send parent (list n (list (sys/scheduler-id))))
      (do (spawn fib (- n 1) (self))
          (spawn fib (- n 2) (self))
          (let ((a (receive (x x))) (b (receive (y y))))
            (send parent (list (+ (head a) (head b))
                               (list/sort (append (union (nth a 1) (nth b 1)) (nth b 1)))))))))
(spawn fib (parse-int (head (sys/args))) (self))
(receive ((list v scheds) (print v scheds)))
"""


def test_a_tree_of_short_lived_processes_spreads_over_two_schedulers() -> None:
    """fib actors never use up a budget (each runs briefly), so only the crowd starts the second
    scheduler; its fork takes half the processes not started yet, whose subtrees then run
    there. (Before the crowd evidence, everything ran on scheduler 0.)"""
    out, err, status = run(FIB_ACTORS, ("17",), schedulers=2)
    assert status == 0, err
    assert out == "1597 (0 1)\n"


THREAD_RING = """
(def node (id next)
  (receive
    ((list 'next p) (node id p))
    ((list 'where main) (send main (sys/scheduler-id)) (node id next))
    ((list 'token k main)
     (if (== k 0) (send main 'done) (send next (list 'token (- k 1) main)))
     (node id next))))
(def nodes (list/map (fn (i) (spawn node i nil)) (list/range 100)))
(loop ((ps nodes)) (when (not (empty? ps))
  (send (head ps) (list 'next (if (empty? (tail ps)) (head nodes) (head (tail ps)))))
  (recur (tail ps))))
(send (head nodes) (list 'token 20000 (self)))
(receive ('done 'ok))
(list/map (fn (p) (send p (list 'where (self)))) nodes)
(print (list/reduce + 0 (list/map (fn (p) (receive (s s))) nodes)))
"""


def test_a_crowd_that_outlasts_a_new_schedulers_share_starts_the_next_one() -> None:
    """On 4 schedulers the crowd starts more than one (it started only scheduler 1: the rest
    came only from CPU-bound processes, which fib actors never are)."""
    out, err, status = run(FIB_ACTORS, ("19",), schedulers=4)
    assert status == 0, err
    value, scheds = out.split(" ", 1)
    assert value == "4181" and len(scheds.strip("()\n").split()) >= 3, out


def test_a_rings_set_up_is_no_crowd() -> None:
    """100 nodes spawned at once are runnable for a pass or two, far less than CROWD_MS: every
    node of the ring stays on scheduler 0 (moving them put every hop on a socket)."""
    out, err, status = run(THREAD_RING, schedulers=2)
    assert (out, status) == ("0\n", 0), err
