"""The catalogue of findings: every code has its rule, and each rule is fit to print."""

from __future__ import annotations

import re

import pytest

from spfpolicy.lint.rules import RULES, Code, Severity


def test_every_code_has_a_rule() -> None:
    assert set(RULES) == set(Code)


@pytest.mark.parametrize("code", list(Code), ids=str)
def test_a_rule_names_an_rfc_section_and_one_line_of_advice(code: Code) -> None:
    rule = RULES[code]
    assert re.fullmatch(r"[1-9A-Z][0-9]?(\.[0-9]+)*", rule.section), rule.section
    assert rule.advice
    assert "\n" not in rule.advice
    assert len(rule.advice) <= 100


def test_codes_are_lower_case_words_with_hyphens() -> None:
    for code in Code:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", code.value), code


def test_severity_ranks_are_the_exit_statuses() -> None:
    assert [s.rank for s in (Severity.NOTE, Severity.WARNING, Severity.ERROR)] == [0, 1, 2]
