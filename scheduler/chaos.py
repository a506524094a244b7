"""Chaos mode: LISPVM_CHAOS=SEED makes the schedulers take random, seeded decisions at safe points.

Owns: the seeded random choices a scheduler takes when chaos is on, and nothing else. Must
never: change what a correct program prints, or cost anything in the VM loop. When
LISPVM_CHAOS is unset, `make` returns None and every caller tests `is not None` once per slice,
flush or new socket (never inside the VM loop), so chaos costs nothing when off.

The choices (docs/processes.md, "Chaos mode"): shorter budgets (early preemption), moving a
runnable process to another scheduler after a pass over the run queue, writing a link's bytes
in small pieces and leaving some of them for the next wake-up, and socket buffers of a few KB.
Each scheduler draws from its own random.Random seeded with (SEED, scheduler number), so a
seed gives each scheduler the same sequence of choices on every run.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # random and socket are imported when chaos is on (Chaos), not by every start
    import socket

__all__ = ["ENV", "Chaos", "make", "seed"]

ENV = "LISPVM_CHAOS"


def seed() -> int | None:
    """The chaos seed from the environment, or None when chaos is off; ValueError if it is not
    an integer (the runner turns that into one line and status 2)."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return None
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(f"{ENV} must be an integer seed, not {text!r}") from None


class Chaos:
    """One scheduler's seeded choices."""

    __slots__ = ("seed", "rng")

    def __init__(self, seed_: int, sid: int) -> None:
        import random

        self.seed = seed_  # what LISPVM_CHAOS said, repeated in the failure line
        self.rng = random.Random(seed_ * 1000003 + sid)  # one stream per scheduler

    def budget(self, budget: int) -> int:
        """The budget of the next slice: usually shorter than the user's, down to 1 reduction."""
        r = self.rng.random()
        if r < 0.5:
            return max(1, self.rng.randint(1, max(1, budget // 8)))
        if r < 0.75:
            return max(1, self.rng.randint(1, budget))
        return budget

    def migrate(self) -> bool:
        """After a pass over the run queue: move a runnable process elsewhere now?"""
        return self.rng.random() < 0.2

    def pick(self, n: int) -> int:
        """A random index below n."""
        return self.rng.randrange(n)

    def piece(self, left: int) -> int:
        """How many of `left` unsent bytes to hand to one send()."""
        return min(left, self.rng.choice((1, 7, 64, 512, 4096, 65536)))

    def pause(self) -> bool:
        """Leave a link's remaining bytes for the next wake-up (a delayed flush)?"""
        return self.rng.random() < 0.25

    def shrink(self, sock: socket.socket) -> None:
        """Give a new socket buffers of a few KB, so that writes fill them and must wait."""
        import socket

        size = self.rng.choice((2048, 4096, 8192))
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, size)
            except OSError:
                pass  # a platform that refuses: chaos only loses this one choice


def make(sid: int) -> Chaos | None:
    """Scheduler `sid`'s chaos, or None when LISPVM_CHAOS is unset."""
    s = seed()
    return None if s is None else Chaos(s, sid)
