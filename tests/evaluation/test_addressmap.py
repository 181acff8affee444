"""Address maps (spfpolicy.evaluation.addressmap) agree with pyspf: the fast path's differential
test, on the RFC 7208 suite, the benchmark's world and generated record trees.

Three evaluators see the same zone (answered in memory through the daemon's own reply parsing,
tests/support/zoneanswers.py): one with address maps, one running pyspf over the same snapshot
of cached answers, one running pyspf over DNS. Every outcome (result, mechanism, problem,
explanation, domain, sender) must be equal across the three, and the questions the map's trace
lists must be those pyspf asked over the snapshot. Each test also checks that maps answered a
fair share of the evaluations: a compiler that gave up on every tree would agree vacuously.
A domain's first client never reads a map (evaluation.mapcache): each is evaluated again.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, seed, settings
from hypothesis import strategies as st

from spfpolicy.decision.deciding import is_checkable_helo
from spfpolicy.evaluation.evaluator import Evaluation, SpfEvaluator
from spfpolicy.evaluation.mapcache import AddressMaps
from spfpolicy.model import Identity, NullObserver
from tests.conformance.test_rfc7208 import CASES, SCENARIOS, SuiteCase
from tests.support.traffic import generate_messages
from tests.support.world import build_world
from tests.support.zoneanswers import ZoneAnswers

pytestmark = pytest.mark.unit

RECEIVER = "mx.receiver.example"


class MapCounter(NullObserver):
    """Counts address map lookups by outcome."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()

    def address_map_lookup(self, outcome: str) -> None:
        """Count one lookup."""
        self.outcomes[outcome] += 1


class Paths:
    """The three evaluators over one zone."""

    def __init__(
        self, zonedata: Mapping[str, Any], *, void_limit: int = 2, fairness: bool = False
    ) -> None:
        self.dns = ZoneAnswers(zonedata)
        self.counter = MapCounter()
        limits = {"void_lookup_limit": void_limit, "ipv6_void_fairness": fairness}
        maps = AddressMaps(1000, observer=self.counter, **limits)
        self.mapped = SpfEvaluator(
            self.dns, receiver=RECEIVER, dns_cache=self.dns, address_maps=maps, **limits
        )
        self.over_snapshot = SpfEvaluator(self.dns, receiver=RECEIVER, dns_cache=self.dns, **limits)
        self.over_dns = SpfEvaluator(self.dns, receiver=RECEIVER, **limits)
        self.in_hypothesis = False

    def agree(self, identity: Identity, client: str, sender: str, helo: str) -> Evaluation:
        """Evaluate on all three paths and assert that they agree; the pyspf evaluation."""
        arguments = {"client_address": client, "sender": sender, "helo": helo}
        answered = self.counter.outcomes["answered"]
        mapped = self.mapped.evaluate_now(identity, **arguments)
        over_snapshot = self.over_snapshot.evaluate_now(identity, **arguments)
        reference = self.over_dns.compute(identity, deadline=time.monotonic() + 30, **arguments)
        context = (identity, client, sender, helo)
        assert (mapped is None) == (over_snapshot is None), context
        if mapped is not None and over_snapshot is not None:
            assert mapped.outcome == reference.outcome, context
            assert over_snapshot.outcome == reference.outcome, context
            assert mapped.trace.questions == over_snapshot.trace.questions, context
            assert mapped.trace.cache_hits == over_snapshot.trace.cache_hits, context
        if self.in_hypothesis:
            event("map" if self.counter.outcomes["answered"] > answered else "pyspf")
        return reference


