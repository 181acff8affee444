"""migrate-policyd-spf: policyd-spf.conf (as spf-engine 3.0.4 reads it) -> spfpolicy TOML."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spfpolicy import cli
from spfpolicy.config.settings import (
    ActionTable,
    Config,
    HeaderType,
    LogLevel,
    parse_config,
)
from spfpolicy.migrate.policydspf import OPTIONS, parse
from spfpolicy.migrate.translate import migrate
from spfpolicy.model import SpfResult, Verdict

DATA = Path(__file__).parents[1] / "data" / "policyd-spf"
ACCEPT, REJECT, DEFER = Verdict.ACCEPT, Verdict.REJECT, Verdict.DEFER


def migrated(text: str) -> Config:
    """The Config spfpolicy reads from the migration of a policyd-spf.conf text."""
    return parse_config(migrate(text), "migrated")


def comments(output: str) -> str:
    """Every comment of the output, joined into one text (wrapped lines rejoined)."""
    lines = [line[1:].strip() for line in output.splitlines() if line.startswith("#")]
    return " ".join(lines)


def table(**verdicts: Verdict) -> ActionTable:
    """An ActionTable: spfpolicy's defaults, but policyd-spf's temperror = accept."""
    values: dict[str, Any] = {"temperror": ACCEPT} | verdicts
    return ActionTable(
        **{("pass_" if key == "pass" else key): value for key, value in values.items()}
    )


def test_the_shipped_default_config() -> None:
    """Debian's policyd-spf.conf: spfpolicy's defaults, but temperror is accepted, not deferred."""
    output = migrate((DATA / "default.conf").read_text(), "/etc/postfix-policyd-spf-python/x")
    config = parse_config(output, "migrated")
    assert config.actions.helo == table()
    assert config.actions.mailfrom == table()
    assert config == Config(actions=config.actions)
    keys = [line for line in output.splitlines() if line and not line.startswith("#")]
    assert keys == [
        "[actions.helo]",
        'temperror = "accept"',
        "[actions.mailfrom]",
        'temperror = "accept"',
    ]


def test_hold_and_the_other_classes_have_no_policyd_spf_counterpart() -> None:
    """spf-engine 3.0.4 answers a reject, a defer, its header or a pass class, never HOLD, and
    its only restriction options are for pass: nothing migrates to them; the output says so."""
    output = migrate((DATA / "everything.conf").read_text())
    config = parse_config(output, "migrated")
    tables = (config.actions.helo, config.actions.mailfrom)
    assert Verdict.HOLD not in {getattr(table, f.name) for table in tables for f in fields(table)}
    assert [config.actions.restriction(r) for r in SpfResult if r is not SpfResult.PASS] == [""] * 6
    said = comments(output)
    assert '"hold" in [actions.helo] and [actions.mailfrom]' in said
    assert "softfail_restriction" in said


def test_a_config_that_sets_every_option() -> None:
    config = migrated((DATA / "everything.conf").read_text())
    assert config.log.level is LogLevel.DEBUG
    assert config.actions.helo == ActionTable(
        softfail=REJECT, neutral=REJECT, permerror=REJECT, temperror=DEFER
    )
    assert config.actions.mailfrom == ActionTable(softfail=REJECT, permerror=REJECT)
    assert config.actions.pass_restriction == "spf_pass"
    assert config.policy.reject_not_pass_domains == ("bank.example", "payments.example")
    assert config.policy.reject_reason == "Message rejected by SPF: {explanation}"
    assert config.policy.defer_reason == "Message deferred by SPF: {explanation}"
    assert config.policy.dry_run is False
    assert config.policy.reject_only_no_mail is False
    assert ipaddress.ip_network("192.0.2.0/24") in config.skip.networks
    assert len(config.skip.networks) == 4
    assert config.allow.networks == (
        ipaddress.ip_network("198.51.100.0/24"),
        ipaddress.ip_network("2001:db8:1::/48"),
    )
    assert config.allow.helo_names == ("relay.partner.example", "mx2.receiver.example")
    assert config.allow.forwarder_domains == ("forwarder.example", "lists.example")
    assert config.allow.ptr_domains == ("outbound.forwarder.example",)
    assert config.headers.type is HeaderType.AUTHENTICATION_RESULTS
    assert config.headers.authserv_id == "mx.receiver.example"
    assert config.spf.time_budget == 10.0
    assert config.spf.void_lookup_limit == 3
    assert config.spf.check_helo is True


@pytest.mark.parametrize("name", ["default.conf", "everything.conf"])
def test_every_line_of_the_input_is_in_a_comment(name: str) -> None:
    text = (DATA / name).read_text()
    said = comments(migrate(text))
    for line in parse(text).lines:
        assert f"line {line.number}: {line.text}" in said


def test_everything_conf_sets_every_option_spf_engine_reads() -> None:
    assert set(parse((DATA / "everything.conf").read_text()).values) == set(OPTIONS)


def test_every_option_gets_a_note_of_its_own() -> None:
    """Each option's note says something, not just "overridden" or nothing at all."""
    text = "".join(f"{option} = 1\n" for option in OPTIONS)
    output = migrate(text)
    for number, option in enumerate(OPTIONS, 1):
        note = output.split(f"# line {number}: {option} = 1\n", 1)[1].split("\n", 1)[0]
        assert re.fullmatch(r"#   \S.*", note), option


