"""The help table of `(help 'name)` in `lispvm repl`, generated from the language's contract.

Owns: reading ../shared/spec/LANGUAGE.md (the contract every builtin and form is written to) and
writing scheduler/repl_help.py, a table from each name the contract defines to the text that
defines it: the table row that names it, or the sentence (or, in a long list, the clause) where
it first appears as a call or a described name. Must never: invent text (every entry is the
contract's own words, with the markdown taken out). `python -m lispvm.scheduler.helpgen` rewrites
the table, `--check` compares it (tests/test_repl.py runs the check).
"""

from __future__ import annotations

import os
import re
import sys

__all__ = ["generate", "SPEC", "TABLE"]

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = os.path.join(HERE, "..", "..", "shared", "spec", "LANGUAGE.md")  # the checkout's sibling
TABLE = os.path.join(HERE, "repl_help.py")
MAX_TEXT = 600  # characters of one entry; a longer sentence is narrowed to the clause naming it

_SPAN = re.compile(r"`([^`]+)`")
_NAME = re.compile(r"^(?!--|-\d)[a-z+*/<>=!-][a-z0-9/?!<>=*+-]*(?<!/)$")
_NOT_NAMES = frozenset({"true", "false", "nil", "_", "&", ":when", "after", "else", "rest", "x", "y", "f",
                        "k", "n", "m", "s", "v", "i", "e", "pid", "ref", "body...", "expr",
                        "name", "reason", "msg", "ms", "value", "clause...", "test", "a", "b",
                        # message shapes and command lines the contract shows, not names it defines
                        "handler", "id", "pattern", "port", "tcp", "tcp-closed", "lispvm", "run", "asm"})
# Sections whose tables show values, patterns and messages rather than define names: their
# mentions rank below any other.
_DEMOTED = ("## 1.", "## 2.", "## 6.", "## 8.")


def _plain(text: str) -> str:
    """Markdown to plain text: no backticks, no bold, single spaces."""
    text = text.replace("**", "").replace("`", "")
    return re.sub(r"\s+", " ", text).strip()


def _blocks(spec: str) -> list[tuple[str, str, str]]:
    """The contract as (kind, text, section heading) blocks: table rows, bullets and paragraphs; code is skipped."""
    out: list[tuple[str, str, str]] = []
    para: list[str] = []
    code = False

    def end_para() -> None:
        if para:
            out.append(("para", " ".join(para), section))
            para.clear()

    section = ""
    for line in spec.splitlines():
        s = line.strip()
        if s.startswith("#"):
            section = s
        if s.startswith("```"):
            end_para()
            code = not code
            continue
        if code:
            continue
        if s.startswith("|"):
            end_para()
            if not re.match(r"^\|[\s|:-]+\|$", s):
                out.append(("row", s, section))
        elif s.startswith("#") or not s:
            end_para()
        elif s.startswith("- "):
            end_para()
            para.append(s[2:])
        else:
            para.append(s)
    end_para()
    return out


def _names_in(span: str, followed_by_paren: bool) -> list[str]:
    """The names a backticked span defines: the head of a call form `(name ...)`, every word of
    a list of names (`math/sin math/cos`), or one word described by what follows it."""
    span = span.strip()
    if span.startswith("("):
        head = span[1:].split()[0].rstrip(")") if len(span) > 1 else ""
        return [head] if _NAME.match(head) and head not in _NOT_NAMES else []
    words = span.split()
    if len(words) > 1 and all(_NAME.match(w) for w in words):
        return [w for w in words if w not in _NOT_NAMES]
    if len(words) == 1 and _NAME.match(words[0]) and words[0] not in _NOT_NAMES:
        w = words[0]
        if followed_by_paren or "/" in w or w.endswith("?"):
            return [w]
    return []


def _split_top(text: str, seps: str) -> list[str]:
    """Split at `seps` outside parentheses and backticks."""
    parts, depth, tick, start = [], 0, False, 0
    i = 0
    while i < len(text):
        c = text[i]
        if c == "`":
            tick = not tick
        elif not tick and c == "(":
            depth += 1
        elif not tick and c == ")":
            depth = max(0, depth - 1)
        elif not tick and depth == 0 and text.startswith(seps, i):
            parts.append(text[start:i])
            start = i + len(seps)
            i += len(seps)
            continue
        i += 1
    parts.append(text[start:])
    return [p for p in (x.strip() for x in parts) if p]


