"""Config: TOML -> frozen dataclasses, with errors that name the file, the key and the problem."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import pytest

from spfpolicy.config.settings import (
    Config,
    ConfigError,
    HeaderType,
    config_keys,
    load_config,
    parse_config,
)
from spfpolicy.model import ListenAddress, ListenKind, SpfResult, Verdict

FULL = """
[server]
listen = ["inet:127.0.0.1:10035", "inet:[::1]:10035", "unix:/run/spfpolicy/policy.sock"]
max_connections = 64
idle_timeout = 300
unix_mode = "0660"
[dns]
nameservers = ["192.0.2.53", "2001:db8::53"]
port = 5353
query_timeout = 2.5
[spf]
time_budget = 15.0
check_helo = false
[actions.helo]
fail = "warn"
[actions.mailfrom]
softfail = "defer"
permerror = "reject"
[headers]
type = "authentication-results"
authserv_id = "mx.receiver.example"
[skip]
networks = ["192.0.2.0/24", "2001:db8::/32"]
authenticated = false
protocol_states = ["RCPT", "END-OF-MESSAGE"]
[log]
level = "debug"
"""


def test_empty_file_gives_the_documented_defaults() -> None:
    config = parse_config("")
    assert config == Config()
    assert config.server.listen == (ListenAddress(ListenKind.INET, "127.0.0.1", 10035),)
    assert config.server.max_connections == 4096
    assert config.server.idle_timeout == 330
    assert config.dns.nameservers == ()
    assert config.dns.port == 53
    assert config.dns.query_timeout == 5.0
    assert config.spf.time_budget == 20.0
    assert config.spf.check_helo is True
    assert config.headers.type is HeaderType.RECEIVED_SPF
    assert config.skip.authenticated is True
    assert config.skip.protocol_states == ("RCPT",)
    assert ipaddress.ip_address("127.0.0.1") in config.skip.networks[0]


@pytest.mark.parametrize("table", ["helo", "mailfrom"])
@pytest.mark.parametrize(
    ("result", "verdict"),
    [
        (SpfResult.PASS, Verdict.ACCEPT),
        (SpfResult.FAIL, Verdict.REJECT),
        (SpfResult.SOFTFAIL, Verdict.ACCEPT),
        (SpfResult.NEUTRAL, Verdict.ACCEPT),
        (SpfResult.NONE, Verdict.ACCEPT),
        (SpfResult.TEMPERROR, Verdict.DEFER),
        (SpfResult.PERMERROR, Verdict.ACCEPT),
    ],
)
def test_default_action_tables(table: str, result: SpfResult, verdict: Verdict) -> None:
    assert getattr(Config().actions, table).verdict(result) is verdict


def test_every_key_of_a_full_file_is_read() -> None:
    config = parse_config(FULL)
    assert [str(a) for a in config.server.listen] == [
        "inet:127.0.0.1:10035",
        "inet:[::1]:10035",
        "unix:/run/spfpolicy/policy.sock",
    ]
    assert config.server.unix_mode_bits == 0o660
    assert config.dns.nameservers == ("192.0.2.53", "2001:db8::53")
    assert (config.dns.port, config.dns.query_timeout) == (5353, 2.5)
    assert (config.spf.time_budget, config.spf.check_helo) == (15.0, False)
    assert config.actions.helo.fail is Verdict.WARN
    assert config.actions.helo.temperror is Verdict.DEFER  # untouched keys keep defaults
    assert config.actions.mailfrom.verdict(SpfResult.SOFTFAIL) is Verdict.DEFER
    assert config.actions.mailfrom.verdict(SpfResult.PERMERROR) is Verdict.REJECT
    assert config.headers.authserv_id == "mx.receiver.example"
    assert config.skip.networks[1] == ipaddress.ip_network("2001:db8::/32")
    assert config.skip.protocol_states == ("RCPT", "END-OF-MESSAGE")
    assert config.log.level == "debug"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("", 0.0, id="off-by-default"),
        pytest.param("[dns]\nserve_stale = 86400\n", 86400.0, id="a-day"),
        pytest.param("[dns]\nserve_stale = 604800\n", 604800.0, id="the-7-day-maximum"),
        pytest.param("[dns]\nserve_stale = 0\ncache_size = 0\n", 0.0, id="off-without-cache"),
    ],
)
def test_serve_stale_is_seconds_and_off_by_default(text: str, seconds: float) -> None:
    assert parse_config(text).dns.serve_stale == seconds


def test_pass_is_a_key_despite_being_a_python_keyword() -> None:
    config = parse_config('[actions.mailfrom]\npass = "warn"\n')
    assert config.actions.mailfrom.verdict(SpfResult.PASS) is Verdict.WARN


@pytest.mark.parametrize(
    ("text", "where"),
    [
        pytest.param('[actions.helo]\nfail = "hold"\n', "helo", id="helo"),
        pytest.param('[actions.mailfrom]\nfail = "hold"\n', "mailfrom", id="mailfrom"),
        pytest.param(
            '[[recipient]]\nmatch = "@receiver.example"\n[recipient.actions.mailfrom]\n'
            'fail = "hold"\n',
            "recipient",
            id="recipient-rule",
        ),
    ],
)
def test_hold_is_a_verdict_in_every_table(text: str, where: str) -> None:
    config = parse_config(text)
    actions = config.recipient[0].actions if where == "recipient" else config.actions
    table = actions.helo if where == "helo" else actions.mailfrom
    assert table.verdict(SpfResult.FAIL) is Verdict.HOLD
    if where == "recipient":  # a rule holds; the global table still rejects
        assert config.actions.mailfrom.fail is Verdict.REJECT


def test_every_result_has_a_restriction_class_key() -> None:
    text = "[actions]\n" + "".join(f'{r.value}_restriction = "c_{r.value}"\n' for r in SpfResult)
    actions = parse_config(text).actions
    assert {result: actions.restriction(result) for result in SpfResult} == {
        result: f"c_{result.value}" for result in SpfResult
    }
    assert all(Config().actions.restriction(result) == "" for result in SpfResult)


def test_a_bad_verdict_names_every_verdict() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config('[actions.mailfrom]\nfail = "quarantine"\n', "f.toml")
    assert str(raised.value) == (
        "f.toml: actions.mailfrom.fail: expected one of "
        "['accept', 'reject', 'defer', 'warn', 'hold'], got 'quarantine'"
    )


def test_config_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().spf.time_budget = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("[bogus]\n", "top level: unknown key 'bogus'", id="unknown-section"),
        pytest.param("[dns]\nnameserver = []\n", "[dns]: unknown key 'nameserver'", id="typo-key"),
        pytest.param('[dns]\nport = "53"\n', "dns.port: expected an integer", id="port-string"),
        pytest.param(
            "[dns]\nport = 70000\n", "dns.port: expected an integer from 1", id="port-range"
        ),
        pytest.param("[dns]\nport = 5.5\n", "dns.port: expected an integer", id="port-float"),
        pytest.param('[dns]\nnameservers = ["dns.example"]\n', "dns.nameservers:", id="ns-name"),
        pytest.param(
            "[dns]\nquery_timeout = 0\n", "dns.query_timeout: expected a number", id="timeout-0"
        ),
        pytest.param(
            "[spf]\ntime_budget = 120\n", "spf.time_budget: expected a number", id="budget"
        ),
        pytest.param(
            '[spf]\ncheck_helo = "yes"\n', "spf.check_helo: expected true or false", id="bool"
        ),
        pytest.param(
            '[actions.helo]\nfail = "drop"\n', "actions.helo.fail: expected one of", id="verdict"
        ),
        pytest.param(
            '[actions.helo]\nfial = "reject"\n',
            "[actions.helo]: unknown key 'fial'",
            id="result-typo",
        ),
        pytest.param(
            '[actions]\nhelo = "reject"\n', "[actions.helo] must be a table", id="not-table"
        ),
        pytest.param(
            '[headers]\ntype = "x-spf"\n', "headers.type: expected one of", id="header-type"
        ),
        pytest.param(
            '[server]\nlisten = "inet:127.0.0.1:1"\n',
            "server.listen: expected a list",
            id="listen-str",
        ),
        pytest.param(
            '[server]\nlisten = ["tcp:127.0.0.1:1"]\n', "server.listen:", id="listen-kind"
        ),
        pytest.param('[server]\nlisten = ["inet:::1:10035"]\n', "brackets", id="listen-v6"),
        pytest.param("[server]\nmax_connections = 0\n", "server.max_connections", id="max-conn"),
        pytest.param(
            '[server]\nunix_mode = "rw"\n', "server.unix_mode: expected an octal", id="mode"
        ),
        pytest.param('[skip]\nnetworks = ["192.0.2.1/24"]\n', "host bits set", id="net-host-bits"),
        pytest.param('[skip]\nnetworks = ["not-a-net"]\n', "skip.networks:", id="net-garbage"),
        pytest.param('[skip]\nprotocol_states = ["RCTP"]\n', "skip.protocol_states", id="state"),
        pytest.param(
            '[skip]\nnetworks = ["192.0.2.0/24", "192.0.2.0/24"]\n', "duplicates", id="dup"
        ),
        pytest.param("[log]\nlevel = 7\n", "log.level: expected one of", id="level"),
        pytest.param("[dns\n", "not valid TOML", id="toml-syntax"),
        pytest.param(
            "[dns]\nserve_stale = -1\n",
            "dns.serve_stale: expected a number from 0 to 604800, got -1",
            id="stale-negative",
        ),
        pytest.param(
            "[dns]\nserve_stale = 604801\n",
            "dns.serve_stale: expected a number from 0 to 604800, got 604801",
            id="stale-over-a-week",
        ),
        pytest.param(
            '[dns]\nserve_stale = "1d"\n', "dns.serve_stale: expected a number", id="stale-unit"
        ),
        pytest.param(
            "[dns]\nserve_stale = true\n", "dns.serve_stale: expected a number", id="stale-bool"
        ),
        pytest.param(
            "[dns]\nserve_stale = 3600\ncache_size = 0\n",
            "dns.serve_stale: 3600 needs the DNS cache, which dns.cache_size = 0 turns off",
            id="stale-without-cache",
        ),
    ],
)
def test_bad_values_name_the_file_and_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(text, "/etc/spfpolicy/spfpolicy.toml")
    assert str(raised.value).startswith("/etc/spfpolicy/spfpolicy.toml: ")
    assert message in str(raised.value)


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "spfpolicy.toml"
    path.write_text("[spf]\ntime_budget = 12.5\n")
    assert load_config(path).spf.time_budget == 12.5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(None, "cannot read the file", id="missing"),
        pytest.param(b"\xff\xfe[spf]\n", "not UTF-8", id="binary"),
    ],
)
def test_unreadable_files(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "spfpolicy.toml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as raised:
        load_config(path)
    assert str(path) in str(raised.value)


def test_config_keys_lists_every_leaf_with_its_default() -> None:
    keys = dict(config_keys())
    assert keys["dns.port"] == 53
    assert keys["actions.mailfrom.pass"] is Verdict.ACCEPT
    assert keys["actions.helo.temperror"] is Verdict.DEFER
    assert "server" not in keys
    assert keys["actions.softfail_restriction"] == ""
    assert keys["recipient[].actions.permerror_restriction"] == ""
    assert len(keys) == 81


def test_readme_documents_every_key() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for key, _default in config_keys():
        section, _, _name = key.rpartition(".")
        tables = section.endswith((".helo", ".mailfrom")) or section in (
            "actions.helo",
            "actions.mailfrom",
        )
        if tables:
            documented = f"`{section}.RESULT`"
        elif _name.endswith("_restriction"):  # one row for the classes of all seven results
            documented = f"`{section}.RESULT_restriction`"
        else:
            documented = f"`{key}`"
        assert documented in readme, f"README.md's config reference lacks {key}"
