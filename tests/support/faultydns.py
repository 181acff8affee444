"""A loopback DNS server that misbehaves on command, for the DNS fault tests.

It answers from suite zone data (zones.py, dnsreplies.py) like dnsserver.py, but a test can give
any query name a Rule: stay silent, answer SERVFAIL or REFUSED, truncate and then cut the TCP
retry, forge replies with a wrong ID or a wrong question, smuggle records of another name into a
true answer, or hold the answer back for seconds. It runs in the test's own process (threads, UDP
and TCP on one port, port 0 by default), so a test changes rules between queries and reads which
questions arrived, and over which transport.

    with FaultyDnsServer({"sender.example": [{"TXT": "v=spf1 -all"}]}) as server:
        server.set_rule("sender.example", Rule(Fault.SERVFAIL))
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from tests.support.dnsreplies import DEFAULT_TTL, MAX_TCP_MESSAGE, Responder, Transport, render
from tests.support.dnsserver import bind_pair, recv_exactly
from tests.support.zones import Zone, name_key

log = logging.getLogger("faultydns")

POLL_INTERVAL = 0.1  # how often the socket loops look at the stop flag
ID_MASK = 0xFFFF


class Fault(StrEnum):
    """How the server treats queries for one name."""

    NONE = "none"  # the true answer from the zone
    SILENT = "silent"  # no reply at all, over UDP or TCP
    SERVFAIL = "servfail"  # RCODE 2
    REFUSED = "refused"  # RCODE 5
    TRUNCATED = "truncated"  # UDP: an empty reply with TC=1; TCP: read the query, then close
    WRONG_ID = "wrong-id"  # forged replies (Rule.spoof) whose ID is not the query's
    WRONG_QUESTION = "wrong-question"  # forged replies with the right ID, for Rule.victim
    SMUGGLE = "smuggle"  # the true answer plus a TXT record for Rule.victim in the answer
    DELAY = "delay"  # the true answer, Rule.delay seconds late (stopping the server drops it)


@dataclass(frozen=True)
class Rule:
    """A fault and its parameters, for every query type of one name."""

    fault: Fault
    delay: float = 0.0  # DELAY: seconds the answer is held back
    spoof: str = "v=spf1 +all"  # the TXT text forged records carry
    victim: str = "victim.example"  # WRONG_QUESTION, SMUGGLE: the name forged records are for
    forgeries: int = 1  # WRONG_ID, WRONG_QUESTION: how many forged replies go out
    interval: float = 0.0  # seconds between forged replies (a flood: many, spaced out)
    then_answer: bool = False  # after the forgeries, send the true answer too


@dataclass(frozen=True)
class Query:
    """One question the server received."""

    name: str  # lower case, without the trailing dot
    rdtype: str
    transport: Transport


# What to send for one query: (seconds to wait first, reply bytes), in order. CLOSE: drop a TCP
# connection without replying.
Plan = list[tuple[float, bytes]]
CLOSE: Plan = [(0.0, b"")]
FAILURES = frozenset({Fault.SILENT, Fault.SERVFAIL, Fault.REFUSED, Fault.TRUNCATED})


class FaultyDnsServer:
    """UDP and TCP on one loopback port; a thread per TCP connection and per delayed UDP plan."""

    def __init__(
        self,
        zone: Mapping[str, Any],
        *,
        address: str = "127.0.0.1",
        port: int = 0,
        ttl: int = DEFAULT_TTL,
        tcp: bool = True,
    ) -> None:
        """Serve `zone` (a suite zonedata mapping); tcp=False refuses every TCP connection."""
        self.responder = Responder(Zone.from_zonedata(zone), ttl, memoise=False)
        self.address = address
        self.port = port
        self.tcp = tcp
        self.queries: list[Query] = []
        self._rules: dict[str, Rule] = {}
        self._lock = threading.Lock()  # guards queries and _rules
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None

    def set_rule(self, name: str, rule: Rule) -> None:
        """From now on, treat queries for `name` (any type) by `rule`."""
        with self._lock:
            self._rules[_key(name)] = rule

    def reset(self) -> None:
        """Forget every rule and every query seen."""
        with self._lock:
            self._rules.clear()
            self.queries.clear()

    def asked(
        self, name: str, rdtype: str | None = None, transport: Transport | None = None
    ) -> int:
        """How many queries for `name` (of `rdtype`, over `transport`, if given) arrived."""
        with self._lock:
            return sum(
                1
                for query in self.queries
                if query.name == _key(name)
                and rdtype in (None, query.rdtype)
                and transport in (None, query.transport)
            )

    def start(self) -> int:
        """Bind, start serving and return the port."""
        self._udp, self._tcp = bind_pair(self.address, self.port)
        self.port = self._udp.getsockname()[1]
        if not self.tcp:
            # Nothing listens on the TCP port now: a client's connect is refused at once.
            self._tcp.close()
            self._tcp = None
        self._spawn(self._serve_udp)
        if self._tcp is not None:
            self._spawn(self._serve_tcp)
        return self.port

    def stop(self) -> None:
        """Stop serving; replies still held back are dropped, not sent."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=10 * POLL_INTERVAL)
        for sock in (self._udp, self._tcp):
            if sock is not None:
                sock.close()

    def __enter__(self) -> FaultyDnsServer:
        """Start serving."""
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

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name="faultydns", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _plan(self, wire: bytes, transport: Transport) -> Plan:
        """Parse, log and plan the reply to one query."""
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return []
        if not query.question or query.flags & dns.flags.QR:
            return []
        question = query.question[0]
        name = _key(question.name.to_text())
        with self._lock:
            self.queries.append(Query(name, dns.rdatatype.to_text(question.rdtype), transport))
            rule = self._rules.get(name, Rule(Fault.NONE))
        try:
            return plan_reply(self.responder, query, wire, transport, rule)
        except Exception:
            # A bug here must not end the serving thread; the log says why a test saw silence.
            log.exception("cannot plan the reply to %s under %s", question, rule)
            return []

    def _serve_udp(self) -> None:
        assert self._udp is not None
        self._udp.settimeout(POLL_INTERVAL)
        while not self._stopping.is_set():
            try:
                wire, peer = self._udp.recvfrom(MAX_TCP_MESSAGE)
            except TimeoutError:
                continue
            except OSError:
                return  # closed under us: stop() is running
            plan = [step for step in self._plan(wire, Transport.UDP) if step[1]]
            if all(wait == 0 for wait, _ in plan):
                self._send_udp(plan, peer)
            else:  # a thread of its own, so the held-back reply holds up no other query
                self._spawn(self._send_udp, plan, peer)

    def _send_udp(self, plan: Plan, peer: Any) -> None:
        assert self._udp is not None
        for wait, reply in plan:
            if wait and self._stopping.wait(wait):
                return
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
                return
            self._spawn(self._serve_connection, connection)

    def _serve_connection(self, connection: socket.socket) -> None:
        """Length-prefixed queries (RFC 1035 §4.2.2) until the client closes or the plan says so."""
        connection.settimeout(POLL_INTERVAL)
        with contextlib.closing(connection):
            while not self._stopping.is_set():
                try:
                    prefix = recv_exactly(connection, 2)
                    wire = prefix and recv_exactly(connection, struct.unpack("!H", prefix)[0])
                except TimeoutError:
                    continue  # idle (or mid-message, which our clients never are): look again
                except OSError:
                    return
                if not wire:
                    return
                plan = self._plan(wire, Transport.TCP)
                if plan is CLOSE:
                    return
                for wait, reply in plan:
                    if wait and self._stopping.wait(wait):
                        return
                    with contextlib.suppress(OSError):
                        connection.sendall(struct.pack("!H", len(reply)) + reply)


