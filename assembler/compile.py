"""The compiler: core forms to register bytecode (a vm.lbc.Module).

Owns: register allocation, variable resolution (local register, captured upvalue, global),
boxing of captured variables that `set` assigns, tail calls, the inline forms of arithmetic and
list builtins, conditional jumps for tests, selective receive and `match` as match instructions,
`try` as a static exception table, and the line/column table.

Core forms (what assembler/expand.py leaves): literals, symbols, vectors `[...]`, and lists headed
by quote def fn let if do set and or try receive case loop recur, or a call; `{k v ...}` map
literals (MapForm).

Registers: parameters first, then `let` variables in scope order, then temporaries above them,
released as soon as their value is used (Lua's discipline). `expr(form, dest)` puts the value of
`form` in R[dest]; `dest` is always a temporary or a fresh `let` register, never a variable that
the form itself could read, so an instruction may write R[dest] before it reads its operands.
"""

from __future__ import annotations

from typing import Any

from ..vm.errors import CompileError
from ..vm.lbc import MAX_CONST_DEPTH, Module, Proto
from ..vm.opcodes import BY_NAME, MAX_I, MAX_SBX, MIN_I, MIN_SBX, OPS, encode
from ..vm.values import FALSE, TRUE, Cons, Sym, Vec, intern, to_pylist
from .expand import (
    AFTER,
    AMP,
    AND,
    CASE,
    CATCH,
    DEF,
    DO,
    FN,
    IF,
    LET,
    LOOP_FORM,
    MAX_NESTING,
    OR,
    RECEIVE,
    RECUR,
    SET,
    SPECIAL_FORMS,
    TRY,
    WHEN_KW,
)
from .reader import QUOTE, MapForm, SourceMap, datum

__all__ = ["Compiler", "MAX_REGS", "boxed_names"]

MAX_REGS = 250  # registers per function; R[A] has 8 bits, and a few stay free for safety
MAX_ARGS = 200  # arguments passed in registers; a call with more passes them as one list
_APPEND = Sym("append")  # uninterned: names the builtin whatever the program binds locally
_SLEEP_MS = Sym("sys/sleep-ms")  # the same: checks timer/sleep's argument
_MAP_OF = Sym("sys/map-of")  # the same: builds a map literal's map
UNDERSCORE = intern("_")
S_LIST, S_CONS = intern("list"), intern("cons")


class Var:
    """A local variable: its register, and whether the register holds a Box."""

    __slots__ = ("reg", "boxed")

    def __init__(self, reg: int, boxed: bool) -> None:
        self.reg = reg  # register holding the value (or its Box)
        self.boxed = boxed  # True if captured by a closure and assigned with `set`


class LoopState:
    """A `loop` being compiled: where `recur` jumps, and the variables it assigns."""

    __slots__ = ("head", "vars")

    def __init__(self, head: int, vars_: list[Var]) -> None:
        self.head = head  # pc of the body's first instruction
        self.vars = vars_  # the loop variables, in binding order


class FnState:
    """The function being compiled."""

    def __init__(self, parent: FnState | None, proto: Proto, boxed: set[Sym]) -> None:
        self.parent = parent  # enclosing function, for upvalues
        self.proto = proto  # the prototype being filled in
        self.code: list[int] = []  # instruction words
        self.lines: list[tuple[int, int]] = []  # position of each instruction
        self.consts: list[Any] = []  # constant pool
        self.kmap: dict[Any, int] = {}  # constant key -> index, for sharing
        self.scopes: list[dict[Sym, Var]] = [{}]  # innermost last
        self.free = 0  # first free register
        self.maxreg = 1  # registers used so far
        self.upvals: list[tuple[int, int]] = []  # capture descriptors
        self.upnames: dict[Sym, tuple[int, bool]] = {}  # name -> (upvalue index, boxed)
        self.handlers: list[tuple[int, int, int, int]] = []  # try table
        self.boxed = boxed  # names that must live in boxes in this function


