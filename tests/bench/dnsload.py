"""How many queries per second the test DNS server answers: the benchmark's upstream must not be
the bottleneck of a cold-cache run.

One UDP socket keeps `window` queries outstanding (each with its own message ID), drawn from the
world's names, and counts replies; bounded in count and in time. Run it on its own:

    python -m tests.bench.dnsload [--count 50000] [--window 100] [--delay 0]
"""

from __future__ import annotations

import argparse
import json
import random
import selectors
import socket
import statistics
import sys
import time
from dataclasses import asdict, dataclass

import dns.message

from tests.support.fixtures import running_dns_server
from tests.support.world import build_world
from tests.support.zonebuilder import Zone

EDNS_PAYLOAD = 1232  # what spfpolicy's resolver asks with
MAX_IDS = 65536  # a DNS message ID is 16 bits


@dataclass(frozen=True)
class DnsLoadResult:
    """Answered queries per second and their latency, for one run."""

    queries: int
    answered: int
    seconds: float
    queries_per_second: float
    p50_ms: float
    p99_ms: float
    window: int
    driver_cpu_seconds: float


def world_questions(zone: Zone) -> list[tuple[str, str]]:
    """Every (name, type) the world answers, with a NODATA question per name besides."""
    questions = []
    for name, entries in zone.items():
        if "TIMEOUT" in entries:
            continue  # no reply would come: that measures the timeout, not the server
        types = sorted({rdtype for entry in entries for rdtype in entry})
        questions += [(name, rdtype) for rdtype in types]
        questions.append((name, "SPF"))  # the names have no type-99 records: NODATA
    return questions


def prime_questions(zone: Zone) -> list[tuple[str, str]]:
    """What an SPF check can ask of the world: TXT of every name, and each type a name has."""
    questions = []
    for name, entries in zone.items():
        if "TIMEOUT" in entries:
            continue
        types = {"TXT"} | {rdtype for entry in entries for rdtype in entry}
        questions += [(name, rdtype) for rdtype in sorted(types)]
    return questions


def prime(port: int, wires: list[bytes], *, window: int = 50) -> int:
    """Send every query once, so that the server's memo holds its reply; the replies counted.

    The memo is keyed on the query's bytes: spfpolicy asks with EDNS, pyspf over pydns (Debian's
    policyd-spf) without, so each form needs its own pass (see `query_wire`).
    """
    _, latencies, _ = _pump(port, wires, len(wires), window, time_limit=600.0)
    return len(latencies)


def measure(
    port: int,
    questions: list[tuple[str, str]],
    *,
    count: int,
    window: int,
    time_limit: float = 60.0,
    seed: int = 1,
) -> DnsLoadResult:
    """Send `count` queries (or for `time_limit` seconds), `window` at a time; count replies."""
    rng = random.Random(seed)
    chosen = rng.choices(questions, k=min(count, 5000))
    wires = [query_wire(name, rdtype, edns=True) for name, rdtype in chosen]
    cpu_before = time.process_time()
    sent, latencies, seconds = _pump(port, wires, count, window, time_limit)
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return DnsLoadResult(
        queries=sent,
        answered=len(latencies),
        seconds=round(seconds, 3),
        queries_per_second=round(len(latencies) / seconds, 1) if seconds else 0.0,
        p50_ms=round(quantiles[49] * 1000, 3),
        p99_ms=round(quantiles[98] * 1000, 3),
        window=window,
        driver_cpu_seconds=round(time.process_time() - cpu_before, 3),
    )


def _pump(
    port: int, wires: list[bytes], count: int, window: int, time_limit: float
) -> tuple[int, list[float], float]:
    """Send `count` queries cycling through `wires`, at most `window` unanswered at a time.

    Returns how many were sent, the latency of each reply, and the seconds until the last one.
    Stops at `time_limit`, or when a second passes without any reply (the rest are lost).
    """
    sent_at = [0.0] * MAX_IDS
    latencies: list[float] = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock, selectors.DefaultSelector() as sel:
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
        started = last_reply = time.monotonic()
        deadline = started + time_limit
        sent = outstanding = 0
        while time.monotonic() < deadline and (sent < count or outstanding):
            while outstanding < window and sent < count:
                query_id = sent % MAX_IDS
                sent_at[query_id] = time.monotonic()
                sock.send(query_id.to_bytes(2, "big") + wires[sent % len(wires)])
                sent += 1
                outstanding += 1
            if not sel.select(timeout=1.0):
                break
            while True:
                try:
                    reply = sock.recv(65535)
                except BlockingIOError:
                    break
                last_reply = time.monotonic()
                latencies.append(last_reply - sent_at[int.from_bytes(reply[:2], "big")])
                outstanding -= 1
    return sent, latencies, last_reply - started


def query_wire(name: str, rdtype: str, *, edns: bool) -> bytes:
    """A query's wire form without its two ID bytes (the load loop puts a fresh ID in front).

    With `edns`, as spfpolicy's resolver asks; without, byte for byte what pydns sends.
    """
    if edns:
        query = dns.message.make_query(name, rdtype, use_edns=0, payload=EDNS_PAYLOAD)
    else:
        query = dns.message.make_query(name, rdtype, use_edns=False)
    return query.to_wire()[2:]


def main(argv: list[str] | None = None) -> int:
    """Serve a world, load its DNS server, print the result as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50_000, help="queries to send")
    parser.add_argument("--window", type=int, default=100, help="queries outstanding at once")
    parser.add_argument("--delay", type=float, default=0.0, help="the server's --delay")
    parser.add_argument("--domains", type=int, default=5000)
    arguments = parser.parse_args(argv)
    zone = build_world(arguments.domains).zone
    with running_dns_server(zone, delay=arguments.delay) as port:
        result = measure(
            port, world_questions(zone), count=arguments.count, window=arguments.window
        )
    print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
