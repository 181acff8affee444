"""The load driver: K persistent connections, like K smtpd processes, each sending policy requests
back to back (send one, wait for its reply, send the next).

One driver process serves its connections from a single epoll loop: no thread switches and no
GIL hand-offs, so a request costs the driver about 25 us of CPU, half of it the kernel's. The
requests arrive already encoded; the connections take whole messages (all RCPT requests of one
`instance`, in order) from one shared list, so a connection stuck on a slow domain holds up no
one but itself. Several driver processes (`processes`) split the connections and the messages;
the caller aggregates.
"""

from __future__ import annotations

import contextlib
import resource
import selectors
import socket
import time
from array import array
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

Messages = Sequence[Sequence[bytes]]  # each message: its requests, already encoded

CONNECT_TIMEOUT = 5.0
MAX_RECONNECTS = 20  # per connection: a contender that keeps dropping us is broken, not slow
TIMEOUT_CHECK_INTERVAL = 0.25
REPLY_END = b"\n\n"
REPLY_START = b"action="
REPLY_PREFIX = slice(len(REPLY_START), len(REPLY_START) + 48)  # enough for the SPF result


@dataclass(frozen=True)
class Limit:
    """When a phase stops sending: after `requests` requests or `seconds`, whichever is first."""

    requests: int
    seconds: float


@dataclass
class PhaseStats:
    """What one driver process saw in one phase."""

    started: float  # time.monotonic() when the phase began (the same clock in every process)
    sent: int = 0
    latencies: array[float] = field(default_factory=lambda: array("d"))  # seconds per reply
    completions: array[float] = field(default_factory=lambda: array("d"))  # monotonic, per reply
    message_numbers: array[int] = field(default_factory=lambda: array("l"))  # per reply
    errors: Counter[str] = field(default_factory=Counter)
    # The first REPLY_PREFIX bytes of each action: few distinct ones, and counting them costs
    # a slice and a hash; summarise() turns them into classes (reply_class()).
    replies: Counter[bytes] = field(default_factory=Counter)
    cpu_seconds: float = 0.0  # the driver process's own user + system CPU in the phase
    ended: float = 0.0


@dataclass
class _Connection:
    sock: socket.socket | None = None
    message: Sequence[bytes] = ()
    number: int = -1  # index of the message in the phase's list
    position: int = 0  # next request of the message to send
    sent_at: float = 0.0
    busy: bool = False
    buffer: bytes = b""
    reconnects: int = 0


