"""The shared vocabulary: results, identities, requests, outcomes and decisions.

Every other module speaks in these types; this one imports nothing of ours.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class SpfPolicyError(Exception):
    """Base of the errors spfpolicy raises on purpose (bad config, bad request, DNS trouble)."""


class SpfResult(StrEnum):
    """The results of check_host() (RFC 7208 §2.6)."""

    PASS = "pass"  # noqa: S105 (not a password) -- the client is authorised to use the identity
    FAIL = "fail"  # the client is explicitly not authorised
    SOFTFAIL = "softfail"  # probably not authorised; the domain does not want a reject
    NEUTRAL = "neutral"  # the domain makes no assertion about the client
    NONE = "none"  # no SPF record, or no valid domain to check
    TEMPERROR = "temperror"  # a transient (DNS) error; retrying may succeed
    PERMERROR = "permerror"  # the record is broken; only its owner can fix it


class Identity(StrEnum):
    """The identities an SMTP receiver checks (RFC 7208 §2.3, §2.4)."""

    HELO = "helo"
    MAILFROM = "mailfrom"


class Verdict(StrEnum):
    """What the administrator asks for when an identity has a given result."""

    ACCEPT = "accept"  # let it through, with the trace header if configured
    REJECT = "reject"  # 5xx
    DEFER = "defer"  # DEFER_IF_PERMIT 4xx
    WARN = "warn"  # accept with the header, log what would have been done
    HOLD = "hold"  # HOLD: accept into Postfix's hold queue, for a person to release or delete


class Disposition(StrEnum):
    """How one request ended, as counted in logs and metrics."""

    ACCEPT = "accept"
    REJECT = "reject"
    DEFER = "defer"
    WARN = "warn"
    SKIP = "skip"
    HOLD = "hold"


class ListenKind(StrEnum):
    """The socket families a listen address can name, in Postfix's own notation."""

    INET = "inet"
    UNIX = "unix"


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """Where the server listens: Postfix-style "inet:host:port" or "unix:/path"."""

    kind: ListenKind
    host: str = ""  # inet only; IPv6 without brackets
    port: int = 0  # inet only; 0 asks the kernel for a free port (tests)
    path: str = ""  # unix only

    @classmethod
    def parse(cls, spec: str) -> ListenAddress:
        """Parse "inet:127.0.0.1:10035", "inet:[::1]:10035" or "unix:/path"; ValueError if bad."""
        kind, sep, rest = spec.partition(":")
        if not sep or kind not in ("inet", "unix"):
            raise ValueError(f'{spec!r} must start with "inet:" or "unix:"')
        if kind == "unix":
            if not rest.startswith("/"):
                raise ValueError(f"{spec!r}: a unix socket path must be absolute")
            return cls(ListenKind.UNIX, path=rest)
        host, sep, port_text = rest.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            raise ValueError(f"{spec!r}: write an IPv6 address in brackets, e.g. inet:[::1]:10035")
        if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
            raise ValueError(f"{spec!r}: expected inet:HOST:PORT with a port from 0 to 65535")
        return cls(ListenKind.INET, host=host, port=int(port_text))

    def __str__(self) -> str:
        if self.kind is ListenKind.UNIX:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"inet:{host}:{self.port}"


# The null reverse-path as SMTP writes it (RFC 5321 §4.1.1.2). A client that copies it from
# MAIL FROM means the null sender, whose identity is postmaster@HELO (RFC 7208 §2.4), not a
# domain named "<>".
NULL_REVERSE_PATH = "<>"

# The protocol_state values Postfix sends (SMTPD_POLICY_README).
PROTOCOL_STATES = frozenset(
    {"CONNECT", "EHLO", "HELO", "MAIL", "RCPT", "DATA", "END-OF-MESSAGE", "VRFY", "ETRN"}
)


@dataclass(frozen=True, slots=True)
class PolicyRequest:
    """One policy delegation request, attributes verbatim as Postfix names them."""

    request: str = ""
    protocol_state: str = ""
    protocol_name: str = ""
    client_address: str = ""
    client_name: str = ""
    reverse_client_name: str = ""
    helo_name: str = ""
    sender: str = ""
    recipient: str = ""
    instance: str = ""
    queue_id: str = ""
    sasl_method: str = ""
    sasl_username: str = ""
    sasl_sender: str = ""
    policy_context: str = ""
    server_address: str = ""
    server_port: str = ""
    client_port: str = ""
    stress: str = ""

    @classmethod
    def from_attributes(cls, attributes: Mapping[str, str]) -> PolicyRequest:
        """Build a request from name=value pairs, ignoring names we do not use.

        A sender of "<>" is the null sender, which Postfix itself sends as "sender=".
        """
        values = {name: attributes[name] for name in _ATTRIBUTES if name in attributes}
        if values.get("sender") == NULL_REVERSE_PATH:
            values["sender"] = ""
        return cls(**values)

    def replace(self, **changes: str) -> PolicyRequest:
        """Return a copy with some attributes changed."""
        return dataclasses.replace(self, **changes)


