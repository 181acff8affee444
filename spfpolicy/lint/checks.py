"""The checks of one parsed record on its own: pure, no DNS (the tree walk adds what needs it).

Each check looks at the record as a receiver evaluates it (RFC 7208 §4.6.2: terms in order,
the first match ends it) and says what works differently from how it reads.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from spfpolicy.lint.findings import Finding
from spfpolicy.lint.record import ParsedRecord, Term, TermKind
from spfpolicy.lint.rules import Code
from spfpolicy.lint.source import RecordText

MAX_STRING = 255  # RFC 1035 §3.3: one length octet per <character-string>
MAX_ANSWER = 450  # RFC 7208 §3.4: the name and its TXT records, to stay within 512-octet UDP
_P_MACRO = re.compile(r"%\{p", re.IGNORECASE)


def record_findings(domain: str, record: ParsedRecord, *, top: bool) -> list[Finding]:
    """Everything one record shows by itself.

    top is True for the record a receiver starts from, or reaches through redirect= from it:
    there the final all decides everyone's result; in an include: target it decides only
    whether the include matches.
    """
    findings = [Finding(p.code, domain, p.column, p.message) for p in record.problems]
    findings += _all_findings(domain, record, top=top)
    findings += _modifier_findings(domain, record)
    findings += _ptr_findings(domain, record)
    findings += network_findings(domain, record.mechanisms)
    findings += _duplicate_terms(domain, record.terms)
    return findings


def _all_findings(domain: str, record: ParsedRecord, *, top: bool) -> list[Finding]:
    mechanisms = record.mechanisms
    ending = next((term for term in mechanisms if term.name == "all"), None)
    if ending is None:
        if top and record.modifier("redirect") is None and not record.problems:
            message = "no all mechanism and no redirect=: anyone not listed gets neutral"
            return [Finding(Code.NO_ALL, domain, None, message)]
        return []
    findings = []
    if ending.qualifier == "+":
        message = f"{ending.text} passes every host on the Internet"
        if not top:
            message += f" for everyone who includes {domain}"
        findings.append(Finding(Code.PASS_ALL, domain, ending.column, message))
    elif ending.qualifier == "?" and top:
        message = f"{ending.text}: hosts not listed get neutral, which receivers treat as no SPF"
        findings.append(Finding(Code.NEUTRAL_ALL, domain, ending.column, message))
    for term in mechanisms[mechanisms.index(ending) + 1 :]:
        message = f"{term.text} comes after {ending.text}, which matches every host"
        findings.append(Finding(Code.AFTER_ALL, domain, term.column, message))
    redirect = record.modifier("redirect")
    if redirect is not None:
        message = f"{redirect.text} is ignored: {ending.text} ends every evaluation first"
        findings.append(Finding(Code.REDIRECT_IGNORED, domain, redirect.column, message))
    return findings


def _modifier_findings(domain: str, record: ParsedRecord) -> list[Finding]:
    return [
        Finding(Code.UNKNOWN_MODIFIER, domain, term.column, f"{term.text}: an unknown modifier")
        for term in record.terms
        if term.kind is TermKind.MODIFIER and term.name not in ("redirect", "exp")
    ]


def _ptr_findings(domain: str, record: ParsedRecord) -> list[Finding]:
    findings = []
    for term in record.terms:
        if term.kind is TermKind.MECHANISM and term.name == "ptr":
            message = (
                f"{term.text}: ptr is slow, unreliable and deprecated; a receiver checks at "
                "most 10 PTR names"
            )
            findings.append(Finding(Code.PTR, domain, term.column, message))
        match = _P_MACRO.search(term.text)
        if match is not None:
            message = f"{term.text}: the %{{p}} macro makes receivers look up and check PTR names"
            findings.append(Finding(Code.PTR_MACRO, domain, term.column + match.start(), message))
    return findings


def network_findings(domain: str, mechanisms: Sequence[Term]) -> list[Finding]:
    """ip4:/ip6: networks that repeat, hide or widen one another, or set host bits (§5.6)."""
    findings = []
    networks = [term for term in mechanisms if term.network is not None]
    for index, term in enumerate(networks):
        assert term.network is not None
        if term.host_bits:
            message = f"{term.text} is the network {term.network}: the address has host bits set"
            findings.append(Finding(Code.HOST_BITS_SET, domain, term.column, message))
        if term.network.prefixlen == 0:
            message = f"{term.text} matches every {'IPv4' if term.name == 'ip4' else 'IPv6'} host"
            findings.append(Finding(Code.PERMITS_EVERYONE, domain, term.column, message))
        for earlier in networks[:index]:
            finding = _overlap(domain, earlier, term)
            if finding is not None:
                findings.append(finding)
                break
    return findings


def _overlap(domain: str, earlier: Term, later: Term) -> Finding | None:
    """What a later network's relation to an earlier one means, if anything."""
    first, second = earlier.network, later.network
    assert first is not None
    assert second is not None
    if first.version != second.version:
        return None
    where = f"{earlier.text} at column {earlier.column}"
    if first == second:
        message = f"{later.text} repeats {where}"
        if later.qualifier != earlier.qualifier:
            message += ", which matches first: this one never does"
        return Finding(Code.DUPLICATE_NETWORK, domain, later.column, message)
    if second.subnet_of(first):  # type: ignore[arg-type]  # same version, checked above
        message = f"{later.text} is inside {where}, which matches first: it never matches"
        return Finding(Code.OVERLAPPING_NETWORK, domain, later.column, message)
    if first.subnet_of(second) and earlier.qualifier == later.qualifier:  # type: ignore[arg-type]
        message = f"{where} is inside {later.text} with the same result: it adds nothing"
        return Finding(Code.OVERLAPPING_NETWORK, domain, earlier.column, message)
    return None