class Driver:
    """K connections to one address, and the loop that keeps them busy."""

    def __init__(self, address: tuple[str, int], connections: int, reply_timeout: float) -> None:
        """Talk to `address` over `connections` connections; a reply later than `reply_timeout`
        seconds counts as an error and costs the connection (it is reopened)."""
        self.address = address
        self.reply_timeout = reply_timeout
        self.connections = [_Connection() for _ in range(connections)]
        self.selector = selectors.DefaultSelector()

    def connect(self) -> None:
        """Open every connection (the contender sees them all before the first request)."""
        for connection in self.connections:
            self._open(connection)

    def close(self) -> None:
        """Close every connection."""
        for connection in self.connections:
            self._drop(connection)
        self.selector.close()

    def run(self, messages: Messages, limit: Limit, numbers: Sequence[int] = ()) -> PhaseStats:
        """Send `messages` (or until `limit`) and return what came back.

        `numbers` are the messages' indices in the caller's list, reported per reply.
        """
        stats = PhaseStats(started=time.monotonic())
        cpu_before = _cpu_seconds()
        work = _Work(messages, numbers or range(len(messages)), limit, stats.started)
        for connection in self.connections:
            if connection.sock is None:
                self._open(connection, stats)
            self._next(connection, work, stats)
        next_check = stats.started + TIMEOUT_CHECK_INTERVAL
        while any(connection.busy for connection in self.connections):
            for key, _ in self.selector.select(timeout=TIMEOUT_CHECK_INTERVAL):
                self._readable(key.data, work, stats)
            now = time.monotonic()
            if now >= next_check:
                self._expire(now, work, stats)
                next_check = now + TIMEOUT_CHECK_INTERVAL
        stats.ended = time.monotonic()
        stats.cpu_seconds = _cpu_seconds() - cpu_before
        return stats

    def _readable(self, connection: _Connection, work: _Work, stats: PhaseStats) -> None:
        assert connection.sock is not None
        try:
            data = connection.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._fail(connection, "closed" if connection.busy else "closed while idle", stats)
            self._next(connection, work, stats)
            return
        connection.buffer += data
        if not connection.buffer.endswith(REPLY_END):
            return
        now = time.monotonic()
        reply, connection.buffer = connection.buffer, b""
        if not connection.busy or not reply.startswith(REPLY_START) or reply.count(b"\n") != 2:
            self._fail(connection, "malformed reply", stats)
        else:
            stats.latencies.append(now - connection.sent_at)
            stats.completions.append(now)
            stats.message_numbers.append(connection.number)
            stats.replies[reply[REPLY_PREFIX]] += 1
            connection.busy = False
        self._next(connection, work, stats)

    def _next(self, connection: _Connection, work: _Work, stats: PhaseStats) -> None:
        """Send the message's next request, or the first of the next message, if allowed."""
        if connection.sock is None or not work.may_send():
            return
        if connection.position >= len(connection.message):
            taken = work.take()
            if taken is None:
                return
            connection.number, connection.message = taken
            connection.position = 0
        request = connection.message[connection.position]
        connection.position += 1
        connection.busy = True
        connection.sent_at = time.monotonic()
        work.sent += 1
        stats.sent += 1
        try:
            connection.sock.sendall(request)
        except OSError:
            self._fail(connection, "send failed", stats)

    def _expire(self, now: float, work: _Work, stats: PhaseStats) -> None:
        for connection in self.connections:
            if connection.busy and now - connection.sent_at > self.reply_timeout:
                self._fail(connection, "timeout", stats)
                self._next(connection, work, stats)

    def _fail(self, connection: _Connection, error: str, stats: PhaseStats) -> None:
        """Count the error and start the connection afresh (a late reply must not be misread)."""
        stats.errors[error] += 1
        connection.busy = False
        connection.message, connection.position = (), 0  # the rest of that message is lost
        self._drop(connection)
        if connection.reconnects < MAX_RECONNECTS:
            connection.reconnects += 1
            self._open(connection, stats)

    def _open(self, connection: _Connection, stats: PhaseStats | None = None) -> None:
        try:
            sock = socket.create_connection(self.address, timeout=CONNECT_TIMEOUT)
        except OSError:
            if stats is None:
                raise
            stats.errors["connect failed"] += 1
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(True)
        sock.settimeout(None)  # reads only happen when epoll says there is data
        connection.sock = sock
        connection.buffer = b""
        self.selector.register(sock, selectors.EVENT_READ, connection)

    def _drop(self, connection: _Connection) -> None:
        if connection.sock is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(connection.sock)
        connection.sock.close()
        connection.sock = None


class _Work:
    """The messages of one phase, shared by the connections of one driver, and the limit."""

    def __init__(self, messages: Messages, numbers: Sequence[int], limit: Limit, started: float):
        self._messages: Iterator[tuple[int, Sequence[bytes]]] = zip(numbers, messages, strict=True)
        self.sent = 0
        self.limit = limit
        self.stop_at = started + limit.seconds

    def may_send(self) -> bool:
        """Whether the limit still allows a request."""
        return self.sent < self.limit.requests and time.monotonic() < self.stop_at

    def take(self) -> tuple[int, Sequence[bytes]] | None:
        """The next message and its number, or None when there are no more."""
        return next(self._messages, None)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
