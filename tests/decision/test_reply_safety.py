"""No request and no DNS record can make a reply other than one allowed action line (issue 8).

Whatever the attributes (senders, HELO names, client addresses, recipients, SASL names with CR,
LF, NUL, U+2028, U+0085, bidirectional controls, very long values) and whatever the sender's
domain publishes (an exp= text with the same characters, macros that copy the attacker's
local-part into the explanation), the reply is exactly b"action=<text>\\n\\n" with no other line
break, and <text> is one of the actions the configuration allows: DUNNO, a configured restriction
class, the configured reject, defer or hold with printable ASCII text, the internal error
action, or PREPEND with one trace header of the configured kind (never at END-OF-MESSAGE).
The decision's log line is one line too.

Stated twice: for PolicyService.handle + protocol.encode_reply over the in-memory fake DNS (many
examples, fast), and through the wire, through the real PolicyServer on loopback.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spfpolicy.config.settings import Config, HeaderType, parse_config
from spfpolicy.decision import actions
from spfpolicy.decision.actions import Receiver
from spfpolicy.evaluation.evaluator import SpfEvaluator
from spfpolicy.model import Decision, ListenAddress, PolicyRequest, SpfResult, Verdict
from spfpolicy.resolver.answers import DnsFailure
from spfpolicy.service.policyservice import PolicyService
from spfpolicy.wire.protocol import encode_reply
from spfpolicy.wire.server import PolicyServer
from tests.support.fakedns import FakeResolver
from tests.support.phases import handle
from tests.support.socketfuzz import action_problem, converse, frame, parse_replies

SERVICE_EXAMPLES = 1500
WIRE_EXAMPLES = 300
MAX_REPLY = 8192  # bytes: seven sanitised values of at most 255 characters, quoted, and a comment
AUTHSERV_ID = "mx.receiver.example"

CONFIGS = {
    "defaults": "",
    "authentication-results": f'[headers]\ntype = "authentication-results"\n'
    f'authserv_id = "{AUTHSERV_ID}"\n',
    "no-header": '[headers]\ntype = "none"\n',
    "strict-with-templates": (
        '[actions]\npass_restriction = "spf_pass"\n'
        '[actions.mailfrom]\nsoftfail = "reject"\nneutral = "defer"\nnone = "warn"\n'
        'permerror = "defer"\n'
        '[actions.helo]\nsoftfail = "defer"\npermerror = "reject"\n'
        "[policy]\n"
        'reject_reason = "SPF {result} for {identity} {domain} from {client}: {explanation}"\n'
        'defer_reason = "later, {client}: {explanation} ({domain})"\n'
        '[skip]\nprotocol_states = ["RCPT", "END-OF-MESSAGE", "MAIL"]\nauthenticated = false\n'
    ),
    "dry-run": "[policy]\ndry_run = true\n",
    "hold-and-classes": (
        '[actions]\nneutral_restriction = "spf_neutral"\nnone_restriction = "spf_none"\n'
        'permerror_restriction = "spf_permerror"\n'
        '[actions.helo]\nfail = "hold"\n[actions.mailfrom]\nfail = "hold"\nsoftfail = "hold"\n'
    ),
}
PARSED = {name: parse_config(text, name) for name, text in CONFIGS.items()}

# Characters that end or split a line somewhere, that reorder it, or that cannot be encoded.
HOSTILE = [
    "\r",
    "\n",
    "\x00",
    "\x0b",
    "\x0c",
    "\x1b",
    "\x7f",
    "\x85",
    "\u2028",
    "\u2029",
    "\u202e",
    "\u2066",
    "\udcff",
]
_TEXT = st.text(
    st.one_of(
        st.sampled_from(HOSTILE), st.sampled_from(list('ab.-@%{}()\\";= <>ü')), st.characters()
    ),
    max_size=40,
)
_LONG = st.builds(lambda text, times: text * times, _TEXT, st.integers(100, 3000))
_VALUE = st.one_of(_TEXT, _LONG)
_DOMAINS = ["sender.example", "mail.sender.example", "bücher.example", "timeout.example"]
_SENDER = st.one_of(
    st.builds(lambda local: f"{local}@sender.example", _TEXT),
    st.builds(lambda local, domain: f"{local}@{domain}", _VALUE, st.sampled_from(_DOMAINS)),
    st.builds(lambda local, domain: f"{local}@{domain}", _TEXT, _TEXT),
    st.sampled_from(["", "<>", "user@sender.example", '"quoted"@sender.example']),
    _VALUE,
)
_CLIENTS = ["192.0.2.1", "198.51.100.1", "2001:db8::1", "::ffff:198.51.100.1", "fe80::1%eth0"]
_NOT_CLIENTS = ["", "unknown", "300.1.1.1", "127.0.0.1"]
_ANY_TEXT = "any text"
# Mostly a client that gets checked (the point is what its check answers), sometimes not.
_CLIENT = st.sampled_from([*_CLIENTS * 6, *_NOT_CLIENTS, _ANY_TEXT]).flatmap(
    lambda client: _TEXT if client == _ANY_TEXT else st.just(client)
)
_REQUEST = st.builds(
    PolicyRequest,
    request=st.sampled_from(["smtpd_access_policy"] * 9 + ["junk"]),
    protocol_state=st.sampled_from(["RCPT"] * 6 + ["END-OF-MESSAGE", "MAIL", "rcpt", "\u2028"]),
    client_address=_CLIENT,
    helo_name=st.one_of(st.sampled_from([*_DOMAINS, "[192.0.2.1]", "localhost"]), _VALUE),
    sender=_SENDER,
    recipient=_VALUE,
    instance=st.sampled_from(["", "4F2A1.1", "\r\n"]),
    sasl_username=st.sampled_from([""] * 5 + [_ANY_TEXT]).flatmap(
        lambda name: _TEXT if name == _ANY_TEXT else st.just(name)
    ),
    sasl_method=_TEXT,
    queue_id=_TEXT,
)

# An explanation built from the attacker's own strings (RFC 7208 §7 macros) and hostile text.
_EXPLANATION = st.lists(
    st.sampled_from(
        ["bad ", "%{l}", "%{s}", "%{h}", "%{d}", "%{i}", "%{o}", "%{c}", "%{r}", "%{L}", "%{S}"]
        + [char for char in HOSTILE if char != "\udcff"]
        + ["ü", "(", ")", "\\", ";", "=", " ", "%%", "%_", "%-"]
    ),
    max_size=30,
).map("".join)
_RECORDS = [
    "v=spf1 ip4:192.0.2.0/24 -all exp=explain.%{d}",
    "v=spf1 -all exp=explain.%{d}",
    "v=spf1 ~all",
    "v=spf1 ?all",
    "v=spf1 exists:%{l}.%{d} -all exp=explain.%{d}",
    "v=spf1 redirect=%{l}.%{d}",
    "v=spf1 include:broken.example -all",
    "v=spf1 include:timeout.example -all",
    "v=spf1 mx:%{h} a:%{h} -all exp=explain.%{d}",
    "v=spf1 ip4:192.0.2.300 -all",
    "v=spf1 -all exp=%{l}.%{d}",
]
_RECORD = st.one_of(
    st.just("v=spf1 -all exp=explain.%{d}"),
    st.sampled_from(_RECORDS),
    st.builds(lambda text: f"v=spf1 {text} -all", _EXPLANATION),
)


def zone(record: str, explanation: str) -> dict[str, list[str]]:
    """The sender's domain publishes record; explain.<domain> holds explanation."""
    return {
        "sender.example": [f"TXT {record}"],
        "explain.sender.example": [f"TXT {explanation}"],
        "xn--bcher-kva.example": [f"TXT {record}"],
        "explain.xn--bcher-kva.example": [f"TXT {explanation}"],
        "mail.sender.example": ["TXT v=spf1 ip4:192.0.2.0/24 -all", "A 192.0.2.1"],
        "broken.example": ["TXT v=spf1 ip4:192.0.2.300 -all"],
    }


