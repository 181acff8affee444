"""A pool of daemon threads that grows on demand and shrinks when idle.

The server runs here the requests that must wait for DNS, so that one waiting request never
holds up another: a job never queues behind busy workers while the pool is below its limit.
Threads are daemons, so one stuck past shutdown cannot keep the process alive.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

Job = Callable[[], None]

# An idle worker ends after this long, so a burst of slow DNS leaves no crowd of threads behind.
IDLE_EXIT_SECONDS = 60.0


class WorkerPool:
    """Run jobs on up to limit threads, starting one whenever no worker is idle."""

    def __init__(self, limit: int, name: str = "spfpolicy-worker") -> None:
        self._limit = limit
        self._name = name
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._idle = 0
        self._serial = 0
        self._closed = False

    def submit(self, job: Job) -> None:
        """Run job on a worker; jobs wait only when limit workers are all busy."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is closed")
            if self._idle:
                self._idle -= 1  # that worker is spoken for
            elif len(self._threads) < self._limit:
                self._start_worker()
        self._jobs.put(job)

    def close(self, timeout: float = 0.0) -> None:
        """Let workers finish their jobs and end; wait up to timeout seconds for them."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(None)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _start_worker(self) -> None:
        self._serial += 1
        thread = threading.Thread(
            target=self._work, name=f"{self._name}-{self._serial}", daemon=True
        )
        self._threads.add(thread)
        thread.start()

    def _work(self) -> None:
        me = threading.current_thread()
        try:
            while True:
                try:
                    job = self._jobs.get(timeout=IDLE_EXIT_SECONDS)
                except queue.Empty:
                    with self._lock:
                        if self._idle:  # nobody counted on this worker: leave
                            self._idle -= 1
                            return
                    continue  # a job was promised to this worker just now
                if job is None:
                    return
                try:
                    job()
                except Exception:  # a job's bug must not kill the worker or hang its client
                    logger.exception("unexpected error in a worker")
                # An idle worker must not keep its last request (and its configuration) alive.
                job = None
                with self._lock:
                    self._idle += 1
        finally:
            with self._lock:
                self._threads.discard(me)
