"""The benchmark in one command: `make bench`, or `python -m tests.bench.run [options]`.

It builds the synthetic world, serves it from two test DNS servers on loopback (one answering at
once, one `--dns-delay` late: an upstream resolver missing its cache), primes their reply memos,
measures their capacity, then runs the scenarios round by round, every contender in every round
(the order rotating), each in a freshly started process:

- warm: K=20 connections, a warm-up pass on other messages from the same traffic, then measure;
- cold: K=50 connections opened when the clock starts, the slow DNS, a fresh (cold) contender;
- flood: K=50 connections, the fast DNS, every message from a domain never seen before (after a
  warm-up on other new domains).

It prints a table (medians over the rounds) and issue 13's ratios, and writes everything, with the
machine's description, as JSON to `--output`. See tests/bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.bench import report, upstream
from tests.bench.contenders import (
    DEFAULT_DNS_LIBRARY,
    DNS_LIBRARIES,
    Contender,
    Kind,
    missing_requirement,
)
from tests.bench.runs import run_contender
from tests.bench.scenarios import Scenario, build_scenarios, flood_domains
from tests.support.fixtures import REPO_ROOT
from tests.support.traffic import Message, generate_messages
from tests.support.world import World, build_world

DEFAULT_CONTENDERS = (Kind.SPFPOLICY, Kind.DUNNO, Kind.POLICYD_SPF)
QUICK = {  # --quick: under a minute, for checking that everything works
    "rounds": 1,
    "domains": 1000,
    "warm_seconds": 3.0,
    "warmup_requests": 3000,
    "cold_requests": 800,
    "flood_requests": 800,
    "flood_warmup_requests": 500,
    "timeout_share": 0.0,
    "scenarios": "warm,cold,flood",
}


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line; --quick changes the defaults of the options not given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _what_to_run(parser.add_argument)
    _how_much(parser.add_argument)
    arguments = parser.parse_args(argv)
    if arguments.quick:
        for key, value in QUICK.items():
            if getattr(arguments, key) == parser.get_default(key):
                setattr(arguments, key, value)
    return arguments


def _what_to_run(add: Callable[..., Any]) -> None:
    add("--scenarios", default="dns,warm,cold,flood", help="any of dns,warm,cold,flood")
    add("--contenders", default=",".join(DEFAULT_CONTENDERS), help="spfpolicy,dunno,policyd-spf")
    add(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="spfpolicy config setting, value in TOML (repeat): --set dns.cache_size=100000",
    )
    add(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:SECTION.KEY=VALUE[,...]",
        help="one more spfpolicy contender with these settings (repeat)",
    )
    add(
        "--baseline",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="one more spfpolicy contender running the spfpolicy package of the source tree"
        " at PATH, e.g. an older commit extracted there, with the same settings (repeat)",
    )
    add(
        "--policyd-spf-dns",
        choices=sorted(DNS_LIBRARIES),
        default=DEFAULT_DNS_LIBRARY,
        help="the DNS library Debian's pyspf uses for policyd-spf (default: %(default)s)",
    )
    add("--workdir", type=Path, default=Path("/tmp/spfpolicy-bench"))
    add("--output", type=Path, default=Path("/tmp/spfpolicy-bench/results.json"))
    add("--quick", action="store_true", help="a short run: " + json.dumps(QUICK))


def _how_much(add: Callable[..., Any]) -> None:
    add("--rounds", type=int, default=3)
    add("--domains", type=int, default=5000)
    add("--seed", type=int, default=4)
    add("--warm-connections", type=int, default=20)
    add("--warm-requests", type=int, default=100_000)
    add("--warm-seconds", type=float, default=6.0)
    add(
        "--warmup-requests",
        type=int,
        default=20_000,
        help="warm-up requests for contenders with caches (the others get a short one)",
    )
    add("--warmup-seconds", type=float, default=40.0, help="bound on the warm-up's length")
    add(
        "--warmup-replay",
        action="store_true",
        help="warm up on the measured messages themselves (under other instances)",
    )
    add("--cold-connections", type=int, default=50)
    add("--cold-requests", type=int, default=2000)
    add("--cold-seconds", type=float, default=60.0)
    add(
        "--timeout-share",
        type=float,
        default=0.005,
        help="share of cold-run messages from domains whose DNS times out",
    )
    add("--flood-connections", type=int, default=50)
    add("--flood-requests", type=int, default=3000)
    add("--flood-seconds", type=float, default=30.0)
    add(
        "--flood-warmup-requests",
        type=int,
        default=2000,
        help="warm-up requests of the flood scenario, from other new domains",
    )
    add("--dns-delay", type=float, default=0.02, help="seconds the slow DNS holds each reply")
    add("--drivers", type=int, default=1, help="load driver processes")
    add("--reply-timeout", type=float, default=30.0)


def contenders_of(arguments: argparse.Namespace) -> list[Contender]:
    """The contenders named on the command line, then spfpolicy variants, then baselines."""
    main_settings = dict(_setting(text) for text in arguments.set)
    found = []
    for name in arguments.contenders.split(","):
        kind = Kind(name)
        if kind is Kind.SPFPOLICY:
            found.append(Contender(name, kind, main_settings))
        elif kind is Kind.POLICYD_SPF:
            found.append(Contender(name, kind, {"dns_library": arguments.policyd_spf_dns}))
        else:
            found.append(Contender(name, kind))
    for variant in arguments.variant:
        name, _, settings = variant.partition(":")
        pairs = dict(_setting(text) for text in settings.split(",") if text)
        found.append(Contender(name, Kind.SPFPOLICY, {**main_settings, **pairs}))
    for baseline in arguments.baseline:
        name, equals, path = baseline.partition("=")
        if not (equals and name and path):
            raise SystemExit(f"bad baseline {baseline!r}: expected NAME=PATH")
        source = Path(path).expanduser().resolve()
        found.append(Contender(name, Kind.SPFPOLICY, main_settings, source=source))
    names = [contender.name for contender in found]
    if len(set(names)) < len(names):
        raise SystemExit(f"contender names must differ: {', '.join(names)}")
    return found


def _setting(text: str) -> tuple[str, Any]:
    key, equals, value = text.partition("=")
    if not equals:
        raise SystemExit(f"bad setting {text!r}: expected SECTION.KEY=VALUE")
    return key.strip(), tomllib.loads(f"v = {value}")["v"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 when it ran, 2 when a contender cannot run here, 130 on Ctrl-C."""
    arguments = parse_arguments(argv)
    contenders = contenders_of(arguments)
    for contender in contenders:
        if problem := missing_requirement(contender):
            print(f"cannot run {contender.name}: {problem}", file=sys.stderr)
            return 2
    world = build_world(arguments.domains, arguments.seed, flood_domains(arguments))
    scenarios = build_scenarios(arguments, world)
    results = _skeleton(arguments, world, contenders)
    started = time.monotonic()
    try:
        _run_all(arguments, world, scenarios, contenders, results)
    except KeyboardInterrupt:
        results["interrupted"] = True
        print("interrupted: every process stopped; writing what was measured", file=sys.stderr)
    finally:
        results["seconds"] = round(time.monotonic() - started, 1)
        results["summary"] = report.summarise_runs(results["runs"])
        results["ratios"] = report.ratios(results["summary"])
        arguments.output.parent.mkdir(parents=True, exist_ok=True)
        arguments.output.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(report.format_table(results["summary"]))
    print()
    print(report.format_ratios(results["ratios"]))
    print(f"\n{results['seconds']} s; results in {arguments.output}, logs in {arguments.workdir}")
    return 130 if results.get("interrupted") else 0


