"""Prometheus metrics: what the observer counts, and a live scrape of a running daemon."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from spfpolicy.model import Decision, Disposition, Identity, SpfOutcome, SpfResult
from spfpolicy.ops.metrics import PrometheusObserver
from tests.conftest import require_tool
from tests.support.fixtures import REPO_ROOT, running_dns_server
from tests.support.postfix import free_port

# The names the issue and the dashboard rely on (counters are exposed with _total).
REQUIRED = {
    "spfpolicy_requests_total",
    "spfpolicy_decisions_total",
    "spfpolicy_spf_results_total",
    "spfpolicy_skips_total",
    "spfpolicy_request_duration_seconds",
    "spfpolicy_dns_queries_total",
    "spfpolicy_dns_query_duration_seconds",
    "spfpolicy_dns_cache_hits_total",
    "spfpolicy_dns_cache_misses_total",
    "spfpolicy_dns_cache_entries",
    "spfpolicy_dns_stale_answers_total",
    "spfpolicy_connections_open",
    "spfpolicy_connections_total",
    "spfpolicy_protocol_errors_total",
    "spfpolicy_budget_exceeded_total",
    "spfpolicy_internal_errors_total",
    "spfpolicy_config_reloads_total",
    "spfpolicy_config_last_reload_success_timestamp_seconds",
    "spfpolicy_build_info",
}
ZONE = {"sender.example": [{"TXT": "v=spf1 ip4:192.0.2.0/24 -all"}]}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def exposition(observer: PrometheusObserver) -> str:
    from prometheus_client import generate_latest

    return generate_latest(observer.registry).decode()


def test_a_decision_counts_action_results_and_time() -> None:
    observer = PrometheusObserver(time_budget=20.0)
    outcomes = (
        SpfOutcome(Identity.HELO, SpfResult.NONE, "h.example", "postmaster@h.example"),
        SpfOutcome(Identity.MAILFROM, SpfResult.FAIL, "s.example", "u@s.example"),
    )
    observer.decision_made(Decision(Disposition.REJECT, "550 5.7.23 x", outcomes), 0.004)
    observer.decision_made(
        Decision(Disposition.REJECT, "550 5.7.23 x", outcomes, reused=True), 0.0001
    )
    observer.decision_made(Decision(Disposition.SKIP, "DUNNO", skip_reason="authenticated"), 0.0)
    found = samples(exposition(observer))
    assert found["spfpolicy_decisions_total", (("action", "reject"),)] == 2
    assert found["spfpolicy_decisions_total", (("action", "defer"),)] == 0  # shown from the start
    # A reused decision (a later recipient) counts as a decision, not as new SPF results.
    assert found["spfpolicy_spf_results_total", (("identity", "mailfrom"), ("result", "fail"))] == 1
    assert found["spfpolicy_spf_results_total", (("identity", "helo"), ("result", "none"))] == 1
    assert found["spfpolicy_skips_total", (("reason", "authenticated"),)] == 1
    assert found["spfpolicy_request_duration_seconds_count", ()] == 3
    assert found["spfpolicy_request_duration_seconds_bucket", (("le", "0.005"),)] == 3
    assert found["spfpolicy_request_duration_seconds_bucket", (("le", "20.0"),)] == 3


def test_a_hold_is_counted_as_its_own_action() -> None:
    observer = PrometheusObserver()
    assert samples(exposition(observer))["spfpolicy_decisions_total", (("action", "hold"),)] == 0
    outcome = SpfOutcome(Identity.MAILFROM, SpfResult.FAIL, "s.example", "u@s.example")
    held = Decision(Disposition.HOLD, "HOLD SPF mailfrom check failed", (outcome,))
    observer.decision_made(held, 0.001)
    observer.decision_made(Decision(Disposition.HOLD, held.answer, (outcome,), reused=True), 0.0)
    found = samples(exposition(observer))
    assert found["spfpolicy_decisions_total", (("action", "hold"),)] == 2
    assert found["spfpolicy_decisions_total", (("action", "reject"),)] == 0
    assert found["spfpolicy_decisions_total", (("action", "accept"),)] == 0


def test_internal_errors_are_counted_beside_their_action() -> None:
    observer = PrometheusObserver()
    deferred = Decision(Disposition.DEFER, "DEFER_IF_PERMIT 4.3.0 x", internal_error=True)
    observer.decision_made(deferred, 0.01)
    observer.decision_made(Decision(Disposition.ACCEPT, "DUNNO", internal_error=True), 0.01)
    observer.decision_made(Decision(Disposition.DEFER, "DEFER_IF_PERMIT 4.7.24 x"), 0.01)
    found = samples(exposition(observer))
    assert found["spfpolicy_internal_errors_total", ()] == 2
    assert found["spfpolicy_decisions_total", (("action", "defer"),)] == 2
    assert found["spfpolicy_decisions_total", (("action", "accept"),)] == 1


def test_labels_stay_in_closed_sets() -> None:
    observer = PrometheusObserver()
    observer.request_received("rcpt")
    observer.request_received("made-up-state.attacker.example")
    observer.dns_query("NAPTR", "answer", 0.01)
    observer.dns_query("TXT", "timeout", 2.0, prefetch=True)
    found = samples(exposition(observer))
    assert found["spfpolicy_requests_total", (("protocol_state", "RCPT"),)] == 1
    assert found["spfpolicy_requests_total", (("protocol_state", "other"),)] == 1
    waited = (("outcome", "answer"), ("path", "wait"), ("rdtype", "other"))
    assert found["spfpolicy_dns_queries_total", waited] == 1
    prefetched = (("outcome", "timeout"), ("path", "prefetch"), ("rdtype", "TXT"))
    assert found["spfpolicy_dns_queries_total", prefetched] == 1


def test_stale_answers_are_counted_by_record_type_from_zero() -> None:
    observer = PrometheusObserver()
    before = samples(exposition(observer))
    assert before["spfpolicy_dns_stale_answers_total", (("rdtype", "TXT"),)] == 0
    observer.dns_stale_answer("TXT")
    observer.dns_stale_answer("TXT")
    observer.dns_stale_answer("A")
    observer.dns_stale_answer("NAPTR")
    found = samples(exposition(observer))
    assert found["spfpolicy_dns_stale_answers_total", (("rdtype", "TXT"),)] == 2
    assert found["spfpolicy_dns_stale_answers_total", (("rdtype", "A"),)] == 1
    assert found["spfpolicy_dns_stale_answers_total", (("rdtype", "other"),)] == 1
    assert found["spfpolicy_dns_stale_answers_total", (("rdtype", "MX"),)] == 0


def test_duration_buckets_end_at_the_time_budget() -> None:
    observer = PrometheusObserver(time_budget=7.5)
    observer.decision_made(Decision(Disposition.ACCEPT, "DUNNO"), 6.0)
    found = samples(exposition(observer))
    buckets = sorted(
        float(dict(labels)["le"])
        for (name, labels) in found
        if name == "spfpolicy_request_duration_seconds_bucket"
    )
    assert buckets[0] == 0.001
    assert buckets[-2:] == [7.5, float("inf")]


class LiveDaemon:
    """spfpolicy serve with its exporter on a free loopback port."""

    def __init__(self, tmp_path: Path, dns_port: int) -> None:
        self.policy_port, self.metrics_port = free_port(), free_port()
        self.config = tmp_path / "spfpolicy.toml"
        self.config.write_text(
            f'[server]\nlisten = ["inet:127.0.0.1:{self.policy_port}"]\n'
            f'[dns]\nnameservers = ["127.0.0.1"]\nport = {dns_port}\n'
            f'[metrics]\nlisten = "127.0.0.1:{self.metrics_port}"\n'
        )
        self.log = tmp_path / "daemon.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "spfpolicy", "serve", "--config", str(self.config)],
                stdout=log,
                stderr=log,
                cwd=REPO_ROOT,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                self.get("/healthz")
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"exporter did not start:\n{self.log.read_text()}")

    def get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.metrics_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def ask(self, payload: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.policy_port), timeout=10) as client:
            client.sendall(payload)
            client.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := client.recv(4096):
                received += chunk
        return received

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveDaemon]:
    """A running daemon with metrics, its DNS on loopback."""
    with running_dns_server(ZONE) as dns_port:
        daemon = LiveDaemon(tmp_path, dns_port)
        try:
            yield daemon
        finally:
            daemon.stop()


def request(client: str, sender: str, sasl: str = "") -> bytes:
    return (
        f"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address={client}\n"
        f"helo_name=h.client.example\nsender={sender}\nsasl_username={sasl}\n"
        f"instance={client}{sender}{sasl}\n\n"
    ).encode()


@pytest.mark.daemon
def test_live_scrape_counts_what_happened(live: LiveDaemon) -> None:
    assert live.ask(request("192.0.2.1", "u@sender.example")).startswith(b"action=PREPEND ")
    assert live.ask(request("203.0.113.9", "u@sender.example")).startswith(b"action=550 ")
    assert live.ask(request("203.0.113.9", "u@sender.example")).startswith(b"action=550 ")
    assert live.ask(request("203.0.113.9", "u@sender.example", sasl="alice")) == b"action=DUNNO\n\n"
    assert live.ask(b"garbage without equals\n\n") == b""
    live.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "configuration reloaded" not in live.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    status, text = live.get("/metrics")
    assert status == 200
    found = samples(text)
    names = {name for name, _ in found} | {re.sub(r"_(bucket|count|sum)$", "", n) for n, _ in found}
    assert names >= REQUIRED, REQUIRED - names
    assert found["spfpolicy_requests_total", (("protocol_state", "RCPT"),)] == 4
    assert found["spfpolicy_decisions_total", (("action", "accept"),)] == 1
    assert found["spfpolicy_decisions_total", (("action", "reject"),)] == 2
    assert found["spfpolicy_decisions_total", (("action", "skip"),)] == 1
    # The two rejects are two recipients of one message: one evaluation, counted once.
    assert found["spfpolicy_spf_results_total", (("identity", "mailfrom"), ("result", "fail"))] == 1
    assert found["spfpolicy_protocol_errors_total", (("kind", "no_equals"),)] == 1
    assert found["spfpolicy_connections_total", ()] == 5
    assert found["spfpolicy_connections_open", ()] == 0
    assert found["spfpolicy_config_reloads_total", (("outcome", "success"),)] == 1
    assert found["spfpolicy_dns_cache_hits_total", ()] >= 1  # the second sender.example TXT
    assert found["spfpolicy_dns_cache_entries", ()] >= 1
    assert found["spfpolicy_build_info", (("version", "0.1.0"),)] == 1
    for _name, labels in found:  # no label value is ever an address or a domain
        for key, value in labels:
            assert "example" not in value
            if key != "le":  # histogram bounds are numbers, not addresses
                assert not re.fullmatch(r"[0-9a-f.:]+", value) or value == "0.1.0", value


@pytest.mark.daemon
def test_healthz_and_unknown_paths(live: LiveDaemon) -> None:
    assert live.get("/healthz") == (200, "ok\n")
    status, body = live.get("/nothing")
    assert status == 404
    assert "/metrics" in body


@pytest.mark.system
def test_promtool_accepts_a_live_scrape(live: LiveDaemon) -> None:
    promtool = require_tool("promtool", "prometheus")
    live.ask(request("192.0.2.1", "u@sender.example"))
    _, text = live.get("/metrics")
    checked = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "", checked.stdout  # no lint warnings either


@pytest.mark.daemon
def test_a_busy_metrics_port_stops_start_up_with_the_reason(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = tmp_path / "spfpolicy.toml"
        config.write_text(
            f'[server]\nlisten = ["inet:127.0.0.1:{free_port()}"]\n'
            f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
        )
        done = subprocess.run(
            [sys.executable, "-m", "spfpolicy", "serve", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            cwd=REPO_ROOT,
        )
    assert done.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in done.stderr
