"""DNS answers as SPF needs them: records, answers, the closed set of errors, the Resolver seam.

The evaluator asks one question at a time (name, type) with a deadline and gets back the answer
section's records, CNAMEs included, so that pyspf follows CNAME chains itself and detects loops.
NXDOMAIN and NODATA are empty answers, not errors; only timeouts and server failures raise.
With serve-stale on, such a failure may be answered instead by an expired answer, marked stale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from spfpolicy.model import SpfPolicyError

# What a record's value is, in the shapes pyspf works with:
# A/AAAA/PTR/CNAME -> text, MX -> (preference, exchange), TXT -> its character-strings.
RecordValue = str | tuple[int, str] | tuple[bytes, ...]
# One question as the cache keys it: the owner name (lower case, no final dot) and the type.
AnswerKey = tuple[str, str]


class DnsFailure(StrEnum):
    """Why a DNS question got no usable answer (the closed set of DNS errors)."""

    TIMEOUT = "timeout"  # no reply in time, or the request's time budget ran out
    SERVFAIL = "servfail"  # the server answered SERVFAIL, REFUSED or another error code
    ERROR = "error"  # the reply could not be used (malformed, wrong question)


class DnsError(SpfPolicyError):
    """A DNS question failed; SPF turns this into temperror (RFC 7208 §5).

    cacheable is False when the failure says nothing about the name: the asking request had
    simply used up its own time budget.
    """

    def __init__(self, failure: DnsFailure, message: str, *, cacheable: bool = True) -> None:
        super().__init__(message)
        self.failure = failure
        self.cacheable = cacheable


@dataclass(frozen=True, slots=True)
class DnsRecord:
    """One resource record of an answer section."""

    name: str  # owner name, lower case, without the trailing dot
    rdtype: str  # "A", "AAAA", "MX", "PTR", "TXT", "CNAME"
    value: RecordValue


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """The answer to one question: records (empty for NXDOMAIN/NODATA) and their lifetime."""

    records: tuple[DnsRecord, ...]
    ttl: float  # seconds the answer may be reused: record TTL, or SOA minimum when negative
    rcode: str = "NOERROR"  # "NOERROR" or "NXDOMAIN"
    expires: float = 0.0  # clock time after which it must not be reused (0: now)
    from_cache: bool = False
    # Expired, and served because asking upstream again failed ([dns] serve_stale, RFC 8767);
    # expires stays the answer's own, in the past.
    stale: bool = False


class Resolver(Protocol):
    """Answers one DNS question before a deadline (a time.monotonic() value)."""

    def query(self, name: str, rdtype: str, deadline: float) -> DnsAnswer:
        """Resolve name/rdtype; raise DnsError on timeout or server failure."""


class AnswerCache(Protocol):
    """What a cache holds right now, asked without waiting (for the server's I/O thread)."""

    def cached(self, name: str, rdtype: str) -> DnsAnswer | None:
        """The cached, unexpired answer to name/rdtype; None when absent or a failure."""

    def stale(self, name: str, rdtype: str) -> DnsAnswer | None:
        """The expired answer to name/rdtype kept for serve-stale, never one in force: what the
        record tree looked like, so a prefetch asks for all of it at once; None when off."""

    def prefetch(
        self, keys: Iterable[AnswerKey], deadline: float, ready: Callable[[], None]
    ) -> bool:
        """Ask for these without waiting; True when ready() will be called once all have
        landed, False when there is nothing to wait for (see CachingResolver.prefetch)."""


# What a question asked ahead came to: an answer, a failure, or None when it must be asked again
# the blocking way (a truncated reply, which only StubResolver.query retries over TCP).
DnsOutcome = DnsAnswer | DnsError | None


class Multiplexer(Protocol):
    """Asks questions without blocking the caller (spfpolicy.resolver.multiplex)."""

    def ask(
        self, name: str, rdtype: str, deadline: float, done: Callable[[DnsOutcome], None]
    ) -> None:
        """Ask name/rdtype before deadline; done(outcome) is called once, from any thread."""
