"""Permissions (LANGUAGE.md section 14; vm/permissions.py, scheduler/cli.py, docs/io.md).

Every kind refused without its flag (with the flag named in the message) and allowed with it,
from the main process and from a process on another scheduler; the path tricks (`..`, a
symlink out of the allowed directory, a relative path, a prefix that is a string prefix but not
a directory prefix); the flags' syntax (usage errors exit 2); errno-named errors.
"""

from __future__ import annotations

import errno
import os
import pickle
import sys
from pathlib import Path

import pytest
from conftest import run_cli

from lispvm.vm import permissions as P
from lispvm.vm.errors import LispError
from lispvm.vm.values import Cons


@pytest.fixture
def perms() -> object:
    """Install permissions for one test (this OS process's), restored after."""
    old = P.current()

    def install(**kinds: object) -> None:
        P.install(P.Permissions(**kinds))

    yield install
    P.install(old)


def _refused(fn: object, *args: object) -> str:
    with pytest.raises(LispError) as ei:
        fn(*args)
    v = ei.value.value
    assert v.head.name == "error" and v.tail.head.name == "eacces"
    return v.tail.tail.head


# --- paths -------------------------------------------------------------------------------------

def test_path_tricks_do_not_get_past_a_prefix(tmp_path: Path, perms: object, monkeypatch: pytest.MonkeyPatch) -> None:
    a = tmp_path / "a"
    ab = tmp_path / "ab"
    (a / "inner").mkdir(parents=True)
    ab.mkdir()
    (ab / "secret").write_text("s")
    (a / "out").symlink_to(ab)  # a symlink inside the allowed directory pointing out of it
    (a / "in").symlink_to(a / "inner")  # one that stays inside
    (tmp_path / "alias").symlink_to(a)  # the allowed directory reached through another name
    perms(read=[str(a)])
    ok = P.check_path("read", "file/read", str(a / "inner" / "f"))
    assert ok == str((a / "inner" / "f").resolve())
    assert P.check_path("read", "file/read", str(a)) == str(a.resolve())
    assert P.check_path("read", "file/read", str(a / "in" / "f")) == str((a / "inner" / "f").resolve())
    assert P.check_path("read", "file/read", str(tmp_path / "alias" / "x")) == str((a / "x").resolve())
    msg = _refused(P.check_path, "read", "file/read", str(ab / "secret"))  # /tmp/a vs /tmp/ab
    assert msg == f"file/read: {ab / 'secret'}: reading files is not allowed (allowed by --allow-read)"
    _refused(P.check_path, "read", "file/read", str(a / ".." / "ab" / "secret"))
    _refused(P.check_path, "read", "file/read", str(a / "inner" / ".." / ".." / "ab"))
    _refused(P.check_path, "read", "file/read", str(a / "out" / "secret"))
    _refused(P.check_path, "read", "file/read", str(a / "out" / "new-file"))  # (not there yet)
    _refused(P.check_path, "read", "file/read", str(tmp_path))
    _refused(P.check_path, "write", "file/write", str(a / "f"))  # read allows no writing
    # deleting checks the link's own directory, not where it points
    perms(write=[str(a)])
    assert P.check_path("write", "file/delete", str(a / "out"), follow=False) == str(a.resolve() / "out")
    _refused(P.check_path, "write", "file/delete", str(a / "out" / "secret"), False)
    _refused(P.check_path, "write", "file/delete", str(a / ".."), False)
    _refused(P.check_path, "write", "file/delete", str(ab / "secret"), False)
    perms(read=[str(a)])
    monkeypatch.chdir(a / "inner")
    assert P.check_path("read", "file/read", "rel.txt") == str((a / "inner" / "rel.txt").resolve())
    _refused(P.check_path, "read", "file/read", "../../ab/secret")


