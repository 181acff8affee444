"""The decision loop, pure: which identities to check, when a verdict ends it, the one action.

The service runs it in two phases (DESIGN.md §4.1), and both ask the same three questions here:
open_case() (skip rules, or the case to decide), next_identity() (what to evaluate next, or
nothing when the outcomes so far decide), decide() (outcomes to the Decision, with the header
once per message). No sockets, no DNS, no clock.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from spfpolicy.config.settings import Config, RecipientRule
from spfpolicy.decision.actions import Receiver, enforcing_action, skip_decision, trace_header
from spfpolicy.decision.skips import IPAddress, client_ip, skip_reason
from spfpolicy.decision.verdicts import FINAL, judge, verdict_for
from spfpolicy.model import (
    Decision,
    Disposition,
    Identity,
    PolicyRequest,
    SpfOutcome,
    Verdict,
)


@dataclass(frozen=True, slots=True)
class Case:
    """A request that is to be checked, with what every step of its decision needs."""

    request: PolicyRequest
    client: IPAddress  # client_address, parsed once
    rule: RecipientRule | None  # the recipient's [[recipient]] rule, if one matches
    identities: tuple[Identity, ...]  # to evaluate, in this order

    @property
    def client_text(self) -> str:
        """The address pyspf evaluates (an IPv4-mapped client as plain IPv4)."""
        return str(self.client)


def open_case(request: PolicyRequest, config: Config) -> Case | Decision:
    """The skip decision for a request that gets no SPF check, else the Case to decide."""
    client = client_ip(request.client_address)
    reason = skip_reason(request, client, config)
    if reason:
        return skip_decision(reason)
    assert client is not None  # skip_reason turned unusable addresses away
    rule = config.recipient_rule(request.recipient) if config.recipient else None
    identities = identities_to_check(request, config, is_checkable_helo(request.helo_name))
    return Case(request, client, rule, tuple(identities))


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


def is_checkable_helo(helo: str) -> bool:
    """True when a HELO name is a multi-label domain name worth an SPF check (§2.3).

    Address literals ("[192.0.2.1]") and bare words ("localhost") have no SPF record.
    """
    name = helo.rstrip(".")
    if not name or name.startswith("[") or "." not in name:
        return False
    # Only a name ending in digits or holding ":" can be an address: skip parsing the rest.
    if ":" not in name and not name.rpartition(".")[2].isdigit():
        return all(label for label in name.split("."))
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return all(label for label in name.split("."))
    return False


def next_identity(case: Case, config: Config, outcomes: Sequence[SpfOutcome]) -> Identity | None:
    """The identity to evaluate next, or None when the outcomes so far decide the request.

    outcomes are those of case.identities, in order. A reject or defer ends the request: a
    HELO fail may reject before MAIL FROM is looked at (RFC 7208 §2.3). A hold does not: a
    later identity may still reject or defer, which is stricter.
    """
    if outcomes and verdict_for(outcomes[-1], config, case.rule) in FINAL:
        return None
    if len(outcomes) < len(case.identities):
        return case.identities[len(outcomes)]
    return None


def decide(
    case: Case,
    outcomes: Sequence[SpfOutcome],
    config: Config,
    receiver: Receiver,
    *,
    header_added: bool = False,
    dns_lookups: int = 0,
    cache_hits: int = 0,
) -> Decision:
    """Map the outcomes to one action: the first reject or defer wins, else the first hold,
    else accept (a warning when a verdict was softened).

    A held message gets no trace header: Postfix takes one action per reply, and HOLD is the
    one that matters. header_added says the message already got its trace header from an
    earlier recipient: it gets one per message (DESIGN.md §3.5). dns_lookups and cache_hits go
    into the Decision for the log line.
    """
    enforced, warned = _strictest(case, outcomes, config)
    if enforced is not None:
        outcome, verdict = enforced
        return Decision(
            _DISPOSITIONS[verdict],
            enforcing_action(outcome, verdict, case.request.client_address, config),
            tuple(outcomes),
            dns_lookups=dns_lookups,
            cache_hits=cache_hits,
        )
    disposition = Disposition.ACCEPT if warned is None else Disposition.WARN
    answer, header = _acceptance(case, outcomes, config, receiver, header_added)
    return Decision(
        disposition,
        answer,
        tuple(outcomes),
        would_have=warned,
        dns_lookups=dns_lookups,
        cache_hits=cache_hits,
        header=header,
    )


_DISPOSITIONS = {
    Verdict.REJECT: Disposition.REJECT,
    Verdict.DEFER: Disposition.DEFER,
    Verdict.HOLD: Disposition.HOLD,
}


def _strictest(
    case: Case, outcomes: Sequence[SpfOutcome], config: Config
) -> tuple[tuple[SpfOutcome, Verdict] | None, Verdict | None]:
    """(the outcome and verdict that keep the mail from flowing: the first reject or defer,
    else the first hold, else None; what the first warning would have done, else None)."""
    held: tuple[SpfOutcome, Verdict] | None = None
    warned: Verdict | None = None
    for outcome in outcomes:
        verdict, would_have = judge(outcome, config, case.rule)
        if verdict in FINAL:
            return (outcome, verdict), warned
        if verdict is Verdict.HOLD and held is None:
            held = (outcome, verdict)
        if verdict is Verdict.WARN and warned is None:
            warned = would_have
    return held, warned


def _acceptance(
    case: Case,
    outcomes: Sequence[SpfOutcome],
    config: Config,
    receiver: Receiver,
    header_added: bool,
) -> tuple[str, str]:
    """(answer, header) for an accepted message: the restriction class of the deciding
    result, else DUNNO with the trace header unless the message has it already.

    The deciding result is the last identity's: MAIL FROM's, or HELO's for the null sender.
    """
    if not outcomes:
        return "DUNNO", ""
    actions = case.rule.actions if case.rule is not None else config.actions
    restriction = actions.restriction(outcomes[-1].result)
    if restriction:
        return restriction, ""  # one action per reply: the class, not the header
    if header_added:
        return "DUNNO", ""
    return "DUNNO", trace_header(case.request, case.client_text, outcomes, config, receiver)


def reuse(decision: Decision) -> Decision:
    """The answer for a later recipient of an already decided message.

    Rejects, defers, holds and classes repeat for every recipient; the trace header is added
    only once.
    """
    return Decision(
        decision.disposition,
        decision.answer,
        decision.outcomes,
        skip_reason=decision.skip_reason,
        would_have=decision.would_have,
        reused=True,
    )
