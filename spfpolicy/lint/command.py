"""`spfpolicy lint DOMAIN...`: the command's run, from its arguments to its exit status.

cli parses the arguments and passes the one thing lint cannot build itself, the resolver of a
configuration (cli.build_resolver); lint reads the configuration file itself, so that a bad
one exits 2 like any other reason lint could not vouch for a record, and never 1, which says
"warnings only" to a CI job.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TextIO

from spfpolicy.config.settings import Config, load_config
from spfpolicy.lint.fetch import Lookups
from spfpolicy.lint.linter import lint_domain
from spfpolicy.lint.report import EXIT_ERRORS, exit_status, render_json, render_text
from spfpolicy.model import SpfPolicyError
from spfpolicy.resolver.answers import Resolver


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    build_resolver: Callable[[Config], Resolver],
) -> None:
    """Add `lint` to the program's commands; build_resolver makes the resolver of [dns]."""
    lint = commands.add_parser("lint", help="check SPF records before they are published")
    lint.add_argument("domains", nargs="+", metavar="DOMAIN", help="the domains to check")
    lint.add_argument("--record", metavar="TEXT", help="check this unpublished record as DOMAIN's")
    lint.add_argument("--json", action="store_true", help="print the report as JSON")
    lint.add_argument("--config", metavar="FILE", help="TOML configuration: its [dns] resolvers")
    lint.set_defaults(run=lambda arguments: run(arguments, build_resolver))


def run(
    arguments: argparse.Namespace,
    build_resolver: Callable[[Config], Resolver],
    *,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Lint each of arguments.domains and print the report; the exit status.

    arguments: those add_command defines (domains, record, json, config). Each DNS question
    may take [spf] time_budget seconds, a receiver's budget for a whole evaluation; the
    resolvers are those of [dns].
    """
    domains: list[str] = arguments.domains
    record: str | None = arguments.record
    if record is not None and len(domains) != 1:
        message = "--record takes exactly one DOMAIN, the one it is to be published at"
        print(f"spfpolicy lint: {message}", file=err)
        return EXIT_ERRORS
    try:
        config = load_config(arguments.config) if arguments.config else Config()
    except SpfPolicyError as error:
        print(f"spfpolicy: {error}", file=err)
        return EXIT_ERRORS
    lookups = Lookups(build_resolver(config), timeout=config.spf.time_budget)
    reports = [lint_domain(domain, lookups, record=record) for domain in domains]
    out.write(render_json(reports) if arguments.json else render_text(reports))
    return exit_status(reports)
