"""Tests for spfpolicy.decision.headers: Received-SPF and Authentication-Results text, sanitised.

Besides exact strings, every header is read back by a small strict reader that follows the
RFC 5322 quoting rules, so a value that escaped its quotes or its comment shows up as a parse
failure or a changed value.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spfpolicy.decision.headers import (
    MAX_VALUE_LENGTH,
    TRUNCATION_MARK,
    authentication_results,
    received_spf,
    sanitize,
)
from spfpolicy.model import Identity, SpfOutcome, SpfResult

RECEIVER = "mx.receiver.example"
HELO = "mail.sender.example"
IPV4 = "192.0.2.1"
IPV6 = "2001:db8::25"

# RFC 5322 §3.2.3 dot-atom with RFC 6532 §3.2 non-ASCII: the oracle for bare Received-SPF values.
_ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\U0010ffff]"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
# RFC 2045 §5.1 token, and RFC 8601 §2.2's bare [local-part "@"] domain-name.
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
_BARE_ADDRESS = re.compile(
    r"(?:[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(?:\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*)?@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
)
_TOKEN_OR_ADDRESS = re.compile(f"{_TOKEN.pattern}|{_BARE_ADDRESS.pattern}")


def mailfrom(
    result: SpfResult,
    sender: str = "user@sender.example",
    domain: str = "sender.example",
    *,
    mechanism: str = "",
    problem: str = "",
) -> SpfOutcome:
    """An outcome for the MAIL FROM identity."""
    return SpfOutcome(Identity.MAILFROM, result, domain, sender, "", mechanism, problem)


def stale(outcome: SpfOutcome) -> SpfOutcome:
    """The same outcome, resting on a stale DNS answer ([dns] serve_stale)."""
    return dataclasses.replace(outcome, stale_dns=True)


def helo(
    result: SpfResult, name: str = HELO, *, mechanism: str = "", problem: str = ""
) -> SpfOutcome:
    """An outcome for the HELO identity, whose sender is postmaster@<helo> (RFC 7208 §2.3)."""
    return SpfOutcome(Identity.HELO, result, name, f"postmaster@{name}", "", mechanism, problem)


class HeaderReader:
    """Reads a header line back as a strict RFC 5322 consumer would, one piece at a time."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def done(self) -> bool:
        """True when everything has been read."""
        return self.pos == len(self.text)

    def peek(self, size: int = 1) -> str:
        """The next size characters, without reading them."""
        return self.text[self.pos : self.pos + size]

    def expect(self, literal: str) -> None:
        """Read literal, which must come next."""
        assert self.text.startswith(literal, self.pos), (literal, self.text[self.pos :])
        self.pos += len(literal)

    def bare(self, stop: str) -> str:
        """Read up to (not including) the first character in stop, or to the end."""
        start = self.pos
        while not self.done() and self.peek() not in stop:
            self.pos += 1
        return self.text[start : self.pos]

    def _escaped(self, close: str, forbidden: str = "") -> str:
        """Read up to an unescaped close, undoing quoted-pairs (RFC 5322 §3.2.1)."""
        chars = []
        while (char := self.text[self.pos]) != close:
            assert char not in forbidden, f"unescaped {char!r} at {self.pos}"
            if char == "\\":
                self.pos += 1
                char = self.text[self.pos]
            chars.append(char)
            self.pos += 1
        self.pos += 1
        return "".join(chars)

    def quoted_string(self) -> str:
        """Read a quoted-string and return its content."""
        self.expect('"')
        return self._escaped('"')

    def comment(self) -> str:
        """Read a comment that nests nothing and return its content."""
        self.expect("(")
        return self._escaped(")", forbidden="(")

    def value(self, bare_form: re.Pattern[str], stop: str) -> str:
        """Read a quoted-string, or a bare value that must match bare_form."""
        if self.peek() == '"':
            return self.quoted_string()
        text = self.bare(stop)
        assert bare_form.fullmatch(text), f"{text!r} must be quoted"
        return text


