"""How much memory full caches take: DNS answers, SPF results and include: results, in one process.

Run by hand: .venv/bin/python tests/bench/cache_memory.py [--entries N]
It imports the daemon's own modules, fills the caches through their public methods with
answers shaped like real SPF traffic, and prints the process's RSS before and after.
"""

from __future__ import annotations

import argparse
import gc
import random
from pathlib import Path

from spfpolicy import cli
from spfpolicy.config.settings import Config
from spfpolicy.evaluation.caches import ExpiringCache, ResultCache
from spfpolicy.evaluation.evaluator import IncludeKey, IncludeResult, include_key
from spfpolicy.model import Identity, SpfOutcome, SpfResult
from spfpolicy.resolver.answers import DnsAnswer, DnsRecord
from spfpolicy.resolver.cache import CacheLimits, CachingResolver

FAR = float("inf")


def rss_mib() -> float:
    """This process's resident set size, from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class SyntheticUpstream:
    """Answers every question at once with a realistic record set for its type."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def query(self, name: str, rdtype: str, deadline: float) -> DnsAnswer:
        pick = self.random.random()
        if pick < 0.2:
            return DnsAnswer((), 900.0, "NXDOMAIN")
        if rdtype == "TXT":
            ranges = " ".join(f"ip4:198.51.{self.random.randrange(256)}.0/24" for _ in range(4))
            spf = f"v=spf1 {ranges} include:_spf.provider{self.random.randrange(20)}.example ~all"
            verification = f"site-verification={self.random.getrandbits(128):032x}"
            values = [(spf.encode(),), (verification.encode(),)]
            return DnsAnswer(tuple(DnsRecord(name, "TXT", value) for value in values), 3600.0)
        if rdtype == "MX":
            return DnsAnswer((DnsRecord(name, "MX", (10, f"mx1.{name}")),), 3600.0)
        address = f"192.0.2.{self.random.randrange(256)}"
        return DnsAnswer((DnsRecord(name, "A", address),), 3600.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    arguments = parser.parse_args()
    count = arguments.entries
    # The daemon's own objects first, so the baseline is what `spfpolicy serve` holds at start.
    cli.build_service(Config())
    gc.collect()
    baseline = rss_mib()
    cache = CachingResolver(SyntheticUpstream(7), CacheLimits(size=count))
    types = ("TXT", "A", "MX", "AAAA")
    for index in range(count):
        cache.query(f"host{index}.domain{index % 5000}.example", types[index % 4], FAR)
    gc.collect()
    with_dns = rss_mib()
    result_count = Config().spf.result_cache_size  # the default size
    results = ResultCache(result_count)
    for index in range(result_count):
        outcome = SpfOutcome(
            Identity.MAILFROM,
            SpfResult.PASS,
            f"domain{index % 5000}.example",
            f"user{index}@domain{index % 5000}.example",
            mechanism="ip4:198.51.100.0/24",
        )
        key = (
            Identity.MAILFROM,
            f"198.51.{index // 256 % 256}.{index % 256}",
            outcome.sender,
            "mx.example",
        )
        results.put(key, outcome, FAR)
    gc.collect()
    with_results = rss_mib()
    # The include: cache has as many entries: client addresses times the providers' records
    # (50 of them, long ones), fetched afresh by each evaluation as the daemon does.
    include_count = result_count // 2  # as cli.build_service sizes it
    includes: ExpiringCache[IncludeKey, IncludeResult] = ExpiringCache(include_count)
    for index in range(include_count):
        provider = index % 50
        record = " ".join(f"ip4:198.51.{(provider + n) % 256}.0/24" for n in range(8)) + " ~all"
        client = f"198.51.{index // 256 % 256}.{index % 256}"
        key = include_key(client, f"_spf{provider}.example", record)
        includes.put(key, IncludeResult(("pass", 250, ""), 2, 0, FAR), FAR)
    gc.collect()
    with_includes = rss_mib()
    print(
        f"entries: {len(cache)} DNS answers, {len(results)} SPF results, {len(includes)} includes"
    )
    dns_growth, result_growth = with_dns - baseline, with_results - with_dns
    print(f"RSS at start (daemon objects built): {baseline:.1f} MiB")
    print(f"RSS with a full DNS cache:           {with_dns:.1f} MiB (+{dns_growth:.1f})")
    print(f"RSS with a full result cache too:    {with_results:.1f} MiB (+{result_growth:.1f})")
    include_growth = with_includes - with_results
    print(f"RSS with a full include cache too:   {with_includes:.1f} MiB (+{include_growth:.1f})")


if __name__ == "__main__":
    main()
