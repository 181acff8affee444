"""The Grafana dashboard and the Prometheus rules: valid, tested, and only about real metrics."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from spfpolicy.model import Decision, Disposition, Identity, SpfOutcome, SpfResult
from spfpolicy.ops.metrics import PrometheusObserver
from tests.conftest import require_tool
from tests.support.fixtures import REPO_ROOT

PACKAGING = REPO_ROOT / "packaging"
DASHBOARD = PACKAGING / "grafana" / "spfpolicy.json"
RULES = PACKAGING / "prometheus" / "spfpolicy.rules.yml"
RULE_TESTS = PACKAGING / "prometheus" / "spfpolicy.rules.test.yml"
METRIC = re.compile(r"\bspfpolicy_[a-z_]+\b")


def exported_names() -> set[str]:
    """Every sample name the exporter can produce (counters with _total, histogram parts)."""
    observer = PrometheusObserver()
    outcome = SpfOutcome(Identity.MAILFROM, SpfResult.PASS, "s.example", "u@s.example")
    observer.request_received("RCPT")
    observer.decision_made(Decision(Disposition.ACCEPT, "DUNNO", (outcome,)), 0.01)
    observer.decision_made(Decision(Disposition.SKIP, "DUNNO", skip_reason="authenticated"), 0)
    observer.dns_query("TXT", "answer", 0.01)
    observer.protocol_error("no_equals")
    observer.result_cache_lookup(hit=True)
    observer.include_cache_lookup(hit=True)
    observer.address_map_lookup("answered")
    observer.config_reloaded(success=True)
    text = generate_latest(observer.registry).decode()
    return {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and line[0] != "#"
    }


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_dashboard_is_importable_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["__inputs"][0]["name"] == "DS_PROMETHEUS"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        assert panel["targets"], panel["title"]


@pytest.mark.parametrize(
    "topic",
    [
        "Decisions by action",
        "SPF results by identity",
        "Request latency against the time budget",
        "DNS queries by outcome",
        "DNS query latency",
        "Cache hit ratio",
        "Connections",
        "Protocol errors and budget overruns",
    ],
)
def test_dashboard_has_the_panels_operators_need(topic: str) -> None:
    titles = [panel["title"] for panel in json.loads(DASHBOARD.read_text())["panels"]]
    assert topic in titles


def test_panels_do_not_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        grid = panel["gridPos"]
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & area, panel["title"]
        assert grid["x"] + grid["w"] <= 24
        cells |= area


def rule_exprs() -> list[str]:
    document: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return [rule["expr"] for group in document["groups"] for rule in group["rules"]]


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_every_metric_used_is_exported(source: str) -> None:
    exprs = dashboard_exprs() if source == "dashboard" else rule_exprs()
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert used
    assert used <= exported_names(), used - exported_names()


def test_rules_cover_the_failures_that_matter() -> None:
    document = yaml.safe_load(RULES.read_text())
    alerts = {rule["alert"] for group in document["groups"] for rule in group["rules"]}
    assert alerts == {
        "SpfPolicyDown",
        "SpfPolicySlow",
        "SpfPolicyTemperrorsHigh",
        "SpfPolicyDnsTimeoutsHigh",
        "SpfPolicyRejectRateJump",
        "SpfPolicyProtocolErrors",
        "SpfPolicyInternalErrors",
        "SpfPolicyReloadFailed",
    }


@pytest.mark.system
def test_promtool_checks_the_rules() -> None:
    promtool = require_tool("promtool", "prometheus")
    done = subprocess.run(
        [promtool, "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 8 rules found" in done.stdout


@pytest.mark.system
def test_promtool_proves_alerts_fire() -> None:
    promtool = require_tool("promtool", "prometheus")
    done = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=RULE_TESTS.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
