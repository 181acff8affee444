"""The positional record parser: terms with their columns, and each syntax problem's column."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spfpolicy.lint.record import TermKind, parse_record
from spfpolicy.lint.rules import Code


def test_terms_keep_their_columns_and_what_they_name() -> None:
    record = parse_record(
        "v=spf1  include:_spf.example.net ~a:mail.example.com/24//64 ip6:2001:db8::/32 "
        "-ptr exp=explain.example.com ?all"
    )
    assert record.problems == ()
    shown = [(t.column, t.kind, t.qualifier, t.name, t.target) for t in record.terms]
    assert shown == [
        (9, TermKind.MECHANISM, "+", "include", "_spf.example.net"),
        (34, TermKind.MECHANISM, "~", "a", "mail.example.com"),
        (61, TermKind.MECHANISM, "+", "ip6", None),
        (79, TermKind.MECHANISM, "-", "ptr", None),
        (84, TermKind.MODIFIER, "+", "exp", "explain.example.com"),
        (108, TermKind.MECHANISM, "?", "all", None),
    ]
    assert record.terms[2].network == ipaddress.ip_network("2001:db8::/32")
    assert [t.queries_dns for t in record.terms] == [True, True, False, True, False, False]
    assert record.has_all


def test_networks_with_host_bits_are_their_network() -> None:
    (term,) = parse_record("v=spf1 ip4:192.0.2.77/24").terms
    assert term.network == ipaddress.ip_network("192.0.2.0/24")
    assert term.host_bits
    (exact,) = parse_record("v=spf1 ip4:192.0.2.77").terms
    assert exact.network == ipaddress.ip_network("192.0.2.77/32")
    assert not exact.host_bits


@pytest.mark.parametrize(
    ("text", "code", "column", "fragment"),
    [
        pytest.param("v=spf1x -all", Code.BAD_VERSION, 1, "does not begin", id="version"),
        pytest.param(" v=spf1 -all", Code.BAD_VERSION, 1, "does not begin", id="leading-space"),
        pytest.param("v=spf1 a\t-all", Code.BAD_CHARACTER, 9, "'\\t'", id="tab"),
        pytest.param("v=spf1 a:b\xe9.example", Code.BAD_CHARACTER, 11, "visible ASCII", id="8bit"),
        pytest.param("v=spf1 moo", Code.UNKNOWN_MECHANISM, 8, "'moo' is no", id="unknown"),
        pytest.param("v=spf1 ipv4:192.0.2.1", Code.UNKNOWN_MECHANISM, 8, "mean ip4?", id="ipv4"),
        pytest.param("v=spf1 192.0.2.1", Code.UNKNOWN_MECHANISM, 8, "ip4:192.0.2.1?", id="bare"),
        pytest.param("v=spf1 inclde:x.example", Code.UNKNOWN_MECHANISM, 8, "include?", id="typo"),
        pytest.param("v=spf1 redirect:x.example", Code.UNKNOWN_MECHANISM, 8, "redirect=?", id="r:"),
        pytest.param("v=spf1 -all:x", Code.BAD_MECHANISM, 12, "all takes nothing", id="all-arg"),
        pytest.param("v=spf1 include", Code.BAD_MECHANISM, 15, "needs ':'", id="include-bare"),
        pytest.param("v=spf1 include:", Code.BAD_MECHANISM, 16, "needs a domain", id="include:"),
        pytest.param("v=spf1 include:x.example/24", Code.BAD_MECHANISM, 25, "no prefix", id="i/24"),
        pytest.param("v=spf1 ptr/24", Code.BAD_MECHANISM, 11, "no prefix", id="ptr/24"),
        pytest.param("v=spf1 exists", Code.BAD_MECHANISM, 14, "needs ':'", id="exists-bare"),
        pytest.param("v=spf1 a/24/64", Code.BAD_MECHANISM, 9, "'/24//64'", id="a/24/64"),
        pytest.param("v=spf1 a:museum", Code.BAD_DOMAIN_SPEC, 10, "has a dot", id="one-label"),
        pytest.param("v=spf1 a:192.0.2.1", Code.BAD_DOMAIN_SPEC, 10, "goes in ip4:", id="a:ip"),
        pytest.param("v=spf1 mx:a..example", Code.BAD_DOMAIN_SPEC, 13, "empty label", id="empty"),
        pytest.param(
            "v=spf1 a:" + "x" * 64 + ".example", Code.BAD_DOMAIN_SPEC, 10, "64", id="long"
        ),
        pytest.param("v=spf1 a:example.-com", Code.BAD_DOMAIN_SPEC, 10, "not a domain", id="-tld"),
        pytest.param("v=spf1 a/33", Code.BAD_CIDR, 9, "0 to 32", id="a/33"),
        pytest.param("v=spf1 mx//129", Code.BAD_CIDR, 10, "0 to 128", id="mx//129"),
        pytest.param("v=spf1 ip4:192.0.2.0/024", Code.BAD_CIDR, 21, "leading zeros", id="/024"),
        pytest.param("v=spf1 ip4:192.0.2.0//64", Code.BAD_CIDR, 21, "not a dual", id="ip4-dual"),
        pytest.param("v=spf1 ip4:192.0.2/24", Code.BAD_NETWORK, 12, "not an IPv4", id="ip4-short"),
        pytest.param("v=spf1 ip4:192.0.2.01", Code.BAD_NETWORK, 12, "not an IPv4", id="ip4-zero"),
        pytest.param("v=spf1 ip6:2001:db8::g", Code.BAD_NETWORK, 12, "not an IPv6", id="ip6-hex"),
        pytest.param("v=spf1 ip6:fe80::1%eth0", Code.BAD_NETWORK, 12, "not an IPv6", id="zone"),
        pytest.param("v=spf1 ip4", Code.BAD_MECHANISM, 11, "needs ':'", id="ip4-bare"),
        pytest.param("v=spf1 =x", Code.BAD_MODIFIER, 8, "needs a name", id="no-name"),
        pytest.param("v=spf1 1up=x", Code.BAD_MODIFIER, 8, "no modifier name", id="digit"),
        pytest.param("v=spf1 -redirect=x.example", Code.BAD_MODIFIER, 8, "no qualifier", id="-r="),
        pytest.param("v=spf1 redirect=", Code.BAD_MECHANISM, 17, "needs a domain", id="r=empty"),
        pytest.param("v=spf1 exp=x.example/8", Code.BAD_MECHANISM, 21, "no prefix", id="exp/8"),
        pytest.param(
            "v=spf1 redirect=a.example redirect=b.example",
            Code.DUPLICATE_MODIFIER,
            27,
            "second redirect=",
            id="redirect-twice",
        ),
        pytest.param(
            "v=spf1 -all exp=a.example EXP=b.example",
            Code.DUPLICATE_MODIFIER,
            27,
            "second exp=",
            id="exp-twice-any-case",
        ),
        pytest.param("v=spf1 exists:%{i.x.example", Code.BAD_MACRO, 15, "without its", id="open"),
        pytest.param("v=spf1 a:%(d).example", Code.BAD_MACRO, 10, '"%("', id="paren"),
        pytest.param("v=spf1 a:x%.example", Code.BAD_MACRO, 11, '"%."', id="lone"),
        pytest.param("v=spf1 a:x.example%", Code.BAD_MACRO, 19, "at the end", id="trailing"),
        pytest.param("v=spf1 a:%{x}.example", Code.BAD_MACRO, 10, "no macro letter", id="x"),
        pytest.param("v=spf1 a:%{c}.example", Code.BAD_MACRO, 10, "explanation", id="c"),
        pytest.param("v=spf1 a:%{d0}.example", Code.BAD_MACRO, 10, "must not be 0", id="d0"),
        pytest.param("v=spf1 a:%{d2*}.example", Code.BAD_MACRO, 10, "no delimiter", id="*"),
        pytest.param("v=spf1 foo=%{q}", Code.BAD_MACRO, 12, "no macro letter", id="unknown-mod"),
    ],
)
def test_syntax_problems_name_their_column(
    text: str, code: Code, column: int, fragment: str
) -> None:
    problems = parse_record(text).problems
    assert [(p.code, p.column) for p in problems] == [(code, column)], problems
    assert fragment in problems[0].message


@pytest.mark.parametrize(
    "text",
    [
        "v=spf1",
        "v=spf1 ",
        "V=SPF1 -ALL",
        "v=spf1 a//0 mx/0 a:mail.example.com.",
        "v=spf1 ip6:::ffff:192.0.2.1 ip4:0.0.0.0/0",
        "v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} ?all",
        "v=spf1 include:%{d2}._spf.example.net -all",
        "v=spf1 a:macro%%percent%_%_space%-url.example.com",
        "v=spf1 redirect=%{d}.spf.example.com.",
        "v=spf1 moo.cow-far_out=man:dog/cat default=pass",
        "v=spf1 a:foo:bar/baz.example.com",  # ':' and '/' are macro-literals
        "v=spf1 exists:foo=bar.example.com",  # ':' before '=': a mechanism
    ],
)
def test_valid_records_parse_cleanly(text: str) -> None:
    assert parse_record(text).problems == ()


def test_a_term_with_a_problem_is_left_out_of_the_terms() -> None:
    record = parse_record("v=spf1 a/33 mx -all")
    assert [term.name for term in record.terms] == ["mx", "all"]


@given(st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=60))
def test_any_text_after_the_version_parses_without_raising(tail: str) -> None:
    record = parse_record("v=spf1 " + tail)
    text = record.text
    for problem in record.problems:
        assert 1 <= problem.column <= len(text) + 1
    for term in record.terms:
        assert text[term.column - 1 :].startswith(term.text)
