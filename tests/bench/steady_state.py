"""The daemon's whole Python work per request on the warm benchmark traffic, without sockets.

    .venv/bin/python -m tests.bench.steady_state [--requests 60000]

The warm scenario's shape: a warm-up on other messages of the same traffic, then the measured
messages, every request framed by a RequestReader, tried from the caches (handle_cached) and
decided by handle() where that gives up, the decision logged (to memory), the reply encoded, all
in one thread, counted by the Prometheus observer as in the daemon (--no-metrics: without).
What the running daemon spends beyond this goes to sockets, the event loop and threads
(tests/bench/run.py measures that whole).
"""

from __future__ import annotations

import argparse
import io
import logging
import time

from spfpolicy.cli import build_service
from spfpolicy.config.settings import parse_config
from spfpolicy.ops.logs import configure_logging
from spfpolicy.ops.metrics import PrometheusObserver
from spfpolicy.service.policyservice import PolicyService
from spfpolicy.wire import protocol
from tests.bench.traffic import encode_all, generate_messages
from tests.bench.world import World, build_world
from tests.support.fixtures import running_dns_server

REQUESTS_PER_MESSAGE = 1.8  # the traffic's mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60_000)
    parser.add_argument("--warmup", type=int, default=20_000)
    parser.add_argument("--no-metrics", action="store_true", help="without the Prometheus observer")
    arguments = parser.parse_args()
    world = build_world(domains=5000, seed=1)
    warmup = _requests(world, arguments.warmup, seed=3, run=2)
    measured = _requests(world, arguments.requests, seed=2, run=1)
    with running_dns_server(world.zone) as port:
        config = parse_config(
            f'[dns]\nnameservers = ["127.0.0.1"]\nport = {port}\n[metrics]\nlisten = ""\n'
        )
        configure_logging(config.log.level, config.log.format)
        logging.getLogger().handlers[0].setStream(io.StringIO())  # type: ignore[attr-defined]
        observer = None if arguments.no_metrics else PrometheusObserver(config.spf.time_budget)
        service = build_service(config, observer)
        _run(service, warmup)
        wall, cpu = time.perf_counter(), time.process_time()
        inline = _run(service, measured)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    count = len(measured)
    print(
        f"{count} requests, {inline} answered from the caches alone: "
        f"{wall / count * 1e6:.1f} us wall, {cpu / count * 1e6:.1f} us CPU per request"
    )


def _requests(world: World, count: int, *, seed: int, run: int) -> list[bytes]:
    messages = generate_messages(
        world, int(count / REQUESTS_PER_MESSAGE) + 1, seed, timeout_share=0.0
    )
    return [raw for message in encode_all(messages, run=run) for raw in message][:count]


def _run(service: PolicyService, wire: list[bytes]) -> int:
    """Decide every request as the event loop and its workers would; count the cached ones."""
    reader = protocol.RequestReader()
    inline = 0
    for raw in wire:
        reader.feed(raw)
        request = reader.next_request()
        assert request is not None
        decision = service.handle_cached(request)
        if decision is None:
            decision = service.handle(request)
        else:
            inline += 1
        protocol.encode_reply(decision.action)
    return inline


if __name__ == "__main__":
    main()
