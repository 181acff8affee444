"""The Postfix policy delegation wire format: request bytes to PolicyRequest, action to reply bytes.

Pure: it reads through a readline callable and returns bytes; it never touches a socket or a
clock. The format is Postfix's SMTPD_POLICY_README: "name=value" lines ending in "\\n", an empty
line ends the request, and the reply is "action=<text>\\n\\n".
"""

from __future__ import annotations

from collections.abc import Callable

from spfpolicy.model import PolicyRequest, SpfPolicyError

# Postfix's own attribute values are short (an address, a host name, a queue id); 8 KiB per line
# leaves room for a long sender or SASL name while stopping a peer that never sends a newline.
MAX_LINE_BYTES = 8192
# Postfix sends about 30 attributes; 200 allows for future ones but bounds the work per request.
MAX_ATTRIBUTES = 200
# A real request is around 1 KiB; 64 KiB bounds what one connection can make us buffer.
MAX_REQUEST_BYTES = 65536

# Lines that end a request. Postfix sends "\n"; "\r\n" is accepted like any other line ending.
_END_OF_REQUEST = (b"\n", b"\r\n")

# C0 controls, DEL and C1 controls all become a space in a reply: a CR, LF or NUL in the action
# text would split the reply or end it early, and Postfix reads exactly one line.
_CONTROL_TO_SPACE = {code: " " for code in (*range(0x20), *range(0x7F, 0xA0))}


class ProtocolError(SpfPolicyError):
    """A malformed request; the connection is closed without a reply, as Postfix expects."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # a low-cardinality label for metrics, e.g. "line_too_long"


def read_request(readline: Callable[[int], bytes]) -> PolicyRequest | None:
    """Read one request through readline(limit); None on a clean end of stream between requests.

    readline is typically a socket file object's readline, so the buffering happens in C. Raise
    ProtocolError for an over-long line, too many attributes, a request that is too large, a line
    without "=", invalid UTF-8, a NUL byte, or the stream ending in the middle of a request.
    """
    lines: list[bytes] = []
    size = 0
    while True:
        line = readline(MAX_LINE_BYTES)
        if not line.endswith(b"\n"):
            if not line and not lines:
                return None  # the peer closed between requests: the normal end of a connection
            raise _incomplete_line_error(line)
        if line in _END_OF_REQUEST:
            return _parse(lines)
        size += len(line)
        if size > MAX_REQUEST_BYTES:
            raise ProtocolError("request_too_large", f"request exceeds {MAX_REQUEST_BYTES} bytes")
        if len(lines) == MAX_ATTRIBUTES:
            raise ProtocolError(
                "too_many_attributes", f"request has more than {MAX_ATTRIBUTES} attributes"
            )
        lines.append(line)


def _incomplete_line_error(line: bytes) -> ProtocolError:
    """Explain a line that readline returned without its newline."""
    if len(line) >= MAX_LINE_BYTES:
        return ProtocolError("line_too_long", f"line longer than {MAX_LINE_BYTES} bytes")
    return ProtocolError("eof_mid_request", "connection closed in the middle of a request")


def _parse(lines: list[bytes]) -> PolicyRequest:
    """Turn the raw lines of one request (each ending in "\\n") into a PolicyRequest."""
    # Join and decode once: one C-level scan for NUL and one UTF-8 decode per request is much
    # cheaper than per-line work, and this runs for every RCPT of every message.
    raw = b"".join(lines)
    if b"\0" in raw:
        raise ProtocolError("nul_byte", "request contains a NUL byte")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ProtocolError("not_utf8", f"request is not valid UTF-8 ({error.reason})") from None
    # split("\n"), not splitlines(): only "\n" ends a line. The last piece is the "" after it.
    *text_lines, _ = text.split("\n")
    carriage_returns = "\r" in text  # rare: look for it once, not once per line
    attributes: dict[str, str] = {}
    for line in text_lines:
        name, equals, value = line.partition("=")
        if not equals:
            raise ProtocolError("no_equals", f'line {text_lines.index(line) + 1} has no "="')
        if carriage_returns and value.endswith("\r"):
            value = value[:-1]
        attributes[name] = value  # a name sent twice keeps the last value
    return PolicyRequest.from_attributes(attributes)


def encode_reply(action: str) -> bytes:
    """Return the reply b"action=<action>\\n\\n", with any control character made a space.

    Callers already sanitise the action; this is the last guard so that no input can turn one
    reply into two lines.
    """
    # isprintable() is False for every control character, so the common case skips translate().
    line = action if action.isprintable() else action.translate(_CONTROL_TO_SPACE)
    # "replace": a lone surrogate must not raise here and kill the reply.
    return b"action=" + line.encode("utf-8", "replace") + b"\n\n"
