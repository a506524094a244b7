"""Scheduler traces: structured JSON lines made by structlog, and their Chrome export.

Owns: `lispvm run --trace FILE` (the Tracer) and `lispvm trace FILE --chrome OUT.json`
(to_chrome). Must never: be called per instruction, or be imported by a run without --trace.
The scheduler calls it at slice boundaries and process events only, behind one
`if self.trace is not None`, so a run without --trace pays one test per slice and never imports
structlog (docs/tracing.md has the measurement).

Each scheduler OS process has its own Tracer: a structlog logger bound to the scheduler's number
and OS pid, whose processors add the CLOCK_MONOTONIC time stamp (the same clock in every OS
process of the machine) and render the event with structlog's JSONRenderer. Its BytesLogger
writes each line with one write on an O_APPEND descriptor, which appends a whole line
atomically, so the lines of the schedulers sharing the file never mix (and nothing is left in a
buffer when a scheduler forks or is killed); the converter sorts by time. The logger is private
to the Tracer: structlog's global configuration is left to the program that embeds lispvm.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import MutableMapping
from typing import Any

import structlog

from ..vm.process import OUTCOME_NAMES

__all__ = ["Tracer", "make_tracer", "to_chrome"]


def _monotonic_us(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: `ts`, CLOCK_MONOTONIC in microseconds (TimeStamper knows wall clocks
    only, and the schedulers' lines are ordered across OS processes by this one)."""
    event_dict["ts"] = time.monotonic_ns() / 1000.0
    return event_dict


_ENCODE = json.JSONEncoder(separators=(",", ":"), default=repr).encode


def _serialize(event_dict: Any, **dumps_kw: Any) -> bytes:
    """JSONRenderer's serializer, giving the BytesLogger its bytes: one compact encoder, made
    once (json.dumps makes one per call when it is given options). A value JSON has no form for
    (a pid, a symbol) is written as printed, as structlog's own fallback would."""
    return _ENCODE(event_dict).encode()


_PROCESSORS = [_monotonic_us, structlog.processors.JSONRenderer(serializer=_serialize)]
_BoundLogger = structlog.make_filtering_bound_logger(0)  # every level written: tracing is on


class _TraceFile:
    """The trace file as the BytesLogger writes it. A write that fails (a full disk, a file that
    takes no writes) stops this scheduler's trace with one line on standard error: the program
    goes on, its own output untouched."""

    def __init__(self, file: Any, path: str) -> None:
        self.file = file
        self.path = path
        self.failed = False

    def _guard(self, op: Any, *args: Any) -> None:
        """Run a write, flush or close of the file unless the trace has failed; the first
        OSError closes it and says so once."""
        if self.failed:
            return
        try:
            op(*args)
        except OSError as e:
            self.failed = True
            try:
                self.file.close()
            except OSError:
                pass  # its buffer holds what could not be written; it is dropped with it
            sys.stderr.write(f"lispvm: cannot write the trace {self.path}: {e.strerror or e}; tracing stopped\n")
            sys.stderr.flush()

    def write(self, data: bytes) -> None:
        self._guard(self.file.write, data)

    def flush(self) -> None:
        self._guard(self.file.flush)

    def close(self) -> None:
        self._guard(self.file.close)


class Tracer:
    """The trace of one scheduler. `path` is a file name or "-" for standard error."""

    def __init__(self, path: str, sid: int) -> None:
        self.path = path
        self.sid = sid  # the scheduler writing through this tracer
        # binary and buffered: BytesLogger writes each line and flushes it, one write per line
        self.file = _TraceFile(open(sys.stderr.fileno(), "wb", closefd=False) if path == "-" else open(path, "ab"),
                               path)
        self.log = structlog.wrap_logger(structlog.BytesLogger(self.file), processors=_PROCESSORS,
                                         wrapper_class=_BoundLogger, context_class=dict,
                                         cache_logger_on_first_use=True).bind(sched=sid, os_pid=os.getpid())
        self.closed = False

    # called by the scheduler ---------------------------------------------------------------

    def slice_in(self, sched: Any, proc: Any) -> None:
        """A process starts a slice."""
        self.log.info("slice_in", pid=proc.pid)

    def slice_out(self, sched: Any, proc: Any, outcome: int) -> None:
        """The slice ends with `outcome` (vm/process.py), after the reductions the loop counted."""
        self.log.info("slice_out", pid=proc.pid, outcome=OUTCOME_NAMES[outcome], reductions=sched.vm.used)

    def event(self, sched: Any, kind: str, pid: Any, **fields: Any) -> None:
        """Any other event: spawn, exit, send, link, monitor, timeout, migrate, gpu_*."""
        self.log.info(kind, pid=pid, **fields)

    def flush(self) -> None:
        """Write out anything buffered: nothing is, as each line is written when it is logged,
        but the schedulers call this when they go idle and before they exit."""
        if not self.closed:
            self.file.flush()

    def close(self) -> None:
        """Close the trace file (standard error stays open)."""
        if not self.closed:
            self.file.close()  # standard error's descriptor is not closed with it (closefd=False)
        self.closed = True


