"""What lint can find: each finding's stable code, severity, RFC 7208 section and advice.

The codes are the JSON's vocabulary and the man page's list; a code never changes meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    """How bad a finding is; the worst one decides the exit status."""

    ERROR = "error"  # a receiver gives permerror (or temperror), or the record cannot work
    WARNING = "warning"  # works, but risky: receivers may disagree, or it lets too much in
    NOTE = "note"  # harmless, worth knowing

    @property
    def rank(self) -> int:
        """0 for a note, 1 for a warning, 2 for an error: the exit status it asks for."""
        return _RANKS[self]


_RANKS = {Severity.NOTE: 0, Severity.WARNING: 1, Severity.ERROR: 2}


class Code(StrEnum):
    """The stable name of each kind of finding."""

    # errors
    NO_RECORD = "no-record"
    MULTIPLE_RECORDS = "multiple-records"
    DNS_FAILURE = "dns-failure"
    INVALID_DOMAIN = "invalid-domain"
    BAD_VERSION = "bad-version"
    BAD_CHARACTER = "bad-character"
    UNKNOWN_MECHANISM = "unknown-mechanism"
    BAD_MECHANISM = "bad-mechanism"
    BAD_DOMAIN_SPEC = "bad-domain-spec"
    BAD_MACRO = "bad-macro"
    BAD_NETWORK = "bad-network"
    BAD_CIDR = "bad-cidr"
    BAD_MODIFIER = "bad-modifier"
    DUPLICATE_MODIFIER = "duplicate-modifier"
    INCLUDE_WITHOUT_RECORD = "include-without-record"
    REDIRECT_WITHOUT_RECORD = "redirect-without-record"
    INCLUDE_LOOP = "include-loop"
    TOO_MANY_LOOKUPS = "too-many-lookups"
    TOO_MANY_MX = "too-many-mx"
    PYSPF_PERMERROR = "pyspf-permerror"
    STRING_TOO_LONG = "string-too-long"
    BAD_QUOTING = "bad-quoting"
    # warnings
    PASS_ALL = "pass-all"  # noqa: S105 (not a password)
    NEUTRAL_ALL = "neutral-all"
    PTR = "ptr"
    PTR_MACRO = "ptr-macro"
    RECORD_TOO_LONG = "record-too-long"
    NEEDS_SPLITTING = "needs-splitting"
    VOID_LOOKUPS = "void-lookups"
    REDIRECT_IGNORED = "redirect-ignored"
    PERMITS_EVERYONE = "permits-everyone"
    # notes
    UNKNOWN_MODIFIER = "unknown-modifier"
    DUPLICATE_NETWORK = "duplicate-network"
    OVERLAPPING_NETWORK = "overlapping-network"
    HOST_BITS_SET = "host-bits-set"
    AFTER_ALL = "after-all"
    DUPLICATE_TERM = "duplicate-term"
    MACRO_NOT_FOLLOWED = "macro-not-followed"
    VOID_TERM = "void-term"
    NO_ALL = "no-all"
    STRING_BOUNDARY_IN_TERM = "string-boundary-in-term"
    WALK_INCOMPLETE = "walk-incomplete"


@dataclass(frozen=True, slots=True)
class Rule:
    """What every finding of one code shares."""

    severity: Severity
    section: str  # of RFC 7208: "4.6.4"
    advice: str  # one line: what to do about it


_E, _W, _N = Severity.ERROR, Severity.WARNING, Severity.NOTE

RULES: dict[Code, Rule] = {
    Code.NO_RECORD: Rule(_E, "4.5", 'publish one TXT record that begins with "v=spf1 "'),
    Code.MULTIPLE_RECORDS: Rule(
        _E, "4.5", "merge them into one: a name with two SPF records is a permerror"
    ),
    Code.DNS_FAILURE: Rule(
        _E, "4.4", "fix the zone's name servers: receivers give temperror until they answer"
    ),
    Code.INVALID_DOMAIN: Rule(_E, "4.3", "give a fully qualified domain name, e.g. example.com"),
    Code.BAD_VERSION: Rule(_E, "4.5", 'begin the record with "v=spf1" and a space'),
    Code.BAD_CHARACTER: Rule(
        _E, "4.6.1", "use printable US-ASCII only, with single spaces between terms"
    ),
    Code.UNKNOWN_MECHANISM: Rule(
        _E, "5", "use all, include, a, mx, ptr, ip4, ip6 or exists, or name=value for a modifier"
    ),
    Code.BAD_MECHANISM: Rule(_E, "5", "write the mechanism as RFC 7208 §5 defines it"),
    Code.BAD_DOMAIN_SPEC: Rule(
        _E, "7.1", "give a fully qualified domain name (labels of 1 to 63 characters)"
    ),
    Code.BAD_MACRO: Rule(
        _E, "7.1", 'write a macro as %{letter} (letters s l o d i p h v), a literal "%" as %%'
    ),
    Code.BAD_NETWORK: Rule(_E, "5.6", "write the address as ip4:192.0.2.0/24 or ip6:2001:db8::/32"),
    Code.BAD_CIDR: Rule(
        _E, "5.6", "give a prefix length of 0-32 for IPv4, 0-128 for IPv6, no leading zero"
    ),
    Code.BAD_MODIFIER: Rule(
        _E, "6", "write a modifier as name=value: a letter first, no qualifier before it"
    ),
    Code.DUPLICATE_MODIFIER: Rule(_E, "6", "keep one redirect= and at most one exp="),
    Code.INCLUDE_WITHOUT_RECORD: Rule(
        _E, "5.2", "remove the include:, or have its domain publish an SPF record"
    ),
    Code.REDIRECT_WITHOUT_RECORD: Rule(
        _E, "6.1", "point redirect= at a domain that publishes an SPF record"
    ),
    Code.INCLUDE_LOOP: Rule(
        _E, "4.6.4", "break the cycle: a record must not include or redirect to itself"
    ),
    Code.TOO_MANY_LOOKUPS: Rule(
        _E,
        "4.6.4",
        "replace a, mx and nested includes by ip4:/ip6: networks, or drop unused includes",
    ),
    Code.TOO_MANY_MX: Rule(
        _E, "4.6.4", "list the mail servers as ip4:/ip6: networks instead of mx (10 MX at most)"
    ),
    Code.PYSPF_PERMERROR: Rule(
        _E, "4.6", "receivers using pyspf (spfpolicy, policyd-spf) reject it: rewrite that term"
    ),
    Code.STRING_TOO_LONG: Rule(
        _E, "3.3", 'split it into strings of at most 255 octets: "v=spf1 ... " "..."'
    ),
    Code.BAD_QUOTING: Rule(
        _E, "3.3", 'write each string in double quotes, as in a zone file: "v=spf1 ... " "..."'
    ),
    Code.PASS_ALL: Rule(_W, "5.1", "end the record with -all or ~all"),
    Code.NEUTRAL_ALL: Rule(_W, "5.1", "end with ~all (or -all) once every sending host is listed"),
    Code.PTR: Rule(_W, "5.5", "list the hosts with ip4:/ip6: or a instead of ptr"),
    Code.PTR_MACRO: Rule(_W, "7.3", "avoid %{p}: it costs receivers PTR lookups and is unreliable"),
    Code.RECORD_TOO_LONG: Rule(
        _W, "3.4", "shorten it (fewer terms, wider networks) so the answer fits in UDP"
    ),
    Code.NEEDS_SPLITTING: Rule(
        _W, "3.3", "publish it as several strings of at most 255 octets, joined without spaces"
    ),
    Code.VOID_LOOKUPS: Rule(
        _W, "4.6.4", "remove terms whose names have no records for the client's address family"
    ),
    Code.REDIRECT_IGNORED: Rule(_W, "6.1", "remove either the all mechanism or redirect="),
    Code.PERMITS_EVERYONE: Rule(
        _W, "5.6", "list your own networks: this one is the whole Internet"
    ),
    Code.UNKNOWN_MODIFIER: Rule(_N, "6", "receivers ignore it; check its spelling"),
    Code.DUPLICATE_NETWORK: Rule(_N, "5.6", "remove the second one"),
    Code.OVERLAPPING_NETWORK: Rule(_N, "5.6", "remove the network that is covered by another"),
    Code.HOST_BITS_SET: Rule(_N, "5.6", "write the network address, or check the prefix length"),
    Code.AFTER_ALL: Rule(_N, "5.1", "move it before all, or remove it: it is never tested"),
    Code.DUPLICATE_TERM: Rule(
        _N, "4.6.4", "remove the second one: it costs a DNS-querying term and can add nothing"
    ),
    Code.MACRO_NOT_FOLLOWED: Rule(
        _N, "7", "check what it expands to: its lookups depend on each message"
    ),
    Code.VOID_TERM: Rule(_N, "4.6.4", "remove the term, or publish the records it looks for"),
    Code.NO_ALL: Rule(_N, "4.7", "end the record with -all or ~all to say what everyone else gets"),
    Code.STRING_BOUNDARY_IN_TERM: Rule(
        _N, "3.3", "receivers join the strings without a space: check that this is intended"
    ),
    Code.WALK_INCOMPLETE: Rule(
        _N, "4.6.4", "the counts are a lower bound: the tree has more records than lint follows"
    ),
}