def test_allowed_prefixes_given_relative_or_through_symlinks(tmp_path: Path, perms: object,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    perms(write=["link/", "./other/../real2"])  # resolved once, when installed
    assert P.check_path("write", "file/write", str(tmp_path / "real" / "x")) == str((tmp_path / "real" / "x").resolve())
    assert P.check_path("write", "file/write", str(tmp_path / "real2" / "y"))
    _refused(P.check_path, "write", "file/write", str(tmp_path / "link2"))
    perms(read=P.ALL)
    assert P.check_path("read", "file/read", "/") == "/"
    perms(read=["/"])
    assert P.check_path("read", "file/read", "/etc/hostname") == os.path.realpath("/etc/hostname")


def test_net_run_env_python_checks(perms: object) -> None:
    perms()
    assert "(allowed by --allow-net)" in _refused(P.check_net, "tcp/connect", "localhost", 80)
    assert "(allowed by --allow-run)" in _refused(P.check_run, "port/open", "cat")
    assert "(allowed by --allow-env)" in _refused(P.check, "env", "sys/env", "HOME")
    assert "(allowed by --allow-python)" in _refused(P.check, "python", "py/import", None)
    perms(net=["localhost:8080", "Example.com", "[::1]:9"], run=["cat", sys.executable])
    P.check_net("tcp/connect", "localhost", 8080)
    _refused(P.check_net, "tcp/connect", "localhost", 8081)
    _refused(P.check_net, "tcp/connect", "localhost.evil", 8080)
    P.check_net("tcp/connect", "example.com", 1)  # a host without a port: every port
    P.check_net("tcp/connect", "::1", 9)
    _refused(P.check_net, "tcp/connect", "::1", 10)
    P.check_run("port/open", "cat")
    P.check_run("port/open", os.path.realpath(sys.executable))  # the same program by its path
    _refused(P.check_run, "port/open", "sh")
    _refused(P.check, "env", "sys/env", "HOME")
    P.install(P.Permissions.everything())
    P.check_net("tcp/listen", "0.0.0.0", 0)
    P.check_run("port/open", "anything")
    P.check("env", "sys/env")
    P.check("python", "py/import")
    assert pickle.loads(pickle.dumps(P.current())).read == P.ALL


def test_os_errors_are_named_by_errno() -> None:
    v = P.os_error(FileNotFoundError(errno.ENOENT, "No such file or directory", "/x"), "file/read")
    assert v.__class__ is Cons and v.tail.head.name == "enoent"
    assert v.tail.tail.head == "file/read: /x: No such file or directory"
    assert P.os_error(OSError(errno.EACCES, "Permission denied")).tail.head.name == "eacces"
    assert P.os_error(OSError("no errno")).tail.head.name == "eio"


# --- the flags ---------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["--allow-read=", "p.lisp"], "--allow-read: expected a comma-separated list"),
    (["--allow-write=a,,b", "p.lisp"], "--allow-write: expected a comma-separated list"),
    (["--allow-net=host:99999", "p.lisp"], "--allow-net: expected HOST or HOST:PORT"),
    (["--allow-net=host:http", "p.lisp"], "--allow-net: expected HOST or HOST:PORT"),
    (["--allow-net=:80", "p.lisp"], "--allow-net: expected HOST or HOST:PORT"),  # no host
    (["--allow-net=[::1", "p.lisp"], "--allow-net: expected HOST or HOST:PORT"),  # no closing bracket
    (["--allow-net=a:b:c", "p.lisp"], "--allow-net: expected HOST or HOST:PORT"),  # no IPv6 address
    (["--allow-net=[::1]:x", "p.lisp"], "--allow-net: expected HOST or HOST:PORT"),
    (["--allow-env=HOME", "p.lisp"], "--allow-env: ignored explicit argument"),
    (["--allow-python=x", "p.lisp"], "--allow-python: ignored explicit argument"),
    (["--allow-everything", "p.lisp"], "unrecognized arguments"),
])
def test_bad_flags_are_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture,
                                    perms: object) -> None:
    from lispvm.scheduler.cli import main

    with pytest.raises(SystemExit) as ei:
        main(["run", *argv])
    assert ei.value.code == 2
    assert message in capsys.readouterr().err


def test_flag_parsing(perms: object, tmp_path: Path) -> None:
    import argparse

    from lispvm.scheduler import cli

    p = cli._parser()

    def parsed(*argv: str) -> P.Permissions:
        return cli.permissions_from(p.parse_args(cli.mark_bare_flags(["run", *argv])), p)

    assert parsed("--allow-net=::1,[::1]:80,[fe80::1]", "p.lisp").net == ("::1", "[::1]:80", "[fe80::1]")
    got = parsed("--allow-read", "--allow-net=a:1,b", "--allow-net=c", "--allow-run=cat", "prog.lisp",
                 "--allow-write")
    assert (got.read, got.net, got.run, got.write, got.env) == (P.ALL, ("a:1", "b", "c"), ("cat",), None, None)
    ns = p.parse_args(cli.mark_bare_flags(["run", "--allow-read", "prog.lisp", "--allow-write"]))
    assert ns.file == "prog.lisp" and ns.args == ["--allow-write"]  # the program's own argument
    got = parsed("--schedulers", "2", "--allow-write=" + str(tmp_path), "--allow-env", "--allow-python", "x.lisp")
    assert (got.write, got.env, got.python, got.read) == ((str(tmp_path.resolve()),), P.ALL, P.ALL, None)
    argv = ["run", "--trace", "t.json", "--reductions", "9", "--allow-run", "x.lisp"]
    ns = p.parse_args(cli.mark_bare_flags(argv, p))
    assert (ns.trace, ns.reductions, ns.allow_run, ns.file) == ("t.json", 9, [cli._ALL_MARK], "x.lisp")
    got = parsed("-A", "x.lisp")
    assert all(getattr(got, k) == P.ALL for k in P.KINDS)
    assert isinstance(p, argparse.ArgumentParser)


