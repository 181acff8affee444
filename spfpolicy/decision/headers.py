"""Trace header text for a checked message: Received-SPF and Authentication-Results.

Each function returns one header line, "Name: value", for Postfix's ``PREPEND`` action: no CR,
no LF, no folding. The sender, the HELO name, the matched mechanism and the problem text come
from the SMTP client or from its DNS, so every value goes through :func:`sanitize` before it is
quoted; nothing an attacker sends can end the line or add a header of its own.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

from spfpolicy.model import Identity, SpfOutcome, SpfResult

RECEIVED_SPF = "Received-SPF"  # RFC 7208 §9.1
AUTHENTICATION_RESULTS = "Authentication-Results"  # RFC 8601 §2.2

# No legitimate value is longer: a domain name is at most 255 octets (RFC 1035 §2.3.4) and a
# mailbox at most 254 (RFC 5321 §4.5.3.1.3, a 256-octet path less its angle brackets). Anything
# longer is noise or an attack, and capping each value keeps a header to a few kilobytes even
# when a client sends a megabyte of HELO. The cap counts characters, not octets.
MAX_VALUE_LENGTH = 255
TRUNCATION_MARK = "..."
REPLACEMENT = "?"

# Characters replaced by REPLACEMENT in every value:
# - C0 controls, DEL and C1 controls (U+0085 NEL among them): CR and LF would end the header
#   and start one the attacker writes; the others have no place in a header (RFC 5322 §2.2,
#   RFC 6532 §3.2 admits non-ASCII but not C1 controls);
# - U+2028 and U+2029: line and paragraph separators, line breaks to Unicode-aware tools;
# - bidirectional embeddings, overrides and isolates: they make a mail reader show the rest of
#   the line in a different order from the bytes ("Trojan Source", CVE-2021-42574);
# - lone surrogates (from a surrogateescape decode): they cannot be encoded as UTF-8 at all.
# Replacing rather than dropping keeps the evidence, and cannot join two harmless pieces into a
# word the attacker wanted ("pa\x00ss" stays "pa?ss", it does not become "pass").
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")

# RFC 5322 §3.2.3 atext; RFC 6532 §3.2 adds non-ASCII, which _is_atext admits when printable.
_ASCII_ATEXT = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~")
_ASCII_ATOM = "[A-Za-z0-9!#$%&'*+\\-/=?^_`{|}~]+"
_ASCII_DOT_ATOM = re.compile(f"{_ASCII_ATOM}(?:\\.{_ASCII_ATOM})*")
# RFC 2045 §5.1 tspecials: a token is US-ASCII without these, SPACE or CTLs.
_TSPECIALS = frozenset('()<>@,;:\\"/[]?=')
_TOKEN_CHARS = frozenset(chr(code) for code in range(33, 127)) - _TSPECIALS
# Left bare in a pvalue's local-part: atext without "=", which sloppy parsers split on.
_BARE_LOCAL_PART = _ASCII_ATEXT - {"="}
# RFC 6376 §3.5 sub-domain (via RFC 8601 §2.2 domain-name): letters, digits, inner hyphens.
_LDH_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")

# The Received-SPF comment for each result (RFC 7208 §9.1 asks for one a human can read).
_COMMENTS = {
    SpfResult.PASS: "domain of {domain} designates {client} as permitted sender",
    SpfResult.FAIL: "domain of {domain} does not designate {client} as permitted sender",
    SpfResult.SOFTFAIL: (
        "domain of {domain} probably does not designate {client} as permitted sender"
    ),
    SpfResult.NEUTRAL: "domain of {domain} makes no assertion about {client}",
    SpfResult.NONE: "{domain} does not publish an SPF record",
    SpfResult.TEMPERROR: "temporary error checking SPF for {domain}",
    SpfResult.PERMERROR: "permanent error checking SPF for {domain}",
}
_COMMENT_NO_DOMAIN = "no domain to check SPF for"  # none, when check_host() had no <domain>
# Added to the comment when the result rests on an expired answer ([dns] serve_stale, RFC 8767).
STALE_COMMENT = "stale DNS data"
_UNKNOWN_DOMAIN = "the sender"
_UNKNOWN_CLIENT = "the client"

# Mailfrom first: it is the result readers, filters and DMARC look for.
_IDENTITY_ORDER = {Identity.MAILFROM: 0, Identity.HELO: 1}


def sanitize(value: str, limit: int = MAX_VALUE_LENGTH) -> str:
    """Return value safe to put in a header or an SMTP reply: one line, at most limit characters.

    Longer values are cut to ``limit`` characters ending in TRUNCATION_MARK. Every control
    character (C0, DEL, C1), the Unicode line and paragraph separators, the bidirectional
    controls and lone surrogates are each replaced by REPLACEMENT. Other non-ASCII text, such
    as an IDN U-label, is kept. The result is not quoted; quoting is the caller's job.
    """
    if limit < len(TRUNCATION_MARK):
        raise ValueError(f"limit must be at least {len(TRUNCATION_MARK)}, got {limit}")
    if len(value) <= limit and value.isascii() and value.isprintable():
        return value  # the common case: printable ASCII has nothing to replace
    if len(value) > limit:
        # Cut first, so a megabyte of input costs no more than the limit to clean.
        value = value[: limit - len(TRUNCATION_MARK)] + TRUNCATION_MARK
    return _UNSAFE.sub(REPLACEMENT, value)


def received_spf(outcome: SpfOutcome, *, client_address: str, helo: str, receiver: str) -> str:
    """Return the Received-SPF header line for one outcome (RFC 7208 §9.1).

    client_address and helo are what the client presented; receiver is our host name. Empty
    values are left out, as are mechanism and problem when the outcome has none; the comment
    ends in "; stale DNS data" when the result rests on an expired answer. For example::

        Received-SPF: pass (mx.receiver.example: domain of sender.example designates
        192.0.2.1 as permitted sender) client-ip=192.0.2.1; envelope-from="user@sender.example";
        helo=mail.sender.example; receiver=mx.receiver.example; identity=mailfrom

    (shown folded here; the line returned is never folded).
    """
    pairs = [
        ("client-ip", client_address),
        ("envelope-from", outcome.sender),
        ("helo", helo),
        ("receiver", receiver),
        ("identity", outcome.identity.value),
        ("mechanism", outcome.mechanism),
        ("problem", outcome.problem),
    ]
    # key-value-list: pairs joined by ";" and optional CFWS (RFC 7208 §9.1).
    key_value_list = "; ".join(
        f"{key}={_dot_atom_or_quoted(sanitize(value))}" for key, value in pairs if value
    )
    comment = _comment(_received_spf_comment(outcome, client_address, receiver))
    return f"{RECEIVED_SPF}: {outcome.result.value} {comment} {key_value_list}"


def authentication_results(outcomes: Sequence[SpfOutcome], *, authserv_id: str) -> str:
    """Return the Authentication-Results header line for the SPF outcomes (RFC 8601).

    Each outcome becomes one "spf=<result>" resinfo with smtp.mailfrom (the sender address, or
    its domain when it has no local-part) or smtp.helo (the HELO name) as RFC 8601 §2.7.2 says;
    a short comment gives the matched mechanism or the problem when there is one, and says
    "stale DNS data" when the result rests on an expired answer ([dns] serve_stale). With no
    outcomes the result is "none" (RFC 8601 §2.2). For example::

        Authentication-Results: mx.receiver.example; spf=pass (mechanism mx matched)
        smtp.mailfrom=user@sender.example; spf=pass smtp.helo=mail.sender.example

    (shown folded here; the line returned is never folded).
    """
    head = f"{AUTHENTICATION_RESULTS}: {_value(sanitize(authserv_id))}"
    if not outcomes:
        return f"{head}; none"
    ordered = sorted(outcomes, key=lambda outcome: _IDENTITY_ORDER[outcome.identity])
    return head + "".join(f"; {_resinfo(outcome)}" for outcome in ordered)


def _received_spf_comment(outcome: SpfOutcome, client_address: str, receiver: str) -> str:
    """The human-readable text of the Received-SPF comment, unescaped."""
    if outcome.result is SpfResult.NONE and not outcome.domain:
        text = _COMMENT_NO_DOMAIN
    else:
        # str.format only substitutes into our own templates; the values are never parsed.
        text = _COMMENTS[outcome.result].format(
            domain=sanitize(outcome.domain) if outcome.domain else _UNKNOWN_DOMAIN,
            client=sanitize(client_address) if client_address else _UNKNOWN_CLIENT,
        )
    if outcome.stale_dns:
        text = f"{text}; {STALE_COMMENT}"
    return f"{sanitize(receiver)}: {text}" if receiver else text


def _resinfo(outcome: SpfOutcome) -> str:
    """One "spf=<result> [(comment)] smtp.<property>=<pvalue>" of RFC 8601 §2.2."""
    parts = [f"spf={outcome.result.value}"]
    notes = []
    if outcome.problem:
        notes.append(sanitize(outcome.problem))
    elif outcome.mechanism:
        notes.append(f"mechanism {sanitize(outcome.mechanism)} matched")
    if outcome.stale_dns:
        notes.append(STALE_COMMENT)
    if notes:
        parts.append(_comment("; ".join(notes)))
    if outcome.identity is Identity.MAILFROM:
        local_part, at, _ = outcome.sender.rpartition("@")
        # RFC 8601 §2.7.2: the whole address when it has a local-part, else the domain.
        prop, value = "smtp.mailfrom", outcome.sender if at and local_part else outcome.domain
    else:
        prop, value = "smtp.helo", outcome.domain
    if value:
        parts.append(f"{prop}={_pvalue(sanitize(value))}")
    return " ".join(parts)


def _comment(text: str) -> str:
    """An RFC 5322 §3.2.2 comment: "(", ")" and "\\" escaped as quoted-pairs, so none nest."""
    if "(" not in text and ")" not in text and "\\" not in text:
        return f"({text})"
    return "(" + re.sub(r"([()\\])", r"\\\1", text) + ")"


def _quoted_string(text: str) -> str:
    """An RFC 5322 §3.2.4 quoted-string: '"' and "\\" escaped as quoted-pairs."""
    if '"' not in text and "\\" not in text:
        return f'"{text}"'
    return '"' + re.sub(r'(["\\])', r"\\\1", text) + '"'


def _is_atext(char: str) -> bool:
    """RFC 5322 §3.2.3 atext, with RFC 6532 §3.2's non-ASCII when it is printable."""
    # Non-printable non-ASCII (spaces such as U+00A0, format characters, unassigned code
    # points) is allowed by RFC 6532 but easy to misread, so such values are quoted instead.
    return char in _ASCII_ATEXT or (char > "\x7f" and char.isprintable())


