"""Zone data in the RFC 7208 test suite's `zonedata:` format, and how a query is answered from it.

The format is a mapping from a domain name to a list of entries; each entry is either the string
"TIMEOUT" or a one-key map {TYPE: value}. The semantics are those of pyspf's test driver
(test/testspf.py: getrdata, loadZone, DNSLookup), moved from a Python hook into a real server:

- Every SPF entry is also served as TXT, unless the name has a TXT entry of its own (`TXT: NONE`
  counts, and serves nothing). The generated TXT entries go after all written ones, as in pyspf,
  which matters for where a "TIMEOUT" entry falls.
- A bare "TIMEOUT" entry ends the list: a query whose type matched an earlier entry gets what was
  found so far; any other query gets no reply at all. {TYPE: TIMEOUT}: queries of TYPE get none.
- CNAME chains are followed inside the zone like an authoritative server does (pyspf emulated one
  level); a loop or MAX_CNAME_CHAIN steps end the chain.

Nothing here touches a socket: the server (dnsserver.py) turns a `Lookup` into a DNS message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

TIMEOUT = "TIMEOUT"  # the suite's marker for "this query gets no reply"
NONE = "NONE"  # the suite's marker for "this type is present, with no records"
MAX_CNAME_CHAIN = 8  # CNAME records followed for one answer; the client judges longer chains
MAX_CHARACTER_STRING = 255  # RFC 1035 §3.3: one length octet per <character-string>

ADDRESS_TYPES = frozenset({"A", "AAAA"})
NAME_TYPES = frozenset({"PTR", "CNAME"})
TEXT_TYPES = frozenset({"TXT", "SPF"})

NameKey = tuple[bytes, ...]  # a domain name's labels, ASCII-lowercased, without the root label


class ZoneError(ValueError):
    """The zone data cannot be served: names the owner, the entry and the reason."""


class Outcome(StrEnum):
    """How the server answers one query. New misbehaviours (SERVFAIL, wrong ID...) go here."""

    ANSWER = "answer"  # NOERROR with records of the asked type (maybe after CNAMEs)
    NODATA = "nodata"  # NOERROR without records of the asked type; SOA in authority
    NXDOMAIN = "nxdomain"  # the (final) name is not in the zone; SOA in authority
    TIMEOUT = "timeout"  # send nothing, over UDP or TCP


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry of a name's list, in the order the zone data gives it."""

    rdtype: str | None  # "A", "TXT", ...; None for a bare "TIMEOUT", which concerns every type
    rdata: dns.rdata.Rdata | None  # None: queries for rdtype (or any type) time out


@dataclass(frozen=True, slots=True)
class RecordSet:
    """Records of one type at one owner name, as they go into the answer section."""

    owner: dns.name.Name
    rdtype: str
    rdatas: tuple[dns.rdata.Rdata, ...]


@dataclass(frozen=True, slots=True)
class Lookup:
    """The zone's answer to one question."""

    outcome: Outcome
    answer: tuple[RecordSet, ...]  # the CNAME chain, then the asked-for records if any
    final_name: dns.name.Name  # where the chain ended: the negative answer's SOA is its zone's


def name_key(name: dns.name.Name | str) -> NameKey:
    """Key a name the way DNS compares names: case-insensitive in ASCII only (RFC 4343)."""
    if isinstance(name, str):
        # Lone surrogates stand for raw octets (a name of 8-bit bytes, "j\udce9.example").
        labels = tuple(name.rstrip(".").encode("utf-8", "surrogateescape").split(b"."))
    else:
        labels = name.labels[:-1] if name.is_absolute() else name.labels
    return tuple(label.lower() for label in labels)


class Zone:
    """Names with their entries; answers questions with pyspf's test-driver semantics."""

    def __init__(self, names: Mapping[NameKey, Sequence[Entry]]) -> None:
        """Wrap already-parsed entries; use `from_zonedata` for the suite's format."""
        self._names = dict(names)

    @classmethod
    def from_zonedata(cls, zonedata: Mapping[str, Any]) -> Zone:
        """Parse a `zonedata:` mapping; ZoneError if an entry cannot be served."""
        return cls(
            {
                name_key(str(owner)): parse_entries(str(owner), raw)
                for owner, raw in zonedata.items()
            }
        )

    def lookup(self, qname: dns.name.Name, rdtype: str) -> Lookup:
        """Answer `qname`/`rdtype`, following CNAMEs; owner names keep the case they came in."""
        chain: list[RecordSet] = []
        name = qname
        seen: set[NameKey] = set()
        for step in range(MAX_CNAME_CHAIN + 1):
            key = name_key(name)
            entries = self._names.get(key)
            if entries is None:
                return Lookup(Outcome.NXDOMAIN, tuple(chain), name)
            seen.add(key)
            found = scan(entries, rdtype)
            if found is None:
                return Lookup(Outcome.TIMEOUT, (), name)
            if found:
                chain.append(RecordSet(name, rdtype, found))
                return Lookup(Outcome.ANSWER, tuple(chain), name)
            cnames = () if rdtype == "CNAME" else scan(entries, "CNAME")
            if cnames is None:
                return Lookup(Outcome.TIMEOUT, (), name)
            if not cnames or step == MAX_CNAME_CHAIN:
                break
            # A name holds one CNAME (RFC 1034 §3.6.2); should the data give more, use the first.
            chain.append(RecordSet(name, "CNAME", cnames[:1]))
            name = cnames[0].target  # type: ignore[attr-defined]
            if name_key(name) in seen:
                break  # a loop: answer with the chain so far and let the client judge it
        return Lookup(Outcome.NODATA, tuple(chain), name)