# HELO_reject (with PermError_reject = False, TempError_Defer = False): check_helo, [actions.helo]
HELO_REJECT = [
    pytest.param("Fail", True, table(), id="Fail"),
    pytest.param("Softfail", True, table(softfail=REJECT), id="Softfail"),
    pytest.param("SPF_Not_Pass", True, table(softfail=REJECT, neutral=REJECT), id="SPF_Not_Pass"),
    pytest.param("False", True, table(fail=ACCEPT), id="False"),
    pytest.param("Null", False, table(), id="Null-checks-the-null-sender-as-mailfrom"),
    pytest.param("No_Check", False, table(), id="No_Check"),
    pytest.param("fail", True, table(fail=ACCEPT), id="lower-case-is-unknown-rejects-nothing"),
]


@pytest.mark.parametrize(("value", "check_helo", "expected"), HELO_REJECT)
def test_helo_reject(value: str, check_helo: bool, expected: ActionTable) -> None:
    config = migrated(f"HELO_reject = {value}\n")
    assert config.spf.check_helo is check_helo
    if check_helo:
        assert config.actions.helo == expected
    assert config.actions.mailfrom == table()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("Fail", table(), id="Fail"),
        pytest.param("Softfail", table(softfail=REJECT), id="Softfail"),
        pytest.param("SPF_Not_Pass", table(softfail=REJECT, neutral=REJECT), id="SPF_Not_Pass"),
        pytest.param("False", table(fail=ACCEPT), id="False"),
        pytest.param("No_Check", table(fail=ACCEPT), id="No_Check-nearest-is-accept-all"),
        pytest.param("Null", table(fail=ACCEPT), id="Null-is-no-Mail-From-value"),
    ],
)
def test_mail_from_reject(value: str, expected: ActionTable) -> None:
    config = migrated(f"Mail_From_reject = {value}\n")
    assert config.actions.mailfrom == expected
    assert config.actions.helo == table()
    assert config.spf.check_helo is True


@pytest.mark.parametrize(
    ("policy", "flags", "expected"),
    [
        pytest.param("Fail", "TempError_Defer = True", ActionTable(), id="temperror-defer"),
        pytest.param("Fail", "PermError_reject = True", table(permerror=REJECT), id="permerror"),
        pytest.param("False", "PermError_reject = True", table(fail=ACCEPT), id="False-wins"),
        pytest.param("False", "TempError_Defer = True", table(fail=ACCEPT), id="False-wins-temp"),
        pytest.param("fail", "TempError_Defer = True", ActionTable(fail=ACCEPT), id="unknown"),
    ],
)
def test_error_flags_apply_to_both_identities(policy: str, flags: str, expected: Any) -> None:
    config = migrated(f"HELO_reject = {policy}\nMail_From_reject = {policy}\n{flags}\n")
    assert config.actions.helo == expected
    assert config.actions.mailfrom == expected


