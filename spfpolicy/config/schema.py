"""Typed TOML: frozen dataclasses built from TOML tables, every value checked on the way in.

Generic over the dataclasses of config.py: a field's type says how to read it (bool, int, float,
str, enum, address, network, list, sub-table, list of tables) and its metadata how to check it
(range, octal mode, protocol state, host:port, domain name, template, restriction class).
Unknown keys, missing required keys and bad values raise ConfigError naming file, key, reason.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import string
import types
import typing
from collections.abc import Mapping
from enum import Enum
from typing import Any

from spfpolicy.model import PROTOCOL_STATES, ListenAddress, SpfPolicyError

# A Postfix restriction class name (smtpd_restriction_classes), which must not read as an
# access(5) action keyword.
_RESTRICTION_CLASS = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
_ACCESS_KEYWORDS = frozenset(
    {
        "OK",
        "REJECT",
        "DEFER",
        "DEFER_IF_REJECT",
        "DEFER_IF_PERMIT",
        "BCC",
        "DISCARD",
        "DUNNO",
        "FILTER",
        "HOLD",
        "PREPEND",
        "REDIRECT",
        "INFO",
        "WARN",
    }
)
# RFC 1035 §2.3.4: labels of 1 to 63 octets, names of at most 253 characters written out.
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")


class ConfigError(SpfPolicyError):
    """A configuration file that cannot be used; the message says where and why."""


def _key_name(attribute: str) -> str:
    """Field name -> TOML key."""
    return attribute.rstrip("_")


def schema_keys(cls: type[Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Every leaf key of cls as (dotted.name, default); a list of tables reads "name[].key"."""
    keys: list[tuple[str, Any]] = []
    hints = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):
        name = prefix + _key_name(item.name)
        kind = hints[item.name]
        element = _table_element(kind) if item.metadata.get("tables") else None
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            keys.extend(schema_keys(kind, name + "."))
        elif element is not None:
            keys.extend(schema_keys(element, name + "[]."))
        else:
            default = item.default if item.default is not dataclasses.MISSING else None
            keys.append((name, default))
    return keys


def _table_element(kind: Any) -> Any:
    """The dataclass of a tuple[Dataclass, ...] field marked {"tables": True}, else None."""
    if typing.get_origin(kind) is tuple:
        element = typing.get_args(kind)[0]
        if isinstance(element, type) and dataclasses.is_dataclass(element):
            return element
    return None


def build(cls: type[Any], table: Any, source: str, section: str, base: Any = None) -> Any:
    """Build dataclass cls from a TOML table, recursing into sub-tables.

    Keys the table leaves out keep cls's defaults, or base's values when a base is given.
    """
    where = f"[{section}]" if section else "top level"
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: {where} must be a table")
    fields = {_key_name(item.name): item for item in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(
            f"{source}: {where}: unknown key {unknown[0]!r}; known keys: {', '.join(fields)}"
        )
    required = [key for key, item in fields.items() if _required(item) and key not in table]
    if required and base is None:
        raise ConfigError(f"{source}: {where}: missing key {required[0]!r}")
    hints = typing.get_type_hints(cls)
    values = {}
    for key, raw in table.items():
        item = fields[key]
        dotted = f"{section}.{key}" if section else key
        kind = hints[item.name]
        element = _table_element(kind) if item.metadata.get("tables") else None
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            inherited = getattr(base, item.name) if base is not None else None
            values[item.name] = build(kind, raw, source, dotted, inherited)
        elif element is not None:
            values[item.name] = _tables(element, raw, source, dotted)
        else:
            values[item.name] = _convert(raw, kind, dict(item.metadata), f"{source}: {dotted}")
    return dataclasses.replace(base, **values) if base is not None else cls(**values)


def _required(item: dataclasses.Field[Any]) -> bool:
    return item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING


def _tables(element: type[Any], raw: Any, source: str, dotted: str) -> tuple[Any, ...]:
    """An array of tables ([[name]] in TOML)."""
    if not isinstance(raw, list):
        raise ConfigError(f"{source}: {dotted}: expected [[{dotted}]] tables, got {raw!r}")
    return tuple(
        build(element, table, source, f"{dotted}[{index + 1}]") for index, table in enumerate(raw)
    )


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
    for check, validate in _STRING_CHECKS.items():
        if metadata.get(check):
            raw = validate(raw, where)
    return raw


def _octal(raw: str, where: str) -> str:
    """A file mode written in octal ("0660")."""
    try:
        mode = int(raw, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise ConfigError(f'{where}: expected an octal file mode such as "0660", got {raw!r}')
    return raw


def _hostport(raw: str, where: str) -> str:
    """HOST:PORT (IPv6 in brackets), or "" for off."""
    if raw:
        try:
            ListenAddress.parse(f"inet:{raw}")
        except ValueError:
            raise ConfigError(
                f'{where}: expected HOST:PORT such as "127.0.0.1:9467" or "[::1]:9467", '
                f'or "" to turn it off, got {raw!r}'
            ) from None
    return raw


def _state(raw: str, where: str) -> str:
    """A Postfix protocol_state."""
    if raw not in PROTOCOL_STATES:
        raise ConfigError(f"{where}: expected one of {sorted(PROTOCOL_STATES)}, got {raw!r}")
    return raw


def _domain(raw: str, where: str) -> str:
    """A domain name, lower case without the final dot."""
    name = raw.rstrip(".").lower()
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise ConfigError(f"{where}: {raw!r} is not a domain name")
    return name


def _template(raw: str, where: str) -> str:
    """A reply text template using only the documented placeholders, without format specs."""
    allowed = {"identity", "domain", "client", "result", "explanation"}
    try:
        parts = list(string.Formatter().parse(raw))
    except ValueError as error:
        raise ConfigError(f"{where}: {error} in {raw!r} (write {{{{ and }}}} for braces)") from None
    for _text, name, spec, conversion in parts:
        if name is not None and (name not in allowed or spec or conversion):
            raise ConfigError(
                f"{where}: unknown placeholder {{{name}}}; use {', '.join(sorted(allowed))}"
            )
    return raw


def _restriction(raw: str, where: str) -> str:
    """A restriction class name, or "" for none.

    Postfix reads an answer that is one plain word and no access(5) action as a class name.
    """
    if raw and (not _RESTRICTION_CLASS.fullmatch(raw) or raw.upper() in _ACCESS_KEYWORDS):
        raise ConfigError(
            f"{where}: {raw!r} is not a restriction class name (letters, digits, _ . -; "
            "not an access(5) keyword): name a class listed in main.cf's "
            'smtpd_restriction_classes, or "" for none'
        )
    return raw


def _recipient_match(raw: str, where: str) -> str:
    """ "user@domain" or "@domain", lower case."""
    local, at, domain = raw.rpartition("@")
    if not at:
        raise ConfigError(f'{where}: expected "user@example.com" or "@example.com", got {raw!r}')
    return f"{local.lower()}@{_domain(domain, where)}"


_STRING_CHECKS = {
    "octal": _octal,
    "hostport": _hostport,
    "states": _state,
    "domain": _domain,
    "template": _template,
    "restriction": _restriction,
    "recipient": _recipient_match,
}
