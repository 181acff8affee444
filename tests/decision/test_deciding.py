"""The pure decision model: skips, identities, the action matrix, reply texts."""

from __future__ import annotations

import re

import pytest

from spfpolicy.config.settings import Config, parse_config
from spfpolicy.decision import actions, deciding, skips
from spfpolicy.decision.actions import Receiver
from spfpolicy.model import (
    Decision,
    Disposition,
    Identity,
    PolicyRequest,
    SpfOutcome,
    SpfResult,
    Verdict,
)
from tests.support.decisions import decide as decide_request
from tests.support.decisions import skip_reason

RECEIVER = Receiver(hostname="mx.receiver.example", authserv_id="mx.receiver.example")
REQUEST = PolicyRequest(
    request="smtpd_access_policy",
    protocol_state="RCPT",
    client_address="192.0.2.1",
    helo_name="mail.sender.example",
    sender="user@sender.example",
    recipient="rcpt@receiver.example",
    instance="1A2B.3C4D",
)


def mailfrom(result: SpfResult, **extra: str) -> SpfOutcome:
    return SpfOutcome(Identity.MAILFROM, result, "sender.example", "user@sender.example", **extra)


def helo(result: SpfResult, **extra: str) -> SpfOutcome:
    return SpfOutcome(
        Identity.HELO, result, "mail.sender.example", "postmaster@mail.sender.example", **extra
    )


@pytest.mark.parametrize(
    ("changes", "config_text", "reason"),
    [
        pytest.param({}, "", "", id="checked"),
        pytest.param({"request": "junk"}, "", "not_policy_request", id="other-request"),
        pytest.param({"protocol_state": "MAIL"}, "", "protocol_state", id="mail-state"),
        pytest.param({"protocol_state": "rcpt"}, "", "", id="state-case-insensitive"),
        pytest.param(
            {"protocol_state": "MAIL"},
            '[skip]\nprotocol_states=["MAIL"]',
            "",
            id="configured-state",
        ),
        pytest.param({"client_address": "127.0.0.1"}, "", "skip_network", id="loopback"),
        pytest.param({"client_address": "::1"}, "", "skip_network", id="loopback6"),
        pytest.param(
            {"client_address": "::ffff:127.0.0.1"}, "", "skip_network", id="mapped-loopback"
        ),
        pytest.param(
            {"client_address": "198.51.100.7"},
            '[skip]\nnetworks=["198.51.100.0/24"]',
            "skip_network",
            id="listed",
        ),
        pytest.param(
            {"client_address": "127.0.0.1"}, "[skip]\nnetworks=[]", "", id="no-skip-networks"
        ),
        pytest.param(
            {"client_address": "unknown"}, "", "invalid_client_address", id="unknown-client"
        ),
        pytest.param({"client_address": ""}, "", "invalid_client_address", id="empty-client"),
        pytest.param({"client_address": "300.1.1.1"}, "", "invalid_client_address", id="bad-ipv4"),
        pytest.param({"client_address": "fe80::1%eth0"}, "", "", id="scoped-ipv6"),
        pytest.param({"sasl_username": "alice"}, "", "authenticated", id="sasl"),
        pytest.param(
            {"sasl_username": "alice"}, "[skip]\nauthenticated=false", "", id="sasl-checked"
        ),
    ],
)
def test_skip_reason(changes: dict[str, str], config_text: str, reason: str) -> None:
    assert skip_reason(REQUEST.replace(**changes), parse_config(config_text)) == reason


@pytest.mark.parametrize(
    ("sender", "check_helo", "helo_checkable", "expected"),
    [
        pytest.param("u@s.example", True, True, [Identity.HELO, Identity.MAILFROM], id="both"),
        pytest.param("u@s.example", True, False, [Identity.MAILFROM], id="bare-helo"),
        pytest.param("u@s.example", False, True, [Identity.MAILFROM], id="helo-off"),
        pytest.param("", True, True, [Identity.HELO], id="null-sender-helo-decides"),
        pytest.param("", False, True, [Identity.MAILFROM], id="null-sender-postmaster-helo"),
        pytest.param("", True, False, [Identity.MAILFROM], id="null-sender-bare-helo"),
    ],
)
def test_identities_to_check(
    sender: str, check_helo: bool, helo_checkable: bool, expected: list[Identity]
) -> None:
    config = parse_config(f"[spf]\ncheck_helo = {str(check_helo).lower()}")
    request = REQUEST.replace(sender=sender)
    assert deciding.identities_to_check(request, config, helo_checkable) == expected


