"""Tests for the threaded policy server (spfpolicy.wire.server), over real loopback sockets."""

from __future__ import annotations

import logging
import os
import select
import shutil
import signal
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from spfpolicy.model import Decision, Disposition, ListenAddress, PolicyRequest, SpfPolicyError
from spfpolicy.wire.server import PolicyServer

ERROR_ACTION = "DEFER_IF_PERMIT 4.7.24 Temporary SPF policy error"
CLIENT_TIMEOUT = 3.0  # no test may hang on a server that fails to answer
# Long enough for the server to act, short enough to tell "closed promptly" from "never closed".
PROMPTLY = 1.0

MakeServer = Callable[..., PolicyServer]
Connect = Callable[[ListenAddress], socket.socket]


def echo_handler(request: PolicyRequest) -> Decision:
    """Answer with the sender in a header, or DUNNO for the null sender; fails on demand."""
    if request.sender == "boom@fail.example":
        raise RuntimeError("handler blew up")
    if not request.sender:
        return Decision(Disposition.SKIP, "DUNNO")
    return Decision(Disposition.ACCEPT, f"PREPEND X-Test: {request.sender}")


def rcpt(sender: str) -> bytes:
    """A RCPT request as Postfix sends it, with the given envelope sender."""
    return (
        b"request=smtpd_access_policy\n"
        b"protocol_state=RCPT\n"
        b"protocol_name=ESMTP\n"
        b"client_address=192.0.2.10\n"
        b"helo_name=mail.sender.example\n"
        b"sender=" + sender.encode() + b"\n"
        b"recipient=bob@receiver.test\n"
        b"instance=1a2b.3c4d.5\n"
        b"\n"
    )


def reply_for(sender: str) -> bytes:
    """The reply echo_handler gives for sender."""
    return f"action=PREPEND X-Test: {sender}\n\n".encode()


def receive(sock: socket.socket) -> bytes:
    """Read one reply (up to the empty line); b"" if the server closed the connection first."""
    received = b""
    while not received.endswith(b"\n\n"):
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            return b""
        if not chunk:
            return received
        received += chunk
    return received


def exchange(sock: socket.socket, request: bytes, piece: int = 4096) -> bytes:
    """Send request in pieces of the given size and return the reply."""
    for start in range(0, len(request), piece):
        sock.sendall(request[start : start + piece])
    return receive(sock)


def closed_by_server(sock: socket.socket) -> bool:
    """True if the server closes sock (without a reply) within CLIENT_TIMEOUT."""
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def wait_until(condition: Callable[[], bool], timeout: float = PROMPTLY) -> bool:
    """Poll condition until it holds or timeout seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def server_threads() -> list[str]:
    """Names of the threads a PolicyServer started that are still alive."""
    prefixes = ("spfpolicy-io", "spfpolicy-worker-")
    return [t.name for t in threading.enumerate() if t.name.startswith(prefixes)]


class RecordingObserver:
    """An Observer that remembers what it was told, for assertions."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def count(self, event: str) -> int:
        """How many times event was reported."""
        return sum(1 for name, _ in self.events if name == event)

    def request_received(self, protocol_state: str) -> None:
        """Record a request."""
        self.events.append(("request_received", protocol_state))

    def decision_made(self, decision: Decision, duration: float) -> None:
        """Record a decision."""
        self.events.append(("decision_made", decision.action))

    def protocol_error(self, kind: str) -> None:
        """Record a protocol error."""
        self.events.append(("protocol_error", kind))

    def connection_opened(self) -> None:
        """Record an opened connection."""
        self.events.append(("connection_opened", ""))

    def connection_closed(self) -> None:
        """Record a closed connection."""
        self.events.append(("connection_closed", ""))

    def dns_query(
        self, rdtype: str, outcome: str, duration: float, *, prefetch: bool = False
    ) -> None:
        """Record a DNS query."""
        self.events.append(("dns_query", rdtype))


