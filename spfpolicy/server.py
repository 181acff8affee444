"""The threaded policy server: listening sockets, one thread per connection, graceful shutdown.

It speaks the wire protocol through spfpolicy.protocol and knows nothing of SPF or DNS: every
request goes to a callable PolicyRequest -> Decision, which set_handler() can swap on reload.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from spfpolicy import listeners, protocol
from spfpolicy.model import (
    Decision,
    ListenAddress,
    ListenKind,
    NullObserver,
    Observer,
    PolicyRequest,
    SpfPolicyError,
)

logger = logging.getLogger(__name__)

Handler = Callable[[PolicyRequest], Decision]

# After an accept() failure such as EMFILE the connection stays queued: pause instead of spinning.
ACCEPT_ERROR_PAUSE = 0.1
# How often serve_forever() looks whether shutdown() has finished.
SERVE_POLL_INTERVAL = 0.2
# How long shutdown() waits for a connection thread once its socket has been shut down.
FINAL_JOIN_TIMEOUT = 2.0

_NULL_OBSERVER = NullObserver()


@dataclass(slots=True)
class _Connection:
    """One accepted client connection and the thread serving it."""

    sock: socket.socket
    peer: str
    thread: threading.Thread = field(init=False)


class PolicyServer:
    """Serve the Postfix policy protocol on inet and unix sockets, one thread per connection."""

    def __init__(
        self,
        listen: Sequence[ListenAddress],
        handler: Handler,
        *,
        max_connections: int = 512,
        idle_timeout: float = 330.0,
        unix_mode: int = 0o666,
        error_action: str,
        observer: Observer = _NULL_OBSERVER,
        inherited_sockets: Sequence[socket.socket] = (),
    ) -> None:
        self._listen = tuple(listen)
        self._handler = handler
        self._max_connections = max_connections
        self._idle_timeout = idle_timeout
        self._unix_mode = unix_mode
        self._error_action = error_action
        self._observer = observer
        self._listeners: list[socket.socket] = list(inherited_sockets)
        self._addresses: list[ListenAddress] = []  # known once bound; a closed socket has none
        self._created_files: list[listeners.SocketFile] = []
        self._acceptors: list[threading.Thread] = []
        self._connections: dict[int, _Connection] = {}
        self._numbers = itertools.count(1)
        # Reentrant: shutdown() may run in a signal handler on a thread that already holds it.
        self._lock = threading.RLock()
        self._state = "new"  # new -> running -> stopping
        self._stopping = threading.Event()
        self._finished = threading.Event()
        self._wake_read, self._wake_write = -1, -1

    @property
    def addresses(self) -> list[ListenAddress]:
        """The addresses actually listened on, with port 0 resolved to the kernel's choice."""
        return list(self._addresses)

    def set_handler(self, handler: Handler, error_action: str | None = None) -> None:
        """Use handler (and error_action, if given) for every request from now on.

        Open connections switch too: each request reads the attributes once, and one
        attribute assignment is atomic.
        """
        if error_action is not None:
            self._error_action = error_action
        self._handler = handler

    def start(self) -> None:
        """Listen on every address and start accepting; SpfPolicyError if an address fails."""
        with self._lock:
            if self._state != "new":
                raise SpfPolicyError("the policy server can only be started once")
            self._state = "running"
        try:
            for address in self._listen:
                self._listeners.append(self._open(address))
        except SpfPolicyError:
            self.shutdown()  # closes what is open; the server cannot be started again
            raise
        self._addresses = [listeners.address_of(listener) for listener in self._listeners]
        self._wake_read, self._wake_write = os.pipe()
        for listener, address in zip(self._listeners, self._addresses, strict=True):
            acceptor = _thread(
                self._accept_loop, (listener, address), f"spfpolicy-accept-{address}"
            )
            self._acceptors.append(acceptor)
            acceptor.start()
        logger.debug("listening on %s", ", ".join(str(a) for a in self.addresses))

    def serve_forever(self) -> None:
        """Start if needed, then block until shutdown() has finished."""
        if self._state == "new":
            self.start()
        # Poll with sleep rather than Event.wait(): a signal handler that calls shutdown() in
        # this thread would deadlock on the Event's internal lock if it interrupted wait().
        while not self._finished.is_set():
            time.sleep(SERVE_POLL_INTERVAL)

    def shutdown(self, grace: float = 10.0) -> None:
        """Stop accepting, give in-flight requests up to grace seconds, then close everything.

        Idempotent, and safe to call from a signal handler: a second call returns at once.
        """
        with self._lock:
            started, self._state = self._state, "stopping"
            if started == "stopping":
                return
            self._stopping.set()
        if started == "running" and self._wake_write != -1:
            self._stop_accepting()
            self._drain(grace)
        else:
            self._close_listeners()  # never started, or start() failed half-way
        self._finished.set()

    def _open(self, address: ListenAddress) -> socket.socket:
        """Bind and listen on one address, naming it and the OS reason on failure."""
        try:
            if address.kind is ListenKind.UNIX:
                return self._open_unix(address.path)
            return listeners.open_inet(address.host, address.port)
        except OSError as error:
            raise SpfPolicyError(f"cannot listen on {address}: {error}") from error

    def _open_unix(self, path: str) -> socket.socket:
        """Bind a unix socket at path and remember the file, to remove only our own later."""
        sock, identity = listeners.open_unix(path, self._unix_mode)
        self._created_files.append(identity)
        return sock

    def _close_listeners(self) -> None:
        """Close the listening sockets and remove the unix socket files this server created."""
        for listener in self._listeners:
            listener.close()
        for identity in self._created_files:
            listeners.remove_own_socket_file(identity)

    def _stop_accepting(self) -> None:
        """Wake and join the accept threads, then close what they listened on."""
        os.write(self._wake_write, b"x")  # the pipe stays readable, so every acceptor wakes
        for thread in self._acceptors:
            thread.join()
        self._close_listeners()
        os.close(self._wake_read)
        os.close(self._wake_write)

    def _accept_loop(self, listener: socket.socket, address: ListenAddress) -> None:
        """Accept connections on listener until shutdown() writes to the wake-up pipe."""
        listener.setblocking(False)  # a connection can vanish between select() and accept()
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            selector.register(self._wake_read, selectors.EVENT_READ)
            while not self._stopping.is_set():
                selector.select()
                if self._stopping.is_set():
                    break
                try:
                    self._accept_one(listener, address)
                except Exception:  # keep accepting: one bad connection must not stop the server
                    logger.exception("unexpected error accepting on %s", address)
                    self._stopping.wait(ACCEPT_ERROR_PAUSE)

    def _accept_one(self, listener: socket.socket, address: ListenAddress) -> None:
        """Accept one pending connection and serve it in a new thread, if there is room."""
        try:
            sock, peer = listener.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return
        except OSError as error:
            logger.error("accept on %s failed: %s", address, error)
            self._stopping.wait(ACCEPT_ERROR_PAUSE)
            return
        number = next(self._numbers)
        connection = _Connection(sock, _describe_peer(peer, address))
        connection.thread = _thread(self._serve, (number, connection), f"spfpolicy-conn-{number}")
        with self._lock:
            room = len(self._connections) < self._max_connections
            admitted = room and not self._stopping.is_set()
            if admitted:
                self._connections[number] = connection
        if not admitted:
            if not room:  # Postfix counts the closed connection as a failed try and retries
                logger.warning(
                    "refusing %s: %d connections open", connection.peer, self._max_connections
                )
                self._observer.connection_refused()
            sock.close()
            return
        try:
            connection.thread.start()
        except RuntimeError:
            logger.exception("cannot start a thread for the connection from %s", connection.peer)
            self._forget(number, connection)

    def _serve(self, number: int, connection: _Connection) -> None:
        """Answer requests on one connection until it closes, fails or the server stops."""
        self._observer.connection_opened()
        try:
            connection.sock.settimeout(self._idle_timeout)
            with connection.sock.makefile("rb") as stream:
                while not self._stopping.is_set() and self._serve_one(connection, stream):
                    pass
        except Exception:
            logger.exception("unexpected error on the connection from %s", connection.peer)
        finally:
            self._observer.connection_closed()
            self._forget(number, connection)

    def _serve_one(self, connection: _Connection, stream: BinaryIO) -> bool:
        """Read one request and send its reply; False when the connection should close."""
        try:
            request = protocol.read_request(stream.readline)
        except protocol.ProtocolError as error:
            if not self._stopping.is_set():  # at shutdown we cut the request ourselves
                logger.warning("closing %s without a reply: %s", connection.peer, error)
                self._observer.protocol_error(error.kind)
            return False
        except TimeoutError:
            logger.info("closing %s: idle for %.0f s", connection.peer, self._idle_timeout)
            return False
        except OSError as error:
            logger.debug("connection from %s failed: %s", connection.peer, error)
            return False
        if request is None:
            return False
        self._observer.request_received(request.protocol_state)
        try:
            connection.sock.sendall(protocol.encode_reply(self._decide(request)))
        except OSError as error:
            logger.debug("cannot reply to %s: %s", connection.peer, error)
            return False
        return True

    def _decide(self, request: PolicyRequest) -> str:
        """Ask the handler for the action; the configured error action if it raises."""
        handler = self._handler  # read once: set_handler() may run at any moment
        try:
            return handler(request).action
        except Exception:
            logger.exception(
                "policy handler failed (client=%s instance=%s); answering %r",
                request.client_address,
                request.instance,
                self._error_action,
            )
            return self._error_action

    def _forget(self, number: int, connection: _Connection) -> None:
        """Drop a connection from the table, then close its socket."""
        # Removed under the lock before closing, so _drain() never shuts down a closed socket
        # whose descriptor number the kernel may already have given to another socket.
        with self._lock:
            self._connections.pop(number, None)
        connection.sock.close()

    def _drain(self, grace: float) -> None:
        """Let busy connections send their reply, then cut whatever is left after grace."""
        deadline = time.monotonic() + grace
        # SHUT_RD wakes a thread waiting for the next request with end-of-stream, but still lets
        # a thread that is in the handler send its reply; after that it sees _stopping and ends.
        remaining = self._shut_connections(socket.SHUT_RD)
        for connection in remaining:
            connection.thread.join(max(0.0, deadline - time.monotonic()))
        remaining = self._shut_connections(socket.SHUT_RDWR)
        if remaining:
            logger.warning("cutting %d connections still busy after %.1f s", len(remaining), grace)
        for connection in remaining:
            connection.thread.join(FINAL_JOIN_TIMEOUT)

    def _shut_connections(self, how: int) -> list[_Connection]:
        """Shut down (without closing) every open connection; return them."""
        with self._lock:
            connections = list(self._connections.values())
            for connection in connections:
                with contextlib.suppress(OSError):  # the peer may be gone already
                    connection.sock.shutdown(how)
        return connections


def _thread(target: Callable[..., None], args: tuple[object, ...], name: str) -> threading.Thread:
    """A daemon thread: one stuck in a handler past shutdown must not keep the process alive."""
    return threading.Thread(target=target, args=args, name=name, daemon=True)


def _describe_peer(peer: object, address: ListenAddress) -> str:
    """A peer for the logs: "192.0.2.1:4321", "[2001:db8::1]:4321" or the unix socket."""
    if isinstance(peer, tuple):
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(address)  # unix clients have no name of their own
