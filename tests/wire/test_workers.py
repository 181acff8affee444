"""The worker pool (spfpolicy.wire.workers): threads on demand, started off the caller's thread."""

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


def test_workers_are_started_by_the_spawner_not_by_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    starters: list[str] = []
    real_start = threading.Thread.start

    def recording_start(thread: threading.Thread) -> None:
        if thread.name.startswith("test-worker-") and not thread.name.endswith("spawner"):
            starters.append(threading.current_thread().name)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", recording_start)
    pool = WorkerPool(limit=4, name="test-worker")
    done = threading.Semaphore(0)
    for _ in range(3):
        pool.submit(done.release)
    for _ in range(3):
        assert done.acquire(timeout=WAIT)
    pool.close(WAIT)
    assert starters
    assert set(starters) == {"test-worker-spawner"}


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
    workers = [t for t in threading.enumerate() if t.name.startswith("test-worker-")]
    assert len([t for t in workers if not t.name.endswith("spawner")]) <= 2
    pool.close(WAIT)