def parse_received_spf(header: str) -> tuple[str, str, dict[str, str]]:
    """Split a Received-SPF line into its result, its comment and its key=value pairs."""
    reader = HeaderReader(header)
    reader.expect("Received-SPF: ")
    result = reader.bare(" ")
    reader.expect(" ")
    comment = reader.comment()
    reader.expect(" ")
    pairs: dict[str, str] = {}
    while True:
        key = reader.bare("=")
        reader.expect("=")
        assert key not in pairs, f"{key} twice"
        pairs[key] = reader.value(_DOT_ATOM, stop=";")
        if reader.done():
            return result, comment, pairs
        reader.expect("; ")


def parse_authentication_results(header: str) -> tuple[str, list[tuple[str, str, dict[str, str]]]]:
    """Split an Authentication-Results line into its authserv-id and its spf resinfos."""
    reader = HeaderReader(header)
    reader.expect("Authentication-Results: ")
    authserv_id = reader.value(_TOKEN, stop=";")
    resinfos = []
    while not reader.done():
        reader.expect("; spf=")
        result = reader.bare(" ;")
        comment = ""
        if reader.peek(2) == " (":
            reader.expect(" ")
            comment = reader.comment()
        properties = {}
        while reader.peek() == " ":
            reader.expect(" ")
            name = reader.bare("=")
            reader.expect("=")
            properties[name] = reader.value(_TOKEN_OR_ADDRESS, stop=" ;")
        resinfos.append((result, comment, properties))
    return authserv_id, resinfos


def assert_one_clean_line(header: str) -> None:
    """The header is one line of encodable text without any control or separator character."""
    assert header.splitlines() == [header]
    bad = [char for char in header if unicodedata.category(char) in {"Cc", "Cs", "Zl", "Zp"}]
    assert not bad
    header.encode("utf-8")


# --- sanitize -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("sender.example", "sender.example", id="plain"),
        pytest.param("a\rb", "a?b", id="cr"),
        pytest.param("a\nb", "a?b", id="lf"),
        pytest.param("a\r\nX-Injected: yes", "a??X-Injected: yes", id="crlf-injection"),
        pytest.param("pa\x00ss", "pa?ss", id="nul-replaced-not-dropped"),
        pytest.param("a\tb", "a?b", id="tab"),
        pytest.param("a\x1bb", "a?b", id="escape"),
        pytest.param("a\x7fb", "a?b", id="del"),
        pytest.param("a\x85b", "a?b", id="nel-c1"),
        pytest.param("a\x9fb", "a?b", id="last-c1"),
        pytest.param("a\u2028b\u2029c", "a?b?c", id="line-and-paragraph-separator"),
        pytest.param("a\u202eb\u2066c", "a?b?c", id="bidi-override-and-isolate"),
        pytest.param("a\udcffb", "a?b", id="lone-surrogate"),
        pytest.param("user@bücher.example", "user@bücher.example", id="idn-u-label-kept"),
        pytest.param("a\u00a0b\u200dc", "a\u00a0b\u200dc", id="nbsp-and-zwj-kept"),
        pytest.param("", "", id="empty"),
    ],
)
def test_sanitize(value: str, expected: str) -> None:
    assert sanitize(value) == expected


@pytest.mark.parametrize(
    ("value", "limit", "expected"),
    [
        pytest.param(
            "x" * MAX_VALUE_LENGTH, MAX_VALUE_LENGTH, "x" * MAX_VALUE_LENGTH, id="at-limit"
        ),
        pytest.param(
            "x" * (MAX_VALUE_LENGTH + 1),
            MAX_VALUE_LENGTH,
            "x" * (MAX_VALUE_LENGTH - 3) + TRUNCATION_MARK,
            id="one-over",
        ),
        pytest.param("abcdefgh", 5, "ab...", id="custom-limit"),
        pytest.param("ab\ncdefgh", 5, "ab...", id="control-cut-off"),
        pytest.param("a\nbcdefgh", 5, "a?...", id="control-kept-and-replaced"),
        pytest.param("abcdefgh", 3, "...", id="smallest-limit"),
    ],
)
def test_sanitize_truncates(value: str, limit: int, expected: str) -> None:
    assert sanitize(value, limit) == expected
    assert len(sanitize(value, limit)) <= limit


def test_sanitize_rejects_a_limit_too_small_for_the_mark() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        sanitize("abcdef", 2)


