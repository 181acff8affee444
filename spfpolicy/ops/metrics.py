"""Prometheus metrics: the Observer that counts everything, and the HTTP exporter.

The only module that imports prometheus_client. Every metric lives in the registry of one
PrometheusObserver (not the library's global one), and no label ever carries a domain or an
address: label values come from closed sets (results, actions, DNS outcomes, record types).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from spfpolicy import __version__
from spfpolicy.model import PROTOCOL_STATES, Decision, Disposition

log = logging.getLogger(__name__)

# Postfix's own smtpd_policy_service_timeout is 100 s; requests end by the time budget (20 s).
_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20)
_DNS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
# The record types SPF asks for; anything else is counted as "other" to keep labels closed.
_RDTYPES = frozenset({"A", "AAAA", "MX", "PTR", "TXT", "SPF"})


class PrometheusObserver:
    """Counts what the daemon does into its own registry (see Observer in model.py)."""

    def __init__(self, time_budget: float = 20.0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # Label values come from closed sets, so this stays small.
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        registry = self.registry
        buckets = (*tuple(b for b in _DURATION_BUCKETS if b < time_budget), time_budget)
        self.requests = Counter(
            "spfpolicy_requests",
            "Policy requests received, by SMTP stage.",
            ["protocol_state"],
            registry=registry,
        )
        self.decisions = Counter(
            "spfpolicy_decisions",
            "Requests answered, by what was done.",
            ["action"],
            registry=registry,
        )
        self.spf_results = Counter(
            "spfpolicy_spf_results",
            "SPF results evaluated, by identity and result.",
            ["identity", "result"],
            registry=registry,
        )
        self.skips = Counter(
            "spfpolicy_skips",
            "Requests answered without an SPF check, by reason.",
            ["reason"],
            registry=registry,
        )
        self.duration = Histogram(
            "spfpolicy_request_duration_seconds",
            "Time to answer one request.",
            buckets=buckets,
            registry=registry,
        )
        self.dns_queries = Counter(
            "spfpolicy_dns_queries",
            "Upstream DNS queries, by record type, outcome and path (prefetch: asked ahead of "
            "the evaluation along the record tree; wait: asked by a worker thread that waits).",
            ["rdtype", "outcome", "path"],
            registry=registry,
        )
        self.dns_duration = Histogram(
            "spfpolicy_dns_query_duration_seconds",
            "Time for one upstream DNS query.",
            buckets=_DNS_BUCKETS,
            registry=registry,
        )
        self.dns_cache_hits = Counter(
            "spfpolicy_dns_cache_hits", "DNS questions answered from the cache.", registry=registry
        )
        self.dns_cache_misses = Counter(
            "spfpolicy_dns_cache_misses",
            "DNS questions that needed an upstream query.",
            registry=registry,
        )
        self.dns_stale_answers = Counter(
            "spfpolicy_dns_stale_answers",
            "Expired DNS answers served because asking upstream again failed ([dns] "
            "serve_stale, RFC 8767), by record type.",
            ["rdtype"],
            registry=registry,
        )
        self.dns_cache_entries = Gauge(
            "spfpolicy_dns_cache_entries", "Answers held in the DNS cache.", registry=registry
        )
        self.result_cache = Counter(
            "spfpolicy_result_cache_lookups",
            "SPF result cache lookups, by outcome (hit, miss).",
            ["outcome"],
            registry=registry,
        )
        self.include_cache = Counter(
            "spfpolicy_include_cache_lookups",
            "include: result cache lookups, by outcome (hit: reused, miss: evaluated).",
            ["outcome"],
            registry=registry,
        )
        self.address_maps = Counter(
            "spfpolicy_address_map_lookups",
            "Address map lookups, by outcome (answered; pyspf: this client needs pyspf; new: the "
            "domain's first client; unmapped: no map can answer the domain's record tree).",
            ["outcome"],
            registry=registry,
        )
        self.connections_open = Gauge(
            "spfpolicy_connections_open", "Client connections open now.", registry=registry
        )
        self.connections = Counter(
            "spfpolicy_connections", "Client connections accepted.", registry=registry
        )
        self.connections_refused = Counter(
            "spfpolicy_connections_refused",
            "Connections closed at once: max_connections open.",
            registry=registry,
        )
        self.protocol_errors = Counter(
            "spfpolicy_protocol_errors",
            "Connections closed for a malformed request, by kind.",
            ["kind"],
            registry=registry,
        )
        self.budget_exceeded_total = Counter(
            "spfpolicy_budget_exceeded",
            "Requests that used up their whole time budget.",
            registry=registry,
        )
        self.internal_errors = Counter(
            "spfpolicy_internal_errors",
            "Requests answered with [policy] on_internal_error because deciding them raised.",
            registry=registry,
        )
        self.reloads = Counter(
            "spfpolicy_config_reloads",
            "Configuration reloads, by outcome (success, failure).",
            ["outcome"],
            registry=registry,
        )
        self.last_reload = Gauge(
            "spfpolicy_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully (Unix time).",
            registry=registry,
        )
        self.last_reload_ok = Gauge(
            "spfpolicy_config_last_reload_successful",
            "1 when the last configuration load succeeded, 0 when a reload was refused.",
            registry=registry,
        )
        self.build_info = Gauge(
            "spfpolicy_build_info",
            "The running version; always 1.",
            ["version"],
            registry=registry,
        )
        self.build_info.labels(version=__version__).set(1)
        self.last_reload.set_to_current_time()
        self.last_reload_ok.set(1)
        for disposition in Disposition:  # every action shows, at 0, from the first scrape
            self.decisions.labels(action=disposition.value)
        for rdtype in (*_RDTYPES, "other"):  # so that rate() sees the first stale answer
            self.dns_stale_answers.labels(rdtype=rdtype)

    def _child(self, metric: Any, *values: str) -> Any:
        """metric.labels(*values), remembered: labels() costs more than the increment itself."""
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def track_dns_cache(self, size: Callable[[], int]) -> None:
        """Report size() as the DNS cache's entries at each scrape."""
        self.dns_cache_entries.set_function(lambda: float(size()))

    def request_received(self, protocol_state: str) -> None:
        """Count a request by its SMTP stage."""
        self._child(self.requests, _state_label(protocol_state)).inc()

    def decision_made(self, decision: Decision, duration: float) -> None:
        """Count the action, the results behind it (once per message) and the time taken."""
        self._child(self.decisions, decision.disposition.value).inc()
        self.duration.observe(duration)
        if decision.skip_reason:
            self._child(self.skips, decision.skip_reason).inc()
        if decision.internal_error:
            self.internal_errors.inc()
        if not decision.reused:
            for outcome in decision.outcomes:
                self._child(self.spf_results, outcome.identity.value, outcome.result.value).inc()

    def protocol_error(self, kind: str) -> None:
        """Count a malformed request."""
        self.protocol_errors.labels(kind=kind).inc()

    def connection_opened(self) -> None:
        """Count a connection and keep the open gauge."""
        self.connections.inc()
        self.connections_open.inc()

    def connection_closed(self) -> None:
        """Keep the open gauge."""
        self.connections_open.dec()

    def connection_refused(self) -> None:
        """Count a connection refused for lack of room."""
        self.connections_refused.inc()

    def dns_query(
        self, rdtype: str, outcome: str, duration: float, *, prefetch: bool = False
    ) -> None:
        """Count one upstream query and its time."""
        label = rdtype if rdtype in _RDTYPES else "other"
        path = "prefetch" if prefetch else "wait"
        self._child(self.dns_queries, label, outcome, path).inc()
        self.dns_duration.observe(duration)

    def dns_cache_lookup(self, hit: bool) -> None:
        """Count a DNS cache hit or miss."""
        (self.dns_cache_hits if hit else self.dns_cache_misses).inc()

    def dns_stale_answer(self, rdtype: str) -> None:
        """Count a stale answer served, by its record type."""
        self._child(self.dns_stale_answers, rdtype if rdtype in _RDTYPES else "other").inc()

    def result_cache_lookup(self, hit: bool) -> None:
        """Count a result cache hit or miss."""
        self._child(self.result_cache, "hit" if hit else "miss").inc()

    def include_cache_lookup(self, hit: bool) -> None:
        """Count an include: result reused or evaluated."""
        self._child(self.include_cache, "hit" if hit else "miss").inc()

    def address_map_lookup(self, outcome: str) -> None:
        """Count an address map lookup by outcome."""
        self._child(self.address_maps, outcome).inc()

    def budget_exceeded(self) -> None:
        """Count a request that ran out of time."""
        self.budget_exceeded_total.inc()

    def config_reloaded(self, success: bool) -> None:
        """Count a reload; a good one also sets the last-success time."""
        self.reloads.labels(outcome="success" if success else "failure").inc()
        self.last_reload_ok.set(1 if success else 0)
        if success:
            self.last_reload.set_to_current_time()


def _state_label(protocol_state: str) -> str:
    """Postfix's stage names, and "other" for anything a client made up."""
    state = protocol_state.upper()
    return state if state in PROTOCOL_STATES else "other"


class MetricsExporter:
    """Serves /metrics and /healthz over HTTP on its own thread."""

    def __init__(
        self, observer: PrometheusObserver, host: str, port: int, healthy: Callable[[], bool]
    ) -> None:
        handler = _handler_class(observer.registry, healthy)
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="spfpolicy-metrics", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        """The host and port actually bound (port 0 resolved)."""
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Start serving."""
        self.thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()


def _handler_class(
    registry: CollectorRegistry, healthy: Callable[[], bool]
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        """GET /metrics (Prometheus text format) and GET /healthz (200 while serving)."""

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path == "/healthz":
                ok = healthy()
                self._reply(200 if ok else 503, "text/plain", b"ok\n" if ok else b"stopping\n")
            else:
                self._reply(404, "text/plain", b"not found: try /metrics or /healthz\n")

        def _reply(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("metrics %s: " + format, self.client_address[0], *args)

    return Handler
