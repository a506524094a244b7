"""Clocks for the scheduler: the real monotonic clock, and a virtual one for tests.

Owns: what "now" means to timers, receive timeouts and `(now-ms)`. With VirtualClock (trio's
MockClock is the model) an idle scheduler jumps straight to its next deadline instead of
sleeping, so a test of `(timer/sleep 60000)` takes no real time and always sees the same times.
"""

from __future__ import annotations

import time

__all__ = ["MonotonicClock", "VirtualClock"]


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
