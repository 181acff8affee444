"""How the wire calls the decision: begin() on the I/O thread, complete() on a worker.

The server knows nothing of SPF: it holds these callables (swapped together on reload) and
turns what they return, or raise, into the action text of a reply. Between the two, wait()
may take a pending request off the server's hands until it calls ready(); resume() then goes
on with it on the I/O thread, as begin() did, so a request waiting that way holds no thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from spfpolicy.model import Decision, PolicyRequest

logger = logging.getLogger("spfpolicy.wire.server")

# On the I/O thread, never blocking: a Decision, or a pending request that Complete finishes.
Begin = Callable[[PolicyRequest], object]
# On a worker: the Decision for what Begin left pending.
Complete = Callable[[Any], Decision]
# On the I/O thread: True when it will call ready() (from any thread) for Resume to go on.
Wait = Callable[[Any, Callable[[], None]], bool]
# On the I/O thread, never blocking: what Begin returns, for a request Wait made ready.
Resume = Callable[[Any], object]


def never_waits(pending: object, ready: Callable[[], None]) -> bool:
    """The Wait of handlers that have none: every pending request goes to a worker."""
    return False


def nothing_to_resume(pending: object) -> object:
    """The Resume of handlers that never wait (never called)."""
    return pending


class Handlers(NamedTuple):
    """What answers requests: swapped as one value, so a request sees one configuration."""

    begin: Begin
    complete: Complete
    error_action: str
    wait: Wait = never_waits
    resume: Resume = nothing_to_resume


def call_phase(
    phase: Callable[[Any], object], argument: object, request: PolicyRequest, error_action: str
) -> object:
    """A phase's action text if it decided; what it returned if not; the error action if it
    raised (logged, naming the request)."""
    try:
        answer = phase(argument)
    except Exception:
        logger.exception(
            "policy handler failed (client=%r instance=%r); answering %r",
            request.client_address,
            request.instance,
            error_action,
        )
        return error_action
    return answer.action if isinstance(answer, Decision) else answer
