"""An SPF record parsed into terms, each with its column (RFC 7208 §4.6.1, §5, §6 and §12).

Pure: text in, terms and syntax problems out. A term with a problem is left out of the terms,
so that what follows (counting, the tree walk) sees only what a lenient reader would evaluate;
the problem alone already makes the record a permerror (§4.6).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from spfpolicy.lint.domainspec import Problem, domain_spec_problems, has_macro, macro_problems
from spfpolicy.lint.rules import Code

VERSION = "v=spf1"  # §4.5: the record begins with it, then a space or nothing
MECHANISMS = ("all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists")  # §5
DNS_MECHANISMS = frozenset({"include", "a", "mx", "ptr", "exists"})  # §4.6.4, with redirect=
QUALIFIERS = frozenset("+-?~")
DOMAIN_MODIFIERS = frozenset({"redirect", "exp"})  # §6: each at most once, a domain-spec
MAX_IP4_PREFIX = 32
MAX_IP6_PREFIX = 128
# Misspellings seen in published records, and the mechanism meant (pyspf knows some as well).
_MISSPELLINGS = {"ip": "ip4", "ipv4": "ip4", "ipv6": "ip6", "prt": "ptr", "exist": "exists"}

_MODIFIER = re.compile(r"([a-z][a-z0-9._-]*)=", re.IGNORECASE | re.ASCII)  # §12: name "="
_DUAL_CIDR = re.compile(r"(?:/(?P<ip4>[0-9]+))?(?://(?P<ip6>[0-9]+))?$")
_QNUM = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IP4 = re.compile(rf"{_QNUM}(?:\.{_QNUM}){{3}}")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TermKind(StrEnum):
    """A directive's mechanism, or a modifier (§4.6.1)."""

    MECHANISM = "mechanism"
    MODIFIER = "modifier"


@dataclass(frozen=True, slots=True)
class Term:
    """One term as written, where it is, and what it names."""

    text: str
    column: int  # 1-based, in the whole record
    kind: TermKind
    name: str  # lower case: "include", "ip4", "redirect", or an unknown modifier's name
    qualifier: str = "+"  # also when none is written (§4.6.2)
    target: str | None = None  # its domain-spec as written; None: the current domain
    network: Network | None = None  # ip4: and ip6:
    host_bits: bool = False  # the address has bits set beyond the prefix length

    @property
    def queries_dns(self) -> bool:
        """Whether it counts against the limit of 10 DNS-querying terms (§4.6.4)."""
        if self.kind is TermKind.MODIFIER:
            return self.name == "redirect"
        return self.name in DNS_MECHANISMS

    @property
    def has_macro(self) -> bool:
        """Whether its target is expanded per message, so that no lookup can be made ahead."""
        return self.target is not None and has_macro(self.target)


@dataclass(frozen=True, slots=True)
class ParsedRecord:
    """A record's terms in order, and its syntax problems."""

    text: str
    terms: tuple[Term, ...]
    problems: tuple[Problem, ...]

    @property
    def mechanisms(self) -> tuple[Term, ...]:
        """The directives, in the order a receiver tests them (§4.6.2)."""
        return tuple(term for term in self.terms if term.kind is TermKind.MECHANISM)

    def modifier(self, name: str) -> Term | None:
        """The first modifier of that name, if any."""
        return next((t for t in self.terms if t.kind is TermKind.MODIFIER and t.name == name), None)

    @property
    def has_all(self) -> bool:
        """Whether an all mechanism ends the evaluation, so that redirect= is ignored (§6.1)."""
        return any(term.name == "all" for term in self.mechanisms)


def parse_record(text: str) -> ParsedRecord:
    """Parse one record's text (its strings joined, §3.3); never raises."""
    after = text[len(VERSION) : len(VERSION) + 1]
    if text[: len(VERSION)].lower() != VERSION or after not in ("", " "):
        shown = text[:20] + ("..." if len(text) > 20 else "")
        message = f"{shown!r} does not begin with {VERSION!r} and a space"
        return ParsedRecord(text, (), (Problem(Code.BAD_VERSION, 1, message),))
    terms: list[Term] = []
    problems: list[Problem] = []
    for column, token in _tokens(text, len(VERSION)):
        term, found = parse_term(token, column)
        problems.extend(found)
        if term is not None and not found:
            terms.append(term)
    problems.extend(_repeated_modifiers(terms))
    problems.sort(key=lambda problem: problem.column)
    return ParsedRecord(text, tuple(terms), tuple(problems))


