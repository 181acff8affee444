"""DNS questions that wait without a thread: UDP queries side by side on one resolver thread.

The cache's prefetch (CachingResolver.prefetch) asks here, so that thousands of requests
waiting for slow DNS hold sockets, not threads. Each question is asked as StubResolver asks it:
the same message, the servers in order, a fresh socket (and so a random source port) per try,
each try's deadline fixed when it starts, the request's deadline over all, replies to other
questions ignored. A truncated reply is not retried over TCP here: the question is given back
unanswered (None), and the blocking path asks it again, TCP included. The thread starts on the
first question and ends when it has had none for IDLE_EXIT_SECONDS, so a configuration that
replaces this resolver leaves no thread behind.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import selectors
import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dns.flags
import dns.message

from spfpolicy.resolver.answers import DnsAnswer, DnsError, DnsFailure, DnsOutcome
from spfpolicy.resolver.stub import (
    MAX_TCP_MESSAGE,
    StubResolver,
    check_rcode,
    make_question,
    outcome_label,
    parse_reply,
    to_answer,
)

log = logging.getLogger(__name__)

Done = Callable[[DnsOutcome], None]

# Questions on the network at once (one socket each); more wait their turn in order.
MAX_IN_FLIGHT = 4096
IDLE_EXIT_SECONDS = 2.0  # a thread start costs far less than a DNS round trip


@dataclass(eq=False)
class _Question:
    """One question being asked: which server it is at and when that try gives up."""

    name: str
    rdtype: str
    deadline: float
    done: Done
    started: float
    request: dns.message.Message | None = None
    servers: deque[str] = field(default_factory=deque)
    sock: socket.socket | None = None
    server: str = ""
    attempt_ends: float = 0.0
    failure: DnsError | None = None


class QueryMultiplexer:
    """Asks StubResolver's questions without blocking the caller; see the module."""

    def __init__(self, stub: StubResolver) -> None:
        self.stub = stub
        self._lock = threading.Lock()
        self._submitted: deque[_Question] = deque()
        self._waiting: deque[_Question] = deque()  # beyond MAX_IN_FLIGHT
        self._in_flight = 0
        self._timers: list[tuple[float, int, _Question]] = []
        self._serial = itertools.count()
        self._thread: threading.Thread | None = None
        self._selector: selectors.BaseSelector | None = None
        self._wake_out: socket.socket | None = None

    def ask(self, name: str, rdtype: str, deadline: float, done: Done) -> None:
        """Ask name/rdtype before deadline; done(outcome) is called once, on the resolver
        thread (or at once, here, when the question needs no network)."""
        question = _Question(name, rdtype, deadline, done, self.stub.clock())
        with self._lock:
            self._submitted.append(question)
            if self._thread is None:
                self._start()
            wake = self._wake_out
        assert wake is not None
        with contextlib.suppress(BlockingIOError):  # the loop has wake-ups queued already
            wake.send(b"\0")

    def _start(self) -> None:
        """Start the resolver thread (with the lock held)."""
        self._selector = selectors.DefaultSelector()
        wake_in, self._wake_out = socket.socketpair()
        wake_in.setblocking(False)
        self._wake_out.setblocking(False)
        self._selector.register(wake_in, selectors.EVENT_READ, None)
        self._thread = threading.Thread(
            target=self._run, args=(self._selector, wake_in), name="spfpolicy-dns", daemon=True
        )
        self._thread.start()

    # Everything below runs on the resolver thread.

    def _run(self, selector: selectors.BaseSelector, wake_in: socket.socket) -> None:
        idle_since = self.stub.clock()
        while True:
            try:
                self._turn(selector, wake_in)
            except Exception:  # a bug must not leave requests waiting for a reply forever
                log.exception("unexpected error in the DNS multiplexer")
                self._fail_everything(selector)
            now = self.stub.clock()
            if self._in_flight or self._waiting:
                idle_since = now
            elif now - idle_since >= IDLE_EXIT_SECONDS:
                with self._lock:
                    if not self._submitted:
                        self._thread = None
                        assert self._wake_out is not None
                        self._wake_out.close()
                        self._wake_out = None
                        break
        selector.close()
        wake_in.close()

    def _turn(self, selector: selectors.BaseSelector, wake_in: socket.socket) -> None:
        """Wait for a reply, a new question or a try's end, and deal with what came."""
        timeout = IDLE_EXIT_SECONDS
        if self._timers:
            timeout = max(0.0, min(timeout, self._timers[0][0] - self.stub.clock()))
        for key, _ in selector.select(timeout):
            if key.data is None:
                with contextlib.suppress(BlockingIOError):
                    while wake_in.recv(4096):
                        pass
            else:
                self._receive(selector, key.data)
        with self._lock:
            submitted, self._submitted = self._submitted, deque()
        self._waiting.extend(submitted)
        while self._waiting and self._in_flight < MAX_IN_FLIGHT:
            self._begin(selector, self._waiting.popleft())
        now = self.stub.clock()
        while self._timers and self._timers[0][0] <= now:
            _, _, question = heapq.heappop(self._timers)
            if question.sock is not None and question.attempt_ends <= now:
                self._next_server(selector, question, None)

    def _begin(self, selector: selectors.BaseSelector, question: _Question) -> None:
        request = make_question(question.name, question.rdtype)
        if isinstance(request, DnsAnswer):
            self._finish(question, request)
            return
        question.request = request
        question.servers = deque(self.stub.nameservers)
        question.failure = DnsError(
            DnsFailure.TIMEOUT, f"DNS timeout for {question.name} {question.rdtype}"
        )
        self._in_flight += 1
        self._next_server(selector, question, None)

    def _next_server(
        self, selector: selectors.BaseSelector, question: _Question, failure: DnsError | None
    ) -> None:
        """End the current try (failure, or a timeout when None) and start the next one."""
        if question.sock is not None:
            selector.unregister(question.sock)
            question.sock.close()
            question.sock = None
            if failure is None:
                failure = DnsError(DnsFailure.TIMEOUT, f"no reply from {question.server}")
        if failure is not None:
            question.failure = failure
            if failure.failure is DnsFailure.TIMEOUT and self.stub.clock() >= question.deadline:
                self._end(question, DnsError(failure.failure, str(failure), cacheable=False))
                return
        while question.servers:
            server = question.servers.popleft()
            try:
                self._send(selector, question, server)
                return
            except DnsError as error:
                if not error.cacheable:
                    self._end(question, error)
                    return
                question.failure = error
        assert question.failure is not None
        self._end(question, question.failure)

    def _send(self, selector: selectors.BaseSelector, question: _Question, server: str) -> None:
        """Start one try at server: a new socket, the query sent, its deadline set."""
        assert question.request is not None
        attempt_ends = self.stub.attempt_deadline(question.deadline)
        family = socket.AF_INET6 if ":" in server else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as error:
            raise DnsError(DnsFailure.ERROR, f"{server}: {error}") from error
        try:
            sock.setblocking(False)
            sock.connect((server, self.stub.port))
            sock.send(question.request.to_wire())
        except OSError as error:
            sock.close()
            raise DnsError(DnsFailure.ERROR, f"{server}: {error}") from error
        question.sock, question.server, question.attempt_ends = sock, server, attempt_ends
        selector.register(sock, selectors.EVENT_READ, question)
        heapq.heappush(self._timers, (attempt_ends, next(self._serial), question))

    def _receive(self, selector: selectors.BaseSelector, question: _Question) -> None:
        """Read what arrived for a question; a reply to another question is ignored."""
        assert question.request is not None
        while question.sock is not None:
            try:
                wire = question.sock.recv(MAX_TCP_MESSAGE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # ICMP port unreachable and friends: this server failed
                failure = DnsError(DnsFailure.ERROR, f"{question.server}: {error}")
                self._next_server(selector, question, failure)
                return
            reply = parse_reply(wire)
            if reply is None or not question.request.is_response(reply):
                continue
            self._replied(selector, question, reply)

    def _replied(self, selector: selectors.BaseSelector, question: _Question, reply: Any) -> None:
        assert question.request is not None
        if reply.flags & dns.flags.TC:
            self._close(selector, question)
            self._end(question, None)
            return
        try:
            check_rcode(reply, question.request, question.server)
        except DnsError as error:
            self._next_server(selector, question, error)
            return
        self._close(selector, question)
        try:
            outcome: DnsOutcome = to_answer(reply, question.request)
        except DnsError as error:
            outcome = error
        self._end(question, outcome)

    def _close(self, selector: selectors.BaseSelector, question: _Question) -> None:
        if question.sock is not None:
            selector.unregister(question.sock)
            question.sock.close()
            question.sock = None

    def _end(self, question: _Question, outcome: DnsOutcome) -> None:
        """A question that was on the network is over."""
        self._in_flight -= 1
        self._finish(question, outcome)

    def _finish(self, question: _Question, outcome: DnsOutcome) -> None:
        """Count the query and tell whoever asked."""
        if outcome is not None:
            label = outcome_label(outcome) if isinstance(outcome, DnsAnswer) else outcome.failure
            elapsed = self.stub.clock() - question.started
            self.stub.observer.dns_query(question.rdtype, str(label), elapsed, prefetch=True)
        try:
            question.done(outcome)
        except Exception:
            log.exception("a DNS multiplexer callback failed")

    def _fail_everything(self, selector: selectors.BaseSelector) -> None:
        """After a bug: end every question in flight or waiting, so no request waits forever."""
        failure = DnsError(DnsFailure.ERROR, "DNS multiplexer failure", cacheable=False)
        for _, _, question in self._timers:
            if question.sock is not None:  # its current try (a question has one timer per try)
                self._close(selector, question)
                self._finish(question, failure)
        self._timers.clear()
        while self._waiting:
            self._finish(self._waiting.popleft(), failure)
        self._in_flight = 0
