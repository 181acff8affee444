"""A clock for unit tests: callable like time.monotonic, moved by hand (`clock.now += 60`)."""

from __future__ import annotations


class HandClock:
    """Reads `now`, which only the test changes."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        """The current reading."""
        return self.now
