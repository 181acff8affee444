"""Tests for the Postfix policy wire format (spfpolicy.wire.protocol)."""

from __future__ import annotations

import io

import pytest

from spfpolicy.model import PolicyRequest
from spfpolicy.wire.protocol import (
    MAX_ATTRIBUTES,
    MAX_LINE_BYTES,
    MAX_REQUEST_BYTES,
    ProtocolError,
    RequestReader,
    encode_reply,
    read_request,
)

RCPT_REQUEST = (
    b"request=smtpd_access_policy\n"
    b"protocol_state=RCPT\n"
    b"protocol_name=ESMTP\n"
    b"client_address=192.0.2.10\n"
    b"client_name=mail.sender.example\n"
    b"reverse_client_name=mail.sender.example\n"
    b"helo_name=mail.sender.example\n"
    b"sender=alice@sender.example\n"
    b"recipient=bob@receiver.test\n"
    b"recipient_count=0\n"
    b"queue_id=\n"
    b"instance=123.456.7\n"
    b"size=0\n"
    b"sasl_method=\n"
    b"sasl_username=\n"
    b"sasl_sender=\n"
    b"ccert_subject=\n"
    b"server_address=203.0.113.25\n"
    b"server_port=25\n"
    b"\n"
)
RCPT = PolicyRequest(
    request="smtpd_access_policy",
    protocol_state="RCPT",
    protocol_name="ESMTP",
    client_address="192.0.2.10",
    client_name="mail.sender.example",
    reverse_client_name="mail.sender.example",
    helo_name="mail.sender.example",
    sender="alice@sender.example",
    recipient="bob@receiver.test",
    instance="123.456.7",
    server_address="203.0.113.25",
    server_port="25",
)


def read(stream: bytes) -> PolicyRequest | None:
    """Read one request from stream the way the server reads from a socket file."""
    return read_request(io.BytesIO(stream).readline)


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        pytest.param(RCPT_REQUEST, RCPT, id="postfix-rcpt"),
        pytest.param(
            b"sender=a@x.example\nrequest=smtpd_access_policy\nprotocol_state=MAIL\n\n",
            PolicyRequest(
                request="smtpd_access_policy", protocol_state="MAIL", sender="a@x.example"
            ),
            id="order-does-not-matter",
        ),
        pytest.param(
            b"helo_name=first.example\nhelo_name=second.example\n\n",
            PolicyRequest(helo_name="second.example"),
            id="repeated-name-keeps-last",
        ),
        pytest.param(
            b"ccert_fingerprint=AB:CD\nunknown_future_attribute=1\nsender=a@x.example\n\n",
            PolicyRequest(sender="a@x.example"),
            id="unknown-attributes-ignored",
        ),
        pytest.param(
            b"request=smtpd_access_policy\nsender=\nhelo_name=mx.example\n\n",
            PolicyRequest(request="smtpd_access_policy", helo_name="mx.example"),
            id="null-sender-empty-value",
        ),
        pytest.param(
            b"sender=bounce+a=b@list.example\npolicy_context=x==y=\n\n",
            PolicyRequest(sender="bounce+a=b@list.example", policy_context="x==y="),
            id="value-contains-equals",
        ),
        pytest.param(
            b"sender= a@x.example \nhelo_name=\tmx.example\n\n",
            PolicyRequest(sender=" a@x.example ", helo_name="\tmx.example"),
            id="value-whitespace-kept",
        ),
        pytest.param(
            b"sender=a@x.example\r\nhelo_name=mx.example\r\n\r\n",
            PolicyRequest(sender="a@x.example", helo_name="mx.example"),
            id="crlf-tolerated",
        ),
        pytest.param(
            b"sender=a@x.example\r\r\n\n",
            PolicyRequest(sender="a@x.example\r"),
            id="only-one-cr-stripped",
        ),
        pytest.param(
            "sender=jörg@münchen.example\nhelo_name=mx.bücher.example\n\n".encode(),
            PolicyRequest(sender="jörg@münchen.example", helo_name="mx.bücher.example"),
            id="utf8-values",
        ),
        pytest.param(
            b"sender=a\xe2\x80\xa8b@x.example\n\n",
            PolicyRequest(sender="a\u2028b@x.example"),
            id="unicode-line-separator-is-not-a-line-end",
        ),
        pytest.param(
            b"=orphan\nsender=a@x.example\n\n",
            PolicyRequest(sender="a@x.example"),
            id="empty-name-ignored",
        ),
        pytest.param(b"\n", PolicyRequest(), id="empty-request"),
        pytest.param(
            b"sender=" + b"a" * (MAX_LINE_BYTES - len(b"sender=") - 1) + b"\n\n",
            PolicyRequest(sender="a" * (MAX_LINE_BYTES - len(b"sender=") - 1)),
            id="longest-line-allowed",
        ),
        pytest.param(
            b"x=1\n" * (MAX_ATTRIBUTES - 1) + b"sender=a@x.example\n\n",
            PolicyRequest(sender="a@x.example"),
            id="most-attributes-allowed",
        ),
        pytest.param(
            b"sender=a@x.example\n\nsender=b@x.example\n\n",
            PolicyRequest(sender="a@x.example"),
            id="stops-at-first-request",
        ),
    ],
)
def test_reads_good_request(stream: bytes, expected: PolicyRequest) -> None:
    assert read(stream) == expected


