"""policyd-spf.conf read the way spf-engine 3.0.4 (Debian's policyd-spf) reads it, pure.

Its syntax: one `Name = value` a line; `#` starts a comment anywhere, even inside a value; a
line with no `=` or with more than one is ignored; names are case-sensitive and an unknown name
is ignored; a value is the text between `=` and the comment, stripped. Integer options that do
not parse make policyd-spf refuse to start. The last line naming an option wins.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    """How spf-engine converts an option's text."""

    INT = "int"  # int(text): anything else stops policyd-spf at start-up
    TEXT = "text"  # the text as written
    TRUTHY = "truthy"  # bool(text): any non-empty text, "False" too, is true
    DATASET = "dataset"  # the milter's comma list or file name


# Every name spf-engine 3.0.4's config reader knows (policydspfsupp.py), and its conversion.
OPTIONS: dict[str, Kind] = {
    "debugLevel": Kind.INT,
    "HELO_reject": Kind.TEXT,
    "Mail_From_reject": Kind.TEXT,
    "PermError_reject": Kind.TEXT,
    "TempError_Defer": Kind.TEXT,
    "Mail_From_pass_restriction": Kind.TEXT,
    "HELO_pass_restriction": Kind.TEXT,
    "Prospective": Kind.TEXT,
    "Whitelist": Kind.TEXT,
    "skip_addresses": Kind.TEXT,
    "HELO_Whitelist": Kind.TEXT,
    "Domain_Whitelist": Kind.TEXT,
    "Domain_Whitelist_PTR": Kind.TEXT,
    "No_Mail": Kind.TEXT,
    "Reject_Not_Pass_Domains": Kind.TEXT,
    "Per_User": Kind.TEXT,
    "TestOnly": Kind.INT,
    "defaultSeedOnly": Kind.INT,
    "SPF_Enhanced_Status_Codes": Kind.TEXT,
    "Header_Type": Kind.TEXT,
    "Hide_Receiver": Kind.TEXT,
    "Authserv_Id": Kind.TEXT,
    "Lookup_Time": Kind.INT,
    "Whitelist_Lookup_Time": Kind.INT,
    "Void_Limit": Kind.INT,
    "Reason_Message": Kind.TEXT,
    "Mock": Kind.TRUTHY,
    # pyspf-milter only; policyd-spf reads and ignores them.
    "Socket": Kind.TEXT,
    "PidFile": Kind.TEXT,
    "UserID": Kind.TEXT,
    "UMask": Kind.INT,
    "InternalHosts": Kind.DATASET,
    "IntHosts": Kind.TRUTHY,
    "MacroList": Kind.DATASET,
}

# policyd-spf.conf(5) documents it, but spf-engine 3.0.4's reader does not know the name.
DOCUMENTED_NOT_READ = frozenset({"QueueID"})

NOT_AN_INTEGER = "not an integer"  # how a line's problem starts when policyd-spf cannot start
DEFAULT_REASON = "Message {rejectdefer} due to: {spf}. Please see {url}"

# spf-engine's defaults for the options that matter when a file leaves them out.
DEFAULTS: dict[str, str] = {
    "debugLevel": "1",
    "HELO_reject": "Fail",
    "Mail_From_reject": "Fail",
    "PermError_reject": "False",
    "TempError_Defer": "False",
    "skip_addresses": "127.0.0.0/8,::ffff:127.0.0.0/104,::1",
    "TestOnly": "1",
    "SPF_Enhanced_Status_Codes": "Yes",
    "Header_Type": "SPF",
    "Hide_Receiver": "No",
    "Authserv_Id": "HOSTNAME",
    "Lookup_Time": "20",
    "Whitelist_Lookup_Time": "10",
    "Void_Limit": "2",
    "Reason_Message": DEFAULT_REASON,
    "No_Mail": "False",
    "Mock": "",
}


