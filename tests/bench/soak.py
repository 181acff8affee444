"""A soak run, by hand: the daemon under steady load, DNS faults, a reload a minute; is it flat?

    .venv/bin/python -m tests.bench.soak --minutes 30

It builds the benchmark world (tests/support/world.py) and serves it from two DNS servers
(soakdns.py), one answering at once and one `--dns-delay` late, where every `--servfail-every`th
sender domain answers SERVFAIL and the world's timing-out domains never answer. It starts
spfpolicy the way the benchmark does (contenders.py: its own process, the decision log on, to a
file) with its exporter on a free port, and drives `--connections` persistent connections with
the benchmark's traffic (tests/support/traffic.py, `--timeout-share` of messages from dead
domains) back to back from a process of its own (load.py), every message under a new instance.
Every `--reload-seconds` it rewrites the config (the header type alternates; every
`--slow-every`th config points at the slow server, which makes the reload build a new resolver
and cache) and sends SIGHUP. Every `--sample-seconds` it samples the daemon's RSS, threads and
open fds and a few of its metrics (soaksample.py) and prints a row; at the end it says whether
each stayed flat, and writes all of it as JSON. Exit status: 0 flat, 1 something grew, 130
interrupted.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import sys
import time
import tomllib
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.bench import report, soakdns, soaksample
from tests.bench.contenders import Contender, Kind, free_port, running, spfpolicy_config
from tests.bench.load import Driver, Limit
from tests.bench.summary import Summary, summarise
from tests.support.fixtures import REPO_ROOT
from tests.support.traffic import Message, encode_message, generate_messages
from tests.support.world import COMMON_KINDS, TOP_RANKS, World, build_world

MESSAGES = 20_000  # distinct messages; the traffic cycles through them, new instances each pass
REPLY_TIMEOUT = 60.0  # seconds: far beyond the time budget, so a late reply is a real error
DRIVER_MARGIN = 120.0  # seconds the driver may take past the run's end to collect its replies
TROUBLE_QUOTED = 10
FLAT, GROWING = 0, 1
INTERRUPTED = 130


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--minutes", type=float, default=30.0, help="how long the load runs")
    add("--connections", type=int, default=40)
    add("--domains", type=int, default=5000)
    add("--seed", type=int, default=4)
    add("--timeout-share", type=float, default=0.001, help="messages from dead domains")
    add("--servfail-every", type=int, default=40, help="every Nth sender domain: SERVFAIL")
    add("--dns-delay", type=float, default=0.03, help="seconds the slow DNS holds each reply")
    add("--slow-every", type=int, default=3, help="every Nth config uses the slow DNS")
    add("--reload-seconds", type=float, default=60.0)
    add("--sample-seconds", type=float, default=10.0)
    add("--warmup-seconds", type=float, help="samples left out (default: 20%% of the run, <=120)")
    add("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="TOML value")
    add("--workdir", type=Path, default=Path("/tmp/spfpolicy-soak"))
    add("--source", type=Path, help="run the spfpolicy of this source tree (a baseline)")
    add("--output", type=Path, help="the JSON results (default: WORKDIR/soak.json)")
    arguments = parser.parse_args(argv)
    if arguments.warmup_seconds is None:
        arguments.warmup_seconds = min(120.0, arguments.minutes * 60 * 0.2)
    arguments.output = arguments.output or arguments.workdir / "soak.json"
    return arguments


def servfail_domains(world: World, every: int) -> list[str]:
    """Every `every`th sender domain below the most popular ones, of the kinds that answer."""
    ranked = world.domains[TOP_RANKS:]
    return [d.name for d in ranked[::every] if d.kind in COMMON_KINDS] if every else []


class Traffic(Sequence[Sequence[bytes]]):
    """The messages' requests again and again, each pass under instances of its own."""

    def __init__(self, messages: Sequence[Message], passes: int = 10_000) -> None:
        self.messages = messages
        self.passes = passes

    def __len__(self) -> int:
        return len(self.messages) * self.passes

    def __getitem__(self, index: int) -> Sequence[bytes]:  # type: ignore[override]
        if not 0 <= index < len(self):
            raise IndexError(index)
        run, number = divmod(index, len(self.messages))
        # smtpd's instance format, as traffic.encode_all writes it, with the pass as its run.
        instance = f"{0x5000 + run:x}.{0x65000000 + number // 50:x}.{number * 7919 % 10**6:x}.0"
        return encode_message(self.messages[number], instance, f"{run:04X}{number:07X}")


