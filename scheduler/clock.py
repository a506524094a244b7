"""Clocks for the scheduler: the real monotonic clock, and a virtual one for tests.

Owns: what "now" means to timers, receive timeouts and `(now-ms)`, and BusyWait, the short spin
before a blocking wait. Must never: sleep past a deadline it was given, or spin on a core that
another task wants (BusyWait backs off). With VirtualClock (trio's
MockClock is the model) an idle scheduler jumps straight to its next deadline instead of
sleeping, so a test of `(timer/sleep 60000)` takes no real time and always sees the same times.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

__all__ = ["BusyWait", "MonotonicClock", "VirtualClock"]


class BusyWait:
    """Polling without sleeping for a short while before a blocking wait, where an answer is
    expected sooner than a sleeping process wakes up (a reply from another scheduler, or a small
    GPU dispatch's answer; docs/performance.md, "Messages between OS processes"). BEAM's
    schedulers busy-wait the same way before they sleep.

    Between polls the core is yielded (sched_yield): without it a scheduler and the device
    process spinning at once kept PoCL's worker threads off a 2-core machine's cores. A yield
    that took long means another task wanted this core: on a loaded machine each spin then cost
    a whole time slice of that task (docs/gpu.md, "Waiting for an answer without sleeping"), so
    the spinning stops there and stays off for a while, twice as long each time it happens again
    in a row."""

    SLOW_YIELD = 0.0005  # seconds: a sched_yield this long gave the core to another task
    FIRST_BACKOFF = 0.01  # seconds without spinning after the first such yield...
    MAX_BACKOFF = 1.0  # ...doubling up to this while the machine stays busy

    def __init__(self, limit: float) -> None:
        self.limit = limit  # the longest spin, in seconds
        self.off_until = 0.0  # perf_counter time before which spin() does not spin
        self.backoff = self.FIRST_BACKOFF

    def spin(self, poll: Callable[[], bool], limit: float | None = None) -> bool:
        """Call `poll` until it returns True (then True), for up to `limit` seconds (at most
        self.limit); False at once while backing off."""
        t = time.perf_counter()
        if t < self.off_until or (limit is not None and limit <= 0):
            return False
        end = t + (self.limit if limit is None else min(limit, self.limit))
        while True:
            if poll():
                self.backoff = self.FIRST_BACKOFF
                return True
            t = time.perf_counter()
            if t >= end:
                self.backoff = self.FIRST_BACKOFF
                return False
            os.sched_yield()
            now = time.perf_counter()
            if now - t > self.SLOW_YIELD:
                self.off_until = now + self.backoff
                self.backoff = min(self.backoff * 2, self.MAX_BACKOFF)
                return False


class MonotonicClock:
    """Real time: CLOCK_MONOTONIC in milliseconds (comparable across the node's OS processes)."""

    virtual = False

    def now_ms(self) -> float:
        return time.monotonic() * 1000.0

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class VirtualClock:
    """Time that moves only when the scheduler would sleep: it jumps to the next deadline."""

    virtual = True

    def __init__(self, start_ms: float = 0.0) -> None:
        self.now = start_ms  # the current virtual time in ms

    def now_ms(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.now += seconds * 1000.0
