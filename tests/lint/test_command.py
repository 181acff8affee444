"""`spfpolicy lint` as an administrator or a CI job runs it.

The end-to-end tests run the real command (a subprocess) against a real DNS server on loopback
serving a zone with a domain for each kind of finding; the others call the command's run()
with an in-memory zone.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from spfpolicy.config.settings import Config
from spfpolicy.lint.command import run
from spfpolicy.lint.rules import Code
from spfpolicy.resolver.answers import Resolver
from tests.support.fakedns import FakeResolver

PROVIDER = "v=spf1 ip4:198.51.100.0/24 ~all"
CHAIN = 55  # include: levels of deep.example: past both the 10 terms and the 50 records lint walks

ZONE: dict[str, list[Any]] = {
    "clean.example": [{"TXT": "v=spf1 ip4:192.0.2.0/24 include:_spf.provider.example -all"}],
    "_spf.provider.example": [{"TXT": PROVIDER}],
    "warn.example": [{"TXT": "v=spf1 ip4:192.0.2.0/24 ptr ?all"}],
    "syntax.example": [
        {
            "TXT": "v=spf1 a/33 moo -all:x a:museum a:%{z}.example ip4:192.0.2 -exp=x.example "
            "exp=a.example exp=b.example a:caf\u00e9.example -all"
        }
    ],
    "multi.example": [{"TXT": "v=spf1 -all"}, {"TXT": "v=spf1 mx -all"}],
    "none.example": [{"TXT": "v=spf1-all"}],
    "timeout.example": ["TIMEOUT"],
    "includes.example": [
        {"TXT": "v=spf1 include:nothing.example include:loop.example redirect=gone.example"}
    ],
    "loop.example": [{"TXT": "v=spf1 include:loop.example"}],
    "mx.example": [
        {"TXT": "v=spf1 mx -all"},
        *({"MX": [n, f"mx{n}.mx.example"]} for n in range(11)),
    ],
    "risky.example": [
        {
            "TXT": "v=spf1 ptr exists:%{p}.rbl.example ip4:0.0.0.0/0 a:v4.example mx:v4.example "
            "exists:nx.example -all mx redirect=other.example foo=bar"
        }
    ],
    "v4.example": [{"A": "192.0.2.4"}],
    "pass.example": [{"TXT": "v=spf1 +all"}],
    "noall.example": [{"TXT": "v=spf1 ip4:192.0.2.1"}],
    "nets.example": [
        {
            "TXT": "v=spf1 ip4:192.0.2.0/24 ip4:192.0.2.0/24 ip4:192.0.2.7 ip4:198.51.100.9/24 "
            "mx mx -all"
        },
        {"MX": [10, "mail.nets.example"]},
    ],
    "long.example": [
        {
            "TXT": [
                "v=spf1 " + " ".join(f"ip4:192.0.2.{n}" for n in range(1, 16)) + " ",
                " ".join(f"ip4:198.51.100.{n}" for n in range(1, 15)) + " ip4:203.0",
                ".113.1 -all",
            ]
        },
        {"TXT": "verification=" + "0" * 200},
    ],
    "deep.example": [{"TXT": "v=spf1 include:d1.deep.example -all"}],
    **{
        f"d{n}.deep.example": [{"TXT": f"v=spf1 include:d{n + 1}.deep.example"}]
        for n in range(CHAIN)
    },
    f"d{CHAIN}.deep.example": [{"TXT": "v=spf1 ip4:192.0.2.1"}],
    "new.example": [{"TXT": "v=spf1 -all"}, {"TXT": "verification=0123456789"}],
    "pyspf.example": [{"TXT": "v=spf1 ip4:192.0.2.0/24 foo=a foo=b -all"}],
}

# What each domain must show (among other findings), and the whole run's exit status.
EXPECTED: dict[str, set[Code]] = {
    "clean.example": set(),
    "warn.example": {Code.PTR, Code.NEUTRAL_ALL},
    "syntax.example": {
        Code.BAD_CIDR,
        Code.UNKNOWN_MECHANISM,
        Code.BAD_MECHANISM,
        Code.BAD_DOMAIN_SPEC,
        Code.BAD_MACRO,
        Code.BAD_NETWORK,
        Code.BAD_MODIFIER,
        Code.DUPLICATE_MODIFIER,
        Code.BAD_CHARACTER,
    },
    "multi.example": {Code.MULTIPLE_RECORDS},
    "none.example": {Code.NO_RECORD},
    "timeout.example": {Code.DNS_FAILURE},
    "includes.example": {
        Code.INCLUDE_WITHOUT_RECORD,
        Code.INCLUDE_LOOP,
        Code.REDIRECT_WITHOUT_RECORD,
    },
    "mx.example": {Code.TOO_MANY_MX},
    "risky.example": {
        Code.PTR,
        Code.PTR_MACRO,
        Code.MACRO_NOT_FOLLOWED,
        Code.PERMITS_EVERYONE,
        Code.VOID_LOOKUPS,
        Code.VOID_TERM,
        Code.REDIRECT_IGNORED,
        Code.UNKNOWN_MODIFIER,
        Code.AFTER_ALL,
    },
    "pass.example": {Code.PASS_ALL},
    "noall.example": {Code.NO_ALL},
    "nets.example": {
        Code.DUPLICATE_NETWORK,
        Code.OVERLAPPING_NETWORK,
        Code.HOST_BITS_SET,
        Code.DUPLICATE_TERM,
    },
    "long.example": {Code.RECORD_TOO_LONG, Code.STRING_BOUNDARY_IN_TERM},
    "deep.example": {Code.TOO_MANY_LOOKUPS, Code.WALK_INCOMPLETE},
    "pyspf.example": {Code.PYSPF_PERMERROR},
    "localhost": {Code.INVALID_DOMAIN},
}
# Only --record can show these: a published record has no such form.
RECORD_ONLY = {Code.NEEDS_SPLITTING, Code.STRING_TOO_LONG, Code.BAD_QUOTING, Code.BAD_VERSION}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A configuration whose [dns] is a DNS server on loopback serving ZONE."""
    from tests.support.fixtures import running_dns_server

    path = tmp_path_factory.mktemp("lint") / "spfpolicy.toml"
    with running_dns_server(ZONE) as port:
        path.write_text(f'[dns]\nnameservers = ["127.0.0.1"]\nport = {port}\nquery_timeout = 1.0\n')
        yield path