def test_sanitize_bounds_a_megabyte() -> None:
    assert sanitize("\n" * 1_000_000) == "?" * (MAX_VALUE_LENGTH - 3) + TRUNCATION_MARK


# --- Received-SPF: exact text ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "client_address", "expected"),
    [
        pytest.param(
            mailfrom(SpfResult.PASS, mechanism="ip4:192.0.2.0/24"),
            IPV4,
            "Received-SPF: pass (mx.receiver.example: domain of sender.example designates"
            " 192.0.2.1 as permitted sender) client-ip=192.0.2.1;"
            ' envelope-from="user@sender.example"; helo=mail.sender.example;'
            ' receiver=mx.receiver.example; identity=mailfrom; mechanism="ip4:192.0.2.0/24"',
            id="pass-mailfrom-ipv4",
        ),
        pytest.param(
            mailfrom(SpfResult.FAIL, mechanism="-all"),
            IPV6,
            "Received-SPF: fail (mx.receiver.example: domain of sender.example does not"
            ' designate 2001:db8::25 as permitted sender) client-ip="2001:db8::25";'
            ' envelope-from="user@sender.example"; helo=mail.sender.example;'
            " receiver=mx.receiver.example; identity=mailfrom; mechanism=-all",
            id="fail-mailfrom-ipv6-quoted",
        ),
        pytest.param(
            helo(SpfResult.SOFTFAIL, mechanism="~all"),
            IPV4,
            "Received-SPF: softfail (mx.receiver.example: domain of mail.sender.example probably"
            " does not designate 192.0.2.1 as permitted sender) client-ip=192.0.2.1;"
            ' envelope-from="postmaster@mail.sender.example"; helo=mail.sender.example;'
            " receiver=mx.receiver.example; identity=helo; mechanism=~all",
            id="softfail-helo",
        ),
        pytest.param(
            mailfrom(SpfResult.NONE),
            IPV4,
            "Received-SPF: none (mx.receiver.example: sender.example does not publish an SPF"
            ' record) client-ip=192.0.2.1; envelope-from="user@sender.example";'
            " helo=mail.sender.example; receiver=mx.receiver.example; identity=mailfrom",
            id="none-mailfrom",
        ),
        pytest.param(
            mailfrom(SpfResult.TEMPERROR, problem="DNS timeout for sender.example TXT"),
            IPV4,
            "Received-SPF: temperror (mx.receiver.example: temporary error checking SPF for"
            ' sender.example) client-ip=192.0.2.1; envelope-from="user@sender.example";'
            " helo=mail.sender.example; receiver=mx.receiver.example; identity=mailfrom;"
            ' problem="DNS timeout for sender.example TXT"',
            id="temperror-with-problem",
        ),
        pytest.param(
            helo(SpfResult.PERMERROR, problem="too many DNS lookups"),
            IPV6,
            "Received-SPF: permerror (mx.receiver.example: permanent error checking SPF for"
            ' mail.sender.example) client-ip="2001:db8::25";'
            ' envelope-from="postmaster@mail.sender.example"; helo=mail.sender.example;'
            ' receiver=mx.receiver.example; identity=helo; problem="too many DNS lookups"',
            id="permerror-helo-with-problem",
        ),
        pytest.param(
            stale(mailfrom(SpfResult.PASS, mechanism="ip4:192.0.2.0/24")),
            IPV4,
            "Received-SPF: pass (mx.receiver.example: domain of sender.example designates"
            " 192.0.2.1 as permitted sender; stale DNS data) client-ip=192.0.2.1;"
            ' envelope-from="user@sender.example"; helo=mail.sender.example;'
            ' receiver=mx.receiver.example; identity=mailfrom; mechanism="ip4:192.0.2.0/24"',
            id="pass-over-stale-dns",
        ),
    ],
)
def test_received_spf_exact(outcome: SpfOutcome, client_address: str, expected: str) -> None:
    header = received_spf(outcome, client_address=client_address, helo=HELO, receiver=RECEIVER)
    assert header == expected


# --- Received-SPF: every result for both identities -------------------------------------------

_RESULT_IDENTITY = [
    pytest.param(result, identity, id=f"{result}-{identity}")
    for identity in Identity
    for result in SpfResult
]


