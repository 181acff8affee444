"""Lint's reports: the text for a terminal or CI log, the JSON for tools, the exit status."""

from __future__ import annotations

import json

import pytest

from spfpolicy.lint.findings import Counts, DomainReport, Finding, Source
from spfpolicy.lint.report import (
    EXIT_CLEAN,
    EXIT_ERRORS,
    EXIT_WARNINGS,
    exit_status,
    render_json,
    render_text,
)
from spfpolicy.lint.rules import Code

RECORD = "v=spf1 ptr include:gone.example +all"
COUNTS = Counts(dns_terms=2, void_lookups_ipv4=1, void_lookups_ipv6=1, records=1, octets=51)
PTR = Finding(Code.PTR, "sender.example", 8, "ptr: ptr is deprecated")
GONE = Finding(Code.INCLUDE_WITHOUT_RECORD, "sender.example", 12, "gone.example has none")
UNKNOWN = Finding(Code.UNKNOWN_MODIFIER, "sender.example", 40, "foo=bar: an unknown modifier")


def report(*findings: Finding, record: str | None = RECORD) -> DomainReport:
    return DomainReport("sender.example", record, Source.DNS, findings, COUNTS)


@pytest.mark.parametrize(
    ("reports", "status"),
    [
        ([], EXIT_CLEAN),
        ([report()], EXIT_CLEAN),
        ([report(UNKNOWN)], EXIT_CLEAN),
        ([report(UNKNOWN, PTR)], EXIT_WARNINGS),
        ([report(PTR), report(GONE)], EXIT_ERRORS),
    ],
    ids=["nothing", "clean", "notes", "warning", "error-in-any-domain"],
)
def test_exit_status(reports: list[DomainReport], status: int) -> None:
    assert exit_status(reports) == status


def test_text() -> None:
    text = render_text([report(GONE, PTR), report(record=None)])
    assert text.splitlines() == [
        f"sender.example: {RECORD}",
        "  sender.example:12: error: gone.example has none",
        "      [include-without-record, RFC 7208 §5.2] remove the include:, or have its domain "
        "publish an SPF record",
        "  sender.example:8: warning: ptr: ptr is deprecated",
        "      [ptr, RFC 7208 §5.5] list the hosts with ip4:/ip6: or a instead of ptr",
        "  worst case: 2 of 10 DNS-querying terms, 1 (IPv4) and 1 (IPv6) of 2 void lookups; "
        "1 record, 51 octets",
        "  1 error, 1 warning, 0 notes",
        "",
        "sender.example: (no record)",
        "  0 errors, 0 warnings, 0 notes",
    ]


def test_json() -> None:
    (shown,) = json.loads(render_json([report(PTR)]))
    assert shown == {
        "domain": "sender.example",
        "source": "dns",
        "record": RECORD,
        "status": "warning",
        "counts": {
            "dns_terms": 2,
            "dns_terms_limit": 10,
            "void_lookups_ipv4": 1,
            "void_lookups_ipv6": 1,
            "void_lookups_limit": 2,
            "records": 1,
            "octets": 51,
            "complete": True,
        },
        "findings": [
            {
                "code": "ptr",
                "severity": "warning",
                "section": "5.5",
                "domain": "sender.example",
                "column": 8,
                "message": "ptr: ptr is deprecated",
                "advice": "list the hosts with ip4:/ip6: or a instead of ptr",
            }
        ],
    }
    (clean,) = json.loads(render_json([report(UNKNOWN)]))
    assert clean["status"] == "ok"


def test_octets_outside_printable_ascii_never_reach_the_output_as_they_are() -> None:
    hostile = "v=spf1 a:x\x1b[2J\r.example caf\xc3\xa9 -all"
    finding = Finding(Code.BAD_CHARACTER, "sender.example", 18, "'\x1b' is not visible")
    shown = render_text([report(finding, record=hostile)])
    assert "\x1b" not in shown
    assert "\r" not in shown
    assert "a:x\\x1b[2J\\x0d.example caf\\xc3\\xa9 -all" in shown
    (as_json,) = json.loads(render_json([report(finding, record=hostile)]))
    assert as_json["record"] == "v=spf1 a:x\\x1b[2J\\x0d.example caf\\xc3\\xa9 -all"
    assert as_json["findings"][0]["message"] == "'\\x1b' is not visible"