def build_service(config: Config, record: str, explanation: str) -> PolicyService:
    """A fresh service (empty memo) over the zone."""
    resolver = FakeResolver(
        zone(record, explanation.replace('"', "'")),  # the fake zone's quotes group strings
        failing={"timeout.example": DnsFailure.TIMEOUT},
    )
    receiver = Receiver(AUTHSERV_ID, AUTHSERV_ID)
    return PolicyService(config, SpfEvaluator(resolver, receiver=receiver.hostname), receiver)


_RECEIVED_SPF = re.compile(r"Received-SPF: (pass|fail|softfail|neutral|none|temperror|permerror) ")
_AUTHENTICATION_RESULTS = re.compile(
    re.escape(f"Authentication-Results: {AUTHSERV_ID}; ")
    + r"(none|spf=(pass|fail|softfail|neutral|none|temperror|permerror)([ ;]|$))"
)
_REPLY_TEXT = re.compile(f"[ -~]{{0,{actions.MAX_REPLY_TEXT}}}")  # printable ASCII, bounded
_ENFORCING = re.compile(
    rf"(550 ({actions.SPF_FAIL_CODE}|{actions.SPF_ERROR_PERMANENT})"
    rf"|DEFER_IF_PERMIT ({actions.SPF_ERROR_TEMPORARY}|{actions.NOT_AUTHORIZED_TEMPORARY})"
    r"|HOLD) "
)


