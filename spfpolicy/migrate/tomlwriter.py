"""The spfpolicy side of a migration: keys to write, as TOML text, checked by config.py itself.

A Setting is one key the migration writes and why; an Outcome is what one mapper of
migrateoptions.py / migratelists.py / migratereplies.py makes of its policyd-spf options.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from spfpolicy.config.settings import ConfigError, parse_config

TomlValue = str | bool | int | float | tuple[str, ...]

WIDTH = 100  # the line length of the generated file, as of the project's code
# The tables in the order a reader of README.md expects them.
TABLE_ORDER = (
    "server",
    "dns",
    "spf",
    "actions",
    "actions.helo",
    "actions.mailfrom",
    "headers",
    "skip",
    "allow",
    "policy",
    "log",
    "metrics",
)
_CHECKED = "<migration>"


@dataclass(frozen=True)
class Setting:
    """One spfpolicy key the migration writes."""

    table: str  # "actions.helo"
    key: str  # "temperror"
    value: TomlValue
    why: str  # the policyd-spf options it comes from, written above the key


@dataclass(frozen=True)
class Outcome:
    """What one mapper makes of its policyd-spf options."""

    notes: dict[str, str]  # option -> how it maps, or why it maps differently or not at all
    settings: tuple[Setting, ...] = ()
    alerts: tuple[str, ...] = ()  # said at the top of the file: this file is not what it seems


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    escaped = []
    for char in text:
        if char in '"\\':
            escaped.append("\\" + char)
        elif (char < " " and char != "\t") or char == "\x7f":
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def toml_value(value: TomlValue) -> str:
    """One value as TOML; lists on one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(toml_string(item) for item in value) + "]"
    return toml_string(value)


def assignment(setting: Setting) -> str:
    """`key = value`; a list too long for one line gets one item a line."""
    line = f"{setting.key} = {toml_value(setting.value)}"
    if len(line) <= WIDTH or not isinstance(setting.value, tuple):
        return line
    items = "".join(f"    {toml_string(item)},\n" for item in setting.value)
    return f"{setting.key} = [\n{items}]"


def refusal(table: str, key: str, value: TomlValue) -> str:
    """Why spfpolicy's own parser refuses table.key = value, or "" when it takes it."""
    try:
        parse_config(f"[{table}]\n{key} = {toml_value(value)}\n", _CHECKED)
    except ConfigError as error:
        return str(error).removeprefix(f"{_CHECKED}: ")
    return ""


def comment(text: str, indent: str = "") -> list[str]:
    """Comment lines of at most WIDTH characters; control characters are shown escaped."""
    visible = "".join(
        char if char >= " " and char != "\x7f" else f"\\x{ord(char):02x}" for char in text
    )
    prefix = "# " + indent
    return textwrap.wrap(
        visible,
        WIDTH,
        initial_indent=prefix,
        subsequent_indent=prefix + ("  " if indent else ""),
        break_long_words=False,
        break_on_hyphens=False,
    ) or ["#"]


def tables(settings: list[Setting]) -> list[str]:
    """The settings as TOML tables in TABLE_ORDER, each key under the comment saying why.

    A setting spfpolicy's parser refuses is written as a comment saying why, never as a key.
    """
    lines: list[str] = []
    for table in TABLE_ORDER:
        chosen = [setting for setting in settings if setting.table == table]
        if not chosen:
            continue
        lines += ["", f"[{table}]"]
        for setting in chosen:
            lines += comment(setting.why)
            refused = refusal(setting.table, setting.key, setting.value)
            if refused:
                lines += comment(f"not written, spfpolicy refuses it: {refused}")
                lines += comment(assignment(setting))
            else:
                lines.append(assignment(setting))
    return lines
