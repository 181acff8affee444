"""Evaluations over a DNS snapshot (spfpolicy.evaluation.snapshot) agree with pyspf over DNS.

The snapshot is a second path to a result, so it is checked against the first: generated
record trees (ip4, ip6, a, mx, exists, include, redirect, exp, all, near the lookup limits),
clients of both families one after another, each evaluated by the caching evaluator (over a
snapshot whenever it can) and by a fresh one over the zone itself. Outcomes must be equal, and
no snapshot may lack a question its evaluation asks.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from spfpolicy.evaluation.evaluator import SpfEvaluator
from spfpolicy.evaluation.snapshot import snapshot
from spfpolicy.model import Identity
from spfpolicy.resolver.answers import DnsFailure
from spfpolicy.resolver.cache import CachingResolver
from tests.support.fakedns import FakeResolver

pytestmark = pytest.mark.unit

RECEIVER = "mx.receiver.example"
HOSTS = {  # names a/mx/exists point at, with their addresses
    "h1.example": ["A 192.0.2.1", "AAAA 2001:db8::1"],
    "h2.example": ["A 192.0.2.2"],
    "h3.example": ["AAAA 2001:db8::3"],
    "ex.example": ["A 127.0.0.2"],
    "exp.example": ["TXT not allowed here"],
}
CLIENTS = ["192.0.2.1", "192.0.2.2", "192.0.2.9", "2001:db8::1", "2001:db8::3", "2001:db8::9"]

qualifiers = st.sampled_from(["", "-", "~", "?", "+"])
plain_terms = st.one_of(
    st.builds(lambda q, n: f"{q}ip4:192.0.2.{n}", qualifiers, st.integers(0, 9)),
    st.builds(lambda q, n: f"{q}ip4:192.0.2.0/{n}", qualifiers, st.integers(28, 32)),
    st.builds(lambda q, n: f"{q}ip6:2001:db8::/{n}", qualifiers, st.integers(124, 128)),
    st.builds(lambda q, h: f"{q}a:{h}", qualifiers, st.sampled_from(sorted(HOSTS))),
    st.builds(lambda q: f"{q}a", qualifiers),
    st.builds(lambda q: f"{q}mx", qualifiers),
    st.builds(lambda q: f"{q}exists:ex.example", qualifiers),
    st.just("a:missing.example"),  # a void lookup
)


@st.composite
def zones(draw: st.DrawFn) -> dict[str, list[str]]:
    """A root record over up to three included or redirected records, and the hosts."""
    zone = {name: list(records) for name, records in HOSTS.items()}
    for index in range(3):
        terms = draw(st.lists(plain_terms, max_size=4))
        tail = draw(st.sampled_from(["", " -all", " ~all", " ?all"]))
        zone[f"sub{index}.example"] = [f"TXT v=spf1 {' '.join(terms)}{tail}".replace("  ", " ")]
    terms = draw(
        st.lists(
            st.one_of(
                plain_terms, st.sampled_from(["include:sub0.example", "include:sub1.example"])
            ),
            max_size=9,
        )
    )
    ending = draw(st.sampled_from([" -all", " ~all", " ?all", " redirect=sub2.example", ""]))
    explained = draw(st.sampled_from(["", " exp=exp.example"]))
    zone["root.example"] = [
        f"TXT v=spf1 {' '.join(terms)}{ending}{explained}".replace("  ", " "),
        "A 192.0.2.2",
        "MX 10 h1.example",
        "MX 20 h3.example",
    ]
    zone["sub1.example"].append("TXT not an spf record")
    return zone


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(zone=zones(), clients=st.lists(st.sampled_from(CLIENTS), min_size=2, max_size=6))
def test_snapshot_evaluations_agree_with_pyspf_over_dns(
    zone: dict[str, list[str]], clients: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    dns_cache = CachingResolver(FakeResolver(zone))
    cached = SpfEvaluator(dns_cache, receiver=RECEIVER, dns_cache=dns_cache)
    fresh = SpfEvaluator(FakeResolver(zone), receiver=RECEIVER)
    for client in clients:
        arguments = {"client_address": client, "sender": "user@root.example", "helo": "h.test"}
        deadline = time.monotonic() + 10
        first = cached.evaluate(Identity.MAILFROM, deadline=deadline, **arguments)
        second = fresh.evaluate(Identity.MAILFROM, deadline=deadline, **arguments)
        assert first.outcome == second.outcome, (zone["root.example"][0], client)
        event("over a snapshot" if first.trace.over_snapshot else "over DNS")
    # The snapshot never lacked a question (the evaluator logs that as a bug, then waits).
    assert not [r for r in caplog.records if r.name == "spfpolicy.evaluation.evaluator"]


def make(zone: dict[str, list[str]]) -> tuple[SpfEvaluator, FakeResolver, CachingResolver]:
    """An evaluator over a fake zone behind the DNS cache, snapshots on."""
    upstream = FakeResolver(zone)
    dns_cache = CachingResolver(upstream)
    return SpfEvaluator(dns_cache, receiver=RECEIVER, dns_cache=dns_cache), upstream, dns_cache


ARGUMENTS = {"sender": "user@sender.example", "helo": "h.test"}


def test_once_the_tree_is_cached_any_client_is_evaluated_at_once() -> None:
    zone = {"sender.example": ["TXT v=spf1 ip4:192.0.2.0/28 a:h1.example -all"], **HOSTS}
    evaluator, upstream, _ = make(zone)
    assert (
        evaluator.evaluate_now(Identity.MAILFROM, client_address="192.0.2.1", **ARGUMENTS) is None
    )
    # An outsider's evaluation walks every term: the whole tree is cached after it.
    outsider = evaluator.compute(
        Identity.MAILFROM, client_address="203.0.113.5", deadline=time.monotonic() + 5, **ARGUMENTS
    )
    assert outsider.outcome.result.value == "fail"
    asked = len(upstream.asked)
    now = evaluator.evaluate_now(Identity.MAILFROM, client_address="192.0.2.1", **ARGUMENTS)
    assert now is not None
    assert now.trace.over_snapshot
    assert now.outcome.result.value == "pass"
    assert len(upstream.asked) == asked
    # The other family asks AAAA instead of A: not cached yet.
    other_family = evaluator.evaluate_now(
        Identity.MAILFROM, client_address="2001:db8::1", **ARGUMENTS
    )
    assert other_family is None


def test_an_early_match_leaves_the_rest_of_the_tree_to_a_worker() -> None:
    zone = {"sender.example": ["TXT v=spf1 ip4:192.0.2.0/28 a:h1.example -all"], **HOSTS}
    evaluator, _, _ = make(zone)
    evaluator.compute(
        Identity.MAILFROM, client_address="192.0.2.1", deadline=time.monotonic() + 5, **ARGUMENTS
    )
    # h1.example's A record was never asked: a client outside 192.0.2.0/28 would need it.
    assert (
        evaluator.evaluate_now(Identity.MAILFROM, client_address="203.0.113.5", **ARGUMENTS) is None
    )


@pytest.mark.parametrize(
    "record",
    [
        pytest.param("v=spf1 a:%{d}.h1.example -all", id="macro"),
        pytest.param("v=spf1 ptr:h1.example -all", id="ptr"),
        pytest.param("v=spf1 include:gone.example -all", id="failed-answer"),
        pytest.param("v=spf1 -all exp=explain.example", id="macro-in-exp-text"),
    ],
)
def test_trees_no_snapshot_can_cover_are_left_to_a_worker(record: str) -> None:
    zone = {
        "sender.example": [f"TXT {record}"],
        "explain.example": ["TXT %{i} is not one of ours"],
        **HOSTS,
    }
    upstream = FakeResolver(zone, failing={"gone.example": DnsFailure.TIMEOUT})
    dns_cache = CachingResolver(upstream)
    evaluator = SpfEvaluator(dns_cache, receiver=RECEIVER, dns_cache=dns_cache)
    for client in ("203.0.113.5", "203.0.113.6"):
        evaluator.compute(
            Identity.MAILFROM, client_address=client, deadline=time.monotonic() + 5, **ARGUMENTS
        )
        assert snapshot(dns_cache, "sender.example", ipv6=False) is None


def test_the_snapshot_follows_includes_redirects_mx_and_cnames() -> None:
    zone = {
        "sender.example": ["TXT v=spf1 mx include:alias.example redirect=other.example"],
        "alias.example": ["CNAME real.example"],
        "real.example": ["TXT v=spf1 exists:nothing.example ?all"],
        "other.example": ["TXT v=spf1 a -all exp=exp.example", "A 192.0.2.7"],
        **HOSTS,
    }
    zone["sender.example"] += ["MX 10 h1.example", "MX 20 h2.example"]
    evaluator, _, dns_cache = make(zone)
    evaluator.compute(
        Identity.MAILFROM, client_address="203.0.113.5", deadline=time.monotonic() + 5, **ARGUMENTS
    )
    answers = snapshot(dns_cache, "sender.example", ipv6=False)
    assert answers is not None
    assert set(answers) == {
        ("sender.example", "TXT"),
        ("sender.example", "MX"),
        ("h1.example", "A"),
        ("h2.example", "A"),
        ("alias.example", "TXT"),
        ("real.example", "TXT"),
        ("nothing.example", "A"),
        ("other.example", "TXT"),
        ("other.example", "A"),
        ("exp.example", "TXT"),
    }