def allowed_action_problem(action: str, config: Config, request: PolicyRequest) -> str | None:
    """Why action is not one this configuration can answer; None when it is."""
    problem = action_problem(action)
    if problem:
        return problem
    classes = {config.actions.restriction(result) for result in SpfResult} - {""}
    if action in ("DUNNO", actions.INTERNAL_ERROR_DEFER) or action in classes:
        return None
    enforcing = _ENFORCING.match(action)
    if enforcing:
        if action.startswith("HOLD ") and not _holds(config):
            return "HOLD from a configuration without a hold verdict"
        text = action[enforcing.end() :]
        return None if _REPLY_TEXT.fullmatch(text) else "reply text not bounded printable ASCII"
    if not action.startswith("PREPEND "):
        return "not an action the configuration allows"
    return _header_problem(action.removeprefix("PREPEND "), config, request)


def _holds(config: Config) -> bool:
    """Whether any action table of config has a hold verdict."""
    tables = [config.actions.helo, config.actions.mailfrom]
    tables += [
        table for rule in config.recipient for table in (rule.actions.helo, rule.actions.mailfrom)
    ]
    return any(table.verdict(result) is Verdict.HOLD for table in tables for result in SpfResult)


def _header_problem(header: str, config: Config, request: PolicyRequest) -> str | None:
    """Why a PREPEND header is not the one trace header allowed here; None when it is."""
    if request.protocol_state.upper() == "END-OF-MESSAGE":
        return "PREPEND at END-OF-MESSAGE"
    expected = {
        HeaderType.RECEIVED_SPF: _RECEIVED_SPF,
        HeaderType.AUTHENTICATION_RESULTS: _AUTHENTICATION_RESULTS,
    }.get(config.headers.type)
    if expected is None or not expected.match(header):
        return f"a header that is not the configured {config.headers.type.value}"
    return None


def check_reply(reply: bytes, config: Config, request: PolicyRequest) -> None:
    """reply is one action line, allowed by config."""
    assert reply.startswith(b"action="), reply[:100]
    assert reply.endswith(b"\n\n"), reply[-100:]
    assert reply.count(b"\n") == 2, reply
    assert b"\r" not in reply
    assert b"\0" not in reply
    assert len(reply) < MAX_REPLY
    action = reply[len(b"action=") : -2].decode("utf-8")
    assert action.splitlines() == [action]
    problem = allowed_action_problem(action, config, request)
    assert problem is None, f"{problem}: {action[:300]!r}"


class _LogLines(logging.Handler):
    """Keeps the formatted decision log lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def decision_log() -> Iterator[_LogLines]:
    """The decision log lines written while the test runs."""
    handler = _LogLines()
    logger = logging.getLogger("spfpolicy.decision")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


_SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def test_service_replies_are_one_allowed_line(decision_log: _LogLines) -> None:
    ran: list[PolicyRequest] = []

    @settings(_SETTINGS, max_examples=SERVICE_EXAMPLES)
    @given(_REQUEST, st.sampled_from(sorted(PARSED)), _RECORD, _EXPLANATION)
    def one_line(request: PolicyRequest, config_name: str, record: str, explanation: str) -> None:
        ran.append(request)
        config = PARSED[config_name]
        service = build_service(config, record, explanation)
        decision_log.lines.clear()
        # A second recipient of the same message answers from the memo: that too is a reply.
        for each in (request, request.replace(recipient="second@receiver.example")):
            decision: Decision = handle(service, each)
            check_reply(encode_reply(decision.action), config, each)
        assert decision_log.lines, "no decision was logged"
        for line in decision_log.lines:
            assert line.splitlines() == [line], line[:300]
            assert action_problem(line) is None, line[:300]

    one_line()
    assert len(ran) >= SERVICE_EXAMPLES


@pytest.mark.parametrize(
    ("local_part", "explanation", "expected"),
    [
        ("a\r\nb", "bad %{l}", "bad a??b"),
        ("a\u2028b\x85c", "bad %{l}", "bad a"),
        ("x", "bad \r\nX-Injected: yes %{l}", "bad ??X-Injected: yes x"),
        ("\x1b[31mred", "%{l} from %{i}", "?[31mred from 198.51.100.1"),
        ("\u202eevil", "%{s}", "?evil@sender.example"),
        ("x" * 5000, "bad %{l}", "bad xxx"),
    ],
    ids=["crlf", "line-separators", "crlf-in-record", "escape", "bidi", "long"],
)
def test_a_hostile_explanation_is_one_ascii_reply(
    local_part: str, explanation: str, expected: str
) -> None:
    """RFC 7208 §6.2: the domain's exp= text, with the sender's local-part expanded into it."""
    service = build_service(Config(), "v=spf1 -all exp=explain.%{d}", explanation)
    request = PolicyRequest(
        request="smtpd_access_policy",
        protocol_state="RCPT",
        client_address="198.51.100.1",
        helo_name="[198.51.100.1]",
        sender=f"{local_part}@sender.example",
    )
    reply = encode_reply(handle(service, request).action)
    check_reply(reply, Config(), request)
    assert reply.startswith(b"action=550 5.7.23 SPF mailfrom check failed")
    assert expected.encode() in reply


def test_encode_reply_breaks_no_line_for_unicode_readers() -> None:
    """U+2028 and U+2029 end a line for journald's readers and mail clients, if not Postfix."""
    assert encode_reply("REJECT a\u2028b\u2029c\x85d") == b"action=REJECT a b c d\n\n"


