"""What lint reports: findings, the counts over a record tree, one report per domain."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from spfpolicy.lint.rules import RULES, Code, Severity

# RFC 7208 §4.6.4: the limits a receiver applies over a whole evaluation.
MAX_DNS_TERMS = 10
MAX_VOID_LOOKUPS = 2


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing lint found: where (whose record, which column), what, and what to do."""

    code: Code
    domain: str  # whose record it is in (an include: target's, for one found there)
    column: int | None  # 1-based in that record; None: about the record or the name as a whole
    message: str

    @property
    def severity(self) -> Severity:
        """The rule's severity."""
        return RULES[self.code].severity

    @property
    def section(self) -> str:
        """The RFC 7208 section, e.g. "4.6.4"."""
        return RULES[self.code].section

    @property
    def advice(self) -> str:
        """One line saying what to do."""
        return RULES[self.code].advice


class Source(StrEnum):
    """Where the linted record came from."""

    DNS = "dns"  # published: looked up as receivers do
    ARGUMENT = "argument"  # --record: not yet published


@dataclass(frozen=True, slots=True)
class Counts:
    """What a receiver may spend on the record tree (RFC 7208 §4.6.4), in the worst case.

    The worst case is the path that matches nothing: every term is evaluated, each include:
    with its whole tree, redirect= when no all ends the record first.
    """

    dns_terms: int = 0
    void_lookups_ipv4: int = 0  # for a client with an IPv4 address
    void_lookups_ipv6: int = 0
    records: int = 0  # SPF records in the tree, the domain's own among them
    octets: int = 0  # the name and all its TXT records' text (§3.4); 0 when unknown
    complete: bool = True  # False when a target could not be followed (macros, DNS trouble)


@dataclass(frozen=True, slots=True)
class DomainReport:
    """Everything lint says about one domain."""

    domain: str
    record: str | None  # the record linted; None when none was found
    source: Source
    findings: tuple[Finding, ...]
    counts: Counts

    @property
    def worst(self) -> Severity | None:
        """The most severe finding's severity; None without findings."""
        return worst_severity(self.findings)


def worst_severity(findings: Iterable[Finding]) -> Severity | None:
    """The most severe of the findings' severities, None for no findings."""
    return max((f.severity for f in findings), key=lambda s: s.rank, default=None)


def unique(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    """The findings without repeats, in order (an include: reached twice is linted once)."""
    return tuple(dict.fromkeys(findings))