@pytest.mark.parametrize(("result", "identity"), _RESULT_IDENTITY)
def test_received_spf_every_result(result: SpfResult, identity: Identity) -> None:
    outcome = mailfrom(result) if identity is Identity.MAILFROM else helo(result)
    header = received_spf(outcome, client_address=IPV4, helo=HELO, receiver=RECEIVER)

    assert_one_clean_line(header)
    token, comment, pairs = parse_received_spf(header)
    assert token == result.value
    assert comment.startswith(f"{RECEIVER}: ")
    assert outcome.domain in comment
    if result in {SpfResult.PASS, SpfResult.FAIL, SpfResult.SOFTFAIL, SpfResult.NEUTRAL}:
        assert IPV4 in comment
    assert pairs == {
        "client-ip": IPV4,
        "envelope-from": outcome.sender,
        "helo": HELO,
        "receiver": RECEIVER,
        "identity": identity.value,
    }


def test_received_spf_comment_differs_for_every_result() -> None:
    comments = {
        parse_received_spf(
            received_spf(mailfrom(result), client_address=IPV4, helo=HELO, receiver=RECEIVER)
        )[1]
        for result in SpfResult
    }
    assert len(comments) == len(SpfResult)


@pytest.mark.parametrize(
    ("client_address", "written"),
    [
        pytest.param("192.0.2.1", "client-ip=192.0.2.1;", id="ipv4-bare"),
        pytest.param("198.51.100.7", "client-ip=198.51.100.7;", id="ipv4-other-range"),
        pytest.param("2001:db8::25", 'client-ip="2001:db8::25";', id="ipv6-quoted"),
        pytest.param("::ffff:203.0.113.9", 'client-ip="::ffff:203.0.113.9";', id="ipv4-mapped"),
    ],
)
def test_received_spf_client_ip(client_address: str, written: str) -> None:
    header = received_spf(
        mailfrom(SpfResult.PASS), client_address=client_address, helo=HELO, receiver=RECEIVER
    )
    assert written in header
    assert parse_received_spf(header)[2]["client-ip"] == client_address


def test_received_spf_null_sender_is_postmaster_at_helo() -> None:
    header = received_spf(helo(SpfResult.PASS), client_address=IPV4, helo=HELO, receiver=RECEIVER)
    pairs = parse_received_spf(header)[2]
    assert pairs["envelope-from"] == "postmaster@mail.sender.example"
    assert pairs["identity"] == "helo"
    assert 'envelope-from="postmaster@mail.sender.example";' in header


@pytest.mark.parametrize(
    ("outcome", "client_address", "helo_name", "absent"),
    [
        pytest.param(mailfrom(SpfResult.PASS, sender=""), IPV4, HELO, "envelope-from", id="sender"),
        pytest.param(mailfrom(SpfResult.PASS), IPV4, "", "helo", id="helo"),
        pytest.param(mailfrom(SpfResult.PASS), "", HELO, "client-ip", id="client-ip"),
        pytest.param(mailfrom(SpfResult.FAIL), IPV4, HELO, "mechanism", id="mechanism"),
        pytest.param(mailfrom(SpfResult.PERMERROR), IPV4, HELO, "problem", id="problem"),
    ],
)
def test_received_spf_leaves_out_what_it_does_not_know(
    outcome: SpfOutcome, client_address: str, helo_name: str, absent: str
) -> None:
    header = received_spf(outcome, client_address=client_address, helo=helo_name, receiver=RECEIVER)
    assert absent not in parse_received_spf(header)[2]
    assert f"{absent}=" not in header


@pytest.mark.parametrize(
    ("outcome", "comment"),
    [
        pytest.param(
            mailfrom(SpfResult.NONE, sender="", domain=""),
            "mx.receiver.example: no domain to check SPF for",
            id="none-without-domain",
        ),
        pytest.param(
            mailfrom(SpfResult.PASS, domain=""),
            "mx.receiver.example: domain of the sender designates 192.0.2.1 as permitted sender",
            id="pass-without-domain",
        ),
    ],
)
def test_received_spf_comment_without_domain(outcome: SpfOutcome, comment: str) -> None:
    header = received_spf(outcome, client_address=IPV4, helo=HELO, receiver=RECEIVER)
    assert parse_received_spf(header)[1] == comment


