"""The evaluation as a tree: every record fetched, each term with what it did, the DNS below.

`spfpolicy check --trace` runs the daemon's own evaluator (pyspf through evaluation.query) with
a query subclass that watches it work. pyspf reads a record's mechanisms first, then evaluates
them in order; each mechanism it reads is handed back with its target tagged by the term it
belongs to, so that when pyspf later asks DNS for that target, matches the client against it,
or descends into its include, the tree knows which term is at work. What pyspf does without a
call (all, an ip4 term for an IPv6 client) is read off the order: terms after the one that
matched were not reached, an all after the last term at work is the one that matched.
The result shown is the evaluation's own; the tree only says how it came about.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from spfpolicy.evaluation.domains import checked_names
from spfpolicy.evaluation.query import LookupContext, PyspfQuery, check_host, domainmatch
from spfpolicy.evaluation.trace import LookupTrace, answer_summary
from spfpolicy.model import Identity, SpfOutcome, SpfResult
from spfpolicy.resolver.answers import DnsAnswer, DnsError, Resolver

DNS_TERMS = frozenset({"include", "a", "mx", "ptr", "exists"})  # RFC 7208 §4.6.4


@dataclass
class DnsNote:
    """One question asked of the resolver, and what came back."""

    name: str
    rdtype: str
    found: str  # "2 records", "nxdomain", "no records", "timeout", ...
    ttl: int | None  # seconds the answer stays valid; None for a failure
    cached: bool
    records: tuple[str, ...] = ()
    stale: bool = False  # expired, served as upstream failed ([dns] serve_stale)


@dataclass
class TermNode:
    """One mechanism of a record, as the evaluation met it."""

    text: str
    kind: str = ""
    status: str = "not reached"  # matched, no match, not reached, skipped, error
    lookups: int | None = None  # DNS-querying terms counted once this one was (limit 10)
    voids: int | None = None  # void lookups counted after it (limit 2)
    dns: list[DnsNote] = field(default_factory=list)
    child: RecordNode | None = None  # an include's record
    detail: str = ""
    target: str = ""


@dataclass
class RecordNode:
    """One SPF record: where it came from, its terms, how it ended."""

    domain: str
    text: str
    via: str  # "top", "include" or "redirect"
    recursion: int
    terms: list[TermNode] = field(default_factory=list)
    dns: list[DnsNote] = field(default_factory=list)  # its own TXT question, exp= targets
    result: str = ""
    error: str = ""
    refused: bool = False  # a term failed to parse: no term was evaluated (RFC 7208 §4.6)
    redirect: RecordNode | None = None
    redirect_dns: list[DnsNote] = field(default_factory=list)


class _Tagged(str):
    """A mechanism's target as pyspf keeps it, marked with the term it came from."""

    __slots__ = ("term",)
    term: TermNode


