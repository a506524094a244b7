"""Error values and exit statuses: one format per kind of error (STYLE.md habit 10).

- Read and compile errors: `file:line:col: message` (CompileError, raised by the assembler).
- Bytecode load errors: `prog.lbc: not a valid bytecode file (reason)` (BadBytecode).
- Guest errors: Lisp values. A runtime error is the list `(error KIND "message")`; `throw`
  raises any value. Both travel as LispError until a `try` catches them.
- Internal errors: any other Python exception, reported loudly as a bug.
"""

from __future__ import annotations

import sys
from typing import Any

from .values import Cons, Map, Vec, intern, map_items_sorted, to_repr

# System limits (docs/language.md, "System limits"): work a single builtin call or instruction
# may do without counting reductions is bounded, so that no call blocks its scheduler for long.
MAX_INT_DIGITS = 20_000  # int <-> text conversion is quadratic in CPython: bounded like its default
MAX_TEXT = 1 << 22  # characters in a string that str, repr, str/join or print may build
MAX_LIST = 1 << 20  # elements in a list that list/range may build
MAX_INT_BITS = 1 << 20  # bits in an integer that `*` may make: multiplying is one instruction, one reduction
INT_LIMIT = 1 << MAX_INT_BITS  # a product must stay strictly between INT_MIN and INT_LIMIT
INT_MIN = -INT_LIMIT  # a constant: negating INT_LIMIT at each test would build a 128 KiB integer
if hasattr(sys, "set_int_max_str_digits"):  # CPython 3.11+: its own check enforces MAX_INT_DIGITS
    sys.set_int_max_str_digits(MAX_INT_DIGITS)

EXIT_OK = 0  # the main process ended normally
EXIT_FAIL = 1  # an uncaught error in the main process, or a compile error
EXIT_USAGE = 2  # a usage error, an unreadable file, or an invalid bytecode file

ERROR = intern("error")
BADARG = intern("badarg")
BADARITY = intern("badarity")
UNDEF_ = intern("undef")
BADMATCH = intern("badmatch")
USER = intern("user")
SYSTEM_LIMIT = intern("system_limit")


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


def system_limit(message: str) -> LispError:
    """`(error system_limit "message")`: a value or a piece of work larger than the VM allows
    (out of memory, a number too large to print); catchable like any error, as in Erlang."""
    return runtime_error(SYSTEM_LIMIT, message)


def product_too_large(name: str = "*") -> LispError:
    """The system_limit error for an integer product of more than MAX_INT_BITS bits."""
    return system_limit(f"{name}: the product is an integer of more than {MAX_INT_BITS:,} bits")


def limit_error(exc: BaseException) -> LispError | None:
    """The system_limit error for a Python exception that means a limit was reached, else None.

    MemoryError anywhere; OverflowError when a number does not fit a machine size (not a float
    overflow, which is badarg); ValueError from the integer/text conversion limit."""
    if isinstance(exc, MemoryError):
        return system_limit("out of memory" + (f" ({exc})" if str(exc) else ""))
    text = str(exc)
    if isinstance(exc, OverflowError) and ("too large to convert" in text or "index-sized" in text
                                           or "too many digits" in text or "too big" in text):
        return system_limit(f"number too large ({text})")
    if isinstance(exc, ValueError) and "integer string conversion" in text:
        return system_limit(f"integer too large to convert to or from text ({text.split(';')[0]})")
    return None


MAX_REPORT = 1000  # characters of a value or message in one error, crash or exit report line


def report_repr(value: Any, limit: int = MAX_REPORT) -> str:
    """`to_repr(value)` cut to at most `limit` characters, ending in "..." when cut; the walk
    stops there too, so a value nested 200,000 deep, or sharing its sublists 2^60 times over,
    costs no more than its first `limit` characters."""
    out: list[str] = []
    n = 0
    todo: list[tuple] = [(0, value)]  # (0, value to print), (1, a list's rest), (2, vector, index)
    while todo and n <= limit:
        item = todo.pop()
        kind, v = item[0], item[1]
        if kind == 1:  # the rest of a list, after an element
            if v is None:
                s = ")"
            elif v.__class__ is Cons:
                s = " "
                todo.append((1, v.tail))
                todo.append((0, v.head))
            else:
                s = " . "
                todo.append((3, ")"))
                todo.append((0, v))
        elif kind == 2:  # a vector's elements from index item[2]
            i = item[2]
            if i == len(v.items):
                s = "]"
            else:
                s = " " if i else ""
                todo.append((2, v, i + 1))
                todo.append((0, v.items[i]))
        elif kind == 3:
            s = v
        elif kind == 4:  # a map's flattened entries (item[2]) from index item[3]
            flat, i = item[2], item[3]
            if i == len(flat):
                s = "}"
            else:
                s = " " if i else ""
                todo.append((4, v, flat, i + 1))
                todo.append((0, flat[i]))
        elif v.__class__ is Map:
            s = "{"
            # in key order as printed, unless sorting alone would cost more than the report
            pairs = map_items_sorted(v) if len(v.m) <= limit else list(v.m.items())[:limit]
            todo.append((4, v, [e for kv in pairs for e in kv], 0))
        elif v.__class__ is Cons:
            s = "("
            todo.append((1, v.tail))
            todo.append((0, v.head))
        elif v.__class__ is Vec:
            s = "["
            todo.append((2, v, 0))
        elif v.__class__ is str and len(v) > limit:
            s = to_repr(v[:limit])  # longer than the limit with its quotes: it will be cut
        else:
            s = to_repr(v)  # an integer too large to convert prints as #<too large to print>
        out.append(s)
        n += len(s)
    text = "".join(out)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(value: Any) -> str:
    """One line for people: `badarg: head of nil` for runtime errors, `throw: VALUE` otherwise;
    a value or message longer than MAX_REPORT characters is cut there, with "..."."""
    if (value.__class__ is Cons and value.head is ERROR and value.tail.__class__ is Cons
            and value.tail.tail.__class__ is Cons and value.tail.tail.head.__class__ is str):
        message = value.tail.tail.head
        if len(message) > MAX_REPORT:
            message = message[: MAX_REPORT - 3] + "..."
        return f"{value.tail.head!r}: {message}"
    return f"throw: {report_repr(value)}"


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
