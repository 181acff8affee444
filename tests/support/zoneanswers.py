"""Zone data (the RFC 7208 suite's format) answered in memory, through the daemon's own reply
parsing: a Resolver that asks it, and a DNS cache that holds every answer already.

Each question is made into a DNS message, answered by the test DNS server's Responder and read
back by spfpolicy.resolver.stub, so the answers are those the daemon gets from a real server
on loopback, without a socket: for unit tests that compare evaluation paths.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from spfpolicy.resolver.answers import AnswerKey, DnsAnswer, DnsError, DnsFailure
from spfpolicy.resolver.stub import check_rcode, make_question, parse_reply, to_answer
from tests.support.dnsreplies import Responder, Transport
from tests.support.zones import Zone

FOREVER = 1e12  # an expiry no test reaches


class ZoneAnswers:
    """Resolver and AnswerCache over zone data; a TIMEOUT entry is a timeout, and not cached."""

    def __init__(self, zonedata: Mapping[str, Any], *, now: float | None = None) -> None:
        """now: answers expire at now + their TTL; None: never."""
        self.responder = Responder(Zone.from_zonedata(zonedata), memoise=False)
        self.asked: list[AnswerKey] = []
        self.now = now
        self.answers: dict[AnswerKey, DnsAnswer | DnsError] = {}

    def query(self, name: str, rdtype: str, deadline: float) -> DnsAnswer:
        """The answer, as the stub resolver would read it from the wire; DnsError on timeout.
        The same each time it is asked (dnspython shuffles the records of each reply)."""
        self.asked.append((name, rdtype))
        key = (name.lower(), rdtype)
        known = self.answers.get(key)
        if known is None:
            known = self.answers[key] = self._ask(name, rdtype)
        if isinstance(known, DnsError):
            raise known
        return known

    def _ask(self, name: str, rdtype: str) -> DnsAnswer | DnsError:
        try:
            return self._reply(name, rdtype)
        except DnsError as error:
            return error

    def _reply(self, name: str, rdtype: str) -> DnsAnswer:
        question = make_question(name, rdtype)
        if isinstance(question, DnsAnswer):
            return dataclasses.replace(question, expires=self._expiry(question.ttl))
        wire = self.responder.respond(question.to_wire(), Transport.TCP)
        if wire is None:
            raise DnsError(DnsFailure.TIMEOUT, f"no reply for {name}/{rdtype}")
        reply = parse_reply(wire)
        if reply is None:
            raise DnsError(DnsFailure.ERROR, f"garbage for {name}/{rdtype}")
        check_rcode(reply, question, "memory")
        answer = to_answer(reply, question)
        return dataclasses.replace(answer, expires=self._expiry(answer.ttl))

    def _expiry(self, ttl: float) -> float:
        return FOREVER if self.now is None else self.now + ttl

    def cached(self, name: str, rdtype: str) -> DnsAnswer | None:
        """Every answer is cached, except a failure."""
        try:
            answer = self.query(name, rdtype, FOREVER)
        except DnsError:
            return None
        return dataclasses.replace(answer, from_cache=True)

    def prefetch(
        self, keys: Iterable[AnswerKey], deadline: float, ready: Callable[[], None]
    ) -> bool:
        """Nothing is ever missing that asking again would bring."""
        return False
