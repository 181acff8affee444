"""check_host() for one identity: pyspf's evaluation over our resolver.

This is the only module that imports pyspf. pyspf looks DNS up through a module global,
spf.DNSLookup; install_dns_hook() sets it once to a function that finds the current
request's resolver and deadline in a context variable, so concurrent requests in different
threads never share or change pyspf state.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import spf

from spfpolicy import cacheonly
from spfpolicy.evaluation.caches import ExpiringCache, ResultCache
from spfpolicy.evaluation.domains import a_label, a_label_mailbox, domain_text
from spfpolicy.evaluation.trace import LookupTrace
from spfpolicy.model import Identity, NullObserver, Observer, SpfOutcome, SpfResult
from spfpolicy.resolver.answers import DnsError, DnsRecord, Resolver

log = logging.getLogger(__name__)

# pyspf names errors the RFC 4408 way in places; map every name it may return.
_RESULTS = {
    "pass": SpfResult.PASS,
    "fail": SpfResult.FAIL,
    "softfail": SpfResult.SOFTFAIL,
    "neutral": SpfResult.NEUTRAL,
    "none": SpfResult.NONE,
    "temperror": SpfResult.TEMPERROR,
    "error": SpfResult.TEMPERROR,
    "permerror": SpfResult.PERMERROR,
    "unknown": SpfResult.PERMERROR,
}

# pyspf's message prefixes for errors; the problem= text reads better without them.
_ERROR_PREFIXES = ("SPF Permanent Error: ", "SPF Temporary Error: ")


IncludeKey = tuple[str, str, str]  # client address, include target, its record


def include_key(client: str, domain: str, record: str) -> IncludeKey:
    """The include: cache's key. Every evaluation fetches a record as a new string; interned,
    the thousands of entries for one provider's record share one copy."""
    return (client, domain.lower(), sys.intern(record))


@dataclass(frozen=True, slots=True)
class IncludeResult:
    """What evaluating one include: target's record gave, and what it spent."""

    result: tuple[str, int, str]  # pyspf's (result, code, text); includes use only the result
    lookups: int  # DNS-querying terms evaluated below it (RFC 7208 §4.6.4)
    void_lookups: int
    expires: float  # when the first DNS answer below it stops being valid


# An include's "none" is a permerror for the includer (RFC 7208 §5.2), so it is kept too;
# errors are exceptions and never kept.
_STORABLE_INCLUDE_RESULTS = frozenset({"pass", "fail", "softfail", "neutral", "none"})


@dataclass
class _LookupContext:
    resolver: Resolver
    deadline: float
    trace: LookupTrace


_current: contextvars.ContextVar[_LookupContext] = contextvars.ContextVar("spfpolicy_lookup")
_hook_lock = threading.Lock()


def _lookup(name: str, qtype: str, strict: object = True, timeout: object = None) -> Iterator[Any]:
    """pyspf's DNSLookup signature, answered by the current request's resolver."""
    context = _current.get()
    try:
        answer = context.resolver.query(name, qtype, context.deadline)
    except DnsError as error:
        context.trace.questions.append((name, qtype, error.failure.value))
        context.trace.reusable = False
        raise spf.TempError(f"DNS {error.failure.value}: {error}") from error
    context.trace.record(name, qtype, answer)
    return iter([_to_pyspf(record) for record in answer.records])


def _to_pyspf(record: DnsRecord) -> tuple[tuple[str, str], Any]:
    return ((record.name, record.rdtype), record.value)


class _Query(spf.query):  # type: ignore[misc]
    """pyspf's query with the void lookup limit of this evaluator, not of the pyspf module.

    pyspf counts void lookups against the module global MAX_VOID_LOOKUPS; changing that per
    request would race between threads, so the count is kept here instead (RFC 7208 §4.6.4).
    """

    void_limit = spf.MAX_VOID_LOOKUPS
    ipv6_void_fairness = False
    include_cache: ExpiringCache[IncludeKey, IncludeResult] | None = None
    observer: Observer = NullObserver()

    def check1(self, record: str, domain: str, recursion: int) -> Any:
        """check_host() of an include: target (recursion > 0), reused when it cannot differ.

        Without macros, an included record's result depends on the client address, the record
        and the DNS answers below it alone; the lookups and void lookups it spends count
        against this evaluation's limits, so a stored result is reused only where spending
        them again stays within the limits, and the path, hence the result, is the same.
        """
        cache = self.include_cache
        if not recursion or cache is None or not record or "%" in record:
            return super().check1(record, domain, recursion)
        trace = _current.get().trace
        key = include_key(str(self.i), domain, record)
        known = cache.get(key)
        reusable = (
            known is not None
            and self.lookups + known.lookups <= spf.MAX_LOOKUP
            and self.void_lookups + known.void_lookups <= self.void_limit
        )
        cacheonly.observe(functools.partial(self.observer.include_cache_lookup, hit=reusable))
        if reusable:
            assert known is not None
            self.lookups += known.lookups
            self.void_lookups += known.void_lookups
            trace.expires = min(trace.expires, known.expires)
            trace.expiries.append(known.expires)  # an enclosing include's lifetime too
            trace.reused_includes.append((domain, known.result[0]))
            return known.result
        lookups, void_lookups = self.lookups, self.void_lookups
        answers, macro_records = len(trace.expiries), trace.macro_records
        result = super().check1(record, domain, recursion)  # errors propagate, never stored
        attempt = cacheonly.current()
        if (
            result[0] in _STORABLE_INCLUDE_RESULTS
            and trace.macro_records == macro_records
            and trace.reusable
            and not (attempt is not None and attempt.missed)
        ):
            expires = min(trace.expiries[answers:], default=trace.expires)
            cache.put(
                key,
                IncludeResult(
                    result, self.lookups - lookups, self.void_lookups - void_lookups, expires
                ),
                expires,
            )
        return result

    def dns(
        self,
        name: str,
        qtype: str,
        cnames: dict[str, str] | None = None,
        ignore_void: bool = False,
    ) -> Any:
        result = super().dns(name, qtype, cnames=cnames, ignore_void=True)
        # cnames is set when pyspf calls itself to follow a CNAME: that is the same lookup,
        # counted once by the outermost call (pyspf counted it at every hop).
        if result or ignore_void or cnames:
            return result
        if qtype == "AAAA" and self.ipv6_void_fairness and super().dns(name, "A", ignore_void=True):
            return result  # the host exists, it only lacks IPv6: not a void lookup
        self.void_lookups += 1
        if self.void_lookups > self.void_limit:
            raise spf.PermError(f"Void lookup limit of {self.void_limit} exceeded")
        return result


