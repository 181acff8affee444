"""Bad input on the policy socket: answer what can be answered, drop the rest, keep nothing.

Issue 8. Two servers are under test. The real daemon (`python -m spfpolicy serve`) listens on
loopback TCP and asks a real DNS server on loopback (tests/support/dnsserver.py), so that
well-formed requests get real SPF answers; its threads and descriptors are read from /proc and
its stderr is its log. An in-process PolicyServer + PolicyService over the fake zone runs the
same cases with this process's own threads and descriptors counted.

Each hostile case in the table runs against both, and then a hypothesis property throws random
mixtures of good and hostile lines at them, in random pieces, ended in random ways. After every
case: a good request on a new connection gets its real answer, the server's threads and
descriptors are back within the baseline taken after warming it up, and its log holds no
traceback at all.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spfpolicy.config.settings import Config
from spfpolicy.decision.actions import Receiver
from spfpolicy.evaluation.evaluator import SpfEvaluator
from spfpolicy.model import ListenAddress
from spfpolicy.resolver.cache import CachingResolver
from spfpolicy.service.policyservice import PolicyService
from spfpolicy.wire.server import PolicyServer
from tests.support import socketfuzz
from tests.support.fakedns import FakeResolver
from tests.support.fixtures import running_dns_server, running_policy_daemon
from tests.support.socketfuzz import (
    BAD_CLIENT,
    GOOD_CLIENT,
    ZONE,
    Ending,
    Usage,
    ask,
    converse,
    parse_replies,
    rcpt_request,
    request_bytes,
)

PASS = "PREPEND Received-SPF: pass "
FAIL = "550 5.7.23 "
CONCURRENCY = 8  # connections the warm-up opens at once; no case opens more at a time
PROPERTY_EXAMPLES = 500  # per server: a few seconds each, well inside the suite's budget
MAX_REPLY = 4096  # bytes: a reply carries at most one header of a few bounded values


@dataclass
class Target:
    """A server under test, how to reach it, and how to read what it holds."""

    name: str
    address: tuple[str, int]
    measure: Callable[[], Usage]
    tracebacks: Callable[[], list[str]]
    log: Callable[[], str] = str
    baseline: Usage = field(default_factory=lambda: Usage(0, 0))

    def warm(self) -> None:
        """Make every lazily created thread exist, then take the baseline."""
        socketfuzz.warm_up(self.address, CONCURRENCY)
        self.baseline = socketfuzz.steady(self.measure)

    def check_healthy(self) -> None:
        """A good request is answered, usage is back to the baseline, no traceback was logged."""
        assert ask(self.address, rcpt_request())[0].startswith(PASS)
        usage = socketfuzz.settle(self.measure, self.baseline)
        assert usage.within(self.baseline), f"{self.name}: {usage} after, {self.baseline} before"
        assert self.tracebacks() == [], "\n".join(self.tracebacks())


@pytest.fixture(scope="module")
def dns_port() -> Iterator[int]:
    """A real DNS server on loopback serving socketfuzz.ZONE."""
    with running_dns_server(ZONE) as port:
        yield port


@contextmanager
def daemon_server(dns_port: int, workdir: Path) -> Iterator[Target]:
    """The real daemon process on loopback TCP; it must also stop cleanly (exit 0) at the end."""
    port = socketfuzz.free_port()
    config_path = workdir / "spfpolicy.toml"
    config_path.write_text(socketfuzz.daemon_config(port, dns_port))
    log_path = workdir / "daemon.log"
    with running_policy_daemon(config_path, log_path) as process:
        socketfuzz.wait_listening(port, lambda: process.process.poll() is None)
        pid = process.process.pid
        target = Target(
            "daemon",
            ("127.0.0.1", port),
            lambda: socketfuzz.process_usage(pid),
            lambda: socketfuzz.traceback_lines(log_path),
            lambda: log_path.read_text(errors="replace"),
        )
        target.warm()
        yield target


@pytest.fixture(scope="module")
def daemon(dns_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """One daemon shared by the module's cases; no traceback in its log even after it stops."""
    with daemon_server(dns_port, tmp_path_factory.mktemp("fuzz-daemon")) as target:
        yield target
    assert target.tracebacks() == []


class _TracebackRecorder(logging.Handler):
    """Formats every record (a formatting error would surface) and keeps those with a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.tracebacks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if record.exc_info:
            self.tracebacks.append(text)


def fake_zone() -> dict[str, list[str]]:
    """socketfuzz.ZONE in the fake resolver's "TYPE data" form."""
    return {
        name: [f"{rdtype} {value}" for entry in entries for rdtype, value in entry.items()]
        for name, entries in ZONE.items()
    }