# The attributes PolicyRequest reads (postconf(5), SMTPD_POLICY_README): its own fields.
_ATTRIBUTES = tuple(field.name for field in dataclasses.fields(PolicyRequest))


@dataclass(frozen=True, slots=True)
class SpfOutcome:
    """The result of check_host() for one identity, with what explains it."""

    identity: Identity
    result: SpfResult
    domain: str  # the <domain> check_host() started from ("" when there was none)
    sender: str  # the identity as checked: "user@domain" or "postmaster@helo"
    explanation: str = ""  # the domain's exp= text for fail, else pyspf's description
    mechanism: str = ""  # the term that matched, when one did
    problem: str = ""  # why the result is an error, for temperror and permerror
    publishes_no_mail: bool = False  # the domain's record is exactly "v=spf1 -all"
    stale_dns: bool = False  # an answer used was expired, served as upstream failed (RFC 8767)


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one request and everything needed to log and count it."""

    disposition: Disposition
    answer: str  # the access(5) action when no header is prepended: DUNNO, a reject, a class
    outcomes: tuple[SpfOutcome, ...] = ()
    skip_reason: str = ""  # why no SPF check ran, when disposition is SKIP
    would_have: Verdict | None = None  # for WARN: what enforcement would have done
    reused: bool = False  # answered from the per-message memo
    dns_lookups: int = 0  # DNS answers the evaluations used
    cache_hits: int = 0  # of which from the DNS cache, plus results from the result cache
    internal_error: bool = False  # deciding raised: the answer is [policy] on_internal_error
    header: str = ""  # the trace header to prepend instead of answer ("Received-SPF: ...")

    @property
    def action(self) -> str:
        """The access(5) action text Postfix receives after "action="."""
        return f"PREPEND {self.header}" if self.header else self.answer

    @property
    def stale_dns(self) -> bool:
        """Whether an outcome behind it used a stale DNS answer ([dns] serve_stale)."""
        return any(outcome.stale_dns for outcome in self.outcomes)


class Observer(Protocol):
    """What the daemon reports as it works; metrics.py implements it."""

    def request_received(self, protocol_state: str) -> None:
        """A well-formed request arrived."""

    def decision_made(self, decision: Decision, duration: float) -> None:
        """A request was answered after duration seconds."""

    def protocol_error(self, kind: str) -> None:
        """A connection was closed because of a malformed request."""

    def connection_opened(self) -> None:
        """A client connected."""

    def connection_closed(self) -> None:
        """A client connection ended."""

    def connection_refused(self) -> None:
        """A connection was closed at once because max_connections were open."""

    def budget_exceeded(self) -> None:
        """A request used up its whole time budget."""

    def config_reloaded(self, success: bool) -> None:
        """A configuration reload finished; success is False when the file was refused."""

    def dns_query(
        self, rdtype: str, outcome: str, duration: float, *, prefetch: bool = False
    ) -> None:
        """One upstream DNS query finished with outcome (answer, nxdomain, timeout, ...);
        prefetch when it was asked ahead of the evaluation, without a waiting thread."""

    def dns_cache_lookup(self, hit: bool) -> None:
        """The DNS cache was asked; hit is False when an upstream query was needed."""

    def dns_stale_answer(self, rdtype: str) -> None:
        """An expired answer was served because asking upstream again failed (serve_stale)."""

    def result_cache_lookup(self, hit: bool) -> None:
        """The SPF result cache was asked for one identity's result."""

    def include_cache_lookup(self, hit: bool) -> None:
        """The include: result cache was asked; hit is True when a kept result was reused."""

    def address_map_lookup(self, outcome: str) -> None:
        """A domain's address map was asked: answered, pyspf (this client needs pyspf),
        new (the domain's first client: no map yet) or unmapped (no map answers its tree)."""


class NullObserver:
    """An Observer that ignores everything: the default when metrics are off."""

    def request_received(self, protocol_state: str) -> None:
        """Ignore a request."""

    def decision_made(self, decision: Decision, duration: float) -> None:
        """Ignore a decision."""

    def protocol_error(self, kind: str) -> None:
        """Ignore a protocol error."""

    def connection_opened(self) -> None:
        """Ignore a connection."""

    def connection_closed(self) -> None:
        """Ignore a closed connection."""

    def connection_refused(self) -> None:
        """Ignore a refused connection."""

    def budget_exceeded(self) -> None:
        """Ignore a request over budget."""

    def config_reloaded(self, success: bool) -> None:
        """Ignore a reload."""

    def dns_query(
        self, rdtype: str, outcome: str, duration: float, *, prefetch: bool = False
    ) -> None:
        """Ignore a DNS query."""

    def dns_cache_lookup(self, hit: bool) -> None:
        """Ignore a DNS cache lookup."""

    def dns_stale_answer(self, rdtype: str) -> None:
        """Ignore a stale answer served."""

    def result_cache_lookup(self, hit: bool) -> None:
        """Ignore a result cache lookup."""

    def include_cache_lookup(self, hit: bool) -> None:
        """Ignore an include: result cache lookup."""

    def address_map_lookup(self, outcome: str) -> None:
        """Ignore an address map lookup."""