def test_received_spf_comment_without_receiver_or_client() -> None:
    header = received_spf(mailfrom(SpfResult.FAIL), client_address="", helo=HELO, receiver="")
    assert header.startswith(
        "Received-SPF: fail (domain of sender.example does not designate the client as"
        " permitted sender) envelope-from="
    )
    assert "receiver" not in parse_received_spf(header)[2]


# --- Received-SPF: quoting ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "written"),
    [
        pytest.param(
            "sender",
            '"quoted local"@sender.example',
            r'envelope-from="\"quoted local\"@sender.example";',
            id="quoted-local-part",
        ),
        pytest.param(
            "sender",
            "back\\slash@sender.example",
            r'envelope-from="back\\slash@sender.example";',
            id="backslash",
        ),
        pytest.param(
            "sender",
            "user@bücher.example",
            'envelope-from="user@bücher.example";',
            id="idn-u-label-readable",
        ),
        pytest.param("helo", "bücher.example", "helo=bücher.example;", id="idn-helo-dot-atom"),
        pytest.param("helo", "[192.0.2.1]", 'helo="[192.0.2.1]";', id="address-literal-helo"),
        pytest.param("helo", "bare", "helo=bare;", id="single-label-helo"),
        pytest.param("helo", "a..b", 'helo="a..b";', id="empty-atom-quoted"),
        pytest.param("helo", ".a", 'helo=".a";', id="leading-dot-quoted"),
        pytest.param("helo", "a b", 'helo="a b";', id="space-quoted"),
        pytest.param("helo", "a\u00a0b", 'helo="a\u00a0b";', id="nbsp-quoted"),
        pytest.param(
            "helo",
            "x; receiver=evil.example",
            'helo="x; receiver=evil.example";',
            id="fake-pair-quoted",
        ),
        pytest.param("mechanism", "?all", "mechanism=?all", id="mechanism-dot-atom"),
        pytest.param(
            "mechanism",
            "include:_spf.sender.example",
            'mechanism="include:_spf.sender.example"',
            id="mechanism-quoted",
        ),
    ],
)
def test_received_spf_quoting(field: str, value: str, written: str) -> None:
    sender = value if field == "sender" else "user@sender.example"
    helo_name = value if field == "helo" else HELO
    mechanism = value if field == "mechanism" else ""
    outcome = mailfrom(SpfResult.PASS, sender=sender, mechanism=mechanism)
    header = received_spf(outcome, client_address=IPV4, helo=helo_name, receiver=RECEIVER)
    assert written in header
    pairs = parse_received_spf(header)[2]
    assert pairs[{"sender": "envelope-from"}.get(field, field)] == value


@pytest.mark.parametrize(
    "domain",
    [
        pytest.param("evil).example", id="closing-paren"),
        pytest.param("evil(.example", id="opening-paren"),
        pytest.param("evil\\).example", id="backslash-paren"),
        pytest.param("a) client-ip=198.51.100.1; (b", id="fake-pairs"),
    ],
)
def test_received_spf_comment_is_escaped(domain: str) -> None:
    header = received_spf(
        mailfrom(SpfResult.FAIL, domain=domain), client_address=IPV4, helo=HELO, receiver=RECEIVER
    )
    _, comment, pairs = parse_received_spf(header)
    assert f"domain of {domain} does not designate" in comment
    assert pairs["client-ip"] == IPV4


# --- hostile input ----------------------------------------------------------------------------

_HOSTILE = [
    pytest.param("x\r", id="cr"),
    pytest.param("x\n", id="lf"),
    pytest.param("x\r\nX-Injected: yes", id="crlf-header"),
    pytest.param("x\nX-Injected: yes", id="lf-header"),
    pytest.param("x\x00y", id="nul"),
    pytest.param("x\x7fy", id="del"),
    pytest.param("x\x85X-Injected: yes", id="nel"),
    pytest.param("x\u2028X-Injected: yes", id="line-separator"),
    pytest.param("x\u2029y", id="paragraph-separator"),
    pytest.param("x\x0bX-Injected: yes\x0c", id="vt-ff"),
    pytest.param('x"\\) (\r\n', id="quotes-parens-crlf"),
]
_FIELDS = ["sender", "helo", "domain", "mechanism", "problem", "receiver", "client_address"]


