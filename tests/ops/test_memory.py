"""Memory given back after a reload: a delay after it, and never put off by later reloads."""

from __future__ import annotations

import gc
import threading
import time

from spfpolicy.ops import memory
from spfpolicy.ops.memory import DelayedRelease


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_release_collects_garbage_that_only_cycles_keep() -> None:
    gc.disable()
    try:
        before = sum(isinstance(thing, _Cycle) for thing in gc.get_objects())
        _Cycle()
        assert sum(isinstance(thing, _Cycle) for thing in gc.get_objects()) == before + 1
        memory.release_free_memory()
        assert sum(isinstance(thing, _Cycle) for thing in gc.get_objects()) == before
    finally:
        gc.enable()


def test_a_release_runs_once_after_its_delay() -> None:
    released = threading.Event()
    calls: list[int] = []

    def release() -> None:
        calls.append(1)
        released.set()

    DelayedRelease(release).schedule(0.05)
    assert released.wait(5.0)
    assert calls == [1]


def test_a_reload_while_one_waits_gets_a_release_of_its_own_later() -> None:
    calls: list[float] = []
    second = threading.Event()

    def release() -> None:
        calls.append(time.monotonic())
        if len(calls) == 2:
            second.set()

    delayed = DelayedRelease(release)
    started = time.monotonic()
    delayed.schedule(0.05)
    delayed.schedule(0.4)  # the first reload's release is not put off by the second
    assert second.wait(5.0)
    delayed.cancel()
    assert calls[0] - started < 0.35
    assert calls[1] - started >= 0.4


def test_reloads_that_keep_coming_do_not_put_the_release_off() -> None:
    calls: list[str] = []
    delayed = DelayedRelease(lambda: calls.append("ran"))
    for _ in range(10):  # a reload every 50 ms, each asking for a release 0.2 s later
        delayed.schedule(0.2)
        threading.Event().wait(0.05)
    delayed.cancel()
    assert calls


def test_cancel_drops_the_waiting_release() -> None:
    calls: list[str] = []
    release = DelayedRelease(lambda: calls.append("ran"))
    release.schedule(0.2)
    release.cancel()
    threading.Event().wait(0.4)
    assert calls == []
