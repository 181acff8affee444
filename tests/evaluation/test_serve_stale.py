"""An evaluation over a stale DNS answer ([dns] serve_stale): marked, and never kept for reuse.

A result that rests on an answer served because upstream failed stands only until upstream
answers again: neither the result cache nor the include: cache may keep it, or it would outlive
both serve_stale and the fresh answer that ends the outage. The prefetch walks an expired tree
the cache keeps, so that an outage costs one wait for the whole tree, not one per level.
"""

from __future__ import annotations

import dataclasses

from spfpolicy.evaluation.caches import ExpiringCache, ResultCache
from spfpolicy.evaluation.evaluator import Evaluation, SpfEvaluator
from spfpolicy.evaluation.query import IncludeKey, IncludeResult
from spfpolicy.evaluation.snapshot import missing
from spfpolicy.model import Identity, SpfResult
from spfpolicy.resolver.answers import AnswerKey, DnsFailure
from spfpolicy.resolver.cache import FAILURE_TTL, CacheLimits, CachingResolver
from tests.support.clock import HandClock
from tests.support.fakedns import FakeResolver, RoundsMultiplexer

FAR = float("inf")
CLIENT = "198.51.100.7"
TTL = 300.0
ZONE = {
    "sender.example": ["TXT v=spf1 ip4:192.0.2.0/24 include:provider.example -all"],
    "provider.example": ["TXT v=spf1 ip4:198.51.100.0/24 -all"],
}


class Setup:
    """Evaluator with both result caches -> DNS cache with serve_stale -> fake upstream."""

    def __init__(self, serve_stale: float = 3600.0) -> None:
        self.clock = HandClock(5000.0)
        self.upstream = FakeResolver(ZONE, ttl=TTL)
        limits = CacheLimits(serve_stale=serve_stale)
        self.dns = CachingResolver(self.upstream, limits, clock=self.clock)
        self.results = ResultCache(100, clock=self.clock)
        self.includes: ExpiringCache[IncludeKey, IncludeResult] = ExpiringCache(
            100, clock=self.clock
        )
        self.evaluator = SpfEvaluator(
            self.dns,
            receiver="mx.receiver.example",
            result_cache=self.results,
            include_cache=self.includes,
            dns_cache=self.dns,
            clock=self.clock,
        )

    def evaluate(self) -> Evaluation:
        return self.evaluator.evaluate(
            Identity.MAILFROM,
            client_address=CLIENT,
            sender="user@sender.example",
            helo="mail.client.example",
            deadline=FAR,
        )

    def outage(self) -> None:
        """Every answer expired, and upstream times out."""
        self.clock.now += TTL
        for name in ZONE:
            self.upstream.failing[name] = DnsFailure.TIMEOUT

    def recovery(self) -> None:
        """Upstream answers again, and the failures it left are no longer remembered."""
        self.upstream.failing.clear()
        self.clock.now += FAILURE_TTL


def test_a_result_over_a_stale_answer_is_the_same_result_marked_stale() -> None:
    setup = Setup()
    before = setup.evaluate()
    assert before.outcome.result is SpfResult.PASS
    assert not before.outcome.stale_dns
    setup.outage()
    during = setup.evaluate()
    assert during.outcome.stale_dns
    assert dataclasses.replace(during.outcome, stale_dns=False) == before.outcome
    assert not during.trace.from_result_cache  # the fresh result expired with its answers
    assert during.trace.stale_answers == 2
    assert [found for _, _, found in during.trace.questions] == ["1 records (stale)"] * 2


def test_without_serve_stale_the_same_outage_is_temperror() -> None:
    setup = Setup(serve_stale=0)
    setup.evaluate()
    setup.outage()
    outcome = setup.evaluate().outcome
    assert (outcome.result, outcome.stale_dns) == (SpfResult.TEMPERROR, False)


def test_a_stale_result_is_kept_in_neither_result_cache() -> None:
    setup = Setup()
    setup.evaluate()
    setup.outage()
    assert setup.evaluate().outcome.stale_dns
    assert setup.results.get((Identity.MAILFROM, CLIENT, "\0domain", "sender.example")) is None
    assert len(setup.includes) == 0  # the entry from before the outage expired; none since
    again = setup.evaluate()  # asked again, not reused
    assert (again.outcome.stale_dns, again.trace.from_result_cache) == (True, False)


def test_after_the_outage_the_next_result_is_fresh_unmarked_and_kept_again() -> None:
    setup = Setup()
    setup.evaluate()
    setup.outage()
    assert setup.evaluate().outcome.stale_dns
    setup.recovery()
    asked = len(setup.upstream.asked)
    after = setup.evaluate()
    assert len(setup.upstream.asked) == asked + 2  # both answers fetched afresh
    assert (after.outcome.result, after.outcome.stale_dns) == (SpfResult.PASS, False)
    assert not after.trace.reused_includes  # no include: result from the outage was reused
    assert setup.evaluate().trace.from_result_cache  # a fresh result is kept as before


