"""The decision loop's pure steps called on a bare request, as the service would call them."""

from __future__ import annotations

from collections.abc import Sequence

from spfpolicy.config.settings import Config, RecipientRule
from spfpolicy.decision import deciding, skips
from spfpolicy.decision.actions import Receiver
from spfpolicy.model import Decision, PolicyRequest, SpfOutcome


def decide(
    request: PolicyRequest,
    outcomes: Sequence[SpfOutcome],
    config: Config,
    receiver: Receiver,
    rule: RecipientRule | None = None,
    *,
    header_added: bool = False,
) -> Decision:
    """deciding.decide() for the Case of this request (its client parsed, with this rule)."""
    client = skips.client_ip(request.client_address)
    assert client is not None, f"no usable client address in {request!r}"
    case = deciding.Case(request, client, rule, ())
    return deciding.decide(case, outcomes, config, receiver, header_added=header_added)


def skip_reason(request: PolicyRequest, config: Config) -> str:
    """skips.skip_reason() with the request's client address parsed as open_case() does."""
    return skips.skip_reason(request, skips.client_ip(request.client_address), config)