class Compiler:
    """Compiles core forms into one Module. `builtins` are the Python builtins' names (inlined
    or called with CALLB); `reserved` are the names `def` may not take (builtins and prelude)."""

    def __init__(self, smap: SourceMap, builtins: frozenset[str], reserved: frozenset[str],
                 allow_reserved: bool = False) -> None:
        self.smap = smap  # positions
        self.builtins = builtins  # names of Python builtins
        self.reserved = reserved  # names that def/set may not touch
        self.allow_reserved = allow_reserved  # True only when compiling the prelude itself
        self.protos: list[Proto] = [Proto("main", 0, False, 1)]
        self.pos: tuple[int, int] = (1, 1)  # position given to emitted instructions
        self.depth = 0  # expressions being compiled, one inside the other
        self.main = FnState(None, self.protos[0], set())
        # the `recur` forms in tail position of a loop being compiled (by identity) -> that loop;
        # a recur not found here is not in tail position of any loop: a compile error
        self.recurs: dict[int, LoopState] = {}
        self.scope: Any = None  # module name resolution (assembler/modules.py: Scope), or None

    def global_name(self, sym: Sym, define: bool = False) -> str:
        """The global a free symbol names (or, with `define`, that a `def` defines): itself, or
        under a module scope its qualified name (a module's own def `f` is `NAME/f`; `NAME/x` is
        checked against module NAME's defs)."""
        return sym.name if self.scope is None else self.scope.global_name(sym, self.pos, define)

    # --- output --------------------------------------------------------------------------

    def module(self) -> Module:
        """Finish the top-level code (return nil) and return the module."""
        fs = self.main
        r = self.alloc(fs)
        self.emit(fs, "LOADNIL", A=r, B=0)
        self.emit(fs, "RETURN", A=r)
        self.finish(fs)
        return Module(self.smap.file, self.protos)

    def toplevel(self, form: Any) -> None:
        """Compile one expanded top-level form into the main chunk, for effect."""
        fs = self.main
        saved = fs.free
        fs.boxed = fs.boxed | boxed_names([form])
        self.expr(fs, form, self.alloc(fs))
        fs.free = saved

    def finish(self, fs: FnState) -> None:
        p = fs.proto
        p.code, p.lines, p.consts, p.upvals, p.handlers = fs.code, fs.lines, fs.consts, fs.upvals, fs.handlers
        p.nregs = max(fs.maxreg, p.nparams + (1 if p.rest else 0), 1)

    # --- emission ------------------------------------------------------------------------

    def err(self, form: Any, message: str) -> CompileError:
        return self.smap.error(form, message, self.pos)

    def emit(self, fs: FnState, name: str, **vals: int) -> int:
        op = BY_NAME[name]
        try:
            fs.code.append(encode(op, vals))
        except ValueError as e:
            raise CompileError(self.smap.file, *self.pos, f"function too large ({e})") from None
        fs.lines.append(self.pos)
        return len(fs.code) - 1

    def jump(self, fs: FnState) -> int:
        """Emit a JMP to be patched; return its pc."""
        return self.emit(fs, "JMP", sJ=0)

    def patch(self, fs: FnState, pc: int, target: int | None = None) -> None:
        """Point the jump at `pc` to `target` (default: the next instruction emitted)."""
        target = len(fs.code) if target is None else target
        word = fs.code[pc]
        op = word & 0x7F
        offset = target - (pc + 1)
        if op == BY_NAME["JMP"].num or op == BY_NAME["RECVNEXT"].num:
            fs.code[pc] = encode(BY_NAME["JMP"] if op == BY_NAME["JMP"].num else BY_NAME["RECVNEXT"], {"sJ": offset})
        else:  # RECVPEEK / RECVWAIT: AsBx
            opr = BY_NAME["RECVPEEK"] if op == BY_NAME["RECVPEEK"].num else BY_NAME["RECVWAIT"]
            if not MIN_SBX <= offset <= MAX_SBX:
                raise CompileError(self.smap.file, *self.pos, "function too large (jump too far)")
            fs.code[pc] = encode(opr, {"A": (word >> 7) & 0xFF, "sBx": offset})

    def alloc(self, fs: FnState, n: int = 1) -> int:
        r = fs.free
        fs.free += n
        if fs.free > MAX_REGS:
            raise CompileError(self.smap.file, *self.pos,
                               f"function too large: needs more than {MAX_REGS} registers")
        fs.maxreg = max(fs.maxreg, fs.free)
        return r

    def const(self, fs: FnState, k: Any) -> int:
        c = k.__class__
        key: Any
        if c is Cons or c is Vec:
            key = ("obj", id(k))
        elif c is float:
            key = (float, repr(k))
        elif c is Sym:
            key = (Sym, k.name)
        else:
            key = (c, k)
        idx = fs.kmap.get(key)
        if idx is None:
            idx = fs.kmap[key] = len(fs.consts)
            fs.consts.append(k)
        return idx

    def load_const(self, fs: FnState, k: Any, dest: int) -> None:
        if k is None:
            self.emit(fs, "LOADNIL", A=dest, B=0)
        elif k is TRUE or k is FALSE:
            self.emit(fs, "LOADBOOL", A=dest, B=1 if k is TRUE else 0)
        elif k.__class__ is int and MIN_SBX <= k <= MAX_SBX:
            self.emit(fs, "LOADI", A=dest, sBx=k)
        else:
            if k.__class__ in (Cons, Vec) and _depth(k) > MAX_CONST_DEPTH:
                raise CompileError(self.smap.file, *self.pos,
                                   f"quoted constant nested more than {MAX_CONST_DEPTH} deep")
            self.emit(fs, "LOADK", A=dest, Bx=self.const(fs, k))

    def ret(self, fs: FnState, dest: int, tail: bool) -> None:
        if tail:
            self.emit(fs, "RETURN", A=dest)

    # --- variables -----------------------------------------------------------------------

    def resolve(self, fs: FnState, sym: Sym) -> tuple:
        """('local', Var) | ('upval', index, boxed) | ('global',)."""
        for scope in reversed(fs.scopes):
            v = scope.get(sym)
            if v is not None:
                return ("local", v)
        if fs.parent is None:
            return ("global",)
        up = fs.upnames.get(sym)
        if up is not None:
            return ("upval", up[0], up[1])
        r = self.resolve(fs.parent, sym)
        if r[0] == "global":
            return r
        desc, boxed = ((0, r[1].reg), r[1].boxed) if r[0] == "local" else ((1, r[1]), r[2])
        idx = len(fs.upvals)
        if idx > 255:
            raise CompileError(self.smap.file, *self.pos, "function captures more than 256 variables")
        fs.upvals.append(desc)
        fs.upnames[sym] = (idx, boxed)
        return ("upval", idx, boxed)

    def declare(self, fs: FnState, sym: Sym, reg: int, where: Any) -> Var:
        if sym in SPECIAL_FORMS or sym is AMP:
            raise self.err(where, f"cannot use the special form {sym.name} as a variable name")
        v = Var(reg, sym in fs.boxed)
        fs.scopes[-1][sym] = v
        return v

    def var_ref(self, fs: FnState, sym: Sym, dest: int) -> None:
        r = self.resolve(fs, sym)
        if r[0] == "local":
            self.emit(fs, "UNBOX" if r[1].boxed else "MOVE", A=dest, B=r[1].reg)
        elif r[0] == "upval":
            self.emit(fs, "GETUPBOX" if r[2] else "GETUPVAL", A=dest, B=r[1])
        else:
            self.emit(fs, "GETGLOBAL", A=dest, Bx=self.const(fs, intern(self.global_name(sym))))

    def operand(self, fs: FnState, x: Any) -> int:
        """A register holding x's value: an unboxed local's own register, or a new temporary."""
        if x.__class__ is Sym:
            r = self.resolve(fs, x)
            if r[0] == "local" and not r[1].boxed:
                return r[1].reg
        t = self.alloc(fs)
        self.expr(fs, x, t)
        return t

    # --- expressions ---------------------------------------------------------------------

    def expr(self, fs: FnState, x: Any, dest: int, tail: bool = False) -> None:
        """Compile `x` so its value lands in R[dest] (or is returned, if `tail`)."""
        c = x.__class__
        if c is Sym:
            if tail:  # return a local's own register: no MOVE
                r = self.resolve(fs, x)
                if r[0] == "local" and not r[1].boxed:
                    self.emit(fs, "RETURN", A=r[1].reg)
                    return
            self.var_ref(fs, x, dest)
            return self.ret(fs, dest, tail)
        if c is not Cons and c is not Vec and c is not MapForm:
            self.load_const(fs, x, dest)
            return self.ret(fs, dest, tail)
        saved_pos = self.pos
        self.pos = self.smap.get(x) or self.pos
        self.depth += 1
        try:
            if self.depth > MAX_NESTING:
                raise self.err(x, f"expression nested more than {MAX_NESTING} deep")
            if c is Vec:
                self.seq_build(fs, "VECTOR", list(x.items), dest)
                return self.ret(fs, dest, tail)
            if c is MapForm:
                self.map_build(fs, list(x.items), dest)
                return self.ret(fs, dest, tail)
            head = x.head
            if head.__class__ is Sym:
                special = _SPECIAL.get(head)
                if special is not None:
                    return special(self, fs, x, dest, tail)
            self.call(fs, x, dest, tail)
        finally:
            self.pos = saved_pos
            self.depth -= 1

    def effect(self, fs: FnState, x: Any) -> None:
        saved = fs.free
        self.expr(fs, x, self.alloc(fs))
        fs.free = saved

    def body(self, fs: FnState, forms: list[Any], dest: int, tail: bool) -> None:
        if not forms:
            self.emit(fs, "LOADNIL", A=dest, B=0)
            return self.ret(fs, dest, tail)
        for f in forms[:-1]:
            self.effect(fs, f)
        self.expr(fs, forms[-1], dest, tail)

    def args_into(self, fs: FnState, cells: Any, base: int) -> None:
        """Evaluate the forms of a list (given by its first cell) into R[base], R[base+1], ..."""
        i = 0
        while cells is not None:
            at = self.smap.get_elem(cells)
            saved, self.pos = self.pos, at or self.pos
            self.expr(fs, cells.head, base + i)
            self.pos = saved
            cells = cells.tail
            i += 1

    def call_block(self, fs: FnState, dest: int, n: int) -> int:
        """Registers for a call: R[base] (function or result) and n-1 more above it."""
        if dest == fs.free - 1:
            self.alloc(fs, n - 1)
            return dest
        return self.alloc(fs, n)

    def finish_call(self, fs: FnState, base: int, dest: int, saved: int) -> None:
        if base != dest:
            self.emit(fs, "MOVE", A=dest, B=base)
        fs.free = saved

    def seq_build(self, fs: FnState, opname: str, items: list[Any], dest: int) -> None:
        """LIST or VECTOR of evaluated items (chunks of at most 200, joined by append)."""
        if len(items) > MAX_ARGS:  # more than a register window holds
            self._list_into(fs, items, dest)
            if opname == "VECTOR":
                saved = fs.free
                base = self.alloc(fs, 2)
                self.emit(fs, "MOVE", A=base + 1, B=dest)
                self.emit(fs, "CALLB", A=base, B=1, C=self._builtin_const(fs, "list/to-vec"))
                self.emit(fs, "MOVE", A=dest, B=base)
                fs.free = saved
            return
        saved = fs.free
        base = self.call_block(fs, dest, len(items) + 1)
        for i, item in enumerate(items):
            self.expr(fs, item, base + 1 + i)
        self.emit(fs, opname, A=base, B=len(items))
        self.finish_call(fs, base, dest, saved)

    def map_build(self, fs: FnState, items: list[Any], dest: int) -> None:
        """A `{k v ...}` literal: sys/map-of of its evaluated keys and values (applied to a list
        of them when there are more than a register window holds)."""
        saved = fs.free
        if len(items) > MAX_ARGS:
            base = self.call_block(fs, dest, 2)
            self._list_into(fs, items, base + 1)
            self.var_ref(fs, _MAP_OF, base)
            self.emit(fs, "APPLY", A=base, B=1)
        else:
            base = self.call_block(fs, dest, len(items) + 1)
            for i, item in enumerate(items):
                self.expr(fs, item, base + 1 + i)
            self.emit(fs, "CALLB", A=base, B=len(items), C=self._builtin_const(fs, "sys/map-of"))
        self.finish_call(fs, base, dest, saved)

    def call(self, fs: FnState, x: Any, dest: int, tail: bool) -> None:
        f = x.head
        nargs = 0
        c = x.tail
        while c is not None:
            nargs += 1
            c = c.tail
        if nargs > MAX_ARGS:  # more than a register window holds: pass them as one list
            saved = fs.free
            base = self.call_block(fs, dest, 2)
            self.expr(fs, f, base)
            self._list_into(fs, list(x.tail), base + 1)
            self.emit(fs, "TAILAPPLY" if tail else "APPLY", A=base, B=1)
            if not tail:
                self.finish_call(fs, base, dest, saved)
            fs.free = saved
            return
        if f.__class__ is Sym and self.resolve(fs, f)[0] == "global":
            name = self.global_name(f)
            if name in self.reserved:
                inline = _INLINE.get((name, nargs)) or _INLINE.get((name, -1))
                if inline is not None and inline(self, fs, x, list(x.tail) if nargs else [], dest, tail) is not False:
                    return
                if name in self.builtins:
                    return self.builtin_call(fs, x, name, nargs, dest, tail)
            saved = fs.free
            base = self.call_block(fs, dest, nargs + 1)
            self.args_into(fs, x.tail, base + 1)
            k = self.const(fs, intern(name))
            if k <= 255:
                self.emit(fs, "TAILCALLG" if tail else "CALLG", A=base, B=nargs, C=k)
            else:
                self.emit(fs, "GETGLOBAL", A=base, Bx=k)
                self.emit(fs, "TAILCALL" if tail else "CALL", A=base, B=nargs)
            if not tail:
                self.finish_call(fs, base, dest, saved)
            fs.free = saved
            return
        saved = fs.free
        base = self.call_block(fs, dest, nargs + 1)
        self.expr(fs, f, base)
        self.args_into(fs, x.tail, base + 1)
        self.emit(fs, "TAILCALL" if tail else "CALL", A=base, B=nargs)
        if not tail:
            self.finish_call(fs, base, dest, saved)
        fs.free = saved

    def _list_into(self, fs: FnState, items: list[Any], dest: int) -> None:
        """R[dest] := the list of `items`, evaluated left to right, however many there are: each
        chunk of MAX_ARGS becomes a list consed onto an accumulator, then (apply append
        (reverse chunks)); so no more than about MAX_ARGS registers are live at once."""
        saved = fs.free
        acc = self.alloc(fs)
        self.emit(fs, "LOADNIL", A=acc, B=0)
        for i in range(0, len(items), MAX_ARGS):
            t = self.alloc(fs)
            self.seq_build(fs, "LIST", items[i:i + MAX_ARGS], t)
            self.emit(fs, "CONS", A=acc, B=t, C=acc)
            fs.free = t
        base = self.alloc(fs, 2)
        self.emit(fs, "MOVE", A=base + 1, B=acc)
        self.emit(fs, "CALLB", A=base, B=1, C=self._builtin_const(fs, "reverse"))
        self.emit(fs, "MOVE", A=base + 1, B=base)
        self.var_ref(fs, _APPEND, base)
        self.emit(fs, "APPLY", A=base, B=1)
        if base != dest:
            self.emit(fs, "MOVE", A=dest, B=base)
        fs.free = saved

    def _builtin_const(self, fs: FnState, name: str) -> int:
        k = self.const(fs, intern(name))
        if k > 255:
            raise CompileError(self.smap.file, *self.pos, "too many distinct builtins in one function")
        return k

    def builtin_call(self, fs: FnState, x: Any, name: str, nargs: int, dest: int, tail: bool) -> None:
        """CALLB: a Python builtin called by name (a builtin in tail position just returns)."""
        saved = fs.free
        base = self.call_block(fs, dest, nargs + 1)
        self.args_into(fs, x.tail, base + 1)
        k = self.const(fs, intern(name))
        if k > 255:
            raise self.err(x, "too many distinct builtins in one function")
        self.emit(fs, "CALLB", A=base, B=nargs, C=k)
        self.finish_call(fs, base, dest, saved)
        self.ret(fs, dest, tail)

    def i_apply(self, fs: FnState, x: Any, args: list[Any], dest: int, tail: bool) -> Any:
        if len(args) < 2:
            return False
        saved = fs.free
        base = self.call_block(fs, dest, len(args))
        self.args_into(fs, x.tail, base)  # the function goes in R[A], its arguments above
        self.emit(fs, "TAILAPPLY" if tail else "APPLY", A=base, B=len(args) - 1)
        if not tail:
            self.finish_call(fs, base, dest, saved)
        fs.free = saved

    # --- inline builtins -----------------------------------------------------------------

    def i_arith(self, fs: FnState, x: Any, args: list[Any], dest: int, tail: bool) -> Any:
        name = x.head.name
        opname = _ARITH[name]
        if len(args) < 2:
            return False
        saved = fs.free
        acc = self.arith2(fs, opname, args[0], args[1], dest)
        for a in args[2:]:
            rb = self.operand(fs, a)
            self.emit(fs, opname, A=dest, B=acc, C=rb)
            acc = dest
        if acc != dest:  # pragma: no cover - arith2 always writes dest
            self.emit(fs, "MOVE", A=dest, B=acc)
        fs.free = saved
        self.ret(fs, dest, tail)

    def arith2(self, fs: FnState, opname: str, a: Any, b: Any, dest: int) -> int:
        if opname in ("ADD", "SUB") and _small(b, negate=opname == "SUB"):
            ra = self.operand(fs, a)
            self.emit(fs, "ADDI", A=dest, B=ra, C=b if opname == "ADD" else -b)
            return dest
        if opname == "ADD" and _small(a) and not _small(b):
            rb = self.operand(fs, b)
            self.emit(fs, "ADDI", A=dest, B=rb, C=a)
            return dest
        ra = self.operand(fs, a)
        rb = self.operand(fs, b)
        self.emit(fs, opname, A=dest, B=ra, C=rb)
        return dest

    def i_neg(self, fs: FnState, x: Any, args: list[Any], dest: int, tail: bool) -> Any:
        saved = fs.free
        self.emit(fs, "NEG", A=dest, B=self.operand(fs, args[0]))
        fs.free = saved
        self.ret(fs, dest, tail)

    def i_unary(self, fs: FnState, x: Any, args: list[Any], dest: int, tail: bool) -> Any:
        saved = fs.free
        self.emit(fs, _UNARY[x.head.name], A=dest, B=self.operand(fs, args[0]))
        fs.free = saved
        self.ret(fs, dest, tail)

    def i_compare(self, fs: FnState, x: Any, args: list[Any], dest: int, tail: bool) -> Any:
        saved = fs.free
        ra = self.operand(fs, args[0])
        rb = self.operand(fs, args[1])
        self.emit(fs, _COMPARE[x.head.name], A=dest, B=ra, C=rb)
        fs.free = saved
        self.ret(fs, dest, tail)

    def i_cons(self, fs: FnState, x: Any, args: list[Any], dest: int, tail: bool) -> Any:
        saved = fs.free
        ra = self.operand(fs, args[0])
        rb = self.operand(fs, args[1])
        self.emit(fs, "CONS", A=dest, B=ra, C=rb)
        fs.free = saved
        self.ret(fs, dest, tail)

    def i_seq(self, fs: FnState, x: Any, args: list[Any], dest: int, tail: bool) -> Any:
        self.seq_build(fs, "LIST" if x.head.name == "list" else "VECTOR", args, dest)
        self.ret(fs, dest, tail)

    def i_recv(self, fs: FnState, x: Any, args: list[Any], dest: int, tail: bool) -> Any:
        v = intern("v")
        form = Cons(RECEIVE, Cons(Cons(v, Cons(v, None)), None))
        self.c_receive(fs, form, dest, tail)

    def i_sleep(self, fs: FnState, x: Any, args: list[Any], dest: int, tail: bool) -> Any:
        ms = Cons(_SLEEP_MS, Cons(args[0], None))
        form = Cons(RECEIVE, Cons(Cons(AFTER, Cons(ms, Cons(None, None))), None))
        self.c_receive(fs, form, dest, tail)

    # --- tests -----------------------------------------------------------------------------

    def cond_jump(self, fs: FnState, x: Any, jump_if: bool) -> list[int]:
        """Code that jumps when x's truth equals `jump_if`; returns the jumps to patch."""
        saved_pos = self.pos
        self.pos = self.smap.get(x) or self.pos
        try:
            return self._cond_jump(fs, x, jump_if)
        finally:
            self.pos = saved_pos

    def _cond_jump(self, fs: FnState, x: Any, jump_if: bool) -> list[int]:
        k = 1 if jump_if else 0
        if x is TRUE or x is FALSE or x is None or x.__class__ in (int, float, str):
            truth = not (x is FALSE or x is None)
            return [self.jump(fs)] if truth == jump_if else []
        if x.__class__ is Cons and x.head.__class__ is Sym and self.resolve(fs, x.head)[0] == "global":
            name = x.head.name
            args = to_pylist(x.tail) or []
            if name == "not" and len(args) == 1:
                return self.cond_jump(fs, args[0], not jump_if)
            if name in _COMPARE and len(args) == 2 and name in self.reserved:
                return self.compare_jump(fs, name, args, k)
        if x.__class__ is Cons and x.head is AND or x.__class__ is Cons and x.head is OR:
            return self.andor_jump(fs, x, jump_if)
        saved = fs.free
        r = self.operand(fs, x)
        self.emit(fs, "TEST", A=r, k=k)
        fs.free = saved
        return [self.jump(fs)]

    def compare_jump(self, fs: FnState, name: str, args: list[Any], k: int) -> list[int]:
        saved = fs.free
        a, b = args
        if name == "!=":
            name, k = "==", 1 - k
        if name in ("==", "="):
            for p, q in ((a, b), (b, a)):
                if _small(q):
                    self.emit(fs, "IFEQI", A=self.operand(fs, p), B=q, k=k)
                    break
                if _const_form(q) and not _const_form(p):
                    kv = self.const(fs, _const_value(q))
                    if kv <= 255:
                        self.emit(fs, "IFEQK", A=self.operand(fs, p), B=kv, k=k)
                        break
            else:
                ra = self.operand(fs, a)
                self.emit(fs, "IFEQ", A=ra, B=self.operand(fs, b), k=k)
        else:
            # the operator as written, operands in their order, so that a refused operand's error
            # names them as the source does; only an immediate on the right has a form of its own
            if _small(b):
                self.emit(fs, {"<": "IFLTI", "<=": "IFLEI", ">": "IFGTI", ">=": "IFGEI"}[name],
                          A=self.operand(fs, a), B=b, k=k)
            else:
                ra = self.operand(fs, a)
                self.emit(fs, {"<": "IFLT", "<=": "IFLE", ">": "IFGT", ">=": "IFGE"}[name], A=ra,
                          B=self.operand(fs, b), k=k)
        fs.free = saved
        return [self.jump(fs)]

    def andor_jump(self, fs: FnState, x: Any, jump_if: bool) -> list[int]:
        args = to_pylist(x.tail) or []
        is_and = x.head is AND
        if not args:
            return [self.jump(fs)] if (is_and == jump_if) else []
        # and: jump_if=False -> any false jumps out; jump_if=True -> all true then jump.
        if is_and != jump_if:
            out: list[int] = []
            for a in args:
                out += self.cond_jump(fs, a, jump_if)
            return out
        skips: list[int] = []
        for a in args[:-1]:
            skips += self.cond_jump(fs, a, not jump_if)
        out = self.cond_jump(fs, args[-1], jump_if)
        for s in skips:
            self.patch(fs, s)
        return out

    # --- special forms -------------------------------------------------------------------

    def c_quote(self, fs: FnState, x: Any, dest: int, tail: bool) -> None:
        v = x.tail.head
        self.load_const(fs, datum(v), dest)  # a {...} at any depth of quoted data is a Map
        self.ret(fs, dest, tail)

    def c_if(self, fs: FnState, x: Any, dest: int, tail: bool) -> None:
        args = to_pylist(x.tail)
        jf = self.cond_jump(fs, args[0], False)
        self.expr(fs, args[1], dest, tail)
        je = None if tail else self.jump(fs)
        for j in jf:
            self.patch(fs, j)
        if len(args) == 3:
            self.expr(fs, args[2], dest, tail)
        else:
            self.load_const(fs, None, dest)
            self.ret(fs, dest, tail)
        if je is not None:
            self.patch(fs, je)

    def c_do(self, fs: FnState, x: Any, dest: int, tail: bool) -> None:
        self.body(fs, to_pylist(x.tail), dest, tail)

    def c_andor(self, fs: FnState, x: Any, dest: int, tail: bool) -> None:
        args = to_pylist(x.tail)
        is_and = x.head is AND
        if not args:
            self.load_const(fs, TRUE if is_and else None, dest)
            return self.ret(fs, dest, tail)
        exits = []
        for a in args[:-1]:
            self.expr(fs, a, dest)
            self.emit(fs, "TEST", A=dest, k=0 if is_and else 1)
            exits.append(self.jump(fs))
        self.expr(fs, args[-1], dest, tail)
        for j in exits:
            self.patch(fs, j)
        if exits:
            self.ret(fs, dest, tail)

    def bind(self, fs: FnState, bindings: list[Any]) -> list[Var]:
        """Evaluate `(name init)` bindings in order into new registers of the innermost scope,
        each visible to the next (let's and loop's); their variables."""
        variables = []
        for b in bindings:
            name, value = b.head, b.tail.head
            r = self.alloc(fs)
            saved_pos, self.pos = self.pos, self.smap.get(b) or self.pos
            self.expr(fs, value, r)
            self.pos = saved_pos
            v = self.declare(fs, name, r, b)
            if v.boxed:
                self.emit(fs, "BOX", A=r)
            variables.append(v)
        return variables

    def c_let(self, fs: FnState, x: Any, dest: int, tail: bool) -> None:
        saved = fs.free
        fs.scopes.append({})
        self.bind(fs, to_pylist(x.tail.head))
        self.body(fs, to_pylist(x.tail.tail), dest, tail)
        fs.scopes.pop()
        fs.free = saved

    def c_set(self, fs: FnState, x: Any, dest: int, tail: bool) -> None:
        name, value = x.tail.head, x.tail.tail.head
        r = self.resolve(fs, name)
        self.expr(fs, value, dest)
        if r[0] == "local":
            self.emit(fs, "SETBOX" if r[1].boxed else "MOVE", A=r[1].reg, B=dest)
        elif r[0] == "upval":
            if not r[2]:  # pragma: no cover - the boxing analysis boxes every set target
                raise self.err(x, f"internal: captured variable {name.name} is not boxed")
            self.emit(fs, "SETUPBOX", A=dest, B=r[1])
        else:
            if name in SPECIAL_FORMS or name is AMP:
                raise self.err(x, f"set: cannot assign to the special form {name.name}")
            if name.name in self.reserved and not self.allow_reserved:
                raise self.err(x, f"set: cannot assign to the builtin {name.name}")
            self.emit(fs, "SETGLOBAL", A=dest, Bx=self.const(fs, intern(self.global_name(name))))
        self.ret(fs, dest, tail)

    def c_def(self, fs: FnState, x: Any, dest: int, tail: bool) -> None:
        args = to_pylist(x.tail)
        name = args[0]
        if name in SPECIAL_FORMS or name is AMP:  # `if` would still compile as the special form
            raise self.err(x, f"def: cannot redefine the special form {name.name}")
        if name.name in self.reserved and not self.allow_reserved:
            raise self.err(x, f"def: cannot redefine the builtin {name.name}")
        if len(args) >= 3:
            self.function(fs, args[1], args[2:], name.name, x, dest)
        else:
            self.expr(fs, args[1], dest)
        self.emit(fs, "DEFGLOBAL", A=dest, Bx=self.const(fs, intern(self.global_name(name, define=True))))
        self.ret(fs, dest, tail)

    def c_fn(self, fs: FnState, x: Any, dest: int, tail: bool) -> None:
        first = x.tail.head
        if first.__class__ is Sym:  # (fn name (params) body...): the closure is `name` inside
            self.function(fs, x.tail.tail.head, to_pylist(x.tail.tail.tail), first.name, x, dest, first)
        else:
            self.function(fs, first, to_pylist(x.tail.tail), "fn", x, dest)
        self.ret(fs, dest, tail)

    def function(self, parent: FnState, params_form: Any, body: list[Any], name: str, where: Any,
                 dest: int, self_name: Sym | None = None) -> None:
        params = to_pylist(params_form)
        rest = None
        if AMP in params:
            rest = params[-1]
            params = params[:-2]
        if len(set(params + ([rest] if rest else []))) != len(params) + (1 if rest else 0):
            raise self.err(where, "a parameter name appears twice")
        if len(params) + (1 if rest else 0) > 200:
            raise self.err(where, "more than 200 parameters")
        proto = Proto(name, len(params), rest is not None, 1)
        fs = FnState(parent, proto, boxed_names(body))
        for p in params + ([rest] if rest else []):
            v = self.declare(fs, p, self.alloc(fs), where)
            if v.boxed:
                self.emit(fs, "BOX", A=v.reg)
        if self_name is not None and self_name not in params and self_name != rest and _mentions(body, self_name):
            # a named fn that uses its name: the running closure, in a register (a parameter
            # of the same name shadows it)
            r = self.alloc(fs)
            self.emit(fs, "SELF", A=r)
            if self.declare(fs, self_name, r, where).boxed:
                self.emit(fs, "BOX", A=r)
        self.body(fs, body, self.alloc(fs), True)
        self.finish(fs)
        self.protos.append(proto)
        self.emit(parent, "CLOSURE", A=dest, Bx=len(self.protos) - 1)

    def c_try(self, fs: FnState, x: Any, dest: int, tail: bool) -> None:
        forms = to_pylist(x.tail)
        catch = to_pylist(forms[-1])
        saved = fs.free
        ereg = self.alloc(fs)
        start = len(fs.code)
        self.body(fs, forms[:-1], dest, False)
        end = len(fs.code)
        if tail:
            self.emit(fs, "RETURN", A=dest)
            je = None
        else:
            je = self.jump(fs)
        handler = len(fs.code)
        if end > start:
            fs.handlers.insert(0, (start, end, handler, ereg))
        saved_pos, self.pos = self.pos, self.smap.get(forms[-1]) or self.pos
        fs.scopes.append({})
        v = self.declare(fs, catch[1], ereg, forms[-1])
        if v.boxed:
            self.emit(fs, "BOX", A=ereg)
        self.body(fs, catch[2:], dest, tail)
        fs.scopes.pop()
        self.pos = saved_pos
        if je is not None:
            self.patch(fs, je)
        fs.free = saved
        # Nested tries were inserted at the front as they finished, so inner entries come first.
        fs.handlers.sort(key=lambda h: h[1] - h[0])

    def c_receive(self, fs: FnState, x: Any, dest: int, tail: bool) -> None:
        clauses = to_pylist(x.tail)
        after = None
        if clauses and clauses[-1].head is AFTER:
            after = to_pylist(clauses.pop().tail)
        saved = fs.free
        tmo = self.alloc(fs)
        if after is not None:
            self.expr(fs, after[0], tmo)
        else:
            self.emit(fs, "LOADNIL", A=tmo, B=0)
        msg = self.alloc(fs)
        self.emit(fs, "RECVSTART")
        peek = self.emit(fs, "RECVPEEK", A=msg, sBx=0)
        ends: list[int] = []
        for clause in clauses:
            fails = self.clause(fs, clause, msg, dest, tail, ends, take=True)
            for j in fails:
                self.patch(fs, j)
        nxt = self.emit(fs, "RECVNEXT", sJ=0)
        self.patch(fs, nxt, peek)
        wait = self.emit(fs, "RECVWAIT", A=tmo, sBx=0)
        self.patch(fs, wait, peek)
        self.patch(fs, peek, wait)
        self.body(fs, after[1:] if after is not None else [], dest, tail)
        for j in ends:
            self.patch(fs, j)
        fs.free = saved

    def c_loop(self, fs: FnState, x: Any, dest: int, tail: bool) -> None:
        """(loop ((name init) ...) body...): the variables bound like `let`, then a LOOP marker
        (for the fast tier) and the body; each `recur` in its tail position assigns the variables
        and jumps back to the body's start, so the stack stays as it is."""
        bindings = to_pylist(x.tail.head)
        body = to_pylist(x.tail.tail)
        saved = fs.free
        fs.scopes.append({})
        variables = self.bind(fs, bindings)
        mark = self.emit(fs, "LOOP", Bx=0)
        loop = LoopState(len(fs.code), variables)
        for r in _tail_recurs(body):
            self.recurs[id(r)] = loop
        self.body(fs, body, dest, tail)
        try:
            fs.code[mark] = encode(BY_NAME["LOOP"], {"Bx": len(fs.code) - loop.head})
        except ValueError:
            raise CompileError(self.smap.file, *self.pos, "function too large (a loop too long)") from None
        fs.scopes.pop()
        fs.free = saved

    def c_recur(self, fs: FnState, x: Any, dest: int, tail: bool) -> None:
        loop = self.recurs.get(id(x))
        if loop is None:
            raise self.err(x, "recur is allowed only in tail position of a loop")
        args = to_pylist(x.tail)
        if len(args) != len(loop.vars):
            raise self.err(x, f"recur: the loop has {len(loop.vars)} variable{'s' if len(loop.vars) != 1 else ''}, "
                              f"recur gives {len(args)}")
        saved = fs.free
        # all new values first, then the assignments: (recur b a) swaps
        moves = []
        for v, a in zip(loop.vars, args):
            if a.__class__ is Sym and not v.boxed and self.resolve(fs, a) == ("local", v):
                continue  # the variable keeps its value
            t = self.alloc(fs)
            self.expr(fs, a, t)
            moves.append((v, t))
        for v, t in moves:
            self.emit(fs, "MOVE", A=v.reg, B=t)
            if v.boxed:  # a new binding each time round: a closure of the last one keeps its box
                self.emit(fs, "BOX", A=v.reg)
        self.emit(fs, "JMP", sJ=loop.head - (len(fs.code) + 1))
        fs.free = saved

    def c_case(self, fs: FnState, x: Any, dest: int, tail: bool) -> None:
        forms = to_pylist(x.tail)
        saved = fs.free
        val = self.alloc(fs)
        self.expr(fs, forms[0], val)
        ends: list[int] = []
        for clause in forms[1:]:
            for j in self.clause(fs, clause, val, dest, tail, ends, take=False):
                self.patch(fs, j)
        base = self.alloc(fs, 2)
        self.emit(fs, "MOVE", A=base + 1, B=val)
        self.emit(fs, "CALLB", A=base, B=1, C=self.const(fs, intern("sys/badmatch")))
        if tail:  # unreachable, but code never falls off the end of a function
            self.emit(fs, "RETURN", A=base)
        else:  # unreachable too, but the verifier sees dest written on every path
            self.emit(fs, "MOVE", A=dest, B=base)
        for j in ends:
            self.patch(fs, j)
        fs.free = saved

    def clause(self, fs: FnState, clause: Any, subject: int, dest: int, tail: bool, ends: list[int],
               take: bool) -> list[int]:
        """One clause of receive/match; returns the jumps taken when it does not match."""
        parts = to_pylist(clause)
        saved_pos, self.pos = self.pos, self.smap.get(clause) or self.pos
        saved = fs.free
        fs.scopes.append({})
        fails: list[int] = []
        self.pattern(fs, parts[0], subject, fails, {}, clause)
        body = parts[1:]
        if body and body[0] is WHEN_KW:
            fails += self.cond_jump(fs, body[1], False)
            body = body[2:]
        if take:
            self.emit(fs, "RECVTAKE")
        self.body(fs, body, dest, tail)
        if not tail:
            ends.append(self.jump(fs))
        fs.scopes.pop()
        fs.free = saved
        self.pos = saved_pos
        return fails

    def pattern(self, fs: FnState, p: Any, reg: int, fails: list[int], seen: dict[Sym, int], where: Any) -> None:
        """Test R[reg] against pattern p, binding its variables; failing tests jump (collected)."""
        c = p.__class__
        if p is UNDERSCORE:
            return
        if c is Sym:
            if p in seen:
                self.emit(fs, "IFEQ", A=reg, B=seen[p], k=0)
                fails.append(self.jump(fs))
                return
            seen[p] = reg
            v = self.declare(fs, p, reg, where)
            if v.boxed:
                r = self.alloc(fs)
                self.emit(fs, "MOVE", A=r, B=reg)
                self.emit(fs, "BOX", A=r)
                v.reg = r
            return
        if c is Cons and p.head is QUOTE:
            self.eq_const(fs, reg, p.tail.head, fails)
            return
        if c is Vec:
            n = len(p.items)
            t = self.alloc(fs, n) if n else reg
            self.emit(fs, "UNVEC", A=t, B=reg, C=n)
            fails.append(self.jump(fs))
            for i, sub in enumerate(p.items):
                self.pattern(fs, sub, t + i, fails, seen, where)
            return
        if c is Cons and p.head.__class__ is Sym and p.head.name in ("list", "cons"):
            items = to_pylist(p.tail)
            if p.head.name == "list" and items is not None and len(items) <= 200:
                n = len(items)
                t = self.alloc(fs, n) if n else reg
                self.emit(fs, "UNLIST", A=t, B=reg, C=n)
                fails.append(self.jump(fs))
                for i, sub in enumerate(items):
                    self.pattern(fs, sub, t + i, fails, seen, where)
                return
            if p.head.name == "cons" and items is not None and len(items) == 2:
                t = self.alloc(fs, 2)
                self.emit(fs, "UNCONS", A=t, B=reg)
                fails.append(self.jump(fs))
                self.pattern(fs, items[0], t, fails, seen, where)
                self.pattern(fs, items[1], t + 1, fails, seen, where)
                return
        if c is MapForm:
            self.map_pattern(fs, p, reg, fails, seen, where)
            return
        if c in (int, float, str) or p is None or p is TRUE or p is FALSE:
            self.eq_const(fs, reg, p, fails)
            return
        raise self.err(p if c is Cons else where, f"bad pattern: {p!r}")

    def map_pattern(self, fs: FnState, p: MapForm, reg: int, fails: list[int], seen: dict[Sym, int],
                    where: Any) -> None:
        """{'k p ...}: R[reg] is a map holding each literal key, its value matching p (UNMAPK per
        key); `{}` matches any map."""
        items = list(p.items)
        if not items:
            t = self.alloc(fs, 2)
            self.emit(fs, "MOVE", A=t + 1, B=reg)
            self.emit(fs, "CALLB", A=t, B=1, C=self._builtin_const(fs, "map?"))
            self.emit(fs, "TEST", A=t, k=0)
            fails.append(self.jump(fs))
            return
        for i in range(0, len(items), 2):
            k, sub = items[i], items[i + 1]
            if k.__class__ is Cons and k.head is QUOTE and k.tail.__class__ is Cons and k.tail.tail is None:
                key = k.tail.head
            elif k.__class__ in (int, float, str) or k is None or k is TRUE or k is FALSE:
                key = k
            else:
                raise self.err(k if k.__class__ is Cons else where,
                               "map pattern: a key must be a literal ('sym, a number, a string, true, false or nil)")
            if key.__class__ in (Cons, Vec, MapForm):
                raise self.err(k, "map pattern: a key must be a literal ('sym, a number, a string, true, false or nil)")
            kv = self.const(fs, key)
            if kv > 255:
                raise CompileError(self.smap.file, *self.pos,
                                   "function too large (too many constants for a map pattern)")
            t = self.alloc(fs)
            self.emit(fs, "UNMAPK", A=t, B=reg, C=kv)
            fails.append(self.jump(fs))
            self.pattern(fs, sub, t, fails, seen, where)

    def eq_const(self, fs: FnState, reg: int, value: Any, fails: list[int]) -> None:
        if _small(value):
            self.emit(fs, "IFEQI", A=reg, B=value, k=0)
        else:
            kv = self.const(fs, value)
            if kv <= 255:
                self.emit(fs, "IFEQK", A=reg, B=kv, k=0)
            else:
                t = self.alloc(fs)
                self.load_const(fs, value, t)
                self.emit(fs, "IFEQ", A=reg, B=t, k=0)
        fails.append(self.jump(fs))


