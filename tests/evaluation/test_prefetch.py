"""Prefetching a domain's record tree (snapshot.missing, SpfEvaluator.prefetch) changes nothing
but how long a cold evaluation waits.

The prefetch is a second way into an evaluation, so it is checked against the first: generated
record trees (those of test_snapshot.py), evaluated round by round as the daemon does it (over
the cache when it can, else prefetch what is missing and try again once it has landed, else a
worker's compute()), must give the outcome of a fresh evaluation over the zone itself. The rest
pins the limits: one round per level of the tree, never more than RFC 7208 §4.6.4's ten
DNS-querying terms, ten MX exchanges, and never a name built from a macro.

`make test` runs 300 examples with a fixed seed; a longer run by hand:
SPFPOLICY_PREFETCH_EXAMPLES=5000 .venv/bin/pytest tests/evaluation/test_prefetch.py
"""

from __future__ import annotations

import functools
import os
import time

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from spfpolicy.evaluation.evaluator import Evaluation, SpfEvaluator
from spfpolicy.evaluation.snapshot import missing
from spfpolicy.model import Identity
from spfpolicy.resolver.answers import AnswerKey, DnsFailure
from spfpolicy.resolver.cache import CachingResolver
from tests.evaluation.test_snapshot import CLIENTS, HOSTS, RECEIVER, zones
from tests.support.fakedns import FakeResolver, RoundsMultiplexer

pytestmark = pytest.mark.unit

EXAMPLES = int(os.environ.get("SPFPOLICY_PREFETCH_EXAMPLES", "300"))

SENDER = {"sender": "user@sender.example", "helo": "h.test"}


def make(
    zone: dict[str, list[str]], *, truncate: bool = False
) -> tuple[SpfEvaluator, RoundsMultiplexer]:
    upstream = FakeResolver(zone)
    multiplexer = RoundsMultiplexer(upstream, truncate=truncate)
    dns_cache = CachingResolver(upstream, multiplexer=multiplexer)
    evaluator = SpfEvaluator(dns_cache, receiver=RECEIVER, dns_cache=dns_cache)
    return evaluator, multiplexer