@contextmanager
def in_process_server() -> Iterator[Target]:
    """PolicyServer + PolicyService over the fake zone, in this process, decision log on."""
    recorder = _TracebackRecorder()
    package_logger = logging.getLogger("spfpolicy")
    old_level = package_logger.level
    package_logger.addHandler(recorder)
    package_logger.setLevel(logging.INFO)  # the decision log line is built for every request
    receiver = Receiver("mx.receiver.example", "mx.receiver.example")
    # Behind the cache as in the daemon, so that the I/O thread answers what it can by itself.
    resolver = CachingResolver(FakeResolver(fake_zone()))
    evaluator = SpfEvaluator(resolver, receiver=receiver.hostname)
    service = PolicyService(Config(), evaluator, receiver)
    server = PolicyServer(
        [ListenAddress.parse("inet:127.0.0.1:0")],
        service.begin,
        complete=service.complete,  # as the daemon runs it (cli._serve)
        error_action=service.error_decision().action,
    )
    server.start()
    try:
        address = server.addresses[0]
        target = Target(
            "in-process",
            (address.host, address.port),
            socketfuzz.own_usage,
            lambda: list(recorder.tracebacks),
        )
        target.warm()
        yield target
    finally:
        server.shutdown(grace=1.0)
        package_logger.removeHandler(recorder)
        package_logger.setLevel(old_level)


@pytest.fixture(scope="module")
def in_process(dns_port: int) -> Iterator[Target]:
    """One in-process server shared by the module's cases.

    It needs no DNS server, but this process holds a pipe to it: started first, that pipe is
    in the baseline whichever server the tests ask for first.
    """
    del dns_port
    with in_process_server() as target:
        yield target


@pytest.fixture(params=["daemon", "in-process"])
def target(request: pytest.FixtureRequest) -> Target:
    """Each server under test in turn."""
    return request.getfixturevalue(request.param.replace("-", "_"))  # type: ignore[no-any-return]


def with_repeated(first: bytes, line: bytes) -> bytes:
    """A request with one more attribute line just before its end (a name sent twice)."""
    assert first.endswith(b"\n\n")
    return first[:-1] + line + b"\n"


@dataclass(frozen=True)
class Case:
    """One hostile conversation and what the client must read back (None: anything clean)."""

    payload: bytes
    expect: tuple[str, ...] | None = None  # action prefixes, in order; () = closed, no reply
    piece: int = 4096
    ending: Ending = Ending.READ


