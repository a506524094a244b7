"""The reader (LANGUAGE.md section 1): literals, shorthands, vectors, dotted pairs, comments,
the position of every form, and reading errors as `file:line:col: message`, both in process and
through `lispvm run` (exit 1, one line, nothing run, no traceback)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from lispvm.assembler.reader import read
from lispvm.vm.errors import CompileError
from lispvm.vm.values import FALSE, TRUE, Cons, Sym, Vec, intern


def one(text: str) -> Any:
    """The single form that `text` reads as."""
    forms, _ = read(text, "t.lisp")
    assert len(forms) == 1, forms
    return forms[0]


def lst(*items: Any, tail: Any = None) -> Any:
    """A Lisp list (or improper list ending in `tail`)."""
    out = tail
    for x in reversed(items):
        out = Cons(x, out)
    return out


def same(a: Any, b: Any) -> bool:
    """Structural identity of read data (symbols by identity, floats by type and value)."""
    if a.__class__ is not b.__class__:
        return False
    if isinstance(a, Cons):
        return same(a.head, b.head) and same(a.tail, b.tail)
    if isinstance(a, Vec):
        return len(a.items) == len(b.items) and all(same(x, y) for x, y in zip(a.items, b.items))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, Sym) or a is None or a is TRUE or a is FALSE:
        return a is b
    return a == b


S = intern


# --- literals ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("42", 42), ("-7", -7), ("0", 0), ("+5", 5),
    ("123456789012345678901234567890", 123456789012345678901234567890),
    ("-99999999999999999999999999", -99999999999999999999999999),
])
def test_integers(text: str, value: int) -> None:
    v = one(text)
    assert v.__class__ is int and v == value


@pytest.mark.parametrize("text, value", [
    ("3.14", 3.14), ("-0.5", -0.5), ("1e10", 1e10), ("2.5e-3", 2.5e-3), ("1.", 1.0), (".5", 0.5),
    ("1E3", 1000.0), ("-2.5e+2", -250.0), ("0.0", 0.0),
])
def test_floats(text: str, value: float) -> None:
    v = one(text)
    assert v.__class__ is float and v == value


def test_negative_zero_float_keeps_its_sign() -> None:
    assert math.copysign(1.0, one("-0.0")) == -1.0


@pytest.mark.parametrize("text, value", [
    (r'"text"', "text"), (r'""', ""), (r'"a\nb"', "a\nb"), (r'"a\tb"', "a\tb"),
    (r'"say \"hi\""', 'say "hi"'), (r'"back\\slash"', "back\\slash"), (r'"\\n"', "\\n"),
    ('"line1\nline2"', "line1\nline2"), ('"h\u00e9llo \u4e16\u754c"', "h\u00e9llo \u4e16\u754c"),
    (r'"(not a list) ; nor a comment"', "(not a list) ; nor a comment"),
])
def test_strings_and_the_four_escapes(text: str, value: str) -> None:
    assert one(text) == value


def test_true_false_nil_are_literals() -> None:
    forms, _ = read("true false nil", "t.lisp")
    assert forms[0] is TRUE and forms[1] is FALSE and forms[2] is None


@pytest.mark.parametrize("text", ["math/sin", "list/map", "a/b/c", "x->y", "empty?", "set!", "-", "+",
                                  "<=", "1abc", "1.2.3", "&", "*global*", "nil?", "true-ish"])
def test_symbols(text: str) -> None:
    v = one(text)
    assert v.__class__ is Sym and v.name == text
    assert v is intern(text), "symbols are interned"


def test_slash_is_part_of_a_symbol() -> None:
    assert same(one("(math/sin x)"), lst(S("math/sin"), S("x")))


@pytest.mark.parametrize("text, expected", [
    ("'x", lst(S("quote"), S("x"))),
    ("`x", lst(S("quasiquote"), S("x"))),
    (",x", lst(S("unquote"), S("x"))),
    (",@x", lst(S("unquote-splicing"), S("x"))),
    ("'(1 2)", lst(S("quote"), lst(1, 2))),
    ("''a", lst(S("quote"), lst(S("quote"), S("a")))),
    ("`(a ,b ,@c)", lst(S("quasiquote"), lst(S("a"), lst(S("unquote"), S("b")),
                                             lst(S("unquote-splicing"), S("c"))))),
    ("' x", lst(S("quote"), S("x"))),
    ("'[1 2]", lst(S("quote"), Vec((1, 2)))),
])
def test_quote_shorthands(text: str, expected: Any) -> None:
    assert same(one(text), expected)


def test_vectors() -> None:
    assert same(one("[a 1 \"s\"]"), Vec((S("a"), 1, "s")))
    assert same(one("[]"), Vec(()))
    assert same(one("[[1] (2 3)]"), Vec((Vec((1,)), lst(2, 3))))


def test_lists_and_empty_list() -> None:
    assert same(one("(1 (2 3) ())"), lst(1, lst(2, 3), None))
    assert one("()") is None


def test_dotted_pairs() -> None:
    assert same(one("(a . b)"), Cons(S("a"), S("b")))
    assert same(one("(1 2 . 3)"), lst(1, 2, tail=3))
    assert same(one("(1 . (2 3))"), lst(1, 2, 3))
    assert same(one("(.5 .b)"), lst(0.5, S(".b"))), "a dot inside a token is not a dotted pair"


def test_comments() -> None:
    forms, _ = read("; a comment\n(a ; inside\n b) ; after\n;; last line without newline", "t.lisp")
    assert len(forms) == 1 and same(forms[0], lst(S("a"), S("b")))
    assert read("", "t.lisp")[0] == []
    assert read("; only a comment", "t.lisp")[0] == []


def test_whitespace_of_every_kind_separates() -> None:
    forms, _ = read("a\tb\r\nc\fd", "t.lisp")
    assert [f.name for f in forms] == ["a", "b", "c", "d"]


def test_brackets_and_quotes_end_a_symbol() -> None:
    assert same(one("(a(b)c)"), lst(S("a"), lst(S("b")), S("c")))
    assert same(one("[a'b]"), Vec((S("a"), lst(S("quote"), S("b")))))
    assert same(one('(a"s"b)'), lst(S("a"), "s", S("b")))


def test_deep_nesting_does_not_use_python_recursion() -> None:
    n = 50_000
    v = one("(" * n + ")" * n)
    assert v is None or v.__class__ is Cons


# --- positions -----------------------------------------------------------------------------

def test_positions_of_forms_and_elements() -> None:
    text = "(def f (x)\n  (+ x 1))\n  [1 2]\n'q\n\n\t(a \"two\nlines\" b)"
    forms, smap = read(text, "t.lisp")
    assert [smap.get(f) for f in forms] == [(1, 1), (3, 3), (4, 1), (6, 2)]
    cells = []
    c = forms[0]
    while c is not None:
        cells.append(smap.get_elem(c))
        c = c.tail
    assert cells == [(1, 2), (1, 6), (1, 8), (2, 3)]
    inner = forms[0].tail.tail.tail.head  # (+ x 1)
    assert smap.get(inner) == (2, 3)
    last = forms[3]
    assert smap.get_elem(last.tail) == (6, 5), "the string starts at column 5"
    assert smap.get_elem(last.tail.tail) == (7, 8), "lines are counted inside a string"
    assert smap.file == "t.lisp"


def test_position_after_a_comment_and_unicode() -> None:
    forms, smap = read("; \u00e9\u00e9\u00e9\n  \"\u4e16\" (x)", "t.lisp")
    assert smap.get(forms[1]) == (2, 7), "columns count characters"


# --- reading errors ------------------------------------------------------------------------

BAD = [
    ("(print 1", 1, 1, "never closed"),
    ("(print 1))", 1, 10, "unexpected ')'"),
    ("\n\n   )", 3, 4, "unexpected ')'"),
    ("(a\n  (b c]\n)", 2, 7, "closed by ']'"),
    ("[a b)", 1, 5, "closed by ')'"),
    ("(print \"abc)", 1, 8, "unterminated string"),
    ("(print\n  \"ab\\", 2, 3, "unterminated string"),
    ("(print \"a\\qb\")", 1, 10, "bad escape"),
    ("(print \"a\\x41\")", 1, 10, "bad escape"),
    ("(a . b . c)", 1, 4, "'.'"),
    ("(. a)", 1, 2, "'.'"),
    ("(a ')", 1, 5, "quote"),
    ("(a)\n'", 2, 1, "quote"),
]


@pytest.mark.parametrize("text, line, col, words", BAD, ids=[b[0] for b in BAD])
def test_reading_errors_have_file_line_col(text: str, line: int, col: int, words: str) -> None:
    with pytest.raises(CompileError) as info:
        read(text, "bad.lisp")
    e = info.value
    assert (e.file, e.line, e.col) == ("bad.lisp", line, col)
    assert str(e).startswith(f"bad.lisp:{line}:{col}: ")
    assert words in e.message
    assert "\n" not in str(e)


CLI_BAD = [
    ("(print \"side effect\")\n(print 1", 2, 1),
    ("(print \"side effect\")\n(print 1))", 2, 10),
    ("(print \"side effect\")\n(print \"abc)", 2, 8),
    ("(print \"side effect\")\n(print \"a\\zb\")", 2, 10),
    ("(print \"side effect\")\n(print [1 2)", 2, 12),
    ("(print \"side effect\")\n(print (list 1 2]", 2, 17),
]


@pytest.mark.parametrize("text, line, col", CLI_BAD, ids=["open", "close", "string", "escape", "vec", "list"])
def test_reading_errors_through_the_command(run_lisp: Any, text: str, line: int, col: int) -> None:
    out, err, status = run_lisp(text, name="bad.lisp")
    assert status == 1
    assert out == "", "nothing runs when the file does not read"
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith(f"bad.lisp:{line}:{col}: "), err
    assert "Traceback" not in err


def test_a_leading_byte_order_mark_is_not_read() -> None:
    forms, smap = read("\ufeff(print 1)\nfoo", "b.lisp")
    assert len(forms) == 2 and forms[1] is intern("foo")
    assert smap.get(forms[0]) == (1, 1)


def test_an_integer_literal_over_the_digit_limit_is_an_error_at_the_literal() -> None:
    from lispvm.vm.errors import MAX_INT_DIGITS

    assert one("9" * MAX_INT_DIGITS) == int("9" * MAX_INT_DIGITS)
    with pytest.raises(CompileError) as info:
        read("(a\n  " + "1" * (MAX_INT_DIGITS + 1) + ")", "big.lisp")
    assert (info.value.line, info.value.col) == (2, 3)


def test_a_carriage_return_escape_reads_and_prints_back() -> None:
    """`\\r` (docs/io.md's HTTP request needs CRLF): read as CR, and repr writes it as `\\r`, so
    a printed string reads back as itself."""
    from lispvm.vm.values import to_repr

    assert one(r'"GET / HTTP/1.0\r\n\r\n"') == "GET / HTTP/1.0\r\n\r\n"
    assert to_repr("a\r\nb") == r'"a\r\nb"'
    assert one(to_repr("x\r\t\"\\y\n")) == "x\r\t\"\\y\n"