def plan_reply(
    responder: Responder,
    query: dns.message.Message,
    wire: bytes,
    transport: Transport,
    rule: Rule,
) -> Plan:
    """What the server sends for one query under `rule`."""
    fault = rule.fault
    if fault in FAILURES:
        return _failure(query, transport, fault)
    true_reply = responder.respond(wire, transport) or b""
    if fault is Fault.DELAY:
        return [(rule.delay, true_reply)]
    if fault is Fault.SMUGGLE:
        response = responder.build(query)
        assert response is not None
        response.answer.append(_spoof_rrset(rule.victim, rule.spoof))
        return [(0.0, render(query, response, transport))]
    if fault in (Fault.WRONG_ID, Fault.WRONG_QUESTION):
        forged = _forgery(query, rule).to_wire()
        plan = [(rule.interval if n else 0.0, forged) for n in range(rule.forgeries)]
        return [*plan, (rule.interval, true_reply)] if rule.then_answer else plan
    return [(0.0, true_reply)]


def _failure(query: dns.message.Message, transport: Transport, fault: Fault) -> Plan:
    """The plan of a fault that never gives the true answer."""
    if fault is Fault.SILENT:
        return []
    if fault is Fault.TRUNCATED and transport is Transport.TCP:
        return CLOSE
    reply = dns.message.make_response(query)
    if fault is Fault.TRUNCATED:
        reply.flags |= dns.flags.TC
    else:
        reply.set_rcode(dns.rcode.SERVFAIL if fault is Fault.SERVFAIL else dns.rcode.REFUSED)
    return [(0.0, reply.to_wire())]


def _forgery(query: dns.message.Message, rule: Rule) -> dns.message.Message:
    """A reply a spoofer could send: another ID, or the right ID for another question."""
    if rule.fault is Fault.WRONG_ID:
        forged = dns.message.make_response(query)
        forged.id = (query.id + 1) & ID_MASK
        forged.answer.append(_spoof_rrset(query.question[0].name.to_text(), rule.spoof))
        return forged
    other = dns.message.make_query(rule.victim, query.question[0].rdtype)
    other.id = query.id
    forged = dns.message.make_response(other)
    forged.answer.append(_spoof_rrset(rule.victim, rule.spoof))
    return forged


def _spoof_rrset(owner: str, text: str) -> dns.rrset.RRset:
    return dns.rrset.from_text(
        dns.name.from_text(owner), DEFAULT_TTL, dns.rdataclass.IN, dns.rdatatype.TXT, f'"{text}"'
    )


def _key(name: str) -> str:
    return b".".join(name_key(name)).decode("utf-8", "replace")