MEGABYTE = 1 << 20
CASES = {
    # Garbage is refused by closing without a reply (DESIGN.md §2).
    "binary-garbage": Case(bytes(range(256)) * 4 + b"\n\n", ()),
    "nul-byte": Case(rcpt_request(sender="a\0b@sender.example"), ()),
    # 8-bit bytes are what Postfix passes through with SMTPUTF8 off: a request to answer.
    "invalid-utf8": Case(rcpt_request()[:-1] + b"sender=\xff\xfe@sender.example\n\n", None),
    "line-without-equals": Case(b"request=smtpd_access_policy\nhello there\n\n", ()),
    "http-request": Case(b"GET / HTTP/1.1\r\nHost: mx.receiver.example\r\n\r\n", ()),
    "over-long-line": Case(b"sender=" + b"a" * 9000 + b"\n\n", ()),
    "one-megabyte-helo": Case(rcpt_request(helo_name="h" * MEGABYTE), ()),
    "one-megabyte-sender": Case(rcpt_request(sender="u" * MEGABYTE + "@sender.example"), ()),
    "ten-thousand-attributes": Case(
        b"".join(b"x%d=1\n" % number for number in range(10_000)) + rcpt_request(), ()
    ),
    "no-blank-line-then-eof": Case(rcpt_request()[:-1], ()),
    "eof-mid-line": Case(rcpt_request()[:50], ()),
    "silent-client": Case(b"", ()),
    # Well-formed but odd: answered.
    "name-repeated-last-wins": Case(
        with_repeated(
            rcpt_request(sender="user@explained.example"), b"sender=user@sender.example\n"
        ),
        (PASS,),
    ),
    "crlf-line-endings": Case(rcpt_request().replace(b"\n", b"\r\n"), (PASS,)),
    "one-byte-writes": Case(rcpt_request(), (PASS,), piece=1),
    "pipelined-in-7-byte-writes": Case(
        rcpt_request() + rcpt_request(client_address=BAD_CLIENT), (PASS, FAIL), piece=7
    ),
    "empty-request-then-a-real-one": Case(b"\n" + rcpt_request(), ("DUNNO", PASS)),
    "other-request-type": Case(rcpt_request(request="junk_policy"), ("DUNNO",)),
    "good-then-garbage": Case(rcpt_request() + b"\xff\n\n", (PASS,)),
    "client-address-empty": Case(rcpt_request(client_address=""), ("DUNNO",)),
    "client-address-unknown": Case(rcpt_request(client_address="unknown"), ("DUNNO",)),
    "client-address-300.1.1.1": Case(rcpt_request(client_address="300.1.1.1"), ("DUNNO",)),
    "client-address-v4-mapped-pass": Case(rcpt_request(client_address="::ffff:192.0.2.1"), (PASS,)),
    "client-address-v4-mapped-fail": Case(
        rcpt_request(client_address="::ffff:198.51.100.1"), (FAIL,)
    ),
    "client-address-scoped": Case(rcpt_request(client_address="fe80::1%eth0"), (FAIL,)),
    "client-address-ipv6": Case(
        rcpt_request(client_address="2001:db8::1", helo_name="h.client.example"), (PASS,)
    ),
    "helo-8000-bytes": Case(rcpt_request(helo_name="a" * 7900 + ".example"), (PASS,)),
    "helo-control-characters": Case(
        rcpt_request(helo_name="mail\x01\x1b[31m\x7f\u2028\u0085\u202e\r.example"), (PASS,)
    ),
    "helo-address-literal": Case(rcpt_request(helo_name="[192.0.2.1]"), (PASS,)),
    "sender-quoted-local-part": Case(rcpt_request(sender='"quoted"@sender.example'), (PASS,)),
    "sender-8000-bytes-explained": Case(
        rcpt_request(sender="x" * 7900 + "@explained.example", client_address=BAD_CLIENT), (FAIL,)
    ),
    "sender-control-characters-explained": Case(
        rcpt_request(sender="a\x01\x1b\u2028\u0085b@explained.example", client_address=BAD_CLIENT),
        (FAIL,),
    ),
    # RFC 8616 §4 / RFC 7208 §4.3: an IDN is looked up as its A-label.
    "sender-idn-u-label-pass": Case(rcpt_request(sender="user@bücher.example"), (PASS,)),
    "sender-idn-u-label-fail": Case(
        rcpt_request(
            sender="user@bücher.example", client_address=BAD_CLIENT, helo_name="h.client.example"
        ),
        (FAIL,),
    ),
    "helo-idn-u-label-null-sender": Case(
        rcpt_request(sender="", helo_name="mail.bücher.example"), (PASS,)
    ),
    # "<>" is how the null sender is written in SMTP; a client that sends it means the null
    # sender, whose identity is the HELO name's postmaster (RFC 7208 §2.4).
    "sender-angle-brackets-is-null-sender": Case(rcpt_request(sender="<>"), (PASS,)),
    # Clients that leave early.
    "close-mid-request": Case(rcpt_request()[:40], ending=Ending.CLOSE),
    "reset-mid-request": Case(rcpt_request()[:40], ending=Ending.RESET),
    "close-before-reading-the-reply": Case(rcpt_request(), ending=Ending.CLOSE),
    "reset-before-reading-the-reply": Case(rcpt_request(), ending=Ending.RESET),
    "close-mid-replies": Case(b"".join(rcpt_request() for _ in range(300)), ending=Ending.CLOSE),
    "reset-mid-replies": Case(b"".join(rcpt_request() for _ in range(300)), ending=Ending.RESET),
    "reset-mid-megabyte": Case(rcpt_request(helo_name="h" * MEGABYTE), ending=Ending.RESET),
}


@pytest.mark.daemon
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_hostile_case(target: Target, case: Case) -> None:
    data = converse(target.address, case.payload, piece=case.piece, ending=case.ending)
    actions = parse_replies(data)
    if case.expect is not None:
        assert len(actions) == len(case.expect), actions
        for action, prefix in zip(actions, case.expect, strict=True):
            assert action.startswith(prefix), action
            assert len(action) < MAX_REPLY
    target.check_healthy()


@pytest.mark.daemon
def test_idle_connections_opened_and_dropped(target: Target) -> None:
    """A burst of connections that send nothing and vanish, half by reset."""
    clients = [socketfuzz.connect(target.address) for _ in range(CONCURRENCY)]
    for number, client in enumerate(clients):
        if number % 2:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        client.close()
    target.check_healthy()


PIPELINED = 2000  # requests in one write: a whole burst answered from what is known


@pytest.mark.daemon
@pytest.mark.parametrize(
    "one_request",
    [
        pytest.param(b"\n", id="empty-requests"),
        pytest.param(b"request=junk_policy\n\n", id="skipped-requests"),
        pytest.param(
            request_bytes(
                request="smtpd_access_policy",
                protocol_state="RCPT",
                client_address=GOOD_CLIENT,
                sender="user@sender.example",
                instance="one.message",
            ),
            id="recipients-of-one-message",
        ),
    ],
)
def test_a_pipelined_burst_is_answered_in_full(
    dns_port: int, tmp_path: Path, one_request: bytes
) -> None:
    """No request in the burst needs DNS (or only the first does), so the server answers them
    from its caches without a worker, one after the other (a few hundred of them once made a
    recursion as deep as the burst, which killed the event loop). A daemon of its own, so that
    a regression cannot take the shared one down with it."""
    with daemon_server(dns_port, tmp_path) as target:
        actions = parse_replies(converse(target.address, one_request * PIPELINED))
        assert len(actions) == PIPELINED
        target.check_healthy()


