"""Permissions (LANGUAGE.md section 14): what a program may touch outside the VM, as in Deno.

Owns: the node's settings (one `Permissions` per OS process, installed from the `--allow-*`
flags before the program runs and inherited by every forked scheduler), the checks every builtin
that reaches the outside world makes (`check`, `check_path`, `check_net`, `check_run`), and the
errno-named Lisp error of an OSError (`os_error`). Must never: import scheduler/ or assembler/,
touch the file system beyond resolving a path, or grant anything that no flag asked for.

Paths are compared after resolving them (`os.path.realpath`: the current directory, `..` and
every symlink, the allowed prefixes too), and a prefix allows only itself and what is below it
as a directory (`/tmp/a` allows `/tmp/a/x`, never `/tmp/ab`).
"""

from __future__ import annotations

import errno
import os
from typing import Any

from .errors import LispError, runtime_error
from .values import Cons, intern

__all__ = ["ALL", "Permissions", "check", "check_net", "check_path", "check_run", "current", "install",
           "os_error", "os_lisp_error", "canonical", "canonical_parent"]

ALL = "all"  # a kind allowed without a list (a flag without `=...`)
KINDS = ("read", "write", "net", "run", "env", "python")
EACCES = intern("eacces")


class Permissions:
    """What is allowed, by kind: None (nothing), ALL, or a tuple of entries (canonical paths for
    read and write, `host:port` or `host` for net, program names or paths for run). Plain data:
    it pickles into a worker's settings like any tuple."""

    __slots__ = KINDS

    def __init__(self, **kinds: Any) -> None:
        for kind in KINDS:
            setattr(self, kind, None)
        for kind, value in kinds.items():
            if kind not in KINDS:
                raise ValueError(f"no permission kind {kind!r}")
            if kind in ("read", "write") and value is not None and value != ALL:
                value = tuple(canonical(p) for p in value)
            elif value is not None and value != ALL:
                value = tuple(value)
            setattr(self, kind, value)

    @classmethod
    def everything(cls) -> Permissions:
        """-A / --allow-all."""
        return cls(**{kind: ALL for kind in KINDS})

    def __repr__(self) -> str:
        return "Permissions(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in KINDS if getattr(self, k)) + ")"

    def __reduce__(self) -> tuple:
        return (_rebuild, (tuple(getattr(self, k) for k in KINDS),))


def _rebuild(values: tuple) -> Permissions:
    p = Permissions()
    for kind, value in zip(KINDS, values):
        setattr(p, kind, value)
    return p


_current = Permissions()  # this OS process's: nothing allowed until the CLI installs its flags


def install(perms: Permissions) -> None:
    """Make `perms` this OS process's settings (before the program runs; forked schedulers
    inherit them)."""
    global _current
    _current = perms


def current() -> Permissions:
    return _current


def canonical(path: str) -> str:
    """`path` made absolute with `..` and every symlink resolved (of the part that exists)."""
    return os.path.realpath(os.path.abspath(path))  # (no `~`: a path is relative to the start directory)


def canonical_parent(path: str) -> str:
    """`path` with its directory resolved as `canonical` does, and its last name kept as it is."""
    head, name = os.path.split(os.path.abspath(path))
    if name in ("", ".", ".."):
        return canonical(path)
    return os.path.join(canonical(head), name)


def _refused(kind: str, who: str, what: str | None) -> LispError:
    flag = f"--allow-{kind}"
    about = f"{who}: {what}: " if what is not None else f"{who}: "
    need = {"read": "reading files", "write": "writing files", "net": "network access",
            "run": "running programs", "env": "reading the environment", "python": "calling Python"}[kind]
    return runtime_error(EACCES, f"{about}{need} is not allowed (allowed by {flag})")


def check(kind: str, who: str, what: str | None = None) -> None:
    """Raise `(error eacces "...")` unless `kind` is allowed at all (env, python; or any entry of
    the other kinds: use the specific checks for those). `who` names the builtin."""
    if getattr(_current, kind) is None:
        raise _refused(kind, who, what)


def under(path: str, prefix: str) -> bool:
    """Is the canonical `path` the canonical `prefix` or below it as a directory?"""
    if path == prefix:
        return True
    if not prefix.endswith(os.sep):
        prefix += os.sep
    return path.startswith(prefix)


def check_path(kind: str, who: str, path: str, follow: bool = True) -> str:
    """The canonical form of `path` if `kind` ("read" or "write") allows it; else raise
    `(error eacces "...")`. The builtin then uses the canonical path, so what was checked is
    what is opened. With `follow` false the last component is not resolved (deleting a symlink
    removes the link, in its own directory, not what it points to)."""
    allowed = getattr(_current, kind)
    real = canonical(path) if follow else canonical_parent(path)
    if allowed is None or (allowed != ALL and not any(under(real, p) for p in allowed)):
        raise _refused(kind, who, path)
    if not real.endswith(os.sep) and (path.endswith(os.sep) or os.path.basename(path) in (".", "..")):
        # the path names a directory: realpath drops the mark, and with it the system's ENOTDIR
        # for `f/` or `f/.` where f is a file (POSIX): it is kept for the call to meet
        real += os.sep
    return real


def check_net(who: str, host: str, port: int) -> None:
    """Raise `(error eacces "...")` unless `host:port` is allowed: an entry `host` allows every
    port of that host, `host:port` that port only (the host as written, compared without case)."""
    allowed = _current.net
    if allowed == ALL:
        return
    h = host.lower()
    if allowed is not None:
        for entry in allowed:
            eh, sep, ep = entry.rpartition(":") if _has_port(entry) else (entry, "", "")
            if eh.strip("[]").lower() == h.strip("[]") and (not sep or ep == str(port)):
                return
    raise _refused("net", who, f"{host}:{port}")


def _has_port(entry: str) -> bool:
    """Does a --allow-net entry end in `:PORT` (an IPv6 address in brackets may hold colons)?"""
    head, sep, tail = entry.rpartition(":")
    return bool(sep) and tail.isdigit() and (not head.startswith("[") or head.endswith("]")) and (
        head.startswith("[") or ":" not in head)


def check_run(who: str, program: str) -> None:
    """Raise `(error eacces "...")` unless `program` may be started: an entry allows the program
    by that name (as found on PATH) or by its path (resolved like file paths)."""
    allowed = _current.run
    if allowed == ALL:
        return
    if allowed is not None:
        import shutil

        found = shutil.which(program) if os.sep not in program else program
        real = canonical(found) if found else None
        for entry in allowed:
            if entry == program:
                return
            if real is not None:
                e = shutil.which(entry) if os.sep not in entry else entry
                if e and canonical(e) == real:
                    return
    raise _refused("run", who, program)


def os_lisp_error(exc: OSError, who: str | None = None) -> LispError:
    """The `(error KIND "message")` of an OSError, KIND its errno name in lower case (enoent,
    eacces, eisdir...), ready to raise."""
    code = exc.errno
    name = errno.errorcode.get(code, "eio").lower() if code is not None else "eio"
    text = exc.strerror or str(exc) or name
    where = exc.filename
    msg = text if where is None else f"{where}: {text}"
    if who is not None:
        msg = f"{who}: {msg}"
    return runtime_error(intern(name), msg)


def os_error(exc: OSError, who: str | None = None) -> Cons:
    """The Lisp error value `(error KIND "message")` of an OSError (see os_lisp_error)."""
    return os_lisp_error(exc, who).value
