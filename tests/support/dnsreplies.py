"""What the test DNS server answers: a query's wire bytes in, the reply's wire bytes out.

The zone (zones.py) decides the records; this module turns them into DNS messages, with the
truncation, FORMERR and SOA rules of a real authoritative server. dnsserver.py is the sockets.
A reply depends on nothing but the query's bytes after its ID, so replies are memoised on those:
a benchmark's resolver asks the same few thousand questions again and again.
"""

from __future__ import annotations

import logging
import struct
from enum import StrEnum

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
    from .zones import Outcome, Zone
else:  # run as a program: the script's own directory is on sys.path
    from zones import Outcome, Zone

log = logging.getLogger("dnsserver")

DEFAULT_TTL = 300
CLASSIC_UDP_SIZE = 512  # RFC 1035 §4.2.1: the UDP limit without EDNS
MAX_TCP_MESSAGE = 65535  # RFC 1035 §4.2.2: two-octet length prefix
HEADER_SIZE = 12  # RFC 1035 §4.1.1
ID_SIZE = 2  # the message ID: the first two octets of the header
OPCODE_MASK = 0x7800  # the opcode bits of the header flags word
SOA_TIMERS = (1, 3600, 600, 86400)  # serial, refresh, retry, expire: made up, never used
MEMO_SIZE = 200_000  # memoised replies; the memo starts over when full, to bound memory
_UNKNOWN = object()  # the memo's "not seen yet", unlike any reply or None (silence)


class Transport(StrEnum):
    """Where a query came in, which decides the size limit of its answer."""

    UDP = "udp"
    TCP = "tcp"


class Responder:
    """Turns a query's wire bytes into the reply's, or into None when the zone says: stay silent."""

    def __init__(self, zone: Zone, ttl: int = DEFAULT_TTL, *, memoise: bool = True) -> None:
        """Answer from `zone`; every record, and the negative-caching SOA, has TTL `ttl`.

        `memoise=False` builds every reply afresh (and logs every query at debug level).
        """
        self.zone = zone
        self.ttl = ttl
        self.memoise = memoise
        # (transport, query bytes after the ID) -> reply bytes after the ID, or None for
        # silence. Shared by the server's threads: single dict operations are atomic.
        self._memo: dict[tuple[Transport, bytes], bytes | None] = {}

    def respond(self, wire: bytes, transport: Transport) -> bytes | None:
        """The reply to one message; never raises, whatever the bytes are."""
        key = (transport, wire[ID_SIZE:])
        if self.memoise:
            # One get(), not `in` then get(): another thread may clear the memo in between.
            known = self._memo.get(key, _UNKNOWN)
            if known is not _UNKNOWN:
                return None if known is None else wire[:ID_SIZE] + known
        reply = self._respond(wire, transport)
        # Only a reply that echoes the query's ID can be replayed with another ID in front.
        if (
            self.memoise
            and len(wire) >= ID_SIZE
            and (reply is None or reply[:ID_SIZE] == wire[:ID_SIZE])
        ):
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = None if reply is None else reply[ID_SIZE:]
        return reply

    def _respond(self, wire: bytes, transport: Transport) -> bytes | None:
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
