"""Where one request's microseconds go, part by part, on the benchmark's traffic.

    .venv/bin/python -m tests.bench.profile_parts [--messages 3000]

Runs in one process: the daemon's own objects over a real DNS server on loopback serving the
benchmark world, caches warmed by one pass over the traffic, then each part timed alone over
the same requests (time.perf_counter_ns, the median of several passes). Socket I/O is not in
these numbers; tests/bench/run.py measures the whole daemon.
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from spfpolicy.cli import build_service
from spfpolicy.config.settings import parse_config
from spfpolicy.decision import policy
from spfpolicy.model import Identity, PolicyRequest
from spfpolicy.ops.logs import configure_logging
from spfpolicy.service.decisionlog import log_decision
from spfpolicy.wire import protocol
from tests.bench.traffic import encode_all, generate_messages
from tests.bench.world import build_world
from tests.support.fixtures import running_dns_server

PASSES = 5


def per_request(items: Sequence[Any], work: Callable[[Any], object]) -> float:
    """Median over PASSES of the mean microseconds of work(item) over items."""
    runs = []
    for _ in range(PASSES):
        started = time.perf_counter_ns()
        for item in items:
            work(item)
        runs.append((time.perf_counter_ns() - started) / len(items) / 1000)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    arguments = parser.parse_args()
    world = build_world(domains=2000, seed=5)
    messages = generate_messages(world, arguments.messages, seed=6, timeout_share=0)
    wire = [requests[0] for requests in encode_all(messages, run=1)]
    with running_dns_server(world.zone) as port:
        config = parse_config(
            f'[dns]\nnameservers = ["127.0.0.1"]\nport = {port}\n[metrics]\nlisten = ""\n'
        )
        configure_logging(config.log.level, config.log.format)
        logging.getLogger().handlers[0].setStream(io.StringIO())  # type: ignore[attr-defined]
        service = build_service(config)
        parsed = [protocol.read_request(io.BytesIO(raw).readline) for raw in wire]
        requests: list[PolicyRequest] = [r for r in parsed if r is not None]
        for request in requests:  # warm the caches: the steady state of a busy server
            service.handle(request.replace(instance="warm" + request.instance))
        report(service, wire, requests, config)


def report(service: Any, wire: list[bytes], requests: list[PolicyRequest], config: Any) -> None:
    evaluator = service.evaluator
    result_cache = evaluator.result_cache
    decisions = [service.handle(r.replace(instance="d" + r.instance)) for r in requests]
    rows = {
        "RequestReader: frame and parse ~27 attributes": per_request(wire, _frame),
        "skip_reason": per_request(requests, lambda r: policy.skip_reason(r, config)),
        "evaluate MAIL FROM, result cache hit": per_request(
            requests, lambda r: _evaluate(evaluator, r, Identity.MAILFROM)
        ),
        "decide + trace header": per_request(
            list(zip(requests, decisions, strict=True)),
            lambda pair: policy.decide(pair[0], pair[1].outcomes, config, service.receiver),
        ),
        "decision log line (text, to memory)": per_request(
            list(zip(requests, decisions, strict=True)),
            lambda pair: log_decision(pair[0], pair[1], 0.001),
        ),
        "encode_reply": per_request(decisions, lambda d: protocol.encode_reply(d.action)),
        "whole handle(), caches warm": per_request(
            requests, lambda r: service.handle(r.replace(instance="h" + r.instance))
        ),
    }
    evaluator.result_cache = None
    rows["evaluate MAIL FROM, DNS and include: results cached (pyspf)"] = per_request(
        requests[:500], lambda r: _evaluate(evaluator, r, Identity.MAILFROM)
    )
    include_cache, evaluator.include_cache = evaluator.include_cache, None
    rows["evaluate MAIL FROM, DNS cache only (pyspf)"] = per_request(
        requests[:500], lambda r: _evaluate(evaluator, r, Identity.MAILFROM)
    )
    evaluator.result_cache, evaluator.include_cache = result_cache, include_cache
    for name, micros in rows.items():
        print(f"| {name} | {micros:.1f} |")


def _frame(raw: bytes) -> object:
    reader = protocol.RequestReader()
    reader.feed(raw)
    return reader.next_request()


def _evaluate(evaluator: Any, request: PolicyRequest, identity: Identity) -> object:
    return evaluator.evaluate(
        identity,
        client_address=request.client_address,
        sender=request.sender,
        helo=request.helo_name,
        deadline=time.monotonic() + 20,
    )


if __name__ == "__main__":
    main()
