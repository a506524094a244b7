"""Ports (LANGUAGE.md section 14, scheduler/ports.py): tests/net/ports.lisp on one and three
schedulers, children killed and reaped when their owner ends and when the node stops (nothing
left, no zombie), and the log pipeline example."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import run_cli
from test_tcp import EXAMPLES, run_program

from support import lispvm_command


@pytest.mark.parametrize("schedulers", ["1", "3"])
def test_ports_program(schedulers: str) -> None:
    run_program("ports.lisp", "--allow-run=cat,sh,no-such-program", "--schedulers", schedulers)


def _children_with(mark: str) -> list[tuple[int, str]]:
    """(pid, state) of every `sleep ... MARK ...` process (a zombie's command line is empty: see
    _zombie_sleeps)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if cmd.startswith("sleep ") and mark in cmd:
            found.append((int(entry), state))
    return found


def _zombie_sleeps(root: int) -> list[int]:
    """Zombie `sleep` processes among the descendants of `root` (the node's schedulers' children)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                head, tail = f.read().rsplit(")", 1)
        except OSError:
            continue
        fields = tail.split()
        table[int(entry)] = (head.split("(", 1)[1], fields[0], int(fields[1]))
    family, todo = {root}, [root]
    while todo:
        parent = todo.pop()
        for pid, (_comm, _state, ppid) in table.items():
            if ppid == parent and pid not in family:
                family.add(pid)
                todo.append(pid)
    return [pid for pid in family if pid in table and table[pid][0] == "sleep" and table[pid][1] == "Z"]


KILL_OWNER = """
(def me (self))
(def owner (spawn-on 1 (fn ()
  (port/open "sleep" (list (head (sys/args))))
  (send me 'started)
  (receive (never nil)))))
(receive ('started nil))
(print "started")
(exit owner 'kill)
(timer/sleep 200)
(print "killed")
(io/read-line)
(port/open "sleep" (list (head (sys/args))))
(print "second")
(io/read-line)
"""


@pytest.mark.parametrize("schedulers", ["1", "3"])
def test_children_killed_and_reaped(tmp_path: Path, schedulers: str) -> None:
    """A port's child dies with its owner (killed, reaped: no zombie) and with the node."""
    mark = f"1{uuid.uuid4().int % 10**9}.5"  # a sleep of a unique length: our children only
    (tmp_path / "p.lisp").write_text(KILL_OWNER, encoding="utf-8")
    proc = subprocess.Popen(lispvm_command() + ["run", "--allow-run=sleep", "--schedulers", schedulers, "p.lisp",
                                                mark], cwd=tmp_path, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "started\n"
        assert proc.stdout.readline() == "killed\n", proc.stderr.read()
        # gone, not even a zombie (its command line is empty then). The reaping follows the kill
        # when the owner's scheduler sees the pidfd (docs/io.md): after the program's 200 ms
        # as a rule, but under load a scheduler may not have run yet, so it is waited for (the
        # node still runs, blocked on stdin: a child never reaped stays and fails this)
        until = time.monotonic() + 20
        while (_children_with(mark) or _zombie_sleeps(proc.pid)) and time.monotonic() < until:
            time.sleep(0.05)
        assert _children_with(mark) == []
        assert _zombie_sleeps(proc.pid) == []
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "second\n"
        assert len(_children_with(mark)) == 1
        proc.stdin.write("\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert err == ""
    assert _children_with(mark) == []  # the node's end killed the second one


def test_log_pipeline_example(tmp_path: Path) -> None:
    """docs/examples/log_pipeline.lisp: a log read through a port, counted, sorted through another."""
    log = tmp_path / "app.log"
    lines = []
    for i in range(3000):
        level = ("ERROR" if i % 7 == 0 else "WARN" if i % 5 == 0 else "INFO")
        svc = ("db", "web", "auth")[i % 3]
        lines.append(f"2026-12-07T10:{i // 60 % 60:02d}:{i % 60:02d} {level} {svc} request {i}")
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out, err, status = run_cli(["run", "--allow-run=cat,sort", str(EXAMPLES / "log_pipeline.lisp"), str(log)],
                               cwd=tmp_path, timeout=120, env={"LC_ALL": "C"})
    assert status == 0, err
    counts: dict[str, int] = {}
    for line in lines:
        _, level, svc = line.split()[:3]
        if level != "INFO":
            counts[f"{svc} {level}"] = counts.get(f"{svc} {level}", 0) + 1
    expected = sorted(f"{k} {v}" for k, v in counts.items())
    assert out.splitlines() == [f"lines read: {len(lines)}", *expected], err
    refused_out, refused_err, refused = run_cli(["run", "--allow-run=cat", str(EXAMPLES / "log_pipeline.lisp"),
                                                 str(log)], cwd=tmp_path, timeout=60)
    assert refused == 1 and "eacces" in refused_err and "--allow-run" in refused_err, refused_err


GROUP = """
(def me (self))
(def sh-sleep (fn (n) (port/open "sh" (list "-c" (str "sleep " (nth (sys/args) n) "; true")))))
(def owner (spawn (fn () (sh-sleep 0) (send me 'started) (receive (never nil)))))
(receive ('started nil))
(print "started")
(io/read-line)
(exit owner 'kill)
(sh-sleep 1)
(print "killed")
(io/read-line)
"""


def _gone(mark: str) -> bool:
    """Whether no live `sleep MARK` is left, waiting up to 30 s for a SIGKILL to land."""
    deadline = time.monotonic() + 30
    while _children_with(mark) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _children_with(mark) == []


def test_a_ports_whole_process_group_dies_with_its_owner_and_the_node(tmp_path: Path) -> None:
    """`sh -c "sleep N; true"`: the shell's own child, a grandchild of the node, is killed with
    the port (its owner killed, the node ended), and it ran in a group of its own."""
    marks = [f"1{uuid.uuid4().int % 10**9}.{i}5" for i in (1, 2)]
    (tmp_path / "g.lisp").write_text(GROUP, encoding="utf-8")
    proc = subprocess.Popen(lispvm_command() + ["run", "--allow-run=sh", "--schedulers", "1", "g.lisp", *marks],
                            cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline() == "started\n"
        deadline = time.monotonic() + 30
        while not _children_with(marks[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        (pid, _state), = _children_with(marks[0])
        assert os.getpgid(pid) != os.getpgid(proc.pid)  # a group (and session) of its own
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "killed\n"
        assert _gone(marks[0])
        proc.stdin.write("\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (out, err, proc.returncode) == ("", "", 0)
    assert _gone(marks[1])


SUBREAPER = r"""
import ctypes, os, subprocess, sys, time
# PR_SET_CHILD_SUBREAPER: a child the node leaves behind (its parent gone) becomes ours, so that
# one the node did not reap before it ended is seen here, as a zombie or still running
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
node = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, capture_output=True, text=True)
left = []
while True:
    try:
        pid, _ = os.waitpid(-1, 0)  # ours: the node (already waited for) and any orphan
    except ChildProcessError:
        break
    left.append(pid)
print(node.returncode, len(left), repr(node.stderr))
"""

NODE_END = """
(def owner (spawn-on (parse-int (nth (sys/args) 1)) (fn ()
  (list/map (fn (i) (port/open "sleep" (list (head (sys/args))))) (list/range 6))
  (receive (never nil)))))
(port/open "sleep" (list (head (sys/args))))
(port/open "sleep" (list (head (sys/args))))
(print "end")
"""


@pytest.mark.parametrize("schedulers", ["1", "2"])
def test_node_end_reaps_its_children_before_it_ends(tmp_path: Path, schedulers: str) -> None:
    """docs/io.md: when the node stops, every program still running is killed AND reaped. The
    node's end killed them but did not wait for those not dead yet (IoService.close took its
    list of resources before Port.close put each killed child on the CLOSING list), so the node
    could end before its children did: under load one was still running (its command line in
    /proc) when the test looked, and every such child was left for init to reap."""
    (tmp_path / "p.lisp").write_text(NODE_END, encoding="utf-8")
    (tmp_path / "reaper.py").write_text(SUBREAPER, encoding="utf-8")
    mark = f"1{uuid.uuid4().int % 10**9}.5"
    for _ in range(3):
        out = subprocess.run([sys.executable, "reaper.py", *lispvm_command(), "run", "--allow-run=sleep",
                              "--schedulers", schedulers, "p.lisp", mark, str(int(schedulers) - 1)],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        status, left, _err = out.stdout.split(" ", 2)
        assert (status, left) == ("0", "0"), out.stdout  # nothing left for us (the subreaper) to reap
        assert _children_with(mark) == []