@pytest.mark.parametrize("field", _FIELDS)
@pytest.mark.parametrize("hostile", _HOSTILE)
def test_received_spf_hostile_input_stays_on_one_line(field: str, hostile: str) -> None:
    values = dict.fromkeys(_FIELDS, "") | {field: hostile}
    outcome = SpfOutcome(
        Identity.MAILFROM,
        SpfResult.PERMERROR,
        values["domain"] or "sender.example",
        values["sender"] or "user@sender.example",
        mechanism=values["mechanism"],
        problem=values["problem"],
    )
    header = received_spf(
        outcome,
        client_address=values["client_address"] or IPV4,
        helo=values["helo"] or HELO,
        receiver=values["receiver"] or RECEIVER,
    )
    assert_one_clean_line(header)
    assert header.startswith("Received-SPF: permerror (")
    parse_received_spf(header)


@pytest.mark.parametrize("hostile", _HOSTILE)
def test_authentication_results_hostile_input_stays_on_one_line(hostile: str) -> None:
    outcomes = [
        mailfrom(SpfResult.TEMPERROR, sender=f"{hostile}@sender.example", problem=hostile),
        helo(SpfResult.FAIL, name=hostile, mechanism=hostile),
    ]
    header = authentication_results(outcomes, authserv_id=hostile)
    assert_one_clean_line(header)
    assert header.startswith("Authentication-Results: ")
    parse_authentication_results(header)


def test_megabyte_helo_gives_a_bounded_header() -> None:
    huge = "a" * 1_000_000
    outcome = helo(SpfResult.PASS, name=huge, mechanism=huge, problem=huge)
    header = received_spf(outcome, client_address=IPV4, helo=huge, receiver=RECEIVER)
    assert len(header) < 8 * MAX_VALUE_LENGTH
    assert_one_clean_line(header)
    assert parse_received_spf(header)[2]["helo"] == sanitize(huge)
    assert len(authentication_results([outcome], authserv_id=RECEIVER)) < 4 * MAX_VALUE_LENGTH


def test_worst_case_escaping_stays_bounded() -> None:
    # Every character needs a backslash: the quoted value is at most twice the cap.
    nasty = '"\\' * 500_000
    outcome = mailfrom(SpfResult.FAIL, sender=nasty, domain=nasty, problem=nasty)
    header = received_spf(outcome, client_address=nasty, helo=nasty, receiver=nasty)
    assert len(header) < 20 * MAX_VALUE_LENGTH
    assert parse_received_spf(header)[2]["envelope-from"] == sanitize(nasty)


_TEXT = st.text(
    st.one_of(
        st.characters(exclude_categories=()),  # everything, lone surrogates included
        st.sampled_from('\r\n\x00\t\x7f\x85\x9f\u2028\u2029\u202e"\\()<>@;=:,. []ü'),
    ),
    max_size=MAX_VALUE_LENGTH + 20,
)


_OUTCOMES = st.builds(
    SpfOutcome,
    identity=st.sampled_from(Identity),
    result=st.sampled_from(SpfResult),
    domain=_TEXT,
    sender=_TEXT,
    mechanism=_TEXT,
    problem=_TEXT,
    stale_dns=st.booleans(),
)


@given(outcome=_OUTCOMES, helo_name=_TEXT, client_address=_TEXT, receiver=_TEXT)
def test_received_spf_property(
    outcome: SpfOutcome, helo_name: str, client_address: str, receiver: str
) -> None:
    header = received_spf(outcome, client_address=client_address, helo=helo_name, receiver=receiver)

    assert header.startswith(f"Received-SPF: {outcome.result.value} (")
    assert_one_clean_line(header)
    token, comment, pairs = parse_received_spf(header)
    assert token == outcome.result.value
    assert pairs.get("client-ip", "") == sanitize(client_address)
    assert pairs.get("envelope-from", "") == sanitize(outcome.sender)
    assert pairs.get("helo", "") == sanitize(helo_name)
    assert pairs.get("receiver", "") == sanitize(receiver)
    assert pairs["identity"] == outcome.identity.value
    assert pairs.get("mechanism", "") == sanitize(outcome.mechanism)
    assert pairs.get("problem", "") == sanitize(outcome.problem)
    assert comment.startswith(f"{sanitize(receiver)}: " if receiver else "")
    assert sanitize(outcome.domain) in comment
    assert comment.endswith("; stale DNS data") is outcome.stale_dns


