"""The composition root: arguments, config, logging; builds the objects, runs, handles signals."""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from spfpolicy import __version__
from spfpolicy.config.settings import Config, load_config
from spfpolicy.daemon import Daemon
from spfpolicy.decision.actions import Receiver
from spfpolicy.evaluation.caches import ExpiringCache, IncludeKey, IncludeResult, ResultCache
from spfpolicy.evaluation.checkreport import check_document, check_lines, trace_all
from spfpolicy.evaluation.evaluator import SpfEvaluator
from spfpolicy.evaluation.mapcache import AddressMaps
from spfpolicy.lint import command as lint_command
from spfpolicy.model import ListenAddress, NullObserver, PolicyRequest, SpfPolicyError
from spfpolicy.ops import notify
from spfpolicy.ops.logs import configure_logging
from spfpolicy.ops.metrics import MetricsExporter, PrometheusObserver
from spfpolicy.resolver import multiplex
from spfpolicy.resolver.answers import Resolver
from spfpolicy.resolver.cache import CacheLimits, CachingResolver
from spfpolicy.resolver.stub import StubResolver
from spfpolicy.service.allowlist import AllowList
from spfpolicy.service.policyservice import PolicyService
from spfpolicy.wire import activation, listeners
from spfpolicy.wire.server import PolicyServer

log = logging.getLogger("spfpolicy")

EXIT_OK = 0
EXIT_FAILURE = 1  # a bad config file or a socket that cannot be opened
EXIT_USAGE = 2  # argparse's own code for bad arguments
# Seconds a thread may hold the GIL while another waits for it (Python's default: 0.005).
SWITCH_INTERVAL = 0.0005


def main(argv: Sequence[str] | None = None) -> int:
    """Run the spfpolicy command line; returns the process exit code."""
    arguments = _parser().parse_args(argv)
    try:
        code: int = arguments.run(arguments)
    except SpfPolicyError as error:  # ConfigError among them: the message names file and key
        print(f"spfpolicy: {error}", file=sys.stderr)
        return EXIT_FAILURE
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spfpolicy", description="SPF (RFC 7208) policy daemon for Postfix."
    )
    parser.add_argument("--version", action="version", version=f"spfpolicy {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the policy daemon")
    serve.add_argument("--config", metavar="FILE", help="TOML configuration (default: built-in)")
    serve.set_defaults(run=_serve)

    check = commands.add_parser("check", help="evaluate one message and show the answer")
    check.add_argument("--ip", required=True, help="the SMTP client's address")
    check.add_argument("--helo", default="", help="the HELO/EHLO name")
    check.add_argument("--sender", default="", help="the MAIL FROM address (empty: <>)")
    check.add_argument("--config", metavar="FILE", help="TOML configuration (default: built-in)")
    check.add_argument(
        "--trace", action="store_true", help="show the evaluation as a tree of records and terms"
    )
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(run=_check)

    lint_command.add_command(commands, build_resolver)

    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    config_check = config_commands.add_parser("check", help="validate a configuration file")
    config_check.add_argument("file", metavar="FILE")
    config_check.set_defaults(run=_config_check)

    migration = commands.add_parser(
        "migrate-policyd-spf", help="print the spfpolicy TOML equivalent of a policyd-spf.conf"
    )
    migration.add_argument("file", metavar="FILE", help="the policyd-spf.conf to translate")
    migration.set_defaults(run=_migrate_policyd_spf)
    return parser


def _load(path: str | None) -> Config:
    return load_config(path) if path else Config()


def _receiver(config: Config) -> Receiver:
    hostname = socket.getfqdn()
    return Receiver(hostname=hostname, authserv_id=config.headers.authserv_id or hostname)