def install_dns_hook() -> None:
    """Point pyspf's DNS lookups at our resolvers; the one place a pyspf global is set."""
    with _hook_lock:
        spf.DNSLookup = _lookup


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
        void_lookup_limit: int = spf.MAX_VOID_LOOKUPS,
        ipv6_void_fairness: bool = False,
        result_cache: ResultCache | None = None,
        include_cache: ExpiringCache[IncludeKey, IncludeResult] | None = None,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        install_dns_hook()
        self.resolver = resolver
        self.receiver = receiver
        self.void_lookup_limit = void_lookup_limit
        self.ipv6_void_fairness = ipv6_void_fairness
        self.result_cache = result_cache
        self.include_cache = include_cache
        self.observer: Observer = observer or NullObserver()
        self.clock = clock

    def evaluate(
        self, identity: Identity, *, client_address: str, sender: str, helo: str, deadline: float
    ) -> Evaluation:
        """check_host() for the HELO identity (sender ignored) or the MAIL FROM identity.

        For the HELO identity and for the null sender, RFC 7208 §2.3/§2.4 check
        "postmaster@<helo>". Raises nothing for DNS or record trouble: those are results.
        An internationalised domain is checked, cached and reported as A-labels (a_label).
        """
        sender, helo = a_label_mailbox(sender) if sender else "", a_label(helo)
        with cacheonly.all_or_nothing():
            return self._evaluate(identity, client_address, sender, helo, deadline)

    def _evaluate(
        self, identity: Identity, client_address: str, sender: str, helo: str, deadline: float
    ) -> Evaluation:
        checked_sender = "" if identity is Identity.HELO else sender
        if self.result_cache is not None:
            cached = self._cached(identity, client_address, checked_sender, helo)
            hit = cached is not None
            cacheonly.observe(lambda: self.observer.result_cache_lookup(hit=hit))
            if cached is not None:
                return Evaluation(cached, LookupTrace(from_result_cache=True))
        trace = LookupTrace()
        token = _current.set(_LookupContext(self.resolver, deadline, trace))
        try:
            outcome = self._check(identity, client_address, checked_sender, helo)
        finally:
            _current.reset(token)
        attempt = cacheonly.current()
        if attempt is not None and attempt.missed:
            # pyspf swallows every exception while fetching an exp= text: the outcome may lack
            # what the cache did not hold, so it must be neither used nor stored.
            raise cacheonly.NotCached("an answer pyspf needed is not cached")
        if trace.no_mail_record and outcome.result is SpfResult.FAIL:
            outcome = dataclasses.replace(outcome, publishes_no_mail=True)
        if self.result_cache is not None and self._reusable(outcome, trace):
            if trace.macros:
                key = (identity, client_address, checked_sender, helo)
            else:
                key = (identity, client_address, _DOMAIN_KEY, domain_text(checked_sender, helo))
            self.result_cache.put(key, outcome, trace.expires)
        return Evaluation(outcome, trace)

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

    def _check(self, identity: Identity, client: str, sender: str, helo: str) -> SpfOutcome:
        query = _Query(i=client, s=sender, h=helo, receiver=self.receiver, strict=True, querytime=0)
        query.void_limit = self.void_lookup_limit
        query.ipv6_void_fairness = self.ipv6_void_fairness
        query.include_cache = self.include_cache
        query.observer = self.observer
        # An empty default explanation tells a domain's own exp= text (RFC 7208 §6.2) apart.
        query.set_default_explanation("")
        result_name, _code, explanation = query.check()
        # pyspf keeps a permerror with its traceback, a cycle through this whole stack.
        query.perm_error = None
        result = _RESULTS.get(result_name, SpfResult.PERMERROR)
        problem = ""
        if result in (SpfResult.TEMPERROR, SpfResult.PERMERROR):
            problem = str(getattr(query, "prob", "") or explanation)
            explanation = ""
        for prefix in _ERROR_PREFIXES:
            problem = problem.removeprefix(prefix)
        return SpfOutcome(
            identity=identity,
            result=result,
            domain=str(query.o or ""),
            sender=str(query.s or ""),
            explanation=str(explanation or "") if result is SpfResult.FAIL else "",
            mechanism=str(query.mechanism or "") if result is not SpfResult.NONE else "",
            problem=problem,
        )


# Marks a result cache key made of the domain alone; a sender never contains NUL.
_DOMAIN_KEY = "\0domain"
