"""The per-message memo: what one message (one smtpd instance) has been answered already.

Later RCPT requests of the message reuse its decision, its evaluations and its one trace
header (DESIGN.md §3.6). Bounded in size and in age; shared by all connections, so locked.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from cachetools import LRUCache

from spfpolicy.config.settings import RecipientRule
from spfpolicy.evaluation.evaluator import Evaluation
from spfpolicy.model import Decision, Identity, PolicyRequest

# RCPTs of one message arrive within one SMTP session, seconds apart; ten minutes outlasts any
# smtpd timeout, and the bound keeps memory flat under load.
MEMO_SIZE = 20_000
MEMO_MAX_AGE = 600.0


@dataclass
class Message:
    """What is known about one message across its recipients."""

    created: float  # clock time of its first request
    decisions: dict[RecipientRule | None, Decision] = field(default_factory=dict)
    evaluations: dict[Identity, Evaluation] = field(default_factory=dict)  # shared by rules
    header_added: bool = False
    allowed: str | None = None  # the DNS-backed allow-lists' answer, once asked


class MessageMemo:
    """Messages by instance (and the identities they were sent with)."""

    def __init__(self, size: int = MEMO_SIZE, max_age: float = MEMO_MAX_AGE) -> None:
        # LRU with the age checked on lookup: a TTLCache's bookkeeping on every new message
        # cost more than the rest of the memo's work.
        self._messages: LRUCache[tuple[str, ...], Message] = LRUCache(size)
        self._max_age = max_age
        self._lock = threading.Lock()

    def message(self, request: PolicyRequest, now: float) -> Message | None:
        """The memo of the request's message, made on first sight; None without an instance."""
        if not request.instance:
            return None
        key = (request.instance, request.client_address, request.helo_name, request.sender)
        with self._lock:
            message = self._messages.get(key)
            if message is None or now - message.created > self._max_age:
                message = self._messages[key] = Message(now)
        return message

    def remember(self, message: Message, rule: RecipientRule | None, decision: Decision) -> None:
        """Keep a decision for the message's recipients of that rule, and whether the message
        has its trace header now."""
        with self._lock:
            message.decisions[rule] = decision
            message.header_added = message.header_added or bool(decision.header)