class Tracer:
    """Builds the tree of one evaluation; query_type() is the pyspf query that feeds it."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.root: RecordNode | None = None
        self.stack: list[RecordNode] = []
        self.active: TermNode | None = None  # the term whose DNS is being asked
        self.pending_dns: list[DnsNote] = []  # a record's TXT, asked before it is entered
        self.awaiting = False  # a redirect= target's record is being fetched

    def resolver(self, inner: Resolver) -> Resolver:
        """inner, with every question and answer noted in the tree."""
        return _NotingResolver(inner, self)

    def note(self, note: DnsNote) -> None:
        """File a DNS question under the term at work, the record (exp=), or the record about
        to be entered (its own TXT question)."""
        if self.active is not None:
            self.active.dns.append(note)
        elif self.awaiting or not self.stack:
            self.pending_dns.append(note)
        else:
            self.stack[-1].dns.append(note)

    def enter(self, domain: str, text: str, recursion: int) -> RecordNode:
        parent = self.stack[-1] if self.stack else None
        if parent is None:
            via = "top"
        elif recursion > parent.recursion:
            via = "include"
        else:
            via = "redirect"
        node = RecordNode(domain, text, via, recursion)
        if via == "top":
            node.dns, self.pending_dns = self.pending_dns, []
            self.root = node
        elif via == "include" and self.active is not None:
            self.active.child = node
        elif parent is not None:
            parent.redirect = node
            parent.redirect_dns, self.pending_dns = self.pending_dns, []
        self.stack.append(node)
        self.active, self.awaiting = None, False
        return node

    def leave(self, node: RecordNode, result: str = "", error: str = "") -> None:
        node.result, node.error = result, error
        if self.pending_dns:  # a redirect= target without a record: never entered
            node.redirect_dns.extend(self.pending_dns)
            self.pending_dns, self.awaiting = [], False
        _settle(node)
        self.stack.pop()
        parent = self.stack[-1] if self.stack else None
        self.active = None
        if parent is not None and node.via == "include":
            self.active = next((t for t in parent.terms if t.child is node), None)
            if self.active is not None and not error:
                self.active.status = "matched" if result == "pass" else "no match"
                self.active.detail = f"include gave {result}"

    def query_type(self) -> type[PyspfQuery]:
        """The query class that reports to this tracer."""
        return type("TracingQuery", (_TracingQuery,), {"tracer": self})


def _settle(node: RecordNode) -> None:
    """What the calls did not say: where the record stopped, which all matched, which term
    an error belongs to, and that everything after the stop was not reached."""
    if node.refused:
        return  # nothing was evaluated
    worked = [index for index, term in enumerate(node.terms) if term.status != "not reached"]
    last = worked[-1] if worked else -1
    for term in node.terms[:last]:
        if term.status == "not reached" and term.kind in ("ip4", "ip6"):
            term.status = "skipped"  # evaluated without a call: the other address family
            term.detail = "the client is of the other address family"
    if last >= 0 and node.terms[last].status == "matched":
        return
    later = node.terms[last + 1 :]
    if node.error:
        stopped = node.terms[last] if last >= 0 else None
        if stopped is not None and stopped.child is not None and stopped.child.result == "none":
            stopped.status, stopped.detail = "error", node.error  # an include without a record
        failing = next((t for t in later if t.kind in DNS_TERMS), None)
        if failing is not None and "DNS lookups" in node.error:
            failing.status, failing.detail = "error", node.error
        return
    for term in later:
        if term.kind == "all":
            term.status = "matched"
            return
        if term.kind in ("ip4", "ip6"):
            term.status = "skipped"
            term.detail = "the client is of the other address family"


class _TracingQuery(PyspfQuery):
    """PyspfQuery, reporting each step to its tracer (a subclass per evaluation sets it)."""

    tracer: Tracer

    def check1(self, record: str | None, domain: str, recursion: int) -> Any:
        node = self.tracer.enter(str(domain), record or "", recursion)
        try:
            result = super().check1(record, domain, recursion)
        except Exception as error:
            self.tracer.leave(node, error=str(error))
            raise
        self.tracer.leave(node, result=str(result[0]))
        return result

    def validate_mechanism(self, mech: str) -> Any:
        term = TermNode(str(mech))
        if self.tracer.stack:
            self.tracer.stack[-1].terms.append(term)
        try:
            text, kind, target, cidr, result = super().validate_mechanism(mech)
        except Exception as error:
            term.status, term.detail = "error", str(error)
            if self.tracer.stack:
                self.tracer.stack[-1].refused = True
            raise
        term.kind, term.target = str(kind), str(target)
        tagged = _Tagged(target)
        tagged.term = term
        return text, kind, tagged, cidr, result

    def _watch(self, target: object, call: Any) -> Any:
        term = getattr(target, "term", None)
        if term is None:
            return call()
        self.tracer.active = term
        term.lookups = self.lookups
        try:
            found = call()
        except Exception as error:
            term.status, term.detail = "error", str(error)
            raise
        finally:
            term.voids = self.void_lookups
        return found

    def dns_a(self, domainname: str, A: str = "A") -> Any:  # noqa: N803 - pyspf's name
        found = self._watch(domainname, lambda: super(_TracingQuery, self).dns_a(domainname, A))
        term = getattr(domainname, "term", None)
        if term is not None and term.kind == "exists":
            term.status = "matched" if found else "no match"
        return found

    def dns_mx(self, domainname: str) -> Any:
        return self._watch(domainname, lambda: super(_TracingQuery, self).dns_mx(domainname))

    def dns_spf(self, domain: str) -> Any:
        if not isinstance(domain, _Tagged):  # the domain's own record, or redirect='s
            self.tracer.active, self.tracer.awaiting = None, bool(self.tracer.stack)
        return self._watch(domain, lambda: super(_TracingQuery, self).dns_spf(domain))

    def cidrmatch(self, ipaddrs: Any, n: int) -> Any:
        addresses = list(ipaddrs)
        term = next((a.term for a in addresses if isinstance(a, _Tagged)), self.tracer.active)
        matched = super().cidrmatch(addresses, n)
        if term is not None:
            term.status = "matched" if matched else "no match"
            if term.lookups is None:
                term.lookups, term.voids = self.lookups, self.void_lookups
        return matched

    def validated_ptrs(self) -> Any:
        node = self.tracer.stack[-1] if self.tracer.stack else None
        term = next(
            (t for t in (node.terms if node else []) if t.kind == "ptr" and t.lookups is None),
            None,
        )
        self.tracer.active = term
        if term is not None:
            term.lookups = self.lookups
        names = super().validated_ptrs()
        if term is not None:
            term.voids = self.void_lookups
            term.status = "matched" if domainmatch(names, term.target) else "no match"
            term.detail = "validated names: " + (", ".join(names) or "none")
        return names


class _NotingResolver:
    """A Resolver that notes each question and its answer in the tracer."""

    def __init__(self, inner: Resolver, tracer: Tracer) -> None:
        self.inner = inner
        self.tracer = tracer

    def query(self, name: str, rdtype: str, deadline: float) -> DnsAnswer:
        """inner.query(), noted."""
        try:
            answer = self.inner.query(name, rdtype, deadline)
        except DnsError as error:
            self.tracer.note(DnsNote(name, rdtype, error.failure.value, None, False))
            raise
        found = answer_summary(answer)
        remaining = answer.expires - self.tracer.clock() if answer.expires else answer.ttl
        # Sorted: servers rotate the order of a reply's records, and a tree must read the same.
        records = tuple(sorted(_record_text(r.rdtype, r.value) for r in answer.records))
        ttl = max(0, round(remaining))
        note = DnsNote(name, rdtype, found, ttl, answer.from_cache, records, answer.stale)
        self.tracer.note(note)
        return answer


def _record_text(rdtype: str, value: object) -> str:
    if isinstance(value, tuple) and value and isinstance(value[0], bytes):
        return " ".join('"' + part.decode("ascii", "replace") + '"' for part in value)
    if isinstance(value, tuple):
        return " ".join(str(part) for part in value)
    return f"{value}" if rdtype != "CNAME" else f"CNAME {value}"


def traced_check(
    evaluator: Any,
    identity: Identity,
    *,
    client_address: str,
    sender: str,
    helo: str,
    deadline: float,
) -> tuple[SpfOutcome, RecordNode | None]:
    """check_host() by evaluator's resolver and settings, watched: its outcome and its tree.
    Without the include: cache, whose reused results would leave subtrees out (they cannot
    change the result: evaluation.query)."""
    tracer = Tracer(evaluator.clock)
    checked_sender, checked_helo = checked_names(identity, sender, helo)
    settings = dataclasses.replace(
        evaluator.settings, include_cache=None, query_type=tracer.query_type()
    )
    context = LookupContext(tracer.resolver(evaluator.resolver), deadline, LookupTrace())
    outcome = check_host(
        context,
        identity,
        client=client_address,
        sender=checked_sender,
        helo=checked_helo,
        settings=settings,
    )
    if context.trace.no_mail_record and outcome.result is SpfResult.FAIL:
        outcome = dataclasses.replace(outcome, publishes_no_mail=True)  # as evaluator._run
    return outcome, tracer.root