# spf-engine: PermError_reject, TempError_Defer and No_Mail are on only for the exact text "True".
@pytest.mark.parametrize("value", ["True", "true", "TRUE", "yes", "1", "on", ""])
def test_true_is_only_the_exact_text_capital_true(value: str) -> None:
    on = value == "True"
    config = migrated(f"PermError_reject = {value}\nTempError_Defer = {value}\nNo_Mail = {value}\n")
    assert config.actions.mailfrom.permerror is (REJECT if on else ACCEPT)
    assert config.actions.mailfrom.temperror is (DEFER if on else ACCEPT)
    assert config.policy.reject_only_no_mail is on


@pytest.mark.parametrize(
    ("value", "dry_run"),
    [("0", True), ("1", False), ("2", False), ("-1", False), ("+0", True), ("00", True)],
)
def test_test_only_zero_is_dry_run(value: str, dry_run: bool) -> None:
    assert migrated(f"TestOnly = {value}\n").policy.dry_run is dry_run


def test_default_seed_only_has_no_effect() -> None:
    assert migrated("defaultSeedOnly = 0\n").policy.dry_run is False


@pytest.mark.parametrize(
    ("value", "level"),
    [
        ("-1", LogLevel.ERROR),
        ("0", LogLevel.WARNING),
        ("1", LogLevel.INFO),
        ("2", LogLevel.INFO),
        ("3", LogLevel.DEBUG),
        ("5", LogLevel.DEBUG),
    ],
)
def test_debug_level(value: str, level: LogLevel) -> None:
    assert migrated(f"debugLevel = {value}\n").log.level is level


# Mock is bool(text): any non-empty text, "False" and "0" too, turns it on.
@pytest.mark.parametrize(
    ("value", "on"), [("True", True), ("False", True), ("0", True), ("", False)]
)
def test_mock_is_on_for_any_non_empty_text(value: str, on: bool) -> None:
    output = migrate(f"Mock = {value}\n")
    assert ("NOTE: Mock = " in output) is on
    assert migrated(f"Mock = {value}\n") == migrated("")


def net(*texts: str) -> tuple[Any, ...]:
    return tuple(ipaddress.ip_network(text) for text in texts)


@pytest.mark.parametrize(
    ("value", "expected", "said"),
    [
        pytest.param("10.0.0.0/8,192.0.2.1", net("10.0.0.0/8", "192.0.2.1/32"), "", id="plain"),
        pytest.param("2001:db8::/32,::1", net("2001:db8::/32", "::1/128"), "", id="ipv6"),
        pytest.param("10.0.0.0/255.0.0.0", net("10.0.0.0/8"), "", id="netmask"),
        pytest.param("10.0.0.0/8,10.0.0.0/8", net("10.0.0.0/8"), "", id="repeat"),
        pytest.param("10.0.0.0/8,", net("10.0.0.0/8"), "", id="trailing-comma"),
        pytest.param(
            "10.0.0.0/8, 192.0.2.0/24,198.51.100.0/24",
            net("10.0.0.0/8"),
            "Dropped ' 192.0.2.0/24', '198.51.100.0/24'",
            id="a-space-ends-the-list",
        ),
        pytest.param(
            "192.0.2.1/24,10.0.0.0/8", (), "Dropped '192.0.2.1/24', '10.0.0.0/8'", id="host-bits"
        ),
        pytest.param("mx.example", (), "Dropped 'mx.example'", id="a-name"),
    ],
)
def test_whitelist_networks(value: str, expected: tuple[Any, ...], said: str) -> None:
    output = migrate(f"Whitelist = {value}\n")
    assert parse_config(output).allow.networks == expected
    assert said in comments(output)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("127.0.0.0/8,::ffff:127.0.0.0/104,::1", Config().skip.networks, id="default"),
        pytest.param("::1,127.0.0.0/8", net("::1/128", "127.0.0.0/8"), id="fewer"),
        pytest.param("", (), id="empty-checks-loopback-too"),
    ],
)
def test_skip_addresses(value: str, expected: tuple[Any, ...]) -> None:
    assert set(migrated(f"skip_addresses = {value}\n").skip.networks) == set(expected)