def suite_client(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


@pytest.mark.parametrize("scenario", sorted(SCENARIOS), ids=lambda name: name[:40])
def test_rfc7208_suite(scenario: str) -> None:
    paths = Paths(SCENARIOS[scenario].zonedata)
    for case in SCENARIOS[scenario].cases:
        check_suite_case(paths, case)


def check_suite_case(paths: Paths, case: SuiteCase) -> None:
    # Twice: a domain's first client is pyspf's, the map is read for the second.
    for identity in (Identity.HELO, Identity.MAILFROM, Identity.HELO, Identity.MAILFROM):
        if identity is Identity.HELO and not is_checkable_helo(case.helo):
            continue
        paths.agree(identity, suite_client(case.host), case.mailfrom, case.helo)


def test_maps_answer_much_of_the_rfc7208_suite() -> None:
    answered = 0
    for case in CASES:
        paths = Paths(SCENARIOS[case.scenario].zonedata)
        check_suite_case(paths, case)
        answered += paths.counter.outcomes["answered"]
    assert answered >= len(CASES) // 3, answered


def test_benchmark_world() -> None:
    world = build_world(domains=400, seed=21)
    paths = Paths(world.zone)
    for message in generate_messages(world, 1500, seed=22, timeout_share=0):
        identities = [Identity.MAILFROM]
        if is_checkable_helo(message.helo_name):
            identities.append(Identity.HELO)
        for identity in identities:
            paths.agree(identity, message.client_address, message.sender, message.helo_name)
    outcomes = paths.counter.outcomes
    others = outcomes["pyspf"] + outcomes["unmapped"] + outcomes["new"]
    assert outcomes["answered"] > 2 * others, outcomes


# Generated trees: a root record over included and redirected records, hosts with and without
# addresses, an MX name with too many exchanges, and things no map holds (ptr, macros, CNAME).
HOSTS: dict[str, list[dict[str, Any]]] = {
    "h1.example": [{"A": "192.0.2.1"}, {"AAAA": "2001:db8::1"}],
    "h2.example": [{"A": "192.0.2.2"}, {"A": "198.51.100.7"}],
    "h3.example": [{"AAAA": "2001:db8::3"}],
    "h4.example": [{"TXT": "no address here"}],
    "alias.example": [{"CNAME": "h1.example"}],
    "ex.example": [{"A": "127.0.0.2"}],
    "exp.example": [{"TXT": "not allowed here"}],
    "mx.example": [
        {"MX": [10, "h1.example"]},
        {"MX": [20, "h3.example"]},
        {"MX": [5, "nx.example"]},
    ],
    "many.example": [{"MX": [n, f"m{n}.example"]} for n in range(11)],
    "none.example": [{"TXT": "not an spf record"}],
    "two.example": [{"TXT": "v=spf1 -all"}, {"TXT": "v=spf1 +all"}],
}
CLIENTS = [
    "192.0.2.1",
    "192.0.2.2",
    "192.0.2.3",
    "192.0.2.200",
    "198.51.100.7",
    "203.0.113.9",
    "2001:db8::1",
    "2001:db8::3",
    "2001:db8:1::9",
    "::ffff:192.0.2.1",
]

qualifiers = st.sampled_from(["", "-", "~", "?", "+"])
names = st.sampled_from([*sorted(HOSTS), "nx.example"])
terms = st.one_of(
    st.builds(lambda q, n: f"{q}ip4:192.0.2.{n}", qualifiers, st.integers(0, 3)),
    st.builds(lambda q, n: f"{q}ip4:192.0.2.0/{n}", qualifiers, st.integers(24, 32)),
    st.builds(lambda q, n: f"{q}ip4:198.51.100.0/{n}", qualifiers, st.integers(0, 32)),
    st.builds(lambda q, n: f"{q}ip6:2001:db8::/{n}", qualifiers, st.integers(30, 128)),
    st.builds(lambda q, h: f"{q}a:{h}", qualifiers, names),
    st.builds(
        lambda q, n, m: f"{q}a:h2.example/{n}//{m}",
        qualifiers,
        st.integers(8, 32),
        st.integers(0, 128),
    ),
    st.builds(lambda q: f"{q}a", qualifiers),
    st.builds(lambda q, h: f"{q}mx:{h}", qualifiers, names),
    st.builds(lambda q, n: f"{q}mx/{n}", qualifiers, st.integers(16, 32)),
    st.builds(lambda q, h: f"{q}exists:{h}", qualifiers, names),
    st.builds(lambda q, n: f"{q}include:sub{n}.example", qualifiers, st.integers(0, 3)),
    st.sampled_from(["include:none.example", "include:two.example", "include:nx.example"]),
    st.sampled_from(
        ["foo=bar", "ip4:192.0.2.300", "a:", "-all:x", "ptr", "exists:%{i}.ex.example"]
    ),
)
endings = st.sampled_from(
    [
        "",
        " -all",
        " ~all",
        " ?all",
        " +all",
        " redirect=sub2.example",
        " redirect=sub3.example",
        " redirect=nx.example",
    ]
)


@st.composite
def zones(draw: st.DrawFn) -> dict[str, list[dict[str, Any]]]:
    """The root record over up to four others, near the limits of RFC 7208 §4.6.4."""
    zone = {name: list(records) for name, records in HOSTS.items()}
    for index in range(4):
        body = " ".join(draw(st.lists(terms, max_size=5)))
        zone[f"sub{index}.example"] = [{"TXT": f"v=spf1 {body}{draw(endings)}".replace("  ", " ")}]
    body = " ".join(draw(st.lists(terms, max_size=12)))
    explained = draw(st.sampled_from(["", " exp=exp.example"]))
    zone["root.example"] = [
        {"TXT": f"v=spf1 {body}{draw(endings)}{explained}".replace("  ", " ")},
        {"A": "192.0.2.3"},
        {"AAAA": "2001:db8:1::9"},
        {"MX": [10, "h2.example"]},
    ]
    return zone


def check_generated(
    zone: dict[str, list[dict[str, Any]]], clients: list[str], void_limit: int, fairness: bool
) -> None:
    paths = Paths(zone, void_limit=void_limit, fairness=fairness)
    paths.in_hypothesis = True
    for client in ["203.0.113.9", *clients]:  # the first reads no map
        paths.agree(Identity.MAILFROM, client, "user@root.example", "h.test")


@seed(7208)
@settings(
    max_examples=int(os.environ.get("SPFPOLICY_MAP_EXAMPLES", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    zone=zones(),
    clients=st.lists(st.sampled_from(CLIENTS), min_size=1, max_size=6),
    void_limit=st.sampled_from([2, 2, 1, 5]),
    fairness=st.booleans(),
)
def test_generated_trees(
    zone: dict[str, list[dict[str, Any]]], clients: list[str], void_limit: int, fairness: bool
) -> None:
    check_generated(zone, clients, void_limit, fairness)