def make_tracer(path: str | None, sid: int) -> Tracer | None:
    """The Tracer for scheduler `sid`, or None without --trace."""
    return Tracer(path, sid) if path else None


# --- Chrome trace-event export ---------------------------------------------------------------

def _read(path: str) -> list[dict]:
    events = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                ev = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"line {n}: not JSON ({e.msg})") from None
            if not isinstance(ev, dict) or not {"event", "ts", "sched", "os_pid"} <= ev.keys():
                raise ValueError(f"line {n}: not a lispvm trace event")
            events.append(ev)
    events.sort(key=lambda e: e["ts"])
    return events


def to_chrome(trace_path: str, out_path: str) -> int:
    """Convert a trace into Chrome trace-event JSON; returns the number of events written.

    Each scheduler is a process row (pid = its OS pid), each Lisp process a track (tid), run
    slices are complete events, messages flow arrows from the send to the receiver's next
    slice, spawns, exits and timeouts instant events, migrations instant events with an arrow,
    and GPU events sit on their own "device" row.
    """
    events = _read(trace_path)
    out: list[dict] = []
    tids: dict[str, int] = {}
    named: set[tuple[int, int]] = set()
    open_slice: dict[str, dict] = {}
    pending_flows: dict[str, list[int]] = {}  # receiver pid -> flow ids waiting for its next slice
    last_sched: dict[str, tuple[int, int]] = {}  # pid -> (os pid, sched) of its last slice
    device_pid = -1
    flow = 0

    def tid_of(pid: str | None) -> int:
        key = pid or "scheduler"
        if key not in tids:
            tids[key] = len(tids) + 1
        return tids[key]

    def name_track(ev: dict, tid: int, label: str) -> None:
        if (ev["os_pid"], tid) not in named:
            named.add((ev["os_pid"], tid))
            out.append({"ph": "M", "name": "thread_name", "pid": ev["os_pid"], "tid": tid, "args": {"name": label}})

    schedulers: dict[int, int] = {}
    for ev in events:
        schedulers.setdefault(ev["os_pid"], ev["sched"])
    for os_pid, sid in schedulers.items():
        label = f"scheduler {sid} (os pid {os_pid})"
        out.append({"ph": "M", "name": "process_name", "pid": os_pid, "args": {"name": label}})
        out.append({"ph": "M", "name": "process_sort_index", "pid": os_pid, "args": {"sort_index": sid}})
    if any(e["event"].startswith("gpu_") for e in events):
        out.append({"ph": "M", "name": "process_name", "pid": device_pid, "args": {"name": "device"}})

    for ev in events:
        kind, pid, ts, opid = ev["event"], ev.get("pid"), ev["ts"], ev["os_pid"]
        tid = tid_of(pid)
        if pid:
            name_track(ev, tid, pid)
        if kind == "slice_in":
            open_slice[pid] = ev
            prev = last_sched.get(pid)
            if prev is not None and prev[0] != opid:  # it moved: an arrow from where it was
                flow += 1
                out.append({"ph": "s", "id": flow, "name": "migration", "cat": "migration", "pid": prev[0],
                            "tid": tid, "ts": ts})
                out.append({"ph": "f", "bp": "e", "id": flow, "name": "migration", "cat": "migration",
                            "pid": opid, "tid": tid, "ts": ts})
            last_sched[pid] = (opid, ev["sched"])
            for fid in pending_flows.pop(pid, ()):
                out.append({"ph": "f", "bp": "e", "id": fid, "name": "message", "cat": "message", "pid": opid,
                            "tid": tid, "ts": ts})
        elif kind == "slice_out":
            start = open_slice.pop(pid, None)
            if start is not None:
                out.append({"ph": "X", "name": "run", "cat": "slice", "pid": opid, "tid": tid, "ts": start["ts"],
                            "dur": max(ts - start["ts"], 0.1),
                            "args": {"outcome": ev.get("outcome"), "reductions": ev.get("reductions")}})
        elif kind == "send":
            flow += 1
            out.append({"ph": "s", "id": flow, "name": "message", "cat": "message", "pid": opid, "tid": tid, "ts": ts})
            pending_flows.setdefault(ev.get("to"), []).append(flow)
        elif kind.startswith("gpu_"):
            out.append({"ph": "i", "s": "t", "name": kind, "cat": "gpu", "pid": device_pid,
                        "tid": tid, "ts": ts, "args": {k: v for k, v in ev.items() if k not in ("event", "ts")}})
            name_track({"os_pid": device_pid}, tid, pid or "device")
        else:
            out.append({"ph": "i", "s": "t", "name": kind, "cat": "process", "pid": opid, "tid": tid, "ts": ts,
                        "args": {k: v for k, v in ev.items() if k not in ("event", "ts", "sched", "os_pid")}})
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump({"traceEvents": out, "displayTimeUnit": "ms"}, f)
    return len(out)
