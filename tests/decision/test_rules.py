"""[policy], [allow], [skip] and [[recipient]] rules of the decision model, as tables."""

from __future__ import annotations

import pytest

from spfpolicy.config.settings import ConfigError, parse_config
from spfpolicy.decision.actions import Receiver
from spfpolicy.model import Disposition, Identity, PolicyRequest, SpfOutcome, SpfResult, Verdict
from tests.support.decisions import decide as decide_request
from tests.support.decisions import skip_reason

RECEIVER = Receiver("mx.receiver.example", "mx.receiver.example")
REQUEST = PolicyRequest(
    request="smtpd_access_policy",
    protocol_state="RCPT",
    client_address="203.0.113.9",
    helo_name="h.client.example",
    sender="user@sender.example",
    recipient="someone@receiver.example",
    instance="1.1",
)


def mailfrom(result: SpfResult, domain: str = "sender.example", **extra: object) -> SpfOutcome:
    return SpfOutcome(Identity.MAILFROM, result, domain, f"user@{domain}", **extra)  # type: ignore[arg-type]


def decide(config_text: str, *outcomes: SpfOutcome, recipient: str = "someone@receiver.example"):  # type: ignore[no-untyped-def]
    config = parse_config(config_text)
    request = REQUEST.replace(recipient=recipient)
    return decide_request(request, outcomes, config, RECEIVER, config.recipient_rule(recipient))


@pytest.mark.parametrize(
    ("changes", "config_text", "reason"),
    [
        pytest.param(
            {"policy_context": "submission"},
            '[skip]\npolicy_contexts = ["submission"]',
            "policy_context",
            id="context",
        ),
        pytest.param(
            {"policy_context": "smtp"},
            '[skip]\npolicy_contexts = ["submission"]',
            "",
            id="other-context",
        ),
        pytest.param(
            {"client_address": "198.51.100.7"},
            '[allow]\nnetworks = ["198.51.100.0/24"]',
            "allow_network",
            id="allow-network",
        ),
        pytest.param(
            {"client_address": "2001:db8::7"},
            '[allow]\nnetworks = ["2001:db8::/32"]',
            "allow_network",
            id="allow-network6",
        ),
        pytest.param(
            {"client_address": "203.0.113.9"},
            '[allow]\nnetworks = ["198.51.100.0/24"]',
            "",
            id="not-listed",
        ),
    ],
)
def test_skips_without_dns(changes: dict[str, str], config_text: str, reason: str) -> None:
    assert skip_reason(REQUEST.replace(**changes), parse_config(config_text)) == reason


@pytest.mark.parametrize(
    ("result", "disposition"),
    [
        (SpfResult.PASS, Disposition.ACCEPT),
        (SpfResult.SOFTFAIL, Disposition.REJECT),
        (SpfResult.NEUTRAL, Disposition.REJECT),
        (SpfResult.NONE, Disposition.REJECT),
        (SpfResult.PERMERROR, Disposition.REJECT),
    ],
)
def test_reject_not_pass_domains(result: SpfResult, disposition: Disposition) -> None:
    text = '[policy]\nreject_not_pass_domains = ["Sender.Example."]'
    decision = decide(text, mailfrom(result))
    assert decision.disposition is disposition
    other = decide(text, mailfrom(result, domain="other.example"))
    assert other.disposition is Disposition.ACCEPT  # other domains keep the tables' defaults


@pytest.mark.parametrize(
    ("no_mail", "disposition", "would_have"),
    [(True, Disposition.REJECT, None), (False, Disposition.WARN, Verdict.REJECT)],
    ids=["v=spf1-all-rejected", "other-fail-only-a-header"],
)
def test_reject_only_no_mail(
    no_mail: bool, disposition: Disposition, would_have: Verdict | None
) -> None:
    decision = decide(
        "[policy]\nreject_only_no_mail = true", mailfrom(SpfResult.FAIL, publishes_no_mail=no_mail)
    )
    assert decision.disposition is disposition
    assert decision.would_have is would_have
    if disposition is Disposition.WARN:
        assert decision.action.startswith("PREPEND Received-SPF: fail ")