def _is_dot_atom(text: str) -> bool:
    """RFC 5322 §3.2.3 dot-atom-text: atoms of atext joined by single dots."""
    if text.isascii():  # nearly always: one C-level match instead of a loop per character
        return _ASCII_DOT_ATOM.fullmatch(text) is not None
    return all(atom and all(_is_atext(char) for char in atom) for atom in text.split("."))


def _dot_atom_or_quoted(text: str) -> str:
    """A Received-SPF value: a dot-atom as it is, anything else quoted (RFC 7208 §9.1)."""
    return text if _is_dot_atom(text) else _quoted_string(text)


def _value(text: str) -> str:
    """An RFC 8601 §2.2 value: an RFC 2045 token as it is, anything else quoted."""
    is_token = bool(text) and all(char in _TOKEN_CHARS for char in text)
    return text if is_token else _quoted_string(text)


def _pvalue(text: str) -> str:
    """An RFC 8601 §2.2 pvalue: a plain local-part@domain-name bare, else a value."""
    # pvalue = value / [ [ local-part ] "@" ] domain-name. Receivers and RFC 8601's own
    # examples write a plain address bare, and some parsers handle nothing else; anything
    # less plain (a quoted local-part, "=", an IDN) falls back to a token or a quoted-string.
    local_part, at, domain = text.rpartition("@")
    if at and _is_plain_local_part(local_part) and _is_domain_name(domain):
        return text
    return _value(text)


def _is_plain_local_part(text: str) -> bool:
    """A dot-atom local-part of ASCII atext without "=" (RFC 5322 §3.4.1)."""
    return all(atom and set(atom) <= _BARE_LOCAL_PART for atom in text.split("."))


def _is_domain_name(text: str) -> bool:
    """An RFC 6376 §3.5 domain-name: two or more LDH labels."""
    labels = text.split(".")
    return len(labels) >= 2 and all(_LDH_LABEL.fullmatch(label) for label in labels)
