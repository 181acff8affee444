"""Reading a domain's record tree out of a snapshot of cached DNS into an AddressMap.

Each record is read as pyspf's check0() reads it (evaluation.termparser: pyspf's own term parser),
and each mechanism for a client of one address family: the questions pyspf would ask for it,
in its order, the void lookups they make, the networks it matches. What a map cannot answer
exactly for every client makes the whole tree unmappable: ptr (it asks for the client's
name), a macro, a CNAME or a record for another name in an answer (pyspf keeps those and asks
differently), a name pyspf would not ask. What pyspf refuses only when reached (a syntax error,
a record missing or doubled, bad address data) is marked so that AddressMap.check() leaves
those clients to pyspf.
"""

from __future__ import annotations

import ipaddress
import typing
from collections.abc import Mapping

from spfpolicy.evaluation.addressmap import AddressMap, Question, Record, Term
from spfpolicy.evaluation.query import SPF_RECORD, lower_modifier_names
from spfpolicy.evaluation.snapshot import MX_LIMIT
from spfpolicy.evaluation.termparser import TermError, TermParser
from spfpolicy.evaluation.trace import LookupTrace, answer_summary
from spfpolicy.resolver.answers import AnswerKey, DnsAnswer

_ALL4 = ((0, 2**32 - 1),)
_ALL6 = ((0, 2**128 - 1),)


class _Unmappable(Exception):  # noqa: N818 - ends a compilation, never leaves this module
    """The tree holds something a map cannot answer exactly for every client."""


def compile_map(
    answers: Mapping[AnswerKey, DnsAnswer], domain: str, *, ipv6: bool, void_fairness: bool
) -> AddressMap | None:
    """The map of domain's record tree from a snapshot of its answers, or None when no map
    can answer it exactly (see the module)."""
    try:
        return _Compiler(answers, ipv6, void_fairness).tree(domain)
    except _Unmappable:
        return None


