"""DNS-backed allow-lists and the void lookup settings, in process and through the daemon."""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from spfpolicy.config.settings import parse_config
from spfpolicy.evaluation.evaluator import SpfEvaluator
from spfpolicy.model import Identity, SpfResult
from spfpolicy.service.allowlist import AllowList
from tests.support.fakedns import FakeResolver
from tests.support.fixtures import REPO_ROOT, running_dns_server
from tests.support.postfix import free_port

FAR = float("inf")
ZONE = {
    "relay.partner.example": ["A 198.51.100.20", "AAAA 2001:db8::20"],
    "20.100.51.198.in-addr.arpa": ["PTR mx1.partner.example"],
    "21.100.51.198.in-addr.arpa": ["PTR liar.partner.example"],
    "mx1.partner.example": ["A 198.51.100.20"],
    "liar.partner.example": ["A 192.0.2.99"],
    "lists.example": ["TXT v=spf1 ip4:198.51.100.0/28 -all"],
    "mixed.example": ["TXT v=spf1 a:v4only.mixed.example a:gone.mixed.example -all"],
    "v4only.mixed.example": ["A 192.0.2.50"],
    "voids.example": ["TXT v=spf1 a:n1.example a:n2.example a:n3.example ip4:192.0.2.1 -all"],
}


def allow_list(config_text: str) -> AllowList:
    resolver = FakeResolver(ZONE)
    evaluator = SpfEvaluator(resolver, receiver="mx.receiver.example")
    return AllowList(parse_config(config_text).allow, resolver, evaluator)


@pytest.mark.parametrize(
    ("config_text", "helo", "client", "reason"),
    [
        pytest.param(
            'helo_names = ["relay.partner.example"]',
            "relay.partner.example",
            "198.51.100.20",
            "allow_helo",
            id="helo-confirmed",
        ),
        pytest.param(
            'helo_names = ["relay.partner.example"]',
            "RELAY.partner.example.",
            "2001:db8::20",
            "allow_helo",
            id="helo-confirmed-v6",
        ),
        pytest.param(
            'helo_names = ["relay.partner.example"]',
            "relay.partner.example",
            "203.0.113.9",
            "",
            id="helo-claimed-by-another",
        ),
        pytest.param(
            'helo_names = ["relay.partner.example"]',
            "other.example",
            "198.51.100.20",
            "",
            id="helo-not-listed",
        ),
        pytest.param(
            'ptr_domains = ["partner.example"]',
            "x.example",
            "198.51.100.20",
            "allow_ptr",
            id="fcrdns",
        ),
        pytest.param(
            'ptr_domains = ["partner.example"]',
            "x.example",
            "198.51.100.21",
            "",
            id="ptr-not-forward-confirmed",
        ),
        pytest.param(
            'ptr_domains = ["other.example"]',
            "x.example",
            "198.51.100.20",
            "",
            id="ptr-other-domain",
        ),
        pytest.param(
            'forwarder_domains = ["lists.example"]',
            "x.example",
            "198.51.100.3",
            "allow_forwarder",
            id="forwarder-pass",
        ),
        pytest.param(
            'forwarder_domains = ["lists.example"]',
            "x.example",
            "203.0.113.9",
            "",
            id="forwarder-fail",
        ),
    ],
)
def test_allow_lists(config_text: str, helo: str, client: str, reason: str) -> None:
    allow = allow_list(f"[allow]\n{config_text}")
    assert allow.active
    assert allow.reason(helo, ipaddress.ip_address(client), FAR) == reason


def test_nothing_configured_is_inactive() -> None:
    assert not allow_list("").active


@pytest.mark.parametrize(
    ("limit", "fairness", "client", "result"),
    [
        pytest.param(2, False, "192.0.2.1", SpfResult.PERMERROR, id="three-voids-over-2"),
        pytest.param(3, False, "192.0.2.1", SpfResult.PASS, id="limit-3"),
        pytest.param(2, False, "2001:db8::9", SpfResult.FAIL, id="v6-a-only-host-is-void"),
        pytest.param(1, False, "2001:db8::9", SpfResult.PERMERROR, id="v6-two-voids-over-1"),
        pytest.param(1, True, "2001:db8::9", SpfResult.FAIL, id="v6-fairness-one-void"),
    ],
)
def test_void_lookup_settings(limit: int, fairness: bool, client: str, result: SpfResult) -> None:
    evaluator = SpfEvaluator(
        FakeResolver(ZONE),
        receiver="r.example",
        void_lookup_limit=limit,
        ipv6_void_fairness=fairness,
    )
    sender = "u@voids.example" if client == "192.0.2.1" else "u@mixed.example"
    outcome = evaluator.evaluate(
        Identity.MAILFROM, client_address=client, sender=sender, helo="h.example", deadline=FAR
    ).outcome
    assert outcome.result is result, outcome


WIRE_ZONE = {
    "relay.partner.example": [{"A": "198.51.100.20"}],
    "20.100.51.198.in-addr.arpa": [{"PTR": "mx1.partner.example"}],
    "21.100.51.198.in-addr.arpa": [{"PTR": "liar.partner.example"}],
    "mx1.partner.example": [{"A": "198.51.100.20"}],
    "liar.partner.example": [{"A": "192.0.2.99"}],
    "lists.example": [{"TXT": "v=spf1 ip4:198.51.100.16/28 -all"}],
    "sender.example": [{"TXT": "v=spf1 -all"}],
}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """spfpolicy serve with the allow-lists on, resolving through a real DNS server."""
    workdir = tmp_path_factory.mktemp("allow")
    port = free_port()
    with running_dns_server(WIRE_ZONE) as dns_port:
        config = workdir / "spfpolicy.toml"
        config.write_text(
            f'[server]\nlisten = ["inet:127.0.0.1:{port}"]\n'
            f'[dns]\nnameservers = ["127.0.0.1"]\nport = {dns_port}\n[metrics]\nlisten = ""\n'
            '[allow]\nhelo_names = ["relay.partner.example"]\nptr_domains = ["partner.example"]\n'
            'forwarder_domains = ["lists.example"]\n'
        )
        log = workdir / "daemon.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "spfpolicy", "serve", "--config", str(config)],
                stdout=output,
                stderr=output,
                cwd=REPO_ROOT,
            )
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            yield port
        finally:
            process.terminate()
            process.wait(timeout=20)
        assert "Traceback" not in Path(log).read_text()


@pytest.mark.daemon
@pytest.mark.parametrize(
    ("client", "helo", "expected"),
    [
        pytest.param("198.51.100.20", "relay.partner.example", "action=DUNNO", id="helo-confirmed"),
        pytest.param("198.51.100.20", "h.example", "action=DUNNO", id="fcrdns"),
        pytest.param("198.51.100.21", "h.example", "action=DUNNO", id="forwarder-pass"),
        pytest.param(
            "198.51.100.99", "relay.partner.example", "action=550 5.7.23", id="helo-claimed"
        ),
        pytest.param("203.0.113.9", "h.example", "action=550 5.7.23", id="nothing-applies"),
    ],
)
def test_allow_lists_through_the_daemon(daemon: int, client: str, helo: str, expected: str) -> None:
    """198.51.100.21's PTR does not forward-confirm; it is allowed only as a forwarder."""
    request = (
        f"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address={client}\n"
        f"helo_name={helo}\nsender=user@sender.example\ninstance={client}{helo}\n\n"
    )
    with socket.create_connection(("127.0.0.1", daemon), timeout=20) as connection:
        connection.sendall(request.encode())
        reply = connection.makefile("rb").readline().decode()
    assert reply.startswith(expected), reply
