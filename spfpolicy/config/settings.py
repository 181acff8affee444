"""The configuration: TOML parsed once into frozen dataclasses, validated, immutable.

Defaults live in the dataclass fields. Unknown keys and bad values raise ConfigError naming the
file, the key and the problem, so a typo stops start-up (or a reload) instead of being ignored.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from spfpolicy.config.schema import ConfigError, build, schema_keys
from spfpolicy.model import ListenAddress, SpfResult, Verdict

__all__ = ["Config", "ConfigError", "config_keys", "load_config", "parse_config"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Postfix's own smtpd_policy_service_timeout default: an answer after it is never read.
POSTFIX_POLICY_TIMEOUT = 100.0
MAX_SERVE_STALE = 604_800  # [dns] serve_stale: 7 days, in seconds


class HeaderType(StrEnum):
    """Which trace header accepted mail gets."""

    RECEIVED_SPF = "received-spf"  # RFC 7208 §9.1
    AUTHENTICATION_RESULTS = "authentication-results"  # RFC 8601
    NONE = "none"


class InternalErrorAction(StrEnum):
    """What a request answers when deciding it raised an unexpected exception (a bug)."""

    DEFER = "defer"  # DEFER_IF_PERMIT 4.3.0: the mail waits, Postfix's client retries
    ACCEPT = "accept"  # DUNNO: the mail flows on unchecked


class LogFormat(StrEnum):
    """How log lines are written."""

    TEXT = "text"  # "LEVEL logger: message key=value ..."
    JSON = "json"  # one JSON object per line, the decision's fields as keys


class LogLevel(StrEnum):
    """How much the daemon logs; "info" gives one line per decision."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


def _range(low: float | None = None, high: float | None = None) -> dict[str, Any]:
    """Field metadata: the inclusive range a number must lie in."""
    return {"range": (low, high)}


@dataclass(frozen=True)
class ServerConfig:
    """[server]: where and how the policy socket listens."""

    listen: tuple[ListenAddress, ...] = (ListenAddress.parse("inet:127.0.0.1:10035"),)
    max_connections: int = field(default=4096, metadata=_range(1, 100_000))
    idle_timeout: float = field(default=330.0, metadata=_range(1, 86_400))  # Postfix max_idle=300
    unix_mode: str = field(default="0666", metadata={"octal": True})  # mode of unix sockets

    @property
    def unix_mode_bits(self) -> int:
        """The unix socket mode as permission bits."""
        return int(self.unix_mode, 8)


@dataclass(frozen=True)
class DnsConfig:
    """[dns]: the upstream resolver."""

    nameservers: tuple[str, ...] = field(default=(), metadata={"address": True})  # (): resolv.conf
    port: int = field(default=53, metadata=_range(1, 65_535))
    query_timeout: float = field(default=5.0, metadata=_range(0.05, 60))
    cache_size: int = field(default=100_000, metadata=_range(0, 10_000_000))  # 0: no cache
    min_ttl: float = field(default=0.0, metadata=_range(0, 86_400))  # 0: the zone's TTL holds
    max_ttl: float = field(default=86_400.0, metadata=_range(0, 604_800))
    # RFC 2308 §5: negative answers live for the SOA minimum; this caps a zone's choice.
    negative_ttl_max: float = field(default=3_600.0, metadata=_range(0, 86_400))
    # RFC 8767 §5: seconds past its expiry an answer may stand in when upstream fails; 0: off.
    # At most 7 days: the RFC suggests 1 to 3; beyond a week an outage is not what it covers.
    serve_stale: float = field(default=0.0, metadata=_range(0, MAX_SERVE_STALE))


@dataclass(frozen=True)
class SpfConfig:
    """[spf]: how check_host() runs."""

    # RFC 7208 §4.6.4: at least 20 seconds for one whole evaluation.
    time_budget: float = field(default=20.0, metadata=_range(0.1, POSTFIX_POLICY_TIMEOUT - 1))
    check_helo: bool = True
    # RFC 7208 §4.6.4: "SHOULD" be 2; some administrators need more for real-world records.
    void_lookup_limit: int = field(default=2, metadata=_range(1, 20))
    # An a/mx host with A but no AAAA records is no void lookup for an IPv6 client.
    ipv6_void_fairness: bool = False
    result_cache: bool = True  # reuse a result while it cannot differ (see resultcache.py)
    # Results repeat less than DNS answers; 50000 keeps a full cache near 30 MiB.
    result_cache_size: int = field(default=50_000, metadata=_range(1, 10_000_000))


