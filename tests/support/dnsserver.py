"""A small authoritative DNS server for tests, serving suite zone data over UDP and TCP.

Run it as a program (the tests do, through `fixtures.running_dns_server`):

    python tests/support/dnsserver.py --zone FILE [--port 0] [--address 127.0.0.1] [--ttl 300]
                                      [--delay SECONDS] [--verbose]

It binds UDP and TCP on one port, prints `READY <port>` once it is serving, and runs until
SIGTERM or SIGINT (exit 0). What it answers is decided in zones.py and dnsreplies.py; this
module is the wire. `--delay` holds every reply back (the benchmark's slow upstream resolver)
without serialising: other queries are answered meanwhile.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import logging
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

if __package__:
    from .dnsreplies import DEFAULT_TTL, MAX_TCP_MESSAGE, Responder, Transport
    from .zones import load_zone_file
else:  # run as a program: the script's own directory is on sys.path
    from dnsreplies import DEFAULT_TTL, MAX_TCP_MESSAGE, Responder, Transport
    from zones import load_zone_file

log = logging.getLogger("dnsserver")

DEFAULT_ADDRESS = "127.0.0.1"
POLL_INTERVAL = 0.2  # how often the socket loops look at the stop flag
TCP_IDLE_TIMEOUT = 30.0  # a test client that leaves a connection open should not pin a thread
BIND_ATTEMPTS = 20  # port 0: the UDP port the kernel picks may be taken for TCP; try another
# A burst of thousands of queries (the flood benchmark) overflows the kernel's default UDP
# buffer (about 200 queries' worth) and the excess is dropped silently: the client then waits
# out its query timeout, and the benchmark would measure this server, not the daemon.
UDP_RECEIVE_BUFFER = 16 * 2**20


class DelayedSender:
    """Sends UDP replies `delay` seconds after they were ready, from a thread of its own.

    Sleeping in the receive loop would serialise the server (one reply per delay); here the
    loop goes on at once. Every reply waits the same delay, so replies fall due in the order
    they were queued: a FIFO is the whole schedule.
    """

    def __init__(self, sock: socket.socket, delay: float, stopping: threading.Event) -> None:
        """Send on `sock`, `delay` seconds late, until `stopping` is set (pending replies drop)."""
        self._sock = sock
        self._delay = delay
        self._stopping = stopping
        self._queue: collections.deque[tuple[float, bytes, object]] = collections.deque()
        self._changed = threading.Condition()

    def put(self, reply: bytes, peer: object) -> None:
        """Queue one reply for `peer`."""
        with self._changed:
            self._queue.append((time.monotonic() + self._delay, reply, peer))
            if len(self._queue) == 1:  # later ones fall due later: only a new head wakes us
                self._changed.notify()

    def run(self) -> None:
        """The sender thread: wait for the head of the queue to fall due, send what is due."""
        while not self._stopping.is_set():
            with self._changed:
                now = time.monotonic()
                due = []
                while self._queue and self._queue[0][0] <= now:
                    due.append(self._queue.popleft())
                if not due:
                    wait = self._queue[0][0] - now if self._queue else POLL_INTERVAL
                    self._changed.wait(min(wait, POLL_INTERVAL))
                    continue
            for _, reply, peer in due:
                with contextlib.suppress(OSError):  # the client may be gone: not our problem
                    self._sock.sendto(reply, peer)


class DnsServer:
    """UDP and TCP listeners on one port, each in its own thread; a thread per TCP connection."""

    def __init__(
        self,
        responder: Responder,
        address: str = DEFAULT_ADDRESS,
        port: int = 0,
        *,
        delay: float = 0.0,
    ) -> None:
        """Serve `responder` on `address`; port 0 lets the kernel choose (see `port`).

        `delay` holds every reply back that many seconds, without holding up other queries:
        an upstream resolver that has to ask the Internet (the benchmark's "slow DNS").
        """
        self.responder = responder
        self.address = address
        self.port = port
        self.delay = delay
        self._sender: DelayedSender | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()  # guards _connections
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None

    def start(self) -> int:
        """Bind both sockets, start serving, and return the port."""
        self._udp, self._tcp = bind_pair(self.address, self.port)
        self.port = self._udp.getsockname()[1]
        targets = [(self._serve_udp, "dns-udp"), (self._serve_tcp, "dns-tcp")]
        if self.delay > 0:
            self._sender = DelayedSender(self._udp, self.delay, self._stopping)
            targets.append((self._sender.run, "dns-udp-delayed"))
        for target, name in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self.port

    def stop(self) -> None:
        """Stop listening, drop open connections, and wait for the listener threads."""
        self._stopping.set()
        with self._lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5 * POLL_INTERVAL)
        for sock in (self._udp, self._tcp):
            if sock is not None:
                sock.close()

    def __enter__(self) -> DnsServer:
        """Start serving (in-process use)."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop serving."""
        self.stop()

    def _serve_udp(self) -> None:
        assert self._udp is not None
        self._udp.settimeout(POLL_INTERVAL)
        while not self._stopping.is_set():
            try:
                wire, peer = self._udp.recvfrom(MAX_TCP_MESSAGE)
            except TimeoutError:
                continue
            except OSError:
                log.exception("UDP receive failed")
                continue
            reply = self.responder.respond(wire, Transport.UDP)
            if reply is None:
                continue
            if self._sender is not None:
                self._sender.put(reply, peer)
                continue
            with contextlib.suppress(OSError):  # the client may be gone: not our problem
                self._udp.sendto(reply, peer)

    def _serve_tcp(self) -> None:
        assert self._tcp is not None
        self._tcp.settimeout(POLL_INTERVAL)
        while not self._stopping.is_set():
            try:
                connection, _ = self._tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                log.exception("TCP accept failed")
                continue
            thread = threading.Thread(
                target=self._serve_connection, args=(connection,), name="dns-tcp-conn", daemon=True
            )
            thread.start()

    def _serve_connection(self, connection: socket.socket) -> None:
        """Answer length-prefixed queries (RFC 1035 §4.2.2) until the client closes or idles."""
        connection.settimeout(TCP_IDLE_TIMEOUT)
        with self._lock:
            self._connections.add(connection)
        try:
            while not self._stopping.is_set():
                prefix = recv_exactly(connection, 2)
                if prefix is None:
                    return
                wire = recv_exactly(connection, struct.unpack("!H", prefix)[0])
                if wire is None:
                    return
                reply = self.responder.respond(wire, Transport.TCP)
                if reply is not None:
                    # A thread per connection: waiting here holds up no one else.
                    if self.delay > 0 and self._stopping.wait(self.delay):
                        return
                    connection.sendall(struct.pack("!H", len(reply)) + reply)
        except OSError:
            return  # reset, timeout or shutdown: the connection is over either way
        finally:
            with self._lock:
                self._connections.discard(connection)
            connection.close()


def recv_exactly(connection: socket.socket, size: int) -> bytes | None:
    """Exactly `size` bytes, or None if the peer closed first."""
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def bind_pair(address: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a listening TCP socket on the same port; port 0 retries until one is free."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    attempts = BIND_ATTEMPTS if port == 0 else 1
    for attempt in range(attempts):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            enlarge_receive_buffer(udp)
            udp.bind((address, port))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((address, udp.getsockname()[1]))
            tcp.listen(64)
        except OSError:
            udp.close()
            tcp.close()
            if attempt == attempts - 1:
                raise
            continue
        return udp, tcp
    raise AssertionError("unreachable")  # the loop either returns or raises


def enlarge_receive_buffer(udp: socket.socket) -> None:
    """Give `udp` a receive buffer for a burst: beyond net.core.rmem_max when root may."""
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    if force is not None:
        with contextlib.suppress(OSError):  # needs CAP_NET_ADMIN
            udp.setsockopt(socket.SOL_SOCKET, force, UDP_RECEIVE_BUFFER)
            return
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)  # capped by rmem_max


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zone", required=True, type=Path, help="zone data, JSON or YAML")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--address", default=DEFAULT_ADDRESS)
    parser.add_argument("--ttl", type=int, default=DEFAULT_TTL, help="TTL of every record")
    parser.add_argument(
        "--delay", type=float, default=0.0, help="seconds every reply is held back (default 0)"
    )
    parser.add_argument("--verbose", action="store_true", help="log every query to stderr")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; 0 on a clean stop, 2 if the zone or the port is bad."""
    arguments = parse_arguments(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if arguments.verbose else logging.INFO,
        format="dnsserver: %(levelname)s %(message)s",
    )
    try:
        zone = load_zone_file(arguments.zone)
    except Exception as error:  # the zone file is the user's input: report, don't trace
        log.error("cannot load %s: %s", arguments.zone, error)
        return 2
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    # Block the signals before any thread starts, so every thread inherits the mask and the
    # main thread alone takes them, synchronously, in sigwait() below: no handler races.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    if arguments.delay < 0:
        log.error("--delay must not be negative")
        return 2
    # A memoised reply skips the zone lookup, and with it the per-query debug line.
    responder = Responder(zone, arguments.ttl, memoise=not arguments.verbose)
    server = DnsServer(responder, arguments.address, arguments.port, delay=arguments.delay)
    try:
        port = server.start()
    except OSError as error:
        log.error("cannot listen on %s port %d: %s", arguments.address, arguments.port, error)
        return 2
    print(f"READY {port}", flush=True)
    received = signal.sigwait(stop_signals)
    log.info("stopping on %s", signal.Signals(received).name)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
