"""The expander: macros, quasiquote and the derived forms, down to the core forms.

Owns: `defmacro` (a macro is a Lisp function that runs on this VM at compile time, on the
unevaluated forms, and returns the form to compile instead), quasiquote, and the derived forms
`cond`, `when`, `unless` and `match` (a `case` of one clause); it checks `loop`, `case` and
named `fn` and tells a `loop` form from a call of a program's own function `loop`. Must never:
evaluate Lisp in Python. The core forms that come out are listed in assembler/compile.py.

Positions: every cell the expander builds takes the position of the form it came from, so that
errors in expanded code point at the user's source. Macro output keeps the positions of the
argument forms it passes through and takes the call's position for the cells it made.

Quasiquote builds lists with calls to `list`, `append`, `cons` and `list/to-vec` through
uninterned symbols: user code cannot shadow them, because local names are interned.
"""

from __future__ import annotations

from typing import Any

from ..vm.errors import CompileError, LispError, describe
from ..vm.values import TRUE, Cons, Sym, Vec, from_list, intern, to_pylist
from .reader import QUASIQUOTE, QUOTE, UNQUOTE, UNQUOTE_SPLICING, MapForm, SourceMap

__all__ = ["Expander", "SPECIAL_FORMS", "MacroBudget", "MAX_NESTING", "MAX_EXPANSION"]

MAX_NESTING = 1000  # forms one inside another (docs/language.md, Reading); the passes recurse
# Forms macros may produce for one top-level form, counted as the tree the later passes walk
# (a shared sublist counts each time it occurs): a macro can build a list that shares itself
# 2^60 times over in 60 steps, and expanding, compiling or printing it would never end.
MAX_EXPANSION = 1_000_000


class MacroBudget(Exception):
    """A macro call spent its reduction budget (raised by the driver's macro runner)."""

    def __init__(self, reductions: int) -> None:
        super().__init__(reductions)
        self.reductions = reductions

S = intern
DEF, FN, LET, IF, COND, DO, SET, AND, OR = (S(n) for n in ("def", "fn", "let", "if", "cond", "do", "set", "and", "or"))
DEFMACRO, RECEIVE, MATCH, TRY, CATCH, AFTER, APPLY = (S(n) for n in (
    "defmacro", "receive", "match", "try", "catch", "after", "apply"))
CASE, WHEN, UNLESS, LOOP, RECUR = (S(n) for n in ("case", "when", "unless", "loop", "recur"))
# `loop` stays an ordinary name too (programs define functions called loop): a (loop ((name
# init) ...) body...) the expander recognises comes out headed by this uninterned symbol, which
# only the compiler knows.
LOOP_FORM = Sym("loop")
WHEN_KW = S(":when")
AMP = S("&")

SPECIAL_FORMS = frozenset({DEF, FN, LET, IF, COND, DO, SET, AND, OR, QUOTE, QUASIQUOTE, DEFMACRO,
                           RECEIVE, MATCH, TRY, UNQUOTE, UNQUOTE_SPLICING, CASE, WHEN, UNLESS,
                           RECUR})

# Derived forms a program may define as its own macros (programs written before they were
# forms did): the program's macro takes over for the forms after it.
_REDEFINABLE = frozenset({WHEN, UNLESS})

# Uninterned: these name the builtins whatever the program binds locally.
_LIST, _APPEND, _CONS, _TOVEC = Sym("list"), Sym("append"), Sym("cons"), Sym("list/to-vec")
_MAPOF = Sym("sys/map-of")


