"""One request in, one Decision out, in two phases: begin() on the I/O thread, complete() later.

begin() never blocks: skip rules, the recipient rule, the message memo, the result cache and
evaluations over DNS answers the cache already holds. What it cannot answer it returns as a
Pending. wait_for_dns() then asks the DNS such an evaluation lacks without holding a thread,
and resume() takes the request up again once it has landed, as begin() would; what that cannot
serve (the DNS-backed allow-lists, macros, ptr, failed answers) complete() finishes on a
worker. All run the one decision loop of spfpolicy.decision.deciding, and a request is logged
and counted once, when it is decided.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from spfpolicy.config.settings import Config
from spfpolicy.decision import deciding
from spfpolicy.decision.actions import Receiver, internal_error_decision, skip_decision
from spfpolicy.decision.deciding import Case
from spfpolicy.evaluation.evaluator import Evaluation, SpfEvaluator
from spfpolicy.model import Decision, Identity, NullObserver, Observer, PolicyRequest
from spfpolicy.resolver.answers import AnswerKey
from spfpolicy.service.allowlist import AllowList
from spfpolicy.service.decisionlog import log_decision, log_internal_error
from spfpolicy.service.memo import Message, MessageMemo

log = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)
class Pending:
    """A request begun on the I/O thread that needs DNS or pyspf, with what begin() found."""

    case: Case
    message: Message | None
    started: float  # clock time begin() took it
    deadline: float  # the request's time budget ends here
    evaluations: list[Evaluation] = field(default_factory=list)  # of case.identities, in order
    allowed_known: bool = True  # False until the DNS-backed allow-lists have been asked
    looked_up: Identity | None = None  # the identity whose result cache lookup missed
    asked: set[AnswerKey] = field(default_factory=set)  # questions wait_for_dns() started

    @property
    def request(self) -> PolicyRequest:
        """The request being decided."""
        return self.case.request


# How one identity is evaluated in a phase: an Evaluation, or None to leave it to the next.
Step = Callable[[Pending, Identity], Evaluation | None]


@dataclass(frozen=True)
class Explanation:
    """A decision with the evaluations behind it (for `spfpolicy check`)."""

    decision: Decision
    evaluations: tuple[Evaluation, ...]


class PolicyService:
    """Decides requests with one configuration; build a new one to change the config."""

    def __init__(
        self,
        config: Config,
        evaluator: SpfEvaluator,
        receiver: Receiver,
        *,
        allow: AllowList | None = None,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.allow = allow if allow is not None and allow.active else None
        self.evaluator = evaluator
        self.receiver = receiver
        self.observer: Observer = observer or NullObserver()
        self.clock = clock
        self._memo = MessageMemo()

    def begin(self, request: PolicyRequest) -> Decision | Pending:
        """The Decision if it needs no DNS nor pyspf, else the Pending for complete().

        For the I/O thread: it never blocks and never raises (an internal error answers
        [policy] on_internal_error). A Decision returned is already logged and counted.
        """
        started = self.clock()
        try:
            opened = self._open(request, started)
            step = opened if isinstance(opened, Decision) else self._begin(opened)
        except Exception:  # noqa: BLE001 - the connection boundary: logged with its traceback
            step = self._internal_error(request)
        if isinstance(step, Decision):
            self._finish(request, step, started)
        return step

    def wait_for_dns(self, pending: Pending, ready: Callable[[], None]) -> bool:
        """Start, without waiting, the DNS questions the evaluation begin() stopped at lacks;
        True when ready() will be called (from any thread) once they have landed: then
        resume(). False leaves the request to complete(). Never raises."""
        identity = pending.looked_up
        if identity is None or not pending.allowed_known or self.clock() >= pending.deadline:
            return False
        request = pending.request
        try:
            return self.evaluator.prefetch(
                identity,
                client_address=pending.case.client_text,
                sender=request.sender,
                helo=request.helo_name,
                deadline=pending.deadline,
                asked=pending.asked,
                ready=ready,
            )
        except Exception:  # a worker can still decide it
            log.exception("prefetch failed (instance=%r); asking on a worker", request.instance)
            return False

    def resume(self, pending: Pending) -> Decision | Pending:
        """begin() again once the DNS wait_for_dns() asked for has landed: the Decision, or the
        Pending still short of answers. For the I/O thread, like begin()."""
        try:
            step = self._begin(pending)
        except Exception:  # noqa: BLE001 - as in begin()
            step = self._internal_error(pending.request)
        if isinstance(step, Decision):
            self._finish(pending.request, step, pending.started)
        return step

    def complete(self, pending: Pending) -> Decision:
        """Decide a request begin() could not, on a worker; logged and counted; never raises."""
        try:
            decision = self._complete(pending)
        except Exception:  # noqa: BLE001 - as in begin()
            decision = self._internal_error(pending.request)
        self._finish(pending.request, decision, pending.started)
        return decision

    def explain(self, request: PolicyRequest) -> Explanation:
        """Decide like begin() and complete() and return the evaluations too; errors propagate.

        Nothing is logged or counted: this is `spfpolicy check`, not a request from Postfix.
        """
        opened = self._open(request, self.clock())
        if isinstance(opened, Decision):
            return Explanation(opened, ())
        return Explanation(self._complete(opened), tuple(opened.evaluations))

    def error_decision(self) -> Decision:
        """What an unexpected failure answers: [policy] on_internal_error (the server's
        fallback too, should begin() or complete() themselves fail)."""
        return internal_error_decision(self.config)

    def _open(self, request: PolicyRequest, started: float) -> Decision | Pending:
        """Skips, and answers the message memo already holds; else the Pending to decide."""
        case = deciding.open_case(request, self.config)
        if isinstance(case, Decision):
            return case
        message = self._memo.message(request, started)
        earlier = message.decisions.get(case.rule) if message is not None else None
        if earlier is not None:
            return deciding.reuse(earlier)
        pending = Pending(case, message, started, started + self.config.spf.time_budget)
        if self.allow is not None:
            allowed = message.allowed if message is not None else None
            if allowed:
                return skip_decision(allowed)
            pending.allowed_known = allowed is not None
        return pending

    def _begin(self, pending: Pending) -> Decision | Pending:
        """The I/O thread's part: what needs no wait; stop at the first identity that does."""
        if not pending.allowed_known:
            return pending  # the allow-lists ask DNS
        return self._advance(pending, self._look_up)

    def _complete(self, pending: Pending) -> Decision:
        """The worker's part: the allow-lists if still to ask, then every evaluation left."""
        if not pending.allowed_known:
            assert self.allow is not None
            case = pending.case
            allowed = self.allow.reason(case.request.helo_name, case.client, pending.deadline)
            if pending.message is not None:
                pending.message.allowed = allowed
            pending.allowed_known = True
            if allowed:
                return skip_decision(allowed)
        decision = self._advance(pending, self._evaluate)
        assert isinstance(decision, Decision)  # _evaluate always gives an evaluation
        if self.clock() >= pending.deadline:
            self.observer.budget_exceeded()
        return decision

    def _advance(self, pending: Pending, step: Step) -> Decision | Pending:
        """Evaluate the identities the decision loop asks for, until it decides or step gives
        up (None); a decision made is kept in the message memo."""
        case, config = pending.case, self.config
        outcomes = [evaluation.outcome for evaluation in pending.evaluations]
        while (identity := deciding.next_identity(case, config, outcomes)) is not None:
            evaluation = step(pending, identity)
            if evaluation is None:
                return pending
            pending.evaluations.append(evaluation)
            outcomes.append(evaluation.outcome)
            if pending.message is not None:
                pending.message.evaluations[identity] = evaluation
        traces = [evaluation.trace for evaluation in pending.evaluations]
        message = pending.message
        decision = deciding.decide(
            case,
            outcomes,
            config,
            self.receiver,
            header_added=message is not None and message.header_added,
            dns_lookups=sum(len(trace.questions) for trace in traces),
            cache_hits=sum(
                trace.cache_hits + trace.from_result_cache + len(trace.reused_includes)
                for trace in traces
            ),
        )
        if message is not None:
            self._memo.remember(message, case.rule, decision)
        return decision

    def _look_up(self, pending: Pending, identity: Identity) -> Evaluation | None:
        """begin()'s step: the message's own evaluation, or one the evaluator makes at once."""
        known = _known(pending, identity)
        if known is not None:
            return known
        request = pending.request
        found = self.evaluator.evaluate_now(
            identity,
            client_address=pending.case.client_text,
            sender=request.sender,
            helo=request.helo_name,
            result_cache=identity is not pending.looked_up,  # asked it before the wait
            fetched=pending.asked,
        )
        if found is None:
            pending.looked_up = identity
        return found

    def _evaluate(self, pending: Pending, identity: Identity) -> Evaluation:
        """complete()'s step: evaluate, without asking the caches again where begin() just
        did."""
        known = _known(pending, identity)
        if known is not None:
            return known
        request = pending.request
        evaluate = (
            self.evaluator.compute if identity is pending.looked_up else self.evaluator.evaluate
        )
        return evaluate(
            identity,
            client_address=pending.case.client_text,
            sender=request.sender,
            helo=request.helo_name,
            deadline=pending.deadline,
        )

    def _internal_error(self, request: PolicyRequest) -> Decision:
        """The on_internal_error answer, logged with the traceback; call it in an except block."""
        decision = self.error_decision()
        log_internal_error(request, decision)
        return decision

    def _finish(self, request: PolicyRequest, decision: Decision, started: float) -> None:
        """Log and count a decision made: once per request, whichever phase made it."""
        duration = self.clock() - started
        log_decision(request, decision, duration)
        self.observer.decision_made(decision, duration)


def _known(pending: Pending, identity: Identity) -> Evaluation | None:
    """The evaluation an earlier recipient of the message already made for this identity."""
    return pending.message.evaluations.get(identity) if pending.message is not None else None