@pytest.mark.parametrize(
    ("option", "value", "expected", "said"),
    [
        pytest.param(
            "HELO_Whitelist", "a.example,b.example", ("a.example", "b.example"), "", id="helo"
        ),
        pytest.param(
            "HELO_Whitelist", "Relay.Example", (), "add 'relay.example' if you meant it", id="case"
        ),
        pytest.param(
            "Domain_Whitelist",
            "pobox.example, lists.example",
            ("pobox.example",),
            "add 'lists.example' if you meant it",
            id="space",
        ),
        pytest.param("Domain_Whitelist", "Pobox.Example.", ("pobox.example",), "", id="dns-case"),
        pytest.param(
            "Domain_Whitelist_PTR",
            "yahoo.example,",
            ("yahoo.example",),
            "skip SPF for every client with a PTR record",
            id="ptr-trailing-comma-matched-everything",
        ),
        pytest.param(
            "Reject_Not_Pass_Domains",
            "bad_name!.example,ok.example",
            ("ok.example",),
            "bad_name",
            id="not-a-domain",
        ),
    ],
)
def test_domain_lists(option: str, value: str, expected: tuple[str, ...], said: str) -> None:
    output = migrate(f"{option} = {value}\n")
    config = parse_config(output)
    lists = {
        "HELO_Whitelist": config.allow.helo_names,
        "Domain_Whitelist": config.allow.forwarder_domains,
        "Domain_Whitelist_PTR": config.allow.ptr_domains,
        "Reject_Not_Pass_Domains": config.policy.reject_not_pass_domains,
    }
    assert lists[option] == expected
    assert said in comments(output)


def test_reject_not_pass_domains_with_mail_from_false_says_it_rejects_nothing() -> None:
    output = migrate("Mail_From_reject = False\nReject_Not_Pass_Domains = bank.example\n")
    assert "the list rejects nothing in spfpolicy" in comments(output)


@pytest.mark.parametrize(
    ("lines", "expected", "said"),
    [
        pytest.param("Mail_From_pass_restriction = mf_pass", "mf_pass", "", id="mailfrom"),
        pytest.param("HELO_pass_restriction = h_pass", "h_pass", "whenever HELO passed", id="helo"),
        pytest.param(
            "HELO_pass_restriction = a\nMail_From_pass_restriction = a",
            "a",
            "the same class",
            id="same",
        ),
        pytest.param(
            "HELO_pass_restriction = h\nMail_From_pass_restriction = m",
            "m",
            "'h' is dropped",
            id="differ",
        ),
        pytest.param(
            "HELO_pass_restriction = spf_fin, passed_spf",
            "",
            "spf_pass = spf_fin, passed_spf",
            id="a-list-needs-a-class",
        ),
        pytest.param(
            "Mail_From_pass_restriction = mf\nTestOnly = 0", "", "never answers it", id="test-mode"
        ),
    ],
)
def test_pass_restriction(lines: str, expected: str, said: str) -> None:
    output = migrate(lines + "\n")
    assert parse_config(output).actions.pass_restriction == expected
    assert said in comments(output)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("SPF", HeaderType.RECEIVED_SPF),
        ("AR", HeaderType.AUTHENTICATION_RESULTS),
        ("None", HeaderType.NONE),
        ("ar", HeaderType.RECEIVED_SPF),  # spf-engine looks for "AR", case-sensitively
        ("SPF,AR", HeaderType.RECEIVED_SPF),  # policyd-spf fails every request: default kept
    ],
)
def test_header_type(value: str, expected: HeaderType) -> None:
    assert migrated(f"Header_Type = {value}\n").headers.type is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("HOSTNAME", ""), ("", ""), ("mx.receiver.example", "mx.receiver.example")],
)
def test_authserv_id(value: str, expected: str) -> None:
    assert migrated(f"Header_Type = AR\nAuthserv_Id = {value}\n").headers.authserv_id == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20", 20.0),
        ("5", 5.0),
        ("0", 99.0),
        ("150", 99.0),
        ("9" * 400, 99.0),
        ("-1", 20.0),
        ("many", 20.0),
    ],
)
def test_lookup_time(value: str, expected: float) -> None:
    assert migrated(f"Lookup_Time = {value}\n").spf.time_budget == expected


@pytest.mark.parametrize(("value", "expected"), [("2", 2), ("5", 5), ("0", 1), ("50", 20)])
def test_void_limit(value: str, expected: int) -> None:
    assert migrated(f"Void_Limit = {value}\n").spf.void_lookup_limit == expected