def _drive(
    address: tuple[str, int],
    connections: int,
    traffic: Traffic,
    seconds: float,
    results: multiprocessing.Queue[Summary],
) -> None:
    """The load driver process: back to back on every connection for `seconds`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the soak's to handle
    driver = Driver(address, connections, REPLY_TIMEOUT)
    driver.connect()
    stats = driver.run(traffic, Limit(len(traffic), seconds))
    driver.close()
    results.put(summarise([stats], stats.started))


def config_settings(arguments: argparse.Namespace, number: int, ports: list[int]) -> dict[str, Any]:
    """Config `number`: the header type alternates, every slow_every-th uses the slow DNS."""
    slow = arguments.slow_every and number % arguments.slow_every == arguments.slow_every - 1
    settings: dict[str, Any] = dict(_setting(text) for text in arguments.set)
    settings["metrics.listen"] = arguments.metrics_listen  # a change would need a restart
    settings["headers.type"] = "received-spf" if number % 2 == 0 else "authentication-results"
    settings["dns.port"] = ports[1] if slow else ports[0]
    return settings


def _setting(text: str) -> tuple[str, Any]:
    key, _, value = text.partition("=")
    return key.strip(), tomllib.loads(f"v = {value}")["v"]


def reload(config: Path, port: int, settings: dict[str, Any], pid: int) -> None:
    """Replace the config file in one step, then SIGHUP the daemon."""
    temporary = config.with_suffix(".new")
    temporary.write_text(spfpolicy_config(port, settings["dns.port"], settings))
    os.replace(temporary, config)
    os.kill(pid, signal.SIGHUP)


def soak(arguments: argparse.Namespace, results: dict[str, Any]) -> None:
    """Run the whole soak, filling `results` as it goes (so an interrupt keeps what was seen)."""
    world = build_world(arguments.domains, arguments.seed)
    servfail = servfail_domains(world, arguments.servfail_every)
    messages = generate_messages(world, MESSAGES, arguments.seed + 5, arguments.timeout_share)
    results["world"] = {"domains": len(world.domains), "servfail_domains": len(servfail)}
    arguments.metrics_listen = f"127.0.0.1:{free_port()}"
    seconds = arguments.minutes * 60
    context = multiprocessing.get_context("fork")
    with soakdns.serving(world.zone, servfail, (0.0, arguments.dns_delay)) as ports:
        contender = Contender(
            "spfpolicy",
            Kind.SPFPOLICY,
            config_settings(arguments, 0, ports),
            source=arguments.source,
        )
        with running(contender, arguments.workdir, ports[0]) as daemon:
            summaries: multiprocessing.Queue[Summary] = context.Queue()
            driver = context.Process(
                target=_drive,
                args=(daemon.address, arguments.connections, Traffic(messages), seconds, summaries),
                name="soak-driver",
            )
            driver.start()
            try:
                _watch(arguments, daemon.pid, daemon.address[1], ports, results)
                results["load"] = asdict(summaries.get(timeout=REPLY_TIMEOUT + DRIVER_MARGIN))
            finally:
                driver.join(5.0)
                if driver.is_alive():
                    driver.terminate()
            # After the load, apart: the verdicts compare the daemon under load only.
            url = f"http://{arguments.metrics_listen}/metrics"
            after = soaksample.take(daemon.pid, url, time.monotonic() - results["t0"])
            results["after_load"] = asdict(after)
            trouble = daemon.trouble()
    results["log"] = {
        "size_mib": soaksample.log_size_mib(daemon.log_path),
        "trouble": len(trouble),
        "trouble_first": trouble[:TROUBLE_QUOTED],
    }


def _watch(
    arguments: argparse.Namespace,
    pid: int,
    port: int,
    ports: list[int],
    results: dict[str, Any],
) -> None:
    """Sample and reload on schedule until the run's time is up."""
    url = f"http://{arguments.metrics_listen}/metrics"
    config = arguments.workdir / "spfpolicy.toml"
    start = results["t0"] = time.monotonic()
    end = start + arguments.minutes * 60
    next_sample, next_reload, number = start, start + arguments.reload_seconds, 0
    previous: soaksample.Sample | None = None
    print(soaksample.table_header(), flush=True)
    while (now := time.monotonic()) < end:
        if now >= next_reload:
            number += 1
            reload(config, port, config_settings(arguments, number, ports), pid)
            results["reloads"] += 1
            next_reload += arguments.reload_seconds
        if now >= next_sample:
            sample = soaksample.take(pid, url, now - start)
            results["samples"].append(asdict(sample))
            print(soaksample.table_row(sample, previous), flush=True)
            previous = sample
            next_sample += arguments.sample_seconds
        time.sleep(max(0.0, min(next_sample, next_reload, end) - time.monotonic()))


