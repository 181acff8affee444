"""A synthetic DNS world for the benchmark: sender domains, shared mail providers, their records.

The result is zone data in the RFC 7208 suite's format (tests/support/zones.py), for the test DNS
server, plus what the traffic generator (traffic.py) needs: each domain's sending hosts and the
hosts no record authorises. The same seed gives the same world, byte for byte.

Address plan (documentation ranges only, RFC 5737 and RFC 3849):
- 198.51.100.0/24: the shared mail providers, a /27 each; IPv6 2001:db8:10N::/48 for provider N.
- 192.0.2.0/24: self-hosted mail servers (shared between domains, as on shared hosting);
  IPv6 one /64 per domain under 2001:db8:1::/48.
- 203.0.113.0/25: the domains' web servers (their own A/AAAA, what the `a` mechanism usually
  finds); IPv6 under 2001:db8:2::/48.
- 203.0.113.128/25 and 2001:db8:ffff::/48: outsiders, hosts that no record ever authorises.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from tests.support.zonebuilder import Host, Zone, ZoneBuilder, outsider, provider

DEFAULT_DOMAINS = 5000
DEFAULT_SEED = 4
PROVIDERS = 8  # shared providers: few names, most of the traffic goes through them
OUTSIDERS = 120  # unauthorised sending hosts
STEMS = ("shop", "news", "bank", "travel", "media", "school", "clinic", "games", "cloud", "market")
TOP_RANKS = 50  # the most popular domains are all of the common kinds
TAIL_SHARE = 0.2  # timing-out domains are among the least popular fifth


class DomainKind(StrEnum):
    """What a sender domain publishes, and so which SPF result its mail tends to get."""

    PROVIDER = "provider"  # include: one shared provider
    MIXED = "mixed"  # its own mx and two providers
    SELF_HOSTED = "self-hosted"  # a, mx, ip4, ip6 of its own servers
    REDIRECT = "redirect"  # redirect= to a provider or to a sister domain
    NEUTRAL = "neutral"  # ?all: no opinion
    NO_SPF = "no-spf"  # A and MX only, or a TXT record that is not SPF
    PERMERROR = "permerror"  # a broken record
    TIMEOUT = "timeout"  # its DNS, or an included provider's, never answers


# How many domains of each kind, per thousand.
KIND_SHARES = {
    DomainKind.PROVIDER: 400,
    DomainKind.MIXED: 180,
    DomainKind.SELF_HOSTED: 150,
    DomainKind.REDIRECT: 80,
    DomainKind.NEUTRAL: 30,
    DomainKind.NO_SPF: 140,
    DomainKind.PERMERROR: 15,
    DomainKind.TIMEOUT: 5,
}
COMMON_KINDS = frozenset(
    {DomainKind.PROVIDER, DomainKind.MIXED, DomainKind.SELF_HOSTED, DomainKind.REDIRECT}
)


@dataclass(frozen=True, slots=True)
class SenderDomain:
    """A domain that appears in MAIL FROM, with the hosts that really send its mail."""

    name: str
    kind: DomainKind
    senders: tuple[Host, ...]


@dataclass(frozen=True)
class World:
    """Zone data plus the domains in popularity order (most popular first) and the outsiders.

    `flood` are more sender domains, built like the others but outside the popularity order,
    for traffic in which every message comes from a domain not seen before.
    """

    zone: Zone
    domains: tuple[SenderDomain, ...]
    outsiders: tuple[Host, ...]
    flood: tuple[SenderDomain, ...] = ()

    def kind_counts(self) -> dict[str, int]:
        """How many domains of each kind."""
        return dict(Counter(domain.kind.value for domain in self.domains))


def build_world(domains: int = DEFAULT_DOMAINS, seed: int = DEFAULT_SEED, flood: int = 0) -> World:
    """The whole world for `domains` sender domains and `flood` more; deterministic in `seed`.

    The flood domains are built last, so the rest of the world is the same with or without
    them. They are of every kind but TIMEOUT (a flood over fast DNS), and their names and
    addresses continue the others' numbering (so at most 65,536 domains in all: the numbers
    are IPv6 address groups).
    """
    if domains + flood > 0x10000:
        raise ValueError(f"at most 65536 domains in all, not {domains + flood}")
    builder = ZoneBuilder(random.Random(seed))
    for number in range(PROVIDERS):
        builder.providers.append(provider(builder, number))
    built: list[SenderDomain] = []
    for index, kind in enumerate(_kinds(builder.rng, domains)):
        built.append(_domain(builder, index, kind, built))
    outsiders = tuple(outsider(builder, number) for number in range(OUTSIDERS))
    ranked = _by_popularity(builder.rng, built)
    flooding: list[SenderDomain] = []
    for offset, drawn in enumerate(_kinds(builder.rng, flood)):
        kind = DomainKind.PROVIDER if drawn is DomainKind.TIMEOUT else drawn
        flooding.append(_domain(builder, domains + offset, kind, flooding))
    return World(builder.zone, ranked, outsiders, tuple(flooding))


def _kinds(rng: random.Random, domains: int) -> list[DomainKind]:
    kinds = [kind for kind, share in KIND_SHARES.items() for _ in range(domains * share // 1000)]
    kinds += [DomainKind.PROVIDER] * (domains - len(kinds))
    rng.shuffle(kinds)
    return kinds


def _by_popularity(rng: random.Random, domains: list[SenderDomain]) -> tuple[SenderDomain, ...]:
    """Rank the domains: common kinds on top, timeouts in the tail (so they stay rare)."""
    common = [domain for domain in domains if domain.kind in COMMON_KINDS]
    timeouts = [domain for domain in domains if domain.kind is DomainKind.TIMEOUT]
    rest = [d for d in domains if d.kind not in COMMON_KINDS and d.kind is not DomainKind.TIMEOUT]
    rest += common[TOP_RANKS:]
    rng.shuffle(rest)
    head_size = int(len(domains) * (1 - TAIL_SHARE)) - TOP_RANKS
    tail = rest[head_size:] + timeouts
    rng.shuffle(tail)
    return tuple(common[:TOP_RANKS] + rest[:head_size] + tail)


def _domain(
    builder: ZoneBuilder, index: int, kind: DomainKind, built: list[SenderDomain]
) -> SenderDomain:
    """One sender domain of `kind`: its records, and the hosts that send its mail."""
    name = f"{STEMS[index % len(STEMS)]}-{index}.example"
    rng = builder.rng
    include, provider_hosts = rng.choice(builder.providers)
    builder.add(name, "A", f"203.0.113.{1 + index % 127}")
    builder.add(name, "AAAA", f"2001:db8:2:{index:x}::80")
    all_term = rng.choice(("-all", "-all", "~all"))
    senders = provider_hosts
    if kind is DomainKind.PROVIDER:
        builder.add(name, "MX", [10, f"out1.{include.removeprefix('_spf.')}"])
        builder.add(name, "TXT", f"v=spf1 include:{include} {all_term}")
    elif kind is DomainKind.MIXED:
        others = [provider for provider in builder.providers if provider[0] != include]
        second, second_hosts = rng.choice(others)
        mail = _mail_host(builder, name, index)
        builder.add(name, "TXT", f"v=spf1 mx include:{include} include:{second} -all")
        senders = (*provider_hosts, *second_hosts, mail)
    elif kind is DomainKind.SELF_HOSTED:
        senders = (_self_hosted(builder, name, index, include, all_term),)
    elif kind is DomainKind.REDIRECT:
        senders = _redirect(builder, name, include, provider_hosts, built)
    elif kind is DomainKind.NEUTRAL:
        builder.add(name, "TXT", rng.choice(("v=spf1 ?all", "v=spf1 a ?all")))
    elif kind is DomainKind.NO_SPF:
        builder.add(name, "MX", [10, f"out1.{include.removeprefix('_spf.')}"])
        if rng.random() < 0.5:
            builder.add(name, "TXT", f"site-verification={rng.getrandbits(64):016x}")
    elif kind is DomainKind.PERMERROR:
        _permerror(builder, name, index)
    else:
        _timeout(builder, name, index)
    return SenderDomain(name, kind, senders)


def _mail_host(builder: ZoneBuilder, name: str, index: int) -> Host:
    """mail.<domain>, the domain's own MX and outbound server."""
    host = Host(f"mail.{name}", f"192.0.2.{1 + index % 254}", f"2001:db8:1:{index:x}::25")
    builder.host(host, builder.helo_record(0.8))
    builder.add(name, "MX", [10, host.name])
    return host


