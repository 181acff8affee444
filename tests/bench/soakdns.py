"""The soak run's upstream DNS: the benchmark world, with some names answering SERVFAIL.

The world already has names that never answer (its timing-out domains); here a chosen set of
sender domains answers SERVFAIL to every question as well. Each server is the test DNS server
(tests/support/dnsserver.py's DnsServer and dnsreplies.py's Responder) with a thin wrapper around
the responder, run in a forked process of its own so that it competes with neither the load
driver nor the soak's sampling for a GIL. `delay` holds every reply back (a slow upstream).
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Collection, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from multiprocessing.synchronize import Event
from typing import Any

import dns.message
import dns.rcode

from tests.support.dnsreplies import Responder, Transport
from tests.support.dnsserver import DnsServer
from tests.support.zones import Zone

HEADER_SIZE = 12  # RFC 1035 §4.1.1
START_TIMEOUT = 60.0  # seconds for a server to parse the world and bind
STOP_TIMEOUT = 5.0


class FaultyResponder:
    """A Responder that answers SERVFAIL for the names in `servfail` (any type, any case)."""

    def __init__(self, responder: Responder, servfail: Collection[str]) -> None:
        self.responder = responder
        self.servfail = frozenset(name.lower().rstrip(".") for name in servfail)

    def respond(self, wire: bytes, transport: Transport) -> bytes | None:
        """SERVFAIL for a listed name, else the zone's answer (see Responder.respond)."""
        if self.servfail and question_name(wire) in self.servfail:
            try:
                reply = dns.message.make_response(dns.message.from_wire(wire))
            except Exception:  # a malformed query: let the real responder answer it
                return self.responder.respond(wire, transport)
            reply.set_rcode(dns.rcode.SERVFAIL)
            return reply.to_wire()
        return self.responder.respond(wire, transport)


def question_name(wire: bytes) -> str:
    """The first question's name, lower case without the final dot ("" if it does not parse).

    Read from the bytes directly: parsing every query into a message would cost more than the
    memoised answer the responder gives for most of them.
    """
    labels = []
    offset = HEADER_SIZE
    while offset < len(wire):
        length = wire[offset]
        if length == 0:
            return b".".join(labels).decode("ascii", "replace").lower()
        if length & 0xC0:  # a compression pointer has no business in a question
            return ""
        labels.append(wire[offset + 1 : offset + 1 + length])
        offset += 1 + length
    return ""


def _serve(
    zone: Mapping[str, Any],
    servfail: frozenset[str],
    delay: float,
    ports: multiprocessing.Queue[int],
    stop: Event,
) -> None:
    """The server process: serve until `stop` is set (Ctrl-C is the parent's to handle)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    responder = FaultyResponder(Responder(Zone.from_zonedata(zone)), servfail)
    server = DnsServer(responder, delay=delay)  # type: ignore[arg-type]
    ports.put(server.start())
    stop.wait()
    server.stop()


@contextmanager
def serving(
    zone: Mapping[str, Any], servfail: Collection[str], delays: tuple[float, ...]
) -> Iterator[list[int]]:
    """One server per delay, all with the same zone and SERVFAIL names; yield their ports."""
    context = multiprocessing.get_context("fork")  # the zone is shared, not pickled
    stop = context.Event()
    with ExitStack() as stack:
        ports = []
        for delay in delays:
            queue: multiprocessing.Queue[int] = context.Queue()
            process = context.Process(
                target=_serve,
                args=(zone, frozenset(servfail), delay, queue, stop),
                name=f"soak-dns-{delay:g}",
            )
            process.start()
            stack.callback(_stop, process, stop)
            ports.append(queue.get(timeout=START_TIMEOUT))
        yield ports


def _stop(process: multiprocessing.process.BaseProcess, stop: Event) -> None:
    stop.set()
    process.join(STOP_TIMEOUT)
    if process.is_alive():
        process.terminate()  # SIGTERM to that pid only
        process.join(STOP_TIMEOUT)
