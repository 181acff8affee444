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

# C0 controls, DEL and C1 controls all become a space in a reply: a CR, LF or NUL in the action
# text would split the reply or end it early, and Postfix reads exactly one line. So do U+2028
# and U+2029: no line break to Postfix, but one to every Unicode-aware reader of its logs.
_CONTROL_TO_SPACE = {code: " " for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)}


class ProtocolError(SpfPolicyError):
    """A malformed request; the connection is closed without a reply, as Postfix expects."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # a low-cardinality label for metrics, e.g. "line_too_long"


def read_request(readline: Callable[[int], bytes]) -> PolicyRequest | None:
    """Read one request through readline(limit); None on a clean end of stream between requests.

    For blocking streams (a socket file object's readline buffers in C); the server feeds a
    RequestReader itself. Raise ProtocolError for an over-long line, too many attributes, a
    request that is too large, a line without "=", a NUL byte, or the stream
    ending in the middle of a request.
    """
    reader = RequestReader()
    while True:
        line = readline(MAX_LINE_BYTES)
        if not line:
            reader.end_of_stream()
            return None  # the peer closed between requests: the normal end of a connection
        reader.feed(line)
        request = reader.next_request()
        if request is not None:
            return request


class RequestReader:
    """Frames requests out of a byte stream that arrives in pieces of any size.

    feed() adds what recv() returned; next_request() gives one complete request at a time.
    The limits and error kinds are those of a line-by-line reader: a line longer than
    MAX_LINE_BYTES, more than MAX_ATTRIBUTES lines or more than MAX_REQUEST_BYTES fail as soon as
    the bytes that break them have arrived, so a peer can never make us buffer more than that.
    """

    __slots__ = ("_buffer", "_count", "_searched", "_size", "_validated")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._searched = 0  # the end of the request is not before this offset
        # The line-by-line check of a large request, resumed where it stopped: offset of the
        # next unchecked line, attribute lines and their bytes so far.
        self._validated = 0
        self._count = 0
        self._size = 0

    def feed(self, data: bytes) -> None:
        """Add bytes received from the peer."""
        self._buffer += data

    def next_request(self) -> PolicyRequest | None:
        """One complete request, or None until more bytes arrive; ProtocolError if malformed."""
        buffer = self._buffer
        start, after = self._find_end()
        if start < 0:
            self._searched = max(0, len(buffer) - 2)
            if len(buffer) >= MAX_LINE_BYTES:
                self._check_lines(len(buffer))
            return None
        # A Postfix request is one short write: check its limits in bulk, lines only when big.
        if start >= MAX_LINE_BYTES or buffer.count(b"\n", 0, start) > MAX_ATTRIBUTES:
            self._check_lines(start)
        raw = bytes(buffer[:start])
        del buffer[:after]
        self._searched = self._validated = self._count = self._size = 0
        return _parse(raw)

    def end_of_stream(self) -> None:
        """The peer closed: ProtocolError if it did so in the middle of a request."""
        if not self._buffer:
            return
        self._check_lines(len(self._buffer))  # the error a line-by-line reader would give
        last = self._buffer.rfind(b"\n") + 1
        raise _incomplete_line_error(bytes(self._buffer[last:]))

    def _find_end(self) -> tuple[int, int]:
        """Where the request's lines end and where the empty line after them ends; -1 if absent."""
        buffer = self._buffer
        if buffer[:1] == b"\n":
            return 0, 1
        if buffer[:2] == b"\r\n":
            return 0, 2
        lf = buffer.find(b"\n\n", self._searched)
        crlf = buffer.find(b"\n\r\n", self._searched)
        if crlf >= 0 and (lf < 0 or crlf < lf):
            return crlf + 1, crlf + 3
        if lf >= 0:
            return lf + 1, lf + 2
        return -1, -1

    def _check_lines(self, stop: int) -> None:
        """Apply the limits line by line, in order, to buffer[:stop]; resumable."""
        buffer = self._buffer
        position = self._validated
        while position < stop:
            newline = buffer.find(b"\n", position, stop)
            end = stop if newline < 0 else newline + 1
            length = end - position
            # readline(MAX_LINE_BYTES) would return a longer line cut, without its newline.
            if length > MAX_LINE_BYTES or (newline < 0 and length >= MAX_LINE_BYTES):
                raise ProtocolError("line_too_long", f"line longer than {MAX_LINE_BYTES} bytes")
            if newline < 0:
                break  # a line still arriving
            self._size += length
            if self._size > MAX_REQUEST_BYTES:
                raise ProtocolError(
                    "request_too_large", f"request exceeds {MAX_REQUEST_BYTES} bytes"
                )
            if self._count == MAX_ATTRIBUTES:
                raise ProtocolError(
                    "too_many_attributes", f"request has more than {MAX_ATTRIBUTES} attributes"
                )
            self._count += 1
            position = self._validated = end


def _incomplete_line_error(line: bytes) -> ProtocolError:
    """Explain a line that readline returned without its newline."""
    if len(line) >= MAX_LINE_BYTES:
        return ProtocolError("line_too_long", f"line longer than {MAX_LINE_BYTES} bytes")
    return ProtocolError("eof_mid_request", "connection closed in the middle of a request")


def _parse(raw: bytes) -> PolicyRequest:
    """Turn the raw lines of one request (each ending in "\\n") into a PolicyRequest."""
    # One C-level scan for NUL and one UTF-8 decode per request is much cheaper than per-line
    # work, and this runs for every RCPT of every message.
    if b"\0" in raw:
        raise ProtocolError("nul_byte", "request contains a NUL byte")
    # Postfix passes 8-bit envelope data through when SMTPUTF8 is off: a request to answer,
    # not garbage. Bytes that are not UTF-8 become lone surrogates (U+DC80-U+DCFF), so nothing
    # is lost: the domain is then not a valid name (RFC 7208 §4.3), the local part reaches only
    # %{l}, and headers, log lines and replies escape or replace them.
    text = raw.decode("utf-8", "surrogateescape")
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
