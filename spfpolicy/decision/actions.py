"""The actions Postfix receives: rejects, defers and holds with their reasons, the header, skips.

Pure: outcomes, a verdict and the configuration in, access(5) text out (RFC 7372 codes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from spfpolicy.config.settings import Config, HeaderType, InternalErrorAction
from spfpolicy.decision.headers import authentication_results, received_spf
from spfpolicy.model import Decision, Disposition, PolicyRequest, SpfOutcome, SpfResult, Verdict

# Postfix rejects a PREPEND at END-OF-MESSAGE: the headers are already received.
NO_PREPEND_STATES = frozenset({"END-OF-MESSAGE"})
# SMTP reply lines are at most 512 octets (RFC 5321 §4.5.3.1.5); keep room for the code.
MAX_REPLY_TEXT = 450

# RFC 7372 §3: enhanced status codes for SPF outcomes.
SPF_FAIL_CODE = "5.7.23"  # SPF validation failed
SPF_ERROR_PERMANENT = "5.7.24"  # SPF validation error
SPF_ERROR_TEMPORARY = "4.7.24"
NOT_AUTHORIZED_TEMPORARY = "4.7.1"  # RFC 3463: delivery not authorized (for deferred non-errors)
# RFC 3463 §3.4 X.3.0, "other or undefined mail system status": our own system failed. Not
# RFC 7372's 4.7.24, which would send the sender's postmaster to check an SPF record that is
# fine; not 4.3.5, which Postfix itself answers when the policy service is down or misconfigured.
LOCAL_ERROR_TEMPORARY = "4.3.0"
INTERNAL_ERROR_DEFER = (
    f"DEFER_IF_PERMIT {LOCAL_ERROR_TEMPORARY} Temporary local error in the SPF check, "
    "try again later"
)

_ERRORS = frozenset({SpfResult.TEMPERROR, SpfResult.PERMERROR})


@dataclass(frozen=True)
class Receiver:
    """How this host names itself in trace headers."""

    hostname: str  # Received-SPF receiver=
    authserv_id: str  # Authentication-Results authserv-id


def enforcing_action(outcome: SpfOutcome, verdict: Verdict, client: str, config: Config) -> str:
    """The access(5) reject, defer or hold action, with a reason an administrator can act on.

    A hold gives the reject's reason ([policy] reject_reason) without a status code: Postfix
    only logs it, the client is told 250 and never sees it.
    """
    template = (
        config.policy.defer_reason if verdict is Verdict.DEFER else config.policy.reject_reason
    )
    if template:
        text = template.format(
            identity=outcome.identity.value,
            domain=outcome.domain,
            client=client,
            result=outcome.result.value,
            explanation=outcome.explanation or outcome.problem,
        )
    else:
        text = _reason(outcome, client)
    reason = reply_text(text)
    if verdict is Verdict.HOLD:
        return f"HOLD {reason}"
    if verdict is Verdict.REJECT:
        code = SPF_ERROR_PERMANENT if outcome.result in _ERRORS else SPF_FAIL_CODE
        return f"550 {code} {reason}"
    code = SPF_ERROR_TEMPORARY if outcome.result in _ERRORS else NOT_AUTHORIZED_TEMPORARY
    return f"DEFER_IF_PERMIT {code} {reason}"


def _reason(outcome: SpfOutcome, client: str) -> str:
    identity, domain = outcome.identity.value, outcome.domain or "(none)"
    if outcome.result is SpfResult.FAIL:
        text = (
            f"SPF {identity} check failed: host {client} is not allowed to send mail for {domain}"
        )
        return f"{text} - {outcome.explanation}" if outcome.explanation else text
    prefix = f"SPF {identity} check of {domain} for host {client}"
    if outcome.result is SpfResult.PERMERROR:
        return f"{prefix}: permanent error in the domain's SPF record: {outcome.problem}"
    if outcome.result is SpfResult.TEMPERROR:
        return f"{prefix}: temporary error, try again later: {outcome.problem}"
    return f"{prefix}: result {outcome.result.value} is not accepted here"


def trace_header(
    request: PolicyRequest,
    client: str,
    outcomes: Sequence[SpfOutcome],
    config: Config,
    receiver: Receiver,
) -> str:
    """The trace header for an accepted message ("" when none is configured or allowed here).

    client is the address that was evaluated (an IPv4-mapped client as IPv4, no interface
    scope): RFC 7208 §9.1's client-ip, which DMARC verifiers read, not Postfix's raw text.
    """
    if request.protocol_state.upper() in NO_PREPEND_STATES:
        return ""
    if config.headers.type is HeaderType.AUTHENTICATION_RESULTS:
        return authentication_results(outcomes, authserv_id=receiver.authserv_id)
    if config.headers.type is HeaderType.RECEIVED_SPF:
        # One header per message: MAIL FROM is the identity DMARC and users care about.
        return received_spf(
            outcomes[-1],
            client_address=client,
            helo=request.helo_name,
            receiver=receiver.hostname,
        )
    return ""


def internal_error_decision(config: Config) -> Decision:
    """The answer when deciding a request raised: [policy] on_internal_error.

    Deferring uses DEFER_IF_PERMIT, like temperror: a later restriction that rejects still
    rejects, and otherwise the client retries. [policy] dry_run does not soften it: dry run is
    about SPF verdicts, and a failed request has none.
    """
    if config.policy.on_internal_error is InternalErrorAction.ACCEPT:
        return Decision(Disposition.ACCEPT, "DUNNO", internal_error=True)
    return Decision(Disposition.DEFER, INTERNAL_ERROR_DEFER, internal_error=True)


def skip_decision(reason: str) -> Decision:
    """The answer for a request that is not checked."""
    return Decision(Disposition.SKIP, "DUNNO", skip_reason=reason)


def reply_text(text: str) -> str:
    """Text safe for an SMTP reply line: printable ASCII only, bounded length."""
    cleaned = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
    if len(cleaned) > MAX_REPLY_TEXT:
        cleaned = cleaned[: MAX_REPLY_TEXT - 3] + "..."
    return cleaned
