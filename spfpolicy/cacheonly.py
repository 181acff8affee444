"""Cache-only attempts: answer a request from the caches alone, or give up without a trace.

The server's I/O thread first tries every request inside cache_only(). There the shared DNS
cache raises NotCached instead of asking upstream or waiting for another thread's question, so
the attempt never blocks; the request then goes to a worker, which decides it from the start.

Observer calls made inside an attempt are held back, so that a request given up on and decided
again is counted once: they are made when the attempt succeeds, or, after NotCached, for the
steps whose work was kept (all_or_nothing() drops those of a step that was given up).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from spfpolicy.model import SpfPolicyError

Report = Callable[[], None]


class NotCached(SpfPolicyError):  # noqa: N818 - a signal, not an error condition
    """A cache-only attempt needed an answer the cache does not hold."""


@dataclass
class Attempt:
    """One cache-only attempt: whether it missed, and the observer calls it held back."""

    missed: bool = False
    reports: list[Report] = field(default_factory=list)

    def miss(self, what: str) -> NotCached:
        """Record a miss; the exception to raise for it."""
        self.missed = True
        return NotCached(what)

    def replay(self) -> None:
        """Make the held-back observer calls."""
        reports, self.reports = self.reports, []
        for report in reports:
            report()


_current: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar(
    "spfpolicy_cache_only", default=None
)


@contextlib.contextmanager
def cache_only() -> Iterator[Attempt]:
    """Run the block as a cache-only attempt (in this thread or context only)."""
    attempt = Attempt()
    token = _current.set(attempt)
    try:
        yield attempt
    finally:
        _current.reset(token)


def current() -> Attempt | None:
    """The attempt in progress, or None when the network may be used."""
    return _current.get()


def observe(report: Report) -> None:
    """Make an observer call now, or hold it back inside a cache-only attempt."""
    attempt = _current.get()
    if attempt is None:
        report()
    else:
        attempt.reports.append(report)


@contextlib.contextmanager
def all_or_nothing() -> Iterator[None]:
    """A step whose held-back observer calls are dropped if it is given up (NotCached)."""
    attempt = _current.get()
    mark = len(attempt.reports) if attempt is not None else 0
    try:
        yield
    except NotCached:
        if attempt is not None:
            del attempt.reports[mark:]
        raise
