"""Identities written in unusual but meaningful forms: IDN U-labels, and "<>" for the null sender.

RFC 7208 §4.3 has domain names looked up as A-labels, and RFC 8616 §4 applies that to an
internationalised (SMTPUTF8) sender or HELO name: user@bücher.example is checked against the
record of xn--bcher-kva.example. pyspf sends names to DNS as it gets them and then looks for
answers under the name it asked for, so before the evaluator converted them a U-label domain
never found its record and came out "none", whatever the record said: a forger's way around a
domain's "-all".
"""

from __future__ import annotations

import ipaddress
import time

import pytest

from spfpolicy.config.settings import AllowConfig, Config
from spfpolicy.decision.actions import Receiver
from spfpolicy.evaluation.domains import a_label
from spfpolicy.evaluation.evaluator import SpfEvaluator
from spfpolicy.model import Identity, PolicyRequest, SpfResult
from spfpolicy.service.allowlist import AllowList
from spfpolicy.service.policyservice import PolicyService
from spfpolicy.wire.protocol import encode_reply
from tests.support.fakedns import FakeResolver
from tests.support.phases import handle

# Published, as RFC 7208 §4.3 requires, under A-labels only.
ZONE = {
    "xn--bcher-kva.example": ["TXT v=spf1 ip4:192.0.2.0/24 -all"],
    "mail.xn--bcher-kva.example": ["TXT v=spf1 ip4:192.0.2.0/24 -all"],
    "xn--e28h.example": ["TXT v=spf1 ip4:198.51.100.0/24 -all"],
    "mail.sender.example": ["TXT v=spf1 ip4:192.0.2.0/24 -all"],
}


def evaluate(identity: Identity, sender: str, helo: str, client: str) -> SpfResult:
    evaluator = SpfEvaluator(FakeResolver(ZONE), receiver="mx.receiver.example")
    return evaluator.evaluate(
        identity, client_address=client, sender=sender, helo=helo, deadline=time.monotonic() + 5
    ).outcome.result


@pytest.mark.parametrize(
    ("identity", "sender", "helo", "client", "expected"),
    [
        (Identity.MAILFROM, "user@bücher.example", "", "192.0.2.1", SpfResult.PASS),
        (Identity.MAILFROM, "user@bücher.example", "", "198.51.100.1", SpfResult.FAIL),
        (Identity.MAILFROM, "user@BÜCHER.example", "", "198.51.100.1", SpfResult.FAIL),
        (Identity.MAILFROM, "üser@bücher.example", "", "198.51.100.1", SpfResult.FAIL),
        (Identity.MAILFROM, "user@😀.example", "", "192.0.2.1", SpfResult.FAIL),
        (Identity.MAILFROM, "", "mail.bücher.example", "198.51.100.1", SpfResult.FAIL),
        (Identity.HELO, "", "mail.bücher.example", "192.0.2.1", SpfResult.PASS),
        (Identity.HELO, "", "mail.bücher.example", "198.51.100.1", SpfResult.FAIL),
        # Already A-labels: unchanged.
        (Identity.MAILFROM, "user@xn--bcher-kva.example", "", "198.51.100.1", SpfResult.FAIL),
        # Not a valid IDN: nothing to look up (RFC 7208 §4.3), never an error.
        (Identity.MAILFROM, "user@b\u2028cher.example", "", "192.0.2.1", SpfResult.NONE),
        (Identity.MAILFROM, "user@" + "ü" * 70 + ".example", "", "192.0.2.1", SpfResult.NONE),
    ],
    ids=[
        "u-label-pass",
        "u-label-fail",
        "u-label-upper-case",
        "utf8-local-part-kept",
        "emoji-label",
        "null-sender-u-label-helo",
        "helo-u-label-pass",
        "helo-u-label-fail",
        "a-label-as-is",
        "line-separator-in-label",
        "label-too-long",
    ],
)
def test_idn_identity_is_checked_as_a_labels(
    identity: Identity, sender: str, helo: str, client: str, expected: SpfResult
) -> None:
    assert evaluate(identity, sender, helo, client) is expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bücher.example", "xn--bcher-kva.example"),
        ("Bücher.Example.", "xn--bcher-kva.Example."),  # ASCII labels keep their case
        ("sender.example", "sender.example"),
        ("a..ü", "a..ü"),  # empty label: left for check_host() to find malformed
        ("ü" * 300, "ü" * 300),  # longer than any domain name: not even tried
    ],
)
def test_a_label(name: str, expected: str) -> None:
    assert a_label(name) == expected


def service() -> PolicyService:
    receiver = Receiver("mx.receiver.example", "mx.receiver.example")
    evaluator = SpfEvaluator(FakeResolver(ZONE), receiver=receiver.hostname)
    return PolicyService(Config(), evaluator, receiver)


def test_idn_fail_is_rejected_and_the_header_names_the_a_label() -> None:
    request = PolicyRequest(
        request="smtpd_access_policy",
        protocol_state="RCPT",
        client_address="192.0.2.1",
        helo_name="[192.0.2.1]",
        sender="user@bücher.example",
    )
    policy = service()
    accepted = handle(policy, request).action
    assert accepted.startswith("PREPEND Received-SPF: pass ")
    assert 'envelope-from="user@xn--bcher-kva.example"' in accepted
    rejected = handle(policy, request.replace(client_address="198.51.100.1")).action
    assert rejected.startswith("550 5.7.23 ")
    assert encode_reply(rejected).isascii()


@pytest.mark.parametrize("sender", ["<>", ""])
def test_angle_brackets_are_the_null_sender(sender: str) -> None:
    """ "<>" is the null reverse-path as SMTP writes it (RFC 5321 §4.1.1.2): its identity is
    postmaster@HELO (RFC 7208 §2.4), checked once as the HELO identity, not as a domain "<>"."""
    request = PolicyRequest.from_attributes(
        {
            "request": "smtpd_access_policy",
            "protocol_state": "RCPT",
            "client_address": "198.51.100.1",
            "helo_name": "mail.sender.example",
            "sender": sender,
        }
    )
    assert request.sender == ""
    decision = handle(service(), request)
    assert [outcome.identity for outcome in decision.outcomes] == [Identity.HELO]
    assert decision.action.startswith("550 5.7.23 SPF helo check failed")


def test_a_u_label_helo_matches_its_a_label_in_the_allow_list() -> None:
    zone = {"mail.xn--bcher-kva.example": ["A 198.51.100.7"]}
    resolver = FakeResolver(zone)
    allow = AllowList(
        AllowConfig(helo_names=("mail.xn--bcher-kva.example",)),
        resolver,
        SpfEvaluator(resolver, receiver="mx.receiver.example"),
    )
    client = ipaddress.ip_address("198.51.100.7")
    assert allow.reason("mail.bücher.example", client, time.monotonic() + 5) == "allow_helo"