@pytest.mark.parametrize(
    ("result", "would_have"),
    [(SpfResult.FAIL, Verdict.REJECT), (SpfResult.TEMPERROR, Verdict.DEFER)],
)
def test_dry_run_turns_enforcement_into_warnings(result: SpfResult, would_have: Verdict) -> None:
    decision = decide("[policy]\ndry_run = true", mailfrom(result, problem="x"))
    assert (decision.disposition, decision.would_have) == (Disposition.WARN, would_have)
    assert decision.action.startswith(f"PREPEND Received-SPF: {result.value} ")


RECIPIENTS = """
[actions.mailfrom]
softfail = "reject"
[[recipient]]
match = "abuse@receiver.example"
[recipient.actions.mailfrom]
fail = "accept"
[[recipient]]
match = "@receiver.example"
dry_run = true
[[recipient]]
match = "postmaster@receiver.example"
[recipient.actions.mailfrom]
fail = "accept"
softfail = "accept"
"""


@pytest.mark.parametrize(
    ("recipient", "result", "disposition"),
    [
        pytest.param(
            "abuse@receiver.example", SpfResult.FAIL, Disposition.ACCEPT, id="abuse-fail-accepted"
        ),
        pytest.param(
            "ABUSE@Receiver.Example", SpfResult.FAIL, Disposition.ACCEPT, id="case-insensitive"
        ),
        pytest.param(
            "abuse@receiver.example",
            SpfResult.SOFTFAIL,
            Disposition.REJECT,
            id="abuse-inherits-softfail",
        ),
        pytest.param(
            "postmaster@receiver.example",
            SpfResult.SOFTFAIL,
            Disposition.ACCEPT,
            id="exact-beats-domain",
        ),
        pytest.param(
            "anyone@receiver.example", SpfResult.FAIL, Disposition.WARN, id="domain-rule-dry-run"
        ),
        pytest.param("anyone@elsewhere.example", SpfResult.FAIL, Disposition.REJECT, id="global"),
        pytest.param(
            "anyone@elsewhere.example", SpfResult.SOFTFAIL, Disposition.REJECT, id="global-softfail"
        ),
    ],
)
def test_recipient_rules(recipient: str, result: SpfResult, disposition: Disposition) -> None:
    assert decide(RECIPIENTS, mailfrom(result), recipient=recipient).disposition is disposition


def test_pass_restriction_answers_the_class_on_pass_only() -> None:
    text = '[actions]\npass_restriction = "spf_passed"'
    assert decide(text, mailfrom(SpfResult.PASS)).action == "spf_passed"
    assert decide(text, mailfrom(SpfResult.NEUTRAL)).action.startswith("PREPEND ")
    assert decide(text, mailfrom(SpfResult.FAIL)).action.startswith("550 ")


# Every result accepted, each with a class of its own.
EVERY_CLASS = "[actions]\n" + "".join(
    f'{result.value}_restriction = "spf_{result.value}"\n' for result in SpfResult
)
ACCEPT_ALL = "[actions.mailfrom]\n" + "".join(f'{r.value} = "accept"\n' for r in SpfResult)


@pytest.mark.parametrize("result", list(SpfResult), ids=str)
def test_each_result_answers_its_own_class(result: SpfResult) -> None:
    decision = decide(EVERY_CLASS + ACCEPT_ALL, mailfrom(result, problem="x"))
    assert decision.action == f"spf_{result.value}"
    assert (decision.disposition, decision.header) == (Disposition.ACCEPT, "")
    # Without its class the same result gets the header, whatever the others have.
    others = "\n".join(
        line for line in EVERY_CLASS.splitlines() if not line.startswith(f"{result.value}_")
    )
    plain = decide(f"{others}\n{ACCEPT_ALL}", mailfrom(result, problem="x"))
    assert plain.action.startswith(f"PREPEND Received-SPF: {result.value} ")