def _run_all(
    arguments: argparse.Namespace,
    world: World,
    scenarios: Sequence[Scenario],
    contenders: Sequence[Contender],
    results: dict[str, Any],
) -> None:
    """Serve the world, measure the DNS servers if asked, then every round."""
    wanted = set(arguments.scenarios.split(","))
    with upstream.serving(
        world.zone,
        arguments.dns_delay,
        fast="dns" in wanted or any(not s.slow_dns for s in scenarios),
        slow=any(s.slow_dns for s in scenarios),
        edns_forms={c.kind is not Kind.POLICYD_SPF for c in contenders},
    ) as dns:
        results["dns"] = {"delay": dns.delay, "prime_seconds": dns.prime_seconds}
        print(f"DNS servers primed in {dns.prime_seconds} s", flush=True)
        if "dns" in wanted:
            results["dns"]["capacity"] = upstream.capacity(dns, world.zone)
            _print_capacity(results["dns"]["capacity"])
        _rounds(arguments, scenarios, contenders, dns, results["runs"])


def _rounds(
    arguments: argparse.Namespace,
    scenarios: Sequence[Scenario],
    contenders: Sequence[Contender],
    dns: upstream.Upstream,
    runs: list[dict[str, Any]],
) -> None:
    """Every scenario with every contender, round after round, the contenders' order rotating."""
    for number in range(1, arguments.rounds + 1):
        shift = (number - 1) % len(contenders)
        order = [*contenders[shift:], *contenders[:shift]]
        for scenario in scenarios:
            port = dns.slow_port if scenario.slow_dns else dns.fast_port
            assert port is not None
            for contender in order:
                workdir = arguments.workdir / f"round-{number}" / scenario.name
                record = run_contender(scenario, contender, arguments, port, workdir)
                record["round"] = number
                runs.append(record)
                _print_run(record)