# --- whole programs: refused and allowed, on the main process and on another scheduler ----------

REFUSED = r"""
(def kind (f) (try (f) (catch e (list (nth e 1) (nth e 2)))))
(def all-calls ()
  (list/map kind
    (list (fn () (file/read "in/x.txt")) (fn () (file/lines "in/x.txt")) (fn () (file/exists? "in/x.txt"))
          (fn () (file/list-dir "in")) (fn () (file/write "in/y.txt" "y")) (fn () (file/append "in/y.txt" "y"))
          (fn () (file/delete "in/x.txt")) (fn () (sys/env "HOME")) (fn () (tcp/connect "localhost" 1))
          (fn () (tcp/listen 0)) (fn () (port/open "cat" (list))) (fn () (py/import "math")))))
(def run-on (k) (spawn-on k (fn (parent) (send parent (all-calls))) (self)) (receive (r r)))
(list/map (fn (r) (print r)) (run-on 0))
(print (== (run-on 0) (run-on 2)))
(print (file/exists? "in/x.txt"))
"""

_FLAGS = {"file/read": "read", "file/lines": "read", "file/exists?": "read", "file/list-dir": "read",
          "file/write": "write", "file/append": "write", "file/delete": "write", "sys/env": "env",
          "tcp/connect": "net", "tcp/listen": "net", "port/open": "run", "py/import": "python"}


@pytest.mark.parametrize("nsched", [1, 3])
def test_every_kind_is_refused_without_its_flag(tmp_path: Path, nsched: int) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.txt").write_text("x")
    (tmp_path / "prog.lisp").write_text(REFUSED)
    # --allow-read of another directory, and --allow-net of another port, still refuse
    out, err, status = run_cli(["run", "--schedulers", str(nsched), "--allow-read=other", "--allow-net=localhost:2",
                                "prog.lisp"], cwd=tmp_path)
    lines = out.splitlines()
    assert status == 1 and "eacces: file/exists?: in/x.txt: reading files is not allowed" in err, err
    assert len(lines) == 13
    for line, (who, kind) in zip(lines, _FLAGS.items()):
        assert line.startswith(f'(eacces "{who}: ') and line.endswith(f'(allowed by --allow-{kind})")'), line
    assert lines[12] == "true"  # the same refusals on another scheduler (its OS process with -3)
    assert (tmp_path / "in" / "x.txt").read_text() == "x"


ALLOWED = r"""
(def all-calls (dir)
  (list (file/write (str dir "/w.txt") "a") (file/append (str dir "/w.txt") "b") (file/read (str dir "/w.txt"))
        (file/lines "in/x.txt") (file/exists? "in/x.txt") (file/list-dir "in")
        (string? (sys/env "PATH")) (sys/env "LISPVM_SURELY_NOT_SET")
        (file/delete (str dir "/w.txt"))))
(def run-on (k dir) (spawn-on k (fn (parent) (send parent (all-calls dir))) (self)) (receive (r r)))
(print (run-on 0 "out0"))
(print (run-on 2 "out2"))
(def kind (f) (try (f) (catch e (nth e 1))))
(print (list/map kind (list (fn () (file/read "in/../secret.txt")) (fn () (file/read "in/escape/secret.txt"))
                            (fn () (file/read "inner-not-in/x")) (fn () (file/write "in/x.txt" "no"))
                            (fn () (file/read "out0/../in/x.txt")))))
"""


@pytest.mark.parametrize("flags", [
    ["--allow-read=in,out0,out2", "--allow-write=out0,out2", "--allow-env"],
    ["-A"],
])
def test_allowed_with_the_flags(tmp_path: Path, flags: list[str]) -> None:
    for d in ("in", "out0", "out2", "inner-not-in"):
        (tmp_path / d).mkdir()
    (tmp_path / "in" / "x.txt").write_text("x\n")
    (tmp_path / "secret.txt").write_text("s")
    (tmp_path / "in" / "escape").symlink_to(tmp_path)
    (tmp_path / "prog.lisp").write_text(ALLOWED)
    out, err, status = run_cli(["run", "--schedulers", "3", *flags, "prog.lisp"], cwd=tmp_path)
    assert (status, err) == (0, ""), err
    lines = out.splitlines()
    assert lines[0] == lines[1] == '(true true "ab" ("x") true ("escape" "x.txt") true nil true)'
    if flags == ["-A"]:  # everything: the same calls reach outside, and write where reading was allowed
        assert lines[2] == '("s" "s" enoent true "no")'
    else:  # `..`, a symlink out, a name that only starts like an allowed one, write under read-only
        assert lines[2] == '(eacces eacces eacces eacces "x\\n")'
