"""Cache-only attempts (PolicyService.handle_cached): answer from the caches or give up cleanly.

The server's I/O thread tries every request this way first; a request it gives up on is decided
by handle() on a worker. Giving up must leave no wrong trace: no network question, no decision
made without every answer, no count made twice.
"""

from __future__ import annotations

from collections import Counter

from spfpolicy.config.settings import Config, parse_config
from spfpolicy.decision.policy import Receiver
from spfpolicy.evaluation.caches import ResultCache
from spfpolicy.evaluation.evaluator import SpfEvaluator
from spfpolicy.model import Decision, NullObserver, PolicyRequest
from spfpolicy.resolver.cache import CachingResolver
from spfpolicy.service.policyservice import PolicyService
from tests.support.fakedns import FakeResolver

ZONE = {
    "sender.example": ["TXT v=spf1 ip4:192.0.2.0/24 include:provider.example -all"],
    "provider.example": ["TXT v=spf1 ip4:198.51.100.0/24 -all"],
    "mail.sender.example": ["TXT v=spf1 a -all", "A 198.51.100.7", "A 198.51.100.8"],
    "explained.example": ["TXT v=spf1 -all exp=why.explained.example"],
    "why.explained.example": ["TXT %{i} may not send for %{d}"],
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
    """Counts the calls that cache-only attempts hold back or make."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def dns_cache_lookup(self, hit: bool) -> None:
        """Count a DNS cache lookup."""
        self.counts[f"dns_cache_{'hit' if hit else 'miss'}"] += 1

    def result_cache_lookup(self, hit: bool) -> None:
        """Count a result cache lookup."""
        self.counts[f"result_cache_{'hit' if hit else 'miss'}"] += 1

    def decision_made(self, decision: Decision, duration: float) -> None:
        """Count a decision."""
        self.counts["decisions"] += 1


class Setup:
    """A service over the fake zone behind the real shared cache, counting everything."""

    def __init__(self, config: Config | None = None, zone: dict[str, list[str]] | None = None):
        self.upstream = FakeResolver(zone or ZONE)
        self.observer = CountingObserver()
        self.cache = CachingResolver(self.upstream, observer=self.observer)
        evaluator = SpfEvaluator(
            self.cache,
            receiver="mx.receiver.example",
            result_cache=ResultCache(1000),
            observer=self.observer,
        )
        self.service = PolicyService(
            config or Config(),
            evaluator,
            Receiver("mx.receiver.example", "mx.receiver.example"),
            observer=self.observer,
        )


def test_cold_cache_gives_up_without_asking_upstream() -> None:
    setup = Setup()
    assert setup.service.handle_cached(REQUEST) is None
    assert setup.upstream.asked == []
    assert setup.observer.counts["decisions"] == 0


def test_warm_cache_answers_like_handle_and_asks_nothing() -> None:
    setup = Setup()
    first = setup.service.handle(REQUEST)
    asked = len(setup.upstream.asked)
    # Another client of the same network and another message: the result cache cannot answer,
    # the DNS cache can.
    request = REQUEST.replace(client_address="198.51.100.8", instance="4F2A1.2")
    cached = setup.service.handle_cached(request)
    assert cached is not None
    assert cached.action == first.action.replace("198.51.100.7", "198.51.100.8")
    assert len(setup.upstream.asked) == asked


def test_giving_up_then_handle_counts_like_handle_alone() -> None:
    alone, tried = Setup(), Setup()
    alone.service.handle(REQUEST)
    assert tried.service.handle_cached(REQUEST) is None
    tried.service.handle(REQUEST)
    assert tried.observer.counts == alone.observer.counts
    assert tried.upstream.asked == alone.upstream.asked


def test_given_up_attempt_keeps_the_work_it_finished() -> None:
    # The HELO identity is fully cached, MAIL FROM is not: the attempt gives up at MAIL FROM,
    # and the worker's handle() must not evaluate HELO again nor count it twice.
    alone, tried = Setup(), Setup()
    for setup in (alone, tried):
        setup.service.handle(REQUEST.replace(sender="", instance="warm-helo"))
    tried_request = REQUEST.replace(instance="4F2A1.9")
    assert tried.service.handle_cached(tried_request) is None
    decision = tried.service.handle(tried_request)
    expected = alone.service.handle(REQUEST.replace(instance="4F2A1.9"))
    assert decision.action == expected.action
    assert tried.observer.counts == alone.observer.counts


def test_explanation_not_cached_gives_up_instead_of_failing_without_it() -> None:
    # pyspf swallows any error while fetching exp=; a cache-only attempt must not answer a fail
    # without the domain's explanation, nor remember such a decision for the message.
    config = parse_config(
        '[actions.mailfrom]\nfail = "reject"\n[policy]\nreject_reason = "{explanation}"\n'
    )
    setup = Setup(config)
    request = REQUEST.replace(
        sender="user@explained.example", client_address="203.0.113.9", helo_name="[203.0.113.9]"
    )
    setup.cache.query("explained.example", "TXT", float("inf"))  # the record, not its exp=
    assert setup.service.handle_cached(request) is None
    decision = setup.service.handle(request)
    assert "203.0.113.9 may not send for explained.example" in decision.action
    assert setup.service.handle_cached(request.replace(instance="other")) is not None


def test_second_recipient_is_answered_from_the_memo() -> None:
    setup = Setup()
    first = setup.service.handle(REQUEST)
    second = setup.service.handle_cached(REQUEST.replace(recipient="b@receiver.example"))
    assert second is not None
    assert second.reused
    assert first.action.startswith("PREPEND Received-SPF: pass")
    assert second.action == "DUNNO"  # one header per message


def test_without_the_shared_cache_every_request_goes_to_a_worker() -> None:
    upstream = FakeResolver(ZONE)
    evaluator = SpfEvaluator(upstream, receiver="mx.receiver.example")
    service = PolicyService(
        Config(), evaluator, Receiver("mx.receiver.example", "mx.receiver.example")
    )
    assert service.handle_cached(REQUEST) is None
    assert upstream.asked == []
