"""check_host() for one identity of one request, with the exact SPF result cache in front.

evaluate_now() never blocks (for the I/O thread): the result cache, or pyspf over a snapshot of
cached DNS holding every answer the domain's records may need (spfpolicy.evaluation.snapshot).
compute() runs pyspf (spfpolicy.evaluation.query) over the resolver, waiting for DNS, and keeps
what may be reused; evaluate() is the one, then the other.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from spfpolicy.evaluation.addressmap import MapAnswer
from spfpolicy.evaluation.caches import ExpiringCache, IncludeKey, IncludeResult, ResultCache
from spfpolicy.evaluation.domains import checked_names, domain_text
from spfpolicy.evaluation.mapcache import AddressMaps
from spfpolicy.evaluation.query import (
    DEFAULT_VOID_LOOKUP_LIMIT,
    LookupContext,
    QuerySettings,
    check_host,
    install_dns_hook,
)
from spfpolicy.evaluation.snapshot import OutsideSnapshot, SnapshotResolver, missing, snapshot
from spfpolicy.evaluation.trace import LookupTrace
from spfpolicy.model import Identity, NullObserver, Observer, SpfOutcome, SpfResult
from spfpolicy.resolver.answers import AnswerCache, AnswerKey, DnsAnswer, Resolver

log = logging.getLogger(__name__)

# Marks a result cache key made of the domain alone; a sender never contains NUL.
_DOMAIN_KEY = "\0domain"
# The deadline of an evaluation over a snapshot: it never waits for anything.
_NO_WAIT = float("inf")
_MAP_RESULTS = {result.value: result for result in SpfResult}


@dataclass(frozen=True)
class Evaluation:
    """An SpfOutcome with the DNS it needed."""

    outcome: SpfOutcome
    trace: LookupTrace


class SpfEvaluator:
    """Runs check_host() for one identity of one request."""

    def __init__(
        self,
        resolver: Resolver,
        *,
        receiver: str,
        void_lookup_limit: int = DEFAULT_VOID_LOOKUP_LIMIT,
        ipv6_void_fairness: bool = False,
        result_cache: ResultCache | None = None,
        include_cache: ExpiringCache[IncludeKey, IncludeResult] | None = None,
        dns_cache: AnswerCache | None = None,
        address_maps: AddressMaps | None = None,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        install_dns_hook()
        self.resolver = resolver
        self.result_cache = result_cache
        self.dns_cache = dns_cache  # evaluations over a snapshot of it, when it is given
        # A map per domain and address family, where a tree has one (evaluation.addressmap).
        self.address_maps = address_maps if dns_cache is not None else None
        self.observer: Observer = observer or NullObserver()
        self.clock = clock
        self.settings = QuerySettings(
            receiver,
            void_lookup_limit,
            ipv6_void_fairness,
            include_cache,
            self.observer,
        )

    def evaluate(
        self, identity: Identity, *, client_address: str, sender: str, helo: str, deadline: float
    ) -> Evaluation:
        """check_host() for the HELO identity (sender ignored) or the MAIL FROM identity.

        For the HELO identity and for the null sender, RFC 7208 §2.3/§2.4 check
        "postmaster@<helo>". Raises nothing for DNS or record trouble: those are results.
        An internationalised domain is checked, cached and reported as A-labels (a_label).
        """
        known = self.evaluate_now(identity, client_address=client_address, sender=sender, helo=helo)
        if known is not None:
            return known
        return self.compute(
            identity, client_address=client_address, sender=sender, helo=helo, deadline=deadline
        )

    def evaluate_now(
        self,
        identity: Identity,
        *,
        client_address: str,
        sender: str,
        helo: str,
        result_cache: bool = True,
        fetched: Collection[AnswerKey] = frozenset(),
    ) -> Evaluation | None:
        """The evaluation if it needs no wait: from the result cache, or over cached DNS when
        every answer the domain's record tree may need is cached; None when DNS must be asked
        (then prefetch() or compute()). result_cache False skips the result cache (asked
        already for this request); fetched are the questions prefetched for it (not hits)."""
        checked_sender, helo = checked_names(identity, sender, helo)
        if self.result_cache is not None and result_cache:
            cached = self._cached(identity, client_address, checked_sender, helo)
            self.observer.result_cache_lookup(hit=cached is not None)
            if cached is not None:
                return Evaluation(cached, LookupTrace(from_result_cache=True))
        if self.dns_cache is None:
            return None
        return self._over_cached_dns(
            identity, client_address, (sender, checked_sender), helo, fetched
        )

    def _over_cached_dns(
        self,
        identity: Identity,
        client_address: str,
        senders: tuple[str, str],
        helo: str,
        fetched: Collection[AnswerKey],
    ) -> Evaluation | None:
        """evaluate_now() past the result cache: the domain's address map, else pyspf over a
        snapshot of cached DNS; None when something is not cached."""
        sender, checked_sender = senders
        domain, ipv6 = domain_text(checked_sender, helo), ":" in client_address
        answers = None
        if self.address_maps is not None:
            found = self.address_maps.get(domain, ipv6)
            if found is None:
                answers = self._snapshot(domain, ipv6)
                if answers is None:
                    return None
                found = self.address_maps.build(domain, ipv6, answers)
            answer = self.address_maps.check(found, client_address, fetched)
            if answer is not None:
                return self._from_map(answer, identity, client_address, (checked_sender, helo))
        if answers is None:
            answers = self._snapshot(domain, ipv6)
        if answers is None:
            return None
        resolver = SnapshotResolver(answers, self.observer, fetched)
        context = LookupContext(resolver, _NO_WAIT, LookupTrace(over_snapshot=True))
        try:
            return self._run(identity, client_address, (sender, checked_sender), helo, context)
        except OutsideSnapshot:
            log.error("an evaluation over cached DNS needed more (a bug)", exc_info=True)
            return None

    def _snapshot(self, domain: str, ipv6: bool) -> dict[AnswerKey, DnsAnswer] | None:
        assert self.dns_cache is not None
        return snapshot(
            self.dns_cache, domain, ipv6=ipv6, ipv6_void_fairness=self.settings.ipv6_void_fairness
        )

    def _from_map(
        self, answer: MapAnswer, identity: Identity, client_address: str, checked: tuple[str, str]
    ) -> Evaluation:
        """The evaluation an address map gave, kept in the result cache as pyspf's would be;
        checked: the sender and HELO name as check_host() sees them."""
        checked_sender, checked_helo = checked
        result = _MAP_RESULTS[answer.result]
        outcome = SpfOutcome(
            identity,
            result,
            domain_text(checked_sender, checked_helo),
            checked_sender or f"postmaster@{checked_helo}",
            mechanism=answer.mechanism,
            publishes_no_mail=answer.trace.no_mail_record and result is SpfResult.FAIL,
        )
        self._keep(outcome, answer.trace, identity, client_address, checked)
        return Evaluation(outcome, answer.trace)

    def prefetch(
        self,
        identity: Identity,
        *,
        client_address: str,
        sender: str,
        helo: str,
        deadline: float,
        asked: set[AnswerKey],
        ready: Callable[[], None],
    ) -> bool:
        """Start the DNS questions that evaluate_now() lacks, without waiting; True when ready()
        will be called once they have landed (then evaluate_now() again, result_cache=False).

        False leaves the evaluation to compute() on a worker: a tree no snapshot can serve
        (macros, ptr), nothing new to ask, or a question asked before for this request (in
        asked, which this extends): its answer failed or did not stay in the cache.
        """
        if self.dns_cache is None:
            return False
        checked_sender, helo = checked_names(identity, sender, helo)
        keys = missing(
            self.dns_cache,
            domain_text(checked_sender, helo),
            ipv6=":" in client_address,
            ipv6_void_fairness=self.settings.ipv6_void_fairness,
        )
        if not keys or not asked.isdisjoint(keys):
            return False
        asked.update(keys)
        return self.dns_cache.prefetch(keys, deadline, ready)

    def compute(
        self, identity: Identity, *, client_address: str, sender: str, helo: str, deadline: float
    ) -> Evaluation:
        """check_host() over the resolver, without asking the result cache first; stores the
        outcome there when a new evaluation is certain to give the same until it expires."""
        checked_sender, helo = checked_names(identity, sender, helo)
        context = LookupContext(self.resolver, deadline, LookupTrace())
        return self._run(identity, client_address, (sender, checked_sender), helo, context)

    def _run(
        self,
        identity: Identity,
        client_address: str,
        senders: tuple[str, str],
        helo: str,
        context: LookupContext,
    ) -> Evaluation:
        """check_host() through context; keep the outcome in the result cache where it may be.

        senders: the sender as the request gave it, and as check_host() sees it.
        """
        sender, checked_sender = senders
        trace = context.trace
        try:
            outcome = check_host(
                context,
                identity,
                client=client_address,
                sender=checked_sender,
                helo=helo,
                settings=self.settings,
            )
        except OutsideSnapshot:
            raise
        except Exception:
            # A pyspf bug on a junk record must not cost the request: temperror, logged. The
            # exception's text stays in the log: the problem may reach the SMTP client.
            log.exception("SPF %s evaluation failed for sender=%r", identity, sender[:200])
            outcome = SpfOutcome(
                identity, SpfResult.TEMPERROR, "", sender, problem="internal error"
            )
            return Evaluation(outcome, LookupTrace())
        if trace.no_mail_record and outcome.result is SpfResult.FAIL:
            outcome = dataclasses.replace(outcome, publishes_no_mail=True)
        if trace.stale_answers:
            outcome = dataclasses.replace(outcome, stale_dns=True)
        self._keep(outcome, trace, identity, client_address, (checked_sender, helo))
        return Evaluation(outcome, trace)

    def _keep(
        self,
        outcome: SpfOutcome,
        trace: LookupTrace,
        identity: Identity,
        client_address: str,
        checked: tuple[str, str],
    ) -> None:
        """Store outcome in the result cache where a new evaluation is certain to agree;
        checked: the sender and HELO name as check_host() saw them."""
        checked_sender, helo = checked
        if self.result_cache is not None and self._reusable(outcome, trace):
            if trace.macros:
                key = (identity, client_address, checked_sender, helo)
            else:
                key = (identity, client_address, _DOMAIN_KEY, domain_text(checked_sender, helo))
            self.result_cache.put(key, outcome, trace.expires)

    def _cached(self, identity: Identity, client: str, sender: str, helo: str) -> SpfOutcome | None:
        """A stored outcome for these inputs: by domain when no record used a macro, else exact.

        Without macros, check_host() depends on the client address and the domain alone
        (RFC 7208 §4: <sender> and the HELO name reach the result only through macros, §7), so
        every sender of a domain shares one entry; the outcome then names this request's sender.
        """
        assert self.result_cache is not None
        domain = domain_text(sender, helo)
        by_domain = self.result_cache.get((identity, client, _DOMAIN_KEY, domain))
        if by_domain is not None:
            checked = sender if sender else f"postmaster@{helo}"
            if by_domain.sender == checked and by_domain.domain == domain:
                return by_domain
            return dataclasses.replace(by_domain, sender=checked, domain=domain)
        return self.result_cache.get((identity, client, sender, helo))

    def _reusable(self, outcome: SpfOutcome, trace: LookupTrace) -> bool:
        """Whether a new evaluation is certain to give the same outcome until trace.expires."""
        return (
            trace.reusable
            and outcome.result is not SpfResult.TEMPERROR
            and trace.expires > self.clock()
        )
