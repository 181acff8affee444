"""One contender run: start it, drive the scenario's load at it, stop it, record what it cost."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tests.bench.contenders import Contender, running
from tests.bench.load import Limit
from tests.bench.parallel import LoadPlan, LoadResult, run_load
from tests.bench.procinfo import (
    MIB,
    CpuTimes,
    MemorySampler,
    machine_busy_seconds,
    tree_cpu,
    tree_memory,
)
from tests.bench.scenarios import Scenario

# Warm-up requests for contenders without caches: every connection's process started and every
# code path run a few times.
SHORT_WARMUP = 2000
TROUBLE_QUOTED = 5  # warning/error lines of a contender's log quoted in the results


def run_contender(
    scenario: Scenario,
    contender: Contender,
    arguments: argparse.Namespace,
    dns_port: int,
    workdir: Path,
) -> dict[str, Any]:
    """Start `contender`, load it with `scenario`, stop it; what was measured."""
    marks: dict[str, Any] = {}
    with running(contender, workdir, dns_port) as server:
        sampler = MemorySampler(server.pid)

        def before() -> None:
            marks["busy"] = machine_busy_seconds()
            marks["cpu"] = tree_cpu(server.pid)
            sampler.start()

        def after() -> None:
            marks["cpu"] = tree_cpu(server.pid) - marks["cpu"]
            marks["busy"] = machine_busy_seconds() - marks["busy"]
            sampler.stop()
            marks["memory"] = tree_memory(server.pid)

        plan = LoadPlan(
            address=server.address,
            connections=scenario.connections,
            processes=arguments.drivers,
            messages=scenario.messages,
            limit=scenario.limit,
            warmup=scenario.warmup,
            warmup_limit=_warmup_limit(scenario, contender),
            reply_timeout=arguments.reply_timeout,
            connect_early=scenario.warmup_limit is not None,
        )
        load = run_load(plan, before, after)
    trouble_lines = server.trouble()
    return _record(scenario, contender, load, marks=marks, sampler=sampler, trouble=trouble_lines)


def _warmup_limit(scenario: Scenario, contender: Contender) -> Limit:
    """The scenario's warm-up for contenders with caches; enough to start up for the others."""
    if scenario.warmup_limit is None:
        return Limit(0, 0.0)
    if contender.keeps_caches:
        return scenario.warmup_limit
    return Limit(min(SHORT_WARMUP, scenario.warmup_limit.requests), scenario.warmup_limit.seconds)


def _record(
    scenario: Scenario,
    contender: Contender,
    load: LoadResult,
    *,
    marks: dict[str, Any],
    sampler: MemorySampler,
    trouble: list[str],
) -> dict[str, Any]:
    measured = load.measured
    cpu: CpuTimes = marks["cpu"]
    return {
        "scenario": scenario.name,
        "contender": contender.name,
        "kind": contender.kind.value,
        "settings": dict(contender.settings),
        "source": str(contender.root),
        "connections": scenario.connections,
        "load": asdict(measured),
        "warmup": asdict(load.warmup) if load.warmup else None,
        "cpu_seconds": round(cpu.total, 3),
        "cpu_system_share": _ratio(cpu.system, cpu.total),
        "cpu_us_per_request": round(_ratio(cpu.total, measured.replies) * 1e6, 1),
        "driver_cpu_share": _ratio(measured.driver_cpu_seconds, measured.seconds),
        # Cores busy with anything but the contender and the driver: DNS servers, the runner,
        # and whatever else ran on the machine meanwhile (a high value: a disturbed run).
        "other_cpu_cores": round(
            _ratio(marks["busy"] - cpu.total - measured.driver_cpu_seconds, measured.seconds), 2
        ),
        "rss_end_mib": round(marks["memory"].rss / MIB, 1),
        "hwm_sum_mib": round(marks["memory"].hwm / MIB, 1),
        "rss_peak_mib": round(sampler.peak_rss / MIB, 1),
        "processes": sampler.peak_processes,
        "timeouts": _timeout_latencies(load, scenario.timing_out),
        "log_trouble": len(trouble),
        "log_trouble_first": trouble[:TROUBLE_QUOTED],
    }


def _ratio(part: float, whole: float) -> float:
    return round(part / whole, 6) if whole else 0.0


def _timeout_latencies(load: LoadResult, timing_out: frozenset[int]) -> dict[str, Any]:
    """Latencies of the requests whose sender's DNS never answers, against everyone else's."""
    dead: list[float] = []
    others: list[float] = []
    for phase in load.phases:
        for number, latency in zip(phase.message_numbers, phase.latencies, strict=True):
            (dead if number in timing_out else others).append(latency * 1000)
    return {
        "requests": len(dead),
        "min_ms": round(min(dead), 1) if dead else None,
        "max_ms": round(max(dead), 1) if dead else None,
        "others_max_ms": round(max(others), 1) if others else None,
    }
