"""The address maps kept (evaluation.addressmap), by domain and client address family.

A map lives as long as every DNS answer it was read from; a tree that no map can answer exactly
is remembered as long, so that it is not read again for every client. Reading a tree costs
about what one pyspf evaluation does, so a domain's first client is left to pyspf and the map
is read for its second: a flood of domains seen once each pays for no map.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from spfpolicy.evaluation.addressmap import AddressMap, MapAnswer
from spfpolicy.evaluation.caches import ExpiringCache
from spfpolicy.evaluation.mapcompiler import compile_map
from spfpolicy.model import NullObserver, Observer
from spfpolicy.resolver.answers import AnswerKey, DnsAnswer

MapKey = tuple[str, bool]  # the domain as check_host() starts from it, and whether IPv6


class Unmappable:
    """Kept for a tree that no address map answers exactly; `outcome` is how it is counted."""

    def __init__(self, outcome: str) -> None:
        self.outcome = outcome


UNMAPPABLE = Unmappable("unmapped")
FIRST_CLIENT = Unmappable("new")  # the domain's first client: no map read yet


class AddressMaps:
    """Address maps by domain and family, each kept while every answer it read is valid."""

    def __init__(
        self,
        size: int,
        *,
        void_lookup_limit: int,
        ipv6_void_fairness: bool = False,
        observer: Observer | None = None,
    ) -> None:
        self._maps: ExpiringCache[MapKey, AddressMap | Unmappable] = ExpiringCache(size)
        self._seen: ExpiringCache[MapKey, bool] = ExpiringCache(size)  # one client so far
        self.void_lookup_limit = void_lookup_limit
        self.ipv6_void_fairness = ipv6_void_fairness
        self.observer: Observer = observer or NullObserver()

    def __len__(self) -> int:
        """The maps (and unmappable trees) held."""
        return len(self._maps)

    def get(self, domain: str, ipv6: bool) -> AddressMap | Unmappable | None:
        """The map kept for domain and family, UNMAPPABLE, or None when none is kept."""
        return self._maps.get((domain, ipv6))

    def build(
        self, domain: str, ipv6: bool, answers: Mapping[AnswerKey, DnsAnswer]
    ) -> AddressMap | Unmappable:
        """Read domain's tree out of a snapshot of its answers, and keep what it gave; for the
        domain's first client, only note that it came (FIRST_CLIENT)."""
        if not self._seen.get((domain, ipv6)):
            expires = min((answer.expires for answer in answers.values()), default=0.0)
            self._seen.put((domain, ipv6), True, expires)
            return FIRST_CLIENT
        found = compile_map(answers, domain, ipv6=ipv6, void_fairness=self.ipv6_void_fairness)
        if found is None:
            expires = min((answer.expires for answer in answers.values()), default=0.0)
            self._maps.put((domain, ipv6), UNMAPPABLE, expires)
            return UNMAPPABLE
        self._maps.put((domain, ipv6), found, found.expires)
        return found

    def check(
        self,
        found: AddressMap | Unmappable,
        client: str,
        fetched: Collection[AnswerKey] = frozenset(),
    ) -> MapAnswer | None:
        """What the map answers for client (None: pyspf must), counted by outcome."""
        if isinstance(found, Unmappable):
            self.observer.address_map_lookup(found.outcome)
            return None
        answer = found.check(client, self.void_lookup_limit, fetched)
        self.observer.address_map_lookup("answered" if answer is not None else "pyspf")
        if answer is not None:
            for _ in range(answer.cache_lookups):
                self.observer.dns_cache_lookup(hit=True)
        return answer
