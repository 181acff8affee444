"""The exact SPF result caches: one identity's check_host() result, and an include: target's,
reused while they cannot differ.

check_host() is a function of the client address, the sender, the HELO name and DNS. An entry
is keyed by the first three (and the identity) and lives no longer than the shortest-lived DNS
answer the evaluation used, so a cached result is the result a new evaluation would give.
The evaluator decides what may be stored: nothing that met a DNS error or a record whose macros
read anything else (RFC 7208 §7.2: %{t} is the current time), nor anything from a stale answer
([dns] serve_stale): it would outlive the outage, and the fresh answer that ends it.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from cachetools import LRUCache

from spfpolicy.model import Identity, SpfOutcome

ResultKey = tuple[Identity, str, str, str]  # identity, client address, sender, HELO name


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ExpiringCache(Generic[K, V]):
    """A thread-safe, size-bounded map whose entries each expire at their own clock time."""

    def __init__(self, size: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._cache: LRUCache[K, tuple[V, float]] = LRUCache(maxsize=size)
        self._lock = threading.Lock()
        self.clock = clock

    def __len__(self) -> int:
        """The entries held, expired ones not yet evicted included."""
        with self._lock:
            return len(self._cache)

    def get(self, key: K) -> V | None:
        """The stored value, if it has not expired."""
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                return None
            if entry[1] <= self.clock():
                del self._cache[key]
                return None
        return entry[0]

    def put(self, key: K, value: V, expires: float) -> None:
        """Store value until the clock reaches expires (an expired entry is not stored)."""
        if expires > self.clock():
            with self._lock:
                self._cache[key] = (value, expires)


# Outcomes by (identity, client, sender, helo), or by domain where no macro was met.
ResultCache = ExpiringCache[ResultKey, SpfOutcome]


IncludeKey = tuple[str, str, str]  # client address, include target, its record


def include_key(client: str, domain: str, record: str) -> IncludeKey:
    """The include: cache's key. Every evaluation fetches a record as a new string; interned,
    the thousands of entries for one provider's record share one copy."""
    return (client, domain.lower(), sys.intern(record))


@dataclass(frozen=True, slots=True)
class IncludeResult:
    """What evaluating one include: target's record gave, and what it spent."""

    result: tuple[str, int, str]  # pyspf's (result, code, text); includes use only the result
    lookups: int  # DNS-querying terms evaluated below it (RFC 7208 §4.6.4)
    void_lookups: int
    expires: float  # when the first DNS answer below it stops being valid


# An include's "none" is a permerror for the includer (RFC 7208 §5.2), so it is kept too;
# errors are exceptions and never kept.
STORABLE_INCLUDE_RESULTS = frozenset({"pass", "fail", "softfail", "neutral", "none"})