@pytest.mark.parametrize(
    ("outcomes", "config_text", "disposition", "action_start"),
    [
        pytest.param(
            [mailfrom(SpfResult.PASS)],
            "",
            Disposition.ACCEPT,
            "PREPEND Received-SPF: pass ",
            id="pass",
        ),
        pytest.param(
            [mailfrom(SpfResult.FAIL)],
            "",
            Disposition.REJECT,
            "550 5.7.23 SPF mailfrom check failed",
            id="fail",
        ),
        pytest.param(
            [mailfrom(SpfResult.SOFTFAIL)],
            "",
            Disposition.ACCEPT,
            "PREPEND Received-SPF: softfail ",
            id="softfail",
        ),
        pytest.param(
            [mailfrom(SpfResult.NEUTRAL)],
            "",
            Disposition.ACCEPT,
            "PREPEND Received-SPF: neutral ",
            id="neutral",
        ),
        pytest.param(
            [mailfrom(SpfResult.NONE)],
            "",
            Disposition.ACCEPT,
            "PREPEND Received-SPF: none ",
            id="none",
        ),
        pytest.param(
            [mailfrom(SpfResult.TEMPERROR, problem="DNS timeout")],
            "",
            Disposition.DEFER,
            "DEFER_IF_PERMIT 4.7.24 ",
            id="temperror",
        ),
        pytest.param(
            [mailfrom(SpfResult.PERMERROR, problem="bad")],
            "",
            Disposition.ACCEPT,
            "PREPEND Received-SPF: permerror ",
            id="permerror",
        ),
        pytest.param(
            [mailfrom(SpfResult.PERMERROR, problem="bad")],
            '[actions.mailfrom]\npermerror="reject"',
            Disposition.REJECT,
            "550 5.7.24 ",
            id="permerror-reject",
        ),
        pytest.param(
            [mailfrom(SpfResult.SOFTFAIL)],
            '[actions.mailfrom]\nsoftfail="defer"',
            Disposition.DEFER,
            "DEFER_IF_PERMIT 4.7.1 ",
            id="softfail-defer",
        ),
        pytest.param(
            [mailfrom(SpfResult.FAIL)],
            '[actions.mailfrom]\nfail="warn"',
            Disposition.WARN,
            "PREPEND Received-SPF: fail ",
            id="fail-warn",
        ),
        pytest.param(
            [mailfrom(SpfResult.FAIL)],
            '[actions.mailfrom]\nfail="accept"',
            Disposition.ACCEPT,
            "PREPEND Received-SPF: fail ",
            id="fail-accept",
        ),
        pytest.param(
            [mailfrom(SpfResult.PASS)],
            '[headers]\ntype="none"',
            Disposition.ACCEPT,
            "DUNNO",
            id="no-header",
        ),
        pytest.param(
            [mailfrom(SpfResult.PASS)],
            '[headers]\ntype="authentication-results"',
            Disposition.ACCEPT,
            "PREPEND Authentication-Results: mx.receiver.example; spf=pass",
            id="a-r",
        ),
        pytest.param(
            [helo(SpfResult.FAIL)],
            "",
            Disposition.REJECT,
            "550 5.7.23 SPF helo check failed",
            id="helo-fail",
        ),
        pytest.param(
            [helo(SpfResult.PASS), mailfrom(SpfResult.FAIL)],
            "",
            Disposition.REJECT,
            "550 5.7.23 SPF mailfrom",
            id="helo-pass-mailfrom-fail",
        ),
        pytest.param(
            [helo(SpfResult.FAIL), mailfrom(SpfResult.PASS)],
            '[actions.helo]\nfail="accept"',
            Disposition.ACCEPT,
            "PREPEND Received-SPF: pass ",
            id="header-is-mailfrom",
        ),
        pytest.param(
            [helo(SpfResult.PASS)],
            "",
            Disposition.ACCEPT,
            "PREPEND Received-SPF: pass ",
            id="null-sender-helo",
        ),
        pytest.param([], "", Disposition.ACCEPT, "DUNNO", id="nothing-checked"),
        pytest.param(
            [mailfrom(SpfResult.FAIL)],
            '[actions.mailfrom]\nfail="hold"',
            Disposition.HOLD,
            "HOLD SPF mailfrom check failed: host 192.0.2.1 is not allowed",
            id="fail-hold",
        ),
        pytest.param(
            [helo(SpfResult.SOFTFAIL)],
            '[actions.helo]\nsoftfail="hold"',
            Disposition.HOLD,
            "HOLD SPF helo check of mail.sender.example for host 192.0.2.1: result softfail",
            id="helo-softfail-hold",
        ),
        pytest.param(
            [mailfrom(SpfResult.FAIL)],
            '[actions.mailfrom]\nfail="hold"\n[policy]\ndry_run=true',
            Disposition.WARN,
            "PREPEND Received-SPF: fail ",
            id="hold-dry-run",
        ),
    ],
)
def test_decide(
    outcomes: list[SpfOutcome], config_text: str, disposition: Disposition, action_start: str
) -> None:
    decision = decide_request(REQUEST, outcomes, parse_config(config_text), RECEIVER)
    assert decision.disposition is disposition
    assert decision.action.startswith(action_start), decision.action
    assert decision.outcomes == tuple(outcomes)
    assert "\n" not in decision.action


