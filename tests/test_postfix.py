"""End to end: a real Postfix on loopback asks spfpolicy at RCPT; SMTP replies and delivered mail.

Postfix presents each client address and HELO name with XCLIENT, spfpolicy resolves through a
real DNS server on loopback, and accepted mail is read back from the maildir.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_SYSTEM_TOOLS
from tests.support.fixtures import (
    REPO_ROOT,
    ServerProcess,
    running_dns_server,
    running_policy_daemon,
)
from tests.support.postfix import Postfix, Transaction, free_port, postfix_available

pytestmark = pytest.mark.postfix

ZONE = {
    "sender.example": [{"TXT": "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all"}],
    "mail.sender.example": [{"TXT": "v=spf1 ip4:192.0.2.0/24 -all"}],
    "soft.example": [{"TXT": "v=spf1 ip4:192.0.2.0/24 ~all"}],
    "neutral.example": [{"TXT": "v=spf1 ?all"}],
    "nospf.example": [{"A": "192.0.2.99"}],
    "broken.example": [{"TXT": "v=spf1 ip4:192.0.2.300 -all"}],
    "slow.example": ["TIMEOUT"],
}
GOOD_CLIENT = "192.0.2.7"  # authorised by sender.example and mail.sender.example
OTHER_CLIENT = "203.0.113.9"  # authorised by nobody
PLAIN_HELO = "h.client.example"  # no SPF record: the HELO check is "none" and decides nothing
WAIT = 30.0
# A restriction class whose answer no other part of the instance gives: its SMTP reply proves
# Postfix ran the class spfpolicy named. DEFER_IF_PERMIT, as greylisting policy servers answer.
GREYLISTED = "Greylisted by the greylist_softfail class"
CLASSES = f"""\
smtpd_restriction_classes = greylist_softfail
greylist_softfail = check_sender_access static:{{DEFER_IF_PERMIT 4.7.1 {GREYLISTED}}}
"""
# The quarantining daemon: holds what fails, hands softfail to the class.
QUARANTINE = (
    '[actions]\nsoftfail_restriction = "greylist_softfail"\n[actions.mailfrom]\nfail = "hold"\n'
)


def skip_or_fail_without_postfix() -> None:
    reason = postfix_available()
    if reason:
        if REQUIRE_SYSTEM_TOOLS:
            pytest.fail(reason)
        pytest.skip(reason)


def wait_for_port(daemon: ServerProcess, port: int) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if daemon.process.poll() is not None:
            raise daemon.failure("exited before it was ready")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise daemon.failure(f"port {port} not listening")


def daemon_config(listen: list[str], dns_port: int, extra: str = "") -> str:
    quoted = ", ".join(f'"{item}"' for item in listen)
    return (
        f"[server]\nlisten = [{quoted}]\n"
        f'[dns]\nnameservers = ["127.0.0.1"]\nport = {dns_port}\nquery_timeout = 1.0\n'
        f'[spf]\ntime_budget = 5.0\n[metrics]\nlisten = ""\n{extra}'
    )


class Stack:
    """Postfix, the DNS server and the policy daemons, with what the tests need of each."""

    def __init__(self, postfix: Postfix, dns_port: int, workdir: Path) -> None:
        self.postfix = postfix
        self.dns_port = dns_port
        self.workdir = workdir
        self.daemon_log = workdir / "default.log"

    def send(self, label: str = "unix", **kwargs: object) -> Transaction:
        transaction = self.postfix.send(label, **kwargs)  # type: ignore[arg-type]
        # Shown with pytest -s: the closing note's table of scenarios and replies.
        rcpts = [str(reply) for reply in transaction.rcpts]
        print(f"{label}: {kwargs} -> RCPT {rcpts} DATA {transaction.data}")
        return transaction

    def decisions(self, sender: str, daemon: str = "default", expect: int = 1) -> list[str]:
        """A daemon's decision lines for one sender, once there are `expect` of them (or WAIT
        has passed): the daemon writes a line after its reply, from its log thread."""
        deadline = time.monotonic() + WAIT
        while True:
            lines = (self.workdir / f"{daemon}.log").read_text().splitlines()
            found = [line for line in lines if "decision " in line and f" sender={sender} " in line]
            if len(found) >= expect or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Postfix with five smtpd ports: unix and inet to the default daemon, strict, quarantine
    (hold and a restriction class, declared in main.cf), and down."""
    skip_or_fail_without_postfix()
    workdir = tmp_path_factory.mktemp("postfix-e2e")
    default_port, strict_port, down_port = free_port(), free_port(), free_port()
    quarantine_port = free_port()
    postfix = Postfix(
        {
            "unix": "unix:private/spfpolicy",
            "inet": f"inet:127.0.0.1:{default_port}",
            "strict": f"inet:127.0.0.1:{strict_port}",
            "quarantine": f"inet:127.0.0.1:{quarantine_port}",
            "down": f"inet:127.0.0.1:{down_port}",
        },
        main_cf=CLASSES,
    )
    postfix.start()
    try:
        with running_dns_server(ZONE) as dns_port:
            stack = Stack(postfix, dns_port, workdir)
            stack.down_port = down_port  # type: ignore[attr-defined]
            default = workdir / "default.toml"
            listen = [f"unix:{postfix.policy_socket}", f"inet:127.0.0.1:{default_port}"]
            default.write_text(daemon_config(listen, dns_port))
            strict = workdir / "strict.toml"
            strict.write_text(
                daemon_config(
                    [f"inet:127.0.0.1:{strict_port}"],
                    dns_port,
                    '[actions.mailfrom]\npermerror = "reject"\n'
                    '[headers]\ntype = "authentication-results"\n'
                    'authserv_id = "mx.receiver.example"\n',
                )
            )
            quarantine = workdir / "quarantine.toml"
            quarantine.write_text(
                daemon_config([f"inet:127.0.0.1:{quarantine_port}"], dns_port, QUARANTINE)
            )
            with (
                running_policy_daemon(default, stack.daemon_log) as first,
                running_policy_daemon(strict, workdir / "strict.log") as second,
                running_policy_daemon(quarantine, workdir / "quarantine.log") as third,
            ):
                wait_for_port(first, default_port)
                wait_for_port(second, strict_port)
                wait_for_port(third, quarantine_port)
                yield stack
    finally:
        postfix.stop()


