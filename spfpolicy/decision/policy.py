"""The decision model, pure: which identities to check, and results -> one action.

No sockets, no DNS, no clock: request + outcomes + config in, Decision out (DESIGN.md §3).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from spfpolicy.config.settings import (
    Config,
    HeaderType,
    InternalErrorAction,
    RecipientRule,
)
from spfpolicy.decision.headers import authentication_results, received_spf
from spfpolicy.model import (
    Decision,
    Disposition,
    Identity,
    PolicyRequest,
    SpfOutcome,
    SpfResult,
    Verdict,
)

POLICY_REQUEST = "smtpd_access_policy"  # the only request type Postfix sends today
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

ENFORCING = frozenset({Verdict.REJECT, Verdict.DEFER})
_ERRORS = frozenset({SpfResult.TEMPERROR, SpfResult.PERMERROR})


@dataclass(frozen=True)
class Receiver:
    """How this host names itself in trace headers."""

    hostname: str  # Received-SPF receiver=
    authserv_id: str  # Authentication-Results authserv-id


def skip_reason(request: PolicyRequest, config: Config) -> str:
    """Why this request gets no SPF check ("" when it must be checked)."""
    if request.request != POLICY_REQUEST:
        return "not_policy_request"
    if request.protocol_state.upper() not in config.skip.protocol_states:
        return "protocol_state"
    address = client_ip(request.client_address)
    if address is None:
        return "invalid_client_address"
    return _trusted(request, address, config)


def _trusted(
    request: PolicyRequest,
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
    config: Config,
) -> str:
    """Skips that need no DNS: [skip] and [allow] networks, authentication, policy context."""
    if any(address in network for network in config.skip.networks):
        return "skip_network"
    if config.skip.authenticated and request.sasl_username:
        return "authenticated"
    if request.policy_context and request.policy_context in config.skip.policy_contexts:
        return "policy_context"
    if any(address in network for network in config.allow.networks):
        return "allow_network"
    return ""


# Parsing an address costs more than the rest of the skip rules; the same few thousand client
# addresses come back all day, and a bounded memo of immutable results is safe across threads.
@functools.lru_cache(maxsize=8192)
def client_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
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


def identities_to_check(
    request: PolicyRequest, config: Config, helo_checkable: bool
) -> list[Identity]:
    """The identities to evaluate, in order (RFC 7208 §2.3, §2.4).

    With the null sender the MAIL FROM identity is postmaster@HELO, which is the HELO check
    itself: when HELO is checked it decides alone and nothing is evaluated twice.
    """
    identities = []
    if config.spf.check_helo and helo_checkable:
        identities.append(Identity.HELO)
    if request.sender or not identities:
        identities.append(Identity.MAILFROM)
    return identities


def verdict_for(outcome: SpfOutcome, config: Config, rule: RecipientRule | None = None) -> Verdict:
    """The verdict for one identity's result: the tables, then [policy]'s rules, then dry run."""
    verdict, _ = judge(outcome, config, rule)
    return verdict


def judge(
    outcome: SpfOutcome, config: Config, rule: RecipientRule | None = None
) -> tuple[Verdict, Verdict | None]:
    """(verdict, what enforcement would have done when the verdict is only a warning)."""
    actions = rule.actions if rule is not None else config.actions
    table = actions.helo if outcome.identity is Identity.HELO else actions.mailfrom
    verdict = table.verdict(_effective_result(outcome, config))
    would_have = None
    if (
        verdict is Verdict.REJECT
        and config.policy.reject_only_no_mail
        and not outcome.publishes_no_mail
    ):
        verdict, would_have = Verdict.WARN, Verdict.REJECT
    if verdict in ENFORCING and (config.policy.dry_run or (rule is not None and rule.dry_run)):
        verdict, would_have = Verdict.WARN, verdict
    if verdict is Verdict.WARN and would_have is None:
        would_have = Verdict.DEFER if outcome.result is SpfResult.TEMPERROR else Verdict.REJECT
    return verdict, would_have


def _effective_result(outcome: SpfOutcome, config: Config) -> SpfResult:
    """The result the tables see: anything but pass is fail for reject_not_pass_domains."""
    if (
        outcome.result is not SpfResult.PASS
        and outcome.identity is Identity.MAILFROM
        and outcome.domain.lower().rstrip(".") in config.policy.reject_not_pass_domains
    ):
        return SpfResult.FAIL
    return outcome.result


def decide(
    request: PolicyRequest,
    outcomes: Sequence[SpfOutcome],
    config: Config,
    receiver: Receiver,
    rule: RecipientRule | None = None,
) -> Decision:
    """Map the outcomes to one action: the first enforcing verdict wins, else accept."""
    warned: Verdict | None = None
    for outcome in outcomes:
        verdict, would_have = judge(outcome, config, rule)
        if verdict in ENFORCING:
            action = enforcing_action(outcome, verdict, request.client_address, config)
            disposition = Disposition.REJECT if verdict is Verdict.REJECT else Disposition.DEFER
            return Decision(disposition, action, tuple(outcomes))
        if verdict is Verdict.WARN and warned is None:
            warned = would_have
    action = accept_action(request, outcomes, config, receiver, rule)
    if warned is not None:
        return Decision(Disposition.WARN, action, tuple(outcomes), would_have=warned)
    return Decision(Disposition.ACCEPT, action, tuple(outcomes))


def enforcing_action(outcome: SpfOutcome, verdict: Verdict, client: str, config: Config) -> str:
    """The access(5) reject or defer action, with a reason an administrator can act on."""
    template = (
        config.policy.reject_reason if verdict is Verdict.REJECT else config.policy.defer_reason
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


def accept_action(
    request: PolicyRequest,
    outcomes: Sequence[SpfOutcome],
    config: Config,
    receiver: Receiver,
    rule: RecipientRule | None = None,
) -> str:
    """The pass restriction class, or PREPEND the trace header, or DUNNO when there is none."""
    if not outcomes:
        return "DUNNO"
    restriction = (rule.actions if rule is not None else config.actions).pass_restriction
    if restriction and outcomes[-1].result is SpfResult.PASS:
        return restriction  # Postfix takes one action per reply: the class, not the header
    if request.protocol_state.upper() in NO_PREPEND_STATES:
        return "DUNNO"
    if config.headers.type is HeaderType.AUTHENTICATION_RESULTS:
        return "PREPEND " + authentication_results(outcomes, authserv_id=receiver.authserv_id)
    if config.headers.type is HeaderType.RECEIVED_SPF:
        # One header per message: MAIL FROM is the identity DMARC and users care about.
        outcome = outcomes[-1]
        header = received_spf(
            outcome,
            client_address=request.client_address,
            helo=request.helo_name,
            receiver=receiver.hostname,
        )
        return "PREPEND " + header
    return "DUNNO"


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


def reuse(decision: Decision) -> Decision:
    """The answer for a later recipient of an already decided message.

    Rejects and defers repeat for every recipient; the trace header is added only once.
    """
    action = "DUNNO" if decision.action.startswith("PREPEND ") else decision.action
    return Decision(
        decision.disposition,
        action,
        decision.outcomes,
        skip_reason=decision.skip_reason,
        would_have=decision.would_have,
        reused=True,
    )


def reply_text(text: str) -> str:
    """Text safe for an SMTP reply line: printable ASCII only, bounded length."""
    cleaned = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
    if len(cleaned) > MAX_REPLY_TEXT:
        cleaned = cleaned[: MAX_REPLY_TEXT - 3] + "..."
    return cleaned