@given(
    result=st.sampled_from(SpfResult),
    sender=_TEXT,
    helo_name=_TEXT,
    problem=_TEXT,
    authserv_id=_TEXT,
)
def test_authentication_results_property(
    result: SpfResult, sender: str, helo_name: str, problem: str, authserv_id: str
) -> None:
    outcomes = [
        mailfrom(result, sender=sender, domain="sender.example", problem=problem),
        helo(result, name=helo_name),
    ]
    header = authentication_results(outcomes, authserv_id=authserv_id)

    assert header.startswith("Authentication-Results: ")
    assert_one_clean_line(header)
    parsed_id, resinfos = parse_authentication_results(header)
    assert parsed_id == sanitize(authserv_id)
    assert [info[0] for info in resinfos] == [result.value, result.value]
    assert resinfos[0][1] == sanitize(problem)
    local_part, at, _ = sender.rpartition("@")
    mailfrom_value = sanitize(sender) if at and local_part else "sender.example"
    assert resinfos[0][2] == {"smtp.mailfrom": mailfrom_value}
    if helo_name:
        assert resinfos[1][2] == {"smtp.helo": sanitize(helo_name)}


# --- Authentication-Results --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        pytest.param(
            [mailfrom(SpfResult.PASS)],
            "Authentication-Results: mx.receiver.example; spf=pass"
            " smtp.mailfrom=user@sender.example",
            id="mailfrom-only",
        ),
        pytest.param(
            [helo(SpfResult.FAIL)],
            "Authentication-Results: mx.receiver.example; spf=fail smtp.helo=mail.sender.example",
            id="helo-only-null-sender",
        ),
        pytest.param(
            [mailfrom(SpfResult.SOFTFAIL, mechanism="~all"), helo(SpfResult.NONE)],
            "Authentication-Results: mx.receiver.example; spf=softfail (mechanism ~all matched)"
            " smtp.mailfrom=user@sender.example; spf=none smtp.helo=mail.sender.example",
            id="both",
        ),
        pytest.param(
            [helo(SpfResult.PASS), mailfrom(SpfResult.NEUTRAL)],
            "Authentication-Results: mx.receiver.example; spf=neutral"
            " smtp.mailfrom=user@sender.example; spf=pass smtp.helo=mail.sender.example",
            id="both-mailfrom-first",
        ),
        pytest.param(
            [],
            "Authentication-Results: mx.receiver.example; none",
            id="empty",
        ),
        pytest.param(
            [mailfrom(SpfResult.TEMPERROR, problem="DNS timeout (TXT)")],
            r"Authentication-Results: mx.receiver.example; spf=temperror (DNS timeout \(TXT\))"
            " smtp.mailfrom=user@sender.example",
            id="problem-comment-escaped",
        ),
        pytest.param(
            [mailfrom(SpfResult.PERMERROR, problem="bad record", mechanism="a:x")],
            "Authentication-Results: mx.receiver.example; spf=permerror (bad record)"
            " smtp.mailfrom=user@sender.example",
            id="problem-wins-over-mechanism",
        ),
        pytest.param(
            [stale(mailfrom(SpfResult.PASS, mechanism="mx")), helo(SpfResult.PASS)],
            "Authentication-Results: mx.receiver.example; spf=pass (mechanism mx matched;"
            " stale DNS data) smtp.mailfrom=user@sender.example; spf=pass"
            " smtp.helo=mail.sender.example",
            id="stale-beside-the-mechanism",
        ),
        pytest.param(
            [stale(mailfrom(SpfResult.NONE)), stale(helo(SpfResult.NEUTRAL))],
            "Authentication-Results: mx.receiver.example; spf=none (stale DNS data)"
            " smtp.mailfrom=user@sender.example; spf=neutral (stale DNS data)"
            " smtp.helo=mail.sender.example",
            id="stale-alone",
        ),
    ],
)
def test_authentication_results_exact(outcomes: list[SpfOutcome], expected: str) -> None:
    assert authentication_results(outcomes, authserv_id=RECEIVER) == expected