def received_spf(stack: Stack, transaction: Transaction, recipients: int = 1) -> list[str]:
    assert transaction.data is not None
    assert transaction.data.code == 250, transaction.data
    messages = stack.postfix.delivered(transaction.queue_id, recipients)
    return [value for message in messages for value in message.get_all("Received-SPF", [])]


@pytest.mark.parametrize("label", ["unix", "inet"])
def test_pass_is_delivered_with_one_received_spf_header(stack: Stack, label: str) -> None:
    sent = stack.send(
        label,
        client=GOOD_CLIENT,
        helo="mail.sender.example",
        sender="user@sender.example",
        recipients=["pass@receiver.example"],
    )
    assert [str(r) for r in sent.rcpts] == ["250 2.1.5 Ok"]
    headers = received_spf(stack, sent)
    assert len(headers) == 1
    assert headers[0].startswith("pass (")
    assert f"client-ip={GOOD_CLIENT};" in headers[0]
    assert "identity=mailfrom" in headers[0]


def test_a_latin_1_sender_is_checked_by_its_domain_and_accepted(stack: Stack) -> None:
    """With smtputf8_enable = no (this main.cf, for every service), Postfix passes the raw
    bytes of MAIL FROM:<j\xe9r\xf4me@...> to the policy service; the domain is plain ASCII and
    checkable, so the message gets its pass, not a 451 for a policy service that hung up."""
    sent = stack.send(
        client=GOOD_CLIENT,
        helo="mail.sender.example",
        sender="j\xe9r\xf4me@sender.example",
        recipients=["latin@receiver.example"],
        encoding="latin-1",
    )
    assert [str(r) for r in sent.rcpts] == ["250 2.1.5 Ok"]
    (header,) = received_spf(stack, sent)
    assert header.startswith("pass (")
    assert 'envelope-from="j?r?me@sender.example"' in header  # the bytes escaped, not lost


@pytest.mark.parametrize("label", ["unix", "inet"])
def test_fail_is_rejected_at_rcpt(stack: Stack, label: str) -> None:
    sent = stack.send(
        label,
        client=OTHER_CLIENT,
        helo=PLAIN_HELO,
        sender="user@sender.example",
        recipients=["fail@receiver.example"],
    )
    (rcpt,) = sent.rcpts
    assert rcpt.code == 550
    assert rcpt.text.startswith(
        "5.7.23 <fail@receiver.example>: Recipient address rejected: "
        "SPF mailfrom check failed: host 203.0.113.9 is not allowed"
    )
    assert sent.data is None


