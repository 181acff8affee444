"""The event loop's wake-up pipe: any thread can make the I/O thread look at its queues now."""

from __future__ import annotations

import contextlib
import os
import threading


class Waker:
    """A non-blocking self-pipe: wake() from any thread, fileno() in the selector."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def fileno(self) -> int:
        """The end the selector watches: readable after wake()."""
        return self._read

    def wake(self) -> None:
        """Make the reading end readable (any thread; after close(), nothing)."""
        # Under the lock: a worker finishing after the loop has closed the pipe must not write
        # to a descriptor number the kernel may have given to another file since.
        with self._lock, contextlib.suppress(BlockingIOError):  # a full pipe is readable
            if self._write != -1:
                os.write(self._write, b"x")

    def drain(self) -> None:
        """Read what wake() wrote, so the selector waits again (the I/O thread)."""
        with contextlib.suppress(BlockingIOError):
            os.read(self._read, 4096)

    def close(self) -> None:
        """Close both ends; later wake() calls do nothing."""
        with self._lock:
            os.close(self._read)
            os.close(self._write)
            self._read, self._write = -1, -1