@pytest.mark.parametrize(
    ("helo_verdict", "mailfrom_verdict", "disposition", "identity"),
    [
        pytest.param(
            "hold", "reject", Disposition.REJECT, "mailfrom", id="helo-hold-mailfrom-reject"
        ),
        pytest.param("hold", "defer", Disposition.DEFER, "mailfrom", id="helo-hold-mailfrom-defer"),
        pytest.param("reject", "hold", Disposition.REJECT, "helo", id="helo-reject-mailfrom-hold"),
        pytest.param("defer", "hold", Disposition.DEFER, "helo", id="helo-defer-mailfrom-hold"),
        pytest.param("hold", "accept", Disposition.HOLD, "helo", id="helo-hold-mailfrom-accept"),
        pytest.param(
            "accept", "hold", Disposition.HOLD, "mailfrom", id="helo-accept-mailfrom-hold"
        ),
        pytest.param("hold", "hold", Disposition.HOLD, "helo", id="both-hold-first-reason"),
        pytest.param("warn", "hold", Disposition.HOLD, "mailfrom", id="hold-beats-warn"),
        pytest.param("hold", "warn", Disposition.HOLD, "helo", id="hold-beats-later-warn"),
    ],
)
def test_precedence_reject_defer_hold_warn_accept(
    helo_verdict: str, mailfrom_verdict: str, disposition: Disposition, identity: str
) -> None:
    """A reject or defer wins over a hold whichever identity says it; between two holds the
    first gives the reason."""
    config = parse_config(
        f'[actions.helo]\nsoftfail = "{helo_verdict}"\n'
        f'[actions.mailfrom]\nsoftfail = "{mailfrom_verdict}"\n'
    )
    outcomes = [helo(SpfResult.SOFTFAIL), mailfrom(SpfResult.SOFTFAIL)]
    decision = decide_request(REQUEST, outcomes, config, RECEIVER)
    assert decision.disposition is disposition
    assert f"SPF {identity} check of " in decision.action, decision.action
    assert decision.header == ""
    assert decision.would_have is None


@pytest.mark.parametrize(
    ("helo_verdict", "next_after_helo"),
    [
        pytest.param("hold", Identity.MAILFROM, id="hold-goes-on"),
        pytest.param("warn", Identity.MAILFROM, id="warn-goes-on"),
        pytest.param("accept", Identity.MAILFROM, id="accept-goes-on"),
        pytest.param("reject", None, id="reject-ends"),
        pytest.param("defer", None, id="defer-ends"),
    ],
)
def test_a_helo_hold_does_not_end_the_request(
    helo_verdict: str, next_after_helo: Identity | None
) -> None:
    config = parse_config(f'[actions.helo]\nfail = "{helo_verdict}"')
    case = deciding.open_case(REQUEST, config)
    assert isinstance(case, deciding.Case)
    assert deciding.next_identity(case, config, []) is Identity.HELO
    assert deciding.next_identity(case, config, [helo(SpfResult.FAIL)]) is next_after_helo


