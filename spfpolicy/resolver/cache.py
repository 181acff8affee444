"""The shared TTL-aware DNS cache: size-bounded, thread-safe, one upstream query per question.

spfpolicy.resolver.stub asks the network; CachingResolver sits in front of it and is shared by
every connection; with serve_stale (RFC 8767) it keeps expired answers to stand in for failures.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cachetools import LRUCache

from spfpolicy.model import NullObserver, Observer
from spfpolicy.resolver.answers import (
    AnswerKey,
    DnsAnswer,
    DnsError,
    DnsFailure,
    DnsOutcome,
    Multiplexer,
    Resolver,
)

# A server failure or a timeout is remembered this long, so that a dead domain costs the
# requests for it one wait, not one each; short, since it may be transient (RFC 2308 §7).
FAILURE_TTL = 2.0


@dataclass(frozen=True, slots=True)
class _Entry:
    answer: DnsAnswer | None  # None when the question failed
    error: DnsError | None
    expires: float
    stale: DnsAnswer | None = None  # with an error: the expired answer it found (serve_stale)


class _Flight:
    """One upstream question in progress, which other threads asking the same may wait for,
    and prefetches be told of (callbacks, called once it has landed)."""

    __slots__ = ("callbacks", "done", "entry")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.entry: _Entry | None = None
        self.callbacks: list[Callable[[], None]] = []


class _Countdown:
    """Calls ready() once every one of count flights has landed (from any thread)."""

    __slots__ = ("left", "lock", "ready")

    def __init__(self, count: int, ready: Callable[[], None]) -> None:
        self.left = count
        self.ready = ready
        self.lock = threading.Lock()

    def landed(self) -> None:
        with self.lock:
            self.left -= 1
            last = self.left == 0
        if last:
            self.ready()


@dataclass(frozen=True)
class CacheLimits:
    """How long answers may live in the cache ([dns] in the configuration)."""

    size: int = 100_000
    min_ttl: float = 0.0
    max_ttl: float = 86_400.0
    negative_ttl_max: float = 3_600.0
    # RFC 8767: seconds past its expiry an answer may stand in for a failed refresh; 0: never.
    serve_stale: float = 0.0


class CachingResolver:
    """A thread-safe, size-bounded cache in front of another Resolver.

    Answers live for their TTL clamped to the limits, negative answers for the SOA minimum
    (RFC 2308 §5) up to negative_ttl_max, failures for FAILURE_TTL; least recently used entries
    go first when it is full. Concurrent identical questions share one upstream query, whether
    a thread waits for it (query) or it was asked ahead (prefetch, through multiplexer).

    Serve-stale (RFC 8767): an expired answer is asked again like any other; only when that
    fails (timeout, SERVFAIL, REFUSED, an unusable reply; never NXDOMAIN or NODATA) is it served,
    marked stale, until serve_stale past its own expiry. The failure keeps it for FAILURE_TTL,
    served meanwhile without a wait; it is never made fresh, and a fresh answer replaces it.
    """

    def __init__(
        self,
        upstream: Resolver,
        limits: CacheLimits | None = None,
        *,
        multiplexer: Multiplexer | None = None,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.upstream = upstream
        self.multiplexer = multiplexer
        self.limits = limits or CacheLimits()
        self.observer: Observer = observer or NullObserver()
        self.clock = clock
        # Plain LRU with the expiry checked on lookup: cheaper per hit than a TTL-ordered cache,
        # and a stale entry holds no more memory than the bound allows anyway.
        self._cache: LRUCache[tuple[str, str], _Entry] = LRUCache(maxsize=self.limits.size)
        self._in_flight: dict[tuple[str, str], _Flight] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """The entries held, expired ones not yet evicted included."""
        with self._lock:
            return len(self._cache)

    def query(self, name: str, rdtype: str, deadline: float) -> DnsAnswer:
        """Answer from the cache, from a query already in flight, or from upstream."""
        key = (name.lower().rstrip("."), rdtype)
        while True:
            with self._lock:
                entry, stale = self._lookup(key)
                flight = None if entry is not None else self._in_flight.get(key)
                leader = entry is None and flight is None
                if leader:
                    flight = self._in_flight[key] = _Flight()
            if entry is not None:
                self.observer.dns_cache_lookup(hit=True)
                return self._unpack(key, entry)
            self.observer.dns_cache_lookup(hit=False)
            assert flight is not None
            if leader:
                return self._unpack(key, self._fetch(key, name, rdtype, deadline, flight))
            try:
                entry = self._wait(flight, deadline)
            except DnsError as error:
                # This request's budget ran out before upstream answered: that failed too.
                return self._unpack(key, _Entry(None, error, 0.0, stale))
            if entry is not None:
                return self._unpack(key, entry)
            # The leader ran out of its own budget; this request may still have time: ask again.

    def cached(self, name: str, rdtype: str) -> DnsAnswer | None:
        """The cached, unexpired answer, or None; never asks upstream nor waits for a flight.

        Not counted as a cache lookup: whoever uses the answer counts it (dns_cache_lookup).
        """
        key = (name.lower().rstrip("."), rdtype)
        with self._lock:
            entry = self._cache.get(key)
        if entry is None or entry.answer is None or entry.expires <= self.clock():
            return None
        return entry.answer

    def stale(self, name: str, rdtype: str) -> DnsAnswer | None:
        """The expired answer kept for serve_stale (see AnswerCache.stale), else None."""
        with self._lock:
            entry = self._cache.get((name.lower().rstrip("."), rdtype))
        if entry is None or (entry.error is None and entry.expires > self.clock()):
            return None
        return self._servable(entry.answer or entry.stale, self.clock())

    def prefetch(
        self, keys: Iterable[AnswerKey], deadline: float, ready: Callable[[], None]
    ) -> bool:
        """Ask for these questions without waiting; True when ready() will be called (on some
        other thread, or before this returns) once every one of them has landed in the cache.

        False when there is nothing to wait for: no multiplexer, every answer already cached,
        or one of them a cached failure, which only the blocking path reports as it should.
        """
        if self.multiplexer is None:
            return False
        now = self.clock()
        started: list[tuple[AnswerKey, _Flight]] = []
        countdown = _Countdown(0, ready)
        with self._lock:
            wanted: list[AnswerKey] = []
            for key in dict.fromkeys(keys):
                entry = self._cache.get(key)
                if entry is None or entry.expires <= now:
                    wanted.append(key)
                elif entry.error is not None:
                    return False
            for key in wanted:
                flight = self._in_flight.get(key)
                if flight is None:
                    flight = self._in_flight[key] = _Flight()
                    started.append((key, flight))
                flight.callbacks.append(countdown.landed)
                countdown.left += 1
        if not countdown.left:
            return False
        for _ in wanted:
            self.observer.dns_cache_lookup(hit=False)
        for key, flight in started:
            self.multiplexer.ask(*key, deadline, _Landing(self, key, flight))
        return True

    def _lookup(self, key: AnswerKey) -> tuple[_Entry | None, DnsAnswer | None]:
        """With the lock held: the entry in force, or None and the expired answer that may
        stand in if asking again fails; an expired entry without one is dropped."""
        entry = self._cache.get(key)
        if entry is None:
            return None, None
        now = self.clock()
        if entry.expires > now:
            return entry, None
        stale = self._servable(entry.answer or entry.stale, now)
        if stale is None:
            del self._cache[key]
        return None, stale

    def _servable(self, answer: DnsAnswer | None, now: float) -> DnsAnswer | None:
        """answer, while serve_stale lets it stand in for a failed refresh."""
        if answer is None or now >= answer.expires + self.limits.serve_stale:
            return None
        return answer

    def _unpack(self, key: AnswerKey, entry: _Entry) -> DnsAnswer:
        """The entry's answer; for a failure, its stale answer while allowed, else the error."""
        if entry.error is None:
            assert entry.answer is not None
            return entry.answer
        stale = self._servable(entry.stale, self.clock())
        if stale is None:
            # A new exception each time: raising the cached one would grow its traceback by
            # every asker's frames, keeping their requests (and a replaced config) alive.
            raise _bare(entry.error)
        self.observer.dns_stale_answer(key[1])
        return dataclasses.replace(stale, stale=True)

    def _wait(self, flight: _Flight, deadline: float) -> _Entry | None:
        """The flight's outcome, or None when it says nothing about the name."""
        if not flight.done.wait(timeout=max(0.0, deadline - self.clock())):
            raise DnsError(
                DnsFailure.TIMEOUT, "the request's time budget is used up", cacheable=False
            )
        entry = flight.entry
        if entry is not None and entry.error is not None and not entry.error.cacheable:
            return None
        return entry

    def _fetch(
        self, key: tuple[str, str], name: str, rdtype: str, deadline: float, flight: _Flight
    ) -> _Entry:
        """Ask upstream as the leader, cache what may be cached, wake the followers."""
        try:
            answer = self.upstream.query(name, rdtype, deadline)
        except DnsError as error:
            return self.landed(key, flight, error)
        except BaseException as error:
            # Never leave followers waiting on a flight that will not land.
            failed = DnsError(DnsFailure.ERROR, f"resolver failure: {error}", cacheable=False)
            self._land(key, flight, _Entry(None, failed, 0.0), store=None)
            raise
        return self.landed(key, flight, answer)

    def landed(self, key: AnswerKey, flight: _Flight, outcome: DnsOutcome) -> _Entry:
        """Cache what an upstream question came to where it may be cached, and tell everyone
        waiting for its flight; the entry for whoever asked (an answer not marked cached).

        None is a question the multiplexer gave back (a truncated reply): nothing is learnt,
        and a thread that waits for it asks again itself, over TCP.
        """
        if outcome is None:
            failure = DnsError(DnsFailure.ERROR, "truncated: to be asked again", cacheable=False)
            entry = _Entry(None, failure, 0.0)
            self._land(key, flight, entry, store=None)
            return entry
        if isinstance(outcome, DnsError):
            expires = self.clock() + FAILURE_TTL
            # Kept without its traceback: frames would keep the asking request alive.
            entry = _Entry(None, _bare(outcome), expires)
            return self._land(key, flight, entry, store=entry if outcome.cacheable else None)
        expires = self.clock() + self._ttl(outcome)
        kept = dataclasses.replace(outcome, expires=expires, from_cache=True)
        cached = _Entry(kept, None, expires)
        self._land(key, flight, cached, store=cached)
        return _Entry(dataclasses.replace(outcome, expires=expires), None, expires)

    def _land(
        self, key: tuple[str, str], flight: _Flight, entry: _Entry, store: _Entry | None
    ) -> _Entry:
        """Store, end the flight, wake it; a failure keeps the expired answer it replaces."""
        with self._lock:
            current = self._cache.get(key) if self.limits.serve_stale else None
            if entry.error is not None and current is not None:
                stale = self._servable(current.answer or current.stale, self.clock())
                if stale is not None:
                    entry = dataclasses.replace(entry, stale=stale)
                    store = entry if store is not None else None
            if store is not None and store.expires > self.clock():
                self._cache[key] = store
            self._in_flight.pop(key, None)
        flight.entry = entry
        flight.done.set()
        # Read after the flight left _in_flight (under the lock): no callback can join it now.
        for callback in flight.callbacks:
            callback()
        flight.callbacks = []
        return entry

    def _ttl(self, answer: DnsAnswer) -> float:
        limits = self.limits
        if not answer.records:
            return min(answer.ttl, limits.negative_ttl_max)
        return min(max(answer.ttl, limits.min_ttl), limits.max_ttl)


def _bare(error: DnsError) -> DnsError:
    """The same failure, without traceback, cause or context."""
    return DnsError(error.failure, str(error), cacheable=error.cacheable)


class _Landing:
    """What the multiplexer calls with a prefetched question's outcome."""

    __slots__ = ("cache", "flight", "key")

    def __init__(self, cache: CachingResolver, key: AnswerKey, flight: _Flight) -> None:
        self.cache, self.key, self.flight = cache, key, flight

    def __call__(self, outcome: DnsOutcome) -> None:
        self.cache.landed(self.key, self.flight, outcome)