def spfpolicy_lint(config: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spfpolicy", "lint", "--config", str(config), *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.daemon
def test_every_finding_against_a_real_dns_server(config: Path) -> None:
    done = spfpolicy_lint(config, "--json", *EXPECTED)
    assert done.returncode == 2, done.stderr
    reports = {report["domain"]: report for report in json.loads(done.stdout)}
    assert list(reports) == list(EXPECTED)
    for domain, codes in EXPECTED.items():
        found = {Code(finding["code"]) for finding in reports[domain]["findings"]}
        assert codes <= found, (domain, found)
    assert reports["clean.example"]["findings"] == []
    assert reports["clean.example"]["status"] == "ok"
    assert reports["clean.example"]["counts"]["dns_terms"] == 1
    assert reports["deep.example"]["counts"]["complete"] is False
    covered = set().union(*EXPECTED.values()) | RECORD_ONLY
    assert covered == set(Code)


@pytest.mark.daemon
@pytest.mark.parametrize(
    ("domains", "status"),
    [(["clean.example"], 0), (["clean.example", "warn.example"], 1), (["none.example"], 2)],
    ids=["clean", "warnings", "errors"],
)
def test_exit_status_for_a_ci_job(config: Path, domains: list[str], status: int) -> None:
    done = spfpolicy_lint(config, *domains)
    assert done.returncode == status, done.stdout + done.stderr
    assert done.stdout.startswith(f"{domains[0]}: ")


@pytest.mark.daemon
def test_record_not_yet_published_has_its_includes_looked_up(config: Path) -> None:
    record = "v=spf1 include:_spf.provider.example include:nothing.example -all"
    done = spfpolicy_lint(config, "--record", record, "new.example")
    assert done.returncode == 2, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"new.example (given with --record): {record}"
    assert lines[1] == (
        "  new.example:38: error: include:nothing.example: nothing.example has no SPF record: "
        "the name does not exist (NXDOMAIN)"
    )
    assert lines[-2].startswith("  worst case: 2 of 10 DNS-querying terms")
    assert lines[-2].endswith(f"2 records, {len('new.example') + len(record) + 23} octets")


@pytest.mark.daemon
@pytest.mark.parametrize(
    ("record", "code"),
    [
        (
            "v=spf1 " + " ".join(f"ip4:192.0.2.{n}" for n in range(1, 25)) + " -all",
            Code.NEEDS_SPLITTING,
        ),
        ('"v=spf1 ' + "a" * 260 + '"', Code.STRING_TOO_LONG),
        ('"v=spf1 -all', Code.BAD_QUOTING),
        ("spf1 -all", Code.BAD_VERSION),
    ],
    ids=lambda value: value.value if isinstance(value, Code) else None,
)
def test_what_only_a_record_not_yet_published_can_show(
    config: Path, record: str, code: Code
) -> None:
    done = spfpolicy_lint(config, "--json", "--record", record, "new.example")
    (report,) = json.loads(done.stdout)
    assert code in {Code(finding["code"]) for finding in report["findings"]}
    assert report["source"] == "argument"
    assert done.returncode == (1 if code is Code.NEEDS_SPLITTING else 2)


def arguments(
    *domains: str, record: str | None = None, config: str | None = None
) -> argparse.Namespace:
    return argparse.Namespace(domains=list(domains), record=record, json=False, config=config)


def resolver_of(zone: Mapping[str, list[str]]) -> Any:
    def build(config: Config) -> Resolver:
        return FakeResolver(zone)

    return build


def test_record_takes_exactly_one_domain() -> None:
    err = io.StringIO()
    status = run(
        arguments("a.example", "b.example", record="v=spf1 -all"), resolver_of({}), err=err
    )
    assert status == 2
    assert "--record takes exactly one DOMAIN" in err.getvalue()


def test_a_bad_config_exits_2_not_1_which_means_warnings(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[dns]\nport = 0\n")
    err = io.StringIO()
    assert run(arguments("a.example", config=str(path)), resolver_of({}), err=err) == 2
    assert f"spfpolicy: {path}: dns.port:" in err.getvalue()


def test_the_resolver_is_built_from_the_configuration(tmp_path: Path) -> None:
    path = tmp_path / "spfpolicy.toml"
    path.write_text('[dns]\nnameservers = ["192.0.2.53"]\n[spf]\ntime_budget = 7.0\n')
    seen: list[Config] = []

    def build(config: Config) -> Resolver:
        seen.append(config)
        return FakeResolver({"a.example": ["TXT v=spf1 -all"]})

    out = io.StringIO()
    assert run(arguments("a.example", config=str(path)), build, out=out) == 0
    assert [config.dns.nameservers for config in seen] == [("192.0.2.53",)]
    assert out.getvalue().startswith("a.example: v=spf1 -all\n")