@dataclass(frozen=True)
class Line:
    """One line of the file that is not blank or only a comment."""

    number: int  # 1-based
    text: str  # the line without its comment, stripped
    option: str  # the name before "=", as written ("" when there is none)
    value: str
    problem: str = ""  # why policyd-spf does not use the line; "" when it does


@dataclass(frozen=True)
class PolicydSpfFile:
    """A parsed policyd-spf.conf: its lines, and each option's value in force."""

    lines: tuple[Line, ...]
    values: Mapping[str, str]  # option -> value of the last line that sets it
    where: Mapping[str, int]  # option -> number of that line

    def value(self, option: str) -> str:
        """The value in force: the file's, else spf-engine's default, else ""."""
        return self.values.get(option, DEFAULTS.get(option, ""))

    def cite(self, option: str) -> str:
        """`Option = value (line N)`, or `Option not set (default value)` for a reminder."""
        if option in self.values:
            return f"{option} = {self.values[option]} (line {self.where[option]})"
        return f"{option} not set (default {self.value(option) or 'none'})"

    def number(self, option: str) -> int:
        """The value in force as an int (spf-engine's int()); 0 when it does not parse."""
        try:
            return int(self.value(option))
        except ValueError:
            return 0

    def refused(self) -> bool:
        """Whether policyd-spf refuses to start with this file (an integer that is not one)."""
        return any(line.problem.startswith(NOT_AN_INTEGER) for line in self.lines)


def parse(text: str) -> PolicydSpfFile:
    """Read the text as spf-engine does; never raises, problems are kept on the lines."""
    lines: list[Line] = []
    values: dict[str, str] = {}
    where: dict[str, int] = {}
    # Python's text files split lines at \n, \r\n and \r: so did spf-engine's readline().
    physical = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for number, raw in enumerate(physical, 1):
        content = raw.split("#", 1)[0].strip()
        if not content:
            continue
        line = _line(number, content)
        lines.append(line)
        if not line.problem:
            values[line.option] = line.value
            where[line.option] = number
    return PolicydSpfFile(tuple(lines), values, where)


def _line(number: int, content: str) -> Line:
    parts = [part.strip() for part in content.split("=")]
    if len(parts) == 1:
        return Line(number, content, "", "", "no '=': policyd-spf ignores the line")
    option, value = parts[0], "=".join(parts[1:])
    if len(parts) > 2:
        problem = "more than one '=': policyd-spf ignores the whole line"
        return Line(number, content, option, value, problem)
    kind = OPTIONS.get(option)
    if kind is None:
        return Line(number, content, option, value, _unknown(option))
    if kind is Kind.INT:
        try:
            int(value)
        except ValueError:
            problem = f"{NOT_AN_INTEGER}: policyd-spf refuses to start with this file"
            return Line(number, content, option, value, problem)
    return Line(number, content, option, value)


def _unknown(option: str) -> str:
    """Why an unknown name is ignored, with the name that was probably meant."""
    if option in DOCUMENTED_NOT_READ:
        return "documented, but spf-engine 3.0.4 does not read it: policyd-spf ignores it"
    folded = {name.lower().replace("-", "_"): name for name in OPTIONS}
    meant = folded.get(option.lower().replace("-", "_"))
    if meant is None:
        close = difflib.get_close_matches(option, OPTIONS, n=1)
        meant = close[0] if close else None
    hint = f" (did you mean {meant}? names are case-sensitive)" if meant else ""
    return f"unknown option: policyd-spf ignores it{hint}"


def is_true(value: str) -> bool:
    """PermError_reject, TempError_Defer, No_Mail: only the exact text "True" is true."""
    return value == "True"


def is_truthy(value: str) -> bool:
    """Mock, IntHosts: Python's bool() of the text, so any non-empty text is true."""
    return bool(value)


def items(value: str) -> list[str]:
    """A comma list as spf-engine splits it: at every comma, nothing stripped."""
    return value.split(",") if value else []