def _tokens(text: str, start: int) -> list[tuple[int, str]]:
    """The terms between single or repeated spaces (§12: 1*SP), with their 1-based columns."""
    found = []
    for match in re.finditer(r"[^ ]+", text[start:]):
        found.append((start + match.start() + 1, match.group()))
    return found


def _repeated_modifiers(terms: list[Term]) -> list[Problem]:
    seen: set[str] = set()
    problems = []
    for term in terms:
        if term.kind is TermKind.MODIFIER and term.name in DOMAIN_MODIFIERS:
            if term.name in seen:
                message = f"a second {term.name}= ({term.text}): it may appear once"
                problems.append(Problem(Code.DUPLICATE_MODIFIER, term.column, message))
            seen.add(term.name)
    return problems


def parse_term(token: str, column: int) -> tuple[Term | None, list[Problem]]:
    """One term: a modifier (name=value) or a directive ([qualifier] mechanism)."""
    bad = [
        Problem(Code.BAD_CHARACTER, column + i, f"{char!r} is not a visible ASCII character")
        for i, char in enumerate(token)
        if not "\x21" <= char <= "\x7e"
    ]
    if bad:
        return None, bad[:1]
    modifier = _MODIFIER.match(token)
    if modifier is not None:
        return _modifier(token, column, modifier.group(1).lower(), modifier.end())
    equals = token.find("=")
    if equals >= 0 and not set(token[:equals]) & {":", "/"}:
        return None, [_bad_modifier(token, column, token[:equals])]
    return _directive(token, column)


def _bad_modifier(token: str, column: int, name: str) -> Problem:
    if not name:
        return Problem(Code.BAD_MODIFIER, column, f"{token!r}: a modifier needs a name before '='")
    if name[0] in QUALIFIERS and _MODIFIER.match(token[1:]):
        return Problem(Code.BAD_MODIFIER, column, f"{token!r}: a modifier takes no qualifier")
    message = f"{name!r} is no modifier name (a letter, then letters, digits, '-', '_', '.')"
    return Problem(Code.BAD_MODIFIER, column, message)


def _modifier(token: str, column: int, name: str, value_at: int) -> tuple[Term, list[Problem]]:
    value = token[value_at:]
    term = Term(token, column, TermKind.MODIFIER, name)
    if name not in DOMAIN_MODIFIERS:
        return term, macro_problems(value, column + value_at)  # §6: name=macro-string
    problems = _domain_only(name, value, column + value_at)
    return Term(token, column, TermKind.MODIFIER, name, target=value), problems


def _domain_only(name: str, spec: str, column: int) -> list[Problem]:
    """The problems of a domain-spec that takes no prefix length (include, exists, ptr, ...)."""
    if not spec:
        return [Problem(Code.BAD_MECHANISM, column, f"{name} needs a domain")]
    cidr = _DUAL_CIDR.search(spec)
    if cidr and cidr.start() and cidr.group() and not domain_spec_problems(spec[: cidr.start()], 1):
        message = f"{name} takes no prefix length ({cidr.group()})"
        return [Problem(Code.BAD_MECHANISM, column + cidr.start(), message)]
    return domain_spec_problems(spec, column)


def _directive(token: str, column: int) -> tuple[Term | None, list[Problem]]:
    qualifier = token[0] if token[0] in QUALIFIERS else ""
    body = token[len(qualifier) :]
    name_end = min((i for i in (body.find(":"), body.find("/")) if i >= 0), default=len(body))
    name, rest = body[:name_end].lower(), body[name_end:]
    if name not in MECHANISMS:
        return None, [_unknown_mechanism(token, body, column)]
    term = Term(token, column, TermKind.MECHANISM, name, qualifier or "+")
    parse = _ARGUMENT_PARSERS.get(name, _domain_argument)
    return parse(term, rest, column + len(qualifier) + name_end)


def _all(term: Term, rest: str, column: int) -> tuple[Term | None, list[Problem]]:
    """all takes nothing (§5.1)."""
    if rest:
        return None, [_problem(column, f"all takes nothing after it ({rest!r})")]
    return term, []


def _domain_argument(term: Term, rest: str, column: int) -> tuple[Term | None, list[Problem]]:
    """include and exists: ":" domain-spec; ptr: [":" domain-spec] (§5.2, §5.5, §5.7)."""
    name = term.name
    if not rest and name == "ptr":
        return term, []
    if rest.startswith("/"):
        return None, [_problem(column, f"{name} takes no prefix length ({rest})")]
    if not rest.startswith(":"):
        return None, [_problem(column, f"{name} needs ':' and a domain")]
    target = rest[1:]
    return _with_target(term, target), _domain_only(name, target, column + 1)


