"""Mutable variables and processes (issue 12 item 14): a closure that assigns a captured variable
(a Box) behaves the same whatever the placement of the processes that call it, because processes
share no mutable state: a global holds a value (each process works on its own copy of its
variables, made at first touch), and messages and spawns carry copies (vm/boxes.py,
docs/language.md "Closures and messages")."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lispvm.vm import boxes, values
from lispvm.vm.lbc import Proto
from lispvm.vm.values import UNCLAIMED, Box, Closure, Cons, Vec
from support import run

COUNTERS = """
(def make-counter () (let ((n 0)) (fn () (set n (+ n 1)) n)))
(def counter (make-counter))
(def me (self))
(def worker (k) (send me (list k (counter) (counter) (counter))))
(def spawn-all (k) (if (< k 4) (do (spawn-on (mod k 2) worker k) (spawn-all (+ k 1)))))
(spawn-all 0)
(def collect (i acc) (if (== i 4) acc (collect (+ i 1) (cons (receive (m m)) acc))))
(def results (collect 0 nil))
(print (list/sort (list/map (fn (r) (head r)) results)) (list/map (fn (r) (tail r)) results))
(print (counter) (counter))
(def pass-on (f) (send me (list (f) (f))))
(counter)
(spawn pass-on counter)
(print (receive (m m)) (counter))
(def make-pair () (let ((v 10)) (list (fn () (set v (+ v 1)) v) (fn () v))))
(def pair (make-pair))
(def use-pair (p) (send me (list ((head p)) ((head p)) ((nth p 1)))))
(spawn-on 1 use-pair pair)
(print (receive (m m)) ((nth pair 1)))
(let ((local (make-counter)))
  (local)
  (spawn-on 1 (fn () (send me (list (local) (local)))))
  (local)
  (print (receive (m m)) (local)))
