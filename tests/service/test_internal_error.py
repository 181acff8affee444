"""[policy] on_internal_error through the wire: PolicyServer + PolicyService, a bug made to happen.

The bug is a resolver that raises something other than DnsError for PTR questions (as a broken
upstream library would), reached through [allow] ptr_domains: outside any SPF evaluation, so no
per-identity temperror catches it and the whole request fails.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest
from prometheus_client import generate_latest

from spfpolicy.config.settings import Config, parse_config
from spfpolicy.decision.actions import INTERNAL_ERROR_DEFER, Receiver
from spfpolicy.evaluation.evaluator import SpfEvaluator
from spfpolicy.model import Decision, ListenAddress
from spfpolicy.ops.metrics import PrometheusObserver
from spfpolicy.resolver.answers import DnsAnswer
from spfpolicy.service.allowlist import AllowList
from spfpolicy.service.policyservice import PolicyService
from spfpolicy.wire.server import PolicyServer
from tests.support.fakedns import FakeResolver
from tests.support.fixtures import ask

pytestmark = pytest.mark.daemon

ZONE = {"sender.example": ["TXT v=spf1 ip4:192.0.2.0/24 -all"]}
CLIENT_TIMEOUT = 10.0  # no test may hang on a server that fails to answer


class BuggyResolver(FakeResolver):
    """FakeResolver with a bug: a PTR question raises a plain RuntimeError."""

    def query(self, name: str, rdtype: str, deadline: float) -> DnsAnswer:
        """Answer from the zone, except PTR."""
        if rdtype == "PTR":
            raise RuntimeError("resolver bug")
        return super().query(name, rdtype, deadline)


class RaisingObserver(PrometheusObserver):
    """Counts like the real one, then fails in decision_made: the phases themselves raise."""

    def decision_made(self, decision: Decision, duration: float) -> None:
        """Count, then raise."""
        super().decision_made(decision, duration)
        raise RuntimeError("observer bug")


def request(sender: str, sasl_username: str = "") -> bytes:
    """A RCPT request from a client outside every skip network."""
    return (
        "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\n"
        f"helo_name=mail.sender.example\nsender={sender}\nrecipient=a@receiver.example\n"
        f"instance=4F2A1.1\nqueue_id=4F2A1\nsasl_username={sasl_username}\n\n"
    ).encode()


def serve(config: Config, observer: PrometheusObserver) -> PolicyServer:
    """Wire the service and the server the way cli.py does, on a free loopback port."""
    resolver = BuggyResolver(ZONE)
    evaluator = SpfEvaluator(resolver, receiver="mx.receiver.example")
    receiver = Receiver("mx.receiver.example", "mx.receiver.example")
    allow = AllowList(config.allow, resolver, evaluator)
    service = PolicyService(config, evaluator, receiver, allow=allow, observer=observer)
    server = PolicyServer(
        [ListenAddress.parse("inet:127.0.0.1:0")],
        service.begin,
        complete=service.complete,
        error_action=service.error_decision().action,
        observer=observer,
    )
    server.start()
    return server


@pytest.fixture
def servers() -> Iterator[list[PolicyServer]]:
    """Servers the test starts, shut down at its end whatever happened."""
    started: list[PolicyServer] = []
    yield started
    for server in started:
        server.shutdown(grace=0)


def internal_errors(observer: PrometheusObserver) -> float:
    """The value of spfpolicy_internal_errors_total."""
    value = observer.registry.get_sample_value("spfpolicy_internal_errors_total")
    assert value is not None, generate_latest(observer.registry).decode()
    return value


@pytest.mark.parametrize(
    ("setting", "answer"),
    [
        pytest.param("", INTERNAL_ERROR_DEFER, id="default"),
        pytest.param('on_internal_error = "defer"', INTERNAL_ERROR_DEFER, id="defer"),
        pytest.param('on_internal_error = "accept"', "DUNNO", id="accept"),
    ],
)
@pytest.mark.parametrize("failing_part", ["service", "handler"])
def test_a_request_that_raises_gets_the_configured_answer_and_the_connection_lives(
    servers: list[PolicyServer],
    caplog: pytest.LogCaptureFixture,
    setting: str,
    answer: str,
    failing_part: str,
) -> None:
    config = parse_config(f'[allow]\nptr_domains = ["ptr.example"]\n[policy]\n{setting}\n')
    observer = PrometheusObserver() if failing_part == "service" else RaisingObserver()
    server = serve(config, observer)
    servers.append(server)
    host, port = server.addresses[0].host, server.addresses[0].port
    with (
        caplog.at_level(logging.ERROR),
        socket.create_connection((host, port), timeout=CLIENT_TIMEOUT) as connection,
    ):
        assert ask(connection, request("user@sender.example")) == answer
        assert internal_errors(observer) == 1
        # The same connection goes on: an authenticated client is skipped before any DNS.
        skipped = ask(connection, request("user@sender.example", sasl_username="alice"))
        if failing_part == "service":
            assert skipped == "DUNNO"
            assert internal_errors(observer) == 1
        else:  # every request fails now, and every one gets the configured answer
            assert skipped == answer
    failures = [r for r in caplog.records if r.exc_info]
    assert failures, "the traceback must be logged"
    assert "resolver bug" in caplog.text
    if failing_part == "service":
        assert any(
            "instance=4F2A1.1" in r.getMessage() and "client=192.0.2.1" in r.getMessage()
            for r in failures
        )
