"""The request service: memo per message, identity order, internal errors, the decision log."""

from __future__ import annotations

import logging

import pytest

from spfpolicy.config.settings import Config, parse_config
from spfpolicy.decision.actions import INTERNAL_ERROR_DEFER, Receiver
from spfpolicy.evaluation.evaluator import SpfEvaluator
from spfpolicy.model import Decision, Disposition, Identity, NullObserver, PolicyRequest, SpfResult
from spfpolicy.service.policyservice import PolicyService
from tests.support.fakedns import FakeResolver
from tests.support.phases import handle

ZONE = {
    "sender.example": ["TXT v=spf1 ip4:192.0.2.0/24 -all"],
    "mail.sender.example": ["TXT v=spf1 ip4:192.0.2.0/24 -all"],
    "bad-helo.example": ["TXT v=spf1 -all"],
    "junk.example": ["TXT v=spf1 include:crash.example -all"],
}
REQUEST = PolicyRequest(
    request="smtpd_access_policy",
    protocol_state="RCPT",
    client_address="192.0.2.1",
    helo_name="mail.sender.example",
    sender="user@sender.example",
    recipient="a@receiver.example",
    instance="4F2A1.1",
    queue_id="4F2A1",
)


class Service:
    """A PolicyService over the fake zone, with the resolver exposed to count questions."""

    def __init__(self, config: Config | None = None) -> None:
        self.resolver = FakeResolver(ZONE)
        self.evaluator = SpfEvaluator(self.resolver, receiver="mx.receiver.example")
        self.service = PolicyService(
            config or Config(),
            self.evaluator,
            Receiver("mx.receiver.example", "mx.receiver.example"),
        )


def test_five_recipients_one_evaluation_one_header() -> None:
    setup = Service()
    decisions = [
        handle(setup.service, REQUEST.replace(recipient=f"r{i}@receiver.example")) for i in range(5)
    ]
    assert decisions[0].action.startswith("PREPEND Received-SPF: pass")
    assert [d.action for d in decisions[1:]] == ["DUNNO"] * 4
    assert all(d.reused for d in decisions[1:])
    assert setup.resolver.asked.count(("sender.example", "TXT")) == 1
    assert setup.resolver.asked.count(("mail.sender.example", "TXT")) == 1


def test_reject_repeats_for_every_recipient() -> None:
    setup = Service()
    request = REQUEST.replace(client_address="203.0.113.5", helo_name="h.client.example")
    first, second = handle(setup.service, request), handle(setup.service, request)
    assert first.action.startswith("550 5.7.23")
    assert second.action == first.action
    assert second.reused


def test_a_new_instance_is_a_new_evaluation() -> None:
    setup = Service()
    handle(setup.service, REQUEST)
    handle(setup.service, REQUEST.replace(instance="4F2A1.2"))
    assert setup.resolver.asked.count(("sender.example", "TXT")) == 2


def test_without_instance_nothing_is_memoised() -> None:
    setup = Service()
    first = handle(setup.service, REQUEST.replace(instance=""))
    second = handle(setup.service, REQUEST.replace(instance=""))
    assert first.action == second.action
    assert first.action.startswith("PREPEND ")
    assert setup.resolver.asked.count(("sender.example", "TXT")) == 2


def test_helo_reject_ends_the_request() -> None:
    setup = Service()
    decision = handle(setup.service, REQUEST.replace(helo_name="bad-helo.example"))
    assert decision.disposition is Disposition.REJECT
    assert "SPF helo check failed" in decision.action
    assert [o.identity for o in decision.outcomes] == [Identity.HELO]
    assert ("sender.example", "TXT") not in setup.resolver.asked


def test_a_helo_hold_still_checks_mail_from_whose_reject_wins() -> None:
    setup = Service(parse_config('[actions.helo]\nfail = "hold"'))
    request = REQUEST.replace(helo_name="bad-helo.example")
    held = handle(setup.service, request)
    assert held.disposition is Disposition.HOLD  # MAIL FROM passes: the HELO hold stands
    assert held.action.startswith("HOLD SPF helo check failed: host 192.0.2.1 ")
    assert [o.identity for o in held.outcomes] == [Identity.HELO, Identity.MAILFROM]
    # 203.0.113.5 fails the HELO name too, and MAIL FROM as well: MAIL FROM's reject wins.
    rejected = handle(setup.service, request.replace(client_address="203.0.113.5", instance="2"))
    assert rejected.disposition is Disposition.REJECT
    assert rejected.action.startswith("550 5.7.23 SPF mailfrom check failed")
    assert [o.identity for o in rejected.outcomes] == [Identity.HELO, Identity.MAILFROM]