@pytest.mark.parametrize(
    ("sender", "result"),
    [
        ("user@soft.example", "softfail"),
        ("user@neutral.example", "neutral"),
        ("user@nospf.example", "none"),
        ("user@broken.example", "permerror"),
    ],
)
def test_other_results_are_accepted_with_their_header(
    stack: Stack, sender: str, result: str
) -> None:
    sent = stack.send(
        client=OTHER_CLIENT,
        helo=PLAIN_HELO,
        sender=sender,
        recipients=[f"{result}@receiver.example"],
    )
    headers = received_spf(stack, sent)
    assert len(headers) == 1
    assert headers[0].startswith(f"{result} ("), headers[0]


def test_temperror_is_deferred_with_450(stack: Stack) -> None:
    sent = stack.send(
        client=OTHER_CLIENT,
        helo=PLAIN_HELO,
        sender="user@slow.example",
        recipients=["temperror@receiver.example"],
    )
    (rcpt,) = sent.rcpts
    assert rcpt.code == 450
    assert rcpt.text.startswith("4.7.24 ")
    assert "temporary error, try again later" in rcpt.text


def test_permerror_rejected_when_configured(stack: Stack) -> None:
    sent = stack.send(
        "strict",
        client=OTHER_CLIENT,
        helo=PLAIN_HELO,
        sender="user@broken.example",
        recipients=["permerror@receiver.example"],
    )
    (rcpt,) = sent.rcpts
    assert rcpt.code == 550
    assert rcpt.text.startswith("5.7.24 ")
    assert "permanent error in the domain's SPF record" in rcpt.text


@pytest.mark.parametrize(
    ("client", "code", "header_start"),
    [(GOOD_CLIENT, 250, "pass ("), (OTHER_CLIENT, 550, "")],
    ids=["helo-pass", "helo-fail"],
)
def test_null_sender_is_decided_by_helo(
    stack: Stack, client: str, code: int, header_start: str
) -> None:
    sent = stack.send(
        client=client, helo="mail.sender.example", sender="", recipients=["bounce@receiver.example"]
    )
    (rcpt,) = sent.rcpts
    assert rcpt.code == code, rcpt
    if code == 550:
        assert "SPF helo check failed" in rcpt.text
        return
    (header,) = received_spf(stack, sent)
    assert header.startswith(header_start)
    assert "identity=helo" in header
    assert 'envelope-from="postmaster@mail.sender.example"' in header


def test_ipv6_client(stack: Stack) -> None:
    sent = stack.send(
        client="2001:db8::25",
        helo=PLAIN_HELO,
        sender="user@sender.example",
        recipients=["ipv6@receiver.example"],
    )
    (header,) = received_spf(stack, sent)
    assert header.startswith("pass (")
    assert 'client-ip="2001:db8::25";' in header


def test_five_recipients_one_header_one_evaluation(stack: Stack) -> None:
    recipients = [f"r{i}@receiver.example" for i in range(5)]
    sent = stack.send(
        client=GOOD_CLIENT,
        helo="mail.sender.example",
        sender="five@sender.example",
        recipients=recipients,
    )
    assert [r.code for r in sent.rcpts] == [250] * 5
    messages = stack.postfix.delivered(sent.queue_id, recipients=5)
    assert all(len(m.get_all("Received-SPF", [])) == 1 for m in messages)
    lines = stack.decisions("five@sender.example", expect=5)
    assert len(lines) == 5
    assert sum("reused=yes" in line for line in lines) == 4
    instances = {re.search(r"instance=(\S+)", line).group(1) for line in lines}  # type: ignore[union-attr]
    assert len(instances) == 1


def test_authenticated_client_is_skipped(stack: Stack) -> None:
    sent = stack.send(
        client=OTHER_CLIENT,
        helo=PLAIN_HELO,
        sender="alice@sender.example",
        recipients=["auth@receiver.example"],
        login="alice",
    )
    assert [r.code for r in sent.rcpts] == [250]
    assert received_spf(stack, sent) == []
    (line,) = stack.decisions("alice@sender.example")
    assert "disposition=skip skip_reason=authenticated" in line


def test_authentication_results_mode(stack: Stack) -> None:
    sent = stack.send(
        "strict",
        client=GOOD_CLIENT,
        helo="mail.sender.example",
        sender="user@sender.example",
        recipients=["ar@receiver.example"],
    )
    assert sent.data is not None
    (message,) = stack.postfix.delivered(sent.queue_id)
    (header,) = message.get_all("Authentication-Results")
    assert message.get_all("Received-SPF") is None
    assert re.fullmatch(
        r"mx\.receiver\.example; spf=pass( \([^)]*\))? smtp\.mailfrom=user@sender\.example; "
        r"spf=pass( \([^)]*\))? smtp\.helo=mail\.sender\.example",
        header,
    ), header


