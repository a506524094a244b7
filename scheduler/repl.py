"""The interactive session, `lispvm repl` (../shared/spec/CLI.md; docs/repl.md).

Owns: the long-lived node of a session (one scheduler in this OS process, or the hub and its
workers: the node classes here are LocalNode and Hub with a session's policy), its main process
(a Lisp loop that evaluates each typed form and is replaced when it dies), compiling each input
as its own module against the session's globals and macros, loading those modules into every
scheduler, the input thread (prompt_toolkit on a terminal, plain lines otherwise), Ctrl-C,
history, completion and `(help 'name)`. Must never: run Lisp code or the compiler outside the
scheduler's thread (the VM's state is that thread's), or let one bad input end the session.

Threads: the scheduler loop runs in the main thread (signals, forking the workers and the
node's poll are its), and the input is read in a second thread, which hands each input over
through a queue and a self-pipe registered with the node's poller, then waits for its answer.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
from typing import Any

from ..vm import builtins as B
from ..vm import fast, interp, lbc, prelude
from ..vm.errors import ERROR, CompileError, LispError, describe
from ..vm.process import Globals, Process
from ..vm.registry import BUILTINS, CONSTANTS, builtin
from ..vm.state import VM
from ..vm.values import UNDEF, Closure, Cons, Sym, from_list, intern, to_repr
from .node import LocalNode, load_program, spin_for_services

__all__ = ["run_repl", "incomplete", "history_path", "HISTORY_ENV", "load_module_bytes"]

HISTORY_ENV = "LISPVM_HISTORY"  # the history file's path (tests point it into their tmp_path)
PROMPT = "lispvm> "
FILE = "<repl>"  # the file name of positions in what is typed

# The main process's loop: each input arrives as a message holding a function of no arguments,
# whose value (or caught error) goes back to the session through sys/repl-result. Only these
# messages are taken by its receive: any other message sent to the main process stays in its
# mailbox for the code typed at the prompt.
DRIVER = """
(def __repl-loop ()
  (receive
    ((list '__repl-eval thunk)
     (sys/repl-result (try (list 'ok (thunk)) (catch e (list 'error e))))))
  (__repl-loop))