@pytest.mark.parametrize(
    ("config_text", "rule_dry_run"),
    [
        pytest.param("[policy]\ndry_run = true\n", False, id="global"),
        pytest.param("", True, id="recipient-rule"),
    ],
)
def test_dry_run_holds_nothing(config_text: str, rule_dry_run: bool) -> None:
    text = config_text + '[actions.mailfrom]\nsoftfail = "hold"\n'
    if rule_dry_run:
        text += '[[recipient]]\nmatch = "@receiver.example"\ndry_run = true\n'
    config = parse_config(text)
    rule = config.recipient_rule(REQUEST.recipient)
    decision = decide_request(REQUEST, [mailfrom(SpfResult.SOFTFAIL)], config, RECEIVER, rule)
    assert (decision.disposition, decision.would_have) == (Disposition.WARN, Verdict.HOLD)
    assert decision.action.startswith("PREPEND Received-SPF: softfail ")


def test_reject_only_no_mail_leaves_a_hold_alone() -> None:
    config = parse_config('[policy]\nreject_only_no_mail = true\n[actions.mailfrom]\nfail = "hold"')
    decision = decide_request(REQUEST, [mailfrom(SpfResult.FAIL)], config, RECEIVER)
    assert decision.disposition is Disposition.HOLD


def test_received_spf_names_the_identity_that_decided() -> None:
    decision = decide_request(REQUEST, [helo(SpfResult.PASS)], Config(), RECEIVER)
    assert "identity=helo" in decision.action
    assert "receiver=mx.receiver.example" in decision.action


def test_authentication_results_carries_both_identities() -> None:
    config = parse_config('[headers]\ntype="authentication-results"')
    decision = decide_request(
        REQUEST, [helo(SpfResult.PASS), mailfrom(SpfResult.SOFTFAIL)], config, RECEIVER
    )
    assert "spf=softfail" in decision.action
    assert "smtp.mailfrom=" in decision.action
    assert "smtp.helo=mail.sender.example" in decision.action


def test_warn_records_what_would_have_happened() -> None:
    config = parse_config('[actions.mailfrom]\nfail="warn"\ntemperror="warn"')
    failed = decide_request(REQUEST, [mailfrom(SpfResult.FAIL)], config, RECEIVER)
    deferred = decide_request(REQUEST, [mailfrom(SpfResult.TEMPERROR)], config, RECEIVER)
    assert (failed.would_have, deferred.would_have) == (Verdict.REJECT, Verdict.DEFER)


def test_no_prepend_at_end_of_message() -> None:
    request = REQUEST.replace(protocol_state="END-OF-MESSAGE")
    decision = decide_request(request, [mailfrom(SpfResult.PASS)], Config(), RECEIVER)
    assert decision.action == "DUNNO"


@pytest.mark.parametrize(
    ("outcome", "verdict", "expected"),
    [
        pytest.param(
            mailfrom(SpfResult.FAIL),
            Verdict.REJECT,
            "550 5.7.23 SPF mailfrom check failed: host 192.0.2.1 is not allowed to send mail "
            "for sender.example",
            id="fail",
        ),
        pytest.param(
            mailfrom(SpfResult.FAIL, explanation="See https://sender.example/spf"),
            Verdict.REJECT,
            "550 5.7.23 SPF mailfrom check failed: host 192.0.2.1 is not allowed to send mail for "
            "sender.example - See https://sender.example/spf",
            id="fail-exp",
        ),
        pytest.param(
            mailfrom(SpfResult.TEMPERROR, problem="DNS timeout: no reply"),
            Verdict.DEFER,
            "DEFER_IF_PERMIT 4.7.24 SPF mailfrom check of sender.example for host 192.0.2.1: "
            "temporary error, try again later: DNS timeout: no reply",
            id="temperror",
        ),
        pytest.param(
            mailfrom(SpfResult.PERMERROR, problem="Invalid IP4 address"),
            Verdict.REJECT,
            "550 5.7.24 SPF mailfrom check of sender.example for host 192.0.2.1: permanent error "
            "in the domain's SPF record: Invalid IP4 address",
            id="permerror",
        ),
        pytest.param(
            helo(SpfResult.SOFTFAIL),
            Verdict.REJECT,
            "550 5.7.23 SPF helo check of mail.sender.example for host 192.0.2.1: result softfail "
            "is not accepted here",
            id="softfail-reject",
        ),
        pytest.param(
            mailfrom(SpfResult.FAIL, explanation="See https://sender.example/spf"),
            Verdict.HOLD,
            "HOLD SPF mailfrom check failed: host 192.0.2.1 is not allowed to send mail for "
            "sender.example - See https://sender.example/spf",
            id="fail-hold",
        ),
        pytest.param(
            mailfrom(SpfResult.PERMERROR, problem="Invalid IP4 address"),
            Verdict.HOLD,
            "HOLD SPF mailfrom check of sender.example for host 192.0.2.1: permanent error "
            "in the domain's SPF record: Invalid IP4 address",
            id="permerror-hold",
        ),
    ],
)
def test_enforcing_action_text(outcome: SpfOutcome, verdict: Verdict, expected: str) -> None:
    assert actions.enforcing_action(outcome, verdict, "192.0.2.1", Config()) == expected


