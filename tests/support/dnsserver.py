"""A small authoritative DNS server for tests, serving suite zone data over UDP and TCP.

Run it as a program (the tests do, through `fixtures.running_dns_server`):

    python tests/support/dnsserver.py --zone FILE [--port 0] [--address 127.0.0.1] [--ttl 300]

It binds UDP and TCP on one port, prints `READY <port>` once it is serving, and runs until
SIGTERM or SIGINT (exit 0). What it answers is decided in zones.py; this module is the wire.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import socket
import struct
import sys
import threading
from enum import StrEnum
from pathlib import Path
from types import TracebackType

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rrset

if __package__:
    from .zones import Outcome, Zone, load_zone_file
else:  # run as a program: the script's own directory is on sys.path
    from zones import Outcome, Zone, load_zone_file

log = logging.getLogger("dnsserver")

DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_TTL = 300
CLASSIC_UDP_SIZE = 512  # RFC 1035 §4.2.1: the UDP limit without EDNS
MAX_TCP_MESSAGE = 65535  # RFC 1035 §4.2.2: two-octet length prefix
HEADER_SIZE = 12  # RFC 1035 §4.1.1
OPCODE_MASK = 0x7800  # the opcode bits of the header flags word
POLL_INTERVAL = 0.2  # how often the socket loops look at the stop flag
TCP_IDLE_TIMEOUT = 30.0  # a test client that leaves a connection open should not pin a thread
BIND_ATTEMPTS = 20  # port 0: the UDP port the kernel picks may be taken for TCP; try another
SOA_TIMERS = (1, 3600, 600, 86400)  # serial, refresh, retry, expire: made up, never used


class Transport(StrEnum):
    """Where a query came in, which decides the size limit of its answer."""

    UDP = "udp"
    TCP = "tcp"


class Responder:
    """Turns a query's wire bytes into the reply's, or into None when the zone says: stay silent."""

    def __init__(self, zone: Zone, ttl: int = DEFAULT_TTL) -> None:
        """Answer from `zone`; every record, and the negative-caching SOA, has TTL `ttl`."""
        self.zone = zone
        self.ttl = ttl

    def respond(self, wire: bytes, transport: Transport) -> bytes | None:
        """The reply to one message; never raises, whatever the bytes are."""
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            log.info("malformed query of %d bytes", len(wire))
            return formerr_reply(wire)
        if query.flags & dns.flags.QR:
            return None  # a response, not a query: answering those can start a ping-pong
        try:
            response = self.build(query)
            return None if response is None else render(query, response, transport)
        except Exception:
            log.exception("cannot answer %s", query.question)
            failure = dns.message.make_response(query)
            failure.set_rcode(dns.rcode.SERVFAIL)
            return failure.to_wire()

    def build(self, query: dns.message.Message) -> dns.message.Message | None:
        """The full response to `query` (before any truncation), or None for no reply."""
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        if question.rdclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.REFUSED)
            return response
        rdtype = dns.rdatatype.to_text(question.rdtype)
        lookup = self.zone.lookup(question.name, rdtype)
        log.debug("%s %s -> %s", question.name, rdtype, lookup.outcome)
        if lookup.outcome is Outcome.TIMEOUT:
            return None
        for record_set in lookup.answer:
            response.answer.append(
                dns.rrset.from_rdata_list(record_set.owner, self.ttl, record_set.rdatas)
            )
        if lookup.outcome is Outcome.NXDOMAIN:
            response.set_rcode(dns.rcode.NXDOMAIN)
        if lookup.outcome in (Outcome.NXDOMAIN, Outcome.NODATA):
            response.authority.append(self.soa(lookup.final_name))  # RFC 2308 §3
        return response

    def soa(self, name: dns.name.Name) -> dns.rrset.RRset:
        """A made-up SOA for the zone `name` is in; its MINIMUM is the negative-cache TTL."""
        apex = zone_apex(name)
        rdata = dns.rdtypes.ANY.SOA.SOA(
            dns.rdataclass.IN,
            dns.rdatatype.SOA,
            dns.name.from_text("ns", origin=apex),
            dns.name.from_text("hostmaster", origin=apex),
            *SOA_TIMERS,
            self.ttl,
        )
        return dns.rrset.from_rdata_list(apex, self.ttl, [rdata])


def zone_apex(name: dns.name.Name) -> dns.name.Name:
    """Pretend zones are cut two labels below the root (example.com., in-addr.arpa.).

    A name of two labels or fewer gets its parent, so that a name answered NXDOMAIN is never
    the owner of the SOA that says it does not exist.
    """
    labels = name.labels[:-1] if name.is_absolute() else name.labels
    keep = min(2, len(labels) - 1)
    return dns.name.Name((*labels[len(labels) - keep :], b"")) if keep > 0 else dns.name.root


def render(
    query: dns.message.Message, response: dns.message.Message, transport: Transport
) -> bytes:
    """Wire bytes of `response`; over UDP, an empty answer with TC if it does not fit."""
    if transport is Transport.TCP:
        return response.to_wire(max_size=MAX_TCP_MESSAGE)
    limit = CLASSIC_UDP_SIZE
    if query.edns >= 0:
        limit = max(CLASSIC_UDP_SIZE, query.payload)  # RFC 6891 §6.2.5: never below 512
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        truncated = dns.message.make_response(query)
        truncated.flags |= dns.flags.AA | dns.flags.TC  # RFC 2181 §9: the client retries on TCP
        truncated.set_rcode(response.rcode())
        return truncated.to_wire(max_size=limit)


def formerr_reply(wire: bytes) -> bytes | None:
    """FORMERR for bytes that do not parse, if they have a header to echo (RFC 1035 §4.1.1)."""
    if len(wire) < HEADER_SIZE:
        return None
    query_id, flags = struct.unpack("!HH", wire[:4])
    if flags & dns.flags.QR:
        return None
    reply_flags = int(dns.flags.QR) | (flags & OPCODE_MASK) | int(dns.rcode.FORMERR)
    return struct.pack("!HHHHHH", query_id, reply_flags, 0, 0, 0, 0)


class DnsServer:
    """UDP and TCP listeners on one port, each in its own thread; a thread per TCP connection."""

    def __init__(self, responder: Responder, address: str = DEFAULT_ADDRESS, port: int = 0) -> None:
        """Serve `responder` on `address`; port 0 lets the kernel choose (see `port`)."""
        self.responder = responder
        self.address = address
        self.port = port
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
        for target, name in ((self._serve_udp, "dns-udp"), (self._serve_tcp, "dns-tcp")):
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
            if reply is not None:
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


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zone", required=True, type=Path, help="zone data, JSON or YAML")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--address", default=DEFAULT_ADDRESS)
    parser.add_argument("--ttl", type=int, default=DEFAULT_TTL, help="TTL of every record")
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
    server = DnsServer(Responder(zone, arguments.ttl), arguments.address, arguments.port)
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