def test_the_io_thread_never_evaluates_over_stale_answers() -> None:
    # evaluate_now() works over what the cache holds unexpired: an expired answer must be asked
    # for first, so a stale one is only ever served after upstream failed.
    setup = Setup()
    setup.evaluate()
    setup.outage()
    now = setup.evaluator.evaluate_now(
        Identity.MAILFROM,
        client_address=CLIENT,
        sender="user@sender.example",
        helo="mail.client.example",
    )
    assert now is None
    assert setup.upstream.asked.count(("sender.example", "TXT")) == 1


# The prefetch walk: an expired tree kept for serve-stale is refreshed in one round.

DEEP = {
    "sender.example": ["TXT v=spf1 include:one.example -all"],
    "one.example": ["TXT v=spf1 include:two.example -all"],
    "two.example": ["TXT v=spf1 ip4:198.51.100.0/24 -all"],
}
TREE = [("sender.example", "TXT"), ("one.example", "TXT"), ("two.example", "TXT")]


class Rounds:
    """The daemon's way in: over the cache, else prefetch rounds, else a worker's compute()."""

    def __init__(self, serve_stale: float = 3600.0) -> None:
        self.clock = HandClock(5000.0)
        self.upstream = FakeResolver(DEEP, ttl=TTL)
        self.multiplexer = RoundsMultiplexer(self.upstream)
        limits = CacheLimits(serve_stale=serve_stale)
        self.dns = CachingResolver(
            self.upstream, limits, multiplexer=self.multiplexer, clock=self.clock
        )
        self.evaluator = SpfEvaluator(
            self.dns, receiver="mx.receiver.example", dns_cache=self.dns, clock=self.clock
        )

    def decide(self) -> tuple[Evaluation, str]:
        """One evaluation as the daemon makes it, and where it was made."""
        arguments = {"client_address": CLIENT, "sender": "u@sender.example", "helo": "h.example"}
        deadline = self.clock() + 20
        asked: set[AnswerKey] = set()
        while True:
            found = self.evaluator.evaluate_now(Identity.MAILFROM, **arguments)
            if found is not None:
                return found, "over the cache"
            waits = self.evaluator.prefetch(
                Identity.MAILFROM, deadline=deadline, asked=asked, ready=lambda: None, **arguments
            )
            if not waits:
                return self.evaluator.compute(
                    Identity.MAILFROM, deadline=deadline, **arguments
                ), "on a worker"
            self.multiplexer.deliver()


def test_an_expired_tree_is_named_whole_only_with_serve_stale() -> None:
    for serve_stale, expected in ((0.0, TREE[:1]), (3600.0, TREE)):
        rounds = Rounds(serve_stale)
        rounds.decide()
        assert missing(rounds.dns, "sender.example", ipv6=False) == []
        rounds.clock.now += TTL
        assert missing(rounds.dns, "sender.example", ipv6=False) == expected, serve_stale


def test_a_healthy_upstream_refreshes_an_expired_tree_in_one_round() -> None:
    rounds = Rounds()
    rounds.decide()
    assert len(rounds.multiplexer.rounds) == 3  # cold: one round per level
    rounds.clock.now += TTL
    evaluation, where = rounds.decide()
    assert rounds.multiplexer.rounds[3:] == [TREE]
    assert where == "over the cache"
    assert (evaluation.outcome.result, evaluation.outcome.stale_dns) == (SpfResult.PASS, False)


def test_an_outage_costs_one_round_for_the_whole_tree_then_the_stale_answers_stand_in() -> None:
    rounds = Rounds()
    rounds.decide()
    rounds.clock.now += TTL
    for name in DEEP:
        rounds.upstream.failing[name] = DnsFailure.TIMEOUT
    asked = len(rounds.upstream.asked)
    evaluation, where = rounds.decide()
    assert rounds.multiplexer.rounds[3:] == [TREE]  # one wait for all three levels
    assert len(rounds.upstream.asked) == asked + 3  # and no question asked twice
    assert where == "on a worker"  # the failures are served stale by the blocking path
    assert (evaluation.outcome.result, evaluation.outcome.stale_dns) == (SpfResult.PASS, True)
    assert evaluation.trace.stale_answers == 3


def test_the_walk_through_a_stale_tree_keeps_to_the_lookup_limit() -> None:
    many = " ".join(f"include:i{n}.example" for n in range(12))
    zone = {
        "sender.example": [f"TXT v=spf1 {many} -all"],
        **{f"i{n}.example": ["TXT v=spf1 -all"] for n in range(12)},
    }
    rounds = Rounds()
    rounds.upstream.zone = {name: list(records) for name, records in zone.items()}
    for name in zone:
        rounds.dns.query(name, "TXT", FAR)
    rounds.clock.now += TTL
    keys = missing(rounds.dns, "sender.example", ipv6=False)
    # RFC 7208 §4.6.4: the record itself and the targets of its first ten DNS-querying terms.
    assert keys == [("sender.example", "TXT")] + [(f"i{n}.example", "TXT") for n in range(10)]
