"""Python interop (LANGUAGE.md section 14, docs/python.md): py/import, py/call, py/attr,
py/call-async, the conversions both ways, opaque values, errors, permission, and what may cross
schedulers. One program run on 1 and 3 schedulers does most of it (few launches)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lispvm.vm import codec
from lispvm.vm.errors import LispError
from lispvm.vm.python import PyObj, module_named, to_lisp, to_python
from lispvm.vm.values import FALSE, TRUE, F32Array, Map, Vec, from_list, intern, map_of, to_repr
from support import lispvm

PROGRAM = r'''(def math (py/import "math"))
(def json (py/import "json"))
(def builtins (py/import "builtins"))
(def threading (py/import "threading"))
(print math (py/attr math "pi") (py/call math "sqrt" 16) (py/call math "factorial" 25))
(print (py/call "a,b,c" "split" ",") (py/call builtins "len" [1 2 3]) (py/call builtins "type" [1]))
(print (py/call json "dumps" (sys/map-of "b" (list "x" 'sym) "a" [1 2.5 true false nil])))
(print (py/call json "loads" "{\"x\": [1, {\"y\": null}], \"t\": [true, 2.5]}"))
(print (py/call (py/attr builtins "abs") nil -7) (py/call (py/call builtins "dict") "get" "k" 42))
(def np (py/import "numpy"))
(def a (gpu/array (list 1 2 3)))
(print (py/call np "sum" a) (gpu/to-list (py/call np "multiply" a 2.0)) (py/call np "zeros" 2))
(print (py/call (py/call np "arange" 0 3 1 "float32") "tolist") (gpu/to-list a))
(print (try (py/call np "copyto" a 5.0) (catch e (nth e 1))) (gpu/to-list a))
(print (try (py/call json "loads" "{") (catch e e)))
(print (try (py/import "no_such_module_here") (catch e e)))
(print (try (py/attr math "nope") (catch e e)))
(print (try (py/call math 'sqrt 4) (catch e (nth e 1))) (try (py/call math nil 4) (catch e e)))
(print (try (py/call builtins "len" (fn () 1)) (catch e e)))
(print (try (py/call builtins "len" (cons 1 2)) (catch e e)))
(print (try (py/call (py/import "sys") "exit" 3) (catch e e)))
(def me (self))
(def here (spawn (fn () (let ((m (recv))) (send me (list 'same (py/attr m "e") (== m math)))))))
(send here math)
(print (recv))
(def there (spawn-on 1 (fn () (send me (list 'module (py/attr (recv) "tau"))) (send me (list 'got (recv))))))
(send there math)
(print (recv))
(print (try (send there (py/call threading "Event")) (catch e (nth e 1))))
(send there 1)
(print (recv))
(let ((ev (py/call threading "Event"))
      (r (py/call-async ev "wait" 60)))
  (print (py/call ev "set"))
  (print (receive ((list 'py x v) :when (== x r) (list 'answered v)))))
(let ((r (py/call-async json "loads" "[1")))
  (print (receive ((list 'py-error x e) :when (== x r) e))))
(let ((r (py/call-async (py/import "time") "sleep" 0.05)))
  (print (receive ((list 'py x v) :when (== x r) (list 'slept v)))))
(let ((ev (py/call threading "Event")))
  (spawn (fn () (py/call-async ev "wait" 60) 'done))
  (py/call ev "set"))
(py/call-async (py/call threading "Event") "wait")
(print 'end)
'''

# the output on 3 schedulers; on 1, the process "there" is on the same scheduler: the Event is sent
EXPECTED = r'''#<py module> 3.141592653589793 4.0 15511210043330985984000000
("a" "b" "c") 3 #<py type>
{"a": [1, 2.5, true, false, null], "b": ["x", "sym"]}
{"t" (true 2.5) "x" (1 {"y" nil})}
7 42
6.0 (2.0 4.0 6.0) #<py ndarray>
(0.0 1.0 2.0) (1.0 2.0 3.0)
python (1.0 2.0 3.0)
(error python "JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)")
(error python "ModuleNotFoundError: No module named 'no_such_module_here'")
(error python "AttributeError: module 'math' has no attribute 'nope'")
badarg (error badarg "py/call: #<py module> is not callable (give a method name, or nil to call it)")
(error badarg "py/call: a function cannot be given to Python (#<fn fn>)")
(error badarg "py/call: an improper list cannot be given to Python")
(error python "SystemExit: 3")
(same 2.718281828459045 true)
(module 6.283185307179586)
badarg
(got 1)
nil
(answered true)
(error python "JSONDecodeError: Expecting ',' delimiter: line 1 column 3 (char 2)")
(slept nil)
end
'''


@pytest.mark.parametrize("schedulers", [1, 3])
def test_python_interop_program(tmp_path: Path, schedulers: int) -> None:
    """Its last call waits forever in a pool thread: the node still ends when the main process
    does (a pool thread is never waited for)."""
    prog = tmp_path / "py.lisp"
    prog.write_text(PROGRAM)
    r = lispvm("run", "--schedulers", str(schedulers), "--allow-python", str(prog))
    expected = EXPECTED
    if schedulers == 1:  # a Python object sent on the same scheduler arrives as itself
        expected = expected.replace("badarg\n(got 1)\n", "#<py Event>\n(got #<py Event>)\n")
    assert (r.stdout, r.stderr, r.returncode) == (expected, "", 0)


def test_without_the_flag_python_is_refused_and_errors_are_one_line(tmp_path: Path) -> None:
    """No --allow-python: every py/ builtin refuses with eacces naming the flag. An uncaught
    Python exception is one line with file:line:col, exit 1; a def of a Python object (not a
    module) after another scheduler started is badarg at that def."""
    prog = tmp_path / "no.lisp"
    prog.write_text("""(print (list/map (fn (f) (try (f) (catch e (nth e 2))))
  (list (fn () (py/import "math")) (fn () (py/call 1 "bit_length")) (fn () (py/attr 1 "real"))
        (fn () (py/call-async 1 "bit_length")))))