(__repl-loop)
"""

EVAL = intern("__repl-eval")
OK = intern("ok")
INTERRUPTED = intern("interrupted")
REQUIRE = intern("require")
QUOTE = intern("quote")

_SESSION: Session | None = None  # the session of this OS process (the builtins below reach it)


# --- reading -------------------------------------------------------------------------------

def incomplete(text: str) -> bool:
    """Is `text` an unfinished form: an open parenthesis, bracket or brace, or an open string?
    (A closing one too many, or one that does not match the open one, as in `(list {)`, is
    finished: the reader reports it at once, instead of waiting for input that cannot mend it.)"""
    open_ = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == ";":
            j = text.find("\n", i)
            if j < 0:
                return bool(open_)
            i = j
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            if i >= n:
                return True
        elif c in "([{":
            open_.append(_CLOSER[c])
        elif c in ")]}":
            if not open_ or open_.pop() != c:
                return False
        i += 1
    return bool(open_)


_CLOSER = {"(": ")", "[": "]", "{": "}"}


def history_path() -> str:
    """Where the history is kept: $LISPVM_HISTORY, else lispvm/history under $XDG_STATE_HOME
    (default ~/.local/state)."""
    path = os.environ.get(HISTORY_ENV)
    if path:
        return path
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "lispvm", "history")


# --- compiling one input -------------------------------------------------------------------

class InputCompiler:
    """Compiles each top-level form typed into a module of its own, whose top-level code returns
    the form's value. Macros persist from one input to the next (one expander for the session);
    globals are the node's, found by name when the module is decoded."""

    def __init__(self) -> None:
        from ..assembler.expand import Expander
        from ..assembler.pipeline import MacroRunner, reserved_names

        self.reserved = reserved_names()
        self.runner = MacroRunner(None, self.reserved)  # type: ignore[arg-type]
        self.expander = Expander(None, self.runner.run)  # type: ignore[arg-type]
        self.expander.compile_macro = self.runner.compile_macro
        self.docs: dict[str, tuple[str, str]] = {}  # name -> (kind and parameters, docstring)
        self.loader = _loader(self.reserved)  # the modules required in this session, each compiled once

    def read(self, text: str) -> tuple[list[Any], Any]:
        from ..assembler.reader import read

        return read(text, FILE)

    def require(self, form: Any, smap: Any) -> tuple[Sym, list[bytes]]:
        """`(require NAME)` typed: the module's name and the bytes of each module compiled for it
        now (itself after what it requires; none when it was required before). It is looked up
        in the current directory, then LISPVM_PATH; its macros become usable as NAME/m."""
        from ..assembler.expand import MAX_NESTING

        before = len(self.loader.order)
        old_limit = sys.getrecursionlimit()
        sys.setrecursionlimit(12 * MAX_NESTING + old_limit)
        self.loader.begin("", FILE)
        try:
            unit = self.loader.require(form, smap)
        except RecursionError:
            raise CompileError(FILE, *(smap.get(form) or (1, 1)), "module nested too deeply to compile") from None
        finally:
            self.loader.end()
            sys.setrecursionlimit(old_limit)
        for mname, closure in unit.macros.items():
            self.expander.macros[intern(f"{unit.name}/{mname.name}")] = closure
        return intern(unit.name), [lbc.dump(u.module) for u in self.loader.order[before:]]

    def compile(self, form: Any, smap: Any) -> bytes:
        """One form as the bytes of a module whose top-level code returns its value."""
        from ..assembler.compile import Compiler, boxed_names
        from ..assembler.expand import MAX_NESTING
        from ..assembler.modules import Scope, UnknownName, refine

        self.expander.smap = self.runner.smap = smap
        self._note_doc(form)
        old_limit = sys.getrecursionlimit()
        sys.setrecursionlimit(12 * MAX_NESTING + old_limit)  # as the file compiler leaves room
        try:
            core = self.expander.expand_toplevel(form)
            c = Compiler(smap, frozenset(BUILTINS), self.reserved)
            c.scope = Scope("", FILE, frozenset(), self.loader)  # NAME/x checked against required modules
            fs = c.main
            fs.boxed = fs.boxed | boxed_names([core])
            r = c.alloc(fs)
            c.expr(fs, core, r)
            c.emit(fs, "RETURN", A=r)
            c.finish(fs)
        except UnknownName as e:
            raise refine(e, form, smap) from None
        except RecursionError:
            raise CompileError(FILE, *(smap.get(form) or (1, 1)), "expression nested too deeply to compile") from None
        finally:
            sys.setrecursionlimit(old_limit)
        return lbc.dump(lbc.Module(FILE, c.protos))

    def _note_doc(self, form: Any) -> None:
        """Remember what `(def name (params) "doc" body...)` and defmacro say, for help."""
        items = _items(form)
        if len(items) < 3 or items[0].__class__ is not Sym or items[1].__class__ is not Sym:
            return
        head, name = items[0].name, items[1].name
        if head not in ("def", "defmacro"):
            return
        if head == "def" and not (len(items) >= 4 and (items[2] is None or items[2].__class__ is Cons)):
            self.docs[name] = ("a global variable defined in this session", "")
            return
        params = to_repr(items[2]) if items[2] is not None else "()"
        doc = items[3] if len(items) > 4 and items[3].__class__ is str else ""
        kind = "a macro" if head == "defmacro" else "a function"
        self.docs[name] = (f"({name}{' ' + params[1:-1] if params != '()' else ''}): {kind} defined in this session",
                           doc)


def _loader(reserved: frozenset[str]) -> Any:
    """A module loader for a session: modules compiled as lispvm asm compiles them."""
    from ..assembler.modules import Loader
    from ..assembler.pipeline import compile_unit

    def compile_module(text: str, file: str, loader: Any) -> Any:
        return compile_unit(text, file, loader, reserved, False, None, sys.stdout)

    return Loader(compile_module, None, reserved)


def _items(form: Any) -> list[Any]:
    out = []
    while form.__class__ is Cons:
        out.append(form.head)
        form = form.tail
    return out


def load_module_bytes(data: bytes, globals_: Globals) -> lbc.Module:
    """Load, verify, register and decode one more module into this OS process's `globals_` (each
    input of a session, on every scheduler: scheduler/cluster.py's `load` event)."""
    from ..vm.verify import verify

    module = lbc.load(data)
    verify(module, frozenset(BUILTINS))
    lbc.register(module)
    interp.predecode(module, globals_)
    return module


