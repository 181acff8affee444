"""The two phases of a decision (PolicyService.begin, PolicyService.complete).

begin() runs on the server's I/O thread: it must never ask DNS, never wait and never give up
half-way; what it cannot answer it hands to complete() as a Pending, which finishes from there,
or first to wait_for_dns(), whose prefetch lets resume() go on with it on the I/O thread.
Either way they must decide like one pass: same answer, same DNS questions, every count made
once.
"""

from __future__ import annotations

import functools
from collections import Counter

import pytest

from spfpolicy.config.settings import Config, parse_config
from spfpolicy.decision.actions import Receiver
from spfpolicy.evaluation.caches import ResultCache
from spfpolicy.evaluation.evaluator import SpfEvaluator
from spfpolicy.model import Decision, Identity, NullObserver, PolicyRequest
from spfpolicy.resolver.cache import CachingResolver
from spfpolicy.service.allowlist import AllowList
from spfpolicy.service.policyservice import Pending, PolicyService
from tests.support.fakedns import FakeResolver, RoundsMultiplexer
from tests.support.phases import handle

pytestmark = pytest.mark.unit

ZONE = {
    "sender.example": ["TXT v=spf1 ip4:192.0.2.0/24 include:provider.example -all"],
    "provider.example": ["TXT v=spf1 ip4:198.51.100.0/24 -all"],
    "mail.sender.example": ["TXT v=spf1 a -all", "A 198.51.100.7", "A 198.51.100.8"],
    "forged.example": ["TXT v=spf1 -all"],
    "relay.example": ["TXT v=spf1 ip4:203.0.113.0/24 -all"],
}
REQUEST = PolicyRequest(
    request="smtpd_access_policy",
    protocol_state="RCPT",
    client_address="198.51.100.7",
    helo_name="mail.sender.example",
    sender="user@sender.example",
    recipient="a@receiver.example",
    instance="4F2A1.1",
)


