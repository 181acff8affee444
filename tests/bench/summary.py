"""One phase of load over all driver processes: rates, latency percentiles, reply kinds."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from tests.bench.load import PhaseStats


@dataclass(frozen=True)
class Summary:
    """One phase over all driver processes."""

    sent: int
    replies: int
    errors: dict[str, int]
    reply_classes: dict[str, int]
    seconds: float  # from the start to the last reply
    requests_per_second: float
    rate_to_p99: float  # 99% of the requests over the time until the 99th-percentile reply
    p50_ms: float
    p99_ms: float
    max_ms: float
    driver_cpu_seconds: float
    driver_cpu_us_per_request: float


def summarise(phases: Sequence[PhaseStats], started: float) -> Summary:
    """Aggregate the driver processes' stats of one phase that began at `started`."""
    sent = sum(phase.sent for phase in phases)
    latencies = sorted(value for phase in phases for value in phase.latencies)
    completions = sorted(value for phase in phases for value in phase.completions)
    errors: Counter[str] = Counter()
    classes: Counter[str] = Counter()
    for phase in phases:
        errors.update(phase.errors)
        for prefix, count in phase.replies.items():
            classes[reply_class(prefix)] += count
    seconds = (completions[-1] - started) if completions else 0.0
    cpu = sum(phase.cpu_seconds for phase in phases)
    return Summary(
        sent=sent,
        replies=len(latencies),
        errors=dict(errors),
        reply_classes=dict(classes.most_common()),
        seconds=round(seconds, 3),
        requests_per_second=round(len(latencies) / seconds, 1) if seconds else 0.0,
        rate_to_p99=round(_rate_to_p99(completions, sent, started), 1),
        p50_ms=round(_percentile(latencies, 0.50) * 1000, 3),
        p99_ms=round(_percentile(latencies, 0.99) * 1000, 3),
        max_ms=round(latencies[-1] * 1000, 3) if latencies else 0.0,
        driver_cpu_seconds=round(cpu, 3),
        driver_cpu_us_per_request=round(cpu / len(latencies) * 1e6, 1) if latencies else 0.0,
    )


def _rate_to_p99(completions: Sequence[float], sent: int, started: float) -> float:
    """Requests per second counted up to the 99th-percentile reply (issue 4).

    99% of the requests sent, divided by the time from the start until the reply that
    completed that 99% arrived. The slowest 1% (domains whose DNS never answers, which every
    contender must wait out) is left out. 0 if fewer than 99% got a reply.
    """
    needed = math.ceil(0.99 * sent)
    if needed == 0 or len(completions) < needed:
        return 0.0
    elapsed = completions[needed - 1] - started
    return needed / elapsed if elapsed > 0 else 0.0


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values (0 for none)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def reply_class(action: bytes) -> str:
    """An action's kind for the tally: the action word, the SMTP codes, the SPF result of a header.

    "PREPEND Received-SPF: pass (...)" -> "prepend pass"; "550 5.7.23 ..." -> "550 5.7.23";
    "DEFER_IF_PERMIT 4.7.24 ..." -> "defer_if_permit 4.7.24"; "DUNNO" -> "dunno".
    """
    words = action.lower().split(None, 3)
    if not words:
        return "(empty)"
    if words[0] == b"prepend" and len(words) > 2:
        return f"prepend {words[2].decode(errors='replace')}"
    if words[0][:1].isdigit() or words[0].startswith(b"defer"):
        return b" ".join(words[:2]).decode(errors="replace")
    return words[0].decode(errors="replace")