_SPECIAL = {
    QUOTE: Compiler.c_quote, IF: Compiler.c_if, DO: Compiler.c_do, AND: Compiler.c_andor,
    OR: Compiler.c_andor, LET: Compiler.c_let, SET: Compiler.c_set, DEF: Compiler.c_def,
    FN: Compiler.c_fn, TRY: Compiler.c_try, RECEIVE: Compiler.c_receive, CASE: Compiler.c_case,
    LOOP_FORM: Compiler.c_loop, RECUR: Compiler.c_recur,
}

_ARITH = {"+": "ADD", "-": "SUB", "*": "MUL", "/": "DIV", "div": "IDIV", "mod": "MOD"}
_COMPARE = {"==": "EQ", "=": "EQ", "!=": "NE", "<": "LT", "<=": "LE", ">": "GT", ">=": "GE"}
_UNARY = {"not": "NOT", "head": "HEAD", "tail": "TAIL"}

_INLINE: dict[tuple[str, int], Any] = {
    ("+", -1): Compiler.i_arith, ("-", -1): Compiler.i_arith, ("*", -1): Compiler.i_arith,
    ("/", 2): Compiler.i_arith, ("div", 2): Compiler.i_arith, ("mod", 2): Compiler.i_arith,
    ("-", 1): Compiler.i_neg, ("not", 1): Compiler.i_unary, ("head", 1): Compiler.i_unary,
    ("tail", 1): Compiler.i_unary, ("cons", 2): Compiler.i_cons, ("list", -1): Compiler.i_seq,
    ("vector", -1): Compiler.i_seq, ("recv", 0): Compiler.i_recv, ("timer/sleep", 1): Compiler.i_sleep,
    ("apply", -1): Compiler.i_apply,
}
for _name in _COMPARE:
    _INLINE[(_name, 2)] = Compiler.i_compare