@dataclass(frozen=True)
class ActionTable:
    """[actions.helo] / [actions.mailfrom]: the verdict for each check_host() result."""

    pass_: Verdict = Verdict.ACCEPT
    fail: Verdict = Verdict.REJECT
    softfail: Verdict = Verdict.ACCEPT
    neutral: Verdict = Verdict.ACCEPT
    none: Verdict = Verdict.ACCEPT
    temperror: Verdict = Verdict.DEFER
    permerror: Verdict = Verdict.ACCEPT

    def verdict(self, result: SpfResult) -> Verdict:
        """The verdict configured for one result."""
        value: Verdict = getattr(self, "pass_" if result is SpfResult.PASS else result.value)
        return value


# A Postfix restriction class name (smtpd_restriction_classes), "" for none.
_CLASS = {"restriction": True}


@dataclass(frozen=True)
class ActionsConfig:
    """[actions]: one table per identity, and the restriction class each result answers."""

    helo: ActionTable = ActionTable()
    mailfrom: ActionTable = ActionTable()
    # Answered instead of the trace header when the deciding result is accepted.
    pass_restriction: str = field(default="", metadata=_CLASS)
    fail_restriction: str = field(default="", metadata=_CLASS)
    softfail_restriction: str = field(default="", metadata=_CLASS)
    neutral_restriction: str = field(default="", metadata=_CLASS)
    none_restriction: str = field(default="", metadata=_CLASS)
    temperror_restriction: str = field(default="", metadata=_CLASS)
    permerror_restriction: str = field(default="", metadata=_CLASS)

    def restriction(self, result: SpfResult) -> str:
        """The restriction class configured for one result ("" for none)."""
        value: str = getattr(self, f"{result.value}_restriction")
        return value


@dataclass(frozen=True)
class HeadersConfig:
    """[headers]: the trace header prepended to accepted mail."""

    type: HeaderType = HeaderType.RECEIVED_SPF
    authserv_id: str = ""  # "" means this host's name


@dataclass(frozen=True)
class SkipConfig:
    """[skip]: requests answered DUNNO without any SPF check."""

    networks: tuple[IPNetwork, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("::ffff:127.0.0.0/104"),
    )
    authenticated: bool = True  # sasl_username set: authenticated submission
    protocol_states: tuple[str, ...] = field(default=("RCPT",), metadata={"states": True})
    policy_contexts: tuple[str, ...] = ()  # Postfix 3.1+ smtpd_policy_service_policy_context


@dataclass(frozen=True)
class AllowConfig:
    """[allow]: clients trusted without an SPF check (answered DUNNO, counted by reason)."""

    networks: tuple[IPNetwork, ...] = ()
    helo_names: tuple[str, ...] = field(default=(), metadata={"domain": True})
    forwarder_domains: tuple[str, ...] = field(default=(), metadata={"domain": True})
    ptr_domains: tuple[str, ...] = field(default=(), metadata={"domain": True})


@dataclass(frozen=True)
class PolicyConfig:
    """[policy]: stricter and softer rules on top of the action tables."""

    reject_not_pass_domains: tuple[str, ...] = field(default=(), metadata={"domain": True})
    reject_only_no_mail: bool = False  # reject only "v=spf1 -all" domains; else a header
    dry_run: bool = False  # every reject, defer and hold becomes warn
    reject_reason: str = field(default="", metadata={"template": True})  # "": built-in
    defer_reason: str = field(default="", metadata={"template": True})
    # A bug must not lose mail: deferring holds it until the bug is fixed; "accept" lets it in.
    on_internal_error: InternalErrorAction = InternalErrorAction.DEFER


