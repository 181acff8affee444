"""The checks of one record on its own, and of its size: what each finds, and where."""

from __future__ import annotations

import pytest

from spfpolicy.lint.checks import record_findings, size_findings
from spfpolicy.lint.record import parse_record
from spfpolicy.lint.rules import Code, Severity
from spfpolicy.lint.source import RecordText

DOMAIN = "sender.example"


def found(text: str, *, top: bool = True) -> list[tuple[Code, int | None]]:
    return [(f.code, f.column) for f in record_findings(DOMAIN, parse_record(text), top=top)]


@pytest.mark.parametrize(
    ("text", "top", "expected"),
    [
        pytest.param("v=spf1 ip4:192.0.2.0/24 -all", True, [], id="clean"),
        pytest.param("v=spf1 ip4:192.0.2.0/24 ~all", True, [], id="clean-softfail"),
        pytest.param("v=spf1 +all", True, [(Code.PASS_ALL, 8)], id="+all"),
        pytest.param("v=spf1 all", True, [(Code.PASS_ALL, 8)], id="all-unqualified"),
        pytest.param("v=spf1 +all", False, [(Code.PASS_ALL, 8)], id="+all-included"),
        pytest.param("v=spf1 ?all", True, [(Code.NEUTRAL_ALL, 8)], id="?all"),
        pytest.param("v=spf1 ?all", False, [], id="?all-included-is-no-match"),
        pytest.param("v=spf1 ip4:192.0.2.1", True, [(Code.NO_ALL, None)], id="no-all"),
        pytest.param("v=spf1 ip4:192.0.2.1", False, [], id="no-all-included"),
        pytest.param("v=spf1 redirect=b.example", True, [], id="redirect-alone"),
        pytest.param(
            "v=spf1 -all redirect=b.example", True, [(Code.REDIRECT_IGNORED, 13)], id="redirect+all"
        ),
        pytest.param(
            "v=spf1 -all mx a", True, [(Code.AFTER_ALL, 13), (Code.AFTER_ALL, 16)], id="after"
        ),
        pytest.param("v=spf1 ptr -all", True, [(Code.PTR, 8)], id="ptr"),
        pytest.param("v=spf1 ptr:sender.example -all", True, [(Code.PTR, 8)], id="ptr:domain"),
        pytest.param(
            "v=spf1 exists:%{p}.x.example -all", True, [(Code.PTR_MACRO, 15)], id="p-macro"
        ),
        pytest.param("v=spf1 -all foo=bar", True, [(Code.UNKNOWN_MODIFIER, 13)], id="unknown-mod"),
        pytest.param(
            "v=spf1 ip4:192.0.2.0/24 ip4:192.0.2.0/24 -all",
            True,
            [(Code.DUPLICATE_NETWORK, 25)],
            id="duplicate",
        ),
        pytest.param(
            "v=spf1 ip4:192.0.2.0/24 ip4:192.0.2.9 -all",
            True,
            [(Code.OVERLAPPING_NETWORK, 25)],
            id="shadowed",
        ),
        pytest.param(
            "v=spf1 ip6:2001:db8::1 ip6:2001:db8::/32 -all",
            True,
            [(Code.OVERLAPPING_NETWORK, 8)],
            id="redundant",
        ),
        pytest.param(
            "v=spf1 -ip4:192.0.2.9 ip4:192.0.2.0/24 -all", True, [], id="intended-exception"
        ),
        pytest.param(
            "v=spf1 ip4:192.0.2.0/24 ip6:::ffff:192.0.2.0/120 -all", True, [], id="families"
        ),
        pytest.param("v=spf1 ip4:192.0.2.9/24 -all", True, [(Code.HOST_BITS_SET, 8)], id="host"),
        pytest.param("v=spf1 ip4:0.0.0.0/0 -all", True, [(Code.PERMITS_EVERYONE, 8)], id="/0"),
        pytest.param("v=spf1 mx a mx -all", True, [(Code.DUPLICATE_TERM, 13)], id="dup-term"),
        pytest.param(
            "v=spf1 a:b.example +a:B.example -all", True, [(Code.DUPLICATE_TERM, 20)], id="case"
        ),
        pytest.param("v=spf1 a/33 -all", True, [(Code.BAD_CIDR, 9)], id="syntax"),
    ],
)
def test_record_findings(text: str, top: bool, expected: list[tuple[Code, int | None]]) -> None:
    assert found(text, top=top) == expected


def test_findings_carry_severity_section_and_advice() -> None:
    (finding,) = record_findings(DOMAIN, parse_record("v=spf1 ptr -all"), top=True)
    assert finding.severity is Severity.WARNING
    assert finding.section == "5.5"
    assert finding.domain == DOMAIN
    assert "ip4:/ip6:" in finding.advice


def sizes(record: RecordText, octets: int = 100) -> list[tuple[Code, int | None]]:
    return [(f.code, f.column) for f in size_findings(DOMAIN, record, octets)]


def test_a_long_record_given_as_one_string_must_be_split() -> None:
    text = "v=spf1 " + " ".join(f"ip4:192.0.2.{n}" for n in range(1, 25)) + " -all"
    (finding,) = size_findings(DOMAIN, RecordText((text.encode(),)), 300)
    assert finding.code is Code.NEEDS_SPLITTING
    assert finding.severity is Severity.WARNING
    cut = text.rfind(" ", 0, 255) + 1
    assert f"after column {cut}" in finding.message
    assert text[cut - 1] == " "


def test_a_quoted_string_over_255_octets_cannot_be_published() -> None:
    strings = (b"v=spf1 ", b"a" * 256)
    assert sizes(RecordText(strings, quoted=True)) == [(Code.STRING_TOO_LONG, 8)]


def test_a_string_boundary_inside_a_term() -> None:
    record = RecordText((b"v=spf1 include:_spf.exa", b"mple.net -all"), quoted=True)
    assert sizes(record) == [(Code.STRING_BOUNDARY_IN_TERM, 24)]
    assert sizes(RecordText((b"v=spf1 a ", b"-all"))) == []
    assert sizes(RecordText((b"v=spf1 a", b" -all"))) == []


@pytest.mark.parametrize(("octets", "expected"), [(450, []), (451, [(Code.RECORD_TOO_LONG, None)])])
def test_the_answer_size(octets: int, expected: list[tuple[Code, None]]) -> None:
    assert sizes(RecordText((b"v=spf1 -all",)), octets) == expected
