"""Questions asked without a thread each (spfpolicy.resolver.multiplex) against loopback servers.

Each question must come to what StubResolver.query would have said, or to None where only the
blocking path can go on (a truncated reply): the servers in order, a silent or failing one
passed over, forged replies ignored, the request's deadline kept, the one thread gone when idle.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from spfpolicy.resolver import multiplex
from spfpolicy.resolver.answers import DnsAnswer, DnsError, DnsFailure, DnsOutcome
from spfpolicy.resolver.multiplex import QueryMultiplexer
from spfpolicy.resolver.stub import StubResolver
from tests.support.faultydns import Fault, FaultyDnsServer, Rule

pytestmark = pytest.mark.daemon

RECORD = "v=spf1 ip4:192.0.2.0/24 -all"
ZONE = {
    **{f"name{n}.example": [{"TXT": RECORD}] for n in range(200)},
    "sender.example": [{"TXT": RECORD}, {"A": "192.0.2.10"}],
}
QUERY_TIMEOUT = 0.5


class Outcomes:
    """Collects done() calls, and waits for them."""

    def __init__(self) -> None:
        self.got: dict[str, list[DnsOutcome]] = {}
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)

    def done_for(self, name: str) -> multiplex.Done:
        def done(outcome: DnsOutcome) -> None:
            with self.changed:
                self.got.setdefault(name, []).append(outcome)
                self.changed.notify_all()

        return done

    def wait(self, count: int, timeout: float = 10.0) -> dict[str, list[DnsOutcome]]:
        with self.changed:
            self.changed.wait_for(lambda: sum(map(len, self.got.values())) >= count, timeout)
            return dict(self.got)


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[FaultyDnsServer, FaultyDnsServer]]:
    """Two fault-injecting servers on one port: 127.0.0.1 first, 127.0.0.2 second."""
    with FaultyDnsServer(ZONE) as first:
        second = FaultyDnsServer(ZONE, address="127.0.0.2", port=first.port)
        with second:
            yield first, second


@pytest.fixture
def pair(
    servers: tuple[FaultyDnsServer, FaultyDnsServer],
) -> Iterator[tuple[FaultyDnsServer, FaultyDnsServer]]:
    for server in servers:
        server.reset()
    yield servers
    for server in servers:
        server.reset()


def multiplexer_for(port: int, *addresses: str) -> QueryMultiplexer:
    stub = StubResolver(list(addresses), port=port, query_timeout=QUERY_TIMEOUT)
    return QueryMultiplexer(stub)


def ask_one(
    multiplexer: QueryMultiplexer, name: str, rdtype: str = "TXT", budget: float = 5.0
) -> DnsOutcome:
    outcomes = Outcomes()
    multiplexer.ask(name, rdtype, time.monotonic() + budget, outcomes.done_for(name))
    got = outcomes.wait(1)
    assert list(got) == [name]
    [outcome] = got[name]
    return outcome


def test_many_questions_at_once_are_answered_as_the_stub_would(
    pair: tuple[FaultyDnsServer, FaultyDnsServer],
) -> None:
    first, _ = pair
    multiplexer = multiplexer_for(first.port, "127.0.0.1")
    stub = multiplexer.stub
    outcomes = Outcomes()
    deadline = time.monotonic() + 5
    names = [f"name{n}.example" for n in range(200)] + ["absent.example"]
    for name in names:
        multiplexer.ask(name, "TXT", deadline, outcomes.done_for(name))
    got = outcomes.wait(len(names))
    assert sorted(got) == sorted(names)
    for name in (names[0], names[199], "absent.example"):
        [outcome] = got[name]
        assert isinstance(outcome, DnsAnswer)
        expected = stub.query(name, "TXT", time.monotonic() + 5)
        assert (outcome.records, outcome.rcode) == (expected.records, expected.rcode)
    assert all(len(outcomes) == 1 for outcomes in got.values())  # done() once each
    assert first.asked("name7.example") == 1


def test_a_silent_server_is_passed_over_after_the_query_timeout(
    pair: tuple[FaultyDnsServer, FaultyDnsServer],
) -> None:
    first, second = pair
    first.set_rule("sender.example", Rule(Fault.SILENT))
    started = time.monotonic()
    outcome = ask_one(multiplexer_for(first.port, "127.0.0.1", "127.0.0.2"), "sender.example")
    assert isinstance(outcome, DnsAnswer)
    assert outcome.records[0].value == (RECORD.encode(),)
    assert QUERY_TIMEOUT <= time.monotonic() - started < QUERY_TIMEOUT + 2
    assert (first.asked("sender.example"), second.asked("sender.example")) == (1, 1)


@pytest.mark.parametrize("fault", [Fault.SERVFAIL, Fault.REFUSED])
def test_a_failing_server_is_passed_over_at_once(
    pair: tuple[FaultyDnsServer, FaultyDnsServer], fault: Fault
) -> None:
    first, second = pair
    first.set_rule("sender.example", Rule(fault))
    started = time.monotonic()
    outcome = ask_one(multiplexer_for(first.port, "127.0.0.1", "127.0.0.2"), "sender.example")
    assert isinstance(outcome, DnsAnswer)
    assert time.monotonic() - started < QUERY_TIMEOUT
    assert second.asked("sender.example") == 1


def test_when_every_server_fails_the_last_failure_is_the_outcome(
    pair: tuple[FaultyDnsServer, FaultyDnsServer],
) -> None:
    first, _ = pair
    for server in pair:
        server.set_rule("sender.example", Rule(Fault.SERVFAIL))
    outcome = ask_one(multiplexer_for(first.port, "127.0.0.1", "127.0.0.2"), "sender.example")
    assert isinstance(outcome, DnsError)
    assert (outcome.failure, outcome.cacheable) == (DnsFailure.SERVFAIL, True)


def test_a_truncated_reply_gives_the_question_back(
    pair: tuple[FaultyDnsServer, FaultyDnsServer],
) -> None:
    first, _ = pair
    first.set_rule("sender.example", Rule(Fault.TRUNCATED))
    assert ask_one(multiplexer_for(first.port, "127.0.0.1"), "sender.example") is None


def test_the_requests_deadline_ends_the_question_uncacheably(
    pair: tuple[FaultyDnsServer, FaultyDnsServer],
) -> None:
    first, _ = pair
    first.set_rule("sender.example", Rule(Fault.SILENT))
    started = time.monotonic()
    outcome = ask_one(multiplexer_for(first.port, "127.0.0.1"), "sender.example", budget=0.2)
    waited = time.monotonic() - started
    assert isinstance(outcome, DnsError)
    assert (outcome.failure, outcome.cacheable) == (DnsFailure.TIMEOUT, False)
    assert 0.2 <= waited < QUERY_TIMEOUT + 1  # the budget's 0.2 s, not a whole try


def test_forged_replies_are_ignored(pair: tuple[FaultyDnsServer, FaultyDnsServer]) -> None:
    first, _ = pair
    rule = Rule(Fault.WRONG_ID, forgeries=20, then_answer=True)
    first.set_rule("sender.example", rule)
    outcome = ask_one(multiplexer_for(first.port, "127.0.0.1"), "sender.example")
    assert isinstance(outcome, DnsAnswer)
    assert outcome.records[0].value == (RECORD.encode(),)  # not the forged "v=spf1 +all"


def test_a_name_no_query_can_carry_is_answered_without_the_network(
    pair: tuple[FaultyDnsServer, FaultyDnsServer],
) -> None:
    first, _ = pair
    outcome = ask_one(multiplexer_for(first.port, "127.0.0.1"), "bad\\.name.example")
    assert isinstance(outcome, DnsAnswer)
    assert outcome.rcode == "NXDOMAIN"
    assert first.queries == []


def test_the_thread_ends_when_idle_and_starts_again(
    pair: tuple[FaultyDnsServer, FaultyDnsServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(multiplex, "IDLE_EXIT_SECONDS", 0.2)
    first, _ = pair
    multiplexer = multiplexer_for(first.port, "127.0.0.1")

    others = {t for t in threading.enumerate() if t.name == "spfpolicy-dns"}

    def dns_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "spfpolicy-dns"} - others

    assert isinstance(ask_one(multiplexer, "sender.example"), DnsAnswer)
    [thread] = dns_threads()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert isinstance(ask_one(multiplexer, "sender.example", "A"), DnsAnswer)
    assert len(dns_threads()) == 1