def scan(entries: Sequence[Entry], rdtype: str) -> tuple[dns.rdata.Rdata, ...] | None:
    """The records of `rdtype` in one name's entries, or None if the query must time out.

    This is pyspf's DNSLookup loop: a bare TIMEOUT times out a query whose type no earlier entry
    had, and otherwise ends the answer there.
    """
    answered = False
    found: list[dns.rdata.Rdata] = []
    for entry in entries:
        if entry.rdtype is None:
            if answered:
                break
            return None
        if entry.rdtype != rdtype:
            continue
        if entry.rdata is None:
            return None
        answered = True
        found.append(entry.rdata)
    return tuple(found)


def parse_entries(owner: str, raw: Any) -> list[Entry]:
    """Turn one name's list of suite entries into `Entry` objects (pyspf's getrdata)."""
    if not isinstance(raw, list):
        raise ZoneError(f"{owner}: expected a list of entries, got {raw!r}")
    written: list[Entry] = []
    generated_txt: list[Entry] = []
    has_txt = False
    for item in raw:
        if item == TIMEOUT:
            written.append(Entry(None, None))
            continue
        if not isinstance(item, Mapping):
            raise ZoneError(f"{owner}: entry {item!r} is neither TIMEOUT nor a {{TYPE: value}} map")
        for type_text, value in item.items():
            rdtype = str(type_text).upper()
            has_txt = has_txt or rdtype == "TXT"
            if value == NONE:
                continue  # declares the type (and stops TXT generation) but serves nothing
            if value == TIMEOUT:
                written.append(Entry(rdtype, None))
                continue
            written.append(Entry(rdtype, make_rdata(owner, rdtype, value)))
            if rdtype == "SPF":
                generated_txt.append(Entry("TXT", make_rdata(owner, "TXT", value)))
    return written if has_txt else written + generated_txt


def make_rdata(owner: str, rdtype: str, value: Any) -> dns.rdata.Rdata:
    """Build one record from the suite's human-readable value."""
    try:
        return _make_rdata(rdtype, value)
    except (ValueError, TypeError, dns.exception.DNSException) as error:
        raise ZoneError(f"{owner}: cannot serve {rdtype} {value!r}: {error}") from error


def _make_rdata(rdtype: str, value: Any) -> dns.rdata.Rdata:
    rdclass = dns.rdataclass.IN
    rdatatype = dns.rdatatype.from_text(rdtype)
    cls = dns.rdata.get_rdata_class(rdclass, rdatatype)
    if rdtype in ADDRESS_TYPES:
        return cls(rdclass, rdatatype, str(value))
    if rdtype in NAME_TYPES:
        return cls(rdclass, rdatatype, dns.name.from_text(str(value)))
    if rdtype == "MX":
        preference, exchange = value
        return cls(rdclass, rdatatype, int(preference), dns.name.from_text(str(exchange)))
    if rdtype in TEXT_TYPES:
        texts = [value] if isinstance(value, str) else list(value)
        if not texts:
            # A record with zero <character-string>s: legal on the wire, and in the suite. Build
            # it as raw empty RDATA so no TXT constructor gets the chance to refuse it.
            return dns.rdata.GenericRdata(rdclass, rdatatype, b"")
        return cls(rdclass, rdatatype, [chunk for text in texts for chunk in split_text(text)])
    raise ZoneError(f"type {rdtype} is not supported")


def split_text(text: Any) -> list[bytes]:
    """Encode a string as UTF-8, byte for byte, in <character-string>s of at most 255 octets."""
    data = str(text).encode("utf-8")
    if not data:
        return [b""]
    return [data[i : i + MAX_CHARACTER_STRING] for i in range(0, len(data), MAX_CHARACTER_STRING)]


def load_zone_file(path: Path) -> Zone:
    """Read zone data from JSON (*.json) or YAML; a suite scenario with `zonedata:` works too."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
    else:
        import yaml  # only YAML files need pyyaml

        data = yaml.safe_load(text)
    if isinstance(data, Mapping) and isinstance(data.get("zonedata"), Mapping):
        data = data["zonedata"]
    if not isinstance(data, Mapping):
        raise ZoneError(f"{path}: expected a mapping of names to entries")
    return Zone.from_zonedata(data)
