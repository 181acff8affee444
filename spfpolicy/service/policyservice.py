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

from cachetools import LRUCache

from spfpolicy import cacheonly
from spfpolicy.config.settings import Config, RecipientRule
from spfpolicy.decision import policy
from spfpolicy.decision.policy import Receiver
from spfpolicy.evaluation.domains import is_checkable_helo
from spfpolicy.evaluation.evaluator import Evaluation, SpfEvaluator
from spfpolicy.evaluation.trace import LookupTrace
from spfpolicy.model import (
    Decision,
    Identity,
    NullObserver,
    Observer,
    PolicyRequest,
    SpfOutcome,
    SpfResult,
)
from spfpolicy.resolver.cache import CachingResolver
from spfpolicy.service.allowlist import AllowList
from spfpolicy.service.decisionlog import log_decision, log_internal_error

log = logging.getLogger(__name__)

# The per-message memo: RCPTs of one message arrive within one SMTP session, seconds apart;
# ten minutes outlasts any smtpd timeout, and the bound keeps memory flat under load.
MEMO_SIZE = 20_000
MEMO_MAX_AGE = 600.0


@dataclass
class _Message:
    """What is known about one message (one smtpd instance) across its recipients."""

    created: float  # clock time of its first request
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
        # LRU with the age checked on lookup: a TTLCache's bookkeeping on every new message
        # cost more than the rest of the memo's work.
        self._memo: LRUCache[tuple[str, ...], _Message] = LRUCache(MEMO_SIZE)
        self._memo_lock = threading.Lock()
        # Cache-only attempts need the shared cache: without it every lookup is upstream.
        self.answers_from_cache = isinstance(evaluator.resolver, CachingResolver)

    def handle(self, request: PolicyRequest) -> Decision:
        """Answer one request; never raises (an internal error answers on_internal_error)."""
        started = self.clock()
        try:
            decision = self._decide(request, started).decision
        except Exception:  # noqa: BLE001 - the connection boundary: logged with its traceback
            decision = self._internal_error(request)
        return self._finish(request, decision, started)

    def handle_cached(self, request: PolicyRequest) -> Decision | None:
        """Answer from what the caches hold, or None: then handle() must decide the request.

        For the server's I/O thread: it never asks upstream DNS nor waits for another thread's
        question, and never raises. What a given-up attempt learned stays in the memo.
        """
        if not self.answers_from_cache:
            return None
        started = self.clock()
        decision: Decision | None
        with cacheonly.cache_only() as attempt:
            try:
                decision = self._decide(request, started).decision
            except cacheonly.NotCached:
                decision = None
            except Exception:  # noqa: BLE001 - as in handle(): logged with its traceback
                # After a miss the error may come from it: the worker will see.
                decision = None if attempt.missed else self._internal_error(request)
        attempt.replay()  # the counts of the work that was kept
        if decision is None or attempt.missed:
            return None
        return self._finish(request, decision, started)

    def _internal_error(self, request: PolicyRequest) -> Decision:
        """The on_internal_error answer, logged with the traceback; call it in an except block."""
        decision = self.error_decision()
        log_internal_error(request, decision)
        return decision

    def _finish(self, request: PolicyRequest, decision: Decision, started: float) -> Decision:
        """Log and count a decision made."""
        duration = self.clock() - started
        log_decision(request, decision, duration)
        self.observer.decision_made(decision, duration)
        return decision

    def explain(self, request: PolicyRequest) -> Explanation:
        """Decide like handle() and return the evaluations too; errors propagate."""
        return self._decide(request, self.clock())

    def error_decision(self) -> Decision:
        """What an unexpected failure answers: [policy] on_internal_error (the server's
        fallback too, should handle() itself fail)."""
        return policy.internal_error_decision(self.config)

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
            cache_hits=sum(
                trace.cache_hits + trace.from_result_cache + len(trace.reused_includes)
                for trace in traces
            ),
        )
        if message is not None:
            decision = self._remember(message, rule, decision)
        return Explanation(decision, tuple(evaluations))

    def _message(self, request: PolicyRequest) -> _Message | None:
        """The memo of this message (one smtpd instance), made on first sight."""
        if not request.instance:
            return None
        key = (request.instance, request.client_address, request.helo_name, request.sender)
        now = self.clock()
        with self._memo_lock:
            message = self._memo.get(key)
            if message is None or now - message.created > MEMO_MAX_AGE:
                message = self._memo[key] = _Message(now)
        return message

    def _allowed(self, request: PolicyRequest, message: _Message | None, deadline: float) -> str:
        """The DNS-backed allow-lists' verdict, asked once per message."""
        if self.allow is None or not self.allow.active:
            return ""
        if message is not None and message.allowed is not None:
            return message.allowed
        client = policy.client_ip(request.client_address)
        assert client is not None  # skip_reason turned unusable addresses away
        with cacheonly.all_or_nothing():
            allowed = self.allow.reason(request.helo_name, client, deadline)
        if message is not None:
            message.allowed = allowed
        return allowed

    def _remember(
        self, message: _Message, rule: RecipientRule | None, decision: Decision
    ) -> Decision:
        """Memoise per recipient rule; the message gets its trace header only once."""
        attempt = cacheonly.current()
        if attempt is not None and attempt.missed:
            raise cacheonly.NotCached("a decision made without every answer is not kept")
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
        except cacheonly.NotCached:
            raise  # a cache-only attempt gives up; the worker evaluates this identity
        except Exception:
            # A pyspf bug on a junk record must not cost the request: temperror, logged. The
            # exception's text stays in the log: the problem may reach the SMTP client.
            log.exception("SPF %s evaluation failed for sender=%r", identity, request.sender[:200])
            outcome = SpfOutcome(
                identity, SpfResult.TEMPERROR, "", request.sender, problem="internal error"
            )
            return Evaluation(outcome, LookupTrace())
