"""Evaluations that need not wait for DNS: pyspf over a snapshot of answers the cache holds.

Before the I/O thread evaluates a domain it looks its record tree up in the DNS cache: the
domain's TXT record, then every name a term of it may make check_host() ask (RFC 7208 §5: a,
mx and the exchanges' addresses, exists, include: and redirect= targets, recursively; the exp=
target, which pyspf always fetches), CNAMEs followed. The walk asks for more than any one
evaluation can reach (every term, beyond the lookup limits of §4.6.4 too), never less: when the
cache holds all of it, pyspf runs over that snapshot and cannot meet a question it lacks. A tree
with a macro anywhere, or a ptr term (it asks for the client's own name), is left to a worker,
as is one with any answer failed.

When answers are missing, missing() names them, for the cache to prefetch all at once: the
record tree as far as it is known, so that a cold evaluation waits about one round trip per
level. It names only what the first LOOKUP_LIMIT DNS-querying terms of the known tree need
(RFC 7208 §4.6.4, in evaluation order: mechanisms left to right, includes depth first, then
redirect=; a subtree not yet fetched counts as its one term), and of an mx term the first
MX_LIMIT exchanges; never a name from a macro, which ends the walk. With serve-stale on, an
expired answer the cache keeps is named as missing and walked through as the tree last known:
every expired level is asked for in the same round, so an outage costs one wait, not one per
level, before the stale answers stand in.
"""

from __future__ import annotations

import dataclasses
import re
import typing

from spfpolicy.evaluation.query import SPF_RECORD
from spfpolicy.model import NullObserver, Observer, SpfPolicyError
from spfpolicy.resolver.answers import AnswerCache, AnswerKey, DnsAnswer, DnsRecord

# A walk that needs more answers than this is left to a worker: a legitimate tree stays far
# below (10 DNS-querying terms, §4.6.4; up to 10 MX exchanges each), a hostile one does not.
MAX_ANSWERS = 200
MAX_DEPTH = 12  # include:/redirect= levels; pyspf's own recursion limit is lower
# A term's name: a mechanism (RFC 7208 §5) before ":" or "/", or a modifier before "=" (§6).
_TERM = re.compile(r"[+\-~?]?([A-Za-z][A-Za-z0-9_.\-]*)([:=/]?)(.*)", re.DOTALL)
LOOKUP_LIMIT = 10  # DNS-querying terms (RFC 7208 §4.6.4)
MX_LIMIT = 10  # exchanges of one mx term whose addresses are looked up (§4.6.4)
_DNS_TERMS = frozenset({"include", "a", "mx", "ptr", "exists", "redirect"})


class _Unavailable(Exception):  # noqa: N818 - ends a walk, never leaves this module
    """The tree needs an answer the cache does not hold, or something no snapshot can give."""


class _Missing(Exception):  # noqa: N818 - ends one term of a collecting walk
    """The cache lacks this answer."""

    def __init__(self, key: AnswerKey) -> None:
        super().__init__(key)
        self.key = key


class OutsideSnapshot(SpfPolicyError):  # noqa: N818 - a broken invariant, never a DNS result
    """An evaluation over a snapshot asked a question the walk did not foresee (a bug)."""


def snapshot(
    cache: AnswerCache, domain: str, *, ipv6: bool, ipv6_void_fairness: bool = False
) -> dict[AnswerKey, DnsAnswer] | None:
    """Every cached answer check_host() of domain may ask for, or None when one is missing."""
    walk = _Walk(cache, ipv6, ipv6_void_fairness)
    try:
        walk.record(domain, 0)
    except _Unavailable:
        return None
    return walk.answers


def missing(
    cache: AnswerCache, domain: str, *, ipv6: bool, ipv6_void_fairness: bool = False
) -> list[AnswerKey] | None:
    """The questions to ask so that the walk gets further (see the module), [] when there
    are none within the limits, or None when no snapshot can serve the tree."""
    walk = _Walk(cache, ipv6, ipv6_void_fairness, collect=True)
    try:
        walk.gather(walk.record, domain, 0)
    except _Unavailable:
        return None
    return list(dict.fromkeys(walk.missing))