class Expander:
    """Expands top-level forms one at a time; macros defined earlier apply to later forms.

    `run_macro(name, closure_form, args)` is supplied by the driver: it compiles the macro
    function and runs it on the VM.
    """

    def __init__(self, smap: SourceMap, run_macro: Any) -> None:
        self.smap = smap  # positions of forms
        self.macros: dict[Sym, Any] = {}  # name -> compiled macro function (opaque to us)
        self.run_macro = run_macro  # (name, closure, args list) -> expansion form
        self.compile_macro: Any = None  # (fn form, name) -> closure; set by the driver
        self._near: tuple[int, int] = (1, 1)  # position of the form being expanded, for errors
        self.depth = 0  # forms being expanded, one inside the other
        self.produced = 0  # forms macros produced for the current top-level form (MAX_EXPANSION)
        self.defined: set[Sym] = set()  # globals the program defines (a global `loop` is a function)

    # --- helpers -----------------------------------------------------------------------

    def err(self, form: Any, message: str) -> CompileError:
        return self.smap.error(form, message, self._near)

    def like(self, new: Any, old: Any) -> Any:
        """Give `new` (and any position-less cells of its spine) the position of `old`."""
        pos = self.smap.get(old)
        if pos is not None and isinstance(new, (Cons, Vec, MapForm)):
            self.smap.set(new, *pos)
        return new

    def _list(self, old: Any, *items: Any) -> Any:
        return self.like(from_list(items), old)

    # --- entry points ------------------------------------------------------------------

    def expand_toplevel(self, form: Any) -> Any:
        """Expand one top-level form; `defmacro` registers the macro and becomes `'name`."""
        self.produced = 0
        return self._toplevel(form)

    def _toplevel(self, form: Any) -> Any:
        self._near = self.smap.get(form) or (1, 1)
        form = self.expand_macros_head(form)
        if form.__class__ is Cons and form.head is DEFMACRO:
            return self.defmacro(form)
        if form.__class__ is Cons and form.head is DO:
            items = [self._toplevel(x) for x in self._args(form, DO)]
            return self.like(Cons(DO, from_list(items)), form)
        return self.expand(form, frozenset())

    def defmacro(self, form: Any) -> Any:
        args = self._args(form, DEFMACRO)
        if len(args) < 3 or args[0].__class__ is not Sym or not _is_params(args[1]):
            raise self.err(form, "defmacro: expected (defmacro name (params...) body...)")
        name = args[0]
        if name in SPECIAL_FORMS and name not in _REDEFINABLE:
            raise self.err(form, f"defmacro: cannot redefine the special form {name.name}")
        fn_form = self.like(Cons(FN, form.tail.tail), form)
        self.macros[name] = self.compile_macro(self.expand(fn_form, frozenset()), name)
        return self._list(form, QUOTE, name)

    def expand_macros_head(self, form: Any, bound: frozenset = frozenset()) -> Any:
        """Expand while `form` is a call to a macro (not shadowed by a local)."""
        depth = 0
        while form.__class__ is Cons and form.head.__class__ is Sym and form.head in self.macros \
                and form.head not in bound:
            depth += 1
            if depth > 1000:
                raise self.err(form, f"macro {form.head.name} keeps expanding (more than 1000 times)")
            args = to_pylist(form.tail)
            if args is None:
                raise self.err(form, f"{form.head.name}: a macro call must be a proper list")
            try:
                out = self.run_macro(form.head, self.macros[form.head], args)
            except LispError as e:
                raise self.err(form, f"error in macro {form.head.name}: {describe(e.value)}") from None
            except MacroBudget as e:
                raise self.err(form, f"macro {form.head.name} did not finish within {e.reductions:,} reductions "
                               "(an endless loop?)") from None
            self._stamp(out, form)
            form = out
        return form

    def _stamp(self, out: Any, call: Any) -> None:
        """Give every cell of `out` that has no position the position of the macro call, and
        count its forms against MAX_EXPANSION (the walk stops at the limit, so it is bounded)."""
        pos = self.smap.get(call) or self._near
        left = MAX_EXPANSION - self.produced
        todo = [out]
        seen = 0
        while todo:
            x = todo.pop()
            seen += 1
            if seen > left:
                raise self.err(call, f"macro {call.head.name}: its expansion is too large (more than "
                               f"{MAX_EXPANSION:,} forms, counting a shared sublist each time it occurs)")
            if x.__class__ is Cons:
                if self.smap.get(x) is None:
                    self.smap.set(x, *pos)
                todo.append(x.head)
                todo.append(x.tail)
            elif x.__class__ is Vec:
                if self.smap.get(x) is None:
                    self.smap.set(x, *pos)
                todo.extend(x.items)
        self.produced += seen

    def _args(self, form: Any, head: Sym) -> list[Any]:
        args = to_pylist(form.tail)
        if args is None:
            raise self.err(form, f"{head.name}: the form must be a proper list")
        return args

    # --- the walk ----------------------------------------------------------------------

    def expand(self, form: Any, bound: frozenset) -> Any:
        """Expand `form` with `bound` the set of local names in scope (they shadow macros)."""
        if form.__class__ is not Cons and form.__class__ is not Vec and form.__class__ is not MapForm:
            return form
        self.depth += 1
        try:
            if self.depth > MAX_NESTING:
                raise self.err(form, f"expression nested more than {MAX_NESTING} deep")
            return self._expand(form, bound)
        finally:
            self.depth -= 1

    def _expand(self, form: Any, bound: frozenset) -> Any:
        if form.__class__ is Vec:
            return self.like(Vec(tuple(self.expand(x, bound) for x in form.items)), form)
        if form.__class__ is MapForm:  # {k v ...} in code: keys and values are expressions
            return self.like(MapForm(tuple(self.expand(x, bound) for x in form.items)), form)
        if form.__class__ is not Cons:
            return form
        pos = self.smap.get(form)
        if pos is not None:
            self._near = pos
        form = self.expand_macros_head(form, bound)
        if form.__class__ is not Cons:
            return self.expand(form, bound)
        head = form.head
        if head.__class__ is Sym and head not in bound:
            handler = _SPECIAL.get(head)
            if handler is not None:
                return handler(self, form, bound)
            if head is DEFMACRO:
                raise self.err(form, "defmacro is allowed only at the top level")
            if head is UNQUOTE or head is UNQUOTE_SPLICING:
                raise self.err(form, f"{head.name} outside a quasiquote")
        items = to_pylist(form)
        if items is None:
            raise self.err(form, "a call must be a proper list")
        return self.like(from_list([self.expand(x, bound) for x in items]), form)

    def _body(self, forms: list[Any], bound: frozenset) -> list[Any]:
        return [self.expand(x, bound) for x in forms]

    def x_quote(self, form: Any, bound: frozenset) -> Any:
        if len(self._args(form, QUOTE)) != 1:
            raise self.err(form, "quote: expected exactly one form")
        return form

    def x_def(self, form: Any, bound: frozenset) -> Any:
        args = self._args(form, DEF)
        if not args or args[0].__class__ is not Sym:
            raise self.err(form, "def: expected (def name value) or (def name (params...) body...)")
        self.defined.add(args[0])
        if len(args) >= 3:
            if not _is_params(args[1]):
                raise self.err(form, "def: the parameter list must be a list of symbols")
            inner = bound | _param_names(args[1])
            return self._list(form, DEF, args[0], args[1], *self._body(args[2:], inner))
        if len(args) != 2:
            raise self.err(form, "def: expected (def name value)")
        return self._list(form, DEF, args[0], self.expand(args[1], bound))

    def x_fn(self, form: Any, bound: frozenset) -> Any:
        args = self._args(form, FN)
        if args and args[0].__class__ is Sym and args[0] is not None:  # (fn name (params) body...)
            name = args[0]
            if len(args) < 3 or not _is_params(args[1]):
                raise self.err(form, "fn: expected (fn name (params...) body...)")
            if name in SPECIAL_FORMS or name is AMP:
                raise self.err(form, f"fn: cannot name a function {name.name} (a special form)")
            inner = bound | {name} | _param_names(args[1])
            return self._list(form, FN, name, args[1], *self._body(args[2:], inner))
        if len(args) < 2 or not _is_params(args[0]):
            raise self.err(form, "fn: expected (fn (params...) body...) or (fn name (params...) body...)")
        inner = bound | _param_names(args[0])
        return self._list(form, FN, args[0], *self._body(args[1:], inner))

    def x_let(self, form: Any, bound: frozenset) -> Any:
        args = self._args(form, LET)
        if len(args) < 2:
            raise self.err(form, "let: expected (let ((name value) ...) body...)")
        bindings = to_pylist(args[0])
        if bindings is None:
            raise self.err(form, "let: the bindings must be a list")
        out = []
        for b in bindings:
            pair = to_pylist(b)
            if pair is None or not 1 <= len(pair) <= 2 or pair[0].__class__ is not Sym:
                raise self.err(b if b.__class__ is Cons else form, "let: each binding is (name value)")
            value = self.expand(pair[1], bound) if len(pair) == 2 else None
            out.append(self._list(b, pair[0], value))
            bound = bound | {pair[0]}
        return self._list(form, LET, self.like(from_list(out), args[0]), *self._body(args[1:], bound))

    def x_if(self, form: Any, bound: frozenset) -> Any:
        args = self._args(form, IF)
        if len(args) not in (2, 3):
            raise self.err(form, "if: expected (if test then) or (if test then else)")
        return self._list(form, IF, *self._body(args, bound))

    def x_cond(self, form: Any, bound: frozenset) -> Any:
        clauses = self._args(form, COND)
        out: Any = None
        for clause in reversed(clauses):
            parts = to_pylist(clause)
            if not parts:
                raise self.err(clause if clause.__class__ is Cons else form, "cond: each clause is (test body...)")
            if len(parts) == 1:  # (cond (x) ...) gives x itself when it is true
                out = self._list(clause, OR, parts[0], out)
                continue
            then = parts[1] if len(parts) == 2 else self._list(clause, DO, *parts[1:])
            out = then if parts[0] is TRUE else self._list(clause, IF, parts[0], then, out)
        return self.expand(self.like(out, form), bound) if out is not None else None

    def x_do(self, form: Any, bound: frozenset) -> Any:
        return self._list(form, DO, *self._body(self._args(form, DO), bound))

    def x_set(self, form: Any, bound: frozenset) -> Any:
        args = self._args(form, SET)
        if len(args) != 2 or args[0].__class__ is not Sym:
            raise self.err(form, "set: expected (set name value)")
        return self._list(form, SET, args[0], self.expand(args[1], bound))

    def x_andor(self, form: Any, bound: frozenset) -> Any:
        return self._list(form, form.head, *self._body(self._args(form, form.head), bound))

    def x_try(self, form: Any, bound: frozenset) -> Any:
        args = self._args(form, TRY)
        last = to_pylist(args[-1]) if args else None
        if len(args) < 2 or not last or last[0] is not CATCH or len(last) < 3 or last[1].__class__ is not Sym:
            raise self.err(form, "try: expected (try body... (catch name handler...))")
        catch = self._list(args[-1], CATCH, last[1], *self._body(last[2:], bound | {last[1]}))
        return self._list(form, TRY, *self._body(args[:-1], bound), catch)

    def _clauses(self, form: Any, clauses: list[Any], bound: frozenset, allow_after: bool) -> list[Any]:
        out = []
        for i, clause in enumerate(clauses):
            parts = to_pylist(clause)
            where = clause if clause.__class__ is Cons else form
            if not parts:
                raise self.err(where, f"{form.head.name}: each clause is (pattern body...)")
            if parts[0] is AFTER and allow_after:
                if i != len(clauses) - 1 or len(parts) < 2:
                    raise self.err(where, "receive: (after ms body...) must be the last clause")
                out.append(self._list(clause, AFTER, *self._body(parts[1:], bound)))
                continue
            inner = bound | _pattern_names(parts[0])
            rest = parts[1:]
            if rest and rest[0] is WHEN_KW:
                if len(rest) < 2:
                    raise self.err(where, ":when needs a guard expression")
                rest = [WHEN_KW, self.expand(rest[1], inner), *rest[2:]]
                body = rest[:2] + self._body(rest[2:], inner)
            else:
                body = self._body(rest, inner)
            out.append(self._list(clause, parts[0], *body))
        return out

    def x_receive(self, form: Any, bound: frozenset) -> Any:
        clauses = self._clauses(form, self._args(form, RECEIVE), bound, True)
        return self._list(form, RECEIVE, *clauses)

    def x_case(self, form: Any, bound: frozenset) -> Any:
        args = self._args(form, CASE)
        if not args:
            raise self.err(form, "case: expected (case value (pattern body...) ...)")
        return self._list(form, CASE, self.expand(args[0], bound), *self._clauses(form, args[1:], bound, False))

    def x_match(self, form: Any, bound: frozenset) -> Any:
        """(match pattern expr body...) is a case of one clause: bind or raise badmatch."""
        args = self._args(form, MATCH)
        if len(args) < 2:
            raise self.err(form, "match: expected (match pattern value body...)")
        pattern, value, body = args[0], args[1], args[2:]
        if body and body[0] is WHEN_KW:  # not a guard here: the body's first form
            body = [self._list(form, DO, *body)]
        clause = self._list(form, pattern, *body)
        return self.expand(self._list(form, CASE, value, clause), bound)

    def x_when(self, form: Any, bound: frozenset) -> Any:
        """(when test body...) is (if test (do body...)); unless swaps the branches."""
        args = self._args(form, form.head)
        if not args:
            raise self.err(form, f"{form.head.name}: expected ({form.head.name} test body...)")
        body = self._list(form, DO, *args[1:])
        branches = (body,) if form.head is WHEN else (None, body)
        return self.expand(self._list(form, IF, args[0], *branches), bound)

    def x_loop(self, form: Any, bound: frozenset) -> Any:
        args = self._args(form, LOOP)
        bindings = to_pylist(args[0]) if args else None
        if LOOP in self.defined or (args and (bindings is None or any(b.__class__ is not Cons for b in bindings))):
            # a call of the program's own function `loop` (defined, or its first argument is not
            # a list of lists); a list of lists is a loop's bindings, checked below
            return self.like(from_list([self.expand(x, bound) for x in [form.head, *args]]), form)
        if bindings is None:
            raise self.err(form, "loop: expected (loop ((name init) ...) body...)")
        out = []
        names = set()
        for b in bindings:
            pair = to_pylist(b)
            if pair is None or len(pair) != 2 or pair[0].__class__ is not Sym or pair[0] is None:
                raise self.err(b if b.__class__ is Cons else form, "loop: each binding is (name init)")
            if pair[0] in names:
                raise self.err(b, f"loop: the name {pair[0].name} is bound twice")
            names.add(pair[0])
            out.append(self._list(b, pair[0], self.expand(pair[1], bound)))
            bound = bound | {pair[0]}
        return self._list(form, LOOP_FORM, self.like(from_list(out), args[0]), *self._body(args[1:], bound))

    def x_recur(self, form: Any, bound: frozenset) -> Any:
        return self._list(form, RECUR, *self._body(self._args(form, RECUR), bound))

    # --- quasiquote --------------------------------------------------------------------

    def x_quasiquote(self, form: Any, bound: frozenset) -> Any:
        args = self._args(form, QUASIQUOTE)
        if len(args) != 1:
            raise self.err(form, "quasiquote: expected exactly one form")
        return self.expand(self.qq(args[0], 1, form), bound)

    def qq(self, x: Any, depth: int, where: Any) -> Any:
        """The code that builds the quasiquoted form `x` at nesting `depth`."""
        if x.__class__ is Vec:
            return self._list(x, _TOVEC, self.qq_list(list(x.items), None, depth, x))
        if x.__class__ is MapForm:  # its keys and values quasiquoted one by one
            return self._list(x, _MAPOF, *[self.qq(i, depth, x) for i in x.items])
        if x.__class__ is not Cons:
            if x.__class__ is Sym:
                return self._list(where, QUOTE, x)
            return x  # numbers, strings, booleans and nil evaluate to themselves
        head = x.head
        if head is UNQUOTE or head is QUASIQUOTE:
            inner = to_pylist(x.tail)
            if inner is None or len(inner) != 1:
                raise self.err(x, f"{head.name}: expected exactly one form")
            if head is UNQUOTE:
                if depth == 1:
                    return inner[0]
                return self._list(x, _LIST, self._list(x, QUOTE, UNQUOTE), self.qq(inner[0], depth - 1, x))
            return self._list(x, _LIST, self._list(x, QUOTE, QUASIQUOTE), self.qq(inner[0], depth + 1, x))
        if head is UNQUOTE_SPLICING and depth == 1:
            raise self.err(x, "unquote-splicing (,@) must be inside a list")
        items: list[Any] = []
        c: Any = x
        tail: Any = None
        while c.__class__ is Cons:
            # `(a . ,b)` reads as (a unquote b): a dotted unquote tail.
            if c.head is UNQUOTE and c.tail.__class__ is Cons and c.tail.tail is None and items:
                tail = c
                break
            items.append(c.head)
            c = c.tail
        else:
            tail = c
        return self.qq_list(items, tail, depth, x)

    def qq_list(self, items: list[Any], tail: Any, depth: int, where: Any) -> Any:
        segments: list[Any] = []
        run: list[Any] = []
        for el in items:
            if el.__class__ is Cons and el.head is UNQUOTE_SPLICING and depth == 1:
                inner = to_pylist(el.tail)
                if inner is None or len(inner) != 1:
                    raise self.err(el, "unquote-splicing: expected exactly one form")
                if run:
                    segments.append(self._list(where, _LIST, *run))
                    run = []
                segments.append(inner[0])
            else:
                run.append(self.qq(el, depth, where))
        last = self.qq(tail, depth, where) if tail is not None else None
        if not segments:
            if last is None:
                return self._list(where, _LIST, *run)
            out = last
            for el in reversed(run):
                out = self._list(where, _CONS, el, out)
            return out
        if run:
            segments.append(self._list(where, _LIST, *run))
        if last is not None:
            segments.append(last)
        if len(segments) == 1 and last is None:
            return self._list(where, _APPEND, segments[0])
        return self._list(where, _APPEND, *segments)