for _op in OPS:  # a builtin that a row defines (vm/opcodes.py Op.builtin): its instruction, inline
    if _op.builtin is None:
        continue
    if _op.reads == ("B", "C"):  # binary: (f a b c) folds left, like +
        _ARITH[_op.builtin] = _op.name
        _INLINE[(_op.builtin, 2)] = Compiler.i_arith
    else:  # unary (vm/opcodes.py allows only these two shapes)
        _UNARY[_op.builtin] = _op.name
        _INLINE[(_op.builtin, 1)] = Compiler.i_unary


def _small(x: Any, negate: bool = False) -> bool:
    """An integer literal that fits an 8-bit signed immediate (after negation, if asked)."""
    if x.__class__ is not int:
        return False
    v = -x if negate else x
    return MIN_I <= v <= MAX_I and MIN_I <= x <= MAX_I


def _const_form(x: Any) -> bool:
    c = x.__class__
    return (c in (int, float, str) or x is TRUE or x is FALSE
            or (c is Cons and x.head is QUOTE and x.tail.head.__class__ is Sym))


def _const_value(x: Any) -> Any:
    return x.tail.head if x.__class__ is Cons else x


def _depth(x: Any) -> int:
    best, todo = 0, [(x, 1)]
    while todo:
        v, d = todo.pop()
        best = max(best, d)
        if v.__class__ is Cons:
            todo.extend((e, d + 1) for e in v)
        elif v.__class__ is Vec:
            todo.extend((e, d + 1) for e in v.items)
    return best


