"""Where a record's text comes from: SPF records told from other TXT, --record's two forms."""

from __future__ import annotations

import pytest

from spfpolicy.lint.rules import Code
from spfpolicy.lint.source import (
    RecordText,
    answer_octets,
    from_argument,
    is_spf,
    near_misses,
    spf_records,
)


@pytest.mark.parametrize(
    ("strings", "expected"),
    [
        ((b"v=spf1 -all",), True),
        ((b"v=spf1",), True),
        ((b"V=SPF1 mx",), True),
        ((b"v=spf1", b" mx"), True),  # the strings are joined first (§3.3)
        ((b"v=spf10",), False),
        ((b"v=spf1mx",), False),
        ((b" v=spf1 -all",), False),
        ((b"spf2.0/pra -all",), False),
        ((), False),
    ],
)
def test_is_spf(strings: tuple[bytes, ...], expected: bool) -> None:
    assert is_spf(strings) is expected


def test_the_spf_records_among_txt_records() -> None:
    txt = [(b"google-site-verification=x",), (b"v=spf1 ", b"-all"), (b"v=spf1x",)]
    assert spf_records(txt) == [RecordText((b"v=spf1 ", b"-all"))]
    assert near_misses(txt) == ["v=spf1x"]
    assert answer_octets("a.example", txt) == 9 + 26 + 11 + 7


def test_record_text_joins_strings_and_keeps_their_boundaries() -> None:
    record = RecordText((b"v=spf1 ip4:192.0.2.1 ", b"mx ", b"-all"))
    assert record.text == "v=spf1 ip4:192.0.2.1 mx -all"
    assert record.boundaries == [21, 24]


def test_an_unquoted_record_is_one_string() -> None:
    record, problem = from_argument("v=spf1 a -all")
    assert problem is None
    assert record == RecordText((b"v=spf1 a -all",))


def test_a_quoted_record_is_read_as_a_zone_file_writes_it() -> None:
    record, problem = from_argument(r'"v=spf1 a " "exp=x\"y.example" "\065\\"')
    assert problem is None
    assert record == RecordText((b"v=spf1 a ", b'exp=x"y.example', b"A\\"), quoted=True)


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ('"v=spf1 -all', 1, "not closed"),
        ('"v=spf1" mx', 10, "outside the quoted strings"),
    ],
)
def test_bad_quoting(text: str, column: int, fragment: str) -> None:
    record, problem = from_argument(text)
    assert record is None
    assert problem is not None
    assert (problem.code, problem.column) == (Code.BAD_QUOTING, column)
    assert fragment in problem.message
