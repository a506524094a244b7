"""Error values and exit statuses: one format per kind of error (STYLE.md habit 10).

- Read and compile errors: `file:line:col: message` (CompileError, raised by the assembler).
- Bytecode load errors: `prog.lbc: not a valid bytecode file (reason)` (BadBytecode).
- Guest errors: Lisp values. A runtime error is the list `(error KIND "message")`; `throw`
  raises any value. Both travel as LispError until a `try` catches them.
- Internal errors: any other Python exception, reported loudly as a bug.
"""

from __future__ import annotations

from typing import Any

from .values import Cons, intern, to_repr

EXIT_OK = 0  # the main process ended normally
EXIT_FAIL = 1  # an uncaught error in the main process, or a compile error
EXIT_USAGE = 2  # a usage error, an unreadable file, or an invalid bytecode file

ERROR = intern("error")
BADARG = intern("badarg")
BADARITY = intern("badarity")
UNDEF_ = intern("undef")
BADMATCH = intern("badmatch")
USER = intern("user")


class LispError(Exception):
    """A Lisp value in flight: raised by `throw`, `error` or a failing builtin.

    `pos` is (file, line, col) once the VM knows where it was raised.
    """

    def __init__(self, value: Any, pos: tuple[str, int, int] | None = None) -> None:
        super().__init__(value)
        self.value = value  # the raised Lisp value
        self.pos = pos  # where it was raised, filled in by the loop

    def __str__(self) -> str:
        return describe(self.value)


def runtime_error(kind: Any, message: str) -> LispError:
    """The error `(error KIND "message")`, ready to raise."""
    return LispError(Cons(ERROR, Cons(kind, Cons(message, None))))


def badarg(message: str) -> LispError:
    return runtime_error(BADARG, message)


def badarity(message: str) -> LispError:
    return runtime_error(BADARITY, message)


def undef(message: str) -> LispError:
    return runtime_error(UNDEF_, message)


def badmatch(message: str) -> LispError:
    return runtime_error(BADMATCH, message)


def describe(value: Any) -> str:
    """One line for people: `badarg: head of nil` for runtime errors, `throw: VALUE` otherwise."""
    if (value.__class__ is Cons and value.head is ERROR and value.tail.__class__ is Cons
            and value.tail.tail.__class__ is Cons and value.tail.tail.head.__class__ is str):
        return f"{value.tail.head!r}: {value.tail.tail.head}"
    return f"throw: {to_repr(value)}"


class CompileError(Exception):
    """A reading or compiling error at a source position."""

    def __init__(self, file: str, line: int, col: int, message: str) -> None:
        super().__init__(f"{file}:{line}:{col}: {message}")
        self.file, self.line, self.col, self.message = file, line, col, message


class BadBytecode(Exception):
    """A bytecode file that the loader or the verifier refuses; `reason` is short and fixed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProcessExit(BaseException):
    """`(exit reason)`: ends the calling process; `try` does not catch it."""

    def __init__(self, reason: Any) -> None:
        super().__init__(reason)
        self.reason = reason


class Halt(BaseException):
    """`(halt code)`: ends the whole node with an exit status."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code
