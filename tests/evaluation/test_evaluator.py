"""check_host() through pyspf over a data-only fake resolver."""

from __future__ import annotations

import threading

import pytest

from spfpolicy.decision.deciding import is_checkable_helo
from spfpolicy.evaluation.evaluator import SpfEvaluator
from spfpolicy.model import Identity, SpfResult
from spfpolicy.resolver.answers import DnsFailure
from tests.support.fakedns import FakeResolver

ZONE = {
    "sender.example": [
        "TXT v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 mx -all",
        "MX 10 mx.sender.example",
    ],
    "mx.sender.example": ["A 198.51.100.25"],
    "soft.example": ["TXT v=spf1 ~all"],
    "neutral.example": ["TXT v=spf1 ?all"],
    "nospf.example": ["TXT some-verification-token", "A 192.0.2.80"],
    "broken.example": ["TXT v=spf1 ip4:192.0.2.300 -all"],
    "twice.example": ["TXT v=spf1 -all", "TXT v=spf1 +all"],
    "explained.example": ["TXT v=spf1 -all exp=why.explained.example"],
    "why.explained.example": ["TXT %{i} is not one of %{d}'s servers"],
    "incl.example": ["TXT v=spf1 include:sender.example -all"],
    "dnsfail.example": ["TXT v=spf1 include:timeout.example -all"],
    "alias.example": ["CNAME sender.example"],
    "mail.helo.example": ["TXT v=spf1 a -all", "A 203.0.113.7"],
    "void.example": ["TXT v=spf1 a:none1.example a:none2.example a:none3.example -all"],
}
FAILING = {"timeout.example": DnsFailure.TIMEOUT, "servfail.example": DnsFailure.SERVFAIL}


@pytest.fixture
def evaluator() -> SpfEvaluator:
    """An evaluator over the test zone, receiver mx.receiver.example."""
    return SpfEvaluator(FakeResolver(ZONE, FAILING), receiver="mx.receiver.example")


def far_deadline() -> float:
    return float("inf")


@pytest.mark.parametrize(
    ("client", "sender", "result", "mechanism"),
    [
        pytest.param(
            "192.0.2.1", "user@sender.example", SpfResult.PASS, "ip4:192.0.2.0/24", id="ip4-pass"
        ),
        pytest.param(
            "2001:db8::1", "user@sender.example", SpfResult.PASS, "ip6:2001:db8::/32", id="ip6-pass"
        ),
        pytest.param(
            "::ffff:192.0.2.1",
            "user@sender.example",
            SpfResult.PASS,
            "ip4:192.0.2.0/24",
            id="mapped",
        ),
        pytest.param("198.51.100.25", "user@sender.example", SpfResult.PASS, "mx", id="mx-pass"),
        pytest.param("203.0.113.9", "user@sender.example", SpfResult.FAIL, "-all", id="fail"),
        pytest.param("203.0.113.9", "user@soft.example", SpfResult.SOFTFAIL, "~all", id="softfail"),
        pytest.param(
            "203.0.113.9", "user@neutral.example", SpfResult.NEUTRAL, "?all", id="neutral"
        ),
        pytest.param("203.0.113.9", "user@nospf.example", SpfResult.NONE, "", id="none-no-record"),
        pytest.param("203.0.113.9", "user@nx.example", SpfResult.NONE, "", id="none-nxdomain"),
        pytest.param(
            "192.0.2.1", "user@incl.example", SpfResult.PASS, "include:sender.example", id="include"
        ),
        pytest.param(
            "192.0.2.1", "user@alias.example", SpfResult.PASS, "ip4:192.0.2.0/24", id="cname"
        ),
        pytest.param("203.0.113.9", "user@timeout.example", SpfResult.TEMPERROR, "", id="timeout"),
        pytest.param(
            "203.0.113.9", "user@servfail.example", SpfResult.TEMPERROR, "", id="servfail"
        ),
        pytest.param(
            "203.0.113.9", "user@dnsfail.example", SpfResult.TEMPERROR, "", id="include-timeout"
        ),
        pytest.param("203.0.113.9", "user@broken.example", SpfResult.PERMERROR, "", id="bad-ip4"),
        pytest.param(
            "203.0.113.9", "user@twice.example", SpfResult.PERMERROR, "", id="two-records"
        ),
        pytest.param("203.0.113.9", "user@void.example", SpfResult.PERMERROR, "", id="void-limit"),
    ],
)
def test_mailfrom_results(
    evaluator: SpfEvaluator, client: str, sender: str, result: SpfResult, mechanism: str
) -> None:
    outcome = evaluator.evaluate(
        Identity.MAILFROM,
        client_address=client,
        sender=sender,
        helo="mta.client.example",
        deadline=far_deadline(),
    ).outcome
    assert outcome.result is result
    assert outcome.identity is Identity.MAILFROM
    assert outcome.domain == sender.split("@")[1]
    assert outcome.sender == sender
    if mechanism:
        assert outcome.mechanism == mechanism
    if result in (SpfResult.TEMPERROR, SpfResult.PERMERROR):
        assert outcome.problem
        assert not outcome.problem.startswith("SPF ")