def test_a_hold_logs_the_reject_template_not_the_defer_one() -> None:
    config = parse_config(
        '[policy]\nreject_reason = "no {domain} from {client}"\ndefer_reason = "later {domain}"'
    )
    outcome = mailfrom(SpfResult.TEMPERROR, problem="DNS timeout")
    action = actions.enforcing_action(outcome, Verdict.HOLD, "192.0.2.1", config)
    assert action == "HOLD no sender.example from 192.0.2.1"


@pytest.mark.parametrize("verdict", [Verdict.HOLD, Verdict.REJECT])
def test_explanation_cannot_break_the_reply(verdict: Verdict) -> None:
    outcome = mailfrom(SpfResult.FAIL, explanation="bad\r\naction=OK\x00 caf\u00e9" + "x" * 1000)
    action = actions.enforcing_action(outcome, verdict, "192.0.2.1", Config())
    assert action.isascii()
    assert action.isprintable()
    assert len(action) <= actions.MAX_REPLY_TEXT + len("550 5.7.23 ")


@pytest.mark.parametrize(
    ("answer", "header", "reused_action"),
    [
        ("DUNNO", "Received-SPF: pass (x) client-ip=192.0.2.1", "DUNNO"),
        ("550 5.7.23 SPF mailfrom check failed", "", "550 5.7.23 SPF mailfrom check failed"),
        ("DEFER_IF_PERMIT 4.7.24 later", "", "DEFER_IF_PERMIT 4.7.24 later"),
        ("HOLD SPF mailfrom check failed", "", "HOLD SPF mailfrom check failed"),
        ("DUNNO", "", "DUNNO"),
    ],
)
def test_reuse_adds_no_second_header(answer: str, header: str, reused_action: str) -> None:
    first = Decision(Disposition.ACCEPT, answer, (mailfrom(SpfResult.PASS),), header=header)
    again = deciding.reuse(first)
    assert (again.action, again.reused, again.outcomes) == (reused_action, True, first.outcomes)


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("2001:db8::1", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("unknown", None),
        ("", None),
        ("192.0.2.1 ", None),
    ],
)
def test_client_ip(text: str, address: str | None) -> None:
    result = skips.client_ip(text)
    assert (str(result) if result is not None else None) == address


@pytest.mark.parametrize(
    ("client_address", "client_ip"),
    [
        pytest.param("::ffff:192.0.2.1", "192.0.2.1", id="ipv4-mapped"),
        pytest.param("fe80::1%eth0", "fe80::1", id="scoped"),
        pytest.param("2001:db8::1", "2001:db8::1", id="plain-ipv6"),
    ],
)
def test_client_ip_is_the_address_that_was_evaluated(client_address: str, client_ip: str) -> None:
    request = REQUEST.replace(client_address=client_address)
    decision = decide_request(request, [mailfrom(SpfResult.PASS)], Config(), RECEIVER)
    assert re.search(f' client-ip="?{re.escape(client_ip)}"?;', decision.header), decision.header
    assert client_address == client_ip or client_address not in decision.header