def _problem(column: int, message: str) -> Problem:
    return Problem(Code.BAD_MECHANISM, column, message)


def _with_target(term: Term, target: str) -> Term:
    return Term(term.text, term.column, term.kind, term.name, term.qualifier, target)


def _unknown_mechanism(token: str, body: str, column: int) -> Problem:
    name = re.split(r"[:/]", body, maxsplit=1)[0].lower()
    guess = _MISSPELLINGS.get(name) or next(
        iter(difflib.get_close_matches(name, MECHANISMS, n=1, cutoff=0.75)), None
    )
    hint = f"; did you mean {guess}?" if guess else ""
    if _IP4.fullmatch(body.split("/", maxsplit=1)[0]):
        hint = f"; did you mean ip4:{body}?"
    elif name in DOMAIN_MODIFIERS:
        hint = f"; did you mean {name}=?"
    return Problem(Code.UNKNOWN_MECHANISM, column, f"{token!r} is no mechanism{hint}")


def _dual_cidr(term: Term, rest: str, column: int) -> tuple[Term | None, list[Problem]]:
    """a and mx: [":" domain-spec] [dual-cidr-length] (§5.3, §5.4)."""
    cidr = _DUAL_CIDR.search(rest)
    assert cidr is not None  # the pattern matches the empty string at the end
    problems = [
        problem
        for digits, limit, offset in (
            (cidr["ip4"], MAX_IP4_PREFIX, cidr.start("ip4") - 1),
            (cidr["ip6"], MAX_IP6_PREFIX, cidr.start("ip6") - 2),
        )
        if digits is not None
        for problem in _prefix_problems(digits, limit, column + offset)
    ]
    spec = rest[: cidr.start()]
    if not spec:
        return term, problems
    if not spec.startswith(":"):
        message = f"{term.name} takes ':domain' and '/24//64', not {spec!r}"
        return None, [_problem(column, message)]
    problems.extend(domain_spec_problems(spec[1:], column + 1))
    return _with_target(term, spec[1:]), problems


def _prefix_problems(digits: str, limit: int, column: int) -> list[Problem]:
    """§5.6 ip4-cidr-length / ip6-cidr-length: 0 to 32 or 128, no leading zero; column is
    that of the slash (the first of two in a dual-cidr-length)."""
    if (digits.startswith("0") and digits != "0") or int(digits) > limit:
        family = "IPv4" if limit == MAX_IP4_PREFIX else "IPv6"
        message = f"/{digits}: an {family} prefix length is 0 to {limit}, without leading zeros"
        return [Problem(Code.BAD_CIDR, column, message)]
    return []


def _network(term: Term, rest: str, column: int) -> tuple[Term | None, list[Problem]]:
    """ip4:network[/len] and ip6:network[/len] (§5.6)."""
    if not rest.startswith(":") or len(rest) == 1:
        return None, [_problem(column, f"{term.name} needs ':' and an address")]
    value = rest[1:]
    if "//" in value:
        message = f"{term.name} takes one prefix length, not a dual one"
        return None, [Problem(Code.BAD_CIDR, column + 1 + value.index("//"), message)]
    address, slash, digits = value.partition("/")
    limit = MAX_IP4_PREFIX if term.name == "ip4" else MAX_IP6_PREFIX
    if slash and not digits.isdigit():
        return None, [
            Problem(Code.BAD_CIDR, column + 1 + len(address), f"'/{digits}' is no length")
        ]
    problems = _prefix_problems(digits, limit, column + 1 + len(address)) if slash else []
    parsed = _address(term.name, address)
    if parsed is None:
        kind = "IPv4" if term.name == "ip4" else "IPv6"
        problems.append(
            Problem(Code.BAD_NETWORK, column + 1, f"{address!r} is not an {kind} address")
        )
    if problems or parsed is None:
        return None, problems
    network = ipaddress.ip_network(f"{parsed}/{digits or limit}", strict=False)
    host_bits = network.network_address != parsed
    return Term(
        term.text, term.column, term.kind, term.name, term.qualifier, None, network, host_bits
    ), []


_ARGUMENT_PARSERS: dict[str, Callable[[Term, str, int], tuple[Term | None, list[Problem]]]] = {
    "all": _all,
    "a": _dual_cidr,
    "mx": _dual_cidr,
    "ip4": _network,
    "ip6": _network,
}


def _address(name: str, text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if name == "ip4":
        return ipaddress.IPv4Address(text) if _IP4.fullmatch(text) else None
    if not re.fullmatch(r"[0-9a-f:.]+", text, re.IGNORECASE):  # no zone index, no brackets
        return None
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        return None