def conclude(arguments: argparse.Namespace, results: dict[str, Any]) -> int:
    """Judge the samples, print the verdicts and the load, write the JSON; the exit status."""
    samples = [soaksample.Sample(**sample) for sample in results["samples"]]
    results["verdicts"] = soaksample.verdicts(samples, arguments.warmup_seconds)
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print()
    for key, verdict in results["verdicts"].items():
        if verdict["flat"] is None:
            print(f"{key:8} {verdict['why']}")
            continue
        print(
            f"{key:8} first third {verdict['first_third_mean']:8.1f}"
            f"  last third {verdict['last_third_mean']:8.1f}"
            f"  growth {verdict['growth']:+7.1f} (allowed {verdict['allowed']:.1f})"
            f"  {'flat' if verdict['flat'] else 'GROWING'}"
        )
    load = results.get("load")
    if load:
        print(
            f"load: {load['replies']} replies, {load['requests_per_second']:.0f} req/s,"
            f" p50 {load['p50_ms']:.1f} ms, p99 {load['p99_ms']:.1f} ms,"
            f" max {load['max_ms']:.0f} ms, errors {load['errors']}"
        )
    metrics = results.get("after_load", {}).get("metrics") or (
        samples[-1].metrics if samples else {}
    )
    print(
        f"reloads: {results['reloads']} sent, {metrics.get('reloads_ok', 0):.0f} succeeded,"
        f" {metrics.get('reloads_failed', 0):.0f} failed;"
        f" log: {results.get('log', {}).get('size_mib')} MiB,"
        f" {results.get('log', {}).get('trouble')} warning/error lines"
    )
    print(f"results in {arguments.output}, the daemon's log in {arguments.workdir}")
    if results.get("interrupted"):
        return INTERRUPTED
    grown = [v for v in results["verdicts"].values() if v["flat"] is False]
    return GROWING if grown else FLAT


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak; see the module docstring for the exit status."""
    arguments = parse_arguments(argv)
    arguments.workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "arguments": {key: str(value) for key, value in vars(arguments).items()},
        "machine": report.machine(),
        "code": report.code_version(REPO_ROOT),
        "reloads": 0,
        "samples": [],
    }
    try:
        soak(arguments, results)
    except KeyboardInterrupt:
        results["interrupted"] = True
        print("interrupted: every process stopped; judging what was sampled", file=sys.stderr)
    return conclude(arguments, results)


if __name__ == "__main__":
    sys.exit(main())
