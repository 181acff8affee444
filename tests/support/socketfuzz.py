"""Hostile clients for the policy socket, and the invariants a server must keep under them.

Shared by tests/wire/test_fuzz_socket.py and the hand-run fuzzer tests/bench/fuzz.py. A client
sends bytes in pieces of any size and then ends the conversation one of several ways (reads the
replies, closes at once, resets the connection); the checks read the replies' bytes, and the
server's threads, open descriptors and log.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import socket
import struct
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from spfpolicy.model import PolicyRequest
from spfpolicy.wire.protocol import ProtocolError, read_request

# The daemon's DNS world (tests/support/zones.py format). The IDN domain exists only in its
# A-label form, as it must be published (RFC 7208 §4.3).
ZONE: dict[str, list[dict[str, str]]] = {
    "sender.example": [{"TXT": "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/48 -all"}],
    "mail.sender.example": [{"TXT": "v=spf1 ip4:192.0.2.0/24 -all"}],
    "xn--bcher-kva.example": [{"TXT": "v=spf1 ip4:192.0.2.0/24 -all"}],
    "mail.xn--bcher-kva.example": [{"TXT": "v=spf1 ip4:192.0.2.0/24 -all"}],
    "explained.example": [{"TXT": "v=spf1 -all exp=why.%{d}"}],
    # The sender's local-part reaches the explanation, and the explanation the reply.
    "why.explained.example": [{"TXT": "%{l} \r\n\u2028 may not send from %{i}"}],
    # The attacker's local-part becomes part of a name looked up (RFC 7208 §7.3).
    "macro.example": [{"TXT": "v=spf1 exists:%{l}.x.%{d} ip4:192.0.2.0/24 -all"}],
    "soft.example": [{"TXT": "v=spf1 ~all"}],
    "broken.example": [{"TXT": "v=spf1 ip4:192.0.2.300 -all"}],
}
GOOD_CLIENT = "192.0.2.1"  # authorised by sender.example
BAD_CLIENT = "198.51.100.1"  # not authorised by anyone

CLIENT_TIMEOUT = 10.0  # no conversation may hang on a server that fails to answer
SETTLE_TIMEOUT = 10.0  # how long a server may take to let go of a finished connection
POLL_INTERVAL = 0.01

# Characters that break a line for somebody: Python's str.splitlines() set (which holds every
# line break a Unicode-aware log or mail reader honours), plus NUL.
_LINE_BREAKS = re.compile("[\x00\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
# The bidirectional controls ("Trojan Source") that headers.py replaces.
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
_REPLY = re.compile(rb"action=([^\n]*)\n\n")


class Ending(StrEnum):
    """How a client ends a conversation after sending its bytes."""

    READ = "read"  # half-close (SHUT_WR), then read every reply until the server closes
    CLOSE = "close"  # close at once, before any reply can be read
    RESET = "reset"  # close with SO_LINGER 0: the kernel sends RST instead of FIN


def request_bytes(**attributes: str) -> bytes:
    """One request as Postfix sends it: name=value lines, then the empty line."""
    lines = "".join(f"{name}={value}\n" for name, value in attributes.items())
    return (lines + "\n").encode("utf-8", "surrogateescape")


def rcpt_request(
    sender: str = "user@sender.example",
    client_address: str = GOOD_CLIENT,
    helo_name: str = "mail.sender.example",
    **more: str,
) -> bytes:
    """A RCPT request with Postfix's usual attributes; a fresh instance unless one is given."""
    attributes = {
        "request": "smtpd_access_policy",
        "protocol_state": "RCPT",
        "protocol_name": "ESMTP",
        "client_address": client_address,
        "client_name": "unknown",
        "helo_name": helo_name,
        "sender": sender,
        "recipient": "postmaster@receiver.example",
        "instance": f"fuzz.{time.monotonic_ns()}",
    }
    attributes.update(more)
    return request_bytes(**attributes)


