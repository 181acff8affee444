"""Serve-stale in the shared DNS cache (RFC 8767), on a clock the tests move by hand.

An expired answer is asked again like any other; only when that fails does it stand in, marked
stale, and never past serve_stale after its own expiry. It is never refreshed by being served,
a fresh answer (NXDOMAIN and NODATA included) replaces it, and it is off by default.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from spfpolicy.model import NullObserver
from spfpolicy.resolver.answers import DnsAnswer, DnsError, DnsFailure
from spfpolicy.resolver.cache import FAILURE_TTL, CacheLimits, CachingResolver
from tests.support.clock import HandClock
from tests.support.fakedns import FakeResolver, RoundsMultiplexer

FAR = float("inf")
TTL = 300.0
SERVE_STALE = 3600.0
START = 1000.0
EXPIRY = START + TTL  # when the answer asked at START expires
ZONE = {
    "sender.example": ["TXT v=spf1 ip4:192.0.2.0/24 -all", "A 192.0.2.1"],
    "other.example": ["A 192.0.2.2"],
    "third.example": ["A 192.0.2.3"],
}


class StaleCounter(NullObserver):
    """Counts the stale answers served, by record type."""

    def __init__(self) -> None:
        self.stale: Counter[str] = Counter()

    def dns_stale_answer(self, rdtype: str) -> None:
        self.stale[rdtype] += 1


class Setup:
    """A cache with serve_stale in front of a fake upstream that a test takes down and up."""

    def __init__(self, serve_stale: float = SERVE_STALE, size: int = 100) -> None:
        self.clock = HandClock(START)
        self.upstream = FakeResolver(ZONE, ttl=TTL)
        self.observer = StaleCounter()
        limits = CacheLimits(size=size, serve_stale=serve_stale)
        self.cache = CachingResolver(
            self.upstream, limits, observer=self.observer, clock=self.clock
        )

    def down(self, failure: DnsFailure = DnsFailure.TIMEOUT, name: str = "sender.example") -> None:
        """Every question for name fails with failure from now on."""
        self.upstream.failing[name] = failure

    def up(self, name: str = "sender.example") -> None:
        """Questions for name are answered again."""
        self.upstream.failing.pop(name, None)

    def ask(self, name: str = "sender.example", rdtype: str = "TXT") -> DnsAnswer:
        return self.cache.query(name, rdtype, FAR)

    def asked(self, name: str = "sender.example") -> int:
        return sum(1 for asked, _ in self.upstream.asked if asked == name)


def texts(answer: DnsAnswer) -> list[object]:
    return [record.value for record in answer.records]


RECORD = [(b"v=spf1 ip4:192.0.2.0/24 -all",)]


def test_off_by_default_an_expired_answer_is_dropped_and_the_failure_raised() -> None:
    setup = Setup(serve_stale=0)
    setup.ask()
    setup.clock.now = EXPIRY
    setup.down()
    with pytest.raises(DnsError) as raised:
        setup.ask()
    assert raised.value.failure is DnsFailure.TIMEOUT
    assert not setup.observer.stale
    assert CacheLimits().serve_stale == 0


def test_an_expired_answer_is_asked_again_and_a_good_upstream_answers_fresh() -> None:
    setup = Setup()
    setup.ask()
    setup.clock.now = EXPIRY
    answer = setup.ask()
    assert setup.asked() == 2
    assert (answer.stale, answer.from_cache) == (False, False)
    assert answer.expires == EXPIRY + TTL
    assert not setup.observer.stale


@pytest.mark.parametrize("failure", list(DnsFailure), ids=[f.value for f in DnsFailure])
def test_when_asking_again_fails_the_expired_answer_is_served_marked_stale(
    failure: DnsFailure,
) -> None:
    setup = Setup()
    setup.ask()
    setup.clock.now = EXPIRY + 10
    setup.down(failure)
    answer = setup.ask()
    assert setup.asked() == 2  # asked upstream first, served stale only after it failed
    assert answer.stale
    assert texts(answer) == RECORD
    assert answer.expires == EXPIRY  # its own expiry, in the past: it is not made fresh
    assert setup.observer.stale == Counter({"TXT": 1})


def test_a_fresh_failure_is_served_stale_without_asking_upstream_again() -> None:
    setup = Setup()
    setup.ask()
    setup.clock.now = EXPIRY
    setup.down(DnsFailure.SERVFAIL)
    for _ in range(3):
        assert setup.ask().stale
        setup.clock.now += FAILURE_TTL / 4
    assert setup.asked() == 2  # one failed refresh, remembered for FAILURE_TTL
    assert setup.observer.stale["TXT"] == 3  # each stale answer served is counted
    setup.clock.now = EXPIRY + FAILURE_TTL
    assert setup.ask().stale
    assert setup.asked() == 3  # the failure expired: upstream is asked again


def test_never_served_past_serve_stale_after_its_own_expiry_however_often_served() -> None:
    setup = Setup()
    setup.ask()
    setup.down()
    for now in (EXPIRY, EXPIRY + SERVE_STALE / 2, EXPIRY + SERVE_STALE - 0.5):
        setup.clock.now = now
        answer = setup.ask()
        assert answer.stale
        assert answer.expires == EXPIRY  # being served never extends it
    setup.clock.now = EXPIRY + SERVE_STALE
    with pytest.raises(DnsError):
        setup.ask()
    setup.clock.now += FAILURE_TTL
    setup.up()
    assert not setup.ask().stale


def test_the_limit_holds_while_a_remembered_failure_outlives_it() -> None:
    # The failure is remembered for FAILURE_TTL from a moment just before the limit: the stale
    # answer it carries must still stop at expiry + serve_stale.
    setup = Setup()
    setup.ask()
    setup.down()
    setup.clock.now = EXPIRY + SERVE_STALE - 0.5
    assert setup.ask().stale
    setup.clock.now = EXPIRY + SERVE_STALE
    with pytest.raises(DnsError):
        setup.ask()
    assert setup.asked() == 2  # that was the remembered failure, not a new question


def test_a_fresh_answer_replaces_the_stale_one_as_soon_as_upstream_answers() -> None:
    setup = Setup()
    setup.ask()
    setup.clock.now = EXPIRY
    setup.down()
    assert setup.ask().stale
    setup.up()
    setup.clock.now = EXPIRY + FAILURE_TTL  # the next time upstream is asked
    fresh = setup.ask()
    assert (fresh.stale, fresh.expires) == (False, setup.clock.now + TTL)
    cached = setup.ask()
    assert (cached.stale, cached.from_cache) == (False, True)
    # Down again after the new answer expired: the new answer is the one served stale.
    setup.clock.now = fresh.expires + 1
    setup.down()
    assert setup.ask().expires == fresh.expires
    assert setup.observer.stale["TXT"] == 2


@pytest.mark.parametrize(
    ("zone_change", "rcode"),
    [
        pytest.param({}, "NXDOMAIN", id="nxdomain"),
        pytest.param({"sender.example": ["A 192.0.2.1"]}, "NOERROR", id="nodata"),
    ],
)
def test_nxdomain_and_nodata_are_answers_that_replace_the_entry(
    zone_change: dict[str, list[str]], rcode: str
) -> None:
    setup = Setup()
    setup.ask()
    setup.clock.now = EXPIRY
    del setup.upstream.zone["sender.example"]
    setup.upstream.zone.update(zone_change)
    answer = setup.ask()
    assert (answer.records, answer.rcode, answer.stale) == ((), rcode, False)
    assert setup.ask().from_cache  # the negative answer is what the cache holds now
    assert not setup.observer.stale


def test_a_name_never_answered_has_nothing_stale_to_serve() -> None:
    setup = Setup()
    setup.down(DnsFailure.SERVFAIL)
    with pytest.raises(DnsError):
        setup.ask()
    assert not setup.observer.stale


def test_memory_stays_within_the_cache_size() -> None:
    setup = Setup(size=2)
    for name in ZONE:
        setup.ask(name, "A")
    assert len(setup.cache) == 2  # the least recently used went first, as without serve-stale
    setup.clock.now = EXPIRY + 1
    for name in ZONE:
        setup.down(DnsFailure.SERVFAIL, name)
    assert setup.ask("third.example", "A").stale  # kept: among the two most recent
    with pytest.raises(DnsError):
        setup.ask("sender.example", "A")  # evicted: nothing left to serve
    assert len(setup.cache) == 2  # a failure with its stale answer is one entry, as before


def test_a_prefetch_that_fails_keeps_the_stale_answer_for_the_blocking_path() -> None:
    setup = Setup()
    multiplexer = RoundsMultiplexer(setup.upstream)
    setup.cache.multiplexer = multiplexer
    setup.ask()
    setup.clock.now = EXPIRY
    setup.down()
    ready: list[bool] = []
    assert setup.cache.prefetch([("sender.example", "TXT")], FAR, lambda: ready.append(True))
    multiplexer.deliver()
    assert ready == [True]
    assert setup.cache.cached("sender.example", "TXT") is None  # no snapshot from stale data
    answer = setup.ask()  # the worker's question: the remembered failure, answered stale
    assert answer.stale
    assert setup.asked() == 2


class Upstream(FakeResolver):
    """The fake upstream, which can also hold questions until released or run out of budget."""

    def __init__(self) -> None:
        super().__init__(ZONE, ttl=TTL)
        self.hold = False
        self.asking = threading.Event()
        self.release = threading.Event()
        self.spent = False

    def query(self, name: str, rdtype: str, deadline: float) -> DnsAnswer:
        if self.hold:
            self.asking.set()
            assert self.release.wait(timeout=10), "never released"
        if self.spent:
            self.asked.append((name, rdtype))
            raise DnsError(
                DnsFailure.TIMEOUT, "the request's time budget is used up", cacheable=False
            )
        return super().query(name, rdtype, deadline)


def test_a_request_whose_budget_ends_while_another_asks_gets_the_stale_answer() -> None:
    setup = Setup()
    upstream = setup.cache.upstream = Upstream()
    setup.ask()
    setup.clock.now = EXPIRY
    upstream.hold = True
    leader = threading.Thread(target=setup.ask)
    leader.start()
    try:
        assert upstream.asking.wait(timeout=10)
        # Its deadline 0.2 s away on the cache's clock: it waits for the leader that long.
        follower = setup.cache.query("sender.example", "TXT", setup.clock.now + 0.2)
    finally:
        upstream.release.set()
        leader.join(timeout=10)
    assert follower.stale
    assert setup.observer.stale["TXT"] == 1
    fresh = setup.ask()  # the leader's answer landed meanwhile
    assert (fresh.stale, fresh.from_cache) == (False, True)


def test_a_request_out_of_budget_gets_the_stale_answer_and_teaches_the_cache_nothing() -> None:
    setup = Setup()
    upstream = setup.cache.upstream = Upstream()
    setup.ask()
    setup.clock.now = EXPIRY
    upstream.spent = True
    assert setup.ask().stale
    assert setup.ask().stale
    assert sum(1 for asked, _ in upstream.asked if asked == "sender.example") == 3
    upstream.spent = False
    assert not setup.ask().stale  # nothing was remembered: the next request asks again


def test_stale_shows_the_kept_answer_only_while_it_may_be_served() -> None:
    setup = Setup()
    setup.ask()
    assert setup.cache.stale("sender.example", "TXT") is None  # in force: cached() has it
    setup.clock.now = EXPIRY
    kept = setup.cache.stale("Sender.Example.", "TXT")
    assert kept is not None
    assert texts(kept) == RECORD
    setup.down()
    setup.ask()  # the failure now holds it
    assert setup.cache.stale("sender.example", "TXT") == kept
    setup.clock.now = EXPIRY + SERVE_STALE
    assert setup.cache.stale("sender.example", "TXT") is None
    assert setup.cache.stale("other.example", "A") is None  # never asked
    off = Setup(serve_stale=0)
    off.ask()
    off.clock.now = EXPIRY
    assert off.cache.stale("sender.example", "TXT") is None
