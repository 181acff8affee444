"""Where a pending request waits: held by the handlers' wait() without a thread, or a worker.

The event loop hands over every request begin() left pending; what comes back (a reply, or a
request made ready to resume) it takes on the I/O thread, woken by wake().
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from spfpolicy.model import PolicyRequest
from spfpolicy.wire import protocol
from spfpolicy.wire.connection import Connection
from spfpolicy.wire.phases import Handlers, call_phase
from spfpolicy.wire.workers import WorkerPool

logger = logging.getLogger("spfpolicy.wire.server")

# Requests resumed per turn of the event loop: each is a whole evaluation, up to a millisecond.
RESUME_BATCH = 32


class Waiting(NamedTuple):
    """A pending request and what answers it, while it waits."""

    connection: Connection
    request: PolicyRequest
    pending: object
    handlers: Handlers  # those it began with: a request sees one configuration


class PendingRequests:
    """Pending requests until their replies are ready for the I/O thread."""

    def __init__(self, workers: WorkerPool, wake: Callable[[], None]) -> None:
        self.workers = workers
        self._wake = wake  # makes the I/O thread call take()
        self._ready: deque[Waiting] = deque()  # made ready by wait(): to resume
        self._replies: deque[tuple[Connection, bytes]] = deque()

    def hand_over(self, waiting: Waiting) -> None:
        """To wait() if it takes the request, else to a worker (I/O thread)."""
        try:
            ready = functools.partial(self._made_ready, waiting)
            held = waiting.handlers.wait(waiting.pending, ready)
        except Exception:
            logger.exception("wait() failed (client=%r)", waiting.request.client_address)
            held = False
        if not held:
            self.workers.submit(functools.partial(self._work, waiting))

    def take(self) -> list[tuple[Connection, bytes]]:
        """Resume up to RESUME_BATCH of the requests made ready, and give the replies finished
        (I/O thread). More left ready wake the loop again, so that thousands landing together
        are answered as they are decided, with reads and new connections served in between."""
        for _ in range(min(RESUME_BATCH, len(self._ready))):
            waiting = self._ready.popleft()
            handlers = waiting.handlers
            answer = call_phase(
                handlers.resume, waiting.pending, waiting.request, handlers.error_action
            )
            if isinstance(answer, str):
                self._replies.append((waiting.connection, protocol.encode_reply(answer)))
            else:
                self.hand_over(waiting._replace(pending=answer))
        if self._ready:
            self._wake()
        replies = []
        while self._replies:
            replies.append(self._replies.popleft())
        return replies

    def _made_ready(self, waiting: Waiting) -> None:
        """wait()'s ready(): resume the request on the I/O thread (any thread)."""
        self._ready.append(waiting)
        self._wake()

    def _work(self, waiting: Waiting) -> None:
        """On a worker: complete the request, then hand the reply to the I/O thread."""
        request, handlers = waiting.request, waiting.handlers
        action = call_phase(handlers.complete, waiting.pending, request, handlers.error_action)
        if not isinstance(action, str):
            logger.error("complete() returned %r, not a Decision", action)
            action = handlers.error_action
        self._replies.append((waiting.connection, protocol.encode_reply(action)))
        self._wake()