def test_clean_eof_before_request_is_none() -> None:
    assert read(b"") is None


def test_requests_back_to_back_on_one_stream() -> None:
    stream = io.BytesIO(
        RCPT_REQUEST
        + b"protocol_state=RCPT\nrecipient=carol@receiver.test\n\n"
        + b"protocol_state=END-OF-MESSAGE\nsender=\n\n"
    )
    assert read_request(stream.readline) == RCPT
    assert read_request(stream.readline) == PolicyRequest(
        protocol_state="RCPT", recipient="carol@receiver.test"
    )
    assert read_request(stream.readline) == PolicyRequest(protocol_state="END-OF-MESSAGE")
    assert read_request(stream.readline) is None
    assert read_request(stream.readline) is None


# Lines of 1000 bytes each: 66 of them exceed MAX_REQUEST_BYTES but stay under MAX_ATTRIBUTES.
_KILOBYTE_LINE = b"x=" + b"y" * 997 + b"\n"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"j\xe9r\xf4me@pass.example", id="latin-1-local-part"),
        pytest.param(b"\xff\xfe\xc0\xaf@pass.example", id="invalid-utf8"),
        pytest.param(b"a\xed\xa0\x80@x.example", id="utf8-encoded-surrogate"),
        pytest.param("jérôme@bücher.example".encode(), id="utf-8"),
    ],
)
def test_8bit_values_are_a_request_kept_byte_for_byte(value: bytes) -> None:
    """Postfix passes 8-bit envelope data through when SMTPUTF8 is off (DESIGN.md §2)."""
    request = read_request(
        io.BytesIO(b"request=smtpd_access_policy\nsender=" + value + b"\n\n").readline
    )
    assert request is not None
    assert request.sender.encode("utf-8", "surrogateescape") == value


@pytest.mark.parametrize(
    ("stream", "kind"),
    [
        pytest.param(b"sender=a@x.example\n", "eof_mid_request", id="eof-after-line"),
        pytest.param(b"sender=a@x.exa", "eof_mid_request", id="eof-mid-line"),
        pytest.param(b"s", "eof_mid_request", id="eof-after-one-byte"),
        pytest.param(
            b"sender=" + b"a" * MAX_LINE_BYTES + b"\n\n", "line_too_long", id="line-too-long"
        ),
        pytest.param(b"a" * MAX_LINE_BYTES, "line_too_long", id="line-too-long-then-eof"),
        pytest.param(
            b"x=1\n" * (MAX_ATTRIBUTES + 1) + b"\n", "too_many_attributes", id="too-many-attributes"
        ),
        pytest.param(
            _KILOBYTE_LINE * (MAX_REQUEST_BYTES // len(_KILOBYTE_LINE) + 1) + b"\n",
            "request_too_large",
            id="request-too-large",
        ),
        pytest.param(b"sender=a@x.example\ngarbage\n\n", "no_equals", id="no-equals"),
        pytest.param(b"GET / HTTP/1.0\r\n\r\n", "no_equals", id="http-request"),
        pytest.param(b"sender=a\0@x.example\n\n", "nul_byte", id="nul-in-value"),
        pytest.param(b"\0\n\n", "nul_byte", id="nul-line"),
    ],
)
def test_rejects_malformed_request(stream: bytes, kind: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        read(stream)
    assert caught.value.kind == kind
    assert str(caught.value)


def test_reads_in_bounded_pieces() -> None:
    """read_request never asks readline for more than MAX_LINE_BYTES: that is what bounds memory."""
    limits: list[int] = []
    stream = io.BytesIO(RCPT_REQUEST)

    def readline(limit: int) -> bytes:
        limits.append(limit)
        return stream.readline(limit)

    read_request(readline)
    assert set(limits) == {MAX_LINE_BYTES}


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        pytest.param("DUNNO", b"action=DUNNO\n\n", id="dunno"),
        pytest.param(
            "550 5.7.23 SPF fail for a@x.example",
            b"action=550 5.7.23 SPF fail for a@x.example\n\n",
            id="reject-with-text",
        ),
        pytest.param(
            "PREPEND Received-SPF: pass (mx.test: 192.0.2.1 is permitted) client-ip=192.0.2.1;",
            b"action=PREPEND Received-SPF: pass (mx.test: 192.0.2.1 is permitted) "
            b"client-ip=192.0.2.1;\n\n",
            id="prepend-header",
        ),
        pytest.param("", b"action=\n\n", id="empty"),
        pytest.param(
            "PREPEND X-Test: j\u00f6rg", "action=PREPEND X-Test: j\u00f6rg\n\n".encode(), id="utf8"
        ),
        pytest.param("DUNNO\n\naction=OK", b"action=DUNNO  action=OK\n\n", id="lf-injection"),
        pytest.param("REJECT a\r\nb", b"action=REJECT a  b\n\n", id="crlf"),
        pytest.param("REJECT a\0b", b"action=REJECT a b\n\n", id="nul"),
        pytest.param("REJECT\ta\x1bb\x7f", b"action=REJECT a b \n\n", id="tab-esc-del"),
        pytest.param("REJECT a\x85b\x9fc", b"action=REJECT a b c\n\n", id="c1-controls"),
        pytest.param("REJECT a\udcffb", b"action=REJECT a?b\n\n", id="lone-surrogate"),
    ],
)
def test_encode_reply(action: str, expected: bytes) -> None:
    reply = encode_reply(action)
    assert reply == expected
    assert reply.count(b"\n") == 2
    assert reply.endswith(b"\n\n")
    assert b"\r" not in reply
    assert b"\0" not in reply


