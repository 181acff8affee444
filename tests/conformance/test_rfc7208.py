"""The RFC 7208 test suite (openspf.org, 2014.04), driven through the daemon's wire protocol.

Each scenario's zone data is served by a real DNS server on loopback; the daemon resolves
through it and answers Postfix policy requests over a unix socket. A fail shows as the reject
text (with the explanation, if the domain gave one), every other result in the Received-SPF
header of the PREPEND action.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:  # pytest imports conftest itself; importing it again makes a second copy
    from tests.conformance.conftest import ScenarioRunner

SUITE = Path(__file__).with_name("rfc7208-tests.yml")
DEFAULT_EXPLANATION = "DEFAULT"  # the suite's word for "no explanation of the domain's own"

FAIL_ACTION = re.compile(r"550 5\.7\.23 (?P<text>.*)")  # RFC 7372 §3.2: SPF fail
FAIL_TEXT = re.compile(
    r"SPF (mailfrom|helo) check failed: host \S+ is not allowed to send mail for \S+"
    r"( - (?P<exp>.*))?"
)
PREPEND_ACTION = re.compile(r"PREPEND Received-SPF: (?P<result>\S+)(?: .*)?")


@dataclass(frozen=True, slots=True)
class SuiteCase:
    """One test of the suite, as the daemon can be asked about it."""

    scenario: str  # the scenario's description, which keys its zone data
    name: str
    helo: str
    host: str
    mailfrom: str
    results: tuple[str, ...]  # any of them passes; the suite lists the preferred one first
    explanation: str | None  # None: the suite does not check it
    number: int  # position in the suite: makes the request's instance unique

    @property
    def test_id(self) -> str:
        """The pytest id: "<scenario description>/<test name>"."""
        return f"{self.scenario}/{self.name}"


@dataclass(frozen=True, slots=True)
class Scenario:
    """A scenario: its zone data and its tests."""

    description: str
    zonedata: Mapping[str, Any] = field(hash=False, compare=False)
    cases: tuple[SuiteCase, ...]


@dataclass(frozen=True, slots=True)
class Observed:
    """What a reply says about the check: the result, and a fail's explanation if it had one."""

    result: str
    explanation: str | None = None


class UnexpectedReplyError(AssertionError):
    """A reply that is neither the reject of a fail nor a PREPEND of Received-SPF."""


def load_suite(path: Path) -> list[Scenario]:
    """Every scenario of the suite file (one YAML document each), its tests in file order."""
    with path.open("rb") as suite:
        documents = list(yaml.safe_load_all(suite))
    scenarios = []
    number = 0
    for document in documents:
        description = document["description"]
        cases = []
        for name, test in document["tests"].items():
            result = test["result"]
            cases.append(
                SuiteCase(
                    scenario=description,
                    name=name,
                    helo=str(test["helo"]),
                    host=str(test["host"]),
                    mailfrom=str(test["mailfrom"]),
                    results=(result,) if isinstance(result, str) else tuple(result),
                    explanation=test.get("explanation"),
                    number=number,
                )
            )
            number += 1
        scenarios.append(Scenario(description, document["zonedata"], tuple(cases)))
    return scenarios


SCENARIOS = {scenario.description: scenario for scenario in load_suite(SUITE)}
CASES = [case for scenario in SCENARIOS.values() for case in scenario.cases]