# --- the session (the scheduler thread's side) ------------------------------------------------

class Session:
    """What the scheduler's thread knows of the session: the inputs waiting, the one being
    evaluated, the main process, and how to answer the input thread."""

    def __init__(self, out: Any, err: Any) -> None:
        self.out = out  # where values and the node's output go
        self.err = err  # where error lines go
        self.node: Any = None
        self.driver: lbc.Module | None = None
        self.compiler = InputCompiler()
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()  # inputs from the input thread (None: the end)
        self.answers: queue.SimpleQueue = queue.SimpleQueue()  # to the input thread: one per input
        self.units: list[tuple[str, Any, Any]] = []  # what the input still has to run: ("form",
        # form, source map) or ("module", .lbc bytes, None) for a module a require compiled
        self.silent = False  # the evaluation in flight runs a module's top level: no value to print
        self.in_flight = False  # a form is being evaluated by the main process
        self.interrupt = False  # Ctrl-C came
        self.ending = False
        self.modules: list[lbc.Module] = []  # loaded here (forgotten when the session ends)
        self.rfd, self.wfd = os.pipe()
        os.set_blocking(self.rfd, False)
        os.set_blocking(self.wfd, False)

    # the input thread's side ------------------------------------------------------------

    def submit(self, text: str | None) -> str:
        """(Input thread) Evaluate `text` (None: end the session) and wait until it is done:
        "done", or "end" when the session has ended."""
        self.inbox.put(text)
        self.poke()
        return self.answers.get()

    def poke(self) -> None:
        try:
            os.write(self.wfd, b".")
        except (BlockingIOError, OSError):
            pass  # the pipe is full: the scheduler is woken already

    # the scheduler thread's side ----------------------------------------------------------

    def woken(self) -> None:
        """The self-pipe is readable (the poller's callback): empty it; the work is done in
        service, between passes or when idle, never inside a process's slice."""
        try:
            while os.read(self.rfd, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def service(self) -> bool:
        """Take an interrupt or the next input; whether a process was made runnable."""
        node = self.node
        if node.exit_code is not None:
            return False
        if self.interrupt:
            self.interrupt = False
            if self.in_flight:
                main = self.main_process()
                if main is not None:
                    node.sched.kill(main, INTERRUPTED)  # (main_ended answers and starts a new one)
                    return True
        if self.in_flight:
            return False
        while not self.units:
            try:
                text = self.inbox.get_nowait()
            except queue.Empty:
                return False
            if text is None:
                self.end(0)
                return False
            try:
                forms, smap = self.compiler.read(text)
            except CompileError as e:
                self.error(str(e))
                self.answer()
                continue
            if not forms:
                self.answer()
                continue
            self.units = [("form", f, smap) for f in forms]
        return self.next_unit()

    def next_unit(self) -> bool:
        """Compile the next form of the input and give it to the main process."""
        while self.units:
            kind, form, smap = self.units.pop(0)
            try:
                if kind == "form" and form.__class__ is Cons and form.head is REQUIRE:
                    name, new = self.compiler.require(form, smap)
                    self.units[:0] = [*(("module", d, None) for d in new), ("form", from_list([QUOTE, name]), smap)]
                    continue
                data = form if kind == "module" else self.compiler.compile(form, smap)
                module = load_module_bytes(data, self.node.globals)
            except CompileError as e:
                self.error(str(e))
                self.units = []
                break
            except LispError as e:  # pragma: no cover - the expander reports macro errors as CompileError
                self.error(f"error: {describe(e.value)}")
                self.units = []
                break
            except Exception as e:  # a bug in lispvm: one line, and the session goes on
                if os.environ.get("LISPVM_DEBUG"):
                    raise
                self.error(f"lispvm: internal error (a bug in lispvm): {type(e).__name__}: {e}")
                self.units = []
                break
            self.modules.append(module)
            self.node.share_module(data)
            main = self.main_process()
            self.in_flight = True
            self.silent = kind == "module"
            self.node.sched.deliver(main, from_list([EVAL, Closure(module.protos[0], ())]))
            return True
        self.answer()
        return False

    def result(self, value: Any) -> None:
        """(The main process, through sys/repl-result) the form's value, or the error it raised."""
        items = _items(value)
        if len(items) == 2 and items[0] is OK:
            if not self.silent:
                try:
                    text = to_repr(items[1])
                except RecursionError:  # a value nested deeper than printing goes
                    text = "#<a value nested too deeply to print>"
                self.node.output(text)
        else:
            self.units = []
            self.error(f"error: {describe(items[1] if len(items) == 2 else value)}")
        self.in_flight = False
        if not self.units:
            self.answer()
        # the next form of the same input is taken at the next service (between passes)

    def main_ended(self, proc: Process, reason: Any) -> None:
        """The main process ended (Ctrl-C, an exit signal from a link, `(exit ...)`): say why,
        and start a new one, so that the session goes on with the same globals."""
        if self.ending or self.node.exit_code is not None:
            return
        if reason is INTERRUPTED:
            self.error("interrupted")
        else:
            items = _items(reason)
            why = describe(reason) if items and items[0] is ERROR else to_repr(reason)
            self.error(f"the main process {proc.pid!r} exited ({why}); a new one takes over")
        self.start_main()
        if self.in_flight:
            self.in_flight = False
            self.units = []
            self.answer()

    def start_main(self) -> Process:
        node = self.node
        proto = self.driver.protos[0]
        main = Process(node.sched.new_pid(), Closure(proto, ()), [None] * proto.nregs)
        node.set_main(main)
        node.sched.add(main)
        return main

    def main_process(self) -> Process | None:
        return self.node.sched.procs.get(self.node.main_pid.key)

    def error(self, line: str) -> None:
        self.node.error_out(line)

    def answer(self) -> None:
        try:
            self.out.flush()
        except (OSError, ValueError):
            pass
        self.answers.put("done")

    def end(self, code: int) -> None:
        self.ending = True
        self.node.exit_code = code if self.node.exit_code is None else self.node.exit_code


# --- the session's nodes ----------------------------------------------------------------------

class ReplLocalNode(LocalNode):
    """The one-scheduler node of a session: never deadlocked (the next input may come), and
    its main process is replaced rather than ending the node."""

    session: Session

    @property
    def main_pid(self) -> Any:
        return self.main.pid

    def set_main(self, proc: Process) -> None:
        self.main = proc

    def share_module(self, data: bytes) -> None:
        pass  # one scheduler: loaded here is loaded everywhere

    def after_pass(self) -> None:
        self.session.service()

    def idle(self, deadline: float | None) -> float | None:
        if self.session.service() or self.exit_code is not None:
            return -1.0
        self.flush()
        delay = self.sched.seconds_until(deadline)
        if (self.services and not (self.clock.virtual and delay is not None)
                and spin_for_services(self.services, self.poller.poll, self.busy_wait, delay)):
            return -1.0
        return delay  # None: wait in the poll for the next input (the self-pipe) or device answer

    def process_ended(self, sched: Any, proc: Process, reason: Any) -> None:
        if proc is self.main:
            self.session.main_ended(proc, reason)

    def error_out(self, line: str) -> None:
        self.flush()
        self.err.write(line + "\n")
        self.err.flush()


def _repl_hub_class() -> type:
    from .hub import Hub

    class ReplHub(Hub):
        """The hub of a session of several schedulers: as ReplLocalNode, and each input's module
        goes to every worker before anything that uses it can."""

        session: Session

        def set_main(self, proc: Process) -> None:
            self.main_pid = proc.pid
            self.tell_workers(("mainpid", proc.pid))

        def share_module(self, data: bytes) -> None:
            # on each link before any process or global that uses it: events keep their order
            self.tell_workers(("load", data))

        def after_pass(self) -> None:
            super().after_pass()
            self.session.service()

        def idle(self, deadline: float | None) -> float | None:
            if self.session.service() or self.exit_code is not None:
                return -1.0
            return super().idle(deadline)

        def quiescent(self, *args: Any) -> bool:
            return False  # the next input may wake the main process: never a deadlock

        def process_ended(self, sched: Any, proc: Process, reason: Any) -> None:
            if proc.pid == self.main_pid:
                self.session.main_ended(proc, reason)

        def error_out(self, line: str) -> None:
            self.error_line(line)

    return ReplHub


# --- builtins of a session ----------------------------------------------------------------------

def _register_builtins() -> None:
    """sys/repl-result (the driver's) and help: defined only in a session's OS processes."""

    @builtin("sys/repl-result")
    def b_repl_result(value: Any) -> None:
        session = _SESSION
        # (internal, like every sys/ helper: only the main process's answer to an input counts)
        if session is not None and session.in_flight and B.ctx.proc is session.main_process():
            session.result(value)

    @builtin("help")
    def b_help(*args: Any) -> None:
        for line in help_text(args[0] if args else None).splitlines():
            B.ctx.host.output(line)


def help_text(what: Any) -> str:
    """The help for a name (a symbol, a string or a function value), or how to ask for it."""
    from .repl_help import HELP

    if what is None or (what.__class__ is Sym and what.name == "help"):
        return ("(help 'name) shows what a builtin, special form or function does: (help 'list/map).\n"
                "Functions defined at the prompt show their parameters and docstring:\n"
                "  (def twice (x) \"Two times x.\" (* 2 x))\n"
                "Tab completes names; Ctrl-C interrupts an evaluation; Ctrl-D ends the session.")
    if what.__class__ is Sym:
        name = what.name
    elif what.__class__ is str:
        name = what
    elif what.__class__ is Closure:
        name = what.name or what.proto.name
    elif hasattr(what, "name") and what.__class__.__name__ == "Builtin":
        name = what.name
    else:
        raise B.badarg(f"help: expected a name or a function, got {to_repr(what)}")
    doc = _SESSION.compiler.docs.get(name) if _SESSION is not None else None
    if doc is not None:
        return doc[0] + ("\n  " + doc[1] if doc[1] else "")
    text = HELP.get(name)
    if text is not None:
        return text
    if name in BUILTINS or name in CONSTANTS or name in prelude.names():
        return f"{name}: a builtin (no entry for it in the language's definition)"
    if _SESSION is not None and name in _SESSION.compiler.expander.macros:
        return f"{name}: a macro defined in this session"
    return f"no help for {name}: not a builtin, special form or name defined in this session"


# --- completion -----------------------------------------------------------------------------

def defined_names(session: Session | None) -> list[str]:
    """Every name completion offers: builtins, constants, the prelude's, the special forms,
    and the session's globals and macros."""
    from ..assembler.expand import SPECIAL_FORMS
    from .repl_help import HELP

    names = set(BUILTINS) | set(CONSTANTS) | set(prelude.names()) | {s.name for s in SPECIAL_FORMS}
    names |= {n for n in HELP if n in BUILTINS or n in prelude.names() or n in ("when", "unless", "case", "loop",
                                                                                "recur", "match", "module", "require")}
    if session is not None:
        for _ in range(3):  # the scheduler's thread may add a name while this one copies them
            try:
                names |= {n for n, c in list(session.node.globals.cells.items()) if c.v is not UNDEF}
                names |= {s.name for s in list(session.compiler.expander.macros)}
                break
            except RuntimeError:
                continue
    names.discard("sys/repl-result")
    return sorted(n for n in names if not n.startswith("__repl"))


# --- input -----------------------------------------------------------------------------------

class _Writer:
    """A stream that writes to `target`, which the input thread swaps for a _TerminalWriter on
    a terminal."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def write(self, s: str) -> int:
        return self.target.write(s)

    def flush(self) -> None:
        self.target.flush()


class _TerminalWriter:
    """The node's output on a terminal: written at once while no prompt is shown, and above the
    prompt (prompt_toolkit's run_in_terminal, in the prompt's own loop) while one is. What is
    written meanwhile waits in `pending` under the lock until one of the two writes it, so that
    nothing is lost when a prompt ends before its loop got to it. (prompt_toolkit's StdoutProxy
    writes from a thread of its own, and a write of its racing a new prompt's first drawing
    lost that drawing.)"""

    def __init__(self, real: Any) -> None:
        self.real = real  # the terminal's stream
        self.lock = threading.Lock()
        self.pending: list[str] = []
        self.app: Any = None  # the prompt's application while it runs
        self.scheduled = False

    def write(self, s: str) -> int:
        with self.lock:
            if self.app is None:
                self.real.write(s)
                self.real.flush()
                return len(s)
            self.pending.append(s)
            if not self.scheduled:
                self.scheduled = True
                self.app.loop.call_soon_threadsafe(self._drain)
        return len(s)

    def flush(self) -> None:
        pass  # written at once, or as soon as the prompt's loop can

    def _drain(self) -> None:
        from prompt_toolkit.application import run_in_terminal

        with self.lock:
            self.scheduled = False
            if self.app is None:
                return
        run_in_terminal(self._write_pending, in_executor=False)

    def _write_pending(self) -> None:
        with self.lock:
            text = "".join(self.pending)
            self.pending.clear()
        if text:
            self.real.write(text)
            self.real.flush()

    def prompting(self, app: Any) -> None:
        """The prompt runs (its pre_run): write above it from now on."""
        with self.lock:
            self.app = app
            if self.pending and not self.scheduled:
                self.scheduled = True
                app.loop.call_soon_threadsafe(self._drain)

    def prompted(self) -> None:
        """The prompt has ended: write directly again, first what is still pending."""
        with self.lock:
            self.app = None
            text = "".join(self.pending)
            self.pending.clear()
            if text:
                self.real.write(text)
                self.real.flush()


def _read_pipe(session: Session, stream: Any) -> None:
    """(Input thread) Standard input is not a terminal: forms from its lines, no line editing."""
    buf = ""
    try:
        for line in stream:
            buf += line
            if incomplete(buf):
                continue
            if buf.strip():
                if session.submit(buf) == "end":
                    return
            buf = ""
        if buf.strip():
            if session.submit(buf) == "end":  # an unfinished form: the reader says what is open
                return
    except (OSError, ValueError):
        pass
    session.submit(None)


def _read_terminal(session: Session, ready: threading.Event, fail: list) -> None:
    """(Input thread) A terminal: prompt_toolkit, multi-line until balanced, history, completion."""
    try:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.application import get_app
        from prompt_toolkit.completion import Completer, Completion
        from prompt_toolkit.history import FileHistory, InMemoryHistory
        from prompt_toolkit.key_binding import KeyBindings

        class Names(Completer):
            def get_completions(self, document: Any, complete_event: Any) -> Any:
                word = _word_before(document.text_before_cursor)
                if not word:
                    return
                for name in defined_names(session):
                    if name.startswith(word):
                        yield Completion(name, start_position=-len(word))

        keys = KeyBindings()

        @keys.add("enter")
        def _enter(event: Any) -> None:
            buf = event.current_buffer
            if incomplete(buf.text):
                buf.insert_text("\n")
            else:
                buf.validate_and_handle()

        class History(FileHistory):
            """The history file, or the session's memory only when it cannot be read or written
            (said once): a failing write raised inside the prompt and stopped it."""

            failed = False

            def load_history_strings(self) -> Any:
                try:
                    yield from super().load_history_strings()
                except OSError as e:
                    self.fail(e)

            def store_string(self, string: str) -> None:
                if not self.failed:
                    try:
                        super().store_string(string)
                    except OSError as e:
                        self.fail(e)

            def fail(self, e: OSError) -> None:
                if not self.failed:
                    self.failed = True
                    session.err.write(f"lispvm: the history is not kept: {path}: {e.strerror or e}\n")

        path = history_path()
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            history: Any = History(path)
        except OSError as e:
            session.err.write(f"lispvm: the history is not kept: {path}: {e.strerror or e}\n")
            history = InMemoryHistory()
        prompt = PromptSession(history=history, completer=Names(), multiline=True, key_bindings=keys,
                               prompt_continuation=lambda width, line, soft: "." * (width - 1) + " ",
                               complete_while_typing=False)
        terminal = _TerminalWriter(session.out.target)
        session.out.target = session.err.target = terminal
    except Exception as e:  # pragma: no cover - a terminal prompt_toolkit cannot drive
        fail.append(e)
        ready.set()
        return
    ready.set()
    try:
        _prompt_loop(session, prompt, terminal, get_app)
    except Exception as e:  # the terminal went away, or prompt_toolkit failed: end, in one line
        if os.environ.get("LISPVM_DEBUG"):
            raise
        session.err.write(f"lispvm: the terminal cannot be read any more ({type(e).__name__}: {e})\n")
    finally:
        if not session.ending:
            session.submit(None)


def _prompt_loop(session: Session, prompt: Any, terminal: _TerminalWriter, get_app: Any) -> None:
    """(Input thread) Prompt, hand each input over, until Ctrl-D or the end of the session."""
    while True:
        try:
            text = prompt.prompt(PROMPT, pre_run=lambda: terminal.prompting(get_app()))
        except KeyboardInterrupt:
            continue  # Ctrl-C at the prompt drops what was typed
        except EOFError:
            return
        finally:
            terminal.prompted()
        if text.strip() and session.submit(text) == "end":
            return


def _word_before(text: str) -> str:
    i = len(text)
    while i > 0 and text[i - 1] not in " \t\n()[]{}\"';`,":
        i -= 1
    return text[i:]


# --- running a session ---------------------------------------------------------------------------

def run_repl(schedulers: int | None = None, reductions: int = 4000, jit: bool = True,
             stdin: Any = None, out: Any = None, err: Any = None, tty: bool | None = None) -> int:
    """Run an interactive session until Ctrl-D, the end of standard input or `(halt code)`;
    returns the exit status."""
    global _SESSION
    from ..assembler.pipeline import compile_source

    stdin = stdin if stdin is not None else sys.stdin
    if tty is None:
        tty = stdin.isatty() and sys.stdout.isatty()
    _register_builtins()
    out_w, err_w = _Writer(out or sys.stdout), _Writer(err or sys.stderr)
    session = Session(out_w, err_w)
    _SESSION = session
    data = lbc.dump(compile_source(DRIVER, "<repl driver>", allow_reserved=False))
    globals_ = Globals()
    driver = load_program(data, globals_)
    session.driver = driver
    n = schedulers if schedulers is not None else (os.cpu_count() or 1)
    vm = VM()
    tier = fast.enable(vm, globals_, reductions) if jit else None

    ready = threading.Event()
    fail: list = []
    if tty:
        reader = threading.Thread(target=_read_terminal, args=(session, ready, fail), daemon=True)
    else:
        reader = threading.Thread(target=_read_pipe, args=(session, stdin), daemon=True)
        ready.set()
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum: int, frame: Any) -> None:
        session.interrupt = True
        session.poke()

    try:
        reader.start()
        ready.wait()
        if fail:
            err_w.write(f"lispvm: the terminal cannot be used for line editing ({fail[0]}); reading lines\n")
            reader = threading.Thread(target=_read_pipe, args=(session, stdin), daemon=True)
            reader.start()
        signal.signal(signal.SIGINT, on_sigint)
        if n <= 1:
            node = ReplLocalNode(driver, globals_, [], reductions, None, out_w, err_w, vm=vm)
            node.session = session
            session.node = node
            node.add_reader(session.rfd, session.woken)
            return node.run()
        return _run_hub(session, data, driver, globals_, n, reductions, jit, out_w, err_w, vm)
    finally:
        signal.signal(signal.SIGINT, previous)
        session.ending = True
        session.answers.put("end")  # the input thread, if it waits, stops
        if tier is not None:
            fast.disable(vm)
        B.ctx.proc = B.ctx.host = None
        from ..vm import process

        if process.CURRENT_GLOBALS is globals_:
            process.CURRENT_GLOBALS = None
        for m in [driver, *session.modules]:
            if lbc._REGISTRY.get(m.key) is m:
                del lbc._REGISTRY[m.key]
        for fd in (session.rfd, session.wfd):
            try:
                os.close(fd)
            except OSError:
                pass
        _SESSION = None
        try:
            out_w.flush()
            err_w.flush()
        except (OSError, ValueError):
            pass


def _run_hub(session: Session, data: bytes, driver: lbc.Module, globals_: Globals, n: int, reductions: int,
             jit: bool, out: Any, err: Any, vm: VM) -> int:
    """run_cluster's work with the session's hub (hub.run_cluster builds a plain Hub)."""
    import tempfile

    from .hub import run_hub
    from .workers import reap, remove_dir

    reap()
    sockdir = tempfile.mkdtemp(prefix="lispvm-")
    hub = _repl_hub_class()(0, n, sockdir, driver, globals_, [], reductions, None, out=out, err=err, jit=jit,
                            trace_path=None, vm=vm)
    hub.session = session
    session.node = hub
    hub.program = data
    hub.secret = os.urandom(16)
    proto = driver.protos[0]
    main = Process(hub.sched.new_pid(), Closure(proto, ()), [None] * proto.nregs)
    hub.add_reader(session.rfd, session.woken)
    try:
        return run_hub(hub, main, jit)
    finally:
        remove_dir(sockdir)

