"""Serve-stale through the real daemon: an answer, then the DNS server fails, then it is back.

The daemon runs as `spfpolicy serve`, its resolver the fault-injecting DNS server of
tests/support/faultydns.py (in this process, so the test switches faults between requests),
with 1-second TTLs so that answers expire within the test. Each phase is read where an
operator reads it: the action Postfix gets, the decision log line, the metrics scrape.
"""

from __future__ import annotations

import itertools
import socket
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from spfpolicy.resolver.cache import FAILURE_TTL
from tests.support.faultydns import Fault, FaultyDnsServer, Rule
from tests.support.fixtures import ServerProcess, ask, connect_unix, running_policy_daemon
from tests.support.postfix import free_port
from tests.support.zones import Zone

pytestmark = pytest.mark.daemon

TTL = 1  # seconds every answer of the DNS server lives
QUERY_TIMEOUT = 1.0
BUDGET = 10.0
WAIT = 15.0  # for the background log writer on a loaded machine
# Three levels, the client in the last one's range: every record is used.
CLIENT = "198.51.100.7"
SENDER = "user@sender.example"
NAMES = ("sender.example", "provider.example", "net.provider.example")
ZONE = {
    "sender.example": [{"TXT": "v=spf1 ip4:192.0.2.0/24 include:provider.example -all"}],
    "provider.example": [{"TXT": "v=spf1 include:net.provider.example -all"}],
    "net.provider.example": [{"TXT": "v=spf1 ip4:198.51.100.0/24 -all"}],
}
PASS = "PREPEND Received-SPF: pass ("  # then this host's name: the receiver
STALE_COMMENT = f"designates {CLIENT} as permitted sender; stale DNS data)"
FRESH_COMMENT = f"designates {CLIENT} as permitted sender)"
_instances = itertools.count()


@dataclass
class Daemon:
    """The daemon under test, its policy connection and its metrics port."""

    process: ServerProcess
    connection: socket.socket
    metrics_port: int

    def ask(self) -> tuple[str, str, float]:
        """One RCPT request of a new message: the action, its decision line, the seconds."""
        instance = f"stale.{next(_instances)}"
        request = (
            "request=smtpd_access_policy\nprotocol_state=RCPT\n"
            f"client_address={CLIENT}\nhelo_name=mail.client.example\nsender={SENDER}\n"
            f"recipient=a@receiver.example\ninstance={instance}\n\n"
        ).encode()
        started = time.monotonic()
        action = ask(self.connection, request)
        seconds = time.monotonic() - started
        return action, self.decision_line(instance), seconds

    def decision_line(self, instance: str) -> str:
        """The decision log line of one request, once the background writer has written it."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            for line in self.process.log_path.read_text(errors="replace").splitlines():
                if f" instance={instance} " in line:
                    return line
            time.sleep(0.02)
        raise AssertionError(f"no decision line for {instance}:\n{self.process.output()}")

    def stale_answers(self) -> float:
        """spfpolicy_dns_stale_answers_total, all record types."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "spfpolicy_dns_stale_answers_total"
        )


def config(socket_path: Path, dns_port: int, metrics_port: int, serve_stale: float) -> str:
    return f"""\
[server]
listen = ["unix:{socket_path}"]
[dns]
nameservers = ["127.0.0.1"]
port = {dns_port}
query_timeout = {QUERY_TIMEOUT}
serve_stale = {serve_stale}
[spf]
time_budget = {BUDGET}
check_helo = false
[skip]
networks = []
[metrics]
listen = "127.0.0.1:{metrics_port}"
"""


@pytest.fixture
def dns() -> Iterator[FaultyDnsServer]:
    """The fault-injecting DNS server, its answers living TTL seconds."""
    with FaultyDnsServer(ZONE, ttl=TTL) as server:
        yield server


def start(tmp_path: Path, dns: FaultyDnsServer, serve_stale: float) -> Iterator[Daemon]:
    socket_path, metrics_port = tmp_path / "policy.sock", free_port()
    config_path = tmp_path / "spfpolicy.toml"
    config_path.write_text(config(socket_path, dns.port, metrics_port, serve_stale))
    with running_policy_daemon(config_path, tmp_path / "daemon.log") as process:
        connection = connect_unix(process, socket_path)
        connection.settimeout(BUDGET + WAIT)
        with connection:
            daemon = Daemon(process, connection, metrics_port)
            deadline = time.monotonic() + WAIT
            while True:  # the exporter starts just after the policy socket
                try:
                    daemon.stale_answers()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            yield daemon