def client_address(host: str) -> str:
    """The address as Postfix formats it (inet_ntop: IPv6 compressed, in lower case)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def policy_request(case: SuiteCase) -> dict[str, str]:
    """The request Postfix sends at RCPT for the suite case; mailfrom "" is the null sender."""
    return {
        "request": "smtpd_access_policy",
        "protocol_state": "RCPT",
        "protocol_name": "ESMTP",
        "client_address": client_address(case.host),
        "client_name": "unknown",
        "helo_name": case.helo,
        "sender": case.mailfrom,
        "recipient": "postmaster@receiver.example",
        "instance": f"rfc7208.{case.number:04d}",
        "queue_id": "",
    }


def interpret_reply(reply: bytes) -> Observed:
    """The SPF result a policy reply reports; UnexpectedReplyError (quoting it) if none."""
    try:
        text = reply.decode("utf-8")
    except UnicodeDecodeError:
        raise UnexpectedReplyError(f"reply is not UTF-8: {reply!r}") from None
    if not text.startswith("action=") or not text.endswith("\n\n") or "\n" in text[:-2]:
        raise UnexpectedReplyError(f"reply is not one action=... line: {reply!r}")
    action = text[len("action=") : -2]
    if (fail := FAIL_ACTION.fullmatch(action)) is not None:
        if (reason := FAIL_TEXT.fullmatch(fail.group("text"))) is None:
            raise UnexpectedReplyError(f"reject text not as expected: {reply!r}")
        return Observed("fail", reason.group("exp"))
    if (prepend := PREPEND_ACTION.fullmatch(action)) is not None:
        return Observed(prepend.group("result").lower())
    raise UnexpectedReplyError(f"neither a 550 5.7.23 reject nor a Received-SPF header: {reply!r}")


def check(case: SuiteCase, observed: Observed, reply: bytes) -> None:
    """Assert that the observed result and explanation are what the suite case allows."""
    assert observed.result in case.results, (
        f"result {observed.result}, suite allows {'/'.join(case.results)}; reply {reply!r}"
    )
    if case.explanation is None or observed.result != "fail":
        return
    if case.explanation == DEFAULT_EXPLANATION:
        assert observed.explanation is None, f"no explanation expected; reply {reply!r}"
    else:
        assert observed.explanation == case.explanation, f"reply {reply!r}"


@pytest.mark.conformance
@pytest.mark.parametrize("case", CASES, ids=[case.test_id for case in CASES])
@pytest.mark.parametrize("caches", [True, False], ids=["caches", "no-caches"])
def test_rfc7208(case: SuiteCase, caches: bool, scenario_runner: ScenarioRunner) -> None:
    scenario = SCENARIOS[case.scenario]
    client = scenario_runner.client(scenario.description, scenario.zonedata, caches=caches)
    request = policy_request(case)
    reply = client.ask(request)
    try:
        observed = interpret_reply(reply)
    except UnexpectedReplyError as error:
        pytest.fail(str(error))
    check(case, observed, reply)
    # The same question for a new message: now answered from the DNS cache and, where a result
    # may be reused, from the result cache. Cached and uncached answers must be identical.
    again = client.ask({**request, "instance": request["instance"] + ".again"})
    assert again == reply, "the cached answer differs from the first"


FAIL_PREFIX = "550 5.7.23 SPF mailfrom check failed: host 192.0.2.1 is not allowed to send mail"


@pytest.mark.parametrize(
    ("reply", "observed"),
    [
        pytest.param(
            f"action={FAIL_PREFIX} for example.net\n\n", Observed("fail"), id="fail-default"
        ),
        pytest.param(
            f"action={FAIL_PREFIX} for example.net - See me.\n\n",
            Observed("fail", "See me."),
            id="fail-with-explanation",
        ),
        pytest.param(
            "action=550 5.7.23 SPF helo check failed: host 2001:db8::1 is not allowed to send"
            " mail for mail.example.com - a - b\n\n",
            Observed("fail", "a - b"),
            id="fail-helo-ipv6-explanation-with-dashes",
        ),
        pytest.param(
            "action=PREPEND Received-SPF: softfail (example.net: transitioning) client-ip=1.2.3.4;"
            " envelope-from=a@example.net\n\n",
            Observed("softfail"),
            id="prepend-softfail",
        ),
        pytest.param(
            "action=PREPEND Received-SPF: PermError\n\n", Observed("permerror"), id="prepend-case"
        ),
    ],
)
def test_interpret_reply(reply: str, observed: Observed) -> None:
    assert interpret_reply(reply.encode()) == observed


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(b"action=DUNNO\n\n", id="dunno"),
        pytest.param(b"action=DEFER_IF_PERMIT 4.7.24 SPF temporary error\n\n", id="defer"),
        pytest.param(b"action=550 5.7.23 Go away\n\n", id="fail-text-unexpected"),
        pytest.param(b"action=550 5.7.24 SPF mailfrom check failed: x\n\n", id="other-code"),
        pytest.param(b"action=PREPEND X-Other: pass\n\n", id="other-header"),
        pytest.param(b"action=PREPEND Received-SPF: pass\n", id="one-newline"),
        pytest.param(b"action=DUNNO\nextra\n\n", id="two-lines"),
        pytest.param(b"result=pass\n\n", id="not-action"),
        pytest.param(b"action=PREPEND Received-SPF: \xff\n\n", id="not-utf8"),
    ],
)
def test_interpret_reply_rejects(reply: bytes) -> None:
    with pytest.raises(UnexpectedReplyError, match=re.escape(repr(reply))):
        interpret_reply(reply)


@pytest.mark.parametrize(
    ("results", "explanation", "observed", "passes"),
    [
        pytest.param(("fail",), None, Observed("fail", "x"), True, id="exp-not-checked"),
        pytest.param(("fail",), "DEFAULT", Observed("fail"), True, id="default-exp"),
        pytest.param(("fail",), "DEFAULT", Observed("fail", "x"), False, id="unexpected-exp"),
        pytest.param(("fail",), "See me.", Observed("fail", "See me."), True, id="exp"),
        pytest.param(("fail",), "See me.", Observed("fail"), False, id="missing-exp"),
        pytest.param(("fail", "permerror"), None, Observed("permerror"), True, id="second-choice"),
        pytest.param(("pass",), None, Observed("neutral"), False, id="wrong-result"),
    ],
)
def test_check(
    results: tuple[str, ...], explanation: str | None, observed: Observed, passes: bool
) -> None:
    case = SuiteCase("scenario", "name", "helo.example", "192.0.2.1", "", results, explanation, 0)
    if passes:
        check(case, observed, b"reply")
    else:
        with pytest.raises(AssertionError):
            check(case, observed, b"reply")
