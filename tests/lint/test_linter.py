"""One domain linted over an in-memory zone: the record tree walked, counted and reported."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from spfpolicy.lint.fetch import Lookups
from spfpolicy.lint.findings import DomainReport, Source
from spfpolicy.lint.linter import lint_domain
from spfpolicy.lint.rules import Code
from spfpolicy.lint.tree import MAX_RECORDS
from spfpolicy.resolver.answers import DnsFailure
from tests.support.fakedns import FakeResolver


def lint(
    zone: Mapping[str, Sequence[str]],
    domain: str = "sender.example",
    *,
    record: str | None = None,
    failing: Mapping[str, DnsFailure] | None = None,
) -> DomainReport:
    resolver = FakeResolver(zone, failing)
    return lint_domain(domain, Lookups(resolver, timeout=5.0), record=record)


def codes(report: DomainReport) -> list[tuple[Code, str, int | None]]:
    return [(f.code, f.domain, f.column) for f in report.findings]


def only(report: DomainReport, code: Code) -> str:
    (message,) = [f.message for f in report.findings if f.code is code]
    return message


def test_a_clean_record_and_its_counts() -> None:
    report = lint(
        {
            "sender.example": [
                "TXT v=spf1 mx include:_spf.provider.example -all",
                "MX 10 mx.sender.example",
            ],
            "_spf.provider.example": ["TXT v=spf1 ip4:192.0.2.0/24 a:out.provider.example ~all"],
            "out.provider.example": ["A 192.0.2.25", "AAAA 2001:db8::25"],
        }
    )
    assert report.findings == ()
    assert report.record == "v=spf1 mx include:_spf.provider.example -all"
    assert report.source is Source.DNS
    counts = report.counts
    assert (counts.dns_terms, counts.void_lookups_ipv4, counts.void_lookups_ipv6) == (3, 0, 0)
    assert (counts.records, counts.complete) == (2, True)
    assert counts.octets == len("sender.example") + len(report.record)


def chain(length: int, last: str = "v=spf1 -all") -> dict[str, list[str]]:
    """sender.example includes i1.example, which includes i2.example, ..., each with one a."""
    zone = {"sender.example": ["TXT v=spf1 include:i1.example -all"]}
    for n in range(1, length):
        zone[f"i{n}.example"] = [
            f"TXT v=spf1 a include:i{n + 1}.example -all",
            "A 192.0.2.1",
            "AAAA 2001:db8::1",
        ]
    zone[f"i{length}.example"] = [f"TXT {last}"]
    return zone


def test_the_11th_term_is_found_where_it_is_with_the_path_to_it() -> None:
    report = lint(chain(6))  # 1 + 5 * 2 = 11 terms
    assert report.counts.dns_terms == 11
    (finding,) = [f for f in report.findings if f.code is Code.TOO_MANY_LOOKUPS]
    assert (finding.domain, finding.column) == ("i5.example", 10)
    path = " > ".join(f"include:i{n}.example" for n in range(1, 6)) + " > include:i6.example"
    assert finding.message.startswith(f"{path}: the 11th DNS-querying term (11 in the worst case)")


def test_ten_terms_are_within_the_limit() -> None:
    report = lint(
        chain(5, last="v=spf1 a -all")
        | {"i5.example": ["TXT v=spf1 a -all", "A 192.0.2.1", "AAAA 2001:db8::1"]}
    )
    assert report.counts.dns_terms == 10
    assert report.findings == ()


def test_terms_after_all_and_a_redirect_beside_all_are_not_counted() -> None:
    zone = {
        "sender.example": [
            "TXT v=spf1 a -all mx redirect=other.example",
            "A 192.0.2.1",
            "AAAA 2001:db8::1",
        ],
    }
    report = lint(zone)
    assert report.counts.dns_terms == 1
    assert [f.code for f in report.findings] == [Code.REDIRECT_IGNORED, Code.AFTER_ALL]


def test_a_redirect_without_all_is_followed_as_the_domain_s_own_record() -> None:
    zone = {
        "sender.example": ["TXT v=spf1 ip4:192.0.2.1 redirect=_spf.sender.example"],
        "_spf.sender.example": ["TXT v=spf1 mx:mail.example ?all"],
        "mail.example": ["MX 10 mx.mail.example"],
    }
    report = lint(zone)
    assert report.counts.dns_terms == 2
    assert codes(report) == [(Code.NEUTRAL_ALL, "_spf.sender.example", 24)]  # top, by redirect


@pytest.mark.parametrize(
    ("target", "code", "why"),
    [
        ([], Code.INCLUDE_WITHOUT_RECORD, "the name does not exist (NXDOMAIN)"),
        (["A 192.0.2.1"], Code.INCLUDE_WITHOUT_RECORD, "it has no TXT records"),
        (["TXT hello"], Code.INCLUDE_WITHOUT_RECORD, "none of its TXT records is SPF"),
    ],
    ids=["nxdomain", "nodata", "no-spf"],
)
def test_an_include_target_without_a_record(target: list[str], code: Code, why: str) -> None:
    zone = {"sender.example": ["TXT v=spf1 include:gone.example -all"]}
    if target:
        zone["gone.example"] = target
    report = lint(zone)
    assert codes(report)[0] == (code, "sender.example", 8)
    assert only(report, code) == f"include:gone.example: gone.example has no SPF record: {why}"
    assert report.counts.void_lookups_ipv4 == (0 if target == ["TXT hello"] else 1)


def test_a_redirect_target_without_a_record() -> None:
    report = lint({"sender.example": ["TXT v=spf1 redirect=gone.example"]})
    assert codes(report) == [(Code.REDIRECT_WITHOUT_RECORD, "sender.example", 8)]


@pytest.mark.parametrize(
    ("zone", "where"),
    [
        ({"sender.example": ["TXT v=spf1 include:sender.example -all"]}, "sender.example"),
        (
            {
                "sender.example": ["TXT v=spf1 include:a.example -all"],
                "a.example": ["TXT v=spf1 redirect=sender.example"],
            },
            "a.example",
        ),
    ],
    ids=["self", "through-redirect"],
)
def test_loops(zone: dict[str, list[str]], where: str) -> None:
    report = lint(zone)
    (finding,) = [f for f in report.findings if f.code is Code.INCLUDE_LOOP]
    assert finding.domain == where
    assert "leads back to sender.example's record" in finding.message


def test_the_same_include_twice_is_no_loop_and_counts_twice() -> None:
    zone = {
        "sender.example": ["TXT v=spf1 include:a.example include:b.example -all"],
        "a.example": ["TXT v=spf1 include:c.example"],
        "b.example": ["TXT v=spf1 include:c.example"],
        "c.example": ["TXT v=spf1 ip4:192.0.2.1 ptr"],
    }
    report = lint(zone)
    assert report.counts.dns_terms == 6
    assert [f.code for f in report.findings] == [Code.PTR]  # c.example's, said once


def test_multiple_records() -> None:
    report = lint({"sender.example": ["TXT v=spf1 -all", "TXT v=spf1 mx -all"]})
    assert codes(report) == [(Code.MULTIPLE_RECORDS, "sender.example", None)]
    assert report.record is None
    included = lint(
        {
            "sender.example": ["TXT v=spf1 include:two.example -all"],
            "two.example": ["TXT v=spf1 -all", "TXT v=spf1 +all"],
        }
    )
    assert codes(included) == [(Code.MULTIPLE_RECORDS, "two.example", None)]


def test_no_record_says_why_and_names_a_near_miss() -> None:
    report = lint({"sender.example": ["TXT v=spf1-all", "TXT other"]})
    assert codes(report) == [(Code.NO_RECORD, "sender.example", None)]
    assert "'v=spf1-all' does not begin with 'v=spf1 '" in only(report, Code.NO_RECORD)
    assert lint({}).findings[0].message.endswith("(NXDOMAIN)")


def test_dns_failures_are_errors_that_say_what_failed() -> None:
    top = lint({}, failing={"sender.example": DnsFailure.SERVFAIL})
    assert codes(top) == [(Code.DNS_FAILURE, "sender.example", None)]
    below = lint(
        {"sender.example": ["TXT v=spf1 a:host.example include:slow.example -all"]},
        failing={"host.example": DnsFailure.TIMEOUT, "slow.example": DnsFailure.TIMEOUT},
    )
    assert codes(below) == [
        (Code.DNS_FAILURE, "sender.example", 8),
        (Code.DNS_FAILURE, "sender.example", 23),
    ]
    assert "looking up slow.example: fake timeout" in below.findings[1].message
    assert not below.counts.complete


def test_void_lookups_per_client_family() -> None:
    zone = {
        "sender.example": ["TXT v=spf1 a:v4only.example a:v4only.example mx:v4only.example -all"],
        "v4only.example": ["A 192.0.2.1"],
    }
    report = lint(zone)
    assert (report.counts.void_lookups_ipv4, report.counts.void_lookups_ipv6) == (1, 3)
    message = only(report, Code.VOID_LOOKUPS)
    assert message.startswith("3 void lookups for an IPv6 client, where receivers stop at 2")
    assert "a:v4only.example (v4only.example has no AAAA records)" in message
    assert "mx:v4only.example (v4only.example has no MX records)" in message


def test_void_lookups_for_every_client_are_said_once() -> None:
    zone = {"sender.example": ["TXT v=spf1 exists:a.example exists:b.example mx:c.example -all"]}
    report = lint(zone)
    assert only(report, Code.VOID_LOOKUPS).startswith("3 void lookups for any client")
    assert [f.code for f in report.findings].count(Code.VOID_TERM) == 3


def test_more_than_ten_mx_records() -> None:
    exchanges = [f"MX {n} mx{n}.sender.example" for n in range(11)]
    report = lint({"sender.example": ["TXT v=spf1 mx -all", *exchanges]})
    assert codes(report) == [(Code.TOO_MANY_MX, "sender.example", 8)]
    assert "has 11 MX records" in report.findings[0].message


def test_terms_with_macros_count_but_are_not_followed() -> None:
    report = lint({"sender.example": ["TXT v=spf1 include:%{d2}._spf.example -all"]})
    assert codes(report) == [(Code.MACRO_NOT_FOLLOWED, "sender.example", 8)]
    assert report.counts.dns_terms == 1
    assert not report.counts.complete


def test_a_tree_too_large_to_follow_is_cut_and_said_so() -> None:
    report = lint(chain(MAX_RECORDS + 5))
    assert report.counts.records == MAX_RECORDS
    assert not report.counts.complete
    assert Code.WALK_INCOMPLETE in [f.code for f in report.findings]
    assert "(at least " in only(report, Code.TOO_MANY_LOOKUPS)


def test_a_record_given_with_record_has_its_includes_looked_up() -> None:
    zone = {
        "sender.example": ["TXT v=spf1 -all", "TXT verification=0123456789"],
        "_spf.provider.example": ["TXT v=spf1 ptr ~all"],
    }
    report = lint(zone, record="v=spf1 include:_spf.provider.example include:gone.example -all")
    assert report.source is Source.ARGUMENT
    assert report.record == "v=spf1 include:_spf.provider.example include:gone.example -all"
    assert codes(report) == [
        (Code.INCLUDE_WITHOUT_RECORD, "sender.example", 38),
        (Code.PTR, "_spf.provider.example", 8),
    ]
    # §3.4: the new record replaces the published one beside the other TXT records
    assert report.counts.octets == len("sender.example") + len(report.record) + 23


def test_a_record_given_in_zone_file_form() -> None:
    report = lint({}, record='"v=spf1 ip4:192.0.2.0/24 " "-all"')
    assert report.record == "v=spf1 ip4:192.0.2.0/24 -all"
    assert report.findings == ()
    broken = lint({}, record='"v=spf1 -all')
    assert codes(broken) == [(Code.BAD_QUOTING, "sender.example", 1)]


@pytest.mark.parametrize("domain", ["localhost", "a..example", "%{d}.example", ""])
def test_an_invalid_domain_is_not_looked_up(domain: str) -> None:
    resolver = FakeResolver({})
    report = lint_domain(domain, Lookups(resolver, timeout=5.0))
    assert [f.code for f in report.findings] == [Code.INVALID_DOMAIN]
    assert resolver.asked == []


def test_a_domain_is_looked_up_as_a_lower_case_a_label() -> None:
    resolver = FakeResolver({"xn--bcher-kva.example": ["TXT v=spf1 -all"]})
    report = lint_domain("Bücher.Example.", Lookups(resolver, timeout=5.0))
    assert report.domain == "xn--bcher-kva.example"
    assert report.findings == ()


def test_each_question_is_asked_once() -> None:
    zone = {
        "sender.example": [
            "TXT v=spf1 include:a.example include:a.example a:h.example a:h.example -all"
        ],
        "a.example": ["TXT v=spf1 a:h.example"],
        "h.example": ["A 192.0.2.1", "AAAA 2001:db8::1"],
    }
    resolver = FakeResolver(zone)
    lint_domain("sender.example", Lookups(resolver, timeout=5.0))
    assert sorted(resolver.asked) == sorted(set(resolver.asked))


def test_pyspf_is_asked_about_records_without_syntax_problems_only() -> None:
    asked: list[bytes] = []

    def cross_check(record: bytes) -> str | None:
        asked.append(record)
        return "Unknown mechanism found: x" if record == b"v=spf1 -all" else None

    zone = {
        "sender.example": ["TXT v=spf1 include:a.example include:b.example -all"],
        "a.example": ["TXT v=spf1 a/33"],
        "b.example": ["TXT v=spf1 -all"],
    }
    report = lint_domain(
        "sender.example", Lookups(FakeResolver(zone), timeout=5.0), cross_check=cross_check
    )
    # a.example's record has an error of its own: pyspf is not asked; the top one's last
    assert asked == [b"v=spf1 -all", b"v=spf1 include:a.example include:b.example -all"]
    assert codes(report) == [
        (Code.BAD_CIDR, "a.example", 9),
        (Code.PYSPF_PERMERROR, "b.example", None),
    ]
    assert (
        only(report, Code.PYSPF_PERMERROR)
        == "pyspf gives permerror for this record: Unknown mechanism found: x"
    )


@pytest.mark.parametrize("record", ["v=spf1 include:%{d} -all", "v=spf1 redirect=%{D}"])
def test_an_include_of_the_own_domain_by_macro_is_a_loop(record: str) -> None:
    report = lint({}, record=record)
    assert codes(report) == [(Code.INCLUDE_LOOP, "sender.example", 8)]
    assert only(report, Code.INCLUDE_LOOP).endswith(
        "is sender.example, this record: an endless loop"
    )


def test_a_record_only_pyspf_rejects_is_an_error_with_pyspf_s_reason() -> None:
    report = lint({"sender.example": ["TXT v=spf1 foo=a foo=b -all"]})
    assert codes(report) == [
        (Code.PYSPF_PERMERROR, "sender.example", None),
        (Code.UNKNOWN_MODIFIER, "sender.example", 8),
        (Code.UNKNOWN_MODIFIER, "sender.example", 14),
    ]
    assert only(report, Code.PYSPF_PERMERROR).endswith("foo= MUST appear at most once")