""")
    r = lispvm("run", str(prog))
    line = "calling Python is not allowed (allowed by --allow-python)"
    assert r.returncode == 0 and r.stdout.count(line) == 4, (r.stdout, r.stderr)
    assert r.stdout.startswith('("py/import: calling')
    bad = tmp_path / "bad.lisp"
    bad.write_text('(print 1)\n(py/call (py/import "json") "loads" "[")\n')
    r = lispvm("run", "--allow-python", str(bad))
    assert r.stdout == "1\n" and r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"{bad}:2:1: error: python: JSONDecodeError: Expecting value: line 1 "
                                             "column 2 (char 1)"], r.stderr
    late = tmp_path / "late.lisp"
    late.write_text("""(def me (self))
(spawn-on 1 (fn () (send me 'up)))
(print (recv))
(def json (py/import "json"))
(print (py/call json "dumps" 1))
(def ev (py/call (py/import "threading") "Event"))
(print 'not-here)
""")
    r = lispvm("run", "--schedulers", "2", "--allow-python", str(late))
    assert r.stdout == "up\n1\n" and r.returncode == 1, (r.stdout, r.stderr)
    assert r.stderr.strip() == (f"{late}:6:1: error: badarg: def ev: a Python object (#<py Event>) cannot be sent to "
                                "another scheduler: keep it in the process that uses it"), r.stderr


def test_conversions_both_ways() -> None:
    a = F32Array(np.array([1, 2], dtype=np.float32))
    lisp = from_list([1, 2.5, "s", TRUE, FALSE, None, Vec([1, from_list([2])]), map_of("k", a), intern("sym")])
    py = to_python("t", lisp)
    assert py[:7] == [1, 2.5, "s", True, False, None, (1, [2])] and py[8] == "sym"
    view = py[7]["k"]
    assert view.dtype == np.float32 and not view.flags.writeable and list(view) == [1.0, 2.0]
    back = to_lisp([1, 2.5, "s", True, False, None, (1, [2]), {"k": np.array([3], dtype=np.float32)},
                    np.int64(7), np.float64(0.5), np.bool_(True)])
    assert to_repr(back) == '(1 2.5 "s" true false nil [1 (2)] {"k" #<f32[1]>} 7 0.5 true)'
    arr = np.array([1], dtype=np.float32)
    got = to_lisp(arr)
    arr[0] = 9  # Python changing its array later does not change the Lisp value
    assert got.data[0] == 1.0
    # the same value keyed by list, 1 and 1.0: keys stay hashable and one key
    d = to_python("t", Map(map_of(from_list([1]), "a", 1, "b").m))
    assert d == {(1,): "a", 1: "b"}
    for opaque in (object(), np.zeros(2), {1, 2}, b"x", [1, {2, 3}]):
        v = to_lisp(opaque)
        assert isinstance(v if not isinstance(opaque, list) else v.tail.head, PyObj)
    assert repr(to_lisp(np.zeros(2))) == "#<py ndarray>"


def test_conversion_limits_and_refusals() -> None:
    deep: list = []
    x = deep
    for _ in range(1000):
        x.append([])
        x = x[0]
    v = to_lisp(deep)  # past the depth limit the rest stays a Python object, no RecursionError
    assert "#<py list>" in to_repr(v)
    cyc: list = []
    cyc.append(cyc)
    assert "#<py list>" in to_repr(to_lisp(cyc))
    nested = None
    for _ in range(500):
        nested = from_list([nested])
    with pytest.raises(LispError, match="nested more than"):
        to_python("py/call", nested)
    with pytest.raises(LispError, match="py/call: Python gave an integer of 1,048,578 bits"):
        to_lisp([1, 1 << (1 << 20) + 1])  # past what the VM's integers may hold
    assert to_lisp(-(1 << (1 << 20) - 1)) < 0
    with pytest.raises(LispError, match="py/attr: Python gave a string that is not Unicode text"):
        to_lisp({"k": "a\ud800"}, 0, "py/attr")
    assert to_lisp("é\u20ac") == "é\u20ac"
    with pytest.raises(LispError, match="a pid cannot be given to Python"):
        from lispvm.vm.values import Pid

        to_python("py/call", Pid(0, 1))


def test_the_codec_sends_modules_by_name_and_refuses_other_python_objects() -> None:
    import json

    m = PyObj(json)
    assert codec.decode(codec.encode(from_list([m, 1]))).head.obj is json
    with pytest.raises(codec.Unsendable, match=r"a Python object \(#<py Event>\) cannot be sent"):
        import threading

        codec.encode(from_list([1, PyObj(threading.Event())]))
    with pytest.raises(codec.TooLarge):  # so a process holding one is not moved (scheduler/balance.py)
        codec.encode_frame(PyObj(object()))
    assert module_named("math").obj.pi > 3


EVIL = '''class BadStr(Exception):
    def __str__(self):
        raise RuntimeError("str fails too")
class Opaque:
    def __repr__(self):
        raise RuntimeError("repr fails")
def bad():
    raise BadStr()
def stop():
    raise KeyboardInterrupt("stop")
def gen_exit():
    raise GeneratorExit()
def opaque():
    return Opaque()
'''


def test_exceptions_that_cannot_print_and_base_exceptions_are_lisp_errors(tmp_path: Path) -> None:
    """An exception whose __str__ raises, KeyboardInterrupt and GeneratorExit: each a python
    error in py/call and in py/call-async's message, and the node goes on (it crashed with 70)."""
    (tmp_path / "evilmod.py").write_text(EVIL)
    prog = tmp_path / "evil.lisp"
    prog.write_text('''(def ev (py/import "evilmod"))
(def t (fn (f) (print (try (py/call ev f) (catch e e)))))
(def ta (fn (f) (let ((r (py/call-async ev f))) (print (receive ((list 'py-error x e) :when (== x r) e))))))
(t "bad") (t "stop") (t "gen_exit") (ta "bad") (ta "stop")
(print (py/call ev "opaque") 'end)
''')
    r = lispvm("run", "--allow-python", str(prog), env={"PYTHONPATH": str(tmp_path)})
    bad = '(error python "BadStr: (the exception could not be printed)")'
    stop = '(error python "KeyboardInterrupt: stop")'
    assert (r.stdout, r.stderr, r.returncode) == (
        f'{bad}\n{stop}\n(error python "GeneratorExit")\n{bad}\n{stop}\n#<py Opaque> end\n', "", 0)


def test_exit_with_a_python_reason_to_another_scheduler_is_badarg(tmp_path: Path) -> None:
    """Refused in the sender as send refuses it (it was dropped); a def of a Python object while a
    scheduler is forked but not yet connected is refused too (it broke that scheduler's hello)."""
    prog = tmp_path / "x.lisp"
    prog.write_text('''(def th (py/import "threading"))
(def p (spawn-on 1 (fn () (receive (never nil)))))
(monitor p)
(print (try (exit p (py/call th "Event")) (catch e e)))
(exit p 'bye)
(print (receive (m m) (after 30000 'no-down)))
(print (try (def ev (py/call th "Event")) (catch e (nth e 1))))
''')
    r = lispvm("run", "--schedulers", "3", "--allow-python", str(prog))
    assert (r.stdout, r.stderr, r.returncode) == (
        '(error badarg "exit: the reason: a Python object (#<py Event>) cannot be sent to another scheduler '
        '(#<pid 0.2> is on scheduler 1)")\n(DOWN #<ref 0.1> #<pid 0.2> bye)\nbadarg\n', "", 0)
