"""The reader: source text to Lisp data, with the line and column of every form.

Owns: LANGUAGE.md section 1 (tokens, literals, quote shorthands, vector brackets, comments) and
reading errors. Forms are plain Lisp values (Cons, Sym, Vec, numbers, strings) so that macros,
which run on the VM, receive and return ordinary data. Positions live beside the data in a
SourceMap keyed by object identity, so they cost the data nothing.

A `[a b]` literal reads as a Vec whose items are the element forms: in code it is evaluated
element by element, in a quoted form it is a vector constant, in a pattern a vector pattern. A
`{k v ...}` literal reads as a MapForm holding the forms in order (LANGUAGE.md section 9): in
code a `sys/map-of` call, quoted a map constant, in a pattern a map pattern. It is not a Map at
read time because its keys are still unevaluated forms.

The reader is a loop over tokens with an explicit stack: nesting depth is limited only by
memory, never by Python's recursion limit.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from ..vm.errors import CompileError
from ..vm.values import FALSE, TRUE, Cons, Vec, from_list, intern, map_of, to_repr

__all__ = ["SourceMap", "read", "MapForm", "datum"]

QUOTE = intern("quote")
QUASIQUOTE = intern("quasiquote")
UNQUOTE = intern("unquote")
UNQUOTE_SPLICING = intern("unquote-splicing")
_DOT = intern(".")

_PREFIX = {"'": QUOTE, "`": QUASIQUOTE, ",": UNQUOTE, ",@": UNQUOTE_SPLICING}

_TOKEN = re.compile(
    r"""(?P<ws>[ \t\r\n\f\v]+)
      | (?P<comment>;[^\n]*)
      | (?P<open>[(\[{])
      | (?P<close>[)\]}])
      | (?P<prefix>,@|[',`])
      | (?P<string>")
      | (?P<atom>[^\s()\[\]{}";'`,]+)""",
    re.VERBOSE,
)
_INT = re.compile(r"[+-]?[0-9]+\Z")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
_CLOSER = {"(": ")", "[": "]", "{": "}"}


class MapForm:
    """A `{k v ...}` literal as read: `items` is the tuple of its forms, keys and values
    alternating (an even count: the reader refuses an odd one). Its position is in the SourceMap
    like a list's, and each item's through SourceMap.get_item."""

    __slots__ = ("items",)

    def __init__(self, items: tuple) -> None:
        self.items = items  # the forms, k1 v1 k2 v2 ...

    def pairs(self) -> list[tuple[Any, Any]]:
        """The (key form, value form) pairs in source order."""
        it = self.items
        return [(it[i], it[i + 1]) for i in range(0, len(it), 2)]

    def to_map(self) -> Any:
        """The Map this literal denotes when quoted (its forms taken as data, a MapForm inside
        them a Map too; a later key wins)."""
        return datum(self)

    def __repr__(self) -> str:
        return "{" + " ".join(to_repr(x) for x in self.items) + "}"


def datum(form: Any) -> Any:
    """A quoted form as a run-time value: every MapForm in it, at any depth, becomes a Map. A
    form without one is returned as it is (the same object). Iterative."""
    c = form.__class__
    if c is not MapForm and (c is not Cons and c is not Vec or not _holds_mapform(form)):
        return form
    out: list[Any] = []
    # (node, None): a node to convert; (kind, kids): a container whose converted kids are the
    # last len(kids) entries of `out`
    stack: list[tuple[Any, Any]] = [(form, None)]
    while stack:
        n, kids = stack.pop()
        if kids is not None:
            k = len(kids)
            vals = out[len(out) - k:]
            del out[len(out) - k:]
            out.append(from_list(vals[:-1], vals[-1]) if n is Cons else Vec(vals) if n is Vec else map_of(*vals))
            continue
        c = n.__class__
        if c is Cons:
            kids = []
            while n.__class__ is Cons:
                kids.append(n.head)
                n = n.tail
            kids.append(n)  # the tail: nil, or an improper tail
        elif c is Vec or c is MapForm:
            kids = list(n.items)
        else:
            out.append(n)
            continue
        stack.append((c, kids))
        stack.extend((x, None) for x in reversed(kids))
    return out[0]


def _holds_mapform(form: Any) -> bool:
    todo = [form]
    while todo:
        x = todo.pop()
        c = x.__class__
        if c is MapForm:
            return True
        if c is Cons:
            while x.__class__ is Cons:
                todo.append(x.head)
                x = x.tail
            todo.append(x)
        elif c is Vec:
            todo.extend(x.items)
    return False


class SourceMap:
    """Positions of forms, keyed by identity. Holds each form so that ids are never reused."""

    def __init__(self, file: str) -> None:
        self.file = file  # the source file name used in messages
        self._pos: dict[int, tuple[Any, int, int]] = {}
        self._elem: dict[int, tuple[Any, int, int]] = {}
        self._items: dict[tuple[int, int], tuple[Any, int, int]] = {}

    def set(self, form: Any, line: int, col: int) -> None:
        """Record where `form` (a Cons or Vec) starts; the first record wins."""
        if id(form) not in self._pos:
            self._pos[id(form)] = (form, line, col)

    def set_elem(self, cell: Any, line: int, col: int) -> None:
        """Record where the element in `cell.head` starts (for atoms, which have no identity)."""
        self._elem[id(cell)] = (cell, line, col)

    def get_elem(self, cell: Any) -> tuple[int, int] | None:
        """The (line, col) of the element held by `cell`, if the reader saw it."""
        entry = self._elem.get(id(cell))
        return (entry[1], entry[2]) if entry is not None and entry[0] is cell else None

    def set_item(self, form: Any, index: int, line: int, col: int) -> None:
        """Record where item `index` of a MapForm or Vec `form` starts."""
        self._items[(id(form), index)] = (form, line, col)

    def get_item(self, form: Any, index: int) -> tuple[int, int] | None:
        """The (line, col) of item `index` of a MapForm or Vec read from source, else None."""
        entry = self._items.get((id(form), index))
        return (entry[1], entry[2]) if entry is not None and entry[0] is form else None

    def get(self, form: Any) -> tuple[int, int] | None:
        """The (line, col) of `form`, or None for forms that macros built from nothing."""
        entry = self._pos.get(id(form))
        return (entry[1], entry[2]) if entry is not None and entry[0] is form else None

    def error(self, form: Any, message: str, fallback: tuple[int, int] = (1, 1)) -> CompileError:
        """A CompileError at `form`'s position (or `fallback`)."""
        line, col = self.get(form) or fallback
        return CompileError(self.file, line, col, message)


class _Open:
    """A list or vector being read: its items and where it started."""

    __slots__ = ("kind", "items", "cells", "line", "col", "prefixes")

    def __init__(self, kind: str, line: int, col: int) -> None:
        self.kind = kind  # "(", "[" or "{"
        self.items: list[Any] = []  # forms read so far
        self.cells: list[tuple[int, int]] = []  # the position of each item
        self.line, self.col = line, col
        self.prefixes: list[tuple[Any, int, int]] = []  # pending quote shorthands


def read(text: str, file: str = "<string>", smap: SourceMap | None = None) -> tuple[list[Any], SourceMap]:
    """Read every top-level form of `text`. Raises CompileError with file:line:col."""
    smap = smap or SourceMap(file)
    if text.startswith("\ufeff"):  # a UTF-8 byte order mark some editors write: not a symbol
        text = text[1:]
    top = _Open("", 0, 0)
    stack = [top]
    pos, line, line_start, n = 0, 1, 0, len(text)

    def err(at: int, message: str) -> CompileError:
        ln = text.count("\n", 0, at) + 1
        col = at - (text.rfind("\n", 0, at) + 1) + 1
        return CompileError(file, ln, col, message)

    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None:  # pragma: no cover - the atom class matches any other character
            raise err(pos, f"unexpected character {text[pos]!r}")
        kind = m.lastgroup
        start = pos
        col = start - line_start + 1
        pos = m.end()
        if kind == "ws" or kind == "comment":
            nl = text.count("\n", start, pos)
            if nl:
                line += nl
                line_start = text.rfind("\n", start, pos) + 1
            continue
        cur = stack[-1]
        if kind == "open":
            stack.append(_Open(m.group(), line, col))
            continue
        if kind == "prefix":
            cur.prefixes.append((_PREFIX[m.group()], line, col))
            continue
        if kind == "close":
            if len(stack) == 1:
                raise err(start, f"unbalanced parenthesis: unexpected '{m.group()}'")
            if cur.prefixes:
                raise err(start, f"nothing follows {cur.prefixes[-1][0].name!r} before '{m.group()}'")
            want = _CLOSER[cur.kind]
            if m.group() != want:
                raise err(start, f"'{cur.kind}' opened at {cur.line}:{cur.col} is closed by '{m.group()}'")
            stack.pop()
            form = _build(cur, smap, err, start)
            _add(stack[-1], form, cur.line, cur.col, smap)
            continue
        if kind == "string":
            sline = line
            value, pos, line, line_start = _read_string(text, pos, line, line_start, err, start)
            _add(cur, value, sline, col, smap)
            continue
        try:
            atom = _atom(m.group())
        except ValueError:  # the integer/text conversion limit (vm/builtins.py MAX_INT_DIGITS)
            raise err(start, f"integer literal too large (more than {sys.get_int_max_str_digits()} digits)") from None
        _add(cur, atom, line, col, smap)

    if len(stack) > 1:
        o = stack[-1]
        raise CompileError(file, o.line, o.col, f"unbalanced parenthesis: '{o.kind}' is never closed")
    if top.prefixes:
        q, ln, c = top.prefixes[-1]
        raise CompileError(file, ln, c, f"nothing follows {q.name!r} at the end of the file")
    return top.items, smap


def _add(cur: _Open, form: Any, line: int, col: int, smap: SourceMap) -> None:
    """Append a finished form to the open list, wrapping it in pending quote shorthands."""
    while cur.prefixes:
        q, ln, c = cur.prefixes.pop()
        form = Cons(q, Cons(form, None))
        smap.set(form, ln, c)
        line, col = ln, c
    cur.items.append(form)
    cur.cells.append((line, col))


def _build(o: _Open, smap: SourceMap, err: Any, close_at: int) -> Any:
    if o.kind == "[":
        v = Vec(tuple(o.items))
        smap.set(v, o.line, o.col)
        for i, (ln, c) in enumerate(o.cells):
            smap.set_item(v, i, ln, c)
        return v
    if o.kind == "{":
        if len(o.items) & 1:
            ln, c = o.cells[-1]
            raise CompileError(smap.file, ln, c, f"the map literal opened at {o.line}:{o.col} has a key "
                               "without a value (a map literal needs keys and values in pairs)")
        mf = MapForm(tuple(o.items))
        smap.set(mf, o.line, o.col)
        for i, (ln, c) in enumerate(o.cells):
            smap.set_item(mf, i, ln, c)
        return mf
    items, tail = o.items, None
    # A dotted pair: (a b . c)
    if len(items) >= 3 and items[-2] is _DOT and _DOT not in items[:-2]:
        tail = items[-1]
        items = items[:-2]
    elif _DOT in items and len(items) > 1:
        ln, c = o.cells[items.index(_DOT)]
        raise CompileError(smap.file, ln, c, "misplaced '.' in a list")
    if not items:
        return tail  # () is nil
    out = tail
    for item, (ln, c) in zip(reversed(items), reversed(o.cells[: len(items)])):
        out = Cons(item, out)
        smap.set_elem(out, ln, c)
    smap.set(out, o.line, o.col)  # the first cell also stands for the whole list
    return out


def _read_string(text: str, pos: int, line: int, line_start: int, err: Any, start: int):
    out = []
    n = len(text)
    i = pos
    while True:
        j = i
        while j < n and text[j] != '"' and text[j] != "\\":
            j += 1
        out.append(text[i:j])
        if j >= n:
            raise err(start, "unterminated string")
        if text[j] == '"':
            i = j + 1
            break
        if j + 1 >= n:
            raise err(start, "unterminated string")
        esc = _ESCAPES.get(text[j + 1])
        if esc is None:
            raise err(j, f"bad escape '\\{text[j + 1]}' in string (use \\n, \\t, \\r, \\\", \\\\)")
        out.append(esc)
        i = j + 2
    chunk = text[pos:i]
    nl = chunk.count("\n")
    if nl:
        line += nl
        line_start = pos + chunk.rfind("\n") + 1
    return "".join(out), i, line, line_start


def _atom(tok: str) -> Any:
    if _INT.match(tok):
        return int(tok)
    if _FLOAT.match(tok):
        return float(tok)
    if tok == "true":
        return TRUE
    if tok == "false":
        return FALSE
    if tok == "nil":
        return None
    return intern(tok)
