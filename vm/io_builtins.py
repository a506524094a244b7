"""The builtins of files, standard input and the environment (LANGUAGE.md section 14).

Owns: checking each call's arguments and permission (vm/permissions.py), then asking the
scheduler to do the waiting part: `raise Block(("io", NAME, *args))`, which the scheduler's
I/O service (scheduler/io.py) answers from its thread pool or its poller. Must never: touch the
file system or standard input itself (that would block the scheduler), or import scheduler/.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from . import handles
from .checks import check_str, described, short_repr
from .errors import badarg
from .handles import Handle
from .net_builtins import WOULD_WAIT
from .permissions import check, check_path, os_lisp_error
from .process import Block, ctx
from .registry import builtin
from .values import TRUE

__all__: list[str] = []


def _path(name: str, kind: str, path: Any, follow: bool = True) -> str:
    """The canonical path if `kind` allows it (after the argument's own check)."""
    check_str(name, path)
    if not path or "\0" in path:
        raise badarg(f"{name}: expected a file path, got {short_repr(path)}")
    return check_path(kind, name, path, follow)


def _text(name: str, text: Any) -> str:
    if text.__class__ is not str:
        raise badarg(f"{name}: expected the text to write as a string, got {described(text)}")
    return text


@builtin("file/read")
def b_file_read(path: Any) -> Any:
    raise Block(("io", "file/read", _path("file/read", "read", path)))


@builtin("file/lines")
def b_file_lines(path: Any) -> Any:
    raise Block(("io", "file/lines", _path("file/lines", "read", path)))


@builtin("file/open")
def b_file_open(path: Any) -> Any:
    raise Block(("io", "file/open", _path("file/open", "read", path)))


def _reader(name: str, f: Any) -> Any:
    if f.__class__ is not Handle or f.kind != "file":
        got = f"{f.kind} {f!r}" if f.__class__ is Handle else described(f)
        raise badarg(f"{name}: expected a file opened by file/open, got {got}")
    return f


@builtin("file/read-lines")
def b_file_read_lines(f: Any) -> Any:
    h = _reader("file/read-lines", f)
    res = handles.lookup(h)
    if res is not None and res.owner == ctx.proc.pid:  # (the batch read ahead, without waiting)
        got = res.take()
        if got is not WOULD_WAIT:
            return got
    raise Block(("io", "file/read-lines", h))


@builtin("file/close")
def b_file_close(f: Any) -> Any:
    h = _reader("file/close", f)
    if handles.lookup(h) is None and h.sched == ctx.host.scheduler_id():
        return TRUE  # closed already: closing again is harmless
    raise Block(("io", "file/close", h))


@builtin("file/write")
def b_file_write(path: Any, text: Any) -> Any:
    real = _path("file/write", "write", path)
    raise Block(("io", "file/write", real, _text("file/write", text)))


@builtin("file/append")
def b_file_append(path: Any, text: Any) -> Any:
    real = _path("file/append", "write", path)
    raise Block(("io", "file/append", real, _text("file/append", text)))


@builtin("file/exists?")
def b_file_exists(path: Any) -> Any:
    raise Block(("io", "file/exists?", _path("file/exists?", "read", path)))


@builtin("file/list-dir")
def b_file_list_dir(path: Any) -> Any:
    raise Block(("io", "file/list-dir", _path("file/list-dir", "read", path)))


@builtin("file/delete")
def b_file_delete(path: Any) -> Any:
    real = _path("file/delete", "write", path, follow=False)
    if os.path.basename(path.rstrip(os.sep)) in (".", ".."):  # as rmdir("d/.") is (POSIX)
        raise os_lisp_error(OSError(errno.EINVAL, os.strerror(errno.EINVAL), path), "file/delete")
    raise Block(("io", "file/delete", real))


@builtin("io/read-line")
def b_read_line() -> Any:
    raise Block(("io", "io/read-line"))


@builtin("sys/env")
def b_env(name: Any) -> Any:
    check_str("sys/env", name)
    check("env", "sys/env", name)
    if not name or "=" in name or "\0" in name:
        raise badarg(f"sys/env: expected a variable's name, got {short_repr(name)}")
    return os.environ.get(name)  # (a dict look-up: nothing to wait for)