def build_service(
    config: Config,
    observer: PrometheusObserver | None = None,
    resolver: Resolver | None = None,
    *,
    receiver: Receiver | None = None,
) -> PolicyService:
    """Wire resolver, evaluator and service for one configuration, reporting to observer.

    A reload whose [dns] is unchanged passes the running resolver, so its cache survives.
    receiver defaults to this host's name.
    """
    if resolver is None:
        resolver = build_resolver(config, observer)
    result_cache = ResultCache(config.spf.result_cache_size) if config.spf.result_cache else None
    # Half as many include: results: they are per client and provider, far fewer pairs than
    # clients and sender domains, and the three caches full stay under 150 MiB.
    include_cache: ExpiringCache[IncludeKey, IncludeResult] | None = (
        ExpiringCache(max(1, config.spf.result_cache_size // 2))
        if config.spf.result_cache
        else None
    )
    # A map per sender domain and address family (a few KiB each), for the domains whose
    # clients are many: a twenty-fifth as many as results.
    address_maps = (
        AddressMaps(
            max(1, config.spf.result_cache_size // 25),
            void_lookup_limit=config.spf.void_lookup_limit,
            ipv6_void_fairness=config.spf.ipv6_void_fairness,
            observer=observer,
        )
        if config.spf.result_cache
        else None
    )
    receiver = receiver or _receiver(config)
    dns_cache = resolver if isinstance(resolver, CachingResolver) else None
    evaluator = SpfEvaluator(
        resolver,
        receiver=receiver.hostname,
        void_lookup_limit=config.spf.void_lookup_limit,
        ipv6_void_fairness=config.spf.ipv6_void_fairness,
        result_cache=result_cache,
        include_cache=include_cache,
        dns_cache=dns_cache,
        address_maps=address_maps,
        observer=observer,
    )
    allow = AllowList(config.allow, resolver, evaluator)
    return PolicyService(config, evaluator, receiver, allow=allow, observer=observer)


def build_resolver(
    config: Config, observer: PrometheusObserver | None = None, upstream: Resolver | None = None
) -> Resolver:
    """The upstream resolver (the stub resolver of [dns] unless one is given), behind the
    shared cache unless its size is 0."""
    dns = config.dns
    resolver: Resolver = upstream or StubResolver(
        dns.nameservers, port=dns.port, query_timeout=dns.query_timeout, observer=observer
    )
    if not dns.cache_size:
        return resolver
    limits = CacheLimits(
        dns.cache_size, dns.min_ttl, dns.max_ttl, dns.negative_ttl_max, dns.serve_stale
    )
    # Prefetching asks as the stub does; a resolver given for tests is asked only by threads.
    multiplexer = None
    if isinstance(resolver, StubResolver):
        multiplexer = multiplex.QueryMultiplexer(resolver)
    cache = CachingResolver(resolver, limits, multiplexer=multiplexer, observer=observer)
    if observer is not None:
        observer.track_dns_cache(cache.__len__)
    return cache


def build_server(
    config: Config,
    service: PolicyService,
    observer: PrometheusObserver | None = None,
    listen: Sequence[ListenAddress] | None = None,
    inherited: Sequence[socket.socket] = (),
) -> PolicyServer:
    """The policy server for a service: begin() on its I/O thread, complete() on its workers.

    listen defaults to [server] listen; inherited are sockets systemd passed.
    """
    return PolicyServer(
        config.server.listen if listen is None else listen,
        service.begin,
        complete=service.complete,
        wait=service.wait_for_dns,
        resume=service.resume,
        max_connections=config.server.max_connections,
        other_descriptors=multiplex.MAX_IN_FLIGHT,
        idle_timeout=config.server.idle_timeout,
        unix_mode=config.server.unix_mode_bits,
        error_action=service.error_decision().action,
        observer=observer or NullObserver(),
        inherited_sockets=inherited,
    )


def _configure_logging(config: Config, *, background: bool = False) -> None:
    configure_logging(config.log.level, config.log.format, background=background)


def _config_check(arguments: argparse.Namespace) -> int:
    load_config(arguments.file)
    print(f"{arguments.file}: OK")
    return EXIT_OK


def _migrate_policyd_spf(arguments: argparse.Namespace) -> int:
    try:
        text = Path(arguments.file).read_bytes().decode("utf-8", errors="replace")
    except OSError as error:
        raise SpfPolicyError(f"{arguments.file}: cannot read the file: {error.strerror}") from error
    # Imported here: the migration tool is needed by this command alone, never by the daemon.
    from spfpolicy.migrate.translate import migrate  # noqa: PLC0415

    sys.stdout.write(migrate(text, arguments.file))
    return EXIT_OK


def _check(arguments: argparse.Namespace) -> int:
    config = _load(arguments.config)
    _configure_logging(config)
    service = build_service(config)
    request = PolicyRequest(
        request="smtpd_access_policy",
        protocol_state=config.skip.protocol_states[0],
        protocol_name="ESMTP",
        client_address=arguments.ip,
        helo_name=arguments.helo,
        sender=arguments.sender,
        instance="spfpolicy-check",
    )
    explanation = service.explain(request)
    traces = {}
    if arguments.trace:
        # A second service, with caches of its own: the tree shows DNS as a fresh daemon asks it.
        deadline = time.monotonic() + config.spf.time_budget
        traces = trace_all(
            build_service(config).evaluator, explanation.evaluations, request, deadline
        )
    decision, evaluations = explanation.decision, explanation.evaluations
    if arguments.json:
        print(json.dumps(check_document(decision, evaluations, traces), indent=2))
        return EXIT_OK
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    void_limit = config.spf.void_lookup_limit
    print(
        "\n".join(check_lines(decision, evaluations, traces, void_limit=void_limit, colour=colour))
    )
    return EXIT_OK


def _serve(arguments: argparse.Namespace) -> int:
    # The event loop holds the GIL while it answers from the caches; a worker back from DNS
    # would wait out the default 5 ms switch interval at every step. Hand over sooner.
    sys.setswitchinterval(SWITCH_INTERVAL)
    config = _load(arguments.config)
    _configure_logging(config, background=True)
    observer = PrometheusObserver(config.spf.time_budget)
    service = build_service(config, observer)
    inherited = activation.listen_sockets()
    listen = _own_listen(config.server.listen, inherited)
    if not listen and not inherited:
        raise SpfPolicyError(
            "nothing to listen on: [server] listen is empty and systemd passed no socket"
        )
    server = build_server(config, service, observer, listen, inherited)
    server.start()
    notifier = notify.Notifier()
    daemon = Daemon(
        server,
        service,
        config,
        notifier=notifier,
        observer=observer,
        load=lambda: _load(arguments.config),
        build=lambda new, resolver: build_service(new, observer, resolver),
    )
    # The daemon owns the service from here. This frame lives as long as the process: holding
    # the first service in it kept its memo and caches (and, once [dns] changed, its resolver
    # with the whole DNS cache) alive through every reload.
    del service
    exporter = _start_exporter(config, observer, daemon, server)
    daemon.install_signal_handlers()
    addresses = ", ".join(str(a) for a in server.addresses)
    log.info("spfpolicy %s listening on %s", __version__, addresses)
    notifier.ready(f"listening on {addresses}")
    server.serve_forever()
    if exporter is not None:
        exporter.stop()
    if server.failed:
        log.critical("spfpolicy stopped after an internal error (see above)")
        return EXIT_FAILURE  # systemd's Restart=on-failure starts it again
    log.info("spfpolicy stopped")
    return EXIT_OK


def _start_exporter(
    config: Config, observer: PrometheusObserver, daemon: Daemon, server: PolicyServer
) -> MetricsExporter | None:
    """Serve /metrics and /healthz when [metrics] listen is set; stop the server if it fails."""
    address = config.metrics.address
    if address is None:
        return None
    try:
        exporter = MetricsExporter(
            observer, address.host, address.port, healthy=lambda: not daemon.stopping
        )
    except OSError as error:
        server.shutdown(grace=0)
        raise SpfPolicyError(f"cannot serve metrics on {config.metrics.listen}: {error}") from error
    exporter.start()
    log.info("metrics on http://%s/metrics", config.metrics.listen)
    return exporter


def _own_listen(
    listen: Sequence[ListenAddress], inherited: Sequence[socket.socket]
) -> list[ListenAddress]:
    """The configured addresses that systemd did not already pass as open sockets."""
    passed = {listeners.address_of(sock) for sock in inherited}
    return [address for address in listen if address not in passed]
