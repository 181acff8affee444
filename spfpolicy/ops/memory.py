"""Giving memory back to the system once a reload's old configuration is gone.

A reload replaces the service, its caches and sometimes the resolver with its DNS cache; the
old ones are freed when the last request begun under them is answered. CPython then holds the
freed space in its own arenas and in the C heap, so the daemon's RSS keeps the high-water mark
of two full sets of caches. A full collection frees what cycles keep alive (tracebacks, frames)
and glibc's malloc_trim() returns the heap's free pages: RSS follows what is live again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


_TRIM = _malloc_trim()


def release_free_memory() -> None:
    """Collect garbage and give the C heap's free pages back to the system."""
    collected = gc.collect()
    trimmed = bool(_TRIM(0)) if _TRIM is not None else False
    log.debug(
        "released memory after a reload: %d objects collected, heap trimmed: %s", collected, trimmed
    )


class DelayedRelease:
    """release_free_memory() a delay after each reload, and at least every delay seconds
    while reloads keep coming (a reload every few seconds must not put it off for ever)."""

    def __init__(
        self,
        release: Callable[[], None] = release_free_memory,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._release = release
        self._clock = clock
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._due = 0.0  # the latest reload's old configuration is gone by then

    def schedule(self, delay: float) -> None:
        """Release in delay seconds: by then requests begun under the old config are answered."""
        with self._lock:
            self._due = self._clock() + delay
            if self._timer is None:
                self._arm(delay)

    def cancel(self) -> None:
        """Drop a release not yet run (at shutdown)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _arm(self, delay: float) -> None:
        self._timer = threading.Timer(delay, self._fire)
        self._timer.name = "spfpolicy-release"
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self._release()  # what earlier reloads left is garbage by now, whatever came since
        with self._lock:
            if self._timer is None:
                return  # cancelled meanwhile
            later = self._due - self._clock()
            self._timer = None
            if later > 0:
                self._arm(later)
