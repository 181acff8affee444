"""One request in, one Decision out: deadline, per-message memo, evaluation, logging.

The server calls PolicyService.handle for every request; everything here runs in the
connection's thread, and the only shared state (the memo) is locked.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cachetools import TTLCache

from spfpolicy import policy
from spfpolicy.allowlist import AllowList
from spfpolicy.config import Config, RecipientRule
from spfpolicy.decisionlog import log_decision
from spfpolicy.evaluator import Evaluation, LookupTrace, SpfEvaluator, is_checkable_helo
from spfpolicy.model import (
    Decision,
    Disposition,
    Identity,
    NullObserver,
    Observer,
    PolicyRequest,
    SpfOutcome,
    SpfResult,
    Verdict,
)
from spfpolicy.policy import Receiver

log = logging.getLogger(__name__)

# The per-message memo: RCPTs of one message arrive within one SMTP session, seconds apart;
# ten minutes outlasts any smtpd timeout, and the bound keeps memory flat under load.
MEMO_SIZE = 20_000
MEMO_MAX_AGE = 600.0


@dataclass
class _Message:
    """What is known about one message (one smtpd instance) across its recipients."""

    decisions: dict[RecipientRule | None, Decision] = field(default_factory=dict)
    evaluations: dict[Identity, Evaluation] = field(default_factory=dict)  # shared by rules
    header_added: bool = False
    allowed: str | None = None  # the DNS-backed allow-lists' answer, once asked


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
        self.allow = allow
        self.evaluator = evaluator
        self.receiver = receiver
        self.observer: Observer = observer or NullObserver()
        self.clock = clock
        self._memo: TTLCache[tuple[str, ...], _Message] = TTLCache(
            MEMO_SIZE, MEMO_MAX_AGE, timer=clock
        )
        self._memo_lock = threading.Lock()

    def handle(self, request: PolicyRequest) -> Decision:
        """Answer one request; never raises (an internal error gives the temperror action)."""
        started = self.clock()
        try:
            decision = self._decide(request, started).decision
        except Exception:
            log.exception("internal error deciding a request from %s", request.client_address)
            decision = self.error_decision()
        duration = self.clock() - started
        log_decision(request, decision, duration)
        self.observer.decision_made(decision, duration)
        return decision

    def explain(self, request: PolicyRequest) -> Explanation:
        """Decide like handle() and return the evaluations too; errors propagate."""
        return self._decide(request, self.clock())

    def error_decision(self) -> Decision:
        """What an unexpected failure answers: the MAIL FROM temperror action, never accept."""
        outcome = SpfOutcome(
            Identity.MAILFROM, SpfResult.TEMPERROR, "", "", problem="internal error"
        )
        verdict = policy.verdict_for(outcome, self.config)
        if verdict not in policy.ENFORCING:
            return Decision(Disposition.ACCEPT, "DUNNO", (outcome,))
        action = policy.enforcing_action(outcome, verdict, "this client", self.config)
        disposition = Disposition.REJECT if verdict is Verdict.REJECT else Disposition.DEFER
        return Decision(disposition, action, (outcome,))

    def _decide(self, request: PolicyRequest, started: float) -> Explanation:
        reason = policy.skip_reason(request, self.config)
        if reason:
            return Explanation(policy.skip_decision(reason), ())
        rule = self.config.recipient_rule(request.recipient) if self.config.recipient else None
        message = self._message(request)
        earlier = message.decisions.get(rule) if message is not None else None
        if earlier is not None:
            return Explanation(policy.reuse(earlier), ())
        deadline = started + self.config.spf.time_budget
        allowed = self._allowed(request, message, deadline)
        if allowed:
            return Explanation(policy.skip_decision(allowed), ())
        evaluations = self._evaluate(request, deadline, rule, message)
        if self.clock() >= deadline:
            self.observer.budget_exceeded()
        outcomes = [evaluation.outcome for evaluation in evaluations]
        decision = policy.decide(request, outcomes, self.config, self.receiver, rule)
        traces = [evaluation.trace for evaluation in evaluations]
        decision = dataclasses.replace(
            decision,
            dns_lookups=sum(len(trace.questions) for trace in traces),
            cache_hits=sum(trace.cache_hits + trace.from_result_cache for trace in traces),
        )
        if message is not None:
            decision = self._remember(message, rule, decision)
        return Explanation(decision, tuple(evaluations))

    def _message(self, request: PolicyRequest) -> _Message | None:
        """The memo of this message (one smtpd instance), made on first sight."""
        if not request.instance:
            return None
        key = (request.instance, request.client_address, request.helo_name, request.sender)
        with self._memo_lock:
            message = self._memo.get(key)
            if message is None:
                message = self._memo[key] = _Message()
        return message

    def _allowed(self, request: PolicyRequest, message: _Message | None, deadline: float) -> str:
        """The DNS-backed allow-lists' verdict, asked once per message."""
        if self.allow is None or not self.allow.active:
            return ""
        if message is not None and message.allowed is not None:
            return message.allowed
        client = policy.client_ip(request.client_address)
        assert client is not None  # skip_reason turned unusable addresses away
        allowed = self.allow.reason(request.helo_name, client, deadline)
        if message is not None:
            message.allowed = allowed
        return allowed

    def _remember(
        self, message: _Message, rule: RecipientRule | None, decision: Decision
    ) -> Decision:
        """Memoise per recipient rule; the message gets its trace header only once."""
        with self._memo_lock:
            if decision.action.startswith("PREPEND "):
                if message.header_added:
                    decision = dataclasses.replace(decision, action="DUNNO")
                message.header_added = True
            message.decisions[rule] = decision
        return decision

    def _evaluate(
        self,
        request: PolicyRequest,
        deadline: float,
        rule: RecipientRule | None,
        message: _Message | None,
    ) -> list[Evaluation]:
        """Evaluate identities in order; an enforcing HELO verdict ends the request (§2.3).

        A message's identities are evaluated once: recipients with other rules reuse them.
        """
        helo_checkable = is_checkable_helo(request.helo_name)
        client = str(policy.client_ip(request.client_address))
        evaluations: list[Evaluation] = []
        for identity in policy.identities_to_check(request, self.config, helo_checkable):
            known = message.evaluations.get(identity) if message is not None else None
            evaluation = known or self._evaluate_one(identity, request, client, deadline)
            if message is not None:
                message.evaluations[identity] = evaluation
            evaluations.append(evaluation)
            if policy.verdict_for(evaluation.outcome, self.config, rule) in policy.ENFORCING:
                break
        return evaluations

    def _evaluate_one(
        self, identity: Identity, request: PolicyRequest, client: str, deadline: float
    ) -> Evaluation:
        try:
            return self.evaluator.evaluate(
                identity,
                client_address=client,
                sender=request.sender,
                helo=request.helo_name,
                deadline=deadline,
            )
        except Exception as error:
            # A pyspf bug on a junk record must not cost the request: temperror, logged.
            log.exception("SPF %s evaluation failed for sender=%r", identity, request.sender[:200])
            outcome = SpfOutcome(
                identity,
                SpfResult.TEMPERROR,
                "",
                request.sender,
                problem=f"internal error: {error}",
            )
            return Evaluation(outcome, LookupTrace())
