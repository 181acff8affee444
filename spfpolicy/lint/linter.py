"""One domain linted: its record found (or given), sized, parsed and walked, as one report."""

from __future__ import annotations

from spfpolicy.evaluation.domains import a_label
from spfpolicy.evaluation.recordcheck import pyspf_permerror
from spfpolicy.lint.checks import size_findings
from spfpolicy.lint.domainspec import domain_spec_problems
from spfpolicy.lint.fetch import Lookups, normal_name
from spfpolicy.lint.findings import Counts, DomainReport, Finding, Source, unique
from spfpolicy.lint.rules import Code
from spfpolicy.lint.source import (
    RecordText,
    answer_octets,
    from_argument,
    is_spf,
    near_misses,
    spf_records,
)
from spfpolicy.lint.tree import CrossCheck, TreeWalk
from spfpolicy.resolver.answers import DnsError


def lint_domain(
    domain: str,
    lookups: Lookups,
    *,
    record: str | None = None,
    cross_check: CrossCheck = pyspf_permerror,
) -> DomainReport:
    """Lint the record domain publishes, or record (--record's text) as if it did.

    Never raises for DNS or record trouble: those are findings.
    """
    name = a_label(normal_name(domain.strip()))
    source = Source.DNS if record is None else Source.ARGUMENT
    if "%" in name or domain_spec_problems(name, 1):
        message = f"{domain!r} is not a domain name that can publish a record"
        return _without_record(name, source, Finding(Code.INVALID_DOMAIN, name, None, message))
    if record is None:
        return _published(name, lookups, cross_check)
    given, problem = from_argument(record)
    if given is None:
        assert problem is not None
        finding = Finding(problem.code, name, problem.column, problem.message)
        return _without_record(name, source, finding)
    octets = answer_octets(name, [given.strings])
    try:
        others = [r for r in lookups.txt(name).records if not is_spf(r)]
        octets += answer_octets("", others)
    except DnsError:
        pass  # the size check then misses the name's other TXT records, nothing else
    return _walked(
        name, record=given, octets=octets, source=source, lookups=lookups, cross_check=cross_check
    )


def _published(name: str, lookups: Lookups, cross_check: CrossCheck) -> DomainReport:
    try:
        answer = lookups.txt(name)
    except DnsError as error:
        message = f"looking up the TXT records of {name}: {error}"
        return _without_record(name, Source.DNS, Finding(Code.DNS_FAILURE, name, None, message))
    records = spf_records(answer.records)
    if len(records) == 1:
        octets = answer_octets(name, answer.records)
        return _walked(
            name,
            record=records[0],
            octets=octets,
            source=Source.DNS,
            lookups=lookups,
            cross_check=cross_check,
        )
    if records:
        listed = "; ".join(repr(record.text) for record in records)
        message = f"{name} publishes {len(records)} SPF records: {listed}"
        finding = Finding(Code.MULTIPLE_RECORDS, name, None, message)
    else:
        why = answer.why_empty if not answer.records else "none of its TXT records is SPF"
        message = f"{name} publishes no SPF record: {why}"
        misses = near_misses(answer.records)
        if misses:
            message += f" ({misses[0]!r} does not begin with 'v=spf1 ')"
        finding = Finding(Code.NO_RECORD, name, None, message)
    return _without_record(name, Source.DNS, finding)


def _walked(
    name: str,
    *,
    record: RecordText,
    octets: int,
    source: Source,
    lookups: Lookups,
    cross_check: CrossCheck,
) -> DomainReport:
    walk = TreeWalk(lookups, cross_check)
    walk.walk(name, record)
    findings = [*size_findings(name, record, octets), *walk.findings, *walk.limit_findings()]
    return DomainReport(name, record.text, source, _ordered(findings), walk.counts(octets))


def _without_record(name: str, source: Source, finding: Finding) -> DomainReport:
    return DomainReport(name, None, source, (finding,), Counts(complete=False))


def _ordered(findings: list[Finding]) -> tuple[Finding, ...]:
    """Errors first, then warnings, then notes; in the order found within each."""
    return tuple(sorted(unique(findings), key=lambda finding: -finding.severity.rank))
