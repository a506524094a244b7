"""Files, standard input and the I/O service (LANGUAGE.md section 14; scheduler/io.py, docs/io.md).

Whole programs through `lispvm run` on one and three schedulers (the I/O done by a process on a
worker too), standard input as a pipe, a file, /dev/null, a closed descriptor and a terminal,
and the I/O service itself in this OS process: its pool, its wake-up through the poller, and
the resources a process owns closed when it ends.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TIMEOUT, run_cli

from support import compile_text, lispvm_command

FILES = r"""
; every file/ call, allowed under DIR, by a process started on scheduler WHERE
(def dir (head (sys/args)))
(def where (parse-int (nth (sys/args) 1)))
(def kind (f) (try (f) (catch e (list (head e) (nth e 1)))))
(def work (parent)
  (let ((p (str dir "/a.txt")))
    (send parent
      (list
        (sys/scheduler-id)
        (file/write p "one\ntwo\n")
        (file/append p "three é")
        (file/read p)
        (file/lines p)
        (list (file/exists? p) (file/exists? (str dir "/nope")))
        (file/list-dir dir)
        (list/map kind (list (fn () (file/read (str dir "/nope")))
                             (fn () (file/read dir))
                             (fn () (file/lines (str dir "/a.txt/x")))
                             (fn () (file/delete (str dir "/sub")))
                             (fn () (file/list-dir p))
                             (fn () (file/read 42))
                             (fn () (file/write p 'sym))
                             (fn () (file/append (str dir "/no/such/dir") "x"))
                             (fn () (file/read ""))))
        (try (file/read (str dir "/nope")) (catch e e))
        (list (file/delete p) (file/exists? p) (file/lines (str dir "/empty")) (file/read (str dir "/empty")))))))
(file/write (str dir "/sub/keep") "")
(file/write (str dir "/empty") "")
(spawn-on where work (self))
(receive (r (list/map print r)))
; many processes wait on the pool at once: every one gets its answer
(def reader (parent i) (send parent (list i (length (file/lines (str dir "/many"))))))
(file/write (str dir "/many") "a\nb\nc\n")
(list/map (fn (i) (spawn reader (self) i)) (list/range 100))
(def collect (n acc) (if (== n 0) acc (receive ((list i k) (collect (- n 1) (+ acc k))))))
(print 'many (collect 100 0))
; a symlink out of the allowed directory: reading through it is refused, deleting it removes the link
(print (try (file/read (str dir "/link.txt")) (catch e (nth e 1))) (file/delete (str dir "/link.txt"))
       (file/exists? (str dir "/link.txt")))
"""


def _files_expected(where: int, d: Path) -> list[str]:
    return [
        str(where), "true", "true", "one", "two", "three é", '("one" "two" "three é")',
        "(true false)", '("a.txt" "empty" "link.txt" "sub")',
        "((error enoent) (error eisdir) (error enotdir) (error enotempty) (error enotdir) "
        "(error badarg) (error badarg) (error enoent) (error badarg))",
        f'(error enoent "file/read: {d.resolve()}/nope: No such file or directory")',
        '(true false nil "")',
        "many 300",
        "eacces true false",
    ]


@pytest.mark.parametrize("nsched", [1, 3])
def test_every_file_call(tmp_path: Path, nsched: int) -> None:
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (tmp_path / "outside.txt").write_text("kept")
    (d / "link.txt").symlink_to(tmp_path / "outside.txt")
    (tmp_path / "prog.lisp").write_text(FILES, encoding="utf-8")
    where = 0 if nsched == 1 else 2
    out, err, status = run_cli(["run", "--schedulers", str(nsched), "--allow-read=d", "--allow-write=d",
                                "prog.lisp", "d", str(where)], cwd=tmp_path)
    assert (status, err) == (0, ""), err
    assert out.splitlines() == _files_expected(where, d)
    assert (tmp_path / "outside.txt").read_text() == "kept" and not (d / "link.txt").is_symlink()


READ_LINES = r"""
; standard input: lines without their newline, nil at the end (and after it)
(def rd (n acc)
  (let ((l (io/read-line)))
    (if (nil? l) (reverse acc) (rd (+ n 1) (cons l acc)))))
(print (rd 0 nil))
(print (io/read-line))
"""


def _run_with_stdin(tmp_path: Path, source: str, stdin: object, *flags: str) -> tuple[str, str, int]:
    (tmp_path / "prog.lisp").write_text(source, encoding="utf-8")
    r = subprocess.run(lispvm_command() + ["run", *flags, "prog.lisp"], cwd=tmp_path, stdin=stdin,
                       capture_output=True, text=True, timeout=TIMEOUT)
    return r.stdout, r.stderr, r.returncode


def test_read_line_from_a_file_and_dev_null(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_bytes(b"a\nb\r\n\nlast without newline")
    with open(src, "rb") as f:
        out, err, status = _run_with_stdin(tmp_path, READ_LINES, f, "--schedulers", "1")
    assert (status, err) == (0, "")
    assert out == '("a" "b" "" "last without newline")\nnil\n'
    with open(os.devnull, "rb") as f:
        out, err, status = _run_with_stdin(tmp_path, READ_LINES, f, "--schedulers", "3")
    assert (out, err, status) == ("nil\nnil\n", "", 0)


def test_read_line_with_standard_input_closed(tmp_path: Path) -> None:
    """A closed fd 0 is the end of input: never whatever descriptor later took number 0."""
    (tmp_path / "prog.lisp").write_text(READ_LINES + '(print (file/read "prog.lisp") "read")\n', encoding="utf-8")
    code = ("import os, sys; os.close(0); "
            "os.execv(sys.argv[1], sys.argv[1:])")
    argv = [sys.executable, "-c", code] + lispvm_command() + ["run", "--schedulers", "1", "--allow-read", "prog.lisp"]
    r = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.startswith("nil\nnil\n")


STDIN_EVERYWHERE = r"""
; lines reach processes on every scheduler in the order they asked; one that ends while waiting
; gives its line back to the next asker
(def reader (parent) (send parent 'asking) (send parent (list 'got (sys/scheduler-id) (io/read-line))))
(def quitter (spawn-on 1 reader (self)))
(receive ('asking nil))
(receive (x (print 'early x)) (after 300 nil))
(exit quitter 'kill)
(receive (x (print 'early x)) (after 200 nil))
(spawn-on 2 reader (self))
(receive ('asking nil))
(print 'waiting)
(print (receive ((list 'got k l) (list 'worker (== k (if (== (sys/schedulers) 1) 0 2)) l))))
(print (io/read-line))
(spawn-on 1 reader (self))
(receive ('asking nil))
(print (receive ((list 'got k l) l)))
(print (io/read-line))
"""


def _session_cpu(sid: int) -> float:
    """CPU seconds used so far by the processes of session `sid` (the run's schedulers)."""
    total = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # (fields after the name: state ppid pgrp session ...)
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("nsched", [1, 3])
def test_read_line_from_a_slow_pipe_on_any_scheduler(tmp_path: Path, nsched: int) -> None:
    """The lines come while the readers wait (a pipe written late); meanwhile the waiting
    schedulers sleep in their poll: their CPU time over a 1.5 s wait stays far below it."""
    if not os.path.exists("/proc/self/stat"):
        pytest.skip("needs /proc to read the schedulers' CPU time")
    (tmp_path / "prog.lisp").write_text(STDIN_EVERYWHERE, encoding="utf-8")
    proc = subprocess.Popen(lispvm_command() + ["run", "--schedulers", str(nsched), "prog.lisp"], cwd=tmp_path,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        first = proc.stdout.readline()
        assert first == b"waiting\n", (first, proc.stderr.read() if proc.poll() is not None else "")
        cpu0 = _session_cpu(proc.pid)
        time.sleep(1.5)
        idle_cpu = _session_cpu(proc.pid) - cpu0
        proc.stdin.write(b"x\ny\n")
        proc.stdin.flush()
        time.sleep(0.2)
        proc.stdin.write(b"z")
        proc.stdin.close()
        proc.stdin = None  # (communicate would flush it)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    assert (proc.returncode, err.decode()) == (0, "")
    assert out.decode() == '(worker true "x")\ny\nz\nnil\n'
    assert idle_cpu < 0.5, f"{idle_cpu:.2f} s of CPU while waiting 1.5 s for input: an idle scheduler spins"


def test_read_line_from_a_terminal(tmp_path: Path) -> None:
    import pty

    (tmp_path / "prog.lisp").write_text(READ_LINES, encoding="utf-8")
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(lispvm_command() + ["run", "--schedulers", "1", "prog.lisp"], cwd=tmp_path,
                                stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        os.close(slave)
        slave = -1
        time.sleep(0.5)
        os.write(master, b"first line\n")
        time.sleep(0.2)
        os.write(master, b"second\n\x04")  # Ctrl-D at the start of a line: the end of input
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert (proc.returncode, err.decode()) == (0, "")
    assert out.decode() == '("first line" "second")\nnil\n'


# --- the I/O service in this OS process ----------------------------------------------------

def _run_here(src: str, schedulers: int = 1) -> tuple[str, str, int]:
    import io as _io

    from lispvm.scheduler.runner import run_program

    out, err = _io.StringIO(), _io.StringIO()
    status = run_program(compile_text(src), [], schedulers=schedulers, out=out, err=err)
    return out.getvalue(), err.getvalue(), status


class _Resource:
    closed: list[str] = []

    def __init__(self, name: str) -> None:
        self.name = name

    def close(self) -> None:
        _Resource.closed.append(self.name)


@pytest.fixture
def test_ops() -> object:
    """Two I/O operations and builtins for them, registered for one test: `test/own` gives the
    caller a resource to own; `test/disown` hands it back."""
    from lispvm.scheduler import io
    from lispvm.vm.process import Block
    from lispvm.vm.registry import BUILTINS, Builtin

    def own(svc: io.IoService, proc: object, args: tuple) -> None:
        res = _Resource(args[0])
        svc.own(proc, res)
        if args[0] == "given-back":
            svc.disown(proc, res)
        svc.complete(proc, args[0])

    def raise_block(name: str) -> object:
        raise Block(("io", "test/own", name))

    io.IO_OPS["test/own"] = own
    BUILTINS["test/own"] = Builtin("test/own", raise_block)
    _Resource.closed = []
    try:
        yield io
    finally:
        del io.IO_OPS["test/own"]
        del BUILTINS["test/own"]


def test_owned_resources_close_when_their_process_ends(test_ops: object) -> None:
    src = """
(def holder (parent name) (test/own name) (send parent 'ok) (receive (x x)))
(def p1 (spawn holder (self) "ends-normally"))
(def p2 (spawn holder (self) "killed"))
(def p3 (spawn holder (self) "given-back"))
(receive ('ok nil)) (receive ('ok nil)) (receive ('ok nil))
(send p1 'bye)
(exit p2 'kill)
(send p3 'bye)
(receive (x x) (after 100 nil))
(print (test/own "main's, closed at the node's end"))
"""
    out, err, status = _run_here(src)
    assert (status, err) == (0, "")
    closed = _Resource.closed
    assert sorted(closed[:2]) == ["ends-normally", "killed"]
    assert closed[2:] == ["main's, closed at the node's end"]  # (given-back was disowned: never closed)


def test_pool_results_wake_an_idle_scheduler_and_the_pool_stays_small(tmp_path: Path) -> None:
    import threading

    from lispvm.scheduler import io
    from lispvm.vm import permissions

    before = {t for t in threading.enumerate() if t.name.startswith("lispvm-io-")}
    (tmp_path / "f").write_text("x\n" * 10, encoding="utf-8")
    src = f"""
(def rd (parent) (send parent (length (file/lines "{tmp_path}/f"))))
(list/map (fn (i) (spawn rd (self))) (list/range 50))
(def sum (n acc) (if (== n 0) acc (receive (k (sum (- n 1) (+ acc k))))))
(print (sum 50 0))
(receive (x x))
"""
    old = permissions.current()
    permissions.install(permissions.Permissions(read=[str(tmp_path)]))
    try:
        out, err, status = _run_here(src)
    finally:
        permissions.install(old)
    assert out == "500\n"
    assert status == 1 and "deadlock" in err  # after the I/O, waiting for nothing is still a deadlock
    started = {t for t in threading.enumerate() if t.name.startswith("lispvm-io-")} - before
    assert len(started) <= io.POOL_SIZE
    deadline = time.monotonic() + 10
    while any(t.is_alive() for t in started) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(t.is_alive() for t in started), "the pool's threads outlive the node"


def test_an_unknown_io_operation_is_badarg() -> None:
    from lispvm.scheduler import io

    assert "no/such-op" not in io.IO_OPS
    assert io._provider("no/such-op") is None


def test_grep_example(tmp_path: Path) -> None:
    """docs/examples/grep.lisp: standard input filtered, the report written where allowed."""
    example = Path(__file__).resolve().parents[1] / "docs" / "examples" / "grep.lisp"
    r = subprocess.run(lispvm_command() + ["run", f"--allow-write={tmp_path}", str(example), "ERROR",
                                           str(tmp_path / "report.txt")],
                       input="a ERROR 1\nb INFO\nc ERROR 2", capture_output=True, text=True, timeout=TIMEOUT)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == "a ERROR 1\nc ERROR 2\n2 matching\n"
    assert (tmp_path / "report.txt").read_text() == "2 lines matched ERROR\n"


def test_a_scheduler_forked_while_the_collector_is_paused_runs_it() -> None:
    """file/lines pauses the collector in a pool thread; a worker forked meanwhile has no such
    job, so its collector must run (and the pause's lock be free) there."""
    import gc

    from lispvm.scheduler import io

    assert gc.isenabled()
    with io._no_gc():
        assert not gc.isenabled()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            ok = gc.isenabled() and io._gc_state[0] == 0 and io._gc_lock.acquire(timeout=1)
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert gc.isenabled()


NOT_REGULAR = r"""
(def why (fn (e) (if (str/find (nth e 2) "Not a regular file") 'not-regular 'other)))
(def t (fn (thunk) (try (thunk) (catch e (list (nth e 1) (why e))))))
(def me (self))
; more readers of the FIFO than the pool has threads: each is refused at once, none blocks
(list/map (fn (i) (spawn (fn () (send me (t (fn () (file/read "d/fifo"))))))) (list 1 2 3 4 5 6 7 8 9))
(def collect (fn (n acc) (if (== n 0) acc (collect (- n 1) (cons (receive (m m)) acc)))))
(print (collect 9 nil))
(print (t (fn () (file/lines "d/fifo"))) (t (fn () (file/append "d/fifo" "x"))) (t (fn () (file/write "d/fifo" "x"))))
(print (t (fn () (file/read "/dev/zero"))) (t (fn () (file/read "d"))))
(file/write "d/f" "long text")
(file/write "d/f" "short")
(file/append "d/f" "+more")
(print (file/read "d/f") (file/lines "d/f"))
"""


def test_a_fifo_or_device_is_refused_not_read_for_ever(tmp_path: Path) -> None:
    """file/read of a FIFO (no writer) held a pool thread for ever and /dev/zero read without end:
    every reading or writing file call refuses what is not a regular file, at once."""
    (tmp_path / "d").mkdir()
    os.mkfifo(tmp_path / "d" / "fifo")
    (tmp_path / "prog.lisp").write_text(NOT_REGULAR, encoding="utf-8")
    out, err, status = run_cli(["run", "--schedulers", "1", "--allow-read=d,/dev/zero", "--allow-write=d",
                                "prog.lisp"], cwd=tmp_path)
    assert (status, err) == (0, ""), err
    refused = "(einval not-regular)"
    assert out.splitlines() == [
        "(" + " ".join([refused] * 9) + ")",
        f"{refused} (enxio other) (enxio other)",  # (opening a FIFO to write without a reader: ENXIO at once)
        f"{refused} (eisdir other)",
        'short+more ("short+more")',
    ]


POSIX_PATHS = r"""
(def t (fn (thunk) (try (thunk) (catch e (nth e 1)))))
(print (t (fn () (file/read "d/f/"))) (t (fn () (file/read "d/f/."))) (t (fn () (file/lines "d/f/"))))
(print (t (fn () (file/delete "d/sub/."))) (t (fn () (file/delete "d/sub/.."))) (t (fn () (file/delete "d/f/"))))
(print (file/read "d/f") (file/list-dir "d/sub/") (file/exists? "d/f/"))
(print (file/write "d/~/x" "tilde") (file/read "d/~/x"))
"""


def test_paths_keep_posix_meaning_and_no_tilde(tmp_path: Path) -> None:
    """`f/` and `f/.` of a file are enotdir and deleting `d/.` is einval, as the system says
    (resolving the path dropped the marks and read the file, or removed the directory); `~` is
    a name like any other, relative to the start directory."""
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "~").mkdir()
    (d / "f").write_text("text")
    (tmp_path / "prog.lisp").write_text(POSIX_PATHS, encoding="utf-8")
    out, err, status = run_cli(["run", "--schedulers", "1", "--allow-read=d", "--allow-write=d", "prog.lisp"],
                               cwd=tmp_path, env={"HOME": str(tmp_path / "home")})
    assert (status, err) == (0, ""), err
    assert out.splitlines() == ["enotdir enotdir enotdir", "einval einval enotdir", "text nil false", "true tilde"]
    assert (d / "sub").is_dir() and (d / "~" / "x").read_text() == "tilde"


def test_file_lines_splits_across_chunks_as_one_read_would(tmp_path: Path) -> None:
    """file/lines reads a chunk at a time: lines cut by a chunk's end, multi-byte characters,
    lines longer than a chunk, a last line without a newline and an empty file come out as
    `text.split("\\n")` of the whole file would give them (less the empty string after a final
    newline); a byte that is not UTF-8 is reported with its offset in the file."""
    import random

    from lispvm.scheduler.io import split_lines

    rng = random.Random(15)
    pieces = ["a", "é", "\n", "\r\n", "€", "𝄞", "x" * 50, "\n\n"]
    f = tmp_path / "t"
    for _ in range(400):
        text = "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 40)))
        f.write_bytes(text.encode())
        want = text.split("\n")
        if want[-1] == "":
            want.pop()
        for chunk in (1, 2, 3, 7, 64, 1 << 20):
            fd = os.open(f, os.O_RDONLY)
            try:
                assert split_lines(fd, chunk) == want, (text, chunk)
            finally:
                os.close(fd)
    f.write_bytes(b"ok\nline two \xff here\n")
    for chunk in (4, 1 << 20):
        fd = os.open(f, os.O_RDONLY)
        try:
            with pytest.raises(ValueError, match="byte 0xff at offset 12"):
                split_lines(fd, chunk)
        finally:
            os.close(fd)
    (tmp_path / "p.lisp").write_text(f'(print (try (file/lines "{f}") (catch e e)))')
    out, err, rc = run_cli(["run", f"--allow-read={tmp_path}", tmp_path / "p.lisp"])
    assert '(error badarg "file/lines: not UTF-8 text: byte 0xff at offset 12")' in out, (out, err, rc)


READER = r"""
; file/open, file/read-lines, file/close: by a process on scheduler WHERE
(def dir (head (sys/args)))
(def where (parse-int (nth (sys/args) 1)))
(def t (fn (f) (try (f) (catch e (list (nth e 1) (nth e 2))))))
(def kind (fn (f) (try (f) (catch e (nth e 1)))))
(def me (self))
(def batches (fn (f acc k)
  (let ((b (file/read-lines f)))
    (if (nil? b) (list k (reverse acc)) (batches f (list/reduce (fn (a x) (cons x a)) acc b) (+ k 1))))))
(def work (fn ()
  (let ((f (file/open (str dir "/big")))
        (got (batches f nil 0))
        (lines (nth got 1)))
    (send me (list 'big (sys/scheduler-id) (> (head got) 2) (length lines) (head lines) (nth lines 99999)
                   (== lines (file/lines (str dir "/big")))
                   (file/read-lines f) (file/read-lines f) (file/close f) (file/close f)
                   (t (fn () (file/read-lines f)))))
    (let ((g (file/open (str dir "/small"))))
      (send me (list 'small (file/read-lines g) (file/read-lines g))))
    (let ((e (file/open (str dir "/empty"))))
      (send me (list 'empty (file/read-lines e))))
    (let ((b (file/open (str dir "/bad"))))
      (send me (list 'bad (t (fn () (file/read-lines b))) (file/read-lines b))))
    (send me (list 'errors (kind (fn () (file/open (str dir "/nope")))) (kind (fn () (file/open dir)))
                   (kind (fn () (file/open (str dir "/fifo")))) (kind (fn () (file/open 7)))
                   (kind (fn () (file/read-lines "x"))) (kind (fn () (file/close nil)))
                   (kind (fn () (file/open "/etc/hostname")))))
    ; only the owner reads; its end closes the file
    (let ((h (file/open (str dir "/small"))))
      (send me (list 'handle h))
      (receive ('done nil))))))
(spawn-on where work)
(receive ((list 'big k more n first last same a b c d closed)
  (print k more n first last same a b c d closed)))
(receive ((list 'small a b) (print a b)))
(receive ((list 'empty a) (print a)))
(receive ((list 'bad a b) (print a b)))
(receive ((list 'errors a b c d e f g) (print a b c d e f g)))
(def h (receive ((list 'handle h) h)))
(spawn-on where (fn () (send me (kind (fn () (file/read-lines h))))))
(receive (r (print r)))
"""


@pytest.mark.parametrize("where", ["0", "1"])
def test_read_a_file_a_batch_of_lines_at_a_time(tmp_path: Path, where: str) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "big").write_text("".join(f"line {i} é\n" for i in range(300_000)))  # about 4 MB: batches of 1 MiB
    (d / "small").write_text("a\r\n\nb")
    (d / "empty").write_text("")
    (d / "bad").write_bytes(b"ok\n\xff\n")
    os.mkfifo(d / "fifo")
    prog = tmp_path / "reader.lisp"
    prog.write_text(READER)
    out, err, status = run_cli(["run", f"--allow-read={d}", "--schedulers", "3" if where == "1" else "1",
                                prog, d, where], timeout=120)
    assert status == 0 and err == "", err
    lines = out.splitlines()
    assert re.fullmatch(f'{where} true 300000 line 0 é line 99999 é true nil nil true true '
                        f'\\(closed "file/read-lines: #<file {where}\\.\\d+> is closed"\\)', lines[0]), lines
    assert lines[1:] == [
        '("a\\r" "") ("b")',
        "nil",
        '(badarg "file/read-lines: not UTF-8 text: byte 0xff at offset 3") nil',
        "enoent eisdir einval badarg badarg badarg eacces",
        "not_owner",
    ], lines


def test_read_lines_through_the_pool_when_the_page_cache_would_wait(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Without RWF_NOWAIT (another system, or data not in the page cache) every chunk is read in
    the pool while the owner waits: the same lines come, in the same batches."""
    from lispvm.scheduler import io
    from lispvm.vm import permissions

    monkeypatch.setattr(io, "_NOWAIT", 0)
    (tmp_path / "f").write_text("".join(f"{i}\n" for i in range(400_000)) + "last")  # about 2.7 MB
    src = f"""
(def f (file/open "{tmp_path}/f"))
(def go (fn (k n last)
  (let ((b (file/read-lines f)))
    (if (nil? b) (list k n last) (go (+ k 1) (+ n (length b)) (nth b (- (length b) 1)))))))
(print (go 0 0 nil) (file/read-lines f) (file/close f))
"""
    old = permissions.current()
    permissions.install(permissions.Permissions(read=[str(tmp_path)]))
    try:
        out, err, status = _run_here(src)
    finally:
        permissions.install(old)
    batches, rest = out.split(" ", 1)
    assert (int(batches[1:]) > 10, rest, err, status) == (True, '400001 "last") nil true\n', "", 0)
