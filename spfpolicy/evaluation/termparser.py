"""pyspf's own reading of a record's terms, without DNS (for evaluation.mapcompiler)."""

from __future__ import annotations

from spfpolicy.evaluation.query import MODIFIER, PyspfPermError, PyspfQuery
from spfpolicy.model import SpfPolicyError


class TermError(SpfPolicyError):
    """pyspf refuses a term of a record: check_host() gives permerror on reaching the record."""


class TermParser:
    """pyspf's own reading of a record's terms for a client of one address family: what its
    check0() does before evaluating anything, without DNS (for evaluation.addressmap)."""

    def __init__(self, ipv6: bool) -> None:
        client = "2001:db8::1" if ipv6 else "192.0.2.1"
        self._query = PyspfQuery(i=client, s="", h="parser.invalid", strict=True, querytime=0)

    @staticmethod
    def modifier(term: str) -> tuple[str, str] | None:
        """(name, value) when pyspf reads term as a modifier, else None (a mechanism)."""
        parts = MODIFIER.split(term)[1:]
        return (parts[0], parts[1]) if len(parts) == 2 else None

    def mechanism(self, term: str, domain: str) -> tuple[str, str, int, str]:
        """(kind, target, CIDR length for this family, result) of a term of domain's record,
        as pyspf's validate_mechanism gives them; TermError when pyspf refuses it."""
        self._query.d = domain
        try:
            _text, kind, target, cidr, result = self._query.validate_mechanism(term)
        except PyspfPermError as error:
            raise TermError(str(error)) from None
        return str(kind), str(target), int(cidr), str(result)

    def domain_spec(self, value: str, domain: str) -> str:
        """A modifier's domain-spec as pyspf reads it ("" for none); TermError if refused."""
        self._query.d = domain
        try:
            return str(self._query.expand_domain(value) if value else "")
        except PyspfPermError as error:
            raise TermError(str(error)) from None
