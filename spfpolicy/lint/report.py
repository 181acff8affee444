"""Lint's reports as text for a terminal or a CI log, as JSON for tools, and as an exit status."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from spfpolicy.lint.findings import (
    MAX_DNS_TERMS,
    MAX_VOID_LOOKUPS,
    Counts,
    DomainReport,
    Finding,
    Source,
    worst_severity,
)
from spfpolicy.lint.rules import Severity

EXIT_CLEAN = 0  # nothing, or notes only
EXIT_WARNINGS = 1
EXIT_ERRORS = 2  # also: a domain without a record, a failed lookup, lint could not run


def printable(text: str) -> str:
    """text with every octet outside printable ASCII as \\xNN: a record or a name from DNS
    may hold control characters, which must not reach a terminal or a log as they are."""
    return "".join(char if " " <= char <= "~" else _escaped(char) for char in text)


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def exit_status(reports: Sequence[DomainReport]) -> int:
    """2 when any domain has an error, 1 when the worst is a warning, else 0."""
    worst = worst_severity(finding for report in reports for finding in report.findings)
    if worst is None or worst is Severity.NOTE:
        return EXIT_CLEAN
    return EXIT_ERRORS if worst is Severity.ERROR else EXIT_WARNINGS


def render_text(reports: Sequence[DomainReport]) -> str:
    """Each domain: its record, one line per finding with its advice below, the counts."""
    return "\n".join(_text(report) for report in reports)


def _text(report: DomainReport) -> str:
    source = " (given with --record)" if report.source is Source.ARGUMENT else ""
    record = printable(report.record) if report.record is not None else "(no record)"
    lines = [f"{printable(report.domain)}{source}: {record}"]
    for finding in report.findings:
        lines.append(f"  {_where(finding)}: {finding.severity}: {printable(finding.message)}")
        lines.append(f"      [{finding.code}, RFC 7208 §{finding.section}] {finding.advice}")
    if report.record is not None:
        lines.append(f"  {_counts_line(report.counts)}")
    lines.append(f"  {_tally(report.findings)}")
    return "\n".join(lines) + "\n"


def _where(finding: Finding) -> str:
    domain = printable(finding.domain)
    return domain if finding.column is None else f"{domain}:{finding.column}"


def _counts_line(counts: Counts) -> str:
    at_least = "" if counts.complete else "at least "
    voids = f"{counts.void_lookups_ipv4} (IPv4) and {counts.void_lookups_ipv6} (IPv6)"
    records = f"{counts.records} record{'s' if counts.records != 1 else ''}"
    return (
        f"worst case: {at_least}{counts.dns_terms} of {MAX_DNS_TERMS} DNS-querying terms, "
        f"{voids} of {MAX_VOID_LOOKUPS} void lookups; {records}, {counts.octets} octets"
    )


def _tally(findings: Sequence[Finding]) -> str:
    parts = []
    for severity in Severity:
        count = sum(1 for finding in findings if finding.severity is severity)
        parts.append(f"{count} {severity}{'s' if count != 1 else ''}")
    return ", ".join(parts)


def render_json(reports: Sequence[DomainReport]) -> str:
    """A JSON array with one object per domain: record, status, counts, findings; texts as
    printable() shows them."""
    return json.dumps([_json(report) for report in reports], indent=2) + "\n"


def _json(report: DomainReport) -> dict[str, Any]:
    counts = report.counts
    worst = report.worst
    return {
        "domain": printable(report.domain),
        "source": str(report.source),
        "record": None if report.record is None else printable(report.record),
        "status": "ok" if worst is None or worst is Severity.NOTE else str(worst),
        "counts": {
            "dns_terms": counts.dns_terms,
            "dns_terms_limit": MAX_DNS_TERMS,
            "void_lookups_ipv4": counts.void_lookups_ipv4,
            "void_lookups_ipv6": counts.void_lookups_ipv6,
            "void_lookups_limit": MAX_VOID_LOOKUPS,
            "records": counts.records,
            "octets": counts.octets,
            "complete": counts.complete,
        },
        "findings": [
            {
                "code": str(finding.code),
                "severity": str(finding.severity),
                "section": finding.section,
                "domain": printable(finding.domain),
                "column": finding.column,
                "message": printable(finding.message),
                "advice": finding.advice,
            }
            for finding in report.findings
        ],
    }
