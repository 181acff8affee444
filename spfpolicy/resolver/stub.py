"""The upstream side of DNS: a stub resolver that asks recursive nameservers with dnspython.

It sends each question itself (UDP, then TCP when the reply is truncated), so that it can keep
the request's deadline, ignore replies to other questions, survive records dnspython refuses,
and return CNAMEs as they are for pyspf to follow.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver

from spfpolicy.model import NullObserver, Observer
from spfpolicy.resolver.answers import DnsAnswer, DnsError, DnsFailure, DnsRecord, RecordValue

log = logging.getLogger(__name__)

# RFC 8467 / DNS flag day 2020: an EDNS buffer that avoids IP fragmentation.
EDNS_PAYLOAD = 1232
# The largest DNS message over TCP (RFC 1035 §4.2.2: a two-octet length).
MAX_TCP_MESSAGE = 65535


def system_nameservers() -> list[str]:
    """The nameservers of /etc/resolv.conf (loopback when it names none)."""
    try:
        configured = dns.resolver.Resolver(configure=True).nameservers
    except dns.exception.DNSException:
        configured = []
    return [str(server) for server in configured] or ["127.0.0.1"]


class StubResolver:
    """Asks recursive nameservers directly, in order, within the caller's deadline."""

    def __init__(
        self,
        nameservers: Sequence[str],
        *,
        port: int = 53,
        query_timeout: float = 5.0,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.nameservers = list(nameservers) or system_nameservers()
        self.port = port
        self.query_timeout = query_timeout
        self.observer: Observer = observer or NullObserver()
        self.clock = clock

    def query(self, name: str, rdtype: str, deadline: float) -> DnsAnswer:
        """Ask each nameserver in turn until one answers; see Resolver.query."""
        started = self.clock()
        try:
            answer = self._ask_servers(name, rdtype, deadline)
        except DnsError as error:
            self.observer.dns_query(rdtype, error.failure.value, self.clock() - started)
            raise
        self.observer.dns_query(rdtype, outcome_label(answer), self.clock() - started)
        return answer

    def _ask_servers(self, name: str, rdtype: str, deadline: float) -> DnsAnswer:
        request = make_question(name, rdtype)
        if isinstance(request, DnsAnswer):
            return request
        failure = DnsError(DnsFailure.TIMEOUT, f"DNS timeout for {name} {rdtype}")
        for server in self.nameservers:
            try:
                reply = self._udp(request, server, deadline)
                if reply.flags & dns.flags.TC:
                    reply = self._tcp(request, server, deadline)
                check_rcode(reply, request, server)
            except DnsError as error:
                failure = error
                if error.failure is DnsFailure.TIMEOUT and self.clock() >= deadline:
                    # Cut short by the request's budget: nothing learnt about the name.
                    raise DnsError(error.failure, str(error), cacheable=False) from error
                continue
            return to_answer(reply, request)
        raise failure

    def attempt_deadline(self, deadline: float) -> float:
        """When one try (one server, one transport) gives up: query_timeout from now, or sooner.

        Fixed when the try starts, so that a stream of forged or stray packets, each of which
        wakes the read, cannot stretch the try past query_timeout and starve the next server.
        """
        now = self.clock()
        if deadline <= now:
            raise DnsError(
                DnsFailure.TIMEOUT, "the request's time budget is used up", cacheable=False
            )
        return min(deadline, now + self.query_timeout)

    def _remaining(self, attempt: float) -> float:
        """Seconds left of this try; TimeoutError (a DNS timeout) when none are."""
        remaining = attempt - self.clock()
        if remaining <= 0:
            raise TimeoutError("query timeout")
        return remaining

    def _udp(self, request: dns.message.Message, server: str, deadline: float) -> Any:
        family = socket.AF_INET6 if ":" in server else socket.AF_INET
        wire = request.to_wire()
        attempt = self.attempt_deadline(deadline)
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            try:
                sock.settimeout(self._remaining(attempt))
                sock.connect((server, self.port))
                sock.send(wire)
                while True:
                    sock.settimeout(self._remaining(attempt))
                    reply = parse_reply(sock.recv(MAX_TCP_MESSAGE))
                    # A reply to another question is ignored, as a spoofing defence.
                    if reply is not None and request.is_response(reply):
                        return reply
            except TimeoutError as error:
                raise DnsError(DnsFailure.TIMEOUT, f"no reply from {server}") from error
            except OSError as error:
                raise DnsError(DnsFailure.ERROR, f"{server}: {error}") from error

    def _tcp(self, request: dns.message.Message, server: str, deadline: float) -> Any:
        family = socket.AF_INET6 if ":" in server else socket.AF_INET
        wire = request.to_wire()
        attempt = self.attempt_deadline(deadline)
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.settimeout(self._remaining(attempt))
                sock.connect((server, self.port))
                sock.sendall(struct.pack("!H", len(wire)) + wire)
                (length,) = struct.unpack("!H", self._receive(sock, 2, attempt))
                reply = parse_reply(self._receive(sock, length, attempt))
            except TimeoutError as error:
                raise DnsError(DnsFailure.TIMEOUT, f"no TCP reply from {server}") from error
            except OSError as error:
                raise DnsError(DnsFailure.ERROR, f"{server} over TCP: {error}") from error
        if reply is None or not request.is_response(reply):
            raise DnsError(DnsFailure.ERROR, f"{server} sent an unusable reply over TCP")
        return reply

    def _receive(self, sock: socket.socket, size: int, attempt: float) -> bytes:
        """Read exactly size bytes from a TCP socket before the try's deadline."""
        chunks = bytearray()
        while len(chunks) < size:
            sock.settimeout(self._remaining(attempt))
            chunk = sock.recv(size - len(chunks))
            if not chunk:
                raise ConnectionResetError("connection closed mid-reply")
            chunks += chunk
        return bytes(chunks)


def make_question(name: str, rdtype: str) -> dns.message.Message | DnsAnswer:
    """The query message for name/rdtype, or the empty answer of a name that cannot exist."""
    if "\\" in name:
        # No host name holds a backslash (RFC 1123 §2.1); dnspython would read it as an
        # escape and ask for another name ("a\\046b" is one label "a.b"), or fail on "\\300".
        # Such a name is malformed: as if it did not exist (RFC 7208 §4.3).
        return DnsAnswer((), 0.0, "NXDOMAIN")
    try:
        return dns.message.make_query(
            _question_name(name), rdtype, use_edns=0, payload=EDNS_PAYLOAD, want_dnssec=False
        )
    except (dns.exception.DNSException, ValueError, struct.error) as error:
        # An unencodable name (label too long, ...) cannot exist: an empty answer.
        log.debug("cannot ask for %r %s: %s", name, rdtype, error)
        return DnsAnswer((), 0.0, "NXDOMAIN")


def check_rcode(reply: Any, request: dns.message.Message, server: str) -> None:
    """DnsError (SERVFAIL) unless the reply's rcode is NOERROR or NXDOMAIN: ask the next server."""
    rcode = reply.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        question = request.question[0]
        asked = f"{question.name} {dns.rdatatype.to_text(question.rdtype)}"
        raise DnsError(
            DnsFailure.SERVFAIL, f"{server} answered {dns.rcode.to_text(rcode)} for {asked}"
        )


def outcome_label(answer: DnsAnswer) -> str:
    """How a query that got an answer ended, as spfpolicy_dns_queries_total counts it."""
    return "answer" if answer.records else answer.rcode.lower().replace("noerror", "nodata")


def parse_reply(wire: bytes) -> Any:
    """Parse a reply; None if it is garbage.

    Newer dnspython rejects a whole message for one TXT record with no character-strings,
    which RFC 7208 §3.3 asks us to survive; retry keeping the records that do parse.
    """
    try:
        return dns.message.from_wire(wire)
    except dns.exception.FormError:
        try:
            return dns.message.from_wire(wire, continue_on_error=True)
        except (TypeError, dns.exception.DNSException):
            return None
    except (dns.exception.DNSException, ValueError, struct.error):
        return None


def to_answer(reply: Any, request: dns.message.Message) -> DnsAnswer:
    """The records of the answer section that concern the question, as DnsRecords."""
    question = request.question[0]
    wanted = {question.rdtype, dns.rdatatype.CNAME}
    qname = _name_text(question.name).lower()
    owners, looped = _chain(reply, qname)
    if looped:
        # A chain that comes back on itself ends nowhere: a recursive resolver answers such a
        # name with SERVFAIL, which check_host() takes as temperror (RFC 7208 §4.4, §5).
        raise DnsError(DnsFailure.SERVFAIL, f"CNAME loop in the answer for {qname}")
    records: list[DnsRecord] = []
    ttl: float | None = None
    for rrset in reply.answer:
        owner = _name_text(rrset.name).lower()
        # Records of names off the question's CNAME chain were not asked for: pyspf would
        # take them as the answers to later questions, so a server could plant any name's record.
        if rrset.rdtype not in wanted or owner not in owners:
            continue
        ttl = rrset.ttl if ttl is None else min(ttl, rrset.ttl)
        type_text = dns.rdatatype.to_text(rrset.rdtype)
        records.extend(DnsRecord(owner, type_text, _value(rdata)) for rdata in rrset)
    if records:
        return DnsAnswer(tuple(records), float(ttl or 0))
    return DnsAnswer((), _negative_ttl(reply), dns.rcode.to_text(reply.rcode()))


def _chain(reply: Any, qname: str) -> tuple[set[str], bool]:
    """The question's name and the CNAME targets the answer section leads to from it, and
    whether that chain loops."""
    owners = {qname}
    looped = False
    cnames = {
        _name_text(rrset.name).lower(): [_name_text(rdata.target).lower() for rdata in rrset]
        for rrset in reply.answer
        if rrset.rdtype == dns.rdatatype.CNAME
    }
    pending = [qname]
    while pending:
        for target in cnames.get(pending.pop(), ()):
            if target in owners:
                looped = True
                continue
            owners.add(target)
            pending.append(target)
    return owners, looped


def _negative_ttl(reply: Any) -> float:
    """RFC 2308 §5: a negative answer lives for min(SOA TTL, SOA MINIMUM)."""
    for rrset in reply.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            return float(min(rrset.ttl, rrset[0].minimum))
    return 0.0


def _question_name(name: str) -> dns.name.Name | str:
    """The name to ask: as text, or, when it holds a sender's 8-bit bytes (lone surrogates,
    which %{l} carries from an 8-bit local part), as those very octets."""
    if name.isascii() or not any("\udc80" <= char <= "\udcff" for char in name):
        return name
    labels = name.rstrip(".").encode("utf-8", "surrogateescape").split(b".")
    return dns.name.Name([*labels, b""])  # DNSException for an empty or over-long label


def _name_text(name: dns.name.Name) -> str:
    """A name as pyspf spells it: raw labels, without dnspython's presentation escapes.

    SPF macros can expand to names with spaces or "%" in them (RFC 7208 §7.3); to_text()
    would write those as "\\032" and pyspf would not recognise the answer as its own. Octets
    that are not UTF-8 come back as the lone surrogates they were asked as.
    """
    return ".".join(label.decode("utf-8", "surrogateescape") for label in name.labels if label)


def _value(rdata: Any) -> RecordValue:
    """One rdata in the shape pyspf expects."""
    rdtype = rdata.rdtype
    if rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        return str(rdata.address)
    if rdtype == dns.rdatatype.MX:
        return (int(rdata.preference), _name_text(rdata.exchange))
    if rdtype in (dns.rdatatype.PTR, dns.rdatatype.CNAME):
        return _name_text(rdata.target)
    if rdtype == dns.rdatatype.TXT:
        return tuple(bytes(string) for string in rdata.strings)
    return str(rdata.to_text())