def decide(
    evaluator: SpfEvaluator, multiplexer: RoundsMultiplexer, client: str, sender: str, helo: str
) -> tuple[Evaluation, str]:
    """As the daemon decides one identity: over the cache, prefetching while it can, else on a
    worker; the evaluation and the way it was reached."""
    arguments = {"client_address": client, "sender": sender, "helo": helo}
    deadline = time.monotonic() + 10
    asked: set[AnswerKey] = set()
    first = True
    while True:
        found = evaluator.evaluate_now(Identity.MAILFROM, result_cache=first, **arguments)
        if found is not None:
            return found, "at once" if first else "after prefetch"
        first = False
        ready: list[bool] = []
        waits = evaluator.prefetch(
            Identity.MAILFROM,
            deadline=deadline,
            asked=asked,
            ready=functools.partial(ready.append, True),
            **arguments,
        )
        if not waits:
            computed = evaluator.compute(Identity.MAILFROM, deadline=deadline, **arguments)
            return computed, "on a worker"
        multiplexer.deliver()
        assert ready == [True]  # once, when the last of them landed


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(zone=zones(), clients=st.lists(st.sampled_from(CLIENTS), min_size=1, max_size=4))
def test_prefetched_evaluations_agree_with_pyspf_over_dns(
    zone: dict[str, list[str]], clients: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    evaluator, multiplexer = make(zone)
    fresh = SpfEvaluator(FakeResolver(zone), receiver=RECEIVER)
    for client in clients:
        found, how = decide(evaluator, multiplexer, client, "user@root.example", "h.test")
        expected = fresh.evaluate(
            Identity.MAILFROM,
            client_address=client,
            sender="user@root.example",
            helo="h.test",
            deadline=time.monotonic() + 10,
        )
        assert found.outcome == expected.outcome, (zone["root.example"][0], client, how)
        event(how)
    # No evaluation over the cache met a question the walk had not foreseen.
    assert not [r for r in caplog.records if r.name == "spfpolicy.evaluation.evaluator"]


def test_a_cold_tree_waits_one_round_per_level() -> None:
    zone = {
        "sender.example": ["TXT v=spf1 mx a include:one.example -all", "MX 10 h1.example"],
        "one.example": ["TXT v=spf1 a:h2.example include:two.example"],
        "two.example": ["TXT v=spf1 ip4:198.51.100.0/24 -all"],
        **HOSTS,
    }
    evaluator, multiplexer = make(zone)
    found, how = decide(evaluator, multiplexer, "198.51.100.7", **SENDER)
    assert (how, found.outcome.result.value) == ("after prefetch", "pass")
    assert found.trace.over_snapshot
    assert multiplexer.rounds == [
        [("sender.example", "TXT")],
        [("sender.example", "MX"), ("sender.example", "A"), ("one.example", "TXT")],
        [("h1.example", "A"), ("h2.example", "A"), ("two.example", "TXT")],
    ]


def test_never_more_than_ten_dns_querying_terms_are_prefetched() -> None:
    names = [f"host{number}.example" for number in range(12)]
    record = "TXT v=spf1 " + " ".join(f"a:{name}" for name in names) + " -all"
    evaluator, multiplexer = make({"sender.example": [record]})
    found, how = decide(evaluator, multiplexer, "192.0.2.1", **SENDER)
    # The eleventh term is a permerror (too many DNS lookups): its name is never asked ahead.
    assert found.outcome.result.value == "permerror"
    assert multiplexer.rounds[1] == [(name, "A") for name in names[:10]]
    assert len(multiplexer.rounds) == 2
    # Over the cache it could not be (the walk asks beyond the limit), so a worker decided it,
    # and stopped at the limit as pyspf does: nothing more was asked.
    assert how == "on a worker"
    assert len(multiplexer.upstream.asked) == 11


def test_terms_inside_includes_and_redirect_count_in_evaluation_order() -> None:
    zone = {
        "sender.example": ["TXT v=spf1 redirect=last.example include:inner.example a:h1.example"],
        "inner.example": ["TXT v=spf1 " + " ".join(f"a:in{n}.example" for n in range(9))],
        "last.example": ["TXT v=spf1 -all"],
    }
    evaluator, _ = make(zone)
    cache = evaluator.dns_cache
    assert cache is not None
    deadline = time.monotonic() + 5
    for name in ("sender.example", "inner.example"):
        cache.query(name, "TXT", deadline)
    keys = missing(cache, "sender.example", ipv6=False)
    # include (1) and its nine terms (2-10) come first; a:h1 (11) and redirect= (12) not at all.
    assert keys == [(f"in{n}.example", "A") for n in range(9)]


def test_only_the_first_ten_mx_exchanges_are_prefetched() -> None:
    exchanges = [f"MX {n} mx{n}.example" for n in range(12)]
    evaluator, _ = make({"sender.example": ["TXT v=spf1 mx -all", *exchanges]})
    cache = evaluator.dns_cache
    assert cache is not None
    deadline = time.monotonic() + 5
    cache.query("sender.example", "TXT", deadline)
    cache.query("sender.example", "MX", deadline)
    keys = missing(cache, "sender.example", ipv6=True)
    assert keys is not None
    assert sorted(keys) == sorted((f"mx{n}.example", "AAAA") for n in range(10))


@pytest.mark.parametrize(
    "record",
    [
        pytest.param("v=spf1 a:%{d}.h1.example -all", id="macro"),
        pytest.param("v=spf1 exists:%{i}.ex.example -all", id="exists-macro"),
        pytest.param("v=spf1 ptr -all", id="ptr"),
    ],
)
def test_no_name_from_a_macro_is_prefetched(record: str) -> None:
    evaluator, multiplexer = make({"sender.example": [f"TXT {record}"], **HOSTS})
    found, how = decide(evaluator, multiplexer, "192.0.2.1", **SENDER)
    # Only the record itself was asked ahead; the macro's name was left to the worker.
    assert multiplexer.rounds == [[("sender.example", "TXT")]]
    assert how == "on a worker"
    assert found.outcome.result.value == "fail"


def test_a_question_that_did_not_stay_answered_is_left_to_a_worker() -> None:
    zone = {"sender.example": ["TXT v=spf1 ip4:192.0.2.0/24 -all"]}
    evaluator, multiplexer = make(zone, truncate=True)
    found, how = decide(evaluator, multiplexer, "192.0.2.1", **SENDER)
    # Given back unanswered, it is not asked ahead a second time: the worker asks it itself.
    assert (how, found.outcome.result.value) == ("on a worker", "pass")
    assert multiplexer.rounds == [[("sender.example", "TXT")]]


def test_a_failed_answer_is_reported_by_the_worker() -> None:
    upstream = FakeResolver({}, failing={"sender.example": DnsFailure.SERVFAIL})
    multiplexer = RoundsMultiplexer(upstream)
    dns_cache = CachingResolver(upstream, multiplexer=multiplexer)
    evaluator = SpfEvaluator(dns_cache, receiver=RECEIVER, dns_cache=dns_cache)
    found, how = decide(evaluator, multiplexer, "192.0.2.1", **SENDER)
    assert (how, found.outcome.result.value) == ("on a worker", "temperror")
    # The worker met the cached failure: upstream was asked once, ahead.
    assert upstream.asked == [("sender.example", "TXT")]