class CountingObserver(NullObserver):
    """Counts the calls an observer gets, by name."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def dns_cache_lookup(self, hit: bool) -> None:
        """Count a DNS cache lookup."""
        self.counts[f"dns_cache_{'hit' if hit else 'miss'}"] += 1

    def result_cache_lookup(self, hit: bool) -> None:
        """Count a result cache lookup."""
        self.counts[f"result_cache_{'hit' if hit else 'miss'}"] += 1

    def include_cache_lookup(self, hit: bool) -> None:
        """Count an include: cache lookup."""
        self.counts[f"include_cache_{'hit' if hit else 'miss'}"] += 1

    def decision_made(self, decision: Decision, duration: float) -> None:
        """Count a decision."""
        self.counts["decisions"] += 1


class Setup:
    """A service over the fake zone behind the real shared cache, counting everything."""

    def __init__(self, config: Config | None = None, *, prefetch: bool = False) -> None:
        config = config or Config()
        self.upstream = FakeResolver(ZONE)
        self.observer = CountingObserver()
        self.multiplexer = RoundsMultiplexer(self.upstream) if prefetch else None
        self.cache = CachingResolver(
            self.upstream, multiplexer=self.multiplexer, observer=self.observer
        )
        evaluator = SpfEvaluator(
            self.cache,
            receiver="mx.receiver.example",
            result_cache=ResultCache(1000),
            observer=self.observer,
            dns_cache=self.cache if prefetch else None,
        )
        self.service = PolicyService(
            config,
            evaluator,
            Receiver("mx.receiver.example", "mx.receiver.example"),
            allow=AllowList(config.allow, self.cache, evaluator),
            observer=self.observer,
        )


def test_a_cold_request_is_left_pending_without_asking_dns_or_counting() -> None:
    setup = Setup()
    begun = setup.service.begin(REQUEST)
    assert isinstance(begun, Pending)
    assert setup.upstream.asked == []
    assert setup.observer.counts["decisions"] == 0
    assert begun.evaluations == []
    assert begun.looked_up is Identity.HELO  # the first identity the result cache did not hold


def test_complete_finishes_what_begin_started_and_counts_once() -> None:
    alone, phased = Setup(), Setup()
    expected = handle(alone.service, REQUEST)
    begun = phased.service.begin(REQUEST)
    assert isinstance(begun, Pending)
    decision = phased.service.complete(begun)
    assert decision == expected
    assert phased.upstream.asked == alone.upstream.asked
    assert phased.observer.counts == alone.observer.counts
    assert phased.observer.counts["decisions"] == 1
    # begin() asked the result cache for HELO and missed; complete() did not ask it again.
    assert phased.observer.counts["result_cache_miss"] == 2  # HELO, then MAIL FROM


def test_known_results_are_answered_by_begin() -> None:
    setup = Setup()
    first = handle(setup.service, REQUEST)
    asked = len(setup.upstream.asked)
    # Another message with the same client and sender domain: the result cache knows both
    # identities, and begin() answers without a worker.
    again = setup.service.begin(REQUEST.replace(instance="4F2A1.2", sender="other@sender.example"))
    assert isinstance(again, Decision)
    assert again.action == first.action.replace("user@sender.example", "other@sender.example")
    assert len(setup.upstream.asked) == asked
    assert setup.observer.counts["decisions"] == 2


def test_a_half_known_request_carries_its_known_part_to_complete() -> None:
    # HELO is in the result cache, MAIL FROM is not: begin() keeps HELO's evaluation and
    # complete() evaluates MAIL FROM alone.
    setup = Setup()
    handle(setup.service, REQUEST.replace(sender="", instance="warm-helo"))
    begun = setup.service.begin(REQUEST.replace(instance="4F2A1.9"))
    assert isinstance(begun, Pending)
    assert [e.outcome.identity for e in begun.evaluations] == [Identity.HELO]
    assert begun.looked_up is Identity.MAILFROM
    decision = setup.service.complete(begun)
    assert [o.identity for o in decision.outcomes] == [Identity.HELO, Identity.MAILFROM]
    assert setup.observer.counts["result_cache_hit"] == 1


def test_an_enforcing_helo_verdict_from_the_cache_ends_the_request_in_begin() -> None:
    config = parse_config('[actions.helo]\nfail = "reject"\n')
    setup = Setup(config)
    forged = REQUEST.replace(client_address="203.0.113.5", helo_name="forged.example")
    handle(setup.service, forged.replace(instance="first"))
    decision = setup.service.begin(forged.replace(instance="second"))
    assert isinstance(decision, Decision)
    assert decision.action.startswith("550 5.7.23 SPF helo check failed")
    assert [o.identity for o in decision.outcomes] == [Identity.HELO]


def test_a_later_recipient_is_answered_by_begin_from_the_memo_without_a_header() -> None:
    setup = Setup()
    first = handle(setup.service, REQUEST)
    second = setup.service.begin(REQUEST.replace(recipient="b@receiver.example"))
    assert isinstance(second, Decision)
    assert second.reused
    assert first.header.startswith("Received-SPF: pass")
    assert (second.action, second.header) == ("DUNNO", "")  # one header per message


def test_allow_lists_that_need_dns_are_left_to_complete_and_asked_once_per_message() -> None:
    config = parse_config('[allow]\nforwarder_domains = ["relay.example"]\n')
    setup = Setup(config)
    relayed = REQUEST.replace(client_address="203.0.113.20")
    begun = setup.service.begin(relayed)
    assert isinstance(begun, Pending)
    assert not begun.allowed_known
    assert setup.upstream.asked == []
    decision = setup.service.complete(begun)
    assert decision.skip_reason == "allow_forwarder"
    asked = len(setup.upstream.asked)
    again = setup.service.begin(relayed.replace(recipient="b@receiver.example"))
    assert isinstance(again, Decision)
    assert again.skip_reason == "allow_forwarder"
    assert len(setup.upstream.asked) == asked


def test_without_a_result_cache_every_check_is_completed_on_a_worker() -> None:
    upstream = FakeResolver(ZONE)
    evaluator = SpfEvaluator(upstream, receiver="mx.receiver.example")
    service = PolicyService(
        Config(), evaluator, Receiver("mx.receiver.example", "mx.receiver.example")
    )
    begun = service.begin(REQUEST)
    assert isinstance(begun, Pending)
    assert upstream.asked == []
    assert service.complete(begun).action.startswith("PREPEND Received-SPF: pass")


def test_begin_answers_skips_itself() -> None:
    setup = Setup()
    decision = setup.service.begin(REQUEST.replace(sasl_username="alice"))
    assert isinstance(decision, Decision)
    assert decision.skip_reason == "authenticated"
    assert setup.observer.counts["decisions"] == 1


def decide_with_prefetch(setup: Setup, request: PolicyRequest) -> tuple[Decision, int]:
    """begin(), then wait_for_dns() and resume() for as long as they take it; complete() only
    when wait_for_dns() declines. The decision and the rounds of DNS it waited for."""
    assert setup.multiplexer is not None
    step = setup.service.begin(request)
    rounds = 0
    while isinstance(step, Pending):
        ready: list[bool] = []
        if not setup.service.wait_for_dns(step, functools.partial(ready.append, True)):
            return setup.service.complete(step), rounds
        setup.multiplexer.deliver()
        assert ready == [True]
        rounds += 1
        step = setup.service.resume(step)
    return step, rounds


def test_a_request_waited_for_with_prefetch_is_decided_as_in_one_pass() -> None:
    alone, waited = Setup(), Setup(prefetch=True)
    expected = handle(alone.service, REQUEST)
    decision, rounds = decide_with_prefetch(waited, REQUEST)
    assert decision == expected
    # HELO: its record, then its a's addresses; MAIL FROM: its record, then the include's.
    assert rounds == 4
    assert sorted(waited.upstream.asked) == sorted(alone.upstream.asked)
    assert waited.observer.counts["decisions"] == 1
    assert waited.observer.counts["result_cache_miss"] == 2  # HELO, then MAIL FROM, once each
    # What it prefetched is no cache hit: it was fetched for this request.
    assert decision.cache_hits == 0
    assert waited.observer.counts["dns_cache_hit"] == alone.observer.counts["dns_cache_hit"]
    # Known now: the next message is decided by begin() at once.
    again = waited.service.begin(REQUEST.replace(instance="4F2A1.2"))
    assert isinstance(again, Decision)


def test_allow_lists_that_need_dns_are_not_waited_for_without_a_worker() -> None:
    config = parse_config('[allow]\nforwarder_domains = ["relay.example"]\n')
    setup = Setup(config, prefetch=True)
    begun = setup.service.begin(REQUEST.replace(client_address="203.0.113.20"))
    assert isinstance(begun, Pending)
    assert not setup.service.wait_for_dns(begun, lambda: None)
    assert setup.service.complete(begun).skip_reason == "allow_forwarder"


def test_a_request_past_its_deadline_is_not_waited_for() -> None:
    setup = Setup(prefetch=True)
    begun = setup.service.begin(REQUEST)
    assert isinstance(begun, Pending)
    begun.deadline = 0.0
    assert not setup.service.wait_for_dns(begun, lambda: None)
    assert setup.multiplexer is not None
    assert setup.multiplexer.queue == []


def test_a_failing_prefetch_is_logged_and_left_to_a_worker(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    setup = Setup(prefetch=True)

    def broken(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("prefetch bug")

    monkeypatch.setattr(setup.service.evaluator, "prefetch", broken)
    begun = setup.service.begin(REQUEST)
    assert isinstance(begun, Pending)
    assert not setup.service.wait_for_dns(begun, lambda: None)
    assert "prefetch bug" in caplog.text
    assert setup.service.complete(begun).action.startswith("PREPEND Received-SPF: pass")
