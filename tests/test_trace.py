"""Tracing: JSON lines from every scheduler, and their Chrome export (issue 4 item 7, issue 5 item 7)."""

from __future__ import annotations

import json
import os

import pytest

from support import lispvm

PROGRAM = """
(def fib (n) (if (< n 2) n (+ (fib (- n 1)) (fib (- n 2)))))
(def me (self))
(def worker (n) (send me (list n (fib n))))
(list/map (fn (n) (spawn worker n)) (list 28 28 28 10))
(def r (monitor (spawn (fn () 'short))))
(print (list/sort (list/map (fn (i) (receive ((list n v) n))) (list/range 4))))
(print (receive ((list 'DOWN ref p why) why)))
"""


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], dict]:
    d = tmp_path_factory.mktemp("trace")
    prog, jsonl, chrome = d / "p.lisp", d / "t.jsonl", d / "t.json"
    prog.write_text(PROGRAM)
    r = lispvm("run", "--schedulers", "2", "--trace", str(jsonl), str(prog))
    assert (r.stdout, r.returncode) == ("(10 28 28 28)\nnormal\n", 0), r.stderr
    lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
    r = lispvm("trace", str(jsonl), "--chrome", str(chrome))
    assert r.returncode == 0, r.stderr
    return lines, json.loads(chrome.read_text())


def test_every_line_has_the_common_fields(traced: tuple) -> None:
    lines, _ = traced
    assert lines and all({"event", "ts", "sched", "os_pid", "pid"} <= set(e) for e in lines)
    kinds = {e["event"] for e in lines}
    assert {"slice_in", "slice_out", "spawn", "exit", "send", "monitor"} <= kinds
    outs = [e for e in lines if e["event"] == "slice_out"]
    assert all(isinstance(e["reductions"], int) and e["outcome"] in
               ("yield", "wait", "block", "done", "failed", "exited", "halt") for e in outs)


def test_two_schedulers_write_one_file(traced: tuple) -> None:
    lines, _ = traced
    if not any(e["event"] == "migrate" for e in lines):
        pytest.skip("no process moved in this run (the second scheduler started late)")
    assert {e["sched"] for e in lines} == {0, 1} and len({e["os_pid"] for e in lines}) == 2


def test_chrome_export_is_well_formed(traced: tuple) -> None:
    lines, chrome = traced
    evs = chrome["traceEvents"]
    assert all(e["ph"] in ("M", "X", "s", "f", "i") for e in evs)
    names = [e["args"]["name"] for e in evs if e["ph"] == "M" and e["name"] == "process_name"]
    assert any(n.startswith("scheduler 0 (os pid ") for n in names)
    slices = [e for e in evs if e["ph"] == "X"]
    assert len(slices) == sum(1 for e in lines if e["event"] == "slice_out")
    assert all(e["dur"] > 0 and "outcome" in e["args"] for e in slices)
    starts = {e["id"] for e in evs if e["ph"] == "s"}
    ends = {e["id"] for e in evs if e["ph"] == "f"}
    assert ends <= starts and ends, "every arrow end needs its start"


def test_trace_to_stderr_and_bad_inputs(tmp_path: os.PathLike) -> None:
    prog = os.path.join(tmp_path, "p.lisp")
    with open(prog, "w") as f:
        f.write("(print 1)")
    r = lispvm("run", "--schedulers", "1", "--trace", "-", prog)
    assert r.stdout == "1\n" and '"event":"slice_in"' in r.stderr
    bad = os.path.join(tmp_path, "bad.jsonl")
    with open(bad, "w") as f:
        f.write("this is not json\n")
    r = lispvm("trace", bad, "--chrome", os.path.join(tmp_path, "o.json"))
    assert r.returncode == 2 and r.stderr.startswith(f"{bad}: not a lispvm trace (line 1")
    assert "Traceback" not in r.stderr
    r = lispvm("trace", os.path.join(tmp_path, "missing.jsonl"), "--chrome", os.path.join(tmp_path, "o.json"))
    assert r.returncode == 2 and "cannot convert" in r.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("schedulers", ["1", "2"])
def test_a_trace_that_cannot_be_written_stops_with_one_line_and_the_program_goes_on(
        tmp_path: os.PathLike, schedulers: str) -> None:
    """A disk that fills while tracing (here /dev/full, where every write fails) is the trace's
    problem, not the program's: one line on stderr, the program's output whole, its own status."""
    prog = os.path.join(tmp_path, "p.lisp")
    with open(prog, "w") as f:
        f.write('(print "one")\n(spawn (fn () (print "two")))\n(timer/sleep 5)\n(print "three")\n(halt 3)\n')
    r = lispvm("run", "--schedulers", schedulers, "--trace", "/dev/full", prog)
    assert (r.returncode, sorted(r.stdout.splitlines())) == (3, ["one", "three", "two"])
    lines = r.stderr.splitlines()
    assert lines and all(line == "lispvm: cannot write the trace /dev/full: No space left on device; tracing stopped"
                         for line in lines), r.stderr


def test_a_tracer_is_a_bound_structlog_logger_that_writes_each_line_at_once(tmp_path: os.PathLike) -> None:
    """Each line carries the scheduler and OS pid the logger was bound to, Lisp values as printed,
    and is in the file as soon as it is logged (nothing waits in a buffer when a scheduler forks
    or is killed); structlog's global configuration is left to the embedding program."""
    import structlog

    from lispvm.scheduler.trace import make_tracer
    from lispvm.vm.values import Pid, from_list, intern

    before = structlog.get_config()
    path = os.path.join(tmp_path, "t.jsonl")
    tracer = make_tracer(path, 3)
    assert tracer is not None and make_tracer(None, 3) is None
    tracer.event(None, "exit", Pid(3, 7), reason=from_list([intern("badarg"), 1, "s"]), n=2)
    with open(path) as f:
        first = json.loads(f.read())
    assert first == {"event": "exit", "sched": 3, "os_pid": os.getpid(), "pid": "#<pid 3.7>",
                     "reason": '(badarg 1 "s")', "n": 2, "ts": first["ts"]}
    tracer.event(None, "timeout", None)
    tracer.close()
    with open(path) as f:
        lines = [json.loads(x) for x in f]
    assert len(lines) == 2 and lines[1]["pid"] is None and lines[1]["ts"] >= first["ts"]
    assert structlog.get_config() == before
