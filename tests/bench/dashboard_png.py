"""Render packaging/grafana/spfpolicy.json from real data: the picture in the README.

Runs the daemon on the benchmark's DNS world, scrapes it with a real Prometheus (Debian's
`prometheus` package) while synthetic mail traffic flows, then evaluates every panel's own
PromQL through Prometheus's HTTP API and draws the panels where the dashboard puts them.

    .venv/bin/pip install matplotlib
    .venv/bin/python -m tests.bench.dashboard_png --out packaging/grafana/spfpolicy-dashboard.png
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.fixtures import REPO_ROOT, running_dns_server
from tests.support.postfix import free_port
from tests.support.traffic import encode_all, generate_messages
from tests.support.world import build_world

DASHBOARD = REPO_ROOT / "packaging" / "grafana" / "spfpolicy.json"
SCRAPE_INTERVAL = 2  # seconds
RATE_WINDOW = "20s"  # what Grafana's $__rate_interval would be at this scrape interval


@contextmanager
def process(command: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child process, stopped with SIGTERM (then SIGKILL) on the way out."""
    with log.open("wb") as output:
        child = subprocess.Popen(command, stdout=output, stderr=output, cwd=REPO_ROOT)
    try:
        yield child
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def drive(port: int, requests: list[list[bytes]], stop: threading.Event, pace: list[float]) -> None:
    """One smtpd-like connection sending messages until stopped; pace[0] is the pause."""
    rng = random.Random(port)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        reader = connection.makefile("rb")
        while not stop.is_set():
            for payload in requests[rng.randrange(len(requests))]:
                connection.sendall(payload)
                while reader.readline() not in (b"\n", b""):
                    pass
            time.sleep(pace[0] * rng.random())


