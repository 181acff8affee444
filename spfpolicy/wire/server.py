"""The policy server: its listening sockets, its event loop's thread, graceful shutdown.

The serving itself is spfpolicy.wire.eventloop: one I/O thread for every connection, worker threads
for requests that wait on DNS. It speaks the wire protocol through spfpolicy.wire.protocol and
knows nothing of SPF or DNS: every request goes to begin (on the I/O thread: a Decision, or a
pending request), a pending one to wait (which may hold it without a thread until it is ready
for resume, on the I/O thread again) or else to complete (on a worker: pending -> Decision);
set_handlers() swaps them on reload (spfpolicy.wire.phases).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Sequence

from spfpolicy.model import (
    Decision,
    ListenAddress,
    ListenKind,
    NullObserver,
    Observer,
    SpfPolicyError,
)
from spfpolicy.wire import listeners
from spfpolicy.wire.connection import Listener
from spfpolicy.wire.eventloop import EventLoop
from spfpolicy.wire.phases import (
    Begin,
    Complete,
    Handlers,
    Resume,
    Wait,
    never_waits,
    nothing_to_resume,
)

logger = logging.getLogger(__name__)

__all__ = ["Begin", "Complete", "PolicyServer"]

# How often serve_forever() looks whether shutdown() has finished.
SERVE_POLL_INTERVAL = 0.2
# How long shutdown() waits for the event loop beyond the grace period.
FINAL_JOIN_TIMEOUT = 2.0

_NULL_OBSERVER = NullObserver()


class PolicyServer:
    """Serve the Postfix policy protocol on inet and unix sockets from one event loop."""

    def __init__(
        self,
        listen: Sequence[ListenAddress],
        begin: Begin,
        *,
        complete: Complete | None = None,
        wait: Wait = never_waits,
        resume: Resume = nothing_to_resume,
        max_connections: int = 4096,
        other_descriptors: int = 0,
        idle_timeout: float = 330.0,
        unix_mode: int = 0o666,
        error_action: str,
        observer: Observer = _NULL_OBSERVER,
        inherited_sockets: Sequence[socket.socket] = (),
    ) -> None:
        self._listen = tuple(listen)
        self._handlers = Handlers(begin, complete or _nothing_pending, error_action, wait, resume)
        self._max_connections = max_connections
        self._other_descriptors = other_descriptors  # what else may be open (DNS sockets)
        self._idle_timeout = idle_timeout
        self._unix_mode = unix_mode
        self._observer = observer
        self._inherited = list(inherited_sockets)
        self._listeners: list[Listener] = []
        self._created_files: list[listeners.SocketFile] = []
        self._event_loop: EventLoop | None = None
        # Reentrant: shutdown() may run in a signal handler on a thread that already holds it.
        self._lock = threading.RLock()
        self._state = "new"  # new -> running -> stopping
        self._finished = threading.Event()
        self._loop: threading.Thread | None = None

    @property
    def failed(self) -> bool:
        """True when the event loop stopped on an unexpected error, not by shutdown()."""
        return self._event_loop is not None and self._event_loop.failed

    @property
    def addresses(self) -> list[ListenAddress]:
        """The addresses listened on, with port 0 resolved to the kernel's choice."""
        return [listener.address for listener in self._listeners]

    def set_handlers(
        self,
        begin: Begin,
        complete: Complete | None = None,
        error_action: str | None = None,
        *,
        wait: Wait = never_waits,
        resume: Resume = nothing_to_resume,
    ) -> None:
        """Answer every request from now on with these; open connections switch too."""
        error_action = self._handlers.error_action if error_action is None else error_action
        self._handlers = Handlers(begin, complete or _nothing_pending, error_action, wait, resume)

    def start(self) -> None:
        """Listen on every address and start the event loop; SpfPolicyError if one fails."""
        with self._lock:
            if self._state != "new":
                raise SpfPolicyError("the policy server can only be started once")
            self._state = "running"
        sockets = list(self._inherited)
        try:
            for address in self._listen:
                sockets.append(self._open(address))
        except SpfPolicyError:
            for sock in sockets:
                sock.close()
            self._remove_socket_files()
            self._state = "stopping"
            self._finished.set()
            raise
        self._check_file_limit()
        self._listeners = [Listener(sock, listeners.address_of(sock)) for sock in sockets]
        self._event_loop = EventLoop(
            list(self._listeners),
            lambda: self._handlers,
            max_connections=self._max_connections,
            idle_timeout=self._idle_timeout,
            observer=self._observer,
            forget_listeners=self._remove_socket_files,
        )
        self._loop = threading.Thread(target=self._run, name="spfpolicy-io", daemon=True)
        self._loop.start()
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
        """Stop accepting, give requests in flight up to grace seconds, then close everything.

        Idempotent, and safe to call from a signal handler: a second call returns at once.
        """
        with self._lock:
            started, self._state = self._state, "stopping"
            if started == "stopping":
                return
        event_loop, thread = self._event_loop, self._loop
        if started == "running" and event_loop is not None and thread is not None:
            event_loop.stop(grace)
            thread.join(grace + FINAL_JOIN_TIMEOUT)
            # A worker still in a handler gets a little longer; its reply goes nowhere now.
            event_loop.pending.workers.close(FINAL_JOIN_TIMEOUT)
        self._finished.set()

    def _run(self) -> None:
        """The I/O thread: the event loop, then wake serve_forever() however it ended."""
        assert self._event_loop is not None
        try:
            self._event_loop.run()
        finally:
            self._finished.set()

    def _open(self, address: ListenAddress) -> socket.socket:
        """Bind and listen on one address, naming it and the OS reason on failure."""
        try:
            if address.kind is ListenKind.UNIX:
                sock, identity = listeners.open_unix(address.path, self._unix_mode)
                self._created_files.append(identity)  # to remove only our own file later
                return sock
            return listeners.open_inet(address.host, address.port)
        except OSError as error:
            raise SpfPolicyError(f"cannot listen on {address}: {error}") from error

    def _check_file_limit(self) -> None:
        """Make room for max_connections descriptors, or say plainly that there is none."""
        try:
            wanted = self._max_connections + self._other_descriptors
            limit = listeners.raise_open_file_limit(wanted)
        except (OSError, ValueError) as error:
            limit, reason = -1, str(error)
        else:
            reason = "the hard limit is lower"
        if limit < self._max_connections + listeners.SPARE_DESCRIPTORS:
            logger.warning(
                "open-file limit (%d) too low for max_connections = %d (%s): raise LimitNOFILE "
                "or lower [server] max_connections, or connections will be refused",
                limit,
                self._max_connections,
                reason,
            )

    def _remove_socket_files(self) -> None:
        for identity in self._created_files:
            listeners.remove_own_socket_file(identity)


def _nothing_pending(pending: object) -> Decision:
    """The complete step of a server whose begin always decides: reaching it is a bug."""
    raise TypeError(f"begin() returned {pending!r}, and this server has no complete step")