def boxed_names(body: list[Any]) -> set[Sym]:
    """Names that are assigned with `set` and also used inside a nested function.

    An over-approximation by name over the whole body: boxing a variable that did not need it
    costs a little speed, never correctness.
    """
    sets: set[Sym] = set()
    nested: set[Sym] = set()
    todo = [(f, False) for f in body]
    while todo:
        x, inner = todo.pop()
        c = x.__class__
        if c is Sym:
            if inner:
                nested.add(x)
        elif c is Vec:
            todo.extend((e, inner) for e in x.items)
        elif c is Cons:
            head = x.head
            if head is QUOTE:
                continue
            if head is SET and x.tail.__class__ is Cons:
                sets.add(x.tail.head)
            deeper = inner or head is FN or (head is DEF and _len(x) >= 4)
            c2: Any = x
            while c2.__class__ is Cons:
                todo.append((c2.head, deeper))
                c2 = c2.tail
    return sets & nested


def _mentions(forms: list[Any], name: Sym) -> bool:
    """Does `name` occur anywhere in `forms` (quoted data aside)? A superset of its uses."""
    todo = list(forms)
    while todo:
        x = todo.pop()
        if x is name:
            return True
        c = x.__class__
        if c is Cons:
            if x.head is QUOTE:
                continue
            while x.__class__ is Cons:
                todo.append(x.head)
                x = x.tail
        elif c is Vec or c is MapForm:
            todo.extend(x.items)
    return False