def _sentences(text: str) -> list[str]:
    """Sentences: split after a full stop outside parentheses and backticks."""
    out = []
    for part in _split_top(text, ". "):
        out.append(part if part.endswith(".") else part + ".")
    return out


_CATEGORY = re.compile(r"^\*{0,2}[A-Z][\w ]*\*{0,2}:")  # "Lists: ..." lists the names of a kind


def _mentions(text: str) -> list[tuple[str, bool]]:
    """(name, defining) for each name of a span of `text`, in order: defining when the span is
    a call form or a list of names, or a name followed by its description, and not inside
    parentheses of the text (there it is an example)."""
    out = []
    listing = bool(_CATEGORY.match(text))
    for m in _SPAN.finditer(text):
        after = text[m.end():m.end() + 2]
        before = _SPAN.sub("", text[:m.start()])
        nested = before.count("(") > before.count(")")
        described = after.startswith(" (") or after.startswith(":") or (listing and not nested)
        span = m.group(1).strip()
        defining = not nested and (span.startswith("(") or described or len(span.split()) > 1)
        for name in _names_in(span, described):
            out.append((name, defining))
    return out


def generate(spec: str) -> dict[str, str]:
    """Name -> help text, from the contract's text. A table row that names a form wins over
    prose; in prose, the first sentence that calls it, then the first that mentions it."""
    best: dict[str, tuple[int, str]] = {}  # name -> (rank, text); lower rank wins, then earlier

    def offer(name: str, rank: int, text: str) -> None:
        if name not in best or rank < best[name][0]:
            best[name] = (rank, text)

    for kind, text, section in _blocks(spec):
        if not section.startswith("## "):
            continue  # the introduction names examples, not definitions
        low = 4 if section.startswith(_DEMOTED) else 0
        if kind == "row":
            cells = [c.strip() for c in text.strip("|").split("|")]
            if len(cells) < 2:
                continue
            for name, call in _mentions(cells[0]):
                offer(name, low + (0 if call else 1), _plain(f"{cells[0]}: {' | '.join(c for c in cells[1:] if c)}"))
            continue
        for sentence in _sentences(text):
            for name, call in _mentions(sentence):
                plain = _plain(sentence)
                if len(plain) > MAX_TEXT or _CATEGORY.match(sentence):  # a long list: the clause naming it
                    prefix = sentence.split(":", 1)[0] + ": " if _CATEGORY.match(sentence) else ""
                    clauses = [c for part in _split_top(sentence, "; ") for c in _split_top(part, ", ")]
                    clause = next((c for c in clauses if f"`{name}" in c or f"`({name}" in c
                                   or f" {name} " in c or f" {name}`" in c), sentence)
                    plain = _plain(prefix + clause if not clause.startswith(prefix.strip()) else clause)
                offer(name, low + (2 if call else 3), plain[:MAX_TEXT])
    return {name: text for name, (_, text) in sorted(best.items())}


def render(table: dict[str, str]) -> str:
    lines = ["# ruff: noqa: E501  (generated data: one entry a line)",
             '"""Generated by `python -m lispvm.scheduler.helpgen` from ../shared/spec/LANGUAGE.md: do not edit.',
             "", "The help text of `(help 'name)` in `lispvm repl`: each name the language defines, with the",
             'words that define it."""', "", "HELP: dict[str, str] = {"]
    for name, text in table.items():
        lines.append(f"    {name!r}: {text!r},")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    spec_path = args[0] if args else SPEC
    with open(spec_path, encoding="utf-8") as f:
        text = render(generate(f.read()))
    if check:
        with open(TABLE, encoding="utf-8") as f:
            if f.read() != text:
                sys.stderr.write(f"{TABLE} is stale: run python -m lispvm.scheduler.helpgen\n")
                return 1
        return 0
    with open(TABLE, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