@pytest.mark.parametrize(
    ("outcome", "written", "value"),
    [
        pytest.param(
            mailfrom(SpfResult.PASS, sender="sender.example"),
            "smtp.mailfrom=sender.example",
            "sender.example",
            id="no-local-part-domain",
        ),
        pytest.param(
            mailfrom(SpfResult.PASS, sender="@sender.example"),
            "smtp.mailfrom=sender.example",
            "sender.example",
            id="empty-local-part-domain",
        ),
        pytest.param(
            mailfrom(SpfResult.PASS, sender="first.last+tag@sender.example"),
            "smtp.mailfrom=first.last+tag@sender.example",
            "first.last+tag@sender.example",
            id="plain-address-bare",
        ),
        pytest.param(
            mailfrom(SpfResult.PASS, sender='"quoted local"@sender.example'),
            r'smtp.mailfrom="\"quoted local\"@sender.example"',
            '"quoted local"@sender.example',
            id="quoted-local-part",
        ),
        pytest.param(
            mailfrom(SpfResult.PASS, sender="back\\slash@sender.example"),
            r'smtp.mailfrom="back\\slash@sender.example"',
            "back\\slash@sender.example",
            id="backslash",
        ),
        pytest.param(
            mailfrom(SpfResult.PASS, sender="user@bücher.example", domain="bücher.example"),
            'smtp.mailfrom="user@bücher.example"',
            "user@bücher.example",
            id="idn-u-label-readable",
        ),
        pytest.param(
            mailfrom(SpfResult.PASS, sender="SRS0=ab12=XY=origin.example=user@fwd.example"),
            'smtp.mailfrom="SRS0=ab12=XY=origin.example=user@fwd.example"',
            "SRS0=ab12=XY=origin.example=user@fwd.example",
            id="equals-sign-quoted",
        ),
        pytest.param(
            mailfrom(SpfResult.PASS, sender="user@localhost"),
            'smtp.mailfrom="user@localhost"',
            "user@localhost",
            id="single-label-domain-quoted",
        ),
        pytest.param(
            helo(SpfResult.PASS, name="[192.0.2.1]"),
            'smtp.helo="[192.0.2.1]"',
            "[192.0.2.1]",
            id="address-literal-helo",
        ),
        pytest.param(
            helo(SpfResult.PASS, name="bücher.example"),
            'smtp.helo="bücher.example"',
            "bücher.example",
            id="idn-helo",
        ),
    ],
)
def test_authentication_results_pvalue(outcome: SpfOutcome, written: str, value: str) -> None:
    header = authentication_results([outcome], authserv_id=RECEIVER)
    assert header.endswith(f"; spf=pass {written}")
    [(_, _, properties)] = parse_authentication_results(header)[1]
    assert list(properties.values()) == [value]


def test_authentication_results_without_any_sender_has_no_property() -> None:
    header = authentication_results(
        [mailfrom(SpfResult.NONE, sender="", domain="")], authserv_id=RECEIVER
    )
    assert header == "Authentication-Results: mx.receiver.example; spf=none"


@pytest.mark.parametrize(
    ("authserv_id", "written"),
    [
        pytest.param("mx.receiver.example", "mx.receiver.example", id="host-name-verbatim"),
        pytest.param("MX.Receiver.Example", "MX.Receiver.Example", id="case-kept"),
        pytest.param("receiver.example-1", "receiver.example-1", id="hyphen-digit"),
        pytest.param("mx receiver", '"mx receiver"', id="space-quoted"),
        pytest.param("mx;evil", '"mx;evil"', id="semicolon-quoted"),
    ],
)
def test_authentication_results_authserv_id(authserv_id: str, written: str) -> None:
    header = authentication_results([mailfrom(SpfResult.PASS)], authserv_id=authserv_id)
    assert header.startswith(f"Authentication-Results: {written}; spf=pass ")
    assert parse_authentication_results(header)[0] == authserv_id