def test_a_held_message_lands_in_the_hold_queue(stack: Stack) -> None:
    """fail = "hold": both recipients are told 250, the message is queued once, on hold, for
    both, with the reason in Postfix's log; spfpolicy decided once and said hold twice."""
    recipients = ["held1@receiver.example", "held2@receiver.example"]
    sent = stack.send(
        "quarantine",
        client=OTHER_CLIENT,
        helo=PLAIN_HELO,
        sender="held@sender.example",
        recipients=recipients,
    )
    assert [str(r) for r in sent.rcpts] == ["250 2.1.5 Ok"] * 2
    assert sent.data is not None
    assert sent.data.code == 250, sent.data
    queued = [entry for entry in stack.postfix.queued() if entry["queue_id"] == sent.queue_id]
    assert [entry["queue_name"] for entry in queued] == ["hold"], stack.postfix.queued()
    assert sorted(r["address"] for r in queued[0]["recipients"]) == recipients
    assert queued[0]["sender"] == "held@sender.example"
    reason = "SPF mailfrom check failed: host 203.0.113.9 is not allowed to send mail for"
    held_lines = [line for line in stack.postfix.log().splitlines() if " hold: RCPT from " in line]
    assert any(reason in line and "<held1@receiver.example>" in line for line in held_lines)
    lines = stack.decisions("held@sender.example", "quarantine", expect=2)
    assert len(lines) == 2
    assert all(" disposition=hold " in line for line in lines)
    assert sum("reused=yes" in line for line in lines) == 1


def test_softfail_goes_through_the_named_restriction_class(stack: Stack) -> None:
    sent = stack.send(
        "quarantine",
        client=OTHER_CLIENT,
        helo=PLAIN_HELO,
        sender="grey@soft.example",
        recipients=["grey@receiver.example"],
    )
    # check_sender_access inside the class answers for the sender, hence "Sender address".
    assert [str(r) for r in sent.rcpts] == [
        f"450 4.7.1 <grey@soft.example>: Sender address rejected: {GREYLISTED}"
    ]
    assert sent.data is None
    (line,) = stack.decisions("grey@soft.example", "quarantine")
    assert "mailfrom_result=softfail" in line
    assert " action=greylist_softfail " in line


@pytest.mark.parametrize(
    ("client", "sender", "result"),
    [(GOOD_CLIENT, "ok@sender.example", "pass"), (OTHER_CLIENT, "n@neutral.example", "neutral")],
)
def test_results_without_a_class_skip_it(
    stack: Stack, client: str, sender: str, result: str
) -> None:
    """The class is spfpolicy's answer, not part of the instance: the same port delivers what
    has no class, with its header."""
    sent = stack.send(
        "quarantine",
        client=client,
        helo=PLAIN_HELO,
        sender=sender,
        recipients=["c@receiver.example"],
    )
    (header,) = received_spf(stack, sent)
    assert header.startswith(f"{result} (")


def test_policy_service_down_then_back(stack: Stack) -> None:
    """Killed mid-run: Postfix defers (451 4.3.5), nothing passes unchecked; back: mail flows."""
    port: int = stack.down_port  # type: ignore[attr-defined]
    config = stack.workdir / "down.toml"
    config.write_text(daemon_config([f"inet:127.0.0.1:{port}"], stack.dns_port))
    message = dict(
        client=GOOD_CLIENT,
        helo="mail.sender.example",
        sender="user@sender.example",
        recipients=["down@receiver.example"],
    )
    command = [sys.executable, "-m", "spfpolicy", "serve", "--config", str(config)]
    with (stack.workdir / "down-1.log").open("wb") as log:
        victim = subprocess.Popen(command, stdout=log, stderr=log, cwd=REPO_ROOT)
    try:
        wait_for_port(ServerProcess("doomed daemon", victim, stack.workdir / "down-1.log"), port)
        assert [r.code for r in stack.send("down", **message).rcpts] == [250]
    finally:
        victim.kill()  # SIGKILL: no goodbye, like a crash or the OOM killer
        victim.wait()
    down = stack.send("down", **message)
    assert [str(r)[:9] for r in down.rcpts] == ["451 4.3.5"]
    assert down.data is None
    with running_policy_daemon(config, stack.workdir / "down-2.log") as restarted:
        wait_for_port(restarted, port)
        back = stack.send("down", **message)
        assert [r.code for r in back.rcpts] == [250]
        assert back.data is not None
        assert back.data.code == 250
