"""The DNS lint asks, through the project's resolver: TXT, A, AAAA and MX, each question once.

A receiver asks each question under its own time budget; lint gives each one `timeout`
seconds. NXDOMAIN and NODATA are answers (empty ones); a timeout or a server failure is a
DnsError, remembered like an answer so that a tree that names a dead server twice waits once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from spfpolicy.resolver.answers import DnsAnswer, DnsError, Resolver

NXDOMAIN = "NXDOMAIN"


@dataclass(frozen=True, slots=True)
class TxtAnswer:
    """A name's TXT records, each as its character-strings."""

    name: str
    records: tuple[tuple[bytes, ...], ...]
    nxdomain: bool  # the name does not exist (else: it exists, with or without TXT)

    @property
    def why_empty(self) -> str:
        """Why no record came back, for a message: NXDOMAIN or no TXT records."""
        return "the name does not exist (NXDOMAIN)" if self.nxdomain else "it has no TXT records"


class Lookups:
    """The questions of one lint run, asked once each (DESIGN.md §5: the resolver protocol)."""

    def __init__(
        self,
        resolver: Resolver,
        *,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.resolver = resolver
        self.timeout = timeout
        self.clock = clock
        self._asked: dict[tuple[str, str], DnsAnswer | DnsError] = {}

    def _answer(self, name: str, rdtype: str) -> DnsAnswer:
        key = (normal_name(name), rdtype)
        known = self._asked.get(key)
        if known is None:
            try:
                known = self.resolver.query(key[0], rdtype, self.clock() + self.timeout)
            except DnsError as error:
                known = error
            self._asked[key] = known
        if isinstance(known, DnsError):
            raise known
        return known

    def txt(self, name: str) -> TxtAnswer:
        """name's TXT records; raises DnsError on a timeout or server failure."""
        answer = self._answer(name, "TXT")
        records = tuple(
            tuple(part for part in record.value if isinstance(part, bytes))
            for record in answer.records
            if record.rdtype == "TXT" and isinstance(record.value, tuple)
        )
        return TxtAnswer(normal_name(name), records, answer.rcode == NXDOMAIN and not records)

    def count(self, name: str, rdtype: str) -> int:
        """How many records of rdtype name has (CNAMEs followed, not counted); raises DnsError."""
        return sum(1 for record in self._answer(name, rdtype).records if record.rdtype == rdtype)

    @property
    def questions(self) -> int:
        """How many different questions were asked."""
        return len(self._asked)


def normal_name(name: str) -> str:
    """A name as DNS compares it: lower case, without the final dot."""
    return name.rstrip(".").lower()
