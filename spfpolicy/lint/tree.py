"""The record tree a receiver may walk, looked up and counted in the worst case (RFC 7208 §4.6.4).

A receiver tests terms in order until one matches. The path on which nothing matches costs the
most: every DNS-querying term before all, each include: with its whole tree, and redirect= when
no all ends the record. The limits (10 DNS-querying terms, 2 void lookups) must hold on that
path, so lint walks it, counts along it, and says where the 11th term falls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from spfpolicy.lint.checks import record_findings
from spfpolicy.lint.fetch import Lookups, normal_name
from spfpolicy.lint.findings import MAX_DNS_TERMS, MAX_VOID_LOOKUPS, Counts, Finding
from spfpolicy.lint.record import Term, parse_record
from spfpolicy.lint.rules import Code, Severity
from spfpolicy.lint.source import RecordText, spf_records
from spfpolicy.resolver.answers import DnsError

# Records one domain's walk follows: far more than the 10 terms let a receiver reach, so a
# tree cut here is over the limit anyway, and a pathological one cannot keep lint busy.
MAX_RECORDS = 50
MAX_MX_RECORDS = 10  # §4.6.4: more MX records than this make the mx mechanism a permerror
FOLLOWED = frozenset({"include", "redirect"})
OWN_DOMAIN_MACRO = "%{d}"  # §7.2: the domain whose record is evaluated, whatever the message

# pyspf's second opinion on a record: its octets -> the permerror problem, or None.
CrossCheck = Callable[[bytes], str | None]


@dataclass(frozen=True, slots=True)
class Place:
    """Where a term is: whose record, and the include:/redirect= terms that lead there."""

    domain: str
    term: Term
    path: tuple[str, ...]

    def describe(self) -> str:
        """The path from the top record to the term: "include:a.example > mx"."""
        return " > ".join((*self.path, self.term.text))


@dataclass(frozen=True, slots=True)
class Void:
    """A term whose lookup finds nothing (§4.6.4), what it found missing, and for whom."""

    place: Place
    why: str
    versions: tuple[int, ...] = (4, 6)  # the clients' IP versions it is void for


class TreeWalk:
    """Walks one domain's record tree, collecting findings and the worst-case counts."""

    def __init__(self, lookups: Lookups, cross_check: CrossCheck) -> None:
        self.lookups = lookups
        self.cross_check = cross_check
        self.findings: list[Finding] = []
        self.dns_terms: list[Place] = []  # in the order a receiver reaches them
        self.voids: list[Void] = []
        self.records = 0
        self.complete = True

    def walk(
        self,
        domain: str,
        record: RecordText,
        *,
        top: bool = True,
        path: tuple[str, ...] = (),
        visiting: frozenset[str] = frozenset(),
    ) -> None:
        """Lint record, published at domain, and everything below it.

        top: a receiver's starting record, or one redirect= leads to from it. visiting: the
        domains on the path here, a loop if reached again.
        """
        self.records += 1
        first = len(self.findings)
        parsed = parse_record(record.text)
        self.findings += record_findings(domain, parsed, top=top)
        visiting = visiting | {domain}
        for term in parsed.mechanisms:
            if term.name == "all":
                break  # §5.1: it matches, nothing after it is reached
            if term.queries_dns:
                self._evaluate(Place(domain, term, path), visiting, top=False)
        redirect = parsed.modifier("redirect")
        if redirect is not None and not parsed.has_all:  # §6.1: ignored beside all
            self._evaluate(Place(domain, redirect, path), visiting, top=top)
        own = self.findings[first:]
        if not any(f.severity is Severity.ERROR and f.domain == domain for f in own):
            self._second_opinion(domain, record)

    def _second_opinion(self, domain: str, record: RecordText) -> None:
        """pyspf's verdict, asked when lint found no error in the record itself: one it
        found already is what pyspf would say too (a syntax error, a loop), said better."""
        problem = self.cross_check(b"".join(record.strings))
        if problem is not None:
            message = f"pyspf gives permerror for this record: {problem}"
            self.findings.append(Finding(Code.PYSPF_PERMERROR, domain, None, message))

    def _evaluate(self, place: Place, visiting: frozenset[str], *, top: bool) -> None:
        """Count one DNS-querying term and look up what it needs."""
        self.dns_terms.append(place)
        term = place.term
        if term.name in FOLLOWED and normal_name(term.target or "") == OWN_DOMAIN_MACRO:
            message = f"{place.describe()}: %{{d}} is {place.domain}, this record: an endless loop"
            self.findings.append(Finding(Code.INCLUDE_LOOP, place.domain, term.column, message))
            return
        if term.has_macro:
            message = (
                f"{term.text}: counted as one DNS-querying term; its name depends on each "
                "message, so lint does not look it up"
            )
            self.findings.append(
                Finding(Code.MACRO_NOT_FOLLOWED, place.domain, term.column, message)
            )
            self.complete = self.complete and term.name not in FOLLOWED
            return
        target = normal_name(term.target) if term.target else place.domain
        try:
            if term.name in FOLLOWED:
                self._follow(place, target, visiting, top=top)
            elif term.name == "a":
                self._addresses(place, target)
            elif term.name == "mx":
                self._mx(place, target)
            elif term.name == "exists":
                self._exists(place, target)
        except DnsError as error:
            self.complete = False
            message = f"{place.describe()}: looking up {target}: {error}"
            self.findings.append(Finding(Code.DNS_FAILURE, place.domain, term.column, message))

    def _follow(self, place: Place, target: str, visiting: frozenset[str], *, top: bool) -> None:
        """include: and redirect=: the target's record, walked in turn."""
        term = place.term
        if target in visiting:
            message = f"{place.describe()} leads back to {target}'s record: an endless loop"
            self.findings.append(Finding(Code.INCLUDE_LOOP, place.domain, term.column, message))
            return
        if self.records >= MAX_RECORDS:
            if self.complete:
                message = f"the tree has more than {MAX_RECORDS} records: {target} not followed"
                self.findings.append(
                    Finding(Code.WALK_INCOMPLETE, place.domain, term.column, message)
                )
            self.complete = False
            return
        answer = self.lookups.txt(target)
        records = spf_records(answer.records)
        if len(records) == 1:
            path = (*place.path, term.text)
            self.walk(target, records[0], top=top, path=path, visiting=visiting)
            return
        if records:
            message = f"{target} publishes {len(records)} SPF records, so {place.describe()} fails"
            self.findings.append(Finding(Code.MULTIPLE_RECORDS, target, None, message))
            return
        code = (
            Code.INCLUDE_WITHOUT_RECORD if term.name == "include" else Code.REDIRECT_WITHOUT_RECORD
        )
        why = answer.why_empty if not answer.records else "none of its TXT records is SPF"
        message = f"{place.describe()}: {target} has no SPF record: {why}"
        self.findings.append(Finding(code, place.domain, term.column, message))
        if not answer.records:
            self._void(place, answer.why_empty)

    def _addresses(self, place: Place, target: str) -> None:
        versions = {4: "A", 6: "AAAA"}
        missing = {
            v: rdtype for v, rdtype in versions.items() if not self.lookups.count(target, rdtype)
        }
        if missing:
            why = f"{target} has no {' or '.join(missing.values())} records"
            self._void(place, why, versions=tuple(missing))
        if len(missing) == 2:
            self._never_matches(place, why)

    def _mx(self, place: Place, target: str) -> None:
        count = self.lookups.count(target, "MX")
        if count > MAX_MX_RECORDS:
            message = (
                f"{place.describe()}: {target} has {count} MX records, more than the "
                f"{MAX_MX_RECORDS} receivers look at before they give permerror"
            )
            self.findings.append(
                Finding(Code.TOO_MANY_MX, place.domain, place.term.column, message)
            )
        if not count:
            self._void(place, f"{target} has no MX records")
            self._never_matches(place, f"{target} has no MX records")

    def _exists(self, place: Place, target: str) -> None:
        if not self.lookups.count(target, "A"):
            self._void(place, f"{target} has no A records")
            self._never_matches(place, f"{target} has no A records")

    def _void(self, place: Place, why: str, versions: tuple[int, ...] = (4, 6)) -> None:
        self.voids.append(Void(place, why, versions))

    def voids_for(self, version: int) -> list[Void]:
        """The void lookups a client of this IP version may meet, in order."""
        return [void for void in self.voids if version in void.versions]

    def _never_matches(self, place: Place, why: str) -> None:
        message = f"{place.describe()}: {why}, so it never matches (a void lookup)"
        self.findings.append(Finding(Code.VOID_TERM, place.domain, place.term.column, message))

    def limit_findings(self) -> list[Finding]:
        """The findings about the limits over the whole tree, once it has been walked."""
        findings = []
        if len(self.dns_terms) > MAX_DNS_TERMS:
            eleventh = self.dns_terms[MAX_DNS_TERMS]
            total = f"{'' if self.complete else 'at least '}{len(self.dns_terms)}"
            message = (
                f"{eleventh.describe()}: the {MAX_DNS_TERMS + 1}th DNS-querying term ({total} in "
                f"the worst case); receivers stop at {MAX_DNS_TERMS} with permerror"
            )
            where = (eleventh.domain, eleventh.term.column)
            findings.append(Finding(Code.TOO_MANY_LOOKUPS, *where, message))
        over = {v: self.voids_for(v) for v in (4, 6)}
        over = {v: voids for v, voids in over.items() if len(voids) > MAX_VOID_LOOKUPS}
        if len(over) == 2 and over[4] == over[6]:
            over = {0: over[4]}  # the same for every client: say it once
        for version, voids in over.items():
            client = f"an IPv{version} client" if version else "any client"
            message = (
                f"{len(voids)} void lookups for {client}, where receivers stop at "
                f"{MAX_VOID_LOOKUPS} with permerror: {_listed(voids)}"
            )
            third = voids[MAX_VOID_LOOKUPS].place
            findings.append(Finding(Code.VOID_LOOKUPS, third.domain, third.term.column, message))
        return findings

    def counts(self, octets: int) -> Counts:
        """The worst-case counts of the walk; octets is the top answer's size (§3.4)."""
        return Counts(
            dns_terms=len(self.dns_terms),
            void_lookups_ipv4=len(self.voids_for(4)),
            void_lookups_ipv6=len(self.voids_for(6)),
            records=self.records,
            octets=octets,
            complete=self.complete,
        )


def _listed(voids: list[Void]) -> str:
    """The first void lookups, up to the one past the limit, and how many more there are."""
    shown = voids[: MAX_VOID_LOOKUPS + 1]
    text = "; ".join(f"{void.place.describe()} ({void.why})" for void in shown)
    more = len(voids) - len(shown)
    return f"{text}; and {more} more" if more else text
