"""The exact result cache: a result is reused only while a new evaluation must give the same."""

from __future__ import annotations

import pytest

from spfpolicy.evaluation.caches import ResultCache
from spfpolicy.evaluation.evaluator import Evaluation, SpfEvaluator
from spfpolicy.model import Identity, SpfResult
from spfpolicy.resolver.answers import DnsFailure
from spfpolicy.resolver.cache import CachingResolver
from tests.support.clock import HandClock
from tests.support.fakedns import FakeResolver

FAR = float("inf")
ZONE = {
    "sender.example": ["TXT v=spf1 ip4:192.0.2.0/24 -all"],
    "timed.example": ["TXT v=spf1 exists:%{t}.%{i}.rbl.example -all"],
    "timed-exp.example": ["TXT v=spf1 -all exp=why.timed-exp.example"],
    "why.timed-exp.example": ["TXT rejected at %{T}"],
    "dnsfail.example": ["TXT v=spf1 include:down.example -all"],
    "macro.example": ["TXT v=spf1 exists:%{l}.users.macro.example -all"],
    "alice.users.macro.example": ["A 127.0.0.2"],
}


class Setup:
    """Evaluator -> result cache, DNS cache -> fake zone, all on one hand-moved clock."""

    def __init__(self, ttl: float = 300.0) -> None:
        self.clock = HandClock(5000.0)
        self.upstream = FakeResolver(ZONE, {"down.example": DnsFailure.TIMEOUT}, ttl=ttl)
        self.dns = CachingResolver(self.upstream, clock=self.clock)
        self.results = ResultCache(1000, clock=self.clock)
        self.evaluator = SpfEvaluator(
            self.dns, receiver="mx.receiver.example", result_cache=self.results, clock=self.clock
        )

    def evaluate(
        self, sender: str, client: str = "192.0.2.1", helo: str = "h.example"
    ) -> Evaluation:
        return self.evaluator.evaluate(
            Identity.MAILFROM, client_address=client, sender=sender, helo=helo, deadline=FAR
        )


def test_a_repeated_question_is_answered_from_the_result_cache() -> None:
    setup = Setup()
    first = setup.evaluate("user@sender.example")
    asked = len(setup.upstream.asked)
    second = setup.evaluate("user@sender.example")
    assert second.outcome == first.outcome
    assert second.trace.from_result_cache
    assert second.trace.questions == []
    assert len(setup.upstream.asked) == asked


def test_another_client_is_a_new_evaluation() -> None:
    setup = Setup()
    setup.evaluate("user@sender.example")
    assert not setup.evaluate("user@sender.example", client="192.0.2.2").trace.from_result_cache


@pytest.mark.parametrize(
    "changes",
    [{"sender": "other@sender.example"}, {"helo": "h2.example"}],
    ids=["sender", "helo"],
)
def test_without_macros_the_domain_decides(changes: dict[str, str]) -> None:
    """check_host() reads the sender and HELO only through macros (RFC 7208 §4, §7)."""
    setup = Setup()
    first = setup.evaluate("user@sender.example")
    arguments = {"sender": "user@sender.example", **changes}
    again = setup.evaluate(**arguments)
    assert again.trace.from_result_cache
    assert again.outcome.sender == arguments["sender"]
    assert again.outcome.result is first.outcome.result


def test_with_macros_every_input_counts() -> None:
    setup = Setup()
    first = setup.evaluate("alice@macro.example")
    assert first.outcome.result is SpfResult.PASS
    assert setup.evaluate("alice@macro.example").trace.from_result_cache
    other = setup.evaluate("bob@macro.example")
    assert not other.trace.from_result_cache
    assert other.outcome.result is SpfResult.FAIL


def test_a_result_lives_no_longer_than_its_shortest_dns_answer() -> None:
    setup = Setup(ttl=60)
    setup.evaluate("user@sender.example")
    setup.clock.now += 59
    assert setup.evaluate("user@sender.example").trace.from_result_cache
    setup.clock.now += 1
    again = setup.evaluate("user@sender.example")
    assert not again.trace.from_result_cache
    assert again.trace.questions == [("sender.example", "TXT", "1 records")]


@pytest.mark.parametrize(
    ("sender", "client", "result"),
    [
        # §7.3 allows %{t} only in exp= text: elsewhere it is a permerror, but still not kept.
        pytest.param(
            "u@timed.example", "192.0.2.1", SpfResult.PERMERROR, id="time-macro-in-record"
        ),
        pytest.param("u@timed-exp.example", "192.0.2.1", SpfResult.FAIL, id="time-macro-in-exp"),
        pytest.param("u@dnsfail.example", "192.0.2.1", SpfResult.TEMPERROR, id="dns-error"),
    ],
)
def test_results_that_may_differ_are_never_reused(
    sender: str, client: str, result: SpfResult
) -> None:
    setup = Setup()
    first = setup.evaluate(sender, client)
    assert first.outcome.result is result
    assert not setup.evaluate(sender, client).trace.from_result_cache
    assert len(setup.results) == 0


def test_the_helo_identity_has_its_own_entries() -> None:
    setup = Setup()
    helo = setup.evaluator.evaluate(
        Identity.HELO,
        client_address="192.0.2.1",
        sender="x@y.example",
        helo="sender.example",
        deadline=FAR,
    )
    mailfrom_null = setup.evaluate("", helo="sender.example")
    assert helo.outcome.result is mailfrom_null.outcome.result is SpfResult.PASS
    assert helo.outcome.identity is Identity.HELO
    assert mailfrom_null.outcome.identity is Identity.MAILFROM
    assert not mailfrom_null.trace.from_result_cache