def _self_hosted(builder: ZoneBuilder, name: str, index: int, include: str, all_term: str) -> Host:
    """A record with one mechanism that authorises the domain's server and a few that don't."""
    rng = builder.rng
    mail = _mail_host(builder, name, index)
    way = rng.choice(("mx", "a", "host", "addresses"))
    if way == "a":  # web and mail on one host: the domain's own A and AAAA are the server's
        entries = [e for e in builder.zone[name] if "A" not in e and "AAAA" not in e]
        builder.zone[name] = [*entries, {"A": mail.ipv4}, {"AAAA": mail.ipv6}]
    matching = {
        "mx": "mx",
        "a": "a",
        "host": f"a:{mail.name}",
        "addresses": f"ip4:{mail.ipv4} ip6:2001:db8:1:{index:x}::/64",
    }[way]
    decoys = [f"ip4:192.0.2.{1 + (index + 127) % 254}", f"include:{include}"]
    if way not in ("mx", "a"):
        decoys.append("a")
    terms = rng.sample(decoys, rng.randint(0, len(decoys)))
    terms.insert(rng.randint(0, len(terms)), matching)
    builder.add(name, "TXT", f"v=spf1 {' '.join(terms)} {all_term}")
    return mail


def _redirect(
    builder: ZoneBuilder,
    name: str,
    include: str,
    provider_hosts: tuple[Host, ...],
    built: list[SenderDomain],
) -> tuple[Host, ...]:
    """redirect= to a provider's record, or to a sister domain's (a group of brands)."""
    sisters = [d for d in built[-200:] if d.kind in (DomainKind.PROVIDER, DomainKind.SELF_HOSTED)]
    if sisters and builder.rng.random() < 0.5:
        sister = builder.rng.choice(sisters)
        builder.add(name, "TXT", f"v=spf1 redirect={sister.name}")
        return sister.senders
    builder.add(name, "TXT", f"v=spf1 redirect={include}")
    return provider_hosts