@pytest.mark.parametrize(
    ("verdict", "disposition", "action_start"),
    [
        pytest.param("reject", Disposition.REJECT, "550 5.7.23 ", id="reject-wins"),
        pytest.param("defer", Disposition.DEFER, "DEFER_IF_PERMIT 4.7.1 ", id="defer-wins"),
        pytest.param("hold", Disposition.HOLD, "HOLD SPF mailfrom ", id="hold-wins"),
        pytest.param("warn", Disposition.WARN, "greylist_softfail", id="warn-gets-the-class"),
        pytest.param("accept", Disposition.ACCEPT, "greylist_softfail", id="accept"),
    ],
)
def test_a_verdict_that_stops_the_mail_wins_over_the_class(
    verdict: str, disposition: Disposition, action_start: str
) -> None:
    text = (
        f'[actions]\nsoftfail_restriction = "greylist_softfail"\n'
        f'[actions.mailfrom]\nsoftfail = "{verdict}"\n'
    )
    decision = decide(text, mailfrom(SpfResult.SOFTFAIL))
    assert decision.disposition is disposition
    assert decision.action.startswith(action_start), decision.action


def test_dry_run_softens_the_verdict_not_the_class() -> None:
    text = (
        '[actions]\nsoftfail_restriction = "greylist_softfail"\n'
        '[actions.mailfrom]\nsoftfail = "hold"\n[policy]\ndry_run = true\n'
    )
    decision = decide(text, mailfrom(SpfResult.SOFTFAIL))
    assert (decision.disposition, decision.would_have) == (Disposition.WARN, Verdict.HOLD)
    assert decision.action == "greylist_softfail"


def helo(result: SpfResult) -> SpfOutcome:
    return SpfOutcome(Identity.HELO, result, "h.client.example", "postmaster@h.client.example")


@pytest.mark.parametrize(
    ("outcomes", "action_start"),
    [
        pytest.param(
            (helo(SpfResult.SOFTFAIL), mailfrom(SpfResult.PASS)),
            "PREPEND Received-SPF: pass ",
            id="helo-softfail-mailfrom-pass",
        ),
        pytest.param(
            (helo(SpfResult.PASS), mailfrom(SpfResult.SOFTFAIL)),
            "greylist_softfail",
            id="mailfrom-softfail",
        ),
        pytest.param((helo(SpfResult.SOFTFAIL),), "greylist_softfail", id="null-sender-helo"),
    ],
)
def test_the_last_identity_checked_selects_the_class(
    outcomes: tuple[SpfOutcome, ...], action_start: str
) -> None:
    text = '[actions]\nsoftfail_restriction = "greylist_softfail"'
    assert decide(text, *outcomes).action.startswith(action_start)


RULE_CLASSES = """
[actions]
softfail_restriction = "greylist_softfail"
[[recipient]]
match = "abuse@receiver.example"
[recipient.actions]
softfail_restriction = ""
neutral_restriction = "abuse_neutral"
[[recipient]]
match = "@receiver.example"
dry_run = true
"""


@pytest.mark.parametrize(
    ("recipient", "result", "action_start"),
    [
        pytest.param("abuse@receiver.example", SpfResult.SOFTFAIL, "PREPEND ", id="rule-clears"),
        pytest.param("abuse@receiver.example", SpfResult.NEUTRAL, "abuse_neutral", id="rule-sets"),
        pytest.param("x@receiver.example", SpfResult.SOFTFAIL, "greylist_softfail", id="inherits"),
        pytest.param("x@receiver.example", SpfResult.NEUTRAL, "PREPEND ", id="rule-inherits-none"),
        pytest.param("x@other.example", SpfResult.SOFTFAIL, "greylist_softfail", id="global"),
    ],
)
def test_recipient_rules_set_or_inherit_classes(
    recipient: str, result: SpfResult, action_start: str
) -> None:
    decision = decide(RULE_CLASSES, mailfrom(result), recipient=recipient)
    assert decision.action.startswith(action_start), decision.action


