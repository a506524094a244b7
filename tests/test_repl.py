"""lispvm repl (scheduler/repl.py, docs/repl.md): through a real pseudo-terminal (stdlib pty, as a
person types: line editing, completion, history, Ctrl-C, Ctrl-D) and with standard input a pipe
(several schedulers, errors, macros, a replaced main process, halt)."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time

import pytest
from conftest import lispvm_command

from lispvm.scheduler.repl import history_path, incomplete

LISPVM = lispvm_command()
_ESC = re.compile(rb"\x1b\[[0-9;?]*[a-zA-Z]|\x1b[>=]|\r")
WAIT = 30.0  # seconds any one expected output may take on a loaded machine


class Terminal:
    """lispvm repl on the far side of a pseudo-terminal, read like pexpect: `expect` waits for
    text after what was already matched (terminal escapes left out)."""

    def __init__(self, args: list[str], env: dict) -> None:
        import pty

        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the repl, with the pty as its terminal
            try:
                os.execve(LISPVM[0], [*LISPVM, "repl", *args], env)
            finally:
                os._exit(127)
        self.raw = b""
        self.seen = 0  # the end of the last match, in the cleaned text

    def text(self) -> str:
        return _ESC.sub(b"", self.raw).decode("utf-8", "replace")

    def expect(self, what: str, timeout: float = WAIT) -> str:
        """Wait for `what` after the last match; the text between them."""
        end = time.monotonic() + timeout
        while True:
            clean = self.text()
            i = clean.find(what, self.seen)
            if i >= 0:
                before = clean[self.seen:i]
                self.seen = i + len(what)
                return before
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what!r} in {clean[self.seen:]!r}{self.dump()}")
            r, _, _ = select.select([self.fd], [], [], min(left, 0.2))
            if r:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    raise AssertionError(f"the repl ended before {what!r}: {clean[self.seen:]!r}")
                self.raw += data

    def dump(self) -> str:
        """The threads' stacks of a repl that is stuck (PYTHONFAULTHANDLER prints them on SIGABRT)."""
        try:
            os.kill(self.pid, signal.SIGABRT)
        except ProcessLookupError:
            return ""
        end = time.monotonic() + 5
        while time.monotonic() < end and select.select([self.fd], [], [], 0.2)[0]:
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                break
            if not data:
                break
            self.raw += data
        return "\n" + self.text()[self.seen:]

    def send(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def line(self, text: str, result: str) -> None:
        """Type a line at a fresh prompt and wait for `result` and the next prompt."""
        self.send(text + "\r")
        self.expect(result)
        self.expect("lispvm>")

    def wait(self, timeout: float = WAIT) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            try:  # keep reading: a full pty would block its writer
                if select.select([self.fd], [], [], 0.1)[0]:
                    self.raw += os.read(self.fd, 65536)
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise AssertionError(f"the repl did not end: {self.text()[self.seen:]!r}")

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        try:
            os.close(self.fd)
        except OSError:
            pass


def _env(tmp_path) -> dict:
    env = dict(os.environ, LISPVM_HISTORY=str(tmp_path / "history"), PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm",
               PYTHONFAULTHANDLER="1", COLUMNS="120", LINES="40")
    env.pop("LISPVM_CHAOS", None)
    return env


def test_terminal_session(tmp_path):
    """Line editing through a pseudo-terminal: values, defs across inputs, a form over several
    lines, an error that leaves the session going, completion of a session's name, help from a
    docstring and from the language's definition, a process's print while the prompt waits,
    Ctrl-C stopping an endless loop but not the session, Ctrl-D ending it; then a second session
    gets the first one's history with the Up key, and a third, whose history file cannot be
    written, says so once and goes on."""
    env = _env(tmp_path)
    t = Terminal(["--schedulers", "2"], env)
    try:
        t.expect("lispvm>")
        t.line('(def square-of-it (x) "The square of x." (* x x))', "#<fn square-of-it>")
        t.send("(+ 1\r")
        t.expect(".......")  # the continuation prompt: the form is not finished
        t.send("2)\r")
        t.expect("3")
        t.expect("lispvm>")
        t.line("(head nil)", "error: badarg")
        t.send("(squar\t")  # Tab completes the name defined two inputs ago
        t.expect("square-of-it")
        t.line(" 12)", "144")
        t.line("(help 'square-of-it)", "The square of x.")
        t.line("(help 'list/map)", "list/map (f list)")
        t.line('(spawn (fn () (timer/sleep 400) (print "tick from" (sys/scheduler-id))))', "#<pid")
        t.expect("tick from")  # printed while the prompt waits
        t.line("(def spin (n) (spin (+ n 1)))", "#<fn spin>")
        t.send("(spin 0)\r")
        time.sleep(1.0)  # it runs
        t.send("\x03")
        t.expect("interrupted")
        t.expect("lispvm>")
        t.line("(square-of-it 5)", "25")  # the defs outlive the interrupted main process
        t.line("(* 5 5 2)", "50")
        t.send("\x04")
        assert t.wait() == 0
    finally:
        t.kill()
    assert "\n+(+ 1\n+2)\n" in (tmp_path / "history").read_text()  # a form over two lines is one entry

    t = Terminal(["--schedulers", "1"], env)
    try:
        t.expect("lispvm>")
        t.send("\x1b[A")  # Up: the last input of the last session
        t.expect("(* 5 5 2)")
        t.send("\r")
        t.expect("50")
        t.expect("lispvm>")
        t.send("(+ 1 1")
        t.expect("(+ 1 1")
        t.send("\x03")  # Ctrl-C at the prompt drops the line, and the session goes on
        t.expect("lispvm>")
        t.line("(* 6 7)", "42")
        t.send("\x04")
        assert t.wait() == 0
    finally:
        t.kill()

    env["LISPVM_HISTORY"] = str(tmp_path)  # a directory: the session goes on without a history file
    t = Terminal(["--schedulers", "1"], env)
    try:
        t.expect(f"lispvm: the history is not kept: {tmp_path}: Is a directory")
        t.line("(+ 1 2)", "3")
        t.line("(+ 3 4)", "7")
        t.send("\x04")
        assert t.wait() == 0
    finally:
        t.kill()


PIPED = """\
(defmacro unless2 (c e) (list 'if c nil e))
(unless2 false (+ 40 2))
(def worker (n)
  "Sums 0..n-1 on whichever scheduler runs it."
  (list/reduce + 0 (list/range n)))
(def ask (k n)
  (let ((me (self)))
    (spawn-on k (fn () (send me (list (sys/scheduler-id) (worker n)))))
    (recv)))
(ask 1 10)
(ask 2 100)
(require geo)
(geo/area 6 7)
(let ((me (self))) (spawn-on 2 (fn () (send me (geo/area 2 3)))) (recv))
(geo/nope 1)
(require geo)
(str/upper 42)
(undefined-thing 1)
(print "still" "here")
(+ 1 2) (* 2 3)
(exit 'bye)
(list (ask 2 4) (worker 3))
(help 'worker)
(help 'no-such-name)
(help 42)
(list {)
(print "after")
[1 {2 3}
"""


def test_piped_session_on_three_schedulers(tmp_path):
    """Standard input not a terminal: each form's value, in order; defs and a macro reach the
    other schedulers (a closure typed here runs on schedulers 1 and 2); a module required at the
    prompt (from the current directory, compiled once, its top level run once, its names
    checked, its code on every scheduler); an error and an exit of
    the main process each print one line and the session goes on; an unfinished form at the end
    is reported with its position; the exit status is 0."""
    (tmp_path / "geo.lisp").write_text('(module geo)\n(def area (w h) (* w h))\n(print "geo loaded")\n')
    p = subprocess.run([*LISPVM, "repl", "--schedulers", "3"], input=PIPED, capture_output=True, text=True,
                       timeout=120, env=_env(tmp_path), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    out = p.stdout.splitlines()
    assert out == ["unless2", "42", "#<fn worker>", "#<fn ask>", "(1 45)", "(2 4950)", "geo loaded", "geo", "42", "6",
                   "geo",
                   "still here", "nil", "3", "6", "((2 6) 3)",
                   "(worker n): a function defined in this session", "  Sums 0..n-1 on whichever scheduler runs it.",
                   "nil", "no help for no-such-name: not a builtin, special form or name defined in this session",
                   "nil", "after", "nil"], p.stdout
    err = p.stderr.splitlines()
    assert err.pop(0) == "<repl>:1:2: geo/nope: module geo does not define nope", err
    assert err[0].startswith("error: badarg: str/upper"), err
    assert err[1].startswith("error: undef:") and "undefined-thing" in err[1], err
    assert re.fullmatch(r"the main process #<pid 0\.\d+> exited \(bye\); a new one takes over", err[2]), err
    assert err[3].startswith("error: badarg: help:"), err
    # a closing bracket that does not match is reported at once: the next line is a form of its own
    assert err[4] == "<repl>:1:8: '{' opened at 1:7 is closed by ')'", err
    assert err[5] == "<repl>:1:1: unbalanced parenthesis: '[' is never closed", err
    assert len(err) == 6, err
    assert "Traceback" not in p.stderr


def test_piped_halt_and_usage(tmp_path):
    """(halt N) ends the session with status N, and what follows it is not run; --trace is
    refused as a usage error."""
    p = subprocess.run([*LISPVM, "repl", "--schedulers", "1"], input='(print "a")\n(halt 3)\n(print "b")\n',
                       capture_output=True, text=True, timeout=60, env=_env(tmp_path))
    assert (p.returncode, p.stdout) == (3, "a\nnil\n"), p.stderr
    p = subprocess.run([*LISPVM, "repl", "--trace", "x.jsonl"], input="", capture_output=True, text=True,
                       timeout=60, env=_env(tmp_path), cwd=tmp_path)
    assert p.returncode == 2 and "--trace" in p.stderr and not (tmp_path / "x.jsonl").exists()


def test_incomplete():
    assert incomplete("(+ 1") and incomplete("[1 {2") and incomplete('(print "a)')
    assert incomplete('(print "a\\")') and incomplete("(f ; )\n")
    assert not incomplete("(+ 1 2)") and not incomplete('(print ")")') and not incomplete("; (\n")
    assert not incomplete("(+ 1))")  # one too many closes: finished, and the reader says so
    assert not incomplete("(list {)") and not incomplete("(help (quote {))")  # a mismatch: the same
    assert incomplete("(list {)") is False and incomplete("(a [b {c}]") is True
    assert not incomplete("") and not incomplete("x")


def test_history_path(monkeypatch, tmp_path):
    monkeypatch.setenv("LISPVM_HISTORY", str(tmp_path / "h"))
    assert history_path() == str(tmp_path / "h")
    monkeypatch.delenv("LISPVM_HISTORY")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert history_path() == str(tmp_path / "state" / "lispvm" / "history")
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert history_path() == str(tmp_path / ".local" / "state" / "lispvm" / "history")


def test_help_table_is_generated_from_the_language():
    """scheduler/repl_help.py is what the generator makes of ../shared/spec/LANGUAGE.md."""
    from lispvm.scheduler import helpgen

    # found from this file, not from the installed package (a regular install is not in the checkout)
    spec = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "spec", "LANGUAGE.md")
    if not os.path.exists(spec):
        pytest.skip("the language's definition is not beside this checkout")
    with open(spec, encoding="utf-8") as f:
        table = helpgen.generate(f.read())
    from lispvm.scheduler.repl_help import HELP

    assert HELP == table, "stale: run python -m lispvm.scheduler.helpgen"
    assert table["spawn"].startswith("(spawn f a b ...): start a process running")
    assert "list/map (f list)" in table["list/map"]