"""

# Each worker counts from the global's value (0): its own copy. The main process, which stored
# the global, keeps its variable. A closure sent or spawned carries the sender's current value.
COUNTERS_OUT = "(0 1 2 3) ((1 2 3) (1 2 3) (1 2 3) (1 2 3))\n1 2\n(4 5) 4\n(11 12 12) 10\n(2 3) 3\n"


@pytest.mark.parametrize("schedulers", [1, 2])
@pytest.mark.parametrize("mode", ["--no-jit", "default", "eager"])
def test_a_global_counter_does_not_depend_on_placement(schedulers: int, mode: str,
                                                       run_lisp: Callable[..., tuple[str, str, int]]) -> None:
    flags = ["--schedulers", str(schedulers)] + (["--no-jit"] if mode == "--no-jit" else [])
    env = {"LISPVM_JIT": "eager"} if mode == "eager" else {"LISPVM_JIT": ""}
    assert run_lisp(COUNTERS, flags=flags, env=env) == (COUNTERS_OUT, "", 0)


SHAPES = """
(def make-counter () (let ((n 0)) (fn () (set n (+ n 1)) n)))
(def me (self))
; a closure whose upvalue is a closure with a box (the copy once stopped at the outer one)
(def wrapped (let ((c (make-counter))) (fn () (c))))
(wrapped)
(spawn (fn (f) (send me (list (f) (f)))) wrapped)
(print (receive (m m)) (wrapped))
; a cycle: the box holds the closure that captured it
(def make-rec () (let ((f nil)) (set f (fn (n) (if (== n 0) 'done (f (- n 1))))) f))
(def rec (make-rec))
(spawn (fn (g) (send me (g 10))) rec)
(print (receive (m m)) (rec 3))
; deep: a closure with a box at the bottom of a list nested 3000 deep
(def nest (n x) (if (== n 0) x (nest (- n 1) (list x))))
(def dig (x) (if (list? x) (dig (head x)) x))
(def deep (nest 3000 (make-counter)))
(spawn (fn (d) (send me ((dig d)))) deep)
(print (receive (m m)) ((dig deep)) ((dig deep)))
; set of a global: the new value too
(def g (make-counter))
(set g (let ((c (make-counter))) (c) (c) c))
(spawn (fn () (send me (g))))
(print (receive (m m)) (g))
"""

SHAPES_OUT = "(2 3) 2\ndone done\n1 1 2\n3 3\n"


@pytest.mark.parametrize("jit", [False, True], ids=["nojit", "jit"])
def test_closures_in_messages_nested_cyclic_deep(jit: bool) -> None:
    assert run(SHAPES, jit=jit) == (SHAPES_OUT, "", 0)


def _proc(key: int) -> object:
    from lispvm.vm.process import Process
    from lispvm.vm.values import Pid

    return Process(Pid(0, key), None, [])


def test_the_owner_rule_directly() -> None:
    """touch(): a process uses its own boxes in place, claims an unclaimed one, and works on a
    copy of a template or of another process's box, the same copy every time."""
    p, q = _proc(1), _proc(2)
    mine = Box(5, boxes.key_of(p))
    assert boxes.touch(p, mine) is mine
    loose = Box(6)
    assert loose.owner == UNCLAIMED and boxes.touch(q, loose) is loose and loose.owner == boxes.key_of(q)
    copy = boxes.touch(q, mine)
    assert copy is not mine and copy.v == 5 and boxes.touch(q, mine) is copy
    copy.v = 50
    assert mine.v == 5
    proto = Proto("f", 0, False, 1)
    values.note_box()
    f = Closure(proto, (mine,))
    stored = boxes.for_global(p, f)
    t = stored.upvals[0]
    assert t is not mine and t.owner < 0 and boxes.touch(p, t) is mine  # p keeps its variable
    qt = boxes.touch(q, t)
    assert qt is not t and qt.v == 5 and boxes.touch(q, stored.upvals[0]) is qt
    assert boxes.for_global(p, 7) == 7 and boxes.for_message(p, Cons(1, None)).head == 1


def test_copies_are_iterative() -> None:
    """A message nested 100,000 deep with a box at the bottom copies without Python recursion."""
    p = _proc(3)
    proto = Proto("f", 0, False, 1)
    box = Box(1, boxes.key_of(p))
    x: object = Closure(proto, (box,))
    for _ in range(100_000):
        x = Cons(Vec((x,)), None)
    y = boxes.for_message(p, x)
    for _ in range(100_000):
        y = y.head.items[0]  # type: ignore[attr-defined]
    assert y.upvals[0] is not box and y.upvals[0].v == 1 and y.upvals[0].owner == UNCLAIMED  # type: ignore[attr-defined]


def test_an_unpickled_box_turns_message_copying_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """An OS process that never made a box but received one (a migrated process, a message)
    must copy boxes in what it sends from then on; copying is skipped until a box is seen."""
    import pickle

    data = pickle.dumps(Box(3, 7))
    monkeypatch.setattr(values, "BOXES_MADE", False)
    b = pickle.loads(data)
    assert (b.v, b.owner) == (3, 7) and values.BOXES_MADE


def test_shared_sublists_in_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    """A value whose lists share a tail is scanned once per cell (the scan once went round for
    ever on a tail it had seen), and a copy keeps the sharing."""
    monkeypatch.setattr(values, "BOXES_MADE", True)
    p = _proc(4)
    tail = Cons(1, Cons(2, None))
    x = Cons(Cons(0, tail), Cons(Cons(9, tail), None))
    assert boxes.for_message(p, x) is x  # no box: the value itself
    box = Box(5, boxes.key_of(p))
    f = Closure(Proto("f", 0, False, 1), (box,))
    y = boxes.for_message(p, Cons(Cons(f, tail), Cons(Cons(f, tail), None)))
    a, b = y.head, y.tail.head  # type: ignore[attr-defined]
    assert a.tail is b.tail and a.head is b.head and a.head.upvals[0] is not box


class _Poison:
    """Iterating it fails: it stands for a long value that a scan must not walk again."""

    def __iter__(self) -> object:
        raise AssertionError("the value stored before was scanned again")


def test_storing_onto_the_previous_value_does_not_rescan_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """(set log (cons x log)): the scan for boxes stops at the value the global held, which was
    found box-free when it was stored (else accumulating in a global is quadratic)."""
    from lispvm.vm.process import GlobalCell

    monkeypatch.setattr(values, "BOXES_MADE", True)
    p = _proc(5)
    cell = GlobalCell("log")
    poisoned = Vec(())
    poisoned.items = _Poison()  # type: ignore[assignment]  # (the constructor would iterate it)
    old = Cons(poisoned, None)
    cell.boxfree = old
    new = Cons(1, old)
    assert boxes.for_global(p, new, cell) is new and cell.boxfree is new
    with pytest.raises(AssertionError):
        boxes.for_global(p, Cons(1, old), GlobalCell("other"))  # another global: scanned
