"""Where a linted record's text comes from: the TXT strings a name publishes, or --record.

Pure. A TXT record is a sequence of character-strings of at most 255 octets each, joined
without spaces into the record (RFC 7208 §3.3); lint keeps the strings to check them. Octets
are decoded as Latin-1, so that a column is an octet's position and no byte is lost.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from spfpolicy.lint.domainspec import Problem
from spfpolicy.lint.rules import Code

_SPF = re.compile(rb"v=spf1( |$)", re.IGNORECASE)  # §4.5: how a record is told from others
_ESCAPE = re.compile(r"\\([0-9]{3}|.)", re.DOTALL)  # RFC 1035 §5.1: \DDD or \X


@dataclass(frozen=True, slots=True)
class RecordText:
    """A record as character-strings."""

    strings: tuple[bytes, ...]
    quoted: bool = False  # given in zone-file form, as "..." "..."

    @property
    def text(self) -> str:
        """The strings joined (§3.3), one character per octet."""
        return b"".join(self.strings).decode("latin-1")

    @property
    def boundaries(self) -> list[int]:
        """The 0-based offsets in text where one string ends and the next begins."""
        offsets, at = [], 0
        for string in self.strings[:-1]:
            at += len(string)
            offsets.append(at)
        return offsets


def is_spf(strings: Sequence[bytes]) -> bool:
    """Whether a TXT record is an SPF record (§4.5: "v=spf1", then a space or its end)."""
    return _SPF.match(b"".join(strings)) is not None


def spf_records(txt_records: Sequence[Sequence[bytes]]) -> list[RecordText]:
    """The SPF records among a name's TXT records."""
    return [RecordText(tuple(strings)) for strings in txt_records if is_spf(strings)]


def answer_octets(name: str, txt_records: Sequence[Sequence[bytes]]) -> int:
    """What §3.4 keeps under 450: the name and the text of all its TXT records."""
    return len(name) + sum(len(string) for strings in txt_records for string in strings)


def near_misses(txt_records: Sequence[Sequence[bytes]]) -> list[str]:
    """TXT records that look meant as SPF but are not selected (a typo, a leading space)."""
    found = []
    for strings in txt_records:
        joined = b"".join(strings)
        if not is_spf(strings) and b"spf1" in joined[:20].lower():
            found.append(joined.decode("latin-1"))
    return found


def from_argument(text: str) -> tuple[RecordText | None, Problem | None]:
    """--record's text: a record as one string, or zone-file strings when it starts with '"'.

    The zone-file form is what an administrator pastes from the zone: "..." "...", with the
    backslash escapes of RFC 1035 §5.1.
    """
    data = text.encode("utf-8")
    if not text.lstrip().startswith('"'):
        return RecordText((data,)), None
    strings: list[bytes] = []
    index = 0
    while index < len(text):
        if text[index] == " " or text[index] == "\t":
            index += 1
            continue
        if text[index] != '"':
            message = f"column {index + 1}: {text[index]!r} outside the quoted strings"
            return None, Problem(Code.BAD_QUOTING, index + 1, message)
        end = _closing_quote(text, index + 1)
        if end < 0:
            message = f"the string opened at column {index + 1} is not closed"
            return None, Problem(Code.BAD_QUOTING, index + 1, message)
        strings.append(_unescape(text[index + 1 : end]))
        index = end + 1
    return RecordText(tuple(strings), quoted=True), None


def _closing_quote(text: str, start: int) -> int:
    index = start
    while index < len(text):
        if text[index] == "\\":
            index += 2
            continue
        if text[index] == '"':
            return index
        index += 1
    return -1


def _unescape(quoted: str) -> bytes:
    """The octets of one quoted string: \\DDD is one octet, \\X is X."""
    octets = bytearray()
    end = 0
    for match in _ESCAPE.finditer(quoted):
        octets += quoted[end : match.start()].encode("utf-8")
        escaped = match.group(1)
        if escaped.isdigit() and int(escaped) < 256:
            octets.append(int(escaped))
        else:
            octets += escaped.encode("utf-8")
        end = match.end()
    octets += quoted[end:].encode("utf-8")
    return bytes(octets)
