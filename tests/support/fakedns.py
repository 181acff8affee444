"""A data-only in-memory resolver for unit tests: zones read like zone files."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence

from spfpolicy.resolver.answers import DnsAnswer, DnsError, DnsFailure, DnsRecord, RecordValue


def _value(rdtype: str, text: str) -> RecordValue:
    if rdtype == "MX":
        preference, exchange = text.split()
        return (int(preference), exchange.rstrip("."))
    if rdtype == "TXT":
        return (
            tuple(part.encode() for part in shlex.split(text)) if '"' in text else (text.encode(),)
        )
    return text.rstrip(".")


class FakeResolver:
    """Answers from a mapping name -> ["TYPE data", ...]; names in `failing` raise DnsError.

    Example: FakeResolver({"sender.example": ["TXT v=spf1 ip4:192.0.2.0/24 -all"]}).
    A name absent from the zone is NXDOMAIN; a name without the asked type is NODATA.
    """

    def __init__(
        self,
        zone: Mapping[str, Sequence[str]],
        failing: Mapping[str, DnsFailure] | None = None,
        ttl: float = 300.0,
    ) -> None:
        self.zone = {name.lower(): list(records) for name, records in zone.items()}
        self.failing = {name.lower(): failure for name, failure in (failing or {}).items()}
        self.ttl = ttl
        self.asked: list[tuple[str, str]] = []

    def query(self, name: str, rdtype: str, deadline: float) -> DnsAnswer:
        """Resolve from the zone; see spfpolicy.resolver.Resolver."""
        name = name.lower().rstrip(".")
        self.asked.append((name, rdtype))
        if name in self.failing:
            raise DnsError(self.failing[name], f"fake {self.failing[name].value} for {name}")
        if name not in self.zone:
            return DnsAnswer((), self.ttl, "NXDOMAIN")
        records = []
        for entry in self.zone[name]:
            entry_type, _, data = entry.partition(" ")
            if entry_type in (rdtype, "CNAME"):
                records.append(DnsRecord(name, entry_type, _value(entry_type, data)))
        return DnsAnswer(tuple(records), self.ttl)