def _permerror(builder: ZoneBuilder, name: str, index: int) -> None:
    """A record that check_host() must reject (RFC 7208 §4.6, §4.6.4, §5.2)."""
    providers = [include for include, _ in builder.providers]
    variant = index % 5
    if variant == 0:  # not an address
        builder.add(name, "TXT", "v=spf1 ip4:192.0.2.300 -all")
    elif variant == 1:  # more than 10 DNS mechanisms once all includes are counted
        builder.add(name, "TXT", "v=spf1 " + " ".join(f"include:{p}" for p in providers) + " -all")
    elif variant == 2:  # two SPF records
        builder.add(name, "TXT", "v=spf1 mx -all")
        builder.add(name, "TXT", f"v=spf1 include:{providers[0]} -all")
    elif variant == 3:  # include of a name without SPF: permerror, not none (§5.2)
        builder.add(name, "TXT", f"v=spf1 include:nospf-{index}.example -all")
        builder.add(f"nospf-{index}.example", "A", "203.0.113.100")
    else:  # an unknown mechanism
        builder.add(name, "TXT", "v=spf1 mx ipv4:192.0.2.1 -all")


def _timeout(builder: ZoneBuilder, name: str, index: int) -> None:
    """A domain whose DNS never answers, or whose included provider's never does."""
    if index % 2:
        builder.zone[name] = ["TIMEOUT"]
        return
    dead = f"_spf.deadhoster-{index}.example"
    builder.add(name, "TXT", f"v=spf1 include:{dead} -all")
    builder.zone[dead] = ["TIMEOUT"]


def main(argv: list[str] | None = None) -> int:
    """Write a world's zone data as JSON and print what it holds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=DEFAULT_DOMAINS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, required=True, help="zone file to write (JSON)")
    arguments = parser.parse_args(argv)
    world = build_world(arguments.domains, arguments.seed)
    arguments.out.write_text(json.dumps(world.zone), encoding="utf-8")
    print(f"{len(world.zone)} names, domains by kind: {world.kind_counts()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