@pytest.fixture
def daemon(tmp_path: Path, dns: FaultyDnsServer) -> Iterator[Daemon]:
    """The daemon with serve_stale = 60."""
    yield from start(tmp_path, dns, serve_stale=60)


def expire() -> None:
    """Wait until every answer fetched so far has expired."""
    time.sleep(TTL + 0.2)


def fail(dns: FaultyDnsServer, fault: Fault) -> None:
    for name in NAMES:
        dns.set_rule(name, Rule(fault))


def test_answer_then_upstream_down_then_up(daemon: Daemon, dns: FaultyDnsServer) -> None:
    # 1. Upstream answers: a fresh pass, nothing stale anywhere.
    action, line, _ = daemon.ask()
    assert action.startswith(PASS), action
    assert FRESH_COMMENT in action, action
    assert "stale_dns" not in line
    assert daemon.stale_answers() == 0
    # 2. Upstream stops answering: every record is asked for again, times out, and its
    #    expired answer stands in. The verdict is still pass, and says so three ways.
    fail(dns, Fault.SILENT)
    expire()
    asked = {name: dns.asked(name, "TXT") for name in NAMES}
    action, line, seconds = daemon.ask()
    assert action.startswith(PASS), action
    assert STALE_COMMENT in action, action
    assert " mailfrom_result=pass(include:provider.example) " in line, line
    assert " stale_dns=yes " in line, line
    assert daemon.stale_answers() == 3
    assert all(dns.asked(name, "TXT") > asked[name] for name in NAMES)  # asked first
    # All three levels were asked in one round: one query timeout, as a temperror takes
    # without serve-stale (test_without_serve_stale_the_same_outage_defers), not three.
    assert QUERY_TIMEOUT <= seconds < 2 * QUERY_TIMEOUT, seconds
    # While the failures are remembered the stale answers are served without a wait.
    action, line, seconds = daemon.ask()
    assert STALE_COMMENT in action
    assert " stale_dns=yes " in line
    assert seconds < QUERY_TIMEOUT
    assert daemon.stale_answers() == 6
    # 3. Upstream is back: once the remembered failures are over, fresh answers, no marking.
    dns.reset()
    time.sleep(FAILURE_TTL + 0.2)
    action, line, _ = daemon.ask()
    assert action.startswith(PASS), action
    assert FRESH_COMMENT in action, action
    assert "stale_dns" not in line
    assert daemon.stale_answers() == 6


def test_servfail_is_bridged_too_and_nxdomain_is_an_answer(
    daemon: Daemon, dns: FaultyDnsServer
) -> None:
    daemon.ask()
    fail(dns, Fault.SERVFAIL)
    expire()
    action, line, _ = daemon.ask()
    assert STALE_COMMENT in action, action
    assert " stale_dns=yes " in line
    # The domain is gone for real (NXDOMAIN): that is an answer, and it replaces the stale one.
    dns.reset()
    dns.responder.zone = Zone.from_zonedata({name: ZONE[name] for name in NAMES[1:]})
    time.sleep(FAILURE_TTL + 0.2)
    action, line, _ = daemon.ask()
    assert action.startswith("PREPEND Received-SPF: none "), action
    assert " mailfrom_result=none " in line, line
    assert "stale_dns" not in line


def test_without_serve_stale_the_same_outage_defers(tmp_path: Path, dns: FaultyDnsServer) -> None:
    for daemon in start(tmp_path, dns, serve_stale=0):
        assert daemon.ask()[0].startswith(PASS)
        fail(dns, Fault.SILENT)
        expire()
        action, line, seconds = daemon.ask()
        assert action.startswith("DEFER_IF_PERMIT 4.7.24 "), action
        assert "stale_dns" not in line
        assert daemon.stale_answers() == 0
        assert QUERY_TIMEOUT <= seconds < 2 * QUERY_TIMEOUT, seconds