@pytest.mark.daemon
@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(rcpt_request(helo_name="\\300.1.1.1"), PASS, id="helo"),
        pytest.param(
            rcpt_request(sender="user@\\300.example"),
            "PREPEND Received-SPF: none ",
            id="sender-domain",
        ),
        pytest.param(rcpt_request(sender="\\300@macro.example"), PASS, id="local-part-in-macro"),
    ],
)
def test_a_backslash_escape_in_a_name_is_no_error(
    dns_port: int, tmp_path: Path, payload: bytes, expected: str
) -> None:
    """A backslash is no character of a host name; to dnspython's from_text() it starts an
    escape. "\\300" is malformed (RFC 7208 §4.3: "none"), never a reason to defer the mail.
    The daemon only: the fake DNS of the in-process server does not parse names."""
    with daemon_server(dns_port, tmp_path) as target:
        assert ask(target.address, payload)[0].startswith(expected)
        target.check_healthy()


# Random conversations: lines good and hostile, requests ended or not, any write size.
_NAMES = ["request", "protocol_state", "client_address", "helo_name", "sender", "instance", "x"]
_HOSTILE_TEXT = st.text(
    st.sampled_from(list("ab@.-=%{}\"'<> \t\r\x00\x01\x1b\x7f\x85\u2028\u2029\u202eü😀")),
    max_size=30,
)
_GOOD_LINES = [
    line + b"\n"
    for line in rcpt_request(client_address=BAD_CLIENT).split(b"\n")
    if line and not line.startswith(b"instance=")
]
_LINE = st.one_of(
    st.sampled_from(_GOOD_LINES),
    st.sampled_from(
        [
            b"no equals here\n",
            b"=\n",
            b"sender=\xff\xfe@sender.example\n",
            b"sender=" + b"a" * 9000 + b"\n",
            b"helo_name=" + b"b" * 8000 + b"\n",
            b"sender=user@explained.example\n",
            "sender=user@bücher.example\n".encode(),
            b"client_address=::ffff:192.0.2.1\n",
            b"request=smtpd_access_policy\r\n",
        ]
    ),
    st.binary(max_size=40).map(lambda raw: raw.replace(b"\n", b"") + b"\n"),
    st.builds(
        lambda name, value: f"{name}={value}\n".encode("utf-8", "surrogatepass"),
        st.sampled_from(_NAMES),
        _HOSTILE_TEXT,
    ),
)
_REQUEST = st.builds(
    lambda lines, end: b"".join(lines) + end,
    st.lists(_LINE, max_size=10),
    st.sampled_from([b"\n", b"\n", b"\r\n", b""]),
)
_CONVERSATION = st.tuples(
    st.lists(_REQUEST, min_size=1, max_size=3).map(b"".join),
    st.sampled_from([1, 3, 64, 4096]),
    st.sampled_from([Ending.READ, Ending.READ, Ending.CLOSE, Ending.RESET]),
)


@pytest.mark.daemon
def test_random_conversations(target: Target) -> None:
    ran: list[bytes] = []

    @settings(
        max_examples=PROPERTY_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(_CONVERSATION)
    def conversation_is_survived(conversation: tuple[bytes, int, Ending]) -> None:
        payload, piece, ending = conversation
        ran.append(payload)
        piece = max(piece, len(payload) // 2000)  # one-byte writes of 9 KB would only be slow
        actions = parse_replies(converse(target.address, payload, piece=piece, ending=ending))
        if ending is Ending.READ:
            framing = socketfuzz.frame(payload)
            assert framing.replies_fit(len(actions)), (len(actions), framing)
        target.check_healthy()

    conversation_is_survived()
    assert len(ran) >= PROPERTY_EXAMPLES


@pytest.mark.daemon
def test_the_daemon_log_is_the_one_checked(daemon: Target) -> None:
    """The traceback check reads the daemon's real log: its decision lines are there."""
    assert "decision " in daemon.log()


def test_a_logged_traceback_is_seen(tmp_path: Path) -> None:
    """The check finds what logger.exception writes, so an empty finding means something."""
    log_path = tmp_path / "daemon.log"
    handler = logging.FileHandler(log_path)
    logger = logging.getLogger("tests.fuzz.traceback")
    logger.addHandler(handler)
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("unexpected error on the connection from 192.0.2.1:4321")
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert socketfuzz.traceback_lines(log_path) == ["Traceback (most recent call last):"]
