"""What `spfpolicy check` prints: each identity's outcome and DNS, the trees with --trace, the
answer Postfix would get; as text, or as one JSON document (--json)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from spfpolicy.evaluation.evaluator import Evaluation, SpfEvaluator
from spfpolicy.evaluation.tracing import RecordNode, traced_check
from spfpolicy.evaluation.treerender import tree_document, tree_text
from spfpolicy.model import Decision, Identity, PolicyRequest, SpfOutcome

Traces = Mapping[Identity, tuple[SpfOutcome, RecordNode | None]]


def trace_all(
    evaluator: SpfEvaluator,
    evaluations: Sequence[Evaluation],
    request: PolicyRequest,
    deadline: float,
) -> dict[Identity, tuple[SpfOutcome, RecordNode | None]]:
    """Each evaluated identity evaluated again by evaluator, watched (evaluation.tracing)."""
    return {
        evaluation.outcome.identity: traced_check(
            evaluator,
            evaluation.outcome.identity,
            client_address=request.client_address,
            sender=request.sender,
            helo=request.helo_name,
            deadline=deadline,
        )
        for evaluation in evaluations
    }


def check_lines(
    decision: Decision,
    evaluations: Sequence[Evaluation],
    traces: Traces,
    *,
    void_limit: int = 2,
    colour: bool = False,
) -> list[str]:
    """The text report; traces (from evaluation.tracing) add each identity's tree."""
    lines = []
    if decision.skip_reason:
        lines.append(f"skipped: {decision.skip_reason} (no SPF check for this request)")
    for evaluation in evaluations:
        outcome = evaluation.outcome
        reused = " (from the result cache)" if evaluation.trace.from_result_cache else ""
        sender = outcome.sender or "-"
        lines.append(f"{outcome.identity.value}: {outcome.result.value} for {sender}{reused}")
        for label, text in (
            ("mechanism", outcome.mechanism),
            ("explanation", outcome.explanation),
            ("problem", outcome.problem),
        ):
            if text:
                lines.append(f"  {label}: {text}")
        traced = traces.get(outcome.identity)
        if traced is None:
            lines += [f"  dns: {n} {t} -> {r}" for n, t, r in evaluation.trace.questions]
            lines += [
                f"  include:{domain} -> {result} (from the result cache)"
                for domain, result in evaluation.trace.reused_includes
            ]
            continue
        lines += _disagreement(outcome, traced[0])
        tree = traced[1]
        if tree is not None:
            lines += ["  " + line for line in tree_text(tree, void_limit=void_limit, colour=colour)]
    lines.append(f"header: {decision.header or '(none)'}")
    lines.append(f"action={decision.action}")
    return lines


def check_document(
    decision: Decision, evaluations: Sequence[Evaluation], traces: Traces
) -> dict[str, Any]:
    """The same report as data, for json.dumps."""
    identities = []
    for evaluation in evaluations:
        outcome = evaluation.outcome
        entry: dict[str, Any] = {
            "identity": outcome.identity.value,
            "result": outcome.result.value,
            "sender": outcome.sender,
            "domain": outcome.domain,
            "mechanism": outcome.mechanism,
            "explanation": outcome.explanation,
            "problem": outcome.problem,
            "from_result_cache": evaluation.trace.from_result_cache,
            "dns": [{"name": n, "type": t, "found": r} for n, t, r in evaluation.trace.questions],
        }
        traced = traces.get(outcome.identity)
        if traced is not None:
            entry["tree"] = tree_document(traced[1])
            entry["tree_result"] = traced[0].result.value
        identities.append(entry)
    return {
        "skip_reason": decision.skip_reason,
        "identities": identities,
        "header": decision.header,
        "action": decision.action,
    }


def _disagreement(outcome: SpfOutcome, traced: SpfOutcome) -> list[str]:
    """A warning when the watched evaluation came out otherwise (DNS changed in between)."""
    if traced.result is outcome.result:
        return []
    return [f"  warning: the traced evaluation gave {traced.result.value} (DNS changed?)"]