@settings(_SETTINGS, max_examples=SERVICE_EXAMPLES)
@given(st.text(st.one_of(st.sampled_from(HOSTILE), st.characters())))
def test_encode_reply_is_one_line_whatever_the_action(action: str) -> None:
    """The last guard: even an action no service would make stays one line for everyone."""
    reply = encode_reply(action)
    assert reply.startswith(b"action=")
    assert reply.endswith(b"\n\n")
    assert reply.count(b"\n") == 2
    assert b"\r" not in reply
    assert b"\0" not in reply
    text = reply[len(b"action=") : -2].decode("utf-8")
    assert text.splitlines() in ([text], [])
    categories = {unicodedata.category(char) for char in text}
    assert not categories & {"Cc", "Cs", "Zl", "Zp"}, text


@pytest.fixture
def wire_server() -> Iterator[tuple[PolicyServer, list[PolicyService]]]:
    """The real PolicyServer on loopback; the service it asks can be swapped per example."""
    current = [build_service(Config(), _RECORDS[1], "bad %{l}")]

    server = PolicyServer(
        [ListenAddress.parse("inet:127.0.0.1:0")],
        # Late-bound: each example swaps the service the server asks.
        lambda request: current[0].begin(request),  # noqa: PLW0108
        complete=lambda pending: current[0].complete(pending),  # noqa: PLW0108
        error_action=actions.INTERNAL_ERROR_DEFER,
    )
    server.start()
    yield server, current
    server.shutdown(grace=1.0)


def request_line_bytes(request: PolicyRequest) -> bytes:
    """The request as a client sends it: values raw, so an LF in one starts a new line."""
    names = ["request", "protocol_state", "client_address", "helo_name", "sender", "recipient"]
    names += ["instance", "sasl_username", "sasl_method", "queue_id"]
    lines = "".join(f"{name}={getattr(request, name)}\n" for name in names)
    return (lines + "\n").encode("utf-8", "surrogatepass")


@pytest.mark.daemon
def test_wire_replies_are_one_allowed_line(
    wire_server: tuple[PolicyServer, list[PolicyService]],
) -> None:
    server, current = wire_server
    address = server.addresses[0]
    ran: list[PolicyRequest] = []

    @settings(_SETTINGS, max_examples=WIRE_EXAMPLES)
    @given(_REQUEST, st.sampled_from(sorted(PARSED)), _RECORD, _EXPLANATION)
    def one_line(request: PolicyRequest, config_name: str, record: str, explanation: str) -> None:
        ran.append(request)
        config = PARSED[config_name]
        current[0] = build_service(config, record, explanation)
        payload = request_line_bytes(request)
        data = converse((address.host, address.port), payload)
        # An LF in a value starts a new line, and an empty line a new request; a request the
        # server cannot read (NUL, a line without "=") ends the connection without a reply.
        # Every request it can read gets exactly one reply (see Framing.replies_fit).
        framing = frame(payload)
        replies = data.split(b"\n\n")[:-1]
        assert len(parse_replies(data)) == len(replies)
        assert framing.replies_fit(len(replies)), (len(replies), framing)
        for each, reply in zip(framing.requests, replies, strict=False):
            check_reply(reply + b"\n\n", config, each)

    one_line()
    assert len(ran) >= WIRE_EXAMPLES
