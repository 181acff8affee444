"""Lint against the RFC 7208 test suite: what the suite calls a permerror, lint calls an error.

Every test of the suite that expects permerror, with its scenario's zone answered in process
through the daemon's own reply parsing (tests/support/zoneanswers.py), must give an error
finding for the domain it checks, but three (NOT_STATIC, each with its reason). And
pyspf's opinion of every record in the suite's zones is checked against lint's own parser:
what pyspf rejects, the parser rejects.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from spfpolicy.evaluation.recordcheck import pyspf_permerror
from spfpolicy.lint.fetch import Lookups
from spfpolicy.lint.linter import lint_domain
from spfpolicy.lint.record import parse_record
from spfpolicy.lint.rules import Code, Severity
from spfpolicy.lint.source import is_spf
from tests.support.zoneanswers import ZoneAnswers
from tests.support.zones import split_text

SUITE = Path(__file__).parents[1] / "conformance" / "rfc7208-tests.yml"
SCENARIOS: list[dict[str, Any]] = list(yaml.safe_load_all(SUITE.read_text(encoding="utf-8")))

# The permerrors lint does not call errors, and what it says instead (None: nothing).
NOT_STATIC: dict[str, Code | None] = {
    # %{H} expands to the HELO name: only a long one makes the name too long.
    "invalid-domain-long-via-macro": Code.MACRO_NOT_FOLLOWED,
    # §4.6.4 asks receivers to limit void lookups (a SHOULD, and configurable): a warning.
    "void-over-limit": Code.VOID_LOOKUPS,
    # Two identical records are one in DNS: the answer holds an RRset, no repeats (the suite
    # accepts fail, "cannot be reliably reproduced with live DNS").
    "multispf1": None,
}


def permerror_cases() -> Iterator[Any]:
    for scenario in SCENARIOS:
        for name, test in scenario["tests"].items():
            results = [test["result"]] if isinstance(test["result"], str) else test["result"]
            if "permerror" in results:
                domain = test["mailfrom"].rpartition("@")[2] or test["helo"]
                yield pytest.param(scenario["zonedata"], domain, name, id=name)


@pytest.mark.parametrize(("zonedata", "domain", "name"), list(permerror_cases()))
def test_a_suite_permerror_is_a_lint_error(
    zonedata: Mapping[str, Any], domain: str, name: str
) -> None:
    report = lint_domain(domain, Lookups(ZoneAnswers(zonedata), timeout=1.0))
    found = {finding.code: finding.severity for finding in report.findings}
    if name in NOT_STATIC:
        instead = NOT_STATIC[name]
        assert instead in found if instead else not found, report.findings
        return
    assert Severity.ERROR in found.values(), report.findings


def test_the_suite_has_the_permerror_cases_expected() -> None:
    names = {param.values[2] for param in permerror_cases()}
    assert len(names) >= 70
    assert set(NOT_STATIC) <= names


def suite_records() -> Iterator[Any]:
    """Every SPF record in the suite's zones, as the DNS server serves its octets."""
    seen = set()
    for scenario in SCENARIOS:
        for owner, entries in scenario["zonedata"].items():
            for entry in entries:
                if not isinstance(entry, Mapping):
                    continue
                for rdtype, value in entry.items():
                    if rdtype not in ("TXT", "SPF") or value in ("NONE", "TIMEOUT"):
                        continue
                    texts = [value] if isinstance(value, str) else value
                    strings = [chunk for text in texts for chunk in split_text(text)]
                    if is_spf(strings) and (owner, b"".join(strings)) not in seen:
                        seen.add((owner, b"".join(strings)))
                        yield pytest.param(b"".join(strings), id=owner)


@pytest.mark.parametrize("record", list(suite_records()))
def test_what_pyspf_rejects_lint_s_parser_rejects(record: bytes) -> None:
    problem = pyspf_permerror(record)
    if problem is not None:
        assert parse_record(record.decode("latin-1")).problems, problem