@pytest.mark.parametrize(
    ("value", "reject", "defer"),
    [
        pytest.param("Message {rejectdefer} due to: {spf}. Please see {url}", "", "", id="default"),
        pytest.param(
            "SPF {rejectdefer}: {spf}",
            "SPF rejected: {explanation}",
            "SPF deferred: {explanation}",
            id="custom",
        ),
        pytest.param("{spf} {url}", "{explanation}", "{explanation}", id="url-dropped"),
        pytest.param(
            "{{literal}} {spf}",
            "{{literal}} {explanation}",
            "{{literal}} {explanation}",
            id="braces",
        ),
        pytest.param("{sender} {spf}", "", "", id="unknown-placeholder"),
        pytest.param("{spf!r}", "", "", id="conversion"),
        pytest.param("oops {", "", "", id="bad-braces"),
        pytest.param("{url}", "", "", id="nothing-left"),
    ],
)
def test_reason_message(value: str, reject: str, defer: str) -> None:
    policy = migrated(f"Reason_Message = {value}\n").policy
    assert (policy.reject_reason, policy.defer_reason) == (reject, defer)


# How spf-engine reads the file, each a line of text -> (what it sets, what the comment says).
@pytest.mark.parametrize(
    ("text", "said"),
    [
        pytest.param("TestOnly = 0 # test first\n", "[policy] dry_run = true", id="comment"),
        pytest.param("Reason_Message = a=b {spf}\n", "more than one '='", id="two-equals"),
        pytest.param("HELO_pass_restriction\n", "no '='", id="no-equals"),
        pytest.param("helo_reject = False\n", "did you mean HELO_reject?", id="case"),
        pytest.param("Authserv-Id = mx.example\n", "did you mean Authserv_Id?", id="hyphen"),
        pytest.param("QueueID = False\n", "does not read it", id="documented-not-read"),
        pytest.param("TestOnly = yes\n", "refuses to start", id="not-an-integer"),
        pytest.param("TestOnly = 0\r\nTestOnly = 1\r\n", "overridden by line 2", id="last-wins"),
    ],
)
def test_syntax_as_spf_engine_reads_it(text: str, said: str) -> None:
    output = migrate(text)
    parse_config(output)
    assert said in comments(output)


def test_a_hash_starts_a_comment_even_inside_a_value() -> None:
    assert migrated("Authserv_Id = mx#1.example\n").headers.authserv_id == "mx"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("Prospective = 192.0.2.4\n", "NOTE: Prospective = 192.0.2.4"),
        ("Per_User = text,/etc/policyd-spf/users\n", "settings in /etc/policyd-spf/users"),
        ("Lookup_Time = soon\n", "NOTE: policyd-spf refuses to start"),
    ],
)
def test_what_cannot_be_migrated_is_said_at_the_top(text: str, said: str) -> None:
    output = migrate(text)
    assert said in comments(output.split("What became of each line", 1)[0])
    parse_config(output)


def test_control_characters_stay_in_valid_comments() -> None:
    output = migrate("Authserv_Id = a\x01b\x7f\nHELO_Whitelist = \x0bx.example\n")
    assert parse_config(output).headers.authserv_id == "a\x01b\x7f"


LINE = st.builds(
    "{} = {}".format,
    st.sampled_from([*OPTIONS, "QueueID", "bogus"]),
    st.text(st.characters(exclude_characters="\n\r"), max_size=30)
    | st.sampled_from(["True", "False", "0", "Fail", "No_Check", "AR", "10.0.0.0/8,::1"]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(LINE | st.text(max_size=20), max_size=12))
def test_any_file_gives_a_file_spfpolicy_accepts(lines: list[str]) -> None:
    parse_config(migrate("\n".join(lines)))


def test_cli_prints_the_toml(capsys: pytest.CaptureFixture[str]) -> None:
    path = DATA / "default.conf"
    assert cli.main(["migrate-policyd-spf", str(path)]) == 0
    output = capsys.readouterr().out
    assert output == migrate(path.read_text(), str(path))


def test_cli_names_an_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "policyd-spf.conf"
    assert cli.main(["migrate-policyd-spf", str(missing)]) == 1
    assert (
        capsys.readouterr().err
        == f"spfpolicy: {missing}: cannot read the file: No such file or directory\n"
    )