def query_range(prometheus: str, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    params = urllib.parse.urlencode(
        {"query": expr, "start": start, "end": end, "step": SCRAPE_INTERVAL}
    )
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{params}", timeout=30) as reply:
        document = json.load(reply)
    return list(document["data"]["result"])


def render(prometheus: str, start: float, end: float, out: Path) -> None:
    """Draw every dashboard panel from Prometheus, laid out by its gridPos."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dashboard = json.loads(DASHBOARD.read_text())
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dashboard["panels"])
    plt.style.use("dark_background")
    figure = plt.figure(figsize=(20, rows * 0.42), facecolor="#111217")
    grid = figure.add_gridspec(rows, 24, hspace=3.5, wspace=1.2)
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        axes = figure.add_subplot(
            grid[pos["y"] : pos["y"] + pos["h"], pos["x"] : pos["x"] + pos["w"]]
        )
        axes.set_facecolor("#181b1f")
        axes.set_title(panel["title"], loc="left", fontsize=10, color="#ccccdc")
        unit = panel["fieldConfig"]["defaults"].get("unit", "short")
        series = []
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", RATE_WINDOW)
            expr = expr.replace('instance=~"$instance"', 'instance=~".*"')
            for result in query_range(prometheus, expr, start, end):
                label = target.get("legendFormat", "") or expr[:30]
                for key, value in result["metric"].items():
                    label = label.replace("{{" + key + "}}", value)
                points = [
                    (float(t) - start, float(v))
                    for t, v in result["values"]
                    if v not in ("NaN", "+Inf", "-Inf")
                ]
                series.append((label, points))
        if panel["type"] == "stat":
            _stat(axes, series, unit)
        else:
            _timeseries(axes, series, unit, panel)
    figure.suptitle(
        "spfpolicy: packaging/grafana/spfpolicy.json on real data",
        x=0.125,
        y=0.93,
        ha="left",
        color="#ccccdc",
    )
    figure.savefig(out, dpi=72, facecolor=figure.get_facecolor(), bbox_inches="tight")


def _format(value: float, unit: str) -> str:
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "reqps":
        return f"{value:.0f} req/s"
    return f"{value:.0f}"


def _stat(axes: Any, series: list[tuple[str, list[tuple[float, float]]]], unit: str) -> None:
    axes.set_xticks([])
    axes.set_yticks([])
    last = series[0][1][-1][1] if series and series[0][1] else float("nan")
    axes.text(
        0.5,
        0.4,
        _format(last, unit),
        ha="center",
        va="center",
        fontsize=22,
        color="#73bf69",
        transform=axes.transAxes,
    )


def _timeseries(
    axes: Any, series: list[tuple[str, list[tuple[float, float]]]], unit: str, panel: dict[str, Any]
) -> None:
    for label, points in series:
        if points:
            axes.plot(
                [t / 60 for t, _ in points], [v for _, v in points], label=label, linewidth=1.2
            )
    steps = panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", [])
    for step in steps:
        if step.get("value") is not None:
            axes.axhline(step["value"], color="#f2495c", linestyle="--", linewidth=1)
    if unit == "s":
        axes.set_yscale("log")
    axes.tick_params(labelsize=7, colors="#9fa7b3")
    axes.set_xlabel("minutes", fontsize=7, color="#9fa7b3")
    axes.grid(alpha=0.15)
    if series:
        axes.legend(fontsize=7, loc="upper left", framealpha=0.3, ncol=3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/spfpolicy-dashboard.png"))
    parser.add_argument("--minutes", type=float, default=4.0)
    arguments = parser.parse_args()
    if shutil.which("prometheus") is None:
        print("needs Debian's prometheus package: apt-get install prometheus", file=sys.stderr)
        return 2
    world = build_world(domains=2000, seed=5)
    messages = generate_messages(world, 20_000, seed=6)
    requests = encode_all(messages, run=1)
    workdir = Path(tempfile.mkdtemp(prefix="spfpolicy-dashboard-"))
    policy_port, metrics_port, prometheus_port = free_port(), free_port(), free_port()
    with running_dns_server(world.zone, delay=0.004) as dns_port:
        config = workdir / "spfpolicy.toml"
        config.write_text(
            f'[server]\nlisten = ["inet:127.0.0.1:{policy_port}"]\n'
            f'[dns]\nnameservers = ["127.0.0.1"]\nport = {dns_port}\nquery_timeout = 2.0\n'
            f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n'
        )
        scrape = workdir / "prometheus.yml"
        scrape.write_text(
            f"global:\n  scrape_interval: {SCRAPE_INTERVAL}s\n"
            f"scrape_configs:\n  - job_name: spfpolicy\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{metrics_port}']\n"
        )
        daemon_command = [sys.executable, "-m", "spfpolicy", "serve", "--config", str(config)]
        prometheus_command = [
            "prometheus",
            f"--config.file={scrape}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ]
        with (
            process(daemon_command, workdir / "daemon.log") as daemon,
            process(prometheus_command, workdir / "prometheus.log"),
        ):
            wait_http(f"http://127.0.0.1:{metrics_port}/healthz")
            prometheus = f"http://127.0.0.1:{prometheus_port}"
            wait_http(f"{prometheus}/-/ready")
            start = time.time()
            run_traffic(policy_port, requests, arguments.minutes * 60, daemon)
            end = time.time() - SCRAPE_INTERVAL  # the last scrape with traffic still flowing
            time.sleep(SCRAPE_INTERVAL * 2)
            render(prometheus, start, end, arguments.out)
    print(f"wrote {arguments.out}; logs in {workdir}")
    return 0


def run_traffic(
    port: int, requests: list[list[bytes]], seconds: float, daemon: subprocess.Popen[bytes]
) -> None:
    """Connections come and go like smtpd processes; the rate rises, peaks and falls."""
    stop = threading.Event()
    pace = [0.2]
    threads = []
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            share = elapsed / seconds
            wanted = int(4 + 16 * (1 - abs(2 * share - 1)))  # 4 -> 20 -> 4 connections
            while len(threads) < wanted:
                thread = threading.Thread(
                    target=drive, args=(port, requests, stop, pace), daemon=True
                )
                thread.start()
                threads.append(thread)
            pace[0] = 0.05 if 0.4 < share < 0.6 else 0.2
            if abs(share - 0.7) < 0.01:
                daemon.send_signal(signal.SIGHUP)  # a reload shows on the dashboard
            if abs(share - 0.3) < 0.005:
                with socket.create_connection(("127.0.0.1", port)) as junk:
                    junk.sendall(b"this is not a policy request\n\n")
            time.sleep(1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
