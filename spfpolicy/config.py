"""The configuration: TOML parsed once into frozen dataclasses, validated, immutable.

Defaults live in the dataclass fields. Unknown keys and bad values raise ConfigError naming the
file, the key and the problem, so a typo stops start-up (or a reload) instead of being ignored.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any

from spfpolicy.model import ListenAddress, SpfPolicyError, SpfResult, Verdict

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Postfix's own smtpd_policy_service_timeout default: an answer after it is never read.
POSTFIX_POLICY_TIMEOUT = 100.0

# The protocol_state values Postfix sends (SMTPD_POLICY_README).
PROTOCOL_STATES = frozenset(
    {"CONNECT", "EHLO", "HELO", "MAIL", "RCPT", "DATA", "END-OF-MESSAGE", "VRFY", "ETRN"}
)


class ConfigError(SpfPolicyError):
    """A configuration file that cannot be used; the message says where and why."""


class HeaderType(StrEnum):
    """Which trace header accepted mail gets."""

    RECEIVED_SPF = "received-spf"  # RFC 7208 §9.1
    AUTHENTICATION_RESULTS = "authentication-results"  # RFC 8601
    NONE = "none"


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
    max_connections: int = field(default=512, metadata=_range(1, 100_000))
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


@dataclass(frozen=True)
class SpfConfig:
    """[spf]: how check_host() runs."""

    # RFC 7208 §4.6.4: at least 20 seconds for one whole evaluation.
    time_budget: float = field(default=20.0, metadata=_range(0.1, POSTFIX_POLICY_TIMEOUT - 1))
    check_helo: bool = True
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
        value: Verdict = getattr(self, _attribute_name(result.value))
        return value


@dataclass(frozen=True)
class ActionsConfig:
    """[actions]: one table per identity."""

    helo: ActionTable = ActionTable()
    mailfrom: ActionTable = ActionTable()


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
    config: Config = _build(Config, document, source, "")
    if config.dns.min_ttl > config.dns.max_ttl:
        raise ConfigError(
            f"{source}: dns.min_ttl: {config.dns.min_ttl:g} is above dns.max_ttl "
            f"({config.dns.max_ttl:g}); raise max_ttl or lower min_ttl"
        )
    return config


def _attribute_name(key: str) -> str:
    """TOML key -> field name ("pass" is a Python keyword, so its field is pass_)."""
    return key + "_" if key == "pass" else key


def _key_name(attribute: str) -> str:
    """Field name -> TOML key."""
    return attribute.rstrip("_")


def config_keys(cls: type[Any] = Config, prefix: str = "") -> list[tuple[str, Any]]:
    """Every leaf key as (dotted.name, default), for documentation and its tests."""
    keys: list[tuple[str, Any]] = []
    hints = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):
        name = prefix + _key_name(item.name)
        if dataclasses.is_dataclass(hints[item.name]):
            keys.extend(config_keys(hints[item.name], name + "."))
        else:
            keys.append((name, item.default))
    return keys


def _build(cls: type[Any], table: Any, source: str, section: str) -> Any:
    """Build dataclass cls from a TOML table, recursing into sub-tables."""
    where = f"[{section}]" if section else "top level"
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: {where} must be a table")
    fields = {_key_name(item.name): item for item in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(
            f"{source}: {where}: unknown key {unknown[0]!r}; known keys: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    values = {}
    for key, raw in table.items():
        item = fields[key]
        dotted = f"{section}.{key}" if section else key
        kind = hints[item.name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            values[item.name] = _build(kind, raw, source, dotted)
        else:
            values[item.name] = _convert(raw, kind, dict(item.metadata), f"{source}: {dotted}")
    return cls(**values)


def _convert(raw: Any, kind: Any, metadata: dict[str, Any], where: str) -> Any:
    """Check and convert one TOML value to the field's type."""
    if typing.get_origin(kind) is tuple:
        if not isinstance(raw, list):
            raise ConfigError(f"{where}: expected a list, got {raw!r}")
        element = typing.get_args(kind)[0]
        converted = tuple(_convert_scalar(item, element, metadata, where) for item in raw)
        if len(set(converted)) != len(converted):
            raise ConfigError(f"{where}: the list has duplicates")
        return converted
    return _convert_scalar(raw, kind, metadata, where)


def _convert_scalar(raw: Any, kind: Any, metadata: dict[str, Any], where: str) -> Any:
    """Convert one scalar; the error message shows what was expected."""
    if kind is bool:
        if not isinstance(raw, bool):
            raise ConfigError(f"{where}: expected true or false, got {raw!r}")
        return raw
    if kind is int or kind is float:
        return _number(raw, kind, metadata, where)
    if isinstance(kind, type) and issubclass(kind, Enum):
        choices = [member.value for member in kind]
        if raw not in choices:
            raise ConfigError(f"{where}: expected one of {choices}, got {raw!r}")
        return kind(raw)
    if not isinstance(raw, str):
        raise ConfigError(f"{where}: expected a string, got {raw!r}")
    return _string(raw, kind, metadata, where)


def _number(raw: Any, kind: type, metadata: dict[str, Any], where: str) -> int | float:
    """An int or float field, checked against its range."""
    noun = "an integer" if kind is int else "a number"
    if isinstance(raw, bool) or not isinstance(raw, int | float) or (kind is int and raw % 1):
        raise ConfigError(f"{where}: expected {noun}, got {raw!r}")
    low, high = metadata.get("range", (None, None))
    if (low is not None and raw < low) or (high is not None and raw > high):
        raise ConfigError(f"{where}: expected {noun} from {low} to {high}, got {raw!r}")
    return kind(raw)  # type: ignore[no-any-return]


def _string(raw: str, kind: Any, metadata: dict[str, Any], where: str) -> Any:
    """A string field, or a type written as a string (address, network, mode)."""
    try:
        if kind is ListenAddress:
            return ListenAddress.parse(raw)
        if isinstance(kind, types.UnionType):  # IPNetwork
            return ipaddress.ip_network(raw, strict=True)
        if metadata.get("address"):
            return str(ipaddress.ip_address(raw))
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from error
    if metadata.get("octal"):
        try:
            mode = int(raw, 8)
        except ValueError:
            mode = -1
        if not 0 <= mode <= 0o777:
            raise ConfigError(f'{where}: expected an octal file mode such as "0660", got {raw!r}')
    if metadata.get("hostport") and raw:
        try:
            ListenAddress.parse(f"inet:{raw}")
        except ValueError:
            raise ConfigError(
                f'{where}: expected HOST:PORT such as "127.0.0.1:9467" or "[::1]:9467", '
                f'or "" to turn it off, got {raw!r}'
            ) from None
    if metadata.get("states") and raw not in PROTOCOL_STATES:
        raise ConfigError(f"{where}: expected one of {sorted(PROTOCOL_STATES)}, got {raw!r}")
    return raw
