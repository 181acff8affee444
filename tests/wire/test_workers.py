"""The worker pool (spfpolicy.wire.workers): threads on demand, bounded, gone when closed."""

from __future__ import annotations

import threading

import pytest

from spfpolicy.wire.workers import WorkerPool

pytestmark = pytest.mark.unit
WAIT = 10.0  # seconds any step may take before the test calls it stuck


def test_jobs_run_at_once_each_on_a_worker_of_its_own_while_the_others_wait() -> None:
    pool = WorkerPool(limit=8, name="test-worker")
    release = threading.Event()
    started = threading.Semaphore(0)
    names: list[str] = []

    def job() -> None:
        names.append(threading.current_thread().name)
        started.release()
        release.wait(WAIT)

    for _ in range(5):
        pool.submit(job)
    for _ in range(5):
        assert started.acquire(timeout=WAIT)  # none queued behind another: all five run
    assert len(set(names)) == 5
    release.set()
    pool.close(WAIT)
    assert not [t for t in threading.enumerate() if t.name.startswith("test-worker")]


def test_the_limit_bounds_the_threads_and_the_rest_wait_for_a_free_one() -> None:
    pool = WorkerPool(limit=2, name="test-worker")
    release = threading.Event()
    finished = threading.Semaphore(0)

    def job() -> None:
        release.wait(WAIT)
        finished.release()

    for _ in range(4):
        pool.submit(job)
    release.set()
    for _ in range(4):
        assert finished.acquire(timeout=WAIT)  # the two waiting jobs ran on freed workers
    assert len([t for t in threading.enumerate() if t.name.startswith("test-worker-")]) <= 2
    pool.close(WAIT)
