"""Building blocks of the benchmark's DNS world: hosts, a zone under construction, providers.

world.py composes them into the whole world; see its docstring for the address plan.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

PROVIDER_HOSTS = 8  # outbound servers per provider

Zone = dict[str, list[Any]]  # zonedata: name -> [{TYPE: value} or "TIMEOUT"]


@dataclass(frozen=True, slots=True)
class Host:
    """A mail server: its name (also its HELO name) and its addresses."""

    name: str
    ipv4: str
    ipv6: str


class ZoneBuilder:
    """Collects zone entries; one instance builds one world."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.zone: Zone = {}
        self.providers: list[tuple[str, tuple[Host, ...]]] = []  # (include target, hosts)

    def add(self, name: str, rdtype: str, value: Any) -> None:
        """One record: `name` gets {rdtype: value} after its other entries."""
        self.zone.setdefault(name, []).append({rdtype: value})

    def host(self, host: Host, helo_record: str | None = None) -> Host:
        """A and AAAA for a host, and the SPF record of its name as a HELO identity."""
        self.add(host.name, "A", host.ipv4)
        self.add(host.name, "AAAA", host.ipv6)
        if helo_record is not None:
            self.add(host.name, "TXT", helo_record)
        return host

    def helo_record(self, share: float) -> str | None:
        """`v=spf1 a -all` for a `share` of host names: most HELO names have SPF (RFC 7208 §2.3)."""
        return "v=spf1 a -all" if self.rng.random() < share else None


def provider(builder: ZoneBuilder, number: int) -> tuple[str, tuple[Host, ...]]:
    """A big provider: outbound hosts and a tree of include records, shaped by its number."""
    domain = f"mailprovider-{number}.example"
    v6 = f"2001:db8:{0x100 + number:x}"
    hosts = tuple(
        builder.host(
            Host(f"out{k}.{domain}", f"198.51.100.{32 * number + 4 * k + 1}", f"{v6}:{k:x}::1"),
            builder.helo_record(0.7),
        )
        for k in range(PROVIDER_HOSTS)
    )
    nets = [
        f"ip4:198.51.100.{32 * number + 4 * k}/30 ip6:{v6}:{k:x}::/64" for k in range(len(hosts))
    ]
    builder.add(domain, "A", f"203.0.113.{number + 1}")
    builder.add(domain, "MX", [10, f"out1.{domain}"])
    builder.add(domain, "MX", [20, f"out2.{domain}"])
    root = f"_spf.{domain}"
    shape = number % 4
    if shape == 0:  # a root that only includes three netblock records
        parts = [f"_netblocks{j or ''}.{domain}" for j in range(3)]
        builder.add(root, "TXT", "v=spf1 " + " ".join(f"include:{p}" for p in parts) + " ~all")
        for j, part in enumerate(parts):
            builder.add(part, "TXT", "v=spf1 " + " ".join(nets[j::3]) + " ~all")
    elif shape == 1:  # addresses at the root, the rest one include further
        builder.add(root, "TXT", f"v=spf1 {' '.join(nets[:4])} include:_spfd.{domain} -all")
        builder.add(f"_spfd.{domain}", "TXT", f"v=spf1 {' '.join(nets[4:])} -all")
    elif shape == 2:  # a chain: root -> _spf-a -> _spf-b
        builder.add(root, "TXT", f"v=spf1 include:_spf-a.{domain} ~all")
        builder.add(f"_spf-a.{domain}", "TXT", f"v=spf1 {nets[0]} include:_spf-b.{domain} ~all")
        builder.add(f"_spf-b.{domain}", "TXT", f"v=spf1 {' '.join(nets[1:])} ~all")
    else:  # a, mx and addresses
        record = f"v=spf1 a:out0.{domain} mx:{domain} {' '.join(nets[3:])} ~all"
        builder.add(root, "TXT", record)
    return root, hosts


def outsider(builder: ZoneBuilder, number: int) -> Host:
    """A host no record authorises, with a dynamic-looking name that has no SPF record."""
    host = Host(
        f"h{number}.dyn.isp-{number % 4}.example",
        f"203.0.113.{128 + number}",
        f"2001:db8:ffff:{number:x}::1",
    )
    return builder.host(host)