@pytest.fixture
def socket_dir() -> Iterator[str]:
    """A short-named private directory for unix sockets (their paths are limited to 107 bytes)."""
    path = tempfile.mkdtemp(prefix="spfp-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def leave_to_worker(request: PolicyRequest) -> PolicyRequest:
    """A begin phase that decides nothing: the request itself is what complete() gets."""
    return request


@pytest.fixture
def make_server() -> Iterator[MakeServer]:
    """Factory: make_server(listen=[...], handler=..., **options) builds and starts a server.

    handler decides on a worker (the complete phase); begin, if given, on the I/O thread, and by
    default it leaves every request to handler. listen takes "inet:..."/"unix:..." strings;
    every server is shut down after the test, and the test fails if any server thread outlives
    it.
    """
    servers: list[PolicyServer] = []

    def make(
        listen: tuple[str, ...] = ("inet:127.0.0.1:0",),
        handler: Callable[[PolicyRequest], Decision] = echo_handler,
        begin: Callable[[PolicyRequest], object] = leave_to_worker,
        **options: object,
    ) -> PolicyServer:
        options.setdefault("error_action", ERROR_ACTION)
        server = PolicyServer(
            [ListenAddress.parse(spec) for spec in listen],
            begin,
            complete=handler,
            **options,  # type: ignore[arg-type]
        )
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.shutdown(grace=1.0)
    assert wait_until(lambda: not server_threads()), server_threads()


@pytest.fixture
def connect() -> Iterator[Connect]:
    """Factory: connect(address) opens a client connection, closed after the test."""
    clients: list[socket.socket] = []

    def open_client(address: ListenAddress) -> socket.socket:
        if address.path:
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            clients.append(client)
            client.settimeout(CLIENT_TIMEOUT)
            client.connect(address.path)
        else:
            client = socket.create_connection((address.host, address.port), CLIENT_TIMEOUT)
            clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


def ipv6_loopback_works() -> bool:
    """True if this machine can listen on ::1."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture(params=["inet:127.0.0.1:0", "inet:[::1]:0", "unix"], ids=["ipv4", "ipv6", "unix"])
def listen_spec(request: pytest.FixtureRequest, socket_dir: str) -> str:
    """Each kind of listen address the server supports, on loopback or in a private directory."""
    spec: str = request.param
    if spec == "unix":
        return f"unix:{socket_dir}/policy.sock"
    if spec.startswith("inet:[") and not ipv6_loopback_works():
        pytest.skip("no IPv6 loopback (::1) on this machine")
    return spec


@pytest.mark.daemon
def test_persistent_connection_answers_in_order(
    make_server: MakeServer, connect: Connect, listen_spec: str
) -> None:
    server = make_server(listen=(listen_spec,))
    client = connect(server.addresses[0])
    for sender in ("a@one.example", "b@two.example", "", "c@three.example"):
        expected = reply_for(sender) if sender else b"action=DUNNO\n\n"
        assert exchange(client, rcpt(sender)) == expected


# Golden wire exchange: three requests in one stream, the replies expected for them.
GOLDEN_REQUESTS = rcpt("a@one.example") + rcpt("") + rcpt("jörg@münchen.example")
GOLDEN_REPLIES = (
    reply_for("a@one.example") + b"action=DUNNO\n\n" + reply_for("jörg@münchen.example")
)


@pytest.mark.daemon
@pytest.mark.parametrize("piece", [4096, 16, 1], ids=["4096-bytes", "16-bytes", "1-byte"])
def test_read_sizes_give_identical_replies(
    make_server: MakeServer, connect: Connect, listen_spec: str, piece: int
) -> None:
    server = make_server(listen=(listen_spec,))
    client = connect(server.addresses[0])
    if client.family != socket.AF_UNIX:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # really send small pieces
    for start in range(0, len(GOLDEN_REQUESTS), piece):
        client.sendall(GOLDEN_REQUESTS[start : start + piece])
    received = b""
    while len(received) < len(GOLDEN_REPLIES):
        chunk = client.recv(4096)
        assert chunk, f"connection closed after {received!r}"
        received += chunk
    assert received == GOLDEN_REPLIES


@pytest.mark.daemon
@pytest.mark.parametrize(
    ("garbage", "kind"),
    [
        pytest.param(b"this is not a policy request\n\n", "no_equals", id="no-equals"),
        pytest.param(b"sender=" + b"a" * 9000 + b"\n\n", "line_too_long", id="line-too-long"),
        pytest.param(b"x=1\n" * 201 + b"\n", "too_many_attributes", id="too-many-attributes"),
        pytest.param(b"sender=a\0b@x.example\n\n", "nul_byte", id="nul-byte"),
    ],
)
def test_protocol_error_closes_without_reply(
    make_server: MakeServer, connect: Connect, garbage: bytes, kind: str
) -> None:
    observer = RecordingObserver()
    server = make_server(observer=observer)
    bad = connect(server.addresses[0])
    bad.sendall(garbage)
    assert closed_by_server(bad)
    bad.close()  # as Postfix does on end of stream; the server has been draining until now
    assert wait_until(lambda: observer.count("connection_closed") == 1)
    assert ("protocol_error", kind) in observer.events
    good = connect(server.addresses[0])
    assert exchange(good, rcpt("a@one.example")) == reply_for("a@one.example")


@pytest.mark.daemon
def test_eof_mid_request_is_a_protocol_error(make_server: MakeServer, connect: Connect) -> None:
    observer = RecordingObserver()
    server = make_server(observer=observer)
    client = connect(server.addresses[0])
    client.sendall(b"request=smtpd_access_policy\nsender=a@")
    client.shutdown(socket.SHUT_WR)
    assert closed_by_server(client)
    assert wait_until(lambda: ("protocol_error", "eof_mid_request") in observer.events)


@pytest.mark.daemon
def test_observer_sees_connections_and_requests(make_server: MakeServer, connect: Connect) -> None:
    observer = RecordingObserver()
    server = make_server(observer=observer)
    client = connect(server.addresses[0])
    exchange(client, rcpt("a@one.example"))
    exchange(client, rcpt("b@two.example"))
    client.close()
    assert wait_until(lambda: observer.count("connection_closed") == 1)
    assert observer.events == [
        ("connection_opened", ""),
        ("request_received", "RCPT"),
        ("request_received", "RCPT"),
        ("connection_closed", ""),
    ]


@pytest.mark.daemon
def test_handler_exception_answers_error_action(
    make_server: MakeServer, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server()
    client = connect(server.addresses[0])
    with caplog.at_level(logging.ERROR, logger="spfpolicy.wire.server"):
        assert exchange(client, rcpt("boom@fail.example")) == f"action={ERROR_ACTION}\n\n".encode()
    assert any(record.exc_info for record in caplog.records), "the traceback must be logged"
    assert exchange(client, rcpt("a@one.example")) == reply_for("a@one.example")


@pytest.mark.daemon
def test_hostile_action_text_stays_one_line(make_server: MakeServer, connect: Connect) -> None:
    server = make_server(handler=lambda _: Decision(Disposition.ACCEPT, "DUNNO\n\naction=OK"))
    client = connect(server.addresses[0])
    assert exchange(client, rcpt("a@one.example")) == b"action=DUNNO  action=OK\n\n"


@pytest.mark.daemon
def test_max_connections_refuses_extra_connection(
    make_server: MakeServer, connect: Connect
) -> None:
    server = make_server(max_connections=2)
    address = server.addresses[0]
    first, second = connect(address), connect(address)
    assert exchange(first, rcpt("a@one.example")) == reply_for("a@one.example")
    assert exchange(second, rcpt("b@two.example")) == reply_for("b@two.example")
    extra = connect(address)
    extra.settimeout(PROMPTLY)
    assert closed_by_server(extra)
    assert exchange(first, rcpt("c@three.example")) == reply_for("c@three.example")
    assert exchange(second, rcpt("d@four.example")) == reply_for("d@four.example")
    first.close()

    def a_new_connection_is_served() -> bool:
        candidate = connect(address)
        return exchange(candidate, rcpt("e@five.example")) == reply_for("e@five.example")

    assert wait_until(a_new_connection_is_served)


@pytest.mark.daemon
def test_idle_timeout_closes_idle_connection(make_server: MakeServer, connect: Connect) -> None:
    server = make_server(idle_timeout=0.2)
    client = connect(server.addresses[0])
    assert exchange(client, rcpt("a@one.example")) == reply_for("a@one.example")
    started = time.monotonic()
    assert closed_by_server(client)
    assert 0.15 < time.monotonic() - started < PROMPTLY


@pytest.mark.daemon
def test_shutdown_finishes_in_flight_request_and_closes_idle(
    make_server: MakeServer, connect: Connect
) -> None:
    in_handler = threading.Event()

    def slow_handler(request: PolicyRequest) -> Decision:
        if request.sender == "slow@one.example":
            in_handler.set()
            time.sleep(0.5)
        return echo_handler(request)

    server = make_server(handler=slow_handler)
    busy, idle = connect(server.addresses[0]), connect(server.addresses[0])
    assert exchange(idle, rcpt("a@one.example")) == reply_for("a@one.example")
    busy.sendall(rcpt("slow@one.example"))
    assert in_handler.wait(CLIENT_TIMEOUT)
    started = time.monotonic()
    stopper = threading.Thread(target=server.shutdown, kwargs={"grace": 5.0})
    stopper.start()
    try:
        assert closed_by_server(idle)
        ready, _, _ = select.select([busy], [], [], 0)
        assert not ready, "the idle connection must close before the busy one's reply is due"
        assert receive(busy) == reply_for("slow@one.example")
        assert closed_by_server(busy)
    finally:
        stopper.join()
    assert time.monotonic() - started < 2.0
    assert not server_threads()


@pytest.mark.daemon
def test_shutdown_cuts_requests_still_running_after_grace(
    make_server: MakeServer, connect: Connect
) -> None:
    in_handler = threading.Event()

    def stuck_handler(request: PolicyRequest) -> Decision:
        in_handler.set()
        time.sleep(0.3)
        return echo_handler(request)

    server = make_server(handler=stuck_handler)
    client = connect(server.addresses[0])
    client.sendall(rcpt("a@one.example"))
    assert in_handler.wait(CLIENT_TIMEOUT)
    started = time.monotonic()
    server.shutdown(grace=0.05)
    assert closed_by_server(client)
    assert time.monotonic() - started < PROMPTLY
    assert not server_threads()


@pytest.mark.daemon
def test_shutdown_is_idempotent_and_stops_listening(make_server: MakeServer) -> None:
    server = make_server()
    address = server.addresses[0]
    server.shutdown()
    server.shutdown()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((address.host, address.port), CLIENT_TIMEOUT).close()
    with pytest.raises(SpfPolicyError, match="only be started once"):
        server.start()


@pytest.mark.daemon
def test_serve_forever_returns_after_shutdown_from_another_thread(make_server: MakeServer) -> None:
    server = make_server()
    timer = threading.Timer(0.1, server.shutdown)
    timer.start()
    started = time.monotonic()
    server.serve_forever()
    timer.join()
    assert time.monotonic() - started < PROMPTLY


@pytest.mark.daemon
@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signals need the main thread"
)
def test_shutdown_from_signal_handler_during_serve_forever(
    make_server: MakeServer, connect: Connect
) -> None:
    server = make_server()
    client = connect(server.addresses[0])
    assert exchange(client, rcpt("a@one.example")) == reply_for("a@one.example")
    previous = signal.signal(signal.SIGUSR1, lambda _signum, _frame: server.shutdown())
    timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGUSR1))
    try:
        timer.start()
        server.serve_forever()
    finally:
        timer.join()
        signal.signal(signal.SIGUSR1, previous)
    assert closed_by_server(client)


@pytest.mark.daemon
@pytest.mark.parametrize("mode", [0o666, 0o660, 0o600], ids=["0666", "0660", "0600"])
def test_unix_socket_mode_and_cleanup(make_server: MakeServer, socket_dir: str, mode: int) -> None:
    path = f"{socket_dir}/policy.sock"
    server = make_server(listen=(f"unix:{path}",), unix_mode=mode)
    assert server.addresses == [ListenAddress.parse(f"unix:{path}")]
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    assert stat.S_IMODE(os.lstat(path).st_mode) == mode
    server.shutdown()
    assert not os.path.exists(path)


@pytest.mark.daemon
def test_stale_unix_socket_is_replaced(
    make_server: MakeServer, connect: Connect, socket_dir: str
) -> None:
    path = f"{socket_dir}/policy.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as left_behind:
        left_behind.bind(path)  # closed without unlinking, as after a crash
    server = make_server(listen=(f"unix:{path}",))
    client = connect(server.addresses[0])
    assert exchange(client, rcpt("a@one.example")) == reply_for("a@one.example")


def test_unix_path_that_is_not_a_socket_is_left_alone(
    make_server: MakeServer, socket_dir: str
) -> None:
    path = f"{socket_dir}/policy.sock"
    with open(path, "w") as existing:
        existing.write("precious\n")
    with pytest.raises(SpfPolicyError, match=f"unix:{path}.*not a socket"):
        make_server(listen=(f"unix:{path}",))
    with open(path) as existing:
        assert existing.read() == "precious\n"


@pytest.mark.daemon
def test_live_unix_socket_is_not_taken_over(make_server: MakeServer, socket_dir: str) -> None:
    path = f"{socket_dir}/policy.sock"
    make_server(listen=(f"unix:{path}",))
    with pytest.raises(
        SpfPolicyError, match=f"cannot listen on unix:{path}: .*another server is listening"
    ):
        make_server(listen=(f"unix:{path}",))
    assert stat.S_ISSOCK(os.lstat(path).st_mode)


@pytest.mark.daemon
def test_address_in_use_names_the_address(make_server: MakeServer, socket_dir: str) -> None:
    taken = make_server().addresses[0]
    unix_path = f"{socket_dir}/first.sock"
    with pytest.raises(SpfPolicyError) as caught:
        make_server(listen=(f"unix:{unix_path}", str(taken)))
    assert str(caught.value).startswith(f"cannot listen on {taken}: ")
    assert "Address already in use" in str(caught.value)
    assert not os.path.exists(unix_path), "what was opened before the failure is cleaned up"


@pytest.mark.daemon
def test_listens_on_several_addresses(
    make_server: MakeServer, connect: Connect, socket_dir: str
) -> None:
    server = make_server(listen=("inet:127.0.0.1:0", f"unix:{socket_dir}/policy.sock"))
    assert [address.kind for address in server.addresses] == ["inet", "unix"]
    assert server.addresses[0].port != 0
    for address in server.addresses:
        assert exchange(connect(address), rcpt("a@one.example")) == reply_for("a@one.example")


@pytest.mark.daemon
def test_serves_inherited_socket(make_server: MakeServer, connect: Connect) -> None:
    inherited = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    inherited.bind(("127.0.0.1", 0))
    inherited.listen()
    server = make_server(listen=(), inherited_sockets=[inherited])
    (address,) = server.addresses
    assert address.port == inherited.getsockname()[1]
    assert exchange(connect(address), rcpt("a@one.example")) == reply_for("a@one.example")
    server.shutdown()
    assert inherited.fileno() == -1, "the server owns and closes inherited sockets"


@pytest.mark.daemon
def test_set_handlers_applies_to_next_request_on_open_connection(
    make_server: MakeServer, connect: Connect
) -> None:
    server = make_server()
    client = connect(server.addresses[0])
    assert exchange(client, rcpt("a@one.example")) == reply_for("a@one.example")
    server.set_handlers(lambda _: Decision(Disposition.REJECT, "550 5.7.23 reloaded"))
    assert exchange(client, rcpt("a@one.example")) == b"action=550 5.7.23 reloaded\n\n"


@pytest.mark.daemon
def test_begin_answers_on_the_event_loop_and_leaves_the_rest_to_a_worker(
    make_server: MakeServer, connect: Connect
) -> None:
    answered_on: list[str] = []

    def begin(request: PolicyRequest) -> Decision | PolicyRequest:
        answered_on.append(threading.current_thread().name)
        hit = request.sender == "hit@c.example"
        return Decision(Disposition.ACCEPT, "DUNNO") if hit else request

    def handler(request: PolicyRequest) -> Decision:
        answered_on.append(threading.current_thread().name)
        return echo_handler(request)

    server = make_server(handler=handler, begin=begin)
    client = connect(server.addresses[0])
    assert exchange(client, rcpt("hit@c.example")) == b"action=DUNNO\n\n"
    assert answered_on == ["spfpolicy-io"]
    assert exchange(client, rcpt("miss@c.example")) == reply_for("miss@c.example")
    assert answered_on[1] == "spfpolicy-io"
    assert answered_on[2].startswith("spfpolicy-worker-")


@pytest.mark.daemon
def test_begin_exception_answers_error_action(
    make_server: MakeServer, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    def begin(request: PolicyRequest) -> Decision:
        raise RuntimeError("cache blew up")

    server = make_server(begin=begin)
    client = connect(server.addresses[0])
    assert exchange(client, rcpt("a@one.example")) == f"action={ERROR_ACTION}\n\n".encode()
    assert "cache blew up" in caplog.text
    assert exchange(client, rcpt("b@one.example")) == f"action={ERROR_ACTION}\n\n".encode()


@pytest.mark.daemon
def test_a_request_waiting_on_a_worker_holds_up_no_other_connection(
    make_server: MakeServer, connect: Connect
) -> None:
    release = threading.Event()

    def waiting_handler(request: PolicyRequest) -> Decision:
        if request.sender == "slow@dns.example":
            release.wait(CLIENT_TIMEOUT)
        return echo_handler(request)

    server = make_server(handler=waiting_handler)
    slow, other = connect(server.addresses[0]), connect(server.addresses[0])
    slow.sendall(rcpt("slow@dns.example"))
    for n in range(20):
        assert exchange(other, rcpt(f"n{n}@fast.example")) == reply_for(f"n{n}@fast.example")
    release.set()
    assert receive(slow) == reply_for("slow@dns.example")


@pytest.mark.daemon
def test_pipelined_requests_are_answered_in_order(
    make_server: MakeServer, connect: Connect
) -> None:
    server = make_server()
    client = connect(server.addresses[0])
    client.sendall(rcpt("a@one.example") + rcpt("b@two.example") + rcpt("c@three.example"))
    expected = (
        reply_for("a@one.example") + reply_for("b@two.example") + reply_for("c@three.example")
    )
    received = b""
    while len(received) < len(expected):
        chunk = client.recv(4096)
        assert chunk, received
        received += chunk
    assert received == expected


@pytest.mark.daemon
def test_a_client_dribbling_bytes_is_dropped_at_the_idle_timeout(
    make_server: MakeServer, connect: Connect
) -> None:
    # A byte at a time never completes a request: trickling must not keep a connection alive.
    server = make_server(idle_timeout=0.5)
    client = connect(server.addresses[0])
    started = time.monotonic()
    dropped = False
    for byte in rcpt("a@one.example")[:-1] * 10:
        try:
            client.send(bytes([byte]))
        except OSError:
            dropped = True
            break
        time.sleep(0.02)
        if time.monotonic() - started > 0.5 + PROMPTLY:
            break
    assert dropped or closed_by_server(client)
    assert time.monotonic() - started < 0.5 + 2 * PROMPTLY


@pytest.mark.daemon
def test_a_thousand_idle_connections_cost_no_threads_and_block_nobody(
    make_server: MakeServer, connect: Connect
) -> None:
    server = make_server()
    address = server.addresses[0]
    idle = [socket.create_connection((address.host, address.port)) for _ in range(1000)]
    try:
        threads_before = len(server_threads())
        client = connect(address)
        for n in range(10):
            assert exchange(client, rcpt(f"n{n}@busy.example")) == reply_for(f"n{n}@busy.example")
        half_open = idle[0]
        half_open.sendall(rcpt("late@half.example")[:40])  # half a request, then nothing
        assert exchange(connect(address), rcpt("new@conn.example")) == reply_for("new@conn.example")
        assert len(server_threads()) < threads_before + 10  # a few workers, not one per connection
    finally:
        for sock in idle:
            sock.close()


@pytest.mark.daemon
def test_refused_connections_are_logged(
    make_server: MakeServer, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server(max_connections=1)
    address = server.addresses[0]
    first = connect(address)
    assert exchange(first, rcpt("a@one.example")) == reply_for("a@one.example")
    extra = connect(address)
    assert closed_by_server(extra)
    assert "refusing" in caplog.text
    assert "1 connections open" in caplog.text
    assert exchange(first, rcpt("b@one.example")) == reply_for("b@one.example")


@pytest.mark.daemon
def test_a_bug_on_one_connection_closes_only_that_connection(
    make_server: MakeServer, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    class BrokenObserver(RecordingObserver):
        def request_received(self, protocol_state: str) -> None:
            if protocol_state == "BUG":
                raise RuntimeError("observer bug")
            super().request_received(protocol_state)

    server = make_server(observer=BrokenObserver())
    victim, bystander = connect(server.addresses[0]), connect(server.addresses[0])
    victim.sendall(b"protocol_state=BUG\n\n")
    assert closed_by_server(victim)
    assert "observer bug" in caplog.text
    assert exchange(bystander, rcpt("a@one.example")) == reply_for("a@one.example")
    assert not server.failed


@pytest.mark.daemon
def test_replies_sent_before_a_malformed_request_still_arrive(
    make_server: MakeServer, connect: Connect
) -> None:
    # Closing with the peer's garbage unread would send a reset, and a reset makes the peer's
    # kernel drop the replies it has not read yet.
    server = make_server()
    client = connect(server.addresses[0])
    good = rcpt("a@one.example") + rcpt("b@two.example") + rcpt("c@three.example")
    client.sendall(good + b"sender=" + b"@" * 70_000 + b"\n\n")
    time.sleep(0.2)  # the server has answered, refused the rest and closed its side by now
    received = b""
    while True:
        chunk = client.recv(65536)  # ConnectionResetError here is the failure
        if not chunk:
            break
        received += chunk
    assert received == (
        reply_for("a@one.example") + reply_for("b@two.example") + reply_for("c@three.example")
    )


@pytest.mark.daemon
def test_a_peer_that_keeps_its_end_open_after_a_malformed_request_is_closed_soon(
    make_server: MakeServer, connect: Connect
) -> None:
    observer = RecordingObserver()
    server = make_server(observer=observer)
    bad = connect(server.addresses[0])
    bad.sendall(b"no equals sign\n\n")
    assert closed_by_server(bad)  # our end is shut at once; we drain theirs a short while
    assert wait_until(lambda: observer.count("connection_closed") == 1, timeout=4.0)


@pytest.mark.daemon
def test_a_request_held_by_wait_is_resumed_on_the_event_loop_without_a_worker(
    make_server: MakeServer, connect: Connect
) -> None:
    held: dict[str, Callable[[], None]] = {}
    ran_on: list[tuple[str, str]] = []

    def wait(pending: PolicyRequest, ready: Callable[[], None]) -> bool:
        ran_on.append(("wait", threading.current_thread().name))
        if pending.sender.startswith("worker@"):
            return False
        held[pending.sender] = ready
        return True

    def resume(pending: PolicyRequest) -> object:
        ran_on.append(("resume", threading.current_thread().name))
        if pending.sender.startswith("twice@") and ran_on.count(ran_on[-1]) == 1:
            return pending  # still short of answers: offered to wait() again
        return echo_handler(pending)

    server = make_server(wait=wait, resume=resume)
    slow, other = connect(server.addresses[0]), connect(server.addresses[0])
    slow.sendall(rcpt("held@dns.example"))
    assert wait_until(lambda: "held@dns.example" in held)
    # While it is held, other connections are served, one on a worker.
    assert exchange(other, rcpt("worker@dns.example")) == reply_for("worker@dns.example")
    other.sendall(rcpt("twice@dns.example"))
    assert wait_until(lambda: "twice@dns.example" in held)
    first_ready = held.pop("twice@dns.example")
    first_ready()  # from this thread, as the DNS thread would
    assert wait_until(lambda: "twice@dns.example" in held)  # resumed, offered to wait() again
    assert held["twice@dns.example"] is not first_ready
    held.pop("twice@dns.example")()
    assert receive(other) == reply_for("twice@dns.example")
    held.pop("held@dns.example")()
    assert receive(slow) == reply_for("held@dns.example")
    assert [step for step, _ in ran_on].count("resume") == 3
    # wait() and resume() ran on the I/O thread; only the one wait() refused went to a worker.
    assert {thread for _, thread in ran_on} == {"spfpolicy-io"}
    assert not [name for name in server_threads() if name.startswith("spfpolicy-worker-")][1:]


@pytest.mark.daemon
def test_a_failing_wait_leaves_the_request_to_a_worker(
    make_server: MakeServer, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    def wait(pending: PolicyRequest, ready: Callable[[], None]) -> bool:
        raise RuntimeError("prefetch blew up")

    server = make_server(wait=wait)
    client = connect(server.addresses[0])
    assert exchange(client, rcpt("a@one.example")) == reply_for("a@one.example")
    assert "prefetch blew up" in caplog.text


@pytest.mark.daemon
def test_a_failing_resume_answers_the_error_action(
    make_server: MakeServer, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    def wait(pending: PolicyRequest, ready: Callable[[], None]) -> bool:
        ready()  # at once, before wait() returns: allowed
        return True

    def resume(pending: PolicyRequest) -> object:
        raise RuntimeError("resume blew up")

    server = make_server(wait=wait, resume=resume)
    client = connect(server.addresses[0])
    assert exchange(client, rcpt("a@one.example")) == f"action={ERROR_ACTION}\n\n".encode()
    assert "resume blew up" in caplog.text
    assert exchange(client, rcpt("b@one.example")) == f"action={ERROR_ACTION}\n\n".encode()