class _Walk:
    """One look through the cache along a domain's record tree."""

    def __init__(
        self, cache: AnswerCache, ipv6: bool, ipv6_void_fairness: bool, collect: bool = False
    ) -> None:
        self.cache = cache
        self.address_type = "AAAA" if ipv6 else "A"
        self.ipv6_void_fairness = ipv6 and ipv6_void_fairness
        self.answers: dict[AnswerKey, DnsAnswer] = {}
        self.resolved: dict[AnswerKey, list[DnsRecord]] = {}
        self.walked: set[str] = set()
        self.collect = collect  # note missing answers and go on, rather than give up
        self.missing: list[AnswerKey] = []
        self.terms = 0  # DNS-querying terms met so far, in evaluation order

    def gather(self, step: typing.Callable[..., None], *arguments: typing.Any) -> None:
        """step(*arguments); in a collecting walk, an answer it lacks is noted (within the
        lookup limit) and the walk goes on with the next step."""
        try:
            step(*arguments)
        except _Missing as lacking:
            if self.terms <= LOOKUP_LIMIT:
                self.missing.append(lacking.key)

    def ask(self, name: str, rdtype: str) -> list[DnsRecord]:
        """The cached records of that type for name, CNAMEs followed as pyspf follows them
        (a target whose records are not in the answer is asked in turn)."""
        key = (name.lower().rstrip("."), rdtype)
        known = self.resolved.get(key)
        if known is not None:
            return known  # asked already, or a CNAME loop back to it (pyspf stops there)
        if len(self.answers) >= MAX_ANSWERS:
            raise _Unavailable(f"more than {MAX_ANSWERS} answers")
        answer = self.cache.cached(*key)
        if answer is None:
            if not self.collect:
                raise _Unavailable(f"{key[0]}/{rdtype} is not cached")
            # An expired answer kept for serve-stale shows the tree as it was: asked for
            # again, and walked through, so that its levels are refreshed in one round.
            answer = self.cache.stale(*key)
            if answer is None:
                raise _Missing(key)
            if self.terms <= LOOKUP_LIMIT:
                self.missing.append(key)
        self.answers[key] = answer
        self.resolved[key] = found = [r for r in answer.records if r.rdtype == rdtype]
        if not found:
            for record in answer.records:
                if record.rdtype == "CNAME":
                    found.extend(self.ask(str(record.value), rdtype))
        return found

    def record(self, domain: str, depth: int) -> None:
        """Walk the SPF record of domain: its TXT answer, then what its terms name."""
        name = domain.lower().rstrip(".")
        if name in self.walked:
            return  # a loop, or a second include of the same target: asked already
        if depth > MAX_DEPTH:
            raise _Unavailable("too deep")
        self.walked.add(name)
        records = [text for text in self.texts(name) if SPF_RECORD.match(text)]
        if len(records) != 1:
            return  # none, or several (a permerror): nothing more is asked
        terms = records[0].decode("utf-8", "replace").split(" ")[1:]
        # Modifiers after the mechanisms, as check_host() reaches them (RFC 7208 §6.1).
        for term in sorted(terms, key=lambda term: "=" in term.split(":", 1)[0]):
            self.gather(self.term, term, name, depth)

    def texts(self, name: str) -> list[bytes]:
        """The TXT strings of name, each joined (RFC 7208 §3.3); none may hold a macro."""
        texts = [
            b"".join(typing.cast(tuple[bytes, ...], record.value))
            for record in self.ask(name, "TXT")
        ]
        if any(b"%" in text for text in texts):
            raise _Unavailable("a macro")  # what it expands to may need DNS (%{p}) or change
        return texts

    def term(self, term: str, domain: str, depth: int) -> None:
        """Ask what one term may need; unknown terms need nothing (pyspf stops on them)."""
        match = _TERM.fullmatch(term)
        if match is None:
            return
        kind, separator, rest = match[1].lower(), match[2], match[3]
        if kind in _DNS_TERMS and (separator == "=") == (kind == "redirect"):
            self.terms += 1
        if separator == "=":
            if kind == "redirect":  # case-insensitive here: asking more is always safe
                self.record(rest, depth + 1)
            elif kind == "exp":  # pyspf fetches it whatever the result; %{p} in it asks PTR
                self.texts(rest)
            return
        target = rest.split("/", 1)[0] if separator == ":" else ""
        target = target or domain
        if kind == "ptr":
            raise _Unavailable("ptr asks for the client's name")
        if kind == "a":
            self.address(target)
        elif kind == "mx":
            self.exchanges(target)
        elif kind == "include":
            self.record(target, depth + 1)
        elif kind == "exists":
            self.ask(target, "A")

    def exchanges(self, name: str) -> None:
        """The MX records of name, then their exchanges' addresses (only the first MX_LIMIT
        in a collecting walk: pyspf gives permerror beyond them)."""
        for number, record in enumerate(self.ask(name, "MX")):
            exchange = str(typing.cast(tuple[int, str], record.value)[1])
            if not self.collect or number < MX_LIMIT:
                self.gather(self.address, exchange)

    def address(self, name: str) -> None:
        """A/AAAA as pyspf asks them for the client's family (with the A fallback of IPv6
        void fairness when there is no AAAA)."""
        if not self.ask(name, self.address_type) and self.ipv6_void_fairness:
            self.ask(name, "A")


class SnapshotResolver:
    """A Resolver answering from a snapshot alone, counted as the DNS cache would count it.

    An answer in fetched was prefetched for this very request: it is not a cache hit (its miss
    was counted when it was asked), and the trace shows it as fetched.
    """

    def __init__(
        self,
        answers: dict[AnswerKey, DnsAnswer],
        observer: Observer | None = None,
        fetched: typing.Collection[AnswerKey] = frozenset(),
    ) -> None:
        self.answers = answers
        self.observer: Observer = observer or NullObserver()
        self.fetched = fetched

    def query(self, name: str, rdtype: str, deadline: float) -> DnsAnswer:
        """The snapshot's answer; OutsideSnapshot if it has none (a bug, logged by the caller)."""
        key = (name.lower().rstrip("."), rdtype)
        answer = self.answers.get(key)
        if answer is None:
            raise OutsideSnapshot(f"{name}/{rdtype} is not in the snapshot")
        if key in self.fetched:
            return dataclasses.replace(answer, from_cache=False)
        self.observer.dns_cache_lookup(hit=True)
        return answer
