"""Reusing include: results: only where a fresh evaluation could not differ (RFC 7208 §4.6.4, §7).

An include: target's result is kept per (client address, target, its record) when nothing below
it uses a macro; reusing it spends its DNS lookups and void lookups again, so a reuse that would
cross a limit is evaluated afresh and gives the permerror a fresh evaluation gives.
"""

from __future__ import annotations

from spfpolicy.evaluation.caches import ExpiringCache
from spfpolicy.evaluation.evaluator import Evaluation, SpfEvaluator
from spfpolicy.model import Identity, NullObserver, SpfResult
from spfpolicy.resolver.cache import CachingResolver
from tests.support.fakedns import FakeResolver

CLIENT = "198.51.100.7"
# The provider spends three lookups (a:, mx, include:) and finds the client in the last one.
PROVIDER = {
    "provider.example": ["TXT v=spf1 a:out.provider.example mx include:net.provider.example -all"],
    "out.provider.example": ["A 192.0.2.1"],
    "net.provider.example": ["TXT v=spf1 ip4:198.51.100.0/24 -all"],
}
# Seven lookups of its own before the include: 7 + 1 (the include) + 3 below it = 11 > 10.
_SEVEN = " ".join(f"a:h{n}.heavy.example" for n in range(7))
ZONE = {
    **PROVIDER,
    "light.example": ["TXT v=spf1 include:provider.example -all"],
    "heavy.example": [f"TXT v=spf1 {_SEVEN} include:provider.example -all"],
    **{f"h{n}.heavy.example": ["A 192.0.2.99"] for n in range(7)},
    # Two void lookups of its own; the provider below adds a third when mx finds nothing.
    "voidy.example": ["TXT v=spf1 a:gone1.example a:gone2.example include:voidprov.example -all"],
    "voidprov.example": ["TXT v=spf1 mx ip4:198.51.100.0/24 -all"],
    "plain.example": ["TXT v=spf1 include:voidprov.example -all"],
    # The macro is two levels down: mid.example's own record has none.
    "macro.example": ["TXT v=spf1 include:mid.example -all"],
    "other-macro.example": ["TXT v=spf1 include:mid.example -all"],
    "mid.example": ["TXT v=spf1 include:bymacro.example -all"],
    "bymacro.example": ["TXT v=spf1 exists:%{l}.allowed.example -all"],
    "alice.allowed.example": ["A 127.0.0.2"],
}


def evaluators(zone: dict[str, list[str]] | None = None) -> tuple[SpfEvaluator, FakeResolver]:
    """An evaluator with the include cache (no whole-result cache), and its upstream."""
    upstream = FakeResolver(zone or ZONE)
    evaluator = SpfEvaluator(
        CachingResolver(upstream),
        receiver="mx.receiver.example",
        include_cache=ExpiringCache(1000),
    )
    return evaluator, upstream


def evaluate(evaluator: SpfEvaluator, sender: str, client: str = CLIENT) -> Evaluation:
    return evaluator.evaluate(
        Identity.MAILFROM,
        client_address=client,
        sender=sender,
        helo="mail.client.example",
        deadline=float("inf"),
    )


def fresh(sender: str, client: str = CLIENT) -> SpfResult:
    """The result of an evaluator that has seen nothing before."""
    evaluator, _ = evaluators()
    return evaluate(evaluator, sender, client).outcome.result


def test_a_kept_include_result_is_reused_for_another_includer() -> None:
    evaluator, upstream = evaluators()
    first = evaluate(evaluator, "a@light.example")
    asked = len(upstream.asked)
    again = evaluate(evaluator, "b@light.example")
    assert first.outcome.result is again.outcome.result is SpfResult.PASS
    assert again.trace.reused_includes == [("provider.example", "pass")]
    # Only light.example's own record was looked at; nothing below the include.
    assert [q[0] for q in again.trace.questions] == ["light.example", "provider.example"]
    assert len(upstream.asked) == asked


def test_reuse_that_would_cross_the_lookup_limit_is_evaluated_afresh() -> None:
    evaluator, _ = evaluators()
    assert evaluate(evaluator, "a@light.example").outcome.result is SpfResult.PASS
    heavy = evaluate(evaluator, "a@heavy.example")
    assert heavy.trace.reused_includes == []
    assert heavy.outcome.result is SpfResult.PERMERROR
    assert heavy.outcome.result is fresh("a@heavy.example")


def test_reuse_that_would_cross_the_void_lookup_limit_is_evaluated_afresh() -> None:
    evaluator, _ = evaluators()
    assert evaluate(evaluator, "a@plain.example").outcome.result is SpfResult.PASS
    voidy = evaluate(evaluator, "a@voidy.example")
    assert voidy.trace.reused_includes == []
    assert voidy.outcome.result is SpfResult.PERMERROR
    assert voidy.outcome.result is fresh("a@voidy.example")


def test_an_include_below_which_a_macro_is_used_is_never_kept() -> None:
    evaluator, _ = evaluators()
    assert evaluate(evaluator, "alice@macro.example").outcome.result is SpfResult.PASS
    bob = evaluate(evaluator, "bob@other-macro.example")
    assert bob.trace.reused_includes == []
    assert bob.outcome.result is SpfResult.FAIL


def test_another_client_address_is_another_entry() -> None:
    evaluator, _ = evaluators()
    assert evaluate(evaluator, "a@light.example").outcome.result is SpfResult.PASS
    outsider = evaluate(evaluator, "a@light.example", client="203.0.113.50")
    assert outsider.trace.reused_includes == []
    assert outsider.outcome.result is SpfResult.FAIL


def test_a_reused_include_shortens_the_whole_results_lifetime() -> None:
    # Answers below the include live 60 s; the records themselves live a day. A whole result
    # that reused the include must not be kept longer than the answers below it.
    below = {"out.provider.example", "net.provider.example"}
    short, long = FakeResolver(ZONE, ttl=60.0), FakeResolver(ZONE, ttl=86_400.0)

    class Mixed(FakeResolver):
        def query(self, name: str, rdtype: str, deadline: float):  # type: ignore[no-untyped-def]
            source = short if name.rstrip(".").lower() in below else long
            return source.query(name, rdtype, deadline)

    evaluator = SpfEvaluator(
        CachingResolver(Mixed({})),
        receiver="mx.receiver.example",
        include_cache=ExpiringCache(1000),
    )
    evaluate(evaluator, "a@light.example")
    reusing = evaluate(evaluator, "b@light.example")
    assert reusing.trace.reused_includes
    assert reusing.trace.expires - evaluator.clock() <= 60.0


class IncludeCounter(NullObserver):
    """Counts include: cache lookups."""

    def __init__(self) -> None:
        self.lookups: list[bool] = []

    def include_cache_lookup(self, hit: bool) -> None:
        """Record one lookup."""
        self.lookups.append(hit)


def test_include_cache_lookups_are_counted() -> None:
    counter = IncludeCounter()
    evaluator = SpfEvaluator(
        CachingResolver(FakeResolver(ZONE)),
        receiver="mx.receiver.example",
        include_cache=ExpiringCache(1000),
        observer=counter,
    )
    evaluate(evaluator, "a@light.example")  # provider.example, then net.provider.example below
    assert counter.lookups == [False, False]
    evaluate(evaluator, "b@light.example")
    assert counter.lookups == [False, False, True]
    evaluate(evaluator, "a@heavy.example")  # known, but reusing it would cross the limit
    assert counter.lookups[3] is False
