"""What the soak run samples from the daemon, and whether it stayed flat.

A sample is the process's resident memory, threads and open file descriptors (from /proc) and a
few counters from its /metrics page. Flat means: after the warm-up, the mean of the last third
of the samples is no more than a tolerance above the mean of the first third (a leak grows
steadily, so its last third stands above its first; a cache filling up stops growing).
"""

from __future__ import annotations

import os
import statistics
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.bench.procinfo import MIB, PROC, tree_cpu

SCRAPE_TIMEOUT = 5.0
# Growth allowed from the first third to the last: (share of the first third's mean, absolute).
TOLERANCES = {"rss_mib": (0.05, 4.0), "threads": (0.05, 2.0), "fds": (0.05, 4.0)}
# Counters read from /metrics: sample key -> (metric sample name, label that must match).
COUNTERS = {
    "requests": ("spfpolicy_requests_total", None),
    "internal_errors": ("spfpolicy_internal_errors_total", None),
    "budget_exceeded": ("spfpolicy_budget_exceeded_total", None),
    "reloads_ok": ("spfpolicy_config_reloads_total", ("outcome", "success")),
    "reloads_failed": ("spfpolicy_config_reloads_total", ("outcome", "failure")),
    "temperrors": ("spfpolicy_spf_results_total", ("result", "temperror")),
    "connections_open": ("spfpolicy_connections_open", None),
    "dns_cache_entries": ("spfpolicy_dns_cache_entries", None),
}


@dataclass(frozen=True)
class Sample:
    """The daemon at one moment."""

    seconds: float  # since the load started
    rss_mib: float
    threads: int
    fds: int
    cpu_seconds: float  # user + system since the daemon started
    metrics: dict[str, float]


def take(pid: int, metrics_url: str, seconds: float) -> Sample:
    """Sample process `pid` and its exporter at `metrics_url`."""
    status = _status(pid)
    return Sample(
        seconds=round(seconds, 1),
        rss_mib=round(status.get("VmRSS", 0) / 1024, 1),  # /proc reports kB
        threads=status.get("Threads", 0),
        fds=len(os.listdir(PROC / str(pid) / "fd")),
        cpu_seconds=round(tree_cpu(pid).total, 2),
        metrics=scrape(metrics_url),
    )


def _status(pid: int) -> dict[str, int]:
    """The numeric fields of /proc/PID/status that a sample needs."""
    fields = {}
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "Threads"):
            fields[name] = int(value.split()[0])
    return fields


def scrape(url: str) -> dict[str, float]:
    """The COUNTERS from one scrape, summed over their other labels; {} if the scrape fails."""
    try:
        with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT) as response:
            text = response.read().decode()
    except OSError:
        return {}
    found = dict.fromkeys(COUNTERS, 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for key, (name, label) in COUNTERS.items():
                if sample.name == name and (
                    label is None or sample.labels.get(label[0]) == label[1]
                ):
                    found[key] += sample.value
    return found


def verdicts(samples: Sequence[Sample], warmup: float) -> dict[str, dict[str, Any]]:
    """For RSS, threads and fds: first- and last-third means after the warm-up, and flat or not."""
    steady = [sample for sample in samples if sample.seconds >= warmup]
    third = len(steady) // 3
    result: dict[str, dict[str, Any]] = {}
    for key, (share, absolute) in TOLERANCES.items():
        if third == 0:
            result[key] = {"flat": None, "why": f"{len(steady)} samples after the warm-up: too few"}
            continue
        first = statistics.fmean(getattr(sample, key) for sample in steady[:third])
        last = statistics.fmean(getattr(sample, key) for sample in steady[-third:])
        allowed = max(share * first, absolute)
        result[key] = {
            "first_third_mean": round(first, 2),
            "last_third_mean": round(last, 2),
            "growth": round(last - first, 2),
            "allowed": round(allowed, 2),
            "flat": last - first <= allowed,
            "samples_per_third": third,
        }
    return result


def table_header() -> str:
    """The column names of the live table."""
    return (
        f"{'time':>7} {'RSS MiB':>8} {'threads':>7} {'fds':>5} {'req/s':>7} {'open':>5}"
        f" {'cache':>7} {'tmperr':>7} {'budget':>7} {'interr':>6} {'reloads':>7} {'CPU %':>6}"
    )


def table_row(sample: Sample, previous: Sample | None) -> str:
    """One line of the live table; rates are over the time since `previous`."""
    metrics = sample.metrics
    rate = cpu = 0.0
    if previous is not None and sample.seconds > previous.seconds:
        span = sample.seconds - previous.seconds
        done = metrics.get("requests", 0.0) - previous.metrics.get("requests", 0.0)
        rate = done / span
        cpu = (sample.cpu_seconds - previous.cpu_seconds) / span * 100
    reloads = f"{metrics.get('reloads_ok', 0):.0f}/{metrics.get('reloads_failed', 0):.0f}"
    return (
        f"{sample.seconds:7.0f} {sample.rss_mib:8.1f} {sample.threads:7d} {sample.fds:5d}"
        f" {rate:7.0f} {metrics.get('connections_open', 0):5.0f}"
        f" {metrics.get('dns_cache_entries', 0):7.0f} {metrics.get('temperrors', 0):7.0f}"
        f" {metrics.get('budget_exceeded', 0):7.0f} {metrics.get('internal_errors', 0):6.0f}"
        f" {reloads:>7} {cpu:6.0f}"
    )


def as_json(samples: Sequence[Sample]) -> list[dict[str, Any]]:
    """The samples as plain data."""
    return [asdict(sample) for sample in samples]


def log_size_mib(path: Path) -> float:
    """How much the daemon has logged so far."""
    try:
        return round(path.stat().st_size / MIB, 1)
    except OSError:
        return 0.0