def connect(address: tuple[str, int] | str, timeout: float = CLIENT_TIMEOUT) -> socket.socket:
    """A client connection to an inet (host, port) or a unix socket path."""
    if isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except OSError:
            sock.close()
            raise
        return sock
    sock = socket.create_connection(address, timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # tiny writes stay tiny
    return sock


def converse(
    address: tuple[str, int] | str,
    payload: bytes,
    *,
    piece: int = 4096,
    ending: Ending = Ending.READ,
) -> bytes:
    """Send payload in writes of `piece` bytes, end as told; what was read (b"" unless READ).

    The server may close while we are still sending (that is how it refuses garbage): sending
    then stops, and whatever it answered before is still read.
    """
    with connect(address) as sock:
        try:
            for start in range(0, len(payload), piece):
                sock.sendall(payload[start : start + piece])
        except OSError:  # EPIPE / ECONNRESET: the server gave up on us first
            pass
        if ending is Ending.RESET:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if ending is not Ending.READ:
            return b""
        return _read_to_end(sock)


def _read_to_end(sock: socket.socket) -> bytes:
    """Half-close, then read until the server closes (a reset counts as a close)."""
    received = bytearray()
    # Already reset by the server? What it sent before is still readable.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return bytes(received)


def ask(address: tuple[str, int] | str, payload: bytes) -> list[str]:
    """Send complete requests on a new connection; their actions, checked for safety."""
    return parse_replies(converse(address, payload))


@dataclass(frozen=True, slots=True)
class Framing:
    """What a server can read from a client's bytes, and how the bytes end."""

    requests: tuple[PolicyRequest, ...]  # those before the end or the first error, in order
    error: str  # the ProtocolError kind the bytes end with; "" when they end between requests

    def replies_fit(self, replies: int) -> bool:
        """Whether a client that read to the end may have got this many replies.

        Every readable request is owed one. When the server closes on an error with input still
        unread, its kernel resets the connection, and a reset makes the client's kernel drop
        replies that arrived but were not read yet: then fewer is all that can be asked.
        """
        owed = len(self.requests)
        return replies == owed if not self.error else replies <= owed


def frame(payload: bytes) -> Framing:
    """Read payload the way the protocol reads a stream (the oracle for what is owed)."""
    stream = io.BytesIO(payload)
    requests: list[PolicyRequest] = []
    while True:
        try:
            request = read_request(stream.readline)
        except ProtocolError as error:
            return Framing(tuple(requests), error.kind)
        if request is None:
            return Framing(tuple(requests), "")
        requests.append(request)


def parse_replies(data: bytes) -> list[str]:
    """The actions in a server's byte stream; AssertionError for anything not a clean reply.

    Every reply must be exactly b"action=<one line>\\n\\n", valid UTF-8, and its text must pass
    action_problem(). Nothing may follow the last reply.
    """
    actions = []
    position = 0
    while position < len(data):
        match = _REPLY.match(data, position)
        assert match is not None, f"not a reply at byte {position}: {data[position:][:200]!r}"
        text = match.group(1).decode("utf-8")  # UnicodeDecodeError fails the test too
        problem = action_problem(text)
        assert problem is None, f"{problem}: {text[:300]!r}"
        actions.append(text)
        position = match.end()
    return actions


def action_problem(action: str) -> str | None:
    """Why an action text could split a reply, a header or a log line; None when it is safe."""
    if _LINE_BREAKS.search(action):
        return "a line break or NUL in the action"
    for char in action:
        category = unicodedata.category(char)
        if category == "Cc":
            return f"control character U+{ord(char):04X} in the action"
        if category == "Cs":
            return "a lone surrogate in the action"
    if _BIDI.search(action):
        return "a bidirectional control in the action"
    if not action.strip():
        return "an empty action"
    return None


@dataclass(frozen=True, slots=True)
class Usage:
    """What a server holds: threads and open file descriptors."""

    threads: int
    fds: int

    def within(self, baseline: Usage) -> bool:
        """No more threads and descriptors than baseline."""
        return self.threads <= baseline.threads and self.fds <= baseline.fds


def process_usage(pid: int) -> Usage:
    """Threads and open descriptors of a process, from /proc."""
    return Usage(len(os.listdir(f"/proc/{pid}/task")), len(os.listdir(f"/proc/{pid}/fd")))


def own_usage() -> Usage:
    """Threads and open descriptors of this process (for an in-process server)."""
    return Usage(threading.active_count(), len(os.listdir("/proc/self/fd")))


def settle(measure: Callable[[], Usage], baseline: Usage, timeout: float = SETTLE_TIMEOUT) -> Usage:
    """Wait until measure() is back within baseline, or timeout; the last measurement."""
    deadline = time.monotonic() + timeout
    usage = measure()
    while not usage.within(baseline) and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)
        usage = measure()
    return usage


def steady(measure: Callable[[], Usage], quiet: float = 0.5) -> Usage:
    """measure() once it has not changed for `quiet` seconds (at most SETTLE_TIMEOUT)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    usage, since = measure(), time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)
        latest = measure()
        if latest != usage:
            usage, since = latest, time.monotonic()
    return usage


def warm_up(address: tuple[str, int] | str, connections: int) -> None:
    """Open `connections` at once, each asking one good request, so lazily made threads
    (a worker pool, the log writer) exist before a baseline is taken."""
    clients = [connect(address) for _ in range(connections)]
    try:
        for client in clients:
            client.sendall(rcpt_request())
        for client in clients:
            assert parse_replies(_read_to_end(client)), "no reply to a good request"
    finally:
        for client in clients:
            client.close()


def traceback_lines(log_path: Path) -> list[str]:
    """Lines of a log that start a Python traceback, or say that logging itself failed."""
    text = log_path.read_text(encoding="utf-8", errors="replace")
    return [line for line in text.splitlines() if "Traceback" in line or "Logging error" in line]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def daemon_config(port: int, dns_port: int, extra: Mapping[str, str] | None = None) -> str:
    """The daemon's TOML: loopback TCP on port, the test DNS server, no metrics exporter."""
    sections = {
        "server": f'listen = ["inet:127.0.0.1:{port}"]',
        "dns": f'nameservers = ["127.0.0.1"]\nport = {dns_port}\nquery_timeout = 1.0',
        "metrics": 'listen = ""',
    }
    sections.update(extra or {})
    return "".join(f"[{name}]\n{body}\n" for name, body in sections.items())


def wait_listening(port: int, alive: Callable[[], bool], timeout: float = 10.0) -> None:
    """Return once 127.0.0.1:port accepts connections; RuntimeError if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the daemon exited before it listened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")