def _tail_recurs(body: list[Any]) -> list[Any]:
    """The `recur` forms in tail position of a loop body (core forms: if, do, let, case and
    receive clause bodies, the last of and/or); a nested loop or fn has its own."""
    out = []
    todo = [body[-1]] if body else []
    while todo:
        x = todo.pop()
        if x.__class__ is not Cons:
            continue
        head = x.head
        args = to_pylist(x.tail)
        if args is None:
            continue
        if head is RECUR:
            out.append(x)
        elif head is IF:
            todo.extend(args[1:])
        elif head is DO or head is AND or head is OR:
            todo.extend(args[-1:])
        elif head is LET and args:
            todo.extend(args[-1:] if len(args) > 1 else [])
        elif head is CASE or head is RECEIVE:
            for clause in args[1:] if head is CASE else args:
                parts = to_pylist(clause)
                if not parts:
                    continue
                rest = parts[2:] if parts[0] is AFTER else parts[1:]
                if rest and rest[0] is WHEN_KW and parts[0] is not AFTER:
                    rest = rest[2:]
                todo.extend(rest[-1:])
    return out


def _len(x: Any) -> int:
    n = 0
    while x.__class__ is Cons:
        n += 1
        x = x.tail
    return n


__all__ += ["S_LIST", "S_CONS", "CATCH"]