def _duplicate_terms(domain: str, terms: Sequence[Term]) -> list[Finding]:
    """A DNS-querying term written twice: the second costs a lookup and cannot match."""
    findings = []
    seen: dict[str, Term] = {}
    for term in terms:
        if not term.queries_dns or term.kind is TermKind.MODIFIER:
            continue
        key = term.text.lower().lstrip("+")
        if key in seen:
            message = f"{term.text} repeats {seen[key].text} at column {seen[key].column}"
            findings.append(Finding(Code.DUPLICATE_TERM, domain, term.column, message))
        else:
            seen[key] = term
    return findings


def size_findings(domain: str, record: RecordText, octets: int) -> list[Finding]:
    """The record's strings and the whole TXT answer against DNS's sizes (§3.3, §3.4).

    octets: what §3.4 measures, the name and the text of all its TXT records. A string over
    255 octets can only come from --record: DNS cannot hold one.
    """
    findings = []
    text = record.text
    column = 1
    for string in record.strings:
        if len(string) > MAX_STRING:
            findings.append(_long_string(domain, record, column, len(string)))
        column += len(string)
    for boundary in record.boundaries:
        if 0 < boundary < len(text) and " " not in text[boundary - 1 : boundary + 1]:
            start = text.rfind(" ", 0, boundary) + 1
            end = text.find(" ", boundary)
            term = text[start : end if end >= 0 else len(text)]
            message = f"a string ends inside {term!r}, which receivers read as one term"
            findings.append(Finding(Code.STRING_BOUNDARY_IN_TERM, domain, boundary + 1, message))
    if octets > MAX_ANSWER:
        message = (
            f"the TXT answer for {domain} holds {octets} octets (the name and all its TXT "
            f"records), over {MAX_ANSWER}: it may not fit in a UDP reply, and receivers whose "
            "TCP fallback fails see no record"
        )
        findings.append(Finding(Code.RECORD_TOO_LONG, domain, None, message))
    return findings


def _long_string(domain: str, record: RecordText, column: int, length: int) -> Finding:
    if record.quoted:
        message = f"the string at column {column} has {length} octets; one holds {MAX_STRING}"
        return Finding(Code.STRING_TOO_LONG, domain, column, message)
    cut = record.text.rfind(" ", 0, MAX_STRING) + 1 or MAX_STRING
    message = (
        f"the record has {length} octets and one TXT string holds {MAX_STRING}: publish it as "
        f"several, e.g. one ending after column {cut} and one for the rest"
    )
    return Finding(Code.NEEDS_SPLITTING, domain, None, message)
