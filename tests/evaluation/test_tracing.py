"""`spfpolicy check --trace`'s tree (evaluation.tracing, evaluation.treerender) for records from
the RFC 7208 suite, against expected files in tests/data/trace/, and the traced result against
the evaluator's own on every case of the suite.

An expected file is the tree as text, reviewed by hand when it was written; with
SPFPOLICY_WRITE_TRACES=1 the test writes the files instead of comparing (then review the diff).
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from pathlib import Path

import pytest

from spfpolicy.decision.deciding import is_checkable_helo
from spfpolicy.evaluation.evaluator import SpfEvaluator
from spfpolicy.evaluation.tracing import RecordNode, TermNode, traced_check
from spfpolicy.evaluation.treerender import tree_document, tree_text
from spfpolicy.model import Identity, SpfResult
from tests.conformance.test_rfc7208 import CASES, SCENARIOS, SuiteCase
from tests.support.zoneanswers import ZoneAnswers

pytestmark = pytest.mark.unit

EXPECTED = Path(__file__).resolve().parents[1] / "data" / "trace"
NOW = 1000.0
WRITE = os.environ.get("SPFPOLICY_WRITE_TRACES") == "1"

# Cases whose trees show one thing each: a file per case. (Not ptr: the order of a PTR answer's
# names, and so of the questions after it, changes from one reply to the next.)
TRACED = {
    "include-softfail": "Include mechanism semantics and syntax",
    "include-none": "Include mechanism semantics and syntax",
    "redirect-after-mechanisms2": "Record evaluation",
    "redirect-none": "Semantics of exp and other modifiers",
    "mech-over-limit": "Processing limits",
    "include-over-limit": "Processing limits",
    "void-over-limit": "Processing limits",
    "mx-multi-ip1": "MX mechanism syntax",
    "exists-ip6only": "EXISTS mechanism syntax",
    "a-dual-cidr-ip6-match": "A mechanism syntax",
    "detect-errors-anywhere": "Record evaluation",
}


def client(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def trace(case: SuiteCase) -> tuple[SpfEvaluator, object, RecordNode | None]:
    dns = ZoneAnswers(SCENARIOS[case.scenario].zonedata, now=NOW)
    evaluator = SpfEvaluator(dns, receiver="mx.receiver.example", clock=lambda: NOW)
    outcome, tree = traced_check(
        evaluator,
        Identity.MAILFROM,
        client_address=client(case.host),
        sender=case.mailfrom,
        helo=case.helo,
        deadline=time.monotonic() + 30,
    )
    return evaluator, outcome, tree


def suite_case(name: str) -> SuiteCase:
    return next(c for c in SCENARIOS[TRACED[name]].cases if c.name == name)


@pytest.mark.parametrize("name", sorted(TRACED))
def test_tree_matches_expected_file(name: str) -> None:
    case = suite_case(name)
    _, outcome, tree = trace(case)
    assert tree is not None
    text = "\n".join([f"{case.host} {case.mailfrom}: {outcome.result.value}", *tree_text(tree)])
    path = EXPECTED / f"{name}.txt"
    if WRITE:
        path.write_text(text + "\n", encoding="utf-8")
    assert text + "\n" == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("case", CASES, ids=[c.test_id for c in CASES])
def test_traced_result_is_the_evaluators(case: SuiteCase) -> None:
    """Watching changes nothing: the traced outcome is the plain evaluation's, for every case."""
    evaluator, outcome, tree = trace(case)
    identities = [Identity.MAILFROM]
    if is_checkable_helo(case.helo):
        identities.append(Identity.HELO)
    plain = evaluator.compute(
        Identity.MAILFROM,
        client_address=client(case.host),
        sender=case.mailfrom,
        helo=case.helo,
        deadline=time.monotonic() + 30,
    )
    assert outcome == plain.outcome
    if tree is not None and not tree.error and outcome.result is not SpfResult.NONE:
        assert final(tree).result == outcome.result.value
        assert_consistent(tree)


def final(node: RecordNode) -> RecordNode:
    """The record that gave the result: a redirect= chain's last."""
    return final(node.redirect) if node.redirect is not None and not node.error else node


def assert_consistent(node: RecordNode) -> None:
    """At most one term matched; none after it was reached; its qualifier gave the result."""
    statuses = [term.status for term in node.terms]
    if "matched" in statuses:
        index = statuses.index("matched")
        assert all(status == "not reached" for status in statuses[index + 1 :]), statuses
        assert node.redirect is None
    for term in node.terms:
        if term.child is not None:
            assert_consistent(term.child)
    if node.redirect is not None:
        assert "matched" not in statuses
        assert_consistent(node.redirect)


def test_the_eleventh_term_is_where_the_lookup_limit_is_exceeded() -> None:
    _, outcome, tree = trace(suite_case("include-over-limit"))
    assert outcome.result is SpfResult.PERMERROR
    assert tree is not None
    erring = [term for term in walk(tree) if term.status == "error"]
    assert len(erring) == 1
    counted = [term.lookups for term in walk(tree) if term.lookups is not None]
    assert max(counted) == 10  # the eleventh never got its count


def walk(node: RecordNode) -> list[TermNode]:
    terms = []
    for term in node.terms:
        terms.append(term)
        if term.child is not None:
            terms += walk(term.child)
    if node.redirect is not None:
        terms += walk(node.redirect)
    return terms


def test_json_holds_the_same_tree() -> None:
    _, _, tree = trace(suite_case("include-softfail"))
    document = json.loads(json.dumps(tree_document(tree)))
    assert document["domain"] == tree.domain  # type: ignore[union-attr]
    statuses = [term["status"] for term in document["terms"]]
    assert statuses == [term.status for term in tree.terms]  # type: ignore[union-attr]
    included = [t["child"] for t in document["terms"] if t["child"]]
    assert included
    assert included[0]["via"] == "include"


def test_colour_only_on_request() -> None:
    _, _, tree = trace(suite_case("include-softfail"))
    assert tree is not None
    assert "\033[" not in "\n".join(tree_text(tree))
    assert "\033[32mmatched\033[0m" in "\n".join(tree_text(tree, colour=True))
