"""A macro-free record tree read once into a map that answers any client address without pyspf.

Without macros and ptr (RFC 7208 §7, §5.5), check_host() is a function of the client address
and the DNS answers alone. evaluation.mapcompiler reads each record of a domain's tree once,
from the snapshot of cached answers pyspf would run over (evaluation.snapshot), each term with
pyspf's own parser, and keeps for every term the networks it matches, the questions pyspf asks
for it and what it spends against the limits of §4.6.4 (10 DNS-querying terms, 2 void
lookups). AddressMap.check() then walks those terms for one client as pyspf's check0() does.

A map answers only where it is exact. Every error (syntax, a limit exceeded, an include without
a record, more than 10 MX exchanges) and a fail that an exp= modifier may explain are left to
pyspf: check() gives None there, and the evaluator runs pyspf over the snapshot. A tree a map
cannot hold (ptr, macros, CNAMEs, a name pyspf would not ask for) has no map.
tests/evaluation/test_addressmap.py holds maps to pyspf on the RFC 7208 suite, the benchmark's
world and generated trees.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from spfpolicy.evaluation.snapshot import LOOKUP_LIMIT
from spfpolicy.evaluation.trace import LookupTrace
from spfpolicy.resolver.answers import AnswerKey


class _Unanswered(Exception):  # noqa: N818 - ends one walk, never leaves this module
    """This client reaches what only pyspf reports: an error, or an explanation."""


@dataclass(frozen=True, slots=True)
class Question:
    """One question pyspf asks on the way, with what LookupTrace notes of its answer."""

    key: AnswerKey
    noted: tuple[str, str, str]  # as LookupTrace notes it: name, type, what was found
    fetched: tuple[str, str, str]  # as noted when it was prefetched for this very request
    from_cache: bool
    records: bool  # False: pyspf keeps no empty answer, and asks it again when met again
    expires: float


@dataclass(frozen=True, slots=True)
class Term:
    """One mechanism, as evaluating it for a client of this map's family goes."""

    text: str  # as written: pyspf's `mechanism` when it matches at the top level
    result: str  # its qualifier's result
    counts: bool  # a DNS-querying term (RFC 7208 §4.6.4)
    questions: tuple[Question, ...] = ()
    voids: int = 0  # void lookups its questions make
    ranges: tuple[tuple[int, int], ...] = ()  # the client addresses it matches
    target: str = ""  # an include: the domain whose record decides
    refused: bool = False  # pyspf raises on reaching it (bad address data, too many MX)


@dataclass(frozen=True, slots=True)
class Record:
    """One domain's SPF record as check0() evaluates it."""

    terms: tuple[Term, ...]
    opening: tuple[Question, ...]  # exp= targets, fetched before any term is evaluated
    redirect: str  # the redirect= target, "" for none (counted on entering the record)
    redirect_question: tuple[Question, ...]


@dataclass(frozen=True, slots=True)
class MapAnswer:
    """What check() found for one client: pyspf's result and mechanism, and its trace."""

    result: str
    mechanism: str
    trace: LookupTrace
    cache_lookups: int  # questions answered from the DNS cache (not prefetched for this request)


@dataclass(frozen=True, slots=True)
class AddressMap:
    """A domain's record tree for clients of one address family (see the module)."""

    ipv6: bool
    opening: Question  # the domain's own TXT question
    records: Mapping[str, Record | None]  # by domain; None: reaching it is a permerror
    top: str  # the domain's key in records; "" when it publishes no SPF record ("none")
    explains: bool  # some record has exp=: a fail's explanation is pyspf's to give
    no_mail: bool  # LookupTrace.no_mail_record of the domain's record
    expires: float  # when the first answer read stops being valid

    def check(
        self, client: str, void_limit: int, fetched: Collection[AnswerKey] = frozenset()
    ) -> MapAnswer | None:
        """check_host()'s result for this client, None where pyspf must give it. fetched are
        the questions prefetched for this request: in the trace they are not cache hits."""
        address = _client_number(client, self.ipv6)
        if address is None:
            return None
        walk = _Walk(self, address, void_limit)
        walk.ask((self.opening,))
        try:
            result, mechanism = walk.record(self.top) if self.top else ("none", "")
        except _Unanswered:
            return None
        if result == "fail" and self.explains:
            return None
        trace = LookupTrace(over_snapshot=True, no_mail_record=self.no_mail)
        lookups = 0
        questions = trace.questions
        for question in walk.asked:
            if fetched and question.key in fetched:
                questions.append(question.fetched)
                continue
            lookups += 1
            if question.from_cache:
                trace.cache_hits += 1
            questions.append(question.noted)
        trace.expiries.append(min(question.expires for question in walk.asked))
        return MapAnswer(result, mechanism, trace, lookups)


class _Walk:
    """One client's way through a map, counted as pyspf counts it."""

    __slots__ = ("asked", "client", "held", "lookups", "map", "void_limit", "voids")

    def __init__(self, tree: AddressMap, client: int, void_limit: int) -> None:
        self.map = tree
        self.client = client
        self.void_limit = void_limit
        self.lookups = 0
        self.voids = 0
        self.asked: list[Question] = []
        self.held: set[AnswerKey] = set()  # answers with records, which pyspf keeps and reuses

    def ask(self, questions: tuple[Question, ...]) -> None:
        held = self.held
        for question in questions:
            if question.key not in held:
                self.asked.append(question)
                if question.records:
                    held.add(question.key)

    def count(self) -> None:
        self.lookups += 1
        if self.lookups > LOOKUP_LIMIT:
            raise _Unanswered

    def matches(self, term: Term) -> bool:
        """Whether the client matches term, its questions asked; an include: asks its
        record, which matches on pass (RFC 7208 §5.2)."""
        if term.target:
            return self.record(term.target)[0] == "pass"
        if term.voids:
            self.voids += term.voids
            if self.voids > self.void_limit:
                raise _Unanswered
        if term.refused:
            raise _Unanswered
        client = self.client
        return any(low <= client <= high for low, high in term.ranges)

    def record(self, name: str) -> tuple[str, str]:
        """check0() of name's record: (result, the matching term or "")."""
        record = self.map.records.get(name)
        if record is None:
            raise _Unanswered
        self.ask(record.opening)
        if record.redirect:
            self.count()  # pyspf counts redirect= while reading the modifiers
        for term in record.terms:
            if term.counts:
                self.count()
            if term.questions:
                self.ask(term.questions)
            if self.matches(term):
                return term.result, term.text
        if record.redirect:
            self.ask(record.redirect_question)
            return self.record(record.redirect)
        return "neutral", ""


def _client_number(client: str, ipv6: bool) -> int | None:
    """The client address as a number, if it is of the family asked (a mapped IPv4 address
    is IPv4, as pyspf's set_ip takes it); None for anything else, left to pyspf."""
    try:
        if not ipv6 and ":" not in client:
            packed = socket.inet_pton(socket.AF_INET, client)
            # inet_pton and pyspf's ipaddress may differ on odd spellings: only the canonical
            # one is taken here.
            return (
                int.from_bytes(packed)
                if socket.inet_ntop(socket.AF_INET, packed) == client
                else None
            )
        address = ipaddress.ip_address(client)
    except (OSError, ValueError):
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return int(address) if (address.version == 6) == ipv6 else None
