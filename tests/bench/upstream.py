"""The benchmark's upstream DNS: the world served by test DNS servers on loopback, primed.

One server answers at once (a resolver answering from its cache), the other `delay` seconds
late (a resolver that has to ask the Internet). Each keeps a memo of its replies; priming it
with every question the world can be asked, in both query forms (spfpolicy's EDNS queries,
pydns's plain ones), means no contender pays for another's cold memo.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from tests.bench.dnsload import measure, prime, prime_questions, query_wire, world_questions
from tests.support.fixtures import running_dns_server
from tests.support.zonebuilder import Zone

CAPACITY_QUERIES = 20_000
CAPACITY_WINDOW = 50  # like 50 connections each waiting for one answer


@dataclass(frozen=True)
class Upstream:
    """The ports of the fast and the slow server (None: not started)."""

    fast_port: int | None
    slow_port: int | None
    delay: float
    prime_seconds: float


@contextmanager
def serving(
    zone: Zone, delay: float, *, fast: bool, slow: bool, edns_forms: set[bool]
) -> Iterator[Upstream]:
    """Start the servers asked for, prime them (in parallel), yield their ports; stop them."""
    with ExitStack() as stack:
        fast_port = stack.enter_context(running_dns_server(zone)) if fast else None
        slow_port = stack.enter_context(running_dns_server(zone, delay=delay)) if slow else None
        started = time.monotonic()
        ports = [port for port in (fast_port, slow_port) if port is not None]
        prime_all(ports, zone, edns_forms)
        yield Upstream(fast_port, slow_port, delay, round(time.monotonic() - started, 1))


def prime_all(ports: list[int], zone: Zone, edns_forms: set[bool]) -> None:
    """Prime every server with every question in every form, one thread per server."""
    questions = prime_questions(zone)
    wires = [
        query_wire(name, rdtype, edns=edns)
        for edns in sorted(edns_forms)
        for name, rdtype in questions
    ]
    failures: list[str] = []

    def prime_one(port: int) -> None:
        answered = prime(port, wires)
        if answered < len(wires):
            failures.append(f"port {port}: {answered} of {len(wires)} answered")

    threads = [threading.Thread(target=prime_one, args=(port,)) for port in ports]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError("priming the DNS servers failed: " + "; ".join(failures))


def capacity(upstream: Upstream, zone: Zone) -> list[dict[str, Any]]:
    """Queries per second of the primed servers: one at a time, and CAPACITY_WINDOW at once."""
    questions = world_questions(zone)
    results = []
    runs = [
        ("fast, one at a time", upstream.fast_port, 1, CAPACITY_QUERIES // 10),
        ("fast", upstream.fast_port, CAPACITY_WINDOW, CAPACITY_QUERIES),
        ("slow", upstream.slow_port, CAPACITY_WINDOW, CAPACITY_QUERIES // 4),
    ]
    for label, port, window, count in runs:
        if port is None:
            continue
        result = measure(port, questions, count=count, window=window)
        results.append({"server": label, **asdict(result)})
    return results
