"""The benchmark's scenarios: how many connections, which DNS, and the traffic, encoded once.

Every contender of a scenario gets the same bytes. The daemons never see one instance twice:
each contender runs in a fresh process, and the warm-up pass has messages of its own.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from tests.bench import report
from tests.bench.load import Limit
from tests.support.traffic import Message, encode_all, generate_flood, generate_messages
from tests.support.world import DomainKind, World

REQUESTS_PER_MESSAGE = 1.5  # a little below the traffic's mean: enough messages for the limit


@dataclass(frozen=True)
class Scenario:
    """One row group of the table: how many connections, which DNS, how much traffic."""

    name: str
    connections: int
    slow_dns: bool
    limit: Limit
    warmup_limit: Limit | None  # None: cold, connections open when the clock starts
    messages: tuple[Sequence[bytes], ...]
    warmup: tuple[Sequence[bytes], ...]
    timing_out: frozenset[int]  # numbers of the messages whose sender's DNS never answers


def build_scenarios(arguments: argparse.Namespace, world: World) -> list[Scenario]:
    """The warm, cold and flood scenarios asked for, with their encoded traffic."""
    wanted = set(arguments.scenarios.split(","))
    scenarios = []
    if "warm" in wanted:
        scenarios.append(_warm(arguments, world))
    if "cold" in wanted:
        scenarios.append(_cold(arguments, world))
    if "flood" in wanted:
        scenarios.append(_flood(arguments, world))
    return scenarios


def flood_domains(arguments: argparse.Namespace) -> int:
    """How many flood domains the world needs: one per message of the warm-up and the run."""
    if "flood" not in arguments.scenarios.split(","):
        return 0
    return sum(_flood_counts(arguments))


def _flood_counts(arguments: argparse.Namespace) -> tuple[int, int]:
    warmup = int(arguments.flood_warmup_requests / REQUESTS_PER_MESSAGE) + 1
    return warmup, int(arguments.flood_requests / REQUESTS_PER_MESSAGE) + 1


def _warm(arguments: argparse.Namespace, world: World) -> Scenario:
    count = int(arguments.warm_requests / REQUESTS_PER_MESSAGE) + 1
    # No timing-out senders here: a 5-20 s wait would stretch a few-second run.
    messages = generate_messages(world, count, arguments.seed + 1, timeout_share=0.0)
    if arguments.warmup_replay:  # the measured messages themselves, under other instances
        warmup, warmup_requests = messages, arguments.warm_requests
    else:  # more of the same traffic: what the daemon saw in the minutes before
        warmup_count = int(arguments.warmup_requests / REQUESTS_PER_MESSAGE) + 1
        warmup = generate_messages(world, warmup_count, arguments.seed + 2, timeout_share=0.0)
        warmup_requests = arguments.warmup_requests
    return Scenario(
        name=report.WARM,
        connections=arguments.warm_connections,
        slow_dns=False,
        limit=Limit(arguments.warm_requests, arguments.warm_seconds),
        warmup_limit=Limit(warmup_requests, arguments.warmup_seconds),
        messages=tuple(encode_all(messages, run=1)),
        warmup=tuple(encode_all(warmup, run=2)),
        timing_out=frozenset(),
    )


def _cold(arguments: argparse.Namespace, world: World) -> Scenario:
    count = int(arguments.cold_requests / REQUESTS_PER_MESSAGE) + 1
    messages = generate_messages(world, count, arguments.seed + 3, arguments.timeout_share)
    return Scenario(
        name=report.COLD,
        connections=arguments.cold_connections,
        slow_dns=True,
        limit=Limit(arguments.cold_requests, arguments.cold_seconds),
        warmup_limit=None,
        messages=tuple(encode_all(messages, run=3)),
        warmup=(),
        timing_out=_timing_out(world, messages),
    )


def _flood(arguments: argparse.Namespace, world: World) -> Scenario:
    """Every message from a domain never seen before, over the fast DNS. The warm-up floods other
    new domains: the daemon is running, and the shared providers' records are what it has seen."""
    warmup_count, count = _flood_counts(arguments)
    warmup = generate_flood(world, 0, warmup_count, arguments.seed + 4)
    messages = generate_flood(world, warmup_count, count, arguments.seed + 5)
    return Scenario(
        name=report.FLOOD,
        connections=arguments.flood_connections,
        slow_dns=False,
        limit=Limit(arguments.flood_requests, arguments.flood_seconds),
        warmup_limit=Limit(arguments.flood_warmup_requests, arguments.warmup_seconds),
        messages=tuple(encode_all(messages, run=4)),
        warmup=tuple(encode_all(warmup, run=5)),
        timing_out=frozenset(),
    )


def _timing_out(world: World, messages: Sequence[Message]) -> frozenset[int]:
    dead = {domain.name for domain in world.domains if domain.kind is DomainKind.TIMEOUT}
    return frozenset(
        number
        for number, message in enumerate(messages)
        if message.sender.rpartition("@")[2] in dead
    )
