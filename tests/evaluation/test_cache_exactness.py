"""The caches change nothing: on the benchmark's DNS world, cached and uncached results agree.

The caches: DNS answers, whole results, and the results of include: targets.

Every message of a small synthetic world (shared providers, include chains, redirects, a/mx,
IPv6, permerrors) is evaluated twice over a real DNS server on loopback: once by an evaluator
with the DNS cache and the result cache, once by one that asks DNS afresh every time.
"""

from __future__ import annotations

import time

import pytest

from spfpolicy.decision.deciding import is_checkable_helo
from spfpolicy.evaluation.caches import ExpiringCache, ResultCache
from spfpolicy.evaluation.evaluator import SpfEvaluator
from spfpolicy.model import Identity
from spfpolicy.resolver.cache import CachingResolver
from spfpolicy.resolver.stub import StubResolver
from tests.support.fixtures import running_dns_server
from tests.support.traffic import generate_messages
from tests.support.world import build_world

pytestmark = pytest.mark.daemon

DOMAINS = 300
MESSAGES = 1200


@pytest.mark.parametrize("result_caches", [True, False], ids=["all-caches", "dns-and-snapshots"])
def test_cached_and_uncached_results_are_identical(
    result_caches: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the result and include caches, every new client of a domain whose record tree
    is all in the DNS cache is evaluated over a snapshot of it: the second path, checked here."""
    world = build_world(domains=DOMAINS, seed=11)
    messages = generate_messages(world, MESSAGES, seed=12, timeout_share=0)
    with running_dns_server(world.zone) as port:
        stub = StubResolver(["127.0.0.1"], port=port, query_timeout=2.0)
        dns_cache = CachingResolver(stub)
        cached = SpfEvaluator(
            dns_cache,
            receiver="mx.receiver.example",
            result_cache=ResultCache(10_000) if result_caches else None,
            include_cache=ExpiringCache(10_000) if result_caches else None,
            dns_cache=dns_cache,
        )
        fresh = SpfEvaluator(stub, receiver="mx.receiver.example")
        reused = compared = reused_includes = snapshots = 0
        for message in messages:
            identities = [Identity.MAILFROM]
            if is_checkable_helo(message.helo_name):
                identities.append(Identity.HELO)
            for identity in identities:
                arguments = {
                    "client_address": message.client_address,
                    "sender": message.sender,
                    "helo": message.helo_name,
                }
                deadline = time.monotonic() + 10
                first = cached.evaluate(identity, deadline=deadline, **arguments)
                second = fresh.evaluate(identity, deadline=deadline, **arguments)
                assert first.outcome == second.outcome, (message, identity)
                reused += first.trace.from_result_cache
                snapshots += first.trace.over_snapshot
                reused_includes += len(first.trace.reused_includes)
                compared += 1
    # The comparison means something only if the caches were really used.
    assert compared >= MESSAGES
    print(
        f"{compared} evaluations compared, {reused} answered from the result cache, "
        f"{reused_includes} include: results reused, {snapshots} over a DNS snapshot"
    )
    # No evaluation over a snapshot met a question it lacked (logged as a bug if one did).
    assert not [r for r in caplog.records if "needed more" in r.getMessage()]
    if result_caches:
        assert reused >= compared // 4
        assert reused_includes >= compared // 10
    else:
        assert snapshots >= compared // 4