def test_a_hold_repeats_for_every_recipient_without_a_header() -> None:
    setup = Service(parse_config('[actions.mailfrom]\nfail = "hold"'))
    request = REQUEST.replace(client_address="203.0.113.5", helo_name="h.client.example")
    decisions = [
        handle(setup.service, request.replace(recipient=f"r{i}@receiver.example")) for i in range(3)
    ]
    assert [d.disposition for d in decisions] == [Disposition.HOLD] * 3
    assert {d.action for d in decisions} == {decisions[0].action}
    assert decisions[0].action.startswith("HOLD SPF mailfrom check failed: host 203.0.113.5 ")
    assert [d.reused for d in decisions] == [False, True, True]
    assert all(d.header == "" for d in decisions)
    assert setup.resolver.asked.count(("sender.example", "TXT")) == 1


def test_null_sender_is_evaluated_once_as_helo() -> None:
    setup = Service()
    decision = handle(setup.service, REQUEST.replace(sender=""))
    assert [(o.identity, o.result) for o in decision.outcomes] == [(Identity.HELO, SpfResult.PASS)]
    assert "identity=helo" in decision.action
    assert setup.resolver.asked == [("mail.sender.example", "TXT")]


def test_skipped_requests_do_no_dns() -> None:
    setup = Service()
    decision = handle(setup.service, REQUEST.replace(sasl_username="alice"))
    assert (decision.disposition, decision.action, decision.skip_reason) == (
        Disposition.SKIP,
        "DUNNO",
        "authenticated",
    )
    assert setup.resolver.asked == []


def test_an_evaluation_crash_becomes_temperror_and_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    setup = Service()

    def crash(*args: object, **kwargs: object) -> None:
        raise AssertionError("Too many levels of recursion")

    monkeypatch.setattr("spfpolicy.evaluation.evaluator.check_host", crash)
    with caplog.at_level(logging.INFO):
        decision = handle(setup.service, REQUEST)
    assert decision.action.startswith("DEFER_IF_PERMIT 4.7.24 ")
    assert decision.outcomes[0].result is SpfResult.TEMPERROR
    assert any(r.exc_info and "evaluation failed" in r.getMessage() for r in caplog.records)
    # What went wrong inside is for the log, not for the SMTP client.
    assert "recursion" not in decision.action


def crash(*args: object, **kwargs: object) -> None:
    """Stands in for a part of the decision that has a bug."""
    raise RuntimeError("unexpected")


@pytest.mark.parametrize(
    ("config", "action", "disposition"),
    [
        pytest.param("", INTERNAL_ERROR_DEFER, Disposition.DEFER, id="default-defers"),
        pytest.param(
            '[policy]\non_internal_error = "defer"',
            INTERNAL_ERROR_DEFER,
            Disposition.DEFER,
            id="defer",
        ),
        pytest.param(
            '[policy]\non_internal_error = "accept"', "DUNNO", Disposition.ACCEPT, id="accept"
        ),
        # Neither the temperror action nor dry run decides it: an internal error is no SPF result.
        pytest.param(
            '[actions.mailfrom]\ntemperror = "accept"',
            INTERNAL_ERROR_DEFER,
            Disposition.DEFER,
            id="temperror-accept-still-defers",
        ),
        pytest.param(
            "[policy]\ndry_run = true", INTERNAL_ERROR_DEFER, Disposition.DEFER, id="dry-run"
        ),
        pytest.param(
            '[actions.mailfrom]\ntemperror = "reject"\n[policy]\non_internal_error = "accept"',
            "DUNNO",
            Disposition.ACCEPT,
            id="temperror-reject-still-accepts",
        ),
    ],
)
def test_a_crash_outside_evaluation_answers_on_internal_error(
    monkeypatch: pytest.MonkeyPatch, config: str, action: str, disposition: Disposition
) -> None:
    setup = Service(parse_config(config))
    monkeypatch.setattr("spfpolicy.decision.deciding.decide", crash)
    decision = handle(setup.service, REQUEST)
    assert (decision.action, decision.disposition) == (action, disposition)
    assert decision.internal_error
    assert decision.outcomes == ()  # no made-up SPF result to count or log
    assert setup.service.error_decision() == decision  # the server's fallback says the same


