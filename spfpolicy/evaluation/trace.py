"""What one SPF evaluation asked of DNS: for `spfpolicy check`, the logs and the caches."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field

from spfpolicy.resolver.answers import DnsAnswer

# RFC 7208 §7.3: %{t} expands to the current time, so a record using it can give a different
# result at any moment; macro letters are case-insensitive (upper case means URL-escaped).
_TIME_MACRO = b"%{t"


@dataclass
class LookupTrace:
    """The DNS one evaluation used: for `spfpolicy check`, the logs and the result cache."""

    questions: list[tuple[str, str, str]] = field(default_factory=list)  # name, type, outcome
    cache_hits: int = 0
    reusable: bool = True  # False after a DNS error, a stale answer or a time macro
    from_result_cache: bool = False
    over_snapshot: bool = False  # evaluated at once over cached DNS (evaluation.snapshot)
    no_mail_record: bool = False  # the first record fetched is exactly "v=spf1 -all"
    macro_records: int = 0  # how many TXT answers contained "%"
    stale_answers: int = 0  # expired answers served as upstream failed ([dns] serve_stale)
    # When each answer used stops being valid, in order, reused include: results among them.
    expiries: list[float] = field(default_factory=list)
    reused_includes: list[tuple[str, str]] = field(default_factory=list)  # domain, result

    @property
    def expires(self) -> float:
        """When the first DNS answer used stops being valid (infinity when none was used)."""
        return min(self.expiries, default=float("inf"))

    @property
    def macros(self) -> bool:
        """Some TXT record fetched contains "%": a macro may read the inputs."""
        return self.macro_records > 0

    def record(self, name: str, rdtype: str, answer: DnsAnswer) -> None:
        """Note one answer: where it came from, how long it lives, whether it reads the time."""
        if not self.questions and rdtype == "TXT":
            # check_host() asks for the domain's own record first (RFC 7208 §4.4).
            texts = [
                b"".join(typing.cast(tuple[bytes, ...], r.value))
                for r in answer.records
                if r.rdtype == "TXT"
            ]
            spf_records = [t.lower().split() for t in texts if t.lower().startswith(b"v=spf1")]
            self.no_mail_record = spf_records == [[b"v=spf1", b"-all"]]
        found = answer_summary(answer)
        if answer.from_cache:
            self.cache_hits += 1
            found += " (stale)" if answer.stale else " (cached)"
        if answer.stale:
            # What it gives stands only until upstream answers again: never kept for reuse.
            self.stale_answers += 1
            self.reusable = False
        self.questions.append((name, rdtype, found))
        self.expiries.append(answer.expires)
        if rdtype == "TXT" and any(
            b"%" in part
            for record in answer.records
            if isinstance(record.value, tuple)
            for part in record.value
            if isinstance(part, bytes)
        ):
            self.macro_records += 1
        if rdtype == "TXT" and self.reusable:
            for record in answer.records:
                if isinstance(record.value, tuple) and any(
                    isinstance(part, bytes) and _TIME_MACRO in part.lower() for part in record.value
                ):
                    self.reusable = False


def answer_summary(answer: DnsAnswer) -> str:
    """What an answer held, in a word or two: "2 records", "nxdomain", "no records"."""
    if answer.records:
        return f"{len(answer.records)} records"
    return answer.rcode.lower().replace("noerror", "no records")