class _Compiler:
    """Reads one tree out of a snapshot."""

    def __init__(
        self, answers: Mapping[AnswerKey, DnsAnswer], ipv6: bool, void_fairness: bool
    ) -> None:
        self.answers = answers
        self.ipv6 = ipv6
        self.address_type = "AAAA" if ipv6 else "A"
        self.void_fairness = ipv6 and void_fairness
        self.parser = TermParser(ipv6)
        self.records: dict[str, Record | None] = {}
        self.explains = False
        self.expires = float("inf")

    def tree(self, domain: str) -> AddressMap:
        name = _record_name(domain)
        opening = self.question(name, "TXT")
        answer = self.answers[opening.key]
        texts = _texts(answer)
        found = sum(1 for text in texts if SPF_RECORD.match(text))
        if found > 1:
            raise _Unmappable("two records: permerror")
        top = name if found else ""
        pending = [name] if found else []
        while pending:
            name = pending.pop()
            if name not in self.records:
                self.records[name] = record = self.record(name)
                if record is not None:
                    pending.extend(term.target for term in record.terms if term.target)
                    pending.extend([record.redirect] if record.redirect else [])
        no_mail = LookupTrace()
        no_mail.record(opening.key[0], "TXT", answer)
        return AddressMap(
            self.ipv6,
            opening,
            self.records,
            top,
            self.explains,
            no_mail.no_mail_record,
            self.expires,
        )

    def answer(self, name: str, rdtype: str) -> DnsAnswer:
        answer = self.answers.get((name, rdtype))
        if answer is None:
            raise _Unmappable(f"{name}/{rdtype} is not in the snapshot")
        if any(record.rdtype != rdtype or record.name != name for record in answer.records):
            raise _Unmappable("a CNAME, or a record for another name")  # pyspf caches those
        self.expires = min(self.expires, answer.expires)
        return answer

    def question(self, name: str, rdtype: str) -> Question:
        answer = self.answer(name, rdtype)
        found = answer_summary(answer)
        cached = f"{found} (cached)" if answer.from_cache else found
        return Question(
            (name, rdtype),
            (name, rdtype, cached),
            (name, rdtype, found),
            answer.from_cache,
            bool(answer.records),
            answer.expires,
        )

    def record(self, name: str) -> Record | None:
        """name's record, None when reaching it is a permerror (none, two, not ASCII, syntax)."""
        spf = [text for text in _texts(self.answer(name, "TXT")) if SPF_RECORD.match(text)]
        if len(spf) != 1:
            return None
        if b"%" in spf[0]:
            raise _Unmappable("a macro")
        try:
            text = lower_modifier_names(spf[0].decode("ascii"))
        except UnicodeDecodeError:
            return None
        try:
            return self.terms(text or "", name)
        except TermError:
            return None

    def terms(self, text: str, domain: str) -> Record:
        """check0()'s reading of a record, then each mechanism for this family."""
        mechanisms: list[tuple[str, str, str, int, str]] = []
        modifiers: list[str] = []
        opening: list[Question] = []
        redirect = ""
        for word in (word for word in text.split(" ")[1:] if word):
            modifier = self.parser.modifier(word)
            if modifier is None:
                mechanisms.append((word, *self.parser.mechanism(word, domain)))
                continue
            name, value = modifier
            if name in modifiers:
                raise TermError(f"{name}= more than once")
            modifiers.append(name)
            if name == "exp":
                if not value:
                    raise TermError("exp= without a domain")
                self.explains = True
                target = self.parser.domain_spec(value, domain)
                if target:
                    opening.append(self.question(_asked_name(target), "TXT"))
            elif name == "redirect":
                redirect = self.parser.domain_spec(value, domain)
                if not redirect:
                    raise TermError("redirect= without a domain")
                redirect = _record_name(redirect)
        terms = [self.term(*mechanism) for mechanism in mechanisms]
        redirect_question = (self.question(redirect, "TXT"),) if redirect else ()
        return Record(
            tuple(term for term in terms if term is not None),
            tuple(opening),
            redirect,
            redirect_question,
        )

    def term(self, text: str, kind: str, target: str, cidr: int, result: str) -> Term | None:
        """One mechanism for this family; None for one that never matches it (ip4 for IPv6)."""
        everyone = _ALL6 if self.ipv6 else _ALL4
        if kind in ("ip4", "ip6"):
            if (kind == "ip6") != self.ipv6:
                return None
            ranges, refused = self.ranges([target], cidr)
            term = Term(text, result, False, ranges=ranges, refused=refused)
        elif kind == "all":
            term = Term(text, result, False, ranges=everyone)
        elif kind == "include":
            name = _record_name(target)
            term = Term(text, result, True, (self.question(name, "TXT"),), target=name)
        elif kind == "exists":
            question = self.question(_asked_name(target), "A")
            found = question.records
            term = Term(
                text, result, True, (question,), 0 if found else 1, everyone if found else ()
            )
        elif kind == "a":
            questions, voids, values = self.addresses(target)
            ranges, refused = self.ranges(values, cidr)
            term = Term(text, result, True, tuple(questions), voids, ranges, refused=refused)
        elif kind == "mx":
            term = self.exchanges(text, result, target, cidr)
        else:
            raise _Unmappable(f"the {kind} mechanism")  # ptr asks for the client's own name
        return term

    def exchanges(self, text: str, result: str, target: str, cidr: int) -> Term:
        """An mx term: the MX question, then each exchange's addresses (pyspf's dns_mx)."""
        name = _asked_name(target)
        answer = self.answer(name, "MX")
        questions = [self.question(name, "MX")]
        voids = 0 if answer.records else 1
        exchanges = sorted(typing.cast(tuple[int, str], record.value) for record in answer.records)
        if len(exchanges) > MX_LIMIT:
            return Term(text, result, True, tuple(questions), voids, refused=True)
        values: list[str] = []
        for _preference, exchange in exchanges:
            asked, void, found = self.addresses(str(exchange))
            questions.extend(asked)
            voids += void
            values.extend(found)
        ranges, refused = self.ranges(values, cidr)
        return Term(text, result, True, tuple(questions), voids, ranges, refused=refused)

    def addresses(self, target: str) -> tuple[list[Question], int, list[str]]:
        """The questions pyspf asks for a name's addresses, the void lookups they make, and
        the addresses (with the A fallback of IPv6 void fairness)."""
        name = _asked_name(target)
        question = self.question(name, self.address_type)
        values = [str(record.value) for record in self.answers[question.key].records]
        if values or not self.void_fairness:
            return [question], 0 if values else 1, values
        fallback = self.question(name, "A")
        return [question, fallback], 0 if fallback.records else 1, []

    def ranges(self, values: list[str], cidr: int) -> tuple[tuple[tuple[int, int], ...], bool]:
        """The client addresses that values' networks of that length hold (cidrmatch), and
        whether pyspf refuses one of the values."""
        ranges = []
        try:
            for value in values:
                network = ipaddress.ip_network(value).supernet(new_prefix=cidr)
                if (network.version == 6) != self.ipv6:
                    raise _Unmappable("an address of the other family")
                ranges.append((int(network.network_address), int(network.broadcast_address)))
        except ValueError:
            return (), True
        return tuple(ranges), False


def _texts(answer: DnsAnswer) -> list[bytes]:
    """The TXT strings of an answer, each joined, as pyspf's dns_txt gives them."""
    values = (typing.cast(tuple[bytes, ...], record.value) for record in answer.records)
    return [b"".join(value) for value in values if value]


def _record_name(domain: str) -> str:
    """A domain whose record is fetched, as pyspf's dns_spf asks it; one it would not ask
    (an empty or over-long label, a final dot) cannot be mapped."""
    if not all(0 < len(label) < 64 for label in domain.split(".")):
        raise _Unmappable(f"{domain!r} as a record's domain")
    return domain.lower()


def _asked_name(name: str) -> str:
    """A name as pyspf's dns() asks it: one final dot dropped, lower case; one it would not
    ask (an empty or over-long label) cannot be mapped."""
    name = name.removesuffix(".")
    if not name or not all(0 < len(label) < 64 for label in name.split(".")):
        raise _Unmappable(f"{name!r} as a DNS name")
    return name.lower()
