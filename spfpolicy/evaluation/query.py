"""pyspf, fenced: the one module that imports it, sets its DNS hook and subclasses its query.

pyspf looks DNS up through a module global, spf.DNSLookup; install_dns_hook() sets it once to a
function that finds the current evaluation's resolver and deadline in a context variable, so
concurrent requests in different threads never share or change pyspf state. Every internal of
pyspf's used here (query.check1, query.dns, lookups, void_lookups, prob, ...) is guarded by
tests/evaluation/test_pyspf_internals.py, and pyproject.toml bounds pyspf below 2.1. Two
modules build on PyspfQuery without importing pyspf: termparser (its term parser) and tracing
(a subclass that watches an evaluation for `check --trace`).
"""

from __future__ import annotations

import contextvars
import re
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

with warnings.catch_warnings():
    # pyspf 2.0.14 on PyPI has an invalid escape in a docstring. Python 3.12 and later warn about
    # it (a SyntaxWarning, shown by default; 3.11 a DeprecationWarning) whenever they compile
    # spf.py without a .pyc: a read-only install, PYTHONDONTWRITEBYTECODE. That would put it on
    # the daemon's stderr, in the journal. Ignored here: that message, from spf.py, while
    # importing it; every other warning is shown as before.
    for category in (SyntaxWarning, DeprecationWarning):
        warnings.filterwarnings(
            "ignore", "invalid escape sequence", category, module=r"(.*[/\\])?spf$"
        )
    import spf

from spfpolicy.evaluation.caches import (
    STORABLE_INCLUDE_RESULTS,
    ExpiringCache,
    IncludeKey,
    IncludeResult,
    include_key,
)
from spfpolicy.evaluation.trace import LookupTrace
from spfpolicy.model import Identity, NullObserver, Observer, SpfOutcome, SpfResult
from spfpolicy.resolver.answers import DnsError, DnsRecord, Resolver

# RFC 7208 §12: the ABNF's literals are case-insensitive (RFC 5234 §2.3), modifier names too;
# pyspf compares the names "redirect" and "exp" case-sensitively, so "REDIRECT=" did nothing.
_KNOWN_MODIFIER = re.compile(r"(redirect|exp)=", re.IGNORECASE)
# An include: naming its own record's domain (no macro: pyspf sees the name as written).
_SELF_INCLUDE_CANDIDATE = re.compile(r"[+\-~?]?include:[^%]+", re.IGNORECASE)

# RFC 7208 §4.6.4: at most 10 DNS-querying terms, and (by default) 2 void lookups.
MAX_DNS_MECHANISMS = spf.MAX_LOOKUP
DEFAULT_VOID_LOOKUP_LIMIT = spf.MAX_VOID_LOOKUPS

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

# For evaluation.termparser and evaluation.tracing, which read records with pyspf's own parser
# and watch its evaluation: its modifier test and its permanent error.
MODIFIER = spf.RE_MODIFIER
PyspfPermError = spf.PermError
domainmatch = spf.domainmatch  # whether a validated PTR name ends in a ptr term's domain
SPF_RECORD = spf.RE_SPF  # how pyspf tells an SPF record among a name's TXT strings (§4.5)

# pyspf's message prefixes for errors; the problem= text reads better without them.
_ERROR_PREFIXES = ("SPF Permanent Error: ", "SPF Temporary Error: ")


@dataclass
class LookupContext:
    """Where one evaluation's DNS questions go, by when, and where their answers are noted."""

    resolver: Resolver
    deadline: float
    trace: LookupTrace


_current: contextvars.ContextVar[LookupContext] = contextvars.ContextVar("spfpolicy_lookup")
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


