"""The skip rules that need no DNS: which requests get no SPF check, and why (DESIGN.md §3.1).

Pure: the request, its parsed client address and the configuration in, a reason out.
"""

from __future__ import annotations

import functools
import ipaddress

from spfpolicy.config.settings import Config
from spfpolicy.model import PolicyRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

POLICY_REQUEST = "smtpd_access_policy"  # the only request type Postfix sends today


# Parsing an address costs more than the rest of the skip rules; the same few thousand client
# addresses come back all day, and a bounded memo of immutable results is safe across threads.
@functools.lru_cache(maxsize=8192)
def client_ip(text: str) -> IPAddress | None:
    """The client address as an IP, or None when Postfix sent something unusable.

    An IPv4-mapped IPv6 address is the IPv4 client it stands for (RFC 4291 §2.5.5.2);
    an interface scope (fe80::1%eth0) says nothing about the sender, so it is dropped.
    """
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def skip_reason(request: PolicyRequest, client: IPAddress | None, config: Config) -> str:
    """Why this request gets no SPF check ("" when it must be checked).

    client is client_ip(request.client_address), parsed once by the caller.
    """
    if request.request != POLICY_REQUEST:
        return "not_policy_request"
    if request.protocol_state.upper() not in config.skip.protocol_states:
        return "protocol_state"
    if client is None:
        return "invalid_client_address"
    return _trusted(request, client, config)


def _trusted(request: PolicyRequest, client: IPAddress, config: Config) -> str:
    """Skips that need no DNS: [skip] and [allow] networks, authentication, policy context."""
    if any(client in network for network in config.skip.networks):
        return "skip_network"
    if config.skip.authenticated and request.sasl_username:
        return "authenticated"
    if request.policy_context and request.policy_context in config.skip.policy_contexts:
        return "policy_context"
    if any(client in network for network in config.allow.networks):
        return "allow_network"
    return ""