def test_fail_carries_the_domains_own_explanation(evaluator: SpfEvaluator) -> None:
    outcome = evaluator.evaluate(
        Identity.MAILFROM,
        client_address="203.0.113.9",
        sender="u@explained.example",
        helo="h.example",
        deadline=far_deadline(),
    ).outcome
    assert outcome.result is SpfResult.FAIL
    assert outcome.explanation == "203.0.113.9 is not one of explained.example's servers"


def test_fail_without_exp_has_no_explanation(evaluator: SpfEvaluator) -> None:
    outcome = evaluator.evaluate(
        Identity.MAILFROM,
        client_address="203.0.113.9",
        sender="u@sender.example",
        helo="h.example",
        deadline=far_deadline(),
    ).outcome
    assert (outcome.result, outcome.explanation) == (SpfResult.FAIL, "")


@pytest.mark.parametrize(
    ("client", "result"),
    [("203.0.113.7", SpfResult.PASS), ("203.0.113.8", SpfResult.FAIL)],
)
def test_helo_identity_checks_postmaster_at_helo(
    evaluator: SpfEvaluator, client: str, result: SpfResult
) -> None:
    outcome = evaluator.evaluate(
        Identity.HELO,
        client_address=client,
        sender="someone@sender.example",
        helo="mail.helo.example",
        deadline=far_deadline(),
    ).outcome
    assert outcome.result is result
    assert outcome.identity is Identity.HELO
    assert outcome.sender == "postmaster@mail.helo.example"
    assert outcome.domain == "mail.helo.example"


def test_null_sender_mailfrom_is_postmaster_at_helo(evaluator: SpfEvaluator) -> None:
    outcome = evaluator.evaluate(
        Identity.MAILFROM,
        client_address="203.0.113.7",
        sender="",
        helo="mail.helo.example",
        deadline=far_deadline(),
    ).outcome
    assert (outcome.result, outcome.sender) == (SpfResult.PASS, "postmaster@mail.helo.example")


def test_trace_lists_the_dns_questions(evaluator: SpfEvaluator) -> None:
    evaluation = evaluator.evaluate(
        Identity.MAILFROM,
        client_address="198.51.100.25",
        sender="u@sender.example",
        helo="h.example",
        deadline=far_deadline(),
    )
    asked = [(name, rdtype) for name, rdtype, _ in evaluation.trace.questions]
    assert asked == [
        ("sender.example", "TXT"),
        ("sender.example", "MX"),
        ("mx.sender.example", "A"),
    ]


def test_concurrent_evaluations_use_their_own_resolver() -> None:
    """The pyspf hook is global; each thread must still reach its own request's resolver."""
    results: dict[int, SpfResult] = {}
    zones = [
        {"race.example": ["TXT v=spf1 +all"]},
        {"race.example": ["TXT v=spf1 -all"]},
    ]

    def run(index: int) -> None:
        evaluator = SpfEvaluator(FakeResolver(zones[index % 2]), receiver="r.example")
        for _ in range(50):
            outcome = evaluator.evaluate(
                Identity.MAILFROM,
                client_address="192.0.2.1",
                sender="u@race.example",
                helo="h.example",
                deadline=far_deadline(),
            ).outcome
            if results.setdefault(index, outcome.result) is not outcome.result:
                results[index] = SpfResult.TEMPERROR  # a mix-up: never the same twice

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: SpfResult.PASS if i % 2 == 0 else SpfResult.FAIL for i in range(8)}


@pytest.mark.parametrize(
    ("helo", "checkable"),
    [
        ("mail.sender.example", True),
        ("mail.sender.example.", True),
        ("localhost", False),
        ("OEMCOMPUTER", False),
        ("[192.0.2.1]", False),
        ("[IPv6:2001:db8::1]", False),
        ("192.0.2.1", False),
        ("", False),
        ("a..example", False),
    ],
)
def test_is_checkable_helo(helo: str, checkable: bool) -> None:
    assert is_checkable_helo(helo) is checkable
