"""The poller: the file descriptors a node's scheduler waits on, and what to call when one is ready.

Owns: one select.poll per scheduler OS process, the reader and writer callbacks registered on
it (the device client's socket, the cluster's listener and links, and next the program's files
and ports), and the wait itself. Must never: interpret what it calls back, or wait anywhere but
in `poll`.

Every wait of a scheduler's OS process on a descriptor goes through here: the loop's poll phase
(kernel.Scheduler.loop, through the node's policy) and the node's own short waits (the idle
grace, back-pressure, draining, the hub's shutdown). select.poll rather than select.select,
which refuses descriptors from FD_SETSIZE (1024) on; rather than the selectors module, which
costs more per wait.
"""

from __future__ import annotations

import select
from collections.abc import Callable

__all__ = ["Poller"]

_READABLE = select.POLLIN | select.POLLHUP | select.POLLERR | select.POLLNVAL


class Poller:
    """Reader and writer callbacks by file descriptor, on one select.poll."""

    __slots__ = ("_poll", "fds", "readers", "writers")

    def __init__(self) -> None:
        self._poll = select.poll()
        self.fds: dict[int, int] = {}  # fd -> the events it is polled for (empty: nothing to poll)
        self.readers: dict[int, Callable[[], None]] = {}  # fd -> called when it is readable (or hung up)
        self.writers: dict[int, Callable[[], None]] = {}  # fd -> called when it is writable

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        """Call `callback()` whenever `fd` is readable, has hung up or failed."""
        self.readers[fd] = callback
        self._update(fd)

    def add_writer(self, fd: int, callback: Callable[[], None]) -> None:
        """Call `callback()` whenever `fd` is writable (register only while there is something to
        write: an idle socket is always writable)."""
        self.writers[fd] = callback
        self._update(fd)

    def remove_reader(self, fd: int) -> None:
        if self.readers.pop(fd, None) is not None:
            self._update(fd)

    def remove_writer(self, fd: int) -> None:
        if self.writers.pop(fd, None) is not None:
            self._update(fd)

    def remove(self, fd: int) -> None:
        """Forget `fd` altogether (before it is closed)."""
        self.readers.pop(fd, None)
        self.writers.pop(fd, None)
        self._update(fd)

    def _update(self, fd: int) -> None:
        events = (select.POLLIN if fd in self.readers else 0) | (select.POLLOUT if fd in self.writers else 0)
        if events == self.fds.get(fd, 0):
            return
        if events:
            self.fds[fd] = events
            self._poll.register(fd, events)  # (registering again replaces the events)
        else:
            del self.fds[fd]
            self._poll.unregister(fd)

    def __len__(self) -> int:
        return len(self.fds)

    def poll(self, timeout: float | None) -> bool:
        """Wait up to `timeout` seconds (None: until a descriptor is ready) and call the callbacks
        of the ready ones, a writer before the reader of the same fd; whether any descriptor was
        readable (only writable is not input)."""
        try:
            ready = self._poll.poll(None if timeout is None else timeout * 1000.0)
        except InterruptedError:  # pragma: no cover - PEP 475 retries poll
            return False
        got = False
        for fd, revents in ready:
            if revents & select.POLLOUT:
                cb = self.writers.get(fd)
                if cb is not None:
                    cb()
            if revents & _READABLE:
                cb = self.readers.get(fd)
                if cb is not None:
                    cb()
                    got = True
        return got
