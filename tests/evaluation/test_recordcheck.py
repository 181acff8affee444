"""pyspf's verdict on one record alone, the second opinion lint asks for."""

from __future__ import annotations

import pytest

from spfpolicy.evaluation.recordcheck import pyspf_permerror


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        (b"v=spf1 ip4:192.0.2.0/24 moo -all", "Unknown mechanism found"),
        (b"v=spf1 ip4:192.0.2.0/33 -all", "Invalid IP4 CIDR length"),
        (b"v=spf1 a:%{q}.example -all", "Unknown Macro Encountered"),
        (b"v=spf1 redirect=a.example redirect=b.example", "redirect= MUST appear at most once"),
        # RFC 7208 §6 says to ignore unknown modifiers "no matter ... how often"; pyspf does not
        (b"v=spf1 foo=a foo=b -all", "foo= MUST appear at most once"),
    ],
)
def test_syntax_errors_are_permerrors(record: bytes, problem: str) -> None:
    found = pyspf_permerror(record)
    assert found is not None
    assert problem in found


@pytest.mark.parametrize(
    "record",
    [
        b"v=spf1 -all",
        b"v=spf1 ip4:192.0.2.0/24 include:_spf.provider.example mx -all",
        b"v=spf1 redirect=sender.example",  # a loop at sender.example: lint's to report
        b"v=spf1 include:sender.example -all",
        b"v=spf1 exists:%{p}.sender.example -all",  # needs a PTR lookup first: temperror
        b"v=spf1 ip4:192.0.2.1 -all exp=explain.sender.example",
    ],
)
def test_records_without_syntax_errors_pass(record: bytes) -> None:
    assert pyspf_permerror(record) is None