class PyspfQuery(spf.query):  # type: ignore[misc]
    """pyspf's query, with what RFC 7208 asks where pyspf departs from it or keeps globals.

    - The void lookup limit of this evaluator, not of the pyspf module: pyspf counts void
      lookups against the module global MAX_VOID_LOOKUPS, and changing that per request would
      race between threads, so the count is kept here (§4.6.4).
    - include: results reused from the include cache (check1).
    - Modifier names in any case (check1), a self-include judged when reached
      (validate_mechanism), a DNS error in ptr validation skipping the name (validated_ptrs).
    """

    void_limit = spf.MAX_VOID_LOOKUPS
    ipv6_void_fairness = False
    include_cache: ExpiringCache[IncludeKey, IncludeResult] | None = None
    observer: Observer = NullObserver()
    d: str  # pyspf's current domain (the include: or redirect= target being evaluated)
    validating_ptrs = False  # inside validated_ptrs(): a DNS error skips a name

    def check1(self, record: str | None, domain: str, recursion: int) -> Any:
        """check_host() of an include: target (recursion > 0), reused when it cannot differ.

        Without macros, an included record's result depends on the client address, the record
        and the DNS answers below it alone; the lookups and void lookups it spends count
        against this evaluation's limits, so a stored result is reused only where spending
        them again stays within the limits, and the path, hence the result, is the same.
        """
        record = lower_modifier_names(record)
        cache = self.include_cache
        if not recursion or cache is None or not record or "%" in record:
            return super().check1(record, domain, recursion)
        trace = _current.get().trace
        key = include_key(str(self.i), domain, record)
        known = cache.get(key)
        reusable = (
            known is not None
            and self.lookups + known.lookups <= MAX_DNS_MECHANISMS
            and self.void_lookups + known.void_lookups <= self.void_limit
        )
        self.observer.include_cache_lookup(hit=reusable)
        if reusable:
            assert known is not None
            self.lookups += known.lookups
            self.void_lookups += known.void_lookups
            trace.expiries.append(known.expires)  # an enclosing include's lifetime too
            trace.reused_includes.append((domain, known.result[0]))
            return known.result
        lookups, void_lookups = self.lookups, self.void_lookups
        answers, macro_records = len(trace.expiries), trace.macro_records
        result = super().check1(record, domain, recursion)  # errors propagate, never stored
        if (
            result[0] in STORABLE_INCLUDE_RESULTS
            and trace.macro_records == macro_records
            and trace.reusable
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

    def validate_mechanism(self, mech: str) -> Any:
        """pyspf's parsing of a term, without its refusal of an include: of the record's own
        domain ("trivial recursion"), which made the whole record permerror before any term
        was evaluated. Terms are evaluated in order and the first match ends it (RFC 7208
        §4.6.2): a self-include only matters when reached, and the lookup limit (§4.6.4)
        ends the loop then with permerror."""
        if not _SELF_INCLUDE_CANDIDATE.fullmatch(mech):
            return super().validate_mechanism(mech)
        domain = self.d
        self.d = ""  # pyspf's refusal compares the target with self.d, and nothing else here
        try:
            return super().validate_mechanism(mech)
        finally:
            self.d = domain

    def validated_ptrs(self) -> Any:
        """pyspf's validated PTR names (the ptr mechanism, %{p}), where a DNS error on the PTR
        question or on a name's addresses skips that name instead of giving temperror: RFC
        7208 §5.5, "that domain name is skipped and the search continues"."""
        self.validating_ptrs = True
        try:
            return super().validated_ptrs()
        finally:
            self.validating_ptrs = False

    def dns(
        self,
        name: str,
        qtype: str,
        cnames: dict[str, str] | None = None,
        ignore_void: bool = False,
    ) -> Any:
        try:
            result = super().dns(name, qtype, cnames=cnames, ignore_void=True)
        except spf.TempError:
            if self.validating_ptrs:
                return []  # a failed lookup, not a void one: not counted as void either
            raise
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


def lower_modifier_names(record: str | None) -> str | None:
    """The record with "REDIRECT=", "Exp=" and the like written as pyspf recognises them."""
    if not record or record.find("=", 6) < 0:  # none; or "v=spf1" alone, as most records
        return record
    terms = record.split(" ")
    for index, term in enumerate(terms):
        match = _KNOWN_MODIFIER.match(term)
        if match and not match[1].islower():
            terms[index] = match[1].lower() + term[match.end(1) :]
    return " ".join(terms)


def install_dns_hook() -> None:
    """Point pyspf's DNS lookups at our resolvers; the one place a pyspf global is set."""
    with _hook_lock:
        spf.DNSLookup = _lookup


_NULL_OBSERVER = NullObserver()


@dataclass(frozen=True)
class QuerySettings:
    """What every query of one evaluator shares; pyspf would keep some as module globals."""

    receiver: str  # our host name, for the %{r} macro
    void_lookup_limit: int = DEFAULT_VOID_LOOKUP_LIMIT  # RFC 7208 §4.6.4
    ipv6_void_fairness: bool = False  # an AAAA-less host that has A is not a void lookup
    include_cache: ExpiringCache[IncludeKey, IncludeResult] | None = None
    observer: Observer = _NULL_OBSERVER
    query_type: type[PyspfQuery] | None = None  # a subclass that watches (evaluation.tracing)


def check_host(
    context: LookupContext,
    identity: Identity,
    *,
    client: str,
    sender: str,
    helo: str,
    settings: QuerySettings,
) -> SpfOutcome:
    """pyspf's check_host() for one identity, its DNS through context, as an SpfOutcome."""
    token = _current.set(context)
    try:
        return _check(identity, client, sender, helo, settings)
    finally:
        _current.reset(token)


def _check(
    identity: Identity, client: str, sender: str, helo: str, settings: QuerySettings
) -> SpfOutcome:
    query_type = settings.query_type or PyspfQuery
    query = query_type(
        i=client, s=sender, h=helo, receiver=settings.receiver, strict=True, querytime=0
    )
    query.void_limit = settings.void_lookup_limit
    query.ipv6_void_fairness = settings.ipv6_void_fairness
    query.include_cache = settings.include_cache
    query.observer = settings.observer
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
