"""Shared-memory segments between a scheduler OS process and the device process.

Owns: float32 arrays of device_wire.SHM_MIN bytes or more that never cross the socket: unnamed
memfd files mapped by both sides (class Shm), numbered by the client and reused (class
Segments, one per connection on each side): the client allocates them and keeps a bounded free
list, the device maps each the first time its fd arrives and keeps the mapping until told to
forget it.

Must never: leave a file behind (memfds have no name, whatever way the processes end), hand
out a segment that a request in flight still holds (the pending request keeps its arrays
alive), or map an fd the device sent (only client-made segments are mapped by a client).
"""

from __future__ import annotations

import mmap
import os
import weakref
from typing import Any

__all__ = ["Shm", "Segments", "shm_of"]


class Shm(mmap.mmap):
    """A shared mapping of a memfd that keeps the fd, so the memory can be passed on (SCM_RIGHTS)
    without a copy. The fd is closed when the mapping is collected; an unnamed memfd leaves
    nothing behind in /dev/shm, whatever way the processes end."""

    fd: int
    seg_id: int

    @classmethod
    def create(cls, nbytes: int) -> Shm:
        """A new zero-filled shared mapping of `nbytes` bytes."""
        fd = os.memfd_create("lispvm-f32", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, nbytes)
            return cls.adopt(fd, nbytes)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def adopt(cls, fd: int, nbytes: int, keep_fd: bool = True) -> Shm:
        """Map a memfd. MAP_POPULATE: one walk of the page table instead of one fault per page
        (4096 faults for 16 MiB). With keep_fd the mapping owns `fd` (the client passes it on);
        without, `fd` is closed now (the device never passes a segment on; the mapping holds
        its own duplicate)."""
        m = cls(fd, nbytes, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))
        if keep_fd:
            m.fd = fd
            weakref.finalize(m, os.close, fd)
        else:
            m.fd = -1
            os.close(fd)
        return m


def shm_of(arr: Any) -> Shm | None:
    """The Shm an array is a whole view of, if any: the end of its chain of bases (np.frombuffer
    wraps a Shm in a memoryview; a decoded array wraps the array it was read from)."""
    base = arr
    for _ in range(8):  # a chain is two or three long; anything longer is not ours
        base = base.obj if base.__class__ is memoryview else getattr(base, "base", None)
        if base is None:
            return None
        if base.__class__ is Shm:
            return base if len(base) == arr.nbytes else None
    return None


class Segments:
    """The shared-memory segments of one connection, numbered by the client.

    Fresh shared pages are expensive (docs/performance.md, "The device process"), so a segment
    is mapped once on each side and reused: the client allocates one per large input it must
    copy and one per large result, the device maps each the first time its fd arrives and keeps
    it, and a result array freed by the program puts its segment back on the client's free
    list. A segment is never reused while a request that holds it is outstanding: the pending
    request keeps its arrays alive."""

    KEEP_FREE = 8  # free segments kept in all (the most recently freed)...
    KEEP_FREE_BYTES = 256 << 20  # ...and at most this many bytes of them; the rest are unmapped

    def __init__(self) -> None:
        self.maps: dict[int, Shm] = {}
        self.live: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # id -> array in use
        self.free: dict[int, int] = {}  # id -> bytes, oldest freed first (client)
        self.free_bytes = 0
        self.sent: set[int] = set()  # ids whose fd the device has (client)
        self.forget: list[int] = []  # ids dropped since the last request, for the device (client)
        self.next_id = 0

    def alloc(self, nbytes: int) -> Any:
        """A float32 array over a free or new segment of `nbytes` (client side)."""
        import numpy as np

        sid = next((i for i in reversed(self.free) if self.free[i] == nbytes), None)
        if sid is not None:
            del self.free[sid]
            self.free_bytes -= nbytes
        else:
            self.next_id += 1
            sid = self.next_id
            shm = self.maps[sid] = Shm.create(nbytes)
            shm.seg_id = sid
        view = np.frombuffer(self.maps[sid], dtype=np.float32)
        self.live[sid] = view
        weakref.finalize(view, self._release, sid)
        return view

    def _release(self, sid: int) -> None:
        shm = self.maps.get(sid)
        if shm is None:
            return
        self.free[sid] = len(shm)
        self.free_bytes += len(shm)
        while len(self.free) > self.KEEP_FREE or self.free_bytes > self.KEEP_FREE_BYTES:
            old = next(iter(self.free))  # the one freed longest ago
            self.free_bytes -= self.free.pop(old)
            del self.maps[old]  # unmapped, and its fd closed, once collected
            if old in self.sent:
                self.sent.discard(old)
                self.forget.append(old)

    def resolve(self, sid: int, nbytes: int, fd: int | None) -> Any:
        """The array a received segment reference names: on the client the array it allocated;
        on the device its mapping of the segment (made when the fd arrives)."""
        import numpy as np

        if fd is not None:
            try:
                shm = self.maps[sid] = Shm.adopt(fd, nbytes, keep_fd=False)
            except BaseException:
                os.close(fd)
                raise
            shm.seg_id = sid
        view = self.live.get(sid)
        if view is not None:
            return view
        return np.frombuffer(self.maps[sid], dtype=np.float32)

    def drop(self, ids: list[int]) -> None:
        """The client unmapped these (device side)."""
        for sid in ids:
            self.maps.pop(sid, None)

    def close(self) -> None:
        """Let go of every segment: each is unmapped, and its fd closed, when the last array
        over it is collected."""
        self.maps.clear()
        self.free.clear()
        self.free_bytes = 0
        self.device_lost()

    def device_lost(self) -> None:
        """A new device process has none of our fds."""
        self.sent.clear()
        self.forget.clear()