def _feed_in_pieces(stream: bytes, size: int) -> list[PolicyRequest | str]:
    """What a RequestReader makes of stream arriving size bytes at a time: requests, then the
    error kind or "eof"."""
    reader = RequestReader()
    found: list[PolicyRequest | str] = []
    try:
        for start in range(0, len(stream), size):
            reader.feed(stream[start : start + size])
            while (request := reader.next_request()) is not None:
                found.append(request)
        reader.end_of_stream()
    except ProtocolError as error:
        found.append(error.kind)
        return found
    found.append("eof")
    return found


def _line_by_line(stream: bytes) -> list[PolicyRequest | str]:
    """The same through read_request over a blocking stream."""
    source = io.BytesIO(stream)
    found: list[PolicyRequest | str] = []
    try:
        while (request := read_request(source.readline)) is not None:
            found.append(request)
    except ProtocolError as error:
        found.append(error.kind)
        return found
    found.append("eof")
    return found


@pytest.mark.parametrize(
    "stream",
    [
        pytest.param(RCPT_REQUEST * 3, id="three-requests"),
        pytest.param(b"a=1\r\nb=2\r\n\r\na=3\n\n", id="crlf-then-lf"),
        pytest.param(b"\n\r\n\n", id="empty-requests"),
        pytest.param(RCPT_REQUEST + b"sender=half", id="eof-mid-second-request"),
        pytest.param(b"x=" + b"y" * MAX_LINE_BYTES + b"\n\n", id="line-too-long"),
        pytest.param(b"x=" + b"y" * (MAX_LINE_BYTES - 3) + b"\n\n", id="longest-line"),
        pytest.param(b"x=1\n" * (MAX_ATTRIBUTES + 1) + b"\n", id="too-many-attributes"),
        pytest.param(b"x=1\n" * (MAX_ATTRIBUTES + 1), id="too-many-then-eof"),
        pytest.param(
            _KILOBYTE_LINE * (MAX_REQUEST_BYTES // len(_KILOBYTE_LINE) + 1), id="too-large-no-end"
        ),
        pytest.param(RCPT_REQUEST + b"garbage\n\n", id="no-equals-in-second"),
        pytest.param(b"y" * (3 * MAX_LINE_BYTES), id="endless-line"),
    ],
)
@pytest.mark.parametrize("size", [1, 2, 3, 7, 4096, 1 << 20])
def test_reader_in_pieces_agrees_with_reading_line_by_line(stream: bytes, size: int) -> None:
    assert _feed_in_pieces(stream, size) == _line_by_line(stream)


def test_reader_never_holds_much_more_than_one_request() -> None:
    """Bytes without an end are refused once they break a limit, not buffered forever."""
    reader = RequestReader()
    line = b"x=" + b"y" * 97 + b"\n"
    fed = 0

    def feed_until_refused() -> None:
        nonlocal fed
        while fed < 10 * MAX_REQUEST_BYTES:
            reader.feed(line)
            fed += len(line)
            reader.next_request()

    with pytest.raises(ProtocolError):
        feed_until_refused()
    assert fed <= MAX_REQUEST_BYTES + MAX_LINE_BYTES
