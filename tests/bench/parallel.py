"""Run the load driver in one or more processes, in step: connect and warm up, then measure.

The runner (this process) waits until every driver process has connected (and warmed up), runs
its own `before` hook (read the contender's CPU, start sampling its memory), lets them all go at
once, waits for their results, runs `after` (read CPU and memory again, while the connections
are still open: policyd-spf's processes live only as long as them), then lets them close.
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from typing import Any

from tests.bench.load import Driver, Limit, Messages, PhaseStats
from tests.bench.summary import Summary, summarise

PHASE_MARGIN = 30.0  # seconds a phase may overrun its limit (reply timeout aside) before abort
JOIN_TIMEOUT = 5.0
NO_WARMUP = Limit(0, 0.0)


class LoadError(RuntimeError):
    """A driver process failed; the message has its traceback."""


@dataclass(frozen=True)
class LoadPlan:
    """What to send where, over how many connections and driver processes."""

    address: tuple[str, int]
    connections: int
    processes: int
    messages: Messages
    limit: Limit
    warmup: Messages = ()
    warmup_limit: Limit = NO_WARMUP
    reply_timeout: float = 30.0
    connect_early: bool = True  # connect (and warm up) before the clock starts

    def share(self, index: int) -> tuple[int, range, Limit]:
        """Driver `index`'s connections, message numbers and limit."""
        connections = self.connections // self.processes
        connections += 1 if index < self.connections % self.processes else 0
        numbers = range(index, len(self.messages), self.processes)
        requests = round(self.limit.requests * connections / self.connections)
        return connections, numbers, Limit(requests, self.limit.seconds)


@dataclass(frozen=True)
class LoadResult:
    """The measured phase over all driver processes, and the raw stats behind it."""

    started: float
    measured: Summary
    phases: tuple[PhaseStats, ...]
    warmup: Summary | None


def run_load(plan: LoadPlan, before: Callable[[], None], after: Callable[[], None]) -> LoadResult:
    """Drive the load of `plan`; `before` and `after` run around the measured phase."""
    context = multiprocessing.get_context("fork")  # the messages are shared, not pickled
    go, done = context.Event(), context.Event()
    results: multiprocessing.Queue[tuple[str, int, Any]] = context.Queue()
    children = [
        context.Process(
            target=_drive, args=(plan, index, go, done, results), name=f"load-driver-{index}"
        )
        for index in range(plan.processes)
    ]
    for child in children:
        child.start()
    try:
        warmups = _collect(results, "ready", children, _warmup_timeout(plan))
        before()
        started = time.monotonic()
        go.set()
        phase_timeout = plan.limit.seconds + plan.reply_timeout + PHASE_MARGIN
        measured = _collect(results, "measured", children, phase_timeout)
        after()
        done.set()
    finally:
        _finish(children, done)
    warm = [stats for stats in warmups if stats is not None]
    return LoadResult(
        started=started,
        measured=summarise(measured, started),
        phases=tuple(measured),
        warmup=summarise(warm, min(s.started for s in warm)) if warm else None,
    )


def _warmup_timeout(plan: LoadPlan) -> float:
    return plan.warmup_limit.seconds + plan.reply_timeout + PHASE_MARGIN


def _drive(
    plan: LoadPlan, index: int, go: Event, done: Event, results: multiprocessing.Queue[Any]
) -> None:
    """One driver process: connect, warm up, report ready; on `go` measure; on `done` close."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the runner's to handle
    try:
        connections, numbers, limit = plan.share(index)
        driver = Driver(plan.address, connections, plan.reply_timeout)
        warm = None
        if plan.connect_early:
            driver.connect()
            if plan.warmup:
                warm = driver.run(plan.warmup[index :: plan.processes], _warmup_share(plan))
        results.put(("ready", index, warm))
        if not go.wait(_warmup_timeout(plan) + 60):
            return
        messages = [plan.messages[number] for number in numbers]
        results.put(("measured", index, driver.run(messages, limit, numbers)))
        done.wait(plan.reply_timeout + PHASE_MARGIN)
        driver.close()
    except Exception:
        results.put(("error", index, traceback.format_exc()))


def _warmup_share(plan: LoadPlan) -> Limit:
    requests = plan.warmup_limit.requests // plan.processes
    return Limit(requests, plan.warmup_limit.seconds)


def _collect(
    results: multiprocessing.Queue[tuple[str, int, Any]],
    stage: str,
    children: Sequence[multiprocessing.process.BaseProcess],
    timeout: float,
) -> list[Any]:
    """One `stage` message from every driver process, in process order; LoadError otherwise."""
    collected: dict[int, Any] = {}
    deadline = time.monotonic() + timeout
    while len(collected) < len(children):
        try:
            kind, index, payload = results.get(timeout=1.0)
        except queue.Empty:
            if time.monotonic() > deadline:
                problem = f"driver processes gave no {stage!r} within {timeout:g} s"
                raise LoadError(problem) from None
            dead = [child.name for child in children if child.exitcode not in (None, 0)]
            if dead:
                raise LoadError(f"driver processes died: {', '.join(dead)}") from None
            continue
        if kind == "error":
            raise LoadError(f"driver process {index} failed:\n{payload}")
        collected[index] = payload
    return [collected[index] for index in range(len(children))]


def _finish(children: Sequence[multiprocessing.process.BaseProcess], done: Event) -> None:
    """Let the driver processes close their connections and exit; terminate any that hang."""
    done.set()
    for child in children:
        child.join(JOIN_TIMEOUT)
        if child.is_alive():
            child.terminate()  # SIGTERM to that pid only
            child.join(JOIN_TIMEOUT)
