"""The benchmark's results: medians over rounds, the table, issue 13's ratios, the machine.

Everything here works on plain dicts (one per contender run, as run.py records them), so the
same functions read a results JSON file back: `python -m tests.bench.report FILE` reprints it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.bench.contenders import POLICYD_SPF, SYSTEM_PYTHON
from tests.bench.procinfo import MIB

WARM, COLD, FLOOD = "warm", "cold", "flood"
SPFPOLICY, DUNNO, POLICYD = "spfpolicy", "dunno", "policyd-spf"
# Issue 13's targets, as ratios to Debian's policyd-spf and the DUNNO floor in the same run.
WARM_POLICYD_FACTOR = 8.0  # req/s, at least
WARM_P99_MS = 5.0  # below
WARM_POLICYD_CPU_SHARE = 1 / 15  # CPU per request, at most
WARM_FLOOR_CPU_FACTOR = 10.0  # CPU per request against the floor's, at most
COLD_POLICYD_FACTOR = 4.0  # req/s to p99, at least
COLD_POLICYD_P50_SHARE = 0.6  # p50, at most
FLOOD_POLICYD_FACTOR = 3.0  # req/s, at least
FLOOD_POLICYD_CPU_SHARE = 1 / 6  # CPU per request, at most
RSS_AFTER_K50_MIB = 60.0  # after the cold and flood runs
RSS_FULL_CACHES_MIB = 150.0  # after the warm run
PYTHON_PACKAGES = ("pyspf", "dnspython", "cachetools", "prometheus-client")
DEBIAN_PACKAGES = (
    "postfix-policyd-spf-python",
    "python3-spf",
    "python3-spf-engine",
    "python3-dns",
    "python3-dnspython",
)

Run = Mapping[str, Any]


def summarise_runs(runs: Iterable[Run]) -> list[dict[str, Any]]:
    """One row per (scenario, contender): medians over the rounds, worst cases where it matters."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run["scenario"], run["contender"]), []).append(run)
    rows = []
    for (scenario, contender), group in groups.items():
        loads = [run["load"] for run in group]
        rows.append(
            {
                "scenario": scenario,
                "contender": contender,
                "kind": group[0]["kind"],
                "connections": group[0]["connections"],
                "rounds": len(group),
                "requests_per_second": _median(load["requests_per_second"] for load in loads),
                "rate_to_p99": _median(load["rate_to_p99"] for load in loads),
                "p50_ms": _median(load["p50_ms"] for load in loads),
                "p99_ms": _median(load["p99_ms"] for load in loads),
                "max_ms": max(load["max_ms"] for load in loads),
                "replies": sum(load["replies"] for load in loads),
                "errors": sum(sum(load["errors"].values()) for load in loads),
                "rss_end_mib": _median(run["rss_end_mib"] for run in group),
                "rss_peak_mib": max(run["rss_peak_mib"] for run in group),
                "cpu_us_per_request": _median(run["cpu_us_per_request"] for run in group),
                "cpu_system_share": _median(run["cpu_system_share"] for run in group),
                "driver_cpu_us_per_request": _median(
                    load["driver_cpu_us_per_request"] for load in loads
                ),
                "driver_cpu_share": _median(run["driver_cpu_share"] for run in group),
                "other_cpu_cores": max(run["other_cpu_cores"] for run in group),
                "log_trouble": sum(run["log_trouble"] for run in group),
            }
        )
    return rows


def _median(values: Iterable[float]) -> float:
    return round(statistics.median(values), 3)


