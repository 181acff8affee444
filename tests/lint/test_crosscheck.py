"""Lint against pyspf on generated records: what pyspf rejects, lint reports as an error.

The terms are drawn from pieces that sit at the edges of the grammar (RFC 7208 §12): prefix
lengths, macros, toplabels, modifier names, qualifiers, stray characters. The records are
linted over DNS where every name has every record, so that an error can only be the record's.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spfpolicy.evaluation.recordcheck import pyspf_permerror
from spfpolicy.lint.fetch import Lookups
from spfpolicy.lint.linter import lint_domain
from spfpolicy.lint.rules import Code, Severity
from spfpolicy.resolver.answers import DnsAnswer, DnsRecord, RecordValue

# Where pyspf rejects what RFC 7208 allows, lint has no error of its own: only pyspf's.
PYSPF_DEVIATIONS = (
    # §6: unknown modifiers "MUST be ignored no matter where, or how often, they appear";
    # pyspf (strict) makes a repeated one a permerror.
    "= MUST appear at most once",
)

VALUES: dict[str, RecordValue] = {
    "TXT": (b"v=spf1 -all",),
    "A": "192.0.2.1",
    "AAAA": "2001:db8::1",
    "MX": (10, "mx.example.com"),
}


class EveryName:
    """A resolver for which every name exists, with one record of every type."""

    def query(self, name: str, rdtype: str, deadline: float) -> DnsAnswer:
        return DnsAnswer((DnsRecord(name, rdtype, VALUES[rdtype]),), 300.0)


NAMES = ["all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists", "redirect", "exp", "foo", "x"]
QUALIFIERS = ["", "+", "-", "~", "?", "!"]
DOMAINS = [
    "example.com",
    "mail.example.com.",
    "example.com.",
    "museum",
    "1.2.3.4",
    "a.123",
    "-x.example",
    "x.-example",
    "x..example",
    "%{d}",
    "%{ir}.%{v}._spf.%{d2}",
    "%{l1r-}.example",
    "%{c}.example",
    "%{x}.example",
    "%{d0}.example",
    "%%.example",
    "%_x.example",
    "%.example",
    "x%",
    "%{d",
    "foo:bar.example",
    "x=y.example",
    "",
]
ADDRESSES = ["192.0.2.1", "192.0.2", "192.0.2.01", "256.0.0.1", "2001:db8::1", "::1", "g::", ""]
CIDRS = ["", "/0", "/24", "/32", "/33", "/032", "//64", "//129", "/24//64", "/", "//", "/x"]

pieces = st.one_of(
    st.sampled_from(DOMAINS).map(lambda d: f":{d}"),
    st.sampled_from(DOMAINS).map(lambda d: f"={d}"),
    st.sampled_from(ADDRESSES).map(lambda a: f":{a}"),
    st.sampled_from(CIDRS),
    st.sampled_from(["", ",", ".", ":", "=", "\x7f"]),
)
terms = st.builds(
    lambda q, n, p, c: f"{q}{n}{p}{c}",
    st.sampled_from(QUALIFIERS),
    st.sampled_from(NAMES),
    pieces,
    st.sampled_from(CIDRS),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(terms, min_size=1, max_size=4))
def test_what_pyspf_rejects_the_parser_rejects(chosen: list[str]) -> None:
    text = "v=spf1 " + " ".join(chosen)
    problem = pyspf_permerror(text.encode("latin-1"))
    if problem is not None:
        report = lint_domain("sender.example", Lookups(EveryName(), timeout=1.0), record=text)
        errors = [f for f in report.findings if f.severity is Severity.ERROR]
        assert errors, f"pyspf: {problem}; lint: {report.findings}"
        if all(f.code is Code.PYSPF_PERMERROR for f in errors):
            assert any(deviation in problem for deviation in PYSPF_DEVIATIONS), problem
