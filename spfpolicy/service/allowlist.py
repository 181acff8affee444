"""Allow-lists that need DNS: a confirmed HELO name, a trusted forwarder, a confirmed PTR name.

Each is a reason to skip SPF for a client the administrator trusts; each is checked against
DNS so that naming a trusted host is not enough to be one. They share the daemon's resolver,
its cache and the request's time budget; a DNS failure simply means "not allowed".
"""

from __future__ import annotations

import ipaddress
import logging

from spfpolicy.config.settings import AllowConfig
from spfpolicy.evaluation.domains import a_label
from spfpolicy.evaluation.evaluator import SpfEvaluator
from spfpolicy.model import Identity, SpfResult
from spfpolicy.resolver.answers import DnsError, Resolver

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_PTR_NAMES = 10  # RFC 7208 §4.6.4: at most 10 PTR names are looked at, as for "ptr"


class AllowList:
    """The DNS-backed part of [allow]; `reason` says why a request is allowed, or ""."""

    def __init__(self, allow: AllowConfig, resolver: Resolver, evaluator: SpfEvaluator) -> None:
        self.allow = allow
        self.resolver = resolver
        self.evaluator = evaluator

    @property
    def active(self) -> bool:
        """Whether any DNS-backed allow-list is configured."""
        allow = self.allow
        return bool(allow.helo_names or allow.forwarder_domains or allow.ptr_domains)

    def reason(self, helo: str, client: IPAddress, deadline: float) -> str:
        """ "allow_helo", "allow_ptr", "allow_forwarder", or "" when none applies."""
        try:
            if self._helo_confirmed(helo, client, deadline):
                return "allow_helo"
            if self._ptr_confirmed(client, deadline):
                return "allow_ptr"
        except DnsError as error:
            log.debug("allow-list lookup for %s failed: %s", client, error)
        if self._forwarder(helo, client, deadline):
            return "allow_forwarder"
        return ""

    def _helo_confirmed(self, helo: str, client: IPAddress, deadline: float) -> bool:
        """A listed HELO name whose own A/AAAA records contain the client."""
        name = a_label(helo.rstrip(".")).lower()  # the config lists domains as A-labels
        return name in self.allow.helo_names and self._has_address(name, client, deadline)

    def _ptr_confirmed(self, client: IPAddress, deadline: float) -> bool:
        """A PTR name in a listed domain that forward-confirms (FCrDNS)."""
        if not self.allow.ptr_domains:
            return False
        answer = self.resolver.query(client.reverse_pointer, "PTR", deadline)
        names = [str(r.value).lower() for r in answer.records if r.rdtype == "PTR"]
        for name in names[:MAX_PTR_NAMES]:
            listed = any(name == d or name.endswith("." + d) for d in self.allow.ptr_domains)
            if listed and self._has_address(name, client, deadline):
                return True
        return False

    def _forwarder(self, helo: str, client: IPAddress, deadline: float) -> bool:
        """The client passes SPF for one of the trusted forwarder domains."""
        for domain in self.allow.forwarder_domains:
            outcome = self.evaluator.evaluate(
                Identity.MAILFROM,
                client_address=str(client),
                sender=f"postmaster@{domain}",
                helo=helo,
                deadline=deadline,
            ).outcome
            if outcome.result is SpfResult.PASS:
                return True
        return False

    def _has_address(self, name: str, client: IPAddress, deadline: float) -> bool:
        rdtype = "AAAA" if client.version == 6 else "A"
        answer = self.resolver.query(name, rdtype, deadline)
        for record in answer.records:
            if record.rdtype == rdtype and ipaddress.ip_address(str(record.value)) == client:
                return True
        return False
