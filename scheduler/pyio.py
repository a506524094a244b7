"""py/call-async (docs/python.md): a Python call run in the scheduler's I/O thread pool, its result
sent to the caller as a message.

Owns: the io operation "py/call-async" (scheduler/io.py finds it here by its `py/` prefix): the
caller gets its ref at once and goes on; a pool thread makes the call; back in the scheduler's
loop the result (converted by vm/python.py) or the error is delivered as (py REF value) or
(py-error REF (error python "TYPE: message")). While a call is pending its caller is pinned to
this scheduler (it owns the pending call, scheduler/balance.py's `pinned`) and the scheduler is
not idle (the call `wakes`), so a receive waiting for the answer is not a deadlock.

Must never: run Lisp code or touch a process from a pool thread (only the call itself runs
there), or deliver to a process that ended (its pending calls are dropped: the call still runs
to its end, Python cannot be interrupted, and its result is thrown away).
"""

from __future__ import annotations

from typing import Any

from ..vm.errors import LispError
from ..vm.process import Process
from ..vm.python import python_error, to_lisp
from ..vm.values import from_list, intern
from .io import IoService, io_op

__all__ = ["PendingCall"]

PY, PY_ERROR = intern("py"), intern("py-error")


class PendingCall:
    """A call in the pool for a process of this scheduler: an owned resource (so the process
    stays here and the scheduler knows an answer will come) until it is answered or the process
    ends."""

    __slots__ = ("io", "proc", "ref", "closed")
    wakes = True  # an answer will arrive: the scheduler is not deadlocked while it waits

    def __init__(self, io: IoService, proc: Process, ref: Any) -> None:
        self.io, self.proc, self.ref, self.closed = io, proc, ref, False

    def close(self) -> None:
        """The caller ended: its answer is dropped when it comes."""
        self.closed = True

    def __repr__(self) -> str:
        return f"#<py-call {self.ref!r}>"


@io_op("py/call-async")
def _op_call_async(svc: IoService, proc: Process, args: tuple) -> None:
    ref, fn, pyargs = args
    pending = PendingCall(svc, proc, ref)
    svc.own(proc, pending)
    svc.complete(proc, ref)  # the caller goes on at once with its ref

    def job() -> None:  # in a pool thread: only the Python call
        try:
            result: tuple = (True, fn(*pyargs))
        except BaseException as e:  # noqa: BLE001 - every failure of the call is the caller's error
            result = (False, e)
        svc.call_soon_threadsafe(lambda: _answer(pending, result))

    svc.submit_job(job)


def _answer(pending: PendingCall, result: tuple) -> None:
    """In the scheduler's loop: convert the result and deliver it, unless the caller ended."""
    if pending.closed:
        return
    svc, proc = pending.io, pending.proc
    svc.disown(proc, pending)
    ok, value = result
    try:
        if not ok:
            raise python_error(value)
        msg = from_list([PY, pending.ref, to_lisp(value, 0, "py/call-async")])
    except LispError as e:  # the call's exception, or a result past the VM's limits
        msg = from_list([PY_ERROR, pending.ref, e.value])
    svc.sched.deliver(proc, msg)