@dataclass(frozen=True)
class RecipientRule:
    """[[recipient]]: actions for one recipient address or domain (abuse@, postmaster@)."""

    match: str = field(metadata={"recipient": True})  # "user@example.com" or "@example.com"
    dry_run: bool = False
    actions: ActionsConfig = ActionsConfig()  # unset keys inherit the global [actions]

    def matches(self, recipient: str) -> bool:
        """Whether this rule is for recipient (compared case-insensitively)."""
        address = recipient.lower()
        return address == self.match or (self.match[0] == "@" and address.endswith(self.match))


@dataclass(frozen=True)
class LogConfig:
    """[log]: what goes to stderr (the journal under systemd)."""

    level: LogLevel = LogLevel.INFO
    format: LogFormat = LogFormat.TEXT


@dataclass(frozen=True)
class MetricsConfig:
    """[metrics]: the Prometheus exporter."""

    listen: str = field(default="127.0.0.1:9467", metadata={"hostport": True})  # "": off

    @property
    def address(self) -> ListenAddress | None:
        """Where to serve /metrics, or None when the exporter is off."""
        return ListenAddress.parse(f"inet:{self.listen}") if self.listen else None


@dataclass(frozen=True)
class Config:
    """The whole configuration, one frozen value shared by every thread."""

    server: ServerConfig = ServerConfig()
    dns: DnsConfig = DnsConfig()
    spf: SpfConfig = SpfConfig()
    actions: ActionsConfig = ActionsConfig()
    headers: HeadersConfig = HeadersConfig()
    skip: SkipConfig = SkipConfig()
    log: LogConfig = LogConfig()
    metrics: MetricsConfig = MetricsConfig()
    allow: AllowConfig = AllowConfig()
    policy: PolicyConfig = PolicyConfig()
    recipient: tuple[RecipientRule, ...] = field(default=(), metadata={"tables": True})

    def recipient_rule(self, recipient: str) -> RecipientRule | None:
        """The rule for this recipient: an exact address before a domain, first listed first."""
        exact = [
            rule for rule in self.recipient if rule.match[0] != "@" and rule.matches(recipient)
        ]
        domain = [
            rule for rule in self.recipient if rule.match[0] == "@" and rule.matches(recipient)
        ]
        return (exact + domain)[0] if exact or domain else None


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML file; ConfigError says which file, key and problem."""
    source = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as error:
        raise ConfigError(f"{source}: cannot read the file: {error.strerror}") from error
    except UnicodeDecodeError as error:
        raise ConfigError(f"{source}: not UTF-8 text: {error}") from error
    return parse_config(text, source)


def parse_config(text: str, source: str = "<config>") -> Config:
    """Parse TOML text into a Config; source names the file in error messages."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: not valid TOML: {error}") from error
    recipients = document.pop("recipient", [])
    config: Config = build(Config, document, source, "")
    # Recipient rules inherit every action the global [actions] sets, so they come second.
    rules = []
    if not isinstance(recipients, list):
        raise ConfigError(f"{source}: recipient: expected [[recipient]] tables")
    for number, table in enumerate(recipients, 1):
        base = RecipientRule(match="@placeholder.invalid", actions=config.actions)
        if not isinstance(table, dict) or "match" not in table:
            raise ConfigError(f"{source}: [recipient] number {number}: missing key 'match'")
        rules.append(build(RecipientRule, table, source, f"recipient[{number}]", base))
    config = dataclasses.replace(config, recipient=tuple(rules))
    if config.dns.min_ttl > config.dns.max_ttl:
        raise ConfigError(
            f"{source}: dns.min_ttl: {config.dns.min_ttl:g} is above dns.max_ttl "
            f"({config.dns.max_ttl:g}); raise max_ttl or lower min_ttl"
        )
    if config.dns.serve_stale and not config.dns.cache_size:
        raise ConfigError(
            f"{source}: dns.serve_stale: {config.dns.serve_stale:g} needs the DNS cache, which "
            "dns.cache_size = 0 turns off; set cache_size above 0 or serve_stale = 0"
        )
    return config


def config_keys() -> list[tuple[str, Any]]:
    """Every key as (dotted.name, default), for documentation and its tests."""
    return schema_keys(Config)