_SPECIAL = {
    QUOTE: Expander.x_quote, DEF: Expander.x_def, FN: Expander.x_fn, LET: Expander.x_let,
    IF: Expander.x_if, COND: Expander.x_cond, DO: Expander.x_do, SET: Expander.x_set,
    AND: Expander.x_andor, OR: Expander.x_andor, TRY: Expander.x_try, RECEIVE: Expander.x_receive,
    MATCH: Expander.x_match, QUASIQUOTE: Expander.x_quasiquote, CASE: Expander.x_case,
    WHEN: Expander.x_when, UNLESS: Expander.x_when, LOOP: Expander.x_loop, RECUR: Expander.x_recur,
}


def _is_params(p: Any) -> bool:
    items = to_pylist(p)
    if items is None or any(x.__class__ is not Sym for x in items):
        return False
    if AMP in items:
        i = items.index(AMP)
        return i == len(items) - 2 and items[-1] is not AMP
    return True


def _param_names(p: Any) -> frozenset:
    return frozenset(x for x in (to_pylist(p) or []) if x is not AMP)


def _pattern_names(p: Any) -> frozenset:
    """Names a pattern binds (a superset is harmless: it only stops macro expansion)."""
    out = set()
    todo = [p]
    while todo:
        x = todo.pop()
        if x.__class__ is Sym:
            out.add(x)
        elif x.__class__ is Cons:
            if x.head is QUOTE:
                continue
            todo.extend(x)
        elif x.__class__ is Vec or x.__class__ is MapForm:
            todo.extend(x.items)
    return frozenset(out)