def _print_run(record: dict[str, Any]) -> None:
    load = record["load"]
    print(
        f"round {record['round']} {record['scenario']:4} {record['contender']:14}"
        f" {load['requests_per_second']:8.0f} req/s, to p99 {load['rate_to_p99']:8.0f}"
        f" | p50 {load['p50_ms']:7.2f} p99 {load['p99_ms']:8.2f} max {load['max_ms']:8.0f} ms"
        f" | errors {sum(load['errors'].values())} | RSS {record['rss_end_mib']:6.1f} MiB"
        f" | log warn/err {record['log_trouble']} | other cores {record['other_cpu_cores']}",
        flush=True,
    )


def _print_capacity(results: list[dict[str, Any]]) -> None:
    for result in results:
        print(
            f"DNS server {result['server']:20} {result['queries_per_second']:8.0f} queries/s"
            f" (window {result['window']}, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms)",
            flush=True,
        )


def _skeleton(
    arguments: argparse.Namespace, world: World, contenders: Sequence[Contender]
) -> dict[str, Any]:
    """The results document before any run: the command, the machine, the world, the traffic."""
    sample = generate_messages(world, 20_000, arguments.seed + 1, timeout_share=0.0)
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": sys.argv,
        "arguments": {key: str(value) for key, value in vars(arguments).items()},
        "machine": report.machine(),
        "code": report.code_version(REPO_ROOT),
        "contenders": [_described(contender) for contender in contenders],
        "world": {
            "domains": len(world.domains),
            "names": len(world.zone),
            "kinds": world.kind_counts(),
        },
        "traffic": traffic_profile(sample),
        "runs": [],
    }


def _described(contender: Contender) -> dict[str, Any]:
    """A contender in the results; a baseline with the version of its source tree."""
    described = {
        "name": contender.name,
        "kind": contender.kind.value,
        "settings": dict(contender.settings),
    }
    if contender.source is not None:
        described["source"] = str(contender.source)
        described["code"] = report.code_version(contender.source)
    return described


def traffic_profile(messages: Sequence[Message]) -> dict[str, Any]:
    """What a sample of the traffic looks like: how much repeats, how much is IPv6 or bounces."""
    requests = sum(len(message.recipients) for message in messages)
    return {
        "messages": len(messages),
        "requests": requests,
        "ipv6_share": round(sum(":" in m.client_address for m in messages) / len(messages), 3),
        "null_sender_share": round(sum(not m.sender for m in messages) / len(messages), 3),
        "distinct_sender_domains": len({m.sender.rpartition("@")[2] for m in messages}),
        "distinct_client_sender_helo": len(
            {(m.client_address, m.sender, m.helo_name) for m in messages}
        ),
    }


if __name__ == "__main__":
    sys.exit(main())
