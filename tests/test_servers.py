"""Servers, supervisors and introspection (LANGUAGE.md sections 12 and 13) where
tests/programs/servers.lisp cannot go: real crashes (their reports on standard error), an
uncaught gen/call error, a flood of timed-out calls, a scheduler that dies while a process asks
about it, and the guide's example (docs/servers.md). Each test is one or two `lispvm run`s, on
one and on three schedulers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_lisp_in

REPO = Path(__file__).resolve().parents[1]
SCHEDULERS = [pytest.param("1", id="one"), pytest.param("3", id="three")]


CRASHES = """
(trap-exit true)
(def kind (e) (head (tail e)))

; a handler that raises: the server crashes (one report), the caller gets noproc with the reason
(def h (kind msg from st) (if (== msg 'boom) (head nil) (list 'reply msg st)))
(def s (gen/start (fn () nil) h))
(print (gen/call s 'ping))
(def reason-in (e) (int? (str/find (nth e 2) "ended with reason (error badarg \\"head: ")))
(print (try (gen/call s 'boom) (catch e (list (kind e) (reason-in e)))))
(receive ((list 'EXIT p why) :when (== p s) (print "EXIT" (kind why))))

; a handler that returns nonsense: a badarg crash that says what it returned
(def s2 (gen/start (fn () nil) (fn (k m f st) 'nonsense)))
(print (try (gen/call s2 'x) (catch e (kind e))))
(receive ((list 'EXIT p why) :when (== p s2) (print "EXIT" (kind why) (str/find (nth why 2) "nonsense"))))

; init raises: gen/start raises the same error in a caller that traps exits
(print (try (gen/start (fn () (+ 1 'a)) h) (catch e (kind e))))
(receive ((list 'EXIT _ why) (print "EXIT" (kind why))))

; a child that crashes with an error, again and again: restarts, then shutdown
(def crasher-init () (register 'crasher (self)) nil)
(def crasher (kind msg from st) (head msg))
(def sup (sup/start 'one-for-one 2 60000 (list (list 'c (fn () (gen/start crasher-init crasher)) 'permanent))))
(def poke (old)
  (let ((p (whereis 'crasher)))
    (if (and p (!= p old)) (do (gen/cast p nil) p) (do (timer/sleep 2) (poke old)))))
(poke (poke (poke nil)))
(receive ((list 'EXIT p why) :when (== p sup) (print "supervisor" why)))

; a start function that fails at sup/start: its error, in the caller
(print (try (sup/start 'one-for-all 1 100 (list (list 'ok (fn () (spawn-link (fn () (receive (_ nil))))) 'permanent)
                                                (list 'bad (fn () 42) 'permanent)))
            (catch e (nth e 2))))
(print (length (list/filter (fn (p) (!= p (self))) (sys/processes))))

; an uncaught gen/call error ends the main process with it
(gen/call (gen/start (fn () nil) (fn (k m f st) (list 'noreply st))) 'never-answered 20)
(print "not reached")
"""


@pytest.mark.parametrize("schedulers", SCHEDULERS)
def test_crashes_restarts_and_an_uncaught_timeout(schedulers: str, tmp_path: Path) -> None:
    out, err, status = run_lisp_in(tmp_path, CRASHES, flags=("--schedulers", schedulers))
    assert "Traceback" not in err, err
    assert out.splitlines() == [
        "ping", "(noproc true)", "EXIT badarg",
        "noproc", "EXIT badarg 26",
        "badarg", "EXIT badarg",
        "supervisor shutdown",
        "sup: the start function of child bad returned 42, not a pid",
        "0",
    ], err
    assert status == 1, err
    lines = err.splitlines()
    # one report per crash: the two handlers, the init, three crasher runs, the failed supervisor
    # init; then the main process's own error
    crashes = [ln for ln in lines if " crashed: " in ln]
    assert len(crashes) == 7, err
    assert sum("badarg: head: " in ln for ln in crashes) == 4, err
    assert sum("gen: the handler returned nonsense" in ln for ln in crashes) == 1, err
    # a bad handler result and a start function's non-pid are the program's mistakes: reported at
    # the handler and at the start function (lines 14 and 34), never inside the prelude
    assert not any(ln.startswith("prelude.lisp") for ln in lines), err
    assert any(ln.startswith("prog.lisp:14:") and "handler returned nonsense" in ln for ln in crashes), err
    assert any(ln.startswith("prog.lisp:34:") and "returned 42, not a pid" in ln for ln in crashes), err
    # reported at the program's line, not in the prelude where gen/call raised it
    assert lines[-1].startswith("prog.lisp:39:1: error: timeout: gen/call: no reply from #<pid"), err
    assert lines[-1].endswith("within 20 ms"), err
    assert len(lines) == 8, err


FLOOD = """
; a server on another scheduler answers after a little work; calls with tiny timeouts give up
; all the time, and late replies must never reach the caller's mailbox
(def work (n) (if (== n 0) 0 (work (- n 1))))
(def h (kind msg from st)
  (if (== msg 'count) (list 'reply st st) (do (work msg) (list 'reply msg (+ st 1)))))
(def me (self))
(spawn-on 1 (fn () (send me (gen/start (fn () 0) h)) (receive ('never nil))))
(def s (receive (p p)))
(def call (i) (try (gen/call s (* 50 (mod i 7)) (mod i 3)) (catch e (head (tail e)))))
(def calls (i acc) (if (== i 0) acc (calls (- i 1) (cons (call i) acc))))
(def results (calls 300 nil))
(print (length results) (list/contains? 'timeout results))
(print (gen/call s 'count 60000) (map/get (sys/info me) 'mailbox) (receive (m (list 'stray m)) (after 0 'clean)))
"""


@pytest.mark.parametrize("schedulers", SCHEDULERS)
def test_no_late_reply_after_many_timed_out_calls(schedulers: str, tmp_path: Path) -> None:
    out, err, status = run_lisp_in(tmp_path, FLOOD, flags=("--schedulers", schedulers))
    assert (status, err) == (0, "")
    first, second = out.splitlines()
    assert first == "300 true"
    count, mailbox, clean = second.split()
    assert (int(count), mailbox, clean) == (300, "0", "clean")  # every call reached it, once


PROCESSES = """
(def me (self))
(def idle () (receive ('stop nil)))
(def spread (k n acc) (if (== n 0) acc (spread k (- n 1) (cons (spawn-on k idle) acc))))
(def ps (append (spread 0 5 nil) (spread 1 5 nil) (spread 2 5 nil)))
(def on (k) (spawn-on k (fn () (send me (list 'count k (length (sys/processes)))) (receive ('stop nil)))))
(on 1)
(print (receive ((list 'count 1 n) n)))
(on 2)
(print (receive ((list 'count 2 n) n)))
(print (length (sys/processes)) (list/filter (fn (p) (not (list/contains? p (sys/processes)))) ps))
(print (list/map (fn (p) (map/get (sys/info p) 'status)) (list (nth ps 0) (nth ps 7) (nth ps 14))))
(def mons (list/map monitor ps))
(list/map (fn (p) (exit p 'kill)) ps)
(list/map (fn (r) (receive ((list 'DOWN x _ _) :when (== x r) nil))) mons)
(print (length (sys/processes)) (list/map sys/info (list (nth ps 0) (nth ps 7) (nth ps 14))))
"""


def test_processes_and_info_across_three_schedulers(tmp_path: Path) -> None:
    out, err, status = run_lisp_in(tmp_path, PROCESSES, flags=("--schedulers", "3"))
    assert (status, err) == (0, "")
    # 15 idle ones, main, and the askers (the first still waits when the second counts)
    assert out.splitlines() == ["17", "18", "18 nil", "(waiting waiting waiting)", "3 (nil nil nil)"]


KILLED = """
(def me (self))
(def victim () (send me (list 'pid (sys/os-pid))) (receive ('never nil)))
(def v (spawn-on 1 victim))
(print (receive ((list 'pid p) p)))
(timer/sleep 1500)
(print (sys/info v) (list/contains? v (sys/processes)))
"""


def test_a_scheduler_that_dies_while_asked_answers_nil(tmp_path: Path) -> None:
    """Scheduler 1 is stopped (SIGSTOP) before the main process asks about its process, then
    killed: the question is answered nil, and sys/processes no longer waits for it."""
    prog = tmp_path / "k.lisp"
    prog.write_text(KILLED, encoding="utf-8")
    exe = os.path.join(os.path.dirname(sys.executable), "lispvm")
    proc = subprocess.Popen([exe, "run", "--schedulers", "2", str(prog)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        os_pid = int(proc.stdout.readline())
        os.kill(os_pid, signal.SIGSTOP)
        time.sleep(2.5)  # the main process now waits for the answer (it asked after 1.5 s)
        os.kill(os_pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (out, proc.returncode) == ("nil false\n", 0), err


def _guide() -> tuple[str, str]:
    text = (REPO / "docs" / "servers.md").read_text(encoding="utf-8")
    code = re.search(r"```lisp\n(.*?)```", text, re.S)
    shown = re.search(r"Output:\n\n```text\n(.*?)```", text, re.S)
    assert code and shown, "docs/servers.md lost its example or its output"
    return code.group(1), shown.group(1)


@pytest.mark.parametrize("schedulers", SCHEDULERS)
def test_the_guide_example_prints_what_the_guide_shows(schedulers: str, tmp_path: Path) -> None:
    code, shown = _guide()
    out, err, status = run_lisp_in(tmp_path, code, flags=("--schedulers", schedulers), name="kv.lisp")
    assert (out, err, status) == (shown, "", 0)