def test_the_internal_error_defer_is_a_temporary_local_error() -> None:
    # DEFER_IF_PERMIT lets a later reject restriction win; 4.3.0 (RFC 3463 mail system status)
    # blames this system, where 4.7.24 would blame the sender's SPF record.
    assert INTERNAL_ERROR_DEFER == (
        "DEFER_IF_PERMIT 4.3.0 Temporary local error in the SPF check, try again later"
    )


@pytest.mark.parametrize("on_internal_error", ["defer", "accept"])
def test_an_internal_error_is_logged_at_error_level_with_the_request(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, on_internal_error: str
) -> None:
    setup = Service(parse_config(f'[policy]\non_internal_error = "{on_internal_error}"'))
    monkeypatch.setattr("spfpolicy.decision.deciding.decide", crash)
    with caplog.at_level(logging.INFO):
        decision = handle(setup.service, REQUEST)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    line = errors[0].getMessage()
    for field in (
        "instance=4F2A1.1",
        "queue_id=4F2A1",
        "client=192.0.2.1",
        "helo=mail.sender.example",
        "sender=user@sender.example",
    ):
        assert field in line
    assert line.endswith(f'action="{decision.action}"' if " " in decision.action else "DUNNO")
    assert errors[0].exc_info is not None
    assert "RuntimeError: unexpected" in caplog.text  # the traceback
    decision_line = [r.getMessage() for r in caplog.records if r.name == "spfpolicy.decision"]
    assert any("internal_error=yes" in text for text in decision_line)


def test_an_internal_error_is_counted() -> None:
    counted: list[Decision] = []

    class Counting(NullObserver):
        def decision_made(self, decision: Decision, duration: float) -> None:
            counted.append(decision)

    setup = Service()
    setup.service.observer = Counting()
    setup.service.allow = crash  # type: ignore[assignment]  # not an AllowList: _allowed raises
    handle(setup.service, REQUEST)
    setup.service.allow = None
    handle(setup.service, REQUEST.replace(instance="4F2A1.2"))
    assert [d.internal_error for d in counted] == [True, False]


def test_a_request_after_an_internal_error_is_decided_normally(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    setup = Service()
    with monkeypatch.context() as patched:
        patched.setattr("spfpolicy.decision.deciding.decide", crash)
        assert handle(setup.service, REQUEST).internal_error
    # The failed request left no memo behind: the same message is decided afresh.
    decision = handle(setup.service, REQUEST)
    assert decision.action.startswith("PREPEND Received-SPF: pass ")
    assert not decision.internal_error


def test_the_time_budget_reaches_the_resolver() -> None:
    seen: list[float] = []
    setup = Service(parse_config("[spf]\ntime_budget = 7.5"))
    original = setup.resolver.query

    def spy(name: str, rdtype: str, deadline: float):  # type: ignore[no-untyped-def]
        seen.append(deadline)
        return original(name, rdtype, deadline)

    setup.resolver.query = spy  # type: ignore[method-assign]
    now = 1000.0
    setup.service.clock = lambda: now
    handle(setup.service, REQUEST)
    assert seen
    assert set(seen) == {1007.5}


def test_recipients_with_other_rules_get_their_own_decision_and_no_second_header() -> None:
    config = parse_config(
        '[[recipient]]\nmatch = "abuse@receiver.example"\n'
        '[recipient.actions.mailfrom]\nfail = "accept"\n'
    )
    setup = Service(config)
    message = REQUEST.replace(client_address="203.0.113.5", helo_name="h.client.example")
    first = handle(setup.service, message.replace(recipient="a@receiver.example"))
    abuse = handle(setup.service, message.replace(recipient="abuse@receiver.example"))
    again = handle(setup.service, message.replace(recipient="b@receiver.example"))
    abuse_again = handle(setup.service, message.replace(recipient="Abuse@receiver.example"))
    assert first.action.startswith("550 5.7.23 ")
    assert abuse.action.startswith("PREPEND Received-SPF: fail ")  # its own rule, not the memo
    assert again.action == first.action
    assert again.reused
    assert abuse_again.action == "DUNNO"  # the message has its header already
    assert setup.resolver.asked.count(("sender.example", "TXT")) == 1  # one evaluation


def test_a_header_is_added_once_even_across_rules() -> None:
    config = parse_config('[[recipient]]\nmatch = "@receiver.example"\ndry_run = true\n')
    setup = Service(config)
    outside = handle(setup.service, REQUEST.replace(recipient="x@elsewhere.example"))
    inside = handle(setup.service, REQUEST.replace(recipient="y@receiver.example"))
    assert outside.action.startswith("PREPEND Received-SPF: pass ")
    assert inside.action == "DUNNO"
    assert not inside.reused  # decided for its own rule, header suppressed