@pytest.mark.parametrize(
    ("config_text", "outcome", "expected"),
    [
        pytest.param(
            "[policy]\n"
            'reject_reason = "{identity} {domain}: {client} not allowed ({result}) {explanation}"',
            mailfrom(SpfResult.FAIL, explanation="see https://sender.example/spf"),
            "550 5.7.23 mailfrom sender.example: 203.0.113.9 not allowed (fail) "
            "see https://sender.example/spf",
            id="reject-template",
        ),
        pytest.param(
            '[policy]\ndefer_reason = "try later: {domain} {explanation}"',
            mailfrom(SpfResult.TEMPERROR, problem="DNS timeout"),
            "DEFER_IF_PERMIT 4.7.24 try later: sender.example DNS timeout",
            id="defer-template",
        ),
        pytest.param(
            '[policy]\nreject_reason = "no {domain}"',
            mailfrom(SpfResult.FAIL, domain="evil\r\nexample"),
            "550 5.7.23 no evil??example",
            id="template-output-sanitised",
        ),
    ],
)
def test_reason_templates(config_text: str, outcome: SpfOutcome, expected: str) -> None:
    assert decide(config_text, outcome).action == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            '[policy]\nreject_reason = "{client.__class__}"', "unknown placeholder", id="attribute"
        ),
        pytest.param(
            '[policy]\nreject_reason = "{sender}"', "unknown placeholder {sender}", id="unknown"
        ),
        pytest.param(
            '[policy]\nreject_reason = "{domain!r}"', "unknown placeholder", id="conversion"
        ),
        pytest.param('[policy]\nreject_reason = "{"', "braces", id="unbalanced"),
        pytest.param(
            '[actions]\npass_restriction = "REJECT"', "not a restriction class", id="keyword"
        ),
        pytest.param('[actions]\npass_restriction = "a b"', "not a restriction class", id="space"),
        pytest.param(
            '[actions]\nsoftfail_restriction = "hold"',
            "actions.softfail_restriction: 'hold' is not a restriction class",
            id="softfail-keyword-lower-case",
        ),
        pytest.param(
            '[actions]\nneutral_restriction = "450 4.7.1 try later"',
            "actions.neutral_restriction: '450 4.7.1 try later' is not a restriction class",
            id="neutral-a-reply",
        ),
        pytest.param(
            '[actions]\nnone_restriction = "check_sender_access hash:/etc/postfix/x"',
            "actions.none_restriction: .* smtpd_restriction_classes",
            id="none-a-restriction-with-a-table",
        ),
        pytest.param(
            '[actions]\ntemperror_restriction = "Defer_If_Permit"',
            "actions.temperror_restriction: .*not an access\\(5\\) keyword",
            id="temperror-keyword-mixed-case",
        ),
        pytest.param(
            "[actions]\npermerror_restriction = 1",
            "actions.permerror_restriction: expected a",
            id="int",
        ),
        pytest.param(
            '[actions]\nfail_restriction = "_spf"',
            "actions.fail_restriction",
            id="leading-underscore",
        ),
        pytest.param(
            '[[recipient]]\nmatch = "@r.example"\n[recipient.actions]\nsoftfail_restriction = "OK"',
            "recipient[1].actions.softfail_restriction: 'OK' is not a restriction class",
            id="recipient-rule",
        ),
        pytest.param(
            '[actions]\nqueued_restriction = "x"',
            "unknown key 'queued_restriction'",
            id="no-such-result",
        ),
        pytest.param('[allow]\nhelo_names = ["bad..example"]', "not a domain name", id="domain"),
        pytest.param('[[recipient]]\nmatch = "nobody"', 'expected "user@example.com"', id="match"),
        pytest.param("[[recipient]]\ndry_run = true", "missing key 'match'", id="no-match"),
        pytest.param(
            '[[recipient]]\nmatch = "@r.example"\nfail = "x"', "unknown key 'fail'", id="flat-key"
        ),
        pytest.param("[spf]\nvoid_lookup_limit = 0", "spf.void_lookup_limit", id="void-0"),
    ],
)
def test_bad_rule_settings_are_refused(text: str, message: str) -> None:
    with pytest.raises(
        ConfigError, match=message.replace("{", "\\{").replace("}", "\\}").replace("[", "\\[")
    ):
        parse_config(text, "f.toml")
