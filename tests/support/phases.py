"""Deciding a request in tests as the server does: begin(), then complete() when it is pending."""

from __future__ import annotations

from spfpolicy.model import Decision, PolicyRequest
from spfpolicy.service.policyservice import PolicyService


def handle(service: PolicyService, request: PolicyRequest) -> Decision:
    """The Decision the server would send: begin() on this thread, complete() here too."""
    begun = service.begin(request)
    return begun if isinstance(begun, Decision) else service.complete(begun)
