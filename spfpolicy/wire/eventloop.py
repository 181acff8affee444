"""The event loop: every connection on one I/O thread, requests that wait on worker threads.

One thread reads, frames and begins every request on all connections (selectors, non-blocking
sockets). A request that begin() decides is answered right there. One it returns pending is
offered to wait(), which may hold it without a thread until its DNS has landed, when resume()
goes on with it here; otherwise it is completed on a worker (spfpolicy.wire.workers). Either
way a request waiting for DNS holds up no one, and idle connections cost a socket, not a
thread. spfpolicy.wire.server owns the sockets' life.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import time
from collections.abc import Callable

from spfpolicy.model import Observer
from spfpolicy.wire import protocol
from spfpolicy.wire.connection import Connection, Listener, describe_peer
from spfpolicy.wire.pending import PendingRequests, Waiting
from spfpolicy.wire.phases import Handlers, call_phase
from spfpolicy.wire.waker import Waker
from spfpolicy.wire.workers import WorkerPool

logger = logging.getLogger("spfpolicy.wire.server")

# After an accept() failure such as EMFILE the connection stays queued: pause that listener
# instead of spinning on it.
ACCEPT_ERROR_PAUSE = 0.1
# Idle connections are looked for at least this often.
SWEEP_INTERVAL = 1.0
# recv() size: a Postfix request is about 1 KiB; one call takes a pipelined burst too.
RECV_BYTES = 65536
# Connections accepted per listener wake-up, so a burst cannot starve those already open.
ACCEPT_BATCH = 64
# After a malformed request, how long the rest of what the peer sends is read and dropped
# before closing: closing with unread input sends a reset, and a reset makes the peer's kernel
# drop replies it has received but not yet read.
LINGER_SECONDS = 2.0


class EventLoop:
    """Accepts, reads and answers on the listeners it is given until stopped; see the module."""

    def __init__(
        self,
        listening: list[Listener],
        handlers: Callable[[], Handlers],
        *,
        max_connections: int,
        idle_timeout: float,
        observer: Observer,
        forget_listeners: Callable[[], None],
    ) -> None:
        self._listeners = listening
        self._handlers = handlers  # the server's current Handlers, read once per request
        self._max_connections = max_connections
        self._idle_timeout = idle_timeout
        self._observer = observer
        self._forget_listeners = forget_listeners  # removes the unix socket files we made
        self._connections: set[Connection] = set()
        self.pending = PendingRequests(WorkerPool(max_connections), self.wake)
        self._selector = selectors.DefaultSelector()
        self._stopping = False
        self._stop_by = 0.0  # the grace deadline once stopping
        self.failed = False  # True when the loop stopped on an unexpected error
        self._waker = Waker()
        self._selector.register(self._waker.fileno(), selectors.EVENT_READ, None)
        for listener in listening:
            listener.sock.setblocking(False)  # a connection can vanish before accept()
            self._selector.register(listener.sock, selectors.EVENT_READ, listener)

    def stop(self, grace: float) -> None:
        """Stop accepting; answer requests in flight for up to grace seconds (any thread)."""
        self._stop_by = time.monotonic() + grace
        self._stopping = True
        self.wake()

    def wake(self) -> None:
        """Make the event loop look at its queues now (any thread)."""
        self._waker.wake()

    # Everything below runs on the I/O thread.

    def run(self) -> None:
        """The event loop: until shutdown, then until requests in flight are answered."""
        next_sweep = time.monotonic() + self._sweep_interval()
        try:
            while True:
                wake_by = min(next_sweep, self._stop_by) if self._stop_by else next_sweep
                timeout = max(0.0, wake_by - time.monotonic())
                for key, mask in self._selector.select(timeout):
                    self._dispatch_safely(key.data, mask)
                now = time.monotonic()
                if self._stopping and self._stopped(now):
                    break
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + self._sweep_interval()
        except Exception:
            # Exit rather than linger without serving: systemd restarts the daemon, and
            # Postfix retries meanwhile.
            logger.critical("the event loop failed; stopping the server", exc_info=True)
            self.failed = True
        finally:
            self._close_all()

    def _dispatch_safely(self, target: Listener | Connection | None, mask: int) -> None:
        """Dispatch; a bug met on one connection closes that connection, not the server."""
        try:
            self._dispatch(target, mask)
        except Exception:
            if not isinstance(target, Connection):
                raise
            logger.exception("unexpected error on the connection from %s", target.peer)
            self._close(target)

    def _dispatch(self, target: Listener | Connection | None, mask: int) -> None:
        if target is None:
            self._take_replies()
        elif isinstance(target, Listener):
            self._accept(target)
        elif mask & selectors.EVENT_WRITE:
            if self._send(target, target.unsent):
                self._answer(target)
        else:
            self._receive(target)

    def _sweep_interval(self) -> float:
        return min(SWEEP_INTERVAL, self._idle_timeout / 4)

    def _sweep(self, now: float) -> None:
        """Close connections idle too long; resume listeners paused after an accept error."""
        for connection in [c for c in self._connections if not c.busy]:
            if connection.lingering_until:
                if now >= connection.lingering_until:
                    self._close(connection)
            elif now - connection.idle_since > self._idle_timeout:
                logger.info("closing %s: idle for %.0f s", connection.peer, self._idle_timeout)
                self._close(connection)
        for listener in self._listeners:
            if listener.paused_until and now >= listener.paused_until:
                listener.paused_until = 0.0
                self._selector.register(listener.sock, selectors.EVENT_READ, listener)

    def _accept(self, listener: Listener) -> None:
        """Accept what is queued, up to a batch; refuse beyond max_connections."""
        for _ in range(ACCEPT_BATCH):
            try:
                sock, peer = listener.sock.accept()
            except (BlockingIOError, ConnectionAbortedError):
                return
            except OSError as error:  # EMFILE and friends: the connection stays queued
                logger.error("accept on %s failed: %s", listener.address, error)
                self._selector.unregister(listener.sock)
                listener.paused_until = time.monotonic() + ACCEPT_ERROR_PAUSE
                return
            described = describe_peer(peer, listener.address)
            if len(self._connections) >= self._max_connections:
                # Postfix counts the closed connection as a failed try and retries.
                logger.warning(
                    "refusing %s: %d connections open", described, len(self._connections)
                )
                self._observer.connection_refused()
                sock.close()
                continue
            sock.setblocking(False)
            connection = Connection(sock, described, time.monotonic())
            self._connections.add(connection)
            self._selector.register(sock, selectors.EVENT_READ, connection)
            self._observer.connection_opened()

    def _receive(self, connection: Connection) -> None:
        """Read what the peer sent and answer the complete requests in it."""
        try:
            data = connection.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            logger.debug("connection from %s failed: %s", connection.peer, error)
            self._close(connection)
            return
        if connection.lingering_until:
            if not data:
                self._close(connection)
            return
        if not data:
            try:
                connection.reader.end_of_stream()
            except protocol.ProtocolError as error:
                self._protocol_error(connection, error)
            self._close(connection)
            return
        connection.reader.feed(data)
        self._answer(connection)

    def _answer(self, connection: Connection) -> None:
        """Answer buffered requests one at a time until one has to wait or none is left."""
        while not (connection.busy or connection.unsent or connection.closed):
            try:
                request = connection.reader.next_request()
            except protocol.ProtocolError as error:
                self._protocol_error(connection, error)
                self._linger(connection)
                return
            if request is None:
                return
            self._observer.request_received(request.protocol_state)
            handlers = self._handlers()  # read once: set_handlers() may run at any moment
            answer = call_phase(handlers.begin, request, request, handlers.error_action)
            if not isinstance(answer, str):
                connection.busy = True
                # Until the request is answered, read nothing more: a pipelining peer waits.
                self._selector.unregister(connection.sock)
                self.pending.hand_over(Waiting(connection, request, answer, handlers))
                return
            action = answer
            if not self._send(connection, protocol.encode_reply(action)):
                return

    def _take_replies(self) -> None:
        """Send the replies finished off the I/O thread (the wake-up pipe was readable)."""
        self._waker.drain()
        for connection, reply in self.pending.take():
            connection.busy = False
            if connection.closed:
                continue  # cut at shutdown, or the peer went away
            self._selector.register(connection.sock, selectors.EVENT_READ, connection)
            if self._send(connection, reply):
                self._answer(connection)

    def _send(self, connection: Connection, data: bytes) -> bool:
        """Send a reply, or what is left of one; True when the connection may take the next.

        It never answers the next request itself: a burst of pipelined requests is a loop in
        _answer(), not a recursion as deep as the burst.
        """
        try:
            sent = connection.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as error:
            logger.debug("cannot reply to %s: %s", connection.peer, error)
            self._close(connection)
            return False
        was_waiting = bool(connection.unsent)
        connection.unsent = data[sent:]
        if connection.unsent:
            if not was_waiting:
                self._selector.modify(connection.sock, selectors.EVENT_WRITE, connection)
            return False
        if was_waiting:
            self._selector.modify(connection.sock, selectors.EVENT_READ, connection)
        connection.idle_since = time.monotonic()
        if self._stopping:
            self._close(connection)  # its request is answered; take no new one
            return False
        return True

    def _linger(self, connection: Connection) -> None:
        """End the connection without a reply, but let the replies already sent arrive."""
        try:
            connection.sock.shutdown(socket.SHUT_WR)  # our end, after what is queued
        except OSError:
            self._close(connection)
            return
        connection.lingering_until = time.monotonic() + LINGER_SECONDS
        connection.reader = protocol.RequestReader()  # what was buffered is not needed

    def _protocol_error(self, connection: Connection, error: protocol.ProtocolError) -> None:
        if not self._stopping:  # at shutdown we cut requests ourselves
            logger.warning("closing %s without a reply: %s", connection.peer, error)
            self._observer.protocol_error(error.kind)

    def _stopped(self, now: float) -> bool:
        """At shutdown: stop listening, close what waits for nothing; True when all is done."""
        if self._listeners:
            for listener in self._listeners:
                if not listener.paused_until:
                    self._selector.unregister(listener.sock)
                listener.sock.close()
            self._listeners.clear()
            self._forget_listeners()
        for connection in list(self._connections):
            if not (connection.busy or connection.unsent):
                self._close(connection)
        if self._connections and now >= self._stop_by:
            logger.warning("cutting %d connections still busy at shutdown", len(self._connections))
            return True
        return not self._connections

    def _close(self, connection: Connection) -> None:
        if connection.closed:
            return
        connection.closed = True
        self._connections.discard(connection)
        # A busy one was unregistered when its worker took it; after a bug, who knows.
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(connection.sock)
        connection.sock.close()
        self._observer.connection_closed()

    def _close_all(self) -> None:
        for connection in list(self._connections):
            self._close(connection)
        for listener in self._listeners:
            listener.sock.close()
        self._listeners.clear()
        self._forget_listeners()
        self._selector.close()
        self._waker.close()