def ratios(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Issue 13's ratios for every spfpolicy contender (variants included): for each, its value
    and, under the key with "_met" added, whether it meets the target."""
    table = {(row["scenario"], row["contender"]): row for row in rows}
    found: dict[str, Any] = {}
    for row in rows:
        if row["kind"] != SPFPOLICY:
            continue
        scenario = row["scenario"]
        policyd, floor = table.get((scenario, POLICYD)), table.get((scenario, DUNNO))
        checks = {WARM: _warm_ratios, COLD: _cold_ratios, FLOOD: _flood_ratios}.get(scenario)
        if checks:
            found[f"{row['contender']} {scenario}"] = dict(_with_marks(checks(row, policyd, floor)))
    return found


Check = tuple[str, float, bool]  # name, value, target met


def _with_marks(checks: Iterable[Check]) -> Iterable[tuple[str, Any]]:
    for name, value, met in checks:
        yield name, round(value, 3)
        yield name + "_met", met


def _warm_ratios(row: Run, policyd: Run | None, floor: Run | None) -> Iterable[Check]:
    yield "p99_ms", row["p99_ms"], row["p99_ms"] < WARM_P99_MS
    yield "rss_end_mib", row["rss_end_mib"], row["rss_end_mib"] <= RSS_FULL_CACHES_MIB
    if policyd:
        factor = _share(row["requests_per_second"], policyd["requests_per_second"])
        yield "times_policyd_spf", factor, factor >= WARM_POLICYD_FACTOR
        cpu = _share(row["cpu_us_per_request"], policyd["cpu_us_per_request"])
        yield "cpu_share_of_policyd_spf", cpu, cpu <= WARM_POLICYD_CPU_SHARE
    if floor:
        cpu = _share(row["cpu_us_per_request"], floor["cpu_us_per_request"])
        yield "cpu_times_floor", cpu, cpu <= WARM_FLOOR_CPU_FACTOR


def _cold_ratios(row: Run, policyd: Run | None, floor: Run | None) -> Iterable[Check]:
    yield "rss_end_mib", row["rss_end_mib"], row["rss_end_mib"] <= RSS_AFTER_K50_MIB
    if policyd:
        factor = _share(row["rate_to_p99"], policyd["rate_to_p99"])
        yield "times_policyd_spf_to_p99", factor, factor >= COLD_POLICYD_FACTOR
        p50 = _share(row["p50_ms"], policyd["p50_ms"])
        yield "p50_share_of_policyd_spf", p50, p50 <= COLD_POLICYD_P50_SHARE


def _flood_ratios(row: Run, policyd: Run | None, floor: Run | None) -> Iterable[Check]:
    yield "rss_end_mib", row["rss_end_mib"], row["rss_end_mib"] <= RSS_AFTER_K50_MIB
    if policyd:
        factor = _share(row["requests_per_second"], policyd["requests_per_second"])
        yield "times_policyd_spf", factor, factor >= FLOOD_POLICYD_FACTOR
        cpu = _share(row["cpu_us_per_request"], policyd["cpu_us_per_request"])
        yield "cpu_share_of_policyd_spf", cpu, cpu <= FLOOD_POLICYD_CPU_SHARE


def _share(part: float, whole: float) -> float:
    """part / whole; NaN, which meets no target, when the reference measured nothing."""
    return part / whole if whole else math.nan


COLUMNS = (
    ("scenario", "scenario", "{}"),
    ("contender", "contender", "{}"),
    ("connections", "K", "{}"),
    ("requests_per_second", "req/s", "{:.0f}"),
    ("rate_to_p99", "req/s to p99", "{:.0f}"),
    ("p50_ms", "p50 ms", "{:.2f}"),
    ("p99_ms", "p99 ms", "{:.2f}"),
    ("max_ms", "max ms", "{:.0f}"),
    ("errors", "errors", "{}"),
    ("rss_end_mib", "RSS end MiB", "{:.1f}"),
    ("rss_peak_mib", "RSS peak MiB", "{:.1f}"),
    ("cpu_us_per_request", "CPU us/req", "{:.0f}"),
    ("cpu_system_share", "of it kernel", "{:.0%}"),
    ("driver_cpu_us_per_request", "driver us/req", "{:.1f}"),
    ("driver_cpu_share", "driver CPU %", "{:.0%}"),
    ("other_cpu_cores", "other cores", "{:.2f}"),
    ("log_trouble", "log warn/err", "{}"),
)


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as a Markdown table (medians over rounds; max and errors over all rounds)."""
    header = "| " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    rule = "|" + "|".join(" --- " for _ in COLUMNS) + "|"
    lines = [header, rule]
    for row in rows:
        cells = [style.format(row[key]) for key, _, style in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_ratios(found: Mapping[str, Mapping[str, Any]]) -> str:
    """The ratios, one line per spfpolicy contender and scenario, each marked against its target."""
    lines = []
    for name, values in found.items():
        parts = [
            f"{key}={value}" + (" ok" if values.get(key + "_met") else " MISSED")
            for key, value in values.items()
            if not key.endswith("_met")
        ]
        lines.append(f"{name}: " + ", ".join(parts))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu_model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.partition(":")[2].strip()
            break
    memory = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gib": round(int(memory) / MIB, 1),
        "kernel": platform.release(),
        "os": _os_release(),
        "python": sys.version.split()[0],
        "python_packages": {name: _version(name) for name in PYTHON_PACKAGES},
        "system_python": _command([str(SYSTEM_PYTHON), "--version"]),
        # What Debian's pyspf would use on its own here (the benchmark chooses; see run.py).
        "system_pyspf_dns": _command(
            [str(SYSTEM_PYTHON), "-c", "import spf; print(spf.DNSLookup.__name__)"]
        ),
        "debian_packages": _debian_versions() if POLICYD_SPF.exists() else {},
    }


def code_version(root: Path) -> dict[str, str]:
    """Which daemon was measured: the checkout's commit (read from .git, no git command) and a
    hash of spfpolicy/**/*.py as they were, since the work tree may differ from the commit."""
    digest = hashlib.sha256()
    package = root / "spfpolicy"
    for source in sorted(package.rglob("*.py")):
        digest.update(source.relative_to(package).as_posix().encode() + b"\0" + source.read_bytes())
    return {"commit": _head_commit(root / ".git"), "spfpolicy_sha256": digest.hexdigest()[:16]}


def _head_commit(git: Path) -> str:
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head.removeprefix("ref: ")
        if (git / ref).exists():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        pass
    return "unknown"


def _os_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.partition("=")[2].strip('"')
    except OSError:
        pass
    return platform.platform()


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _debian_versions() -> dict[str, str]:
    output = _command(["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", *DEBIAN_PACKAGES])
    return dict(line.split(" ", 1) for line in output.splitlines() if " " in line)


def _command(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    """Reprint a results file's table and ratios."""
    path = Path((argv or sys.argv[1:])[0])
    results = json.loads(path.read_text())
    print(format_table(results["summary"]))
    print()
    print(format_ratios(results["ratios"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
