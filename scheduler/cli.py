"""The `lispvm` command (../shared/spec/CLI.md): asm, dis, run, trace.

Owns: arguments, reading files, turning every kind of failure into one line on stderr and the
exit status of CLI.md (0 ok, 1 program or compile failure, 2 usage or unreadable/invalid file),
never a Python traceback (LISPVM_DEBUG=1 adds one for developers). Imports are lazy so that
`lispvm run hello.lbc` loads neither the compiler nor numpy, pyopencl or multiprocessing.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # usage errors: one line, status 2
        self.print_usage(sys.stderr)
        sys.stderr.write(f"lispvm: {message}\n")
        sys.exit(EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lispvm", description="A BEAM-style virtual machine for a small Lisp.")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)
    a = sub.add_parser("asm", help="compile SOURCE.lisp or assemble SOURCE.lasm into bytecode")
    a.add_argument("source")
    a.add_argument("-o", dest="out", help="output file (default: SOURCE with the suffix .lbc)")
    a.add_argument("--dump", choices=("read", "expand", "compile"),
                   help="also print the output of one compiler pass to standard output")
    d = sub.add_parser("dis", help="print the text assembly of a bytecode file")
    d.add_argument("file")
    d.add_argument("-o", dest="out", help="write the assembly to this file instead of standard output")
    r = sub.add_parser("run", help="run a bytecode file or a .lisp source")
    r.add_argument("--schedulers", type=_positive, default=None,
                   help="number of schedulers, each in its own OS process (default: CPU cores)")
    r.add_argument("--reductions", type=_positive, default=4000, help="reductions per time slice (default 4000)")
    r.add_argument("--trace", metavar="FILE", help="write the scheduler trace as JSON lines (- for stderr)")
    r.add_argument("--no-jit", action="store_true", help="run the plain interpreter only (no fast tier)")
    add_permission_flags(r)
    r.add_argument("file")
    r.add_argument("args", nargs=argparse.REMAINDER)
    t = sub.add_parser("trace", help="convert a trace into Chrome trace-event JSON")
    t.add_argument("file")
    t.add_argument("--chrome", metavar="OUT.json", required=True)
    sub.add_parser("doctor", help="what this machine offers lispvm (Python, OpenCL devices) and what to install")
    rp = sub.add_parser("repl", help="an interactive session; takes the options of run")
    for action in r._actions:  # run's options, whoever adds them, without FILE and ARGs
        if action.option_strings and action.dest != "help":
            rp._add_action(action)
    return p


# --- permissions (LANGUAGE.md section 14): none by default, as in Deno -------------------------

_LISTED = ("read", "write", "net", "run")  # the kinds whose flag may carry a list after `=`
_ALL_MARK = "\0all"  # what a listed flag given without `=` stands for (no path can hold NUL)


def add_permission_flags(p: argparse.ArgumentParser) -> None:
    """The --allow-* flags and -A of `lispvm run` (and of any subcommand taking run options)."""
    for kind, what, doing in (("read", "PATHS", "reading files"), ("write", "PATHS", "writing files"),
                              ("net", "HOST:PORT,...", "network access"), ("run", "PROGRAMS", "running programs")):
        p.add_argument(f"--allow-{kind}", action="append", metavar=what, dest=f"allow_{kind}",
                       help=f"allow {doing}: everywhere, or given as --allow-{kind}={what} only to those")
    p.add_argument("--allow-env", action="store_true", help="allow reading environment variables")
    p.add_argument("--allow-python", action="store_true", help="allow calling Python (py/...)")
    p.add_argument("-A", "--allow-all", action="store_true", help="allow everything")


def _value_options(p: argparse.ArgumentParser | None = None) -> frozenset[str]:
    """The options of `lispvm run` (in the parser `p`) whose value may follow as the next argument."""
    p = p or _parser()
    run = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices["run"]
    return frozenset(o for a in run._actions if a.option_strings and a.nargs != 0 for o in a.option_strings)


def mark_bare_flags(argv: list[str], p: argparse.ArgumentParser | None = None) -> list[str]:
    """A listed --allow-KIND flag without `=` allows all of its kind and takes no value: mark it
    before argparse, which would take the program's file for its value. Only the options before
    the program's file are looked at (what follows it is the program's own)."""
    out = list(argv)
    i = 1 if out and out[0] in ("run", "repl") else None
    if i is None:
        return out
    bare = tuple(f"--allow-{k}" for k in _LISTED)
    takes_value = _value_options(p).difference(bare)
    while i < len(out):
        tok = out[i]
        if tok == "--":
            break
        if tok in takes_value:
            i += 2
            continue
        if not tok.startswith("-"):
            break  # the program's file
        if tok in bare:
            out[i] = tok + "=" + _ALL_MARK
        i += 1
    return out


def permissions_from(ns: argparse.Namespace, p: argparse.ArgumentParser) -> Any:
    """The vm.permissions.Permissions of the parsed flags (a bad list: a usage error, status 2)."""
    from ..vm.permissions import ALL, Permissions

    if ns.allow_all:
        return Permissions.everything()
    kinds: dict[str, Any] = {}
    for kind in _LISTED:
        given = getattr(ns, f"allow_{kind}")
        if not given:
            continue
        if _ALL_MARK in given:
            kinds[kind] = ALL
            continue
        entries = [e.strip() for g in given for e in g.split(",")]
        if any(not e for e in entries):
            p.error(f"--allow-{kind}: expected a comma-separated list after =, got {','.join(given)!r}")
        if kind == "net":
            for e in entries:
                if not _net_entry_ok(e):
                    p.error(f"--allow-net: expected HOST or HOST:PORT (a port 0-65535, an IPv6 address as "
                            f"[ADDR] or [ADDR]:PORT), got {e!r}")
        if kind == "run" and any("\0" in e for e in entries):
            p.error("--allow-run: a program name cannot hold NUL")
        kinds[kind] = entries
    if ns.allow_env:
        kinds["env"] = ALL
    if ns.allow_python:
        kinds["python"] = ALL
    return Permissions(**kinds)


def _net_entry_ok(entry: str) -> bool:
    """Is `entry` a --allow-net HOST, HOST:PORT, [IPV6], [IPV6]:PORT or bare IPv6 address? (`:80`
    has no host, `[::1` no bracket closing it, `a:b:c` is no address: each a usage error.)"""
    import ipaddress

    def port_ok(port: str) -> bool:
        return port.isdigit() and 0 <= int(port) <= 65535

    def v6(addr: str) -> bool:
        try:
            ipaddress.IPv6Address(addr)
        except ValueError:
            return False
        return True

    if entry.startswith("["):
        addr, sep, rest = entry[1:].partition("]")
        return bool(sep) and v6(addr) and (rest == "" or (rest[:1] == ":" and port_ok(rest[1:])))
    if "]" in entry:
        return False
    if entry.count(":") >= 2:
        return v6(entry)
    host, sep, port = entry.partition(":")
    return bool(host) and (not sep or port_ok(port))


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    command = argv is None  # the console script itself: this process ends when main returns
    argv = sys.argv[1:] if argv is None else argv
    if hasattr(signal, "SIGTERM"):  # end as cleanly on SIGTERM as on Ctrl-C (no process left behind)
        signal.signal(signal.SIGTERM, _on_sigterm)
    p = _parser()
    ns = p.parse_args(mark_bare_flags(argv, p))
    if ns.cmd is None:
        p.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        if hasattr(ns, "allow_all"):  # run options: the node's permissions, inherited by every scheduler
            from ..vm.permissions import install

            install(permissions_from(ns, p))
        status = {"asm": cmd_asm, "dis": cmd_dis, "run": cmd_run, "trace": cmd_trace, "doctor": cmd_doctor,
                  "repl": cmd_repl}[ns.cmd](ns)
        if command:
            from .gc_policy import before_exit

            before_exit()
        return status
    except KeyboardInterrupt:
        sys.stderr.write("lispvm: interrupted\n")
        return 130
    except _Terminated:
        sys.stderr.write("lispvm: terminated\n")
        return 143
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_FAIL
    except Exception as e:  # a bug in lispvm: say so, loudly, but in one line unless debugging
        if os.environ.get("LISPVM_DEBUG"):
            raise
        sys.stderr.write(f"lispvm: internal error (a bug in lispvm): {type(e).__name__}: {e}\n"
                         "lispvm: run with LISPVM_DEBUG=1 for the traceback\n")
        return 70


def _read(path: str, binary: bool) -> Any:
    try:
        with open(path, "rb" if binary else "r", encoding=None if binary else "utf-8") as f:
            return f.read()
    except UnicodeDecodeError:
        raise _Fail(EXIT_USAGE, f"lispvm: cannot read {path}: not UTF-8 text") from None
    except OSError as e:
        raise _Fail(EXIT_USAGE, f"lispvm: cannot read {path}: {e.strerror or e}") from None


def _write(path: str, data: bytes | str) -> None:
    try:
        if isinstance(data, bytes):
            with open(path, "wb") as f:
                f.write(data)
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(data)
    except OSError as e:
        raise _Fail(EXIT_USAGE, f"lispvm: cannot write {path}: {e.strerror or e}") from None


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every `finally` (workers, sockets) runs."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated()


class _Fail(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _guard(fn: Any) -> Any:
    def wrapper(ns: argparse.Namespace) -> int:
        from ..vm.errors import CompileError

        try:
            return fn(ns)
        except _Fail as f:
            sys.stderr.write(f.message + "\n")
            return f.status
        except CompileError as e:
            sys.stderr.write(str(e) + "\n")
            return EXIT_FAIL

    wrapper.__name__ = fn.__name__
    return wrapper


def compile_file(path: str, dump: str | None = None) -> bytes:
    """The bytecode of a .lisp or .lasm file (raises CompileError or _Fail)."""
    from ..assembler.lasm import assemble
    from ..assembler.pipeline import compile_source
    from ..vm import lbc
    from ..vm.builtins import BUILTINS
    from ..vm.errors import BadBytecode, CompileError
    from ..vm.verify import reserved_globals, verify

    text = _read(path, False)
    if text.startswith("\ufeff"):  # a byte order mark some editors write: not part of the text
        text = text[1:]
    if path.endswith(".lasm"):
        module = assemble(text, path)
        try:
            reserved = reserved_globals()
            for unit in module.units():  # the bundled modules too (docs/modules.md)
                verify(unit, frozenset(BUILTINS), reserved)
        except BadBytecode as e:
            raise CompileError(path, 1, 1, f"invalid code: {e.reason}") from None
    else:
        module = compile_source(text, path, dump=dump)
    return lbc.dump(module)


@_guard
def cmd_asm(ns: argparse.Namespace) -> int:
    data = compile_file(ns.source, ns.dump)
    out = ns.out or (os.path.splitext(ns.source)[0] + ".lbc")
    _write(out, data)
    return EXIT_OK


def load_bytecode(path: str, data: bytes) -> Any:
    from ..vm import lbc
    from ..vm.builtins import BUILTINS
    from ..vm.errors import BadBytecode
    from ..vm.verify import reserved_globals, verify

    try:
        module = lbc.load(data)
        reserved = reserved_globals()  # no def of a builtin's name, as in source
        for unit in module.units():  # the bundled modules too (docs/modules.md)
            verify(unit, frozenset(BUILTINS), reserved)
    except BadBytecode as e:
        raise _Fail(EXIT_USAGE, f"{path}: not a valid bytecode file ({e.reason})") from None
    return module


@_guard
def cmd_dis(ns: argparse.Namespace) -> int:
    from ..assembler.lasm import disassemble

    module = load_bytecode(ns.file, _read(ns.file, True))
    text = disassemble(module)
    if ns.out:
        _write(ns.out, text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


@_guard
def cmd_run(ns: argparse.Namespace) -> int:
    from ..vm.errors import BadBytecode

    if ns.trace and ns.trace != "-":  # refuse an unwritable trace before anything runs
        try:
            with open(ns.trace, "w"):
                pass
        except OSError as e:
            raise _Fail(EXIT_USAGE, f"lispvm: cannot write {ns.trace}: {e.strerror or e}") from None
    if ns.file.endswith(".lisp") or ns.file.endswith(".lasm"):
        data = compile_file(ns.file)
    else:
        data = _read(ns.file, True)
        load_bytecode(ns.file, data)  # refuse a damaged file with the CLI's message
    try:
        from .runner import run_program

        return run_program(data, ns.args, schedulers=ns.schedulers, reductions=ns.reductions,
                           trace=ns.trace, jit=not ns.no_jit)
    except BadBytecode as e:
        raise _Fail(EXIT_USAGE, f"{ns.file}: not a valid bytecode file ({e.reason})") from None


@_guard
def cmd_repl(ns: argparse.Namespace) -> int:
    """lispvm repl: an interactive session (scheduler/repl.py, docs/repl.md)."""
    if ns.trace:
        raise _Fail(EXIT_USAGE, "lispvm: repl: --trace is for lispvm run (a session has no end to write it at)")
    from .repl import run_repl

    return run_repl(schedulers=ns.schedulers, reductions=ns.reductions, jit=not ns.no_jit)


@_guard
def cmd_doctor(ns: argparse.Namespace) -> int:
    """lispvm doctor: the report of scheduler/doctor.py on standard output; always 0."""
    from .doctor import doctor

    return doctor(sys.stdout)


@_guard
def cmd_trace(ns: argparse.Namespace) -> int:
    from .trace import to_chrome

    try:
        n = to_chrome(ns.file, ns.chrome)
    except OSError as e:
        raise _Fail(EXIT_USAGE, f"lispvm: cannot convert {ns.file}: {e.strerror or e}") from None
    except ValueError as e:
        raise _Fail(EXIT_USAGE, f"{ns.file}: not a lispvm trace ({e})") from None
    sys.stderr.write(f"wrote {ns.chrome} ({n} events)\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
