"""A data-only in-memory resolver for unit tests: zones read like zone files; and a
multiplexer that answers questions asked ahead from it, a round at a time."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence

from spfpolicy.resolver.answers import (
    AnswerKey,
    DnsAnswer,
    DnsError,
    DnsFailure,
    DnsOutcome,
    DnsRecord,
    RecordValue,
)


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


class RoundsMultiplexer:
    """Holds the questions asked ahead until deliver(), which answers them all from upstream:
    one call is one round trip of the real multiplexer."""

    def __init__(self, upstream: FakeResolver, *, truncate: bool = False) -> None:
        self.upstream = upstream
        self.truncate = truncate  # give every question back unanswered, as for a TC reply
        self.queue: list[tuple[str, str, float, Callable[[DnsOutcome], None]]] = []
        self.rounds: list[list[AnswerKey]] = []

    def ask(
        self, name: str, rdtype: str, deadline: float, done: Callable[[DnsOutcome], None]
    ) -> None:
        self.queue.append((name, rdtype, deadline, done))

    def deliver(self) -> None:
        batch, self.queue = self.queue, []
        self.rounds.append([(name, rdtype) for name, rdtype, _, _ in batch])
        for name, rdtype, deadline, done in batch:
            outcome: DnsOutcome
            try:
                outcome = None if self.truncate else self.upstream.query(name, rdtype, deadline)
            except DnsError as error:
                outcome = error
            done(outcome)
