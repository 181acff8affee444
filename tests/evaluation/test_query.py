"""The two pyspf bugs fenced in spfpolicy.evaluation.query, as RFC 7208 says they should go.

- Modifier names are case-insensitive (§12, RFC 5234 §2.3): "REDIRECT=" is a redirect (§6.1)
  and "EXP=" an explanation (§6.2); pyspf compared the names case-sensitively.
- A self-include is an error only when it is reached (§4.6.2: terms in order, the first match
  ends the evaluation; §4.6.4: the lookup limit ends a loop); pyspf refused the whole record.
"""

from __future__ import annotations

import time

import pytest

from spfpolicy.evaluation.evaluator import SpfEvaluator
from spfpolicy.model import Identity, SpfOutcome
from spfpolicy.resolver.answers import DnsFailure
from tests.support.fakedns import FakeResolver

pytestmark = pytest.mark.unit

ZONE = {
    "b.example": ["TXT v=spf1 -all"],
    "why.example": ["TXT no mail from here"],
    "lower.example": ["TXT v=spf1 redirect=b.example"],
    "upper.example": ["TXT v=spf1 REDIRECT=b.example"],
    "mixed.example": ["TXT v=spf1 ReDiReCt=b.example"],
    "explained.example": ["TXT v=spf1 -all EXP=why.example"],
    "self.example": ["TXT v=spf1 ip4:192.0.2.0/24 include:self.example -all"],
    "loop-a.example": ["TXT v=spf1 ip4:192.0.2.0/24 include:loop-b.example -all"],
    "loop-b.example": ["TXT v=spf1 include:loop-a.example -all"],
}


def check(domain: str, client: str) -> SpfOutcome:
    """MAIL FROM user@domain from client, over the zone."""
    evaluator = SpfEvaluator(FakeResolver(ZONE), receiver="mx.receiver.test")
    return evaluator.evaluate(
        Identity.MAILFROM,
        client_address=client,
        sender=f"user@{domain}",
        helo="h.test",
        deadline=time.monotonic() + 10,
    ).outcome


@pytest.mark.parametrize("domain", ["lower.example", "upper.example", "mixed.example"])
def test_redirect_is_a_redirect_whatever_its_case(domain: str) -> None:
    outcome = check(domain, "203.0.113.5")
    assert (outcome.result.value, outcome.mechanism) == ("fail", "-all")


def test_exp_is_an_explanation_whatever_its_case() -> None:
    assert check("explained.example", "203.0.113.5").explanation == "no mail from here"


@pytest.mark.parametrize(
    ("domain", "client", "result", "problem"),
    [
        pytest.param("self.example", "192.0.2.1", "pass", "", id="self-include-not-reached"),
        pytest.param(
            "self.example", "203.0.113.5", "permerror", "Too many DNS lookups", id="self-reached"
        ),
        pytest.param("loop-a.example", "192.0.2.1", "pass", "", id="two-level-not-reached"),
        pytest.param(
            "loop-a.example", "203.0.113.5", "permerror", "Too many DNS lookups", id="two-level"
        ),
    ],
)
def test_an_include_loop_is_an_error_only_when_reached(
    domain: str, client: str, result: str, problem: str
) -> None:
    outcome = check(domain, client)
    assert outcome.result.value == result
    assert problem in outcome.problem


def test_a_domain_without_a_record_is_still_none() -> None:
    assert check("nothing-here.example", "203.0.113.5").result.value == "none"


def test_a_dns_error_while_validating_ptr_names_skips_that_name() -> None:
    """RFC 7208 §5.5: "If a DNS error occurs while doing an A RR lookup, then that domain name
    is skipped and the search continues" (pyspf gave temperror)."""
    zone = {
        "ptr.example": ["TXT v=spf1 ptr:hosts.example -all"],
        "1.2.0.192.in-addr.arpa": ["PTR broken.hosts.example", "PTR good.hosts.example"],
        "good.hosts.example": ["A 192.0.2.1"],
    }
    resolver = FakeResolver(zone, failing={"broken.hosts.example": DnsFailure.SERVFAIL})
    evaluator = SpfEvaluator(resolver, receiver="mx.receiver.test")
    outcome = evaluator.evaluate(
        Identity.MAILFROM,
        client_address="192.0.2.1",
        sender="user@ptr.example",
        helo="h.test",
        deadline=time.monotonic() + 10,
    ).outcome
    assert (outcome.result.value, outcome.mechanism) == ("pass", "ptr:hosts.example")
