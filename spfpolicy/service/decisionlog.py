"""The one log line per decision: what was asked, what SPF said, what was answered, how fast.

In text it reads `decision instance=... client=... mailfrom_result=fail(-all) action=...`; in
JSON the same keys are top-level fields. Values come from the SMTP client, so they are bounded
and quoted: no line can be split or forged by a HELO name or a sender.
"""

from __future__ import annotations

import json
import logging

from spfpolicy.model import Decision, Identity, PolicyRequest, SpfOutcome

log = logging.getLogger("spfpolicy.decision")

MAX_FIELD = 200  # characters of one attacker-controlled value kept in the log
# What finds a request again in Postfix's own log: the message, the client, its identities.
IDENTIFYING_FIELDS = ("instance", "queue_id", "client", "helo", "sender")


def log_decision(request: PolicyRequest, decision: Decision, duration: float) -> None:
    """Log the decision at info level (nothing is built when info is off)."""
    if not log.isEnabledFor(logging.INFO):
        return
    fields = decision_fields(request, decision, duration)
    log.info("decision %s", _text(fields), extra={"fields": fields})


def log_internal_error(request: PolicyRequest, decision: Decision) -> None:
    """Log at error level, with the traceback, that deciding `request` raised; call it in the
    except block. The line names the request and the answer it got instead."""
    every = decision_fields(request, decision, 0.0)
    fields = {key: every[key] for key in (*IDENTIFYING_FIELDS, "action")}
    log.error(
        "internal error, answered as [policy] on_internal_error says: %s",
        _text(fields),
        exc_info=True,
        extra={"fields": fields},
    )


def decision_fields(
    request: PolicyRequest, decision: Decision, duration: float
) -> dict[str, str | int | float]:
    """The decision line's fields, in order; optional ones only when they say something."""
    results = {outcome.identity: outcome for outcome in decision.outcomes}
    fields: dict[str, str | int | float] = {
        "instance": _bounded(request.instance),
        "queue_id": _bounded(request.queue_id),
        "client": _bounded(request.client_address),
        "helo": _bounded(request.helo_name),
        "sender": _bounded(request.sender),
        "helo_result": _result(results.get(Identity.HELO)),
        "mailfrom_result": _result(results.get(Identity.MAILFROM)),
        "disposition": decision.disposition.value,
    }
    if decision.skip_reason:
        fields["skip_reason"] = decision.skip_reason
    if decision.would_have is not None:
        fields["would_have"] = decision.would_have.value
    if decision.reused:
        fields["reused"] = "yes"
    if decision.stale_dns:
        fields["stale_dns"] = "yes"
    if decision.internal_error:
        fields["internal_error"] = "yes"
    fields["action"] = _bounded(_action_summary(decision))
    fields["dns_lookups"] = decision.dns_lookups
    fields["cache_hits"] = decision.cache_hits
    fields["duration_ms"] = round(duration * 1000, 1)
    return fields


def _text(fields: dict[str, str | int | float]) -> str:
    """The fields as the text line writes them: key=value, values quoted where needed."""
    return " ".join(f"{key}={_quoted(value)}" for key, value in fields.items())


def _action_summary(decision: Decision) -> str:
    """Rejects, defers and holds in full, a PREPEND by its header's name.

    The header repeats what the line already says, and is long: one decision, one short line.
    """
    if decision.header:
        return "PREPEND " + decision.header.partition(":")[0]
    return decision.answer


def _result(outcome: SpfOutcome | None) -> str:
    if outcome is None:
        return "-"
    detail = outcome.problem or outcome.mechanism
    return f"{outcome.result.value}({_bounded(detail)})" if detail else outcome.result.value


def _bounded(value: str) -> str:
    return value if len(value) <= MAX_FIELD else value[:MAX_FIELD] + "..."


def _quoted(value: str | int | float) -> str:
    """A value for the text line: bare when plain, JSON-quoted with spaces or controls."""
    if not isinstance(value, str):
        return str(value)
    if not value:
        return '""'
    if value.isprintable() and " " not in value and '"' not in value:
        return value
    return json.dumps(value)
