"""The upstream stub resolver against a real DNS server on loopback."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from spfpolicy.evaluation.evaluator import SpfEvaluator
from spfpolicy.model import Identity, SpfResult
from spfpolicy.resolver.answers import DnsAnswer, DnsError, DnsFailure, DnsRecord
from spfpolicy.resolver.stub import StubResolver
from tests.support.fixtures import running_dns_server

ZONE = {
    "sender.example": [
        {"TXT": "v=spf1 ip4:192.0.2.0/24 mx -all"},
        {"MX": [10, "mx.sender.example"]},
        {"A": "192.0.2.10"},
    ],
    "mx.sender.example": [{"A": "192.0.2.25"}, {"AAAA": "2001:db8::25"}],
    "alias.sender.example": [{"CNAME": "mx.sender.example"}],
    "multi.example": [{"TXT": ["v=spf1 ip4:", "192.0.2.5 -all"]}],
    "zero.example": [{"TXT": ["v=spf1 +all"]}, {"TXT": []}],
    "big.example": [{"TXT": "v=spf1 " + " ".join(f"ip4:192.0.2.{i}" for i in range(60)) + " -all"}],
    "25.2.0.192.in-addr.arpa": [{"PTR": "mx.sender.example"}],
    "slow.example": ["TIMEOUT"],
    # A label of raw octets (Latin-1 "jé"), as an 8-bit local part makes one through %{l}.
    "j\udce9.bytes.example": [{"A": "127.0.0.2"}],
    "bytes.example": [{"TXT": "v=spf1 exists:%{l}.bytes.example -all"}],
}


@pytest.fixture(scope="module")
def dns_port() -> Iterator[int]:
    """A DNS server on 127.0.0.1 serving ZONE with TTL 120."""
    with running_dns_server(ZONE, ttl=120) as port:
        yield port


def resolver(port: int, **options: float) -> StubResolver:
    return StubResolver(["127.0.0.1"], port=port, query_timeout=options.get("timeout", 2.0))


def soon() -> float:
    return time.monotonic() + 5.0


def mailfrom_result(port: int, sender: str) -> SpfResult:
    """check_host() for MAIL FROM `sender` from 192.0.2.1, through the stub resolver."""
    evaluator = SpfEvaluator(resolver(port), receiver="mx.receiver.example")
    evaluation = evaluator.evaluate(
        Identity.MAILFROM, client_address="192.0.2.1", sender=sender, helo="h.test", deadline=soon()
    )
    return evaluation.outcome.result


@pytest.mark.daemon
@pytest.mark.parametrize(
    ("name", "rdtype", "records"),
    [
        pytest.param("sender.example", "A", [("sender.example", "A", "192.0.2.10")], id="a"),
        pytest.param(
            "mx.sender.example", "AAAA", [("mx.sender.example", "AAAA", "2001:db8::25")], id="aaaa"
        ),
        pytest.param(
            "sender.example", "MX", [("sender.example", "MX", (10, "mx.sender.example"))], id="mx"
        ),
        pytest.param(
            "sender.example",
            "TXT",
            [("sender.example", "TXT", (b"v=spf1 ip4:192.0.2.0/24 mx -all",))],
            id="txt",
        ),
        pytest.param(
            "multi.example",
            "TXT",
            [("multi.example", "TXT", (b"v=spf1 ip4:", b"192.0.2.5 -all"))],
            id="txt-strings",
        ),
        pytest.param(
            "25.2.0.192.in-addr.arpa",
            "PTR",
            [("25.2.0.192.in-addr.arpa", "PTR", "mx.sender.example")],
            id="ptr",
        ),
        pytest.param("SENDER.Example", "A", [("sender.example", "A", "192.0.2.10")], id="case"),
        pytest.param(
            "alias.sender.example",
            "A",
            [
                ("alias.sender.example", "CNAME", "mx.sender.example"),
                ("mx.sender.example", "A", "192.0.2.25"),
            ],
            id="cname-chain-returned-for-pyspf",
        ),
    ],
)
def test_answers(
    dns_port: int, name: str, rdtype: str, records: list[tuple[str, str, object]]
) -> None:
    answer = resolver(dns_port).query(name, rdtype, soon())
    assert [(r.name, r.rdtype, r.value) for r in answer.records] == records
    assert answer.ttl == 120


@pytest.mark.daemon
def test_zero_string_txt_beside_the_spf_record_leaves_the_verdict(dns_port: int) -> None:
    """A TXT record of no strings beside the SPF record: dnspython before 2.9 keeps it as a
    record of no strings, 2.9 and later drop it. Either way the answer still holds the SPF
    record, and that record decides (RFC 7208 §4.5: the other TXT record is not one)."""
    answer = resolver(dns_port).query("zero.example", "TXT", soon())
    assert [r.value for r in answer.records if r.value != ()] == [(b"v=spf1 +all",)]
    assert mailfrom_result(dns_port, "someone@zero.example") is SpfResult.PASS


@pytest.mark.daemon
def test_truncated_answer_is_retried_over_tcp(dns_port: int) -> None:
    answer = resolver(dns_port).query("big.example", "TXT", soon())
    assert len(answer.records) == 1
    assert b"".join(answer.records[0].value).endswith(b"ip4:192.0.2.59 -all")  # type: ignore[arg-type]


@pytest.mark.daemon
@pytest.mark.parametrize(
    ("name", "rdtype", "rcode"),
    [("nx.example", "TXT", "NXDOMAIN"), ("mx.sender.example", "TXT", "NOERROR")],
    ids=["nxdomain", "nodata"],
)
def test_negative_answers_are_empty_with_the_soa_ttl(
    dns_port: int, name: str, rdtype: str, rcode: str
) -> None:
    answer = resolver(dns_port).query(name, rdtype, soon())
    assert answer == DnsAnswer((), 120.0, rcode)


@pytest.mark.daemon
def test_a_silent_server_is_a_timeout_within_the_query_timeout(dns_port: int) -> None:
    started = time.monotonic()
    with pytest.raises(DnsError) as raised:
        resolver(dns_port, timeout=0.3).query("slow.example", "TXT", soon())
    assert raised.value.failure is DnsFailure.TIMEOUT
    assert time.monotonic() - started < 2.0


@pytest.mark.daemon
def test_the_deadline_cuts_a_query_short(dns_port: int) -> None:
    started = time.monotonic()
    with pytest.raises(DnsError) as raised:
        resolver(dns_port, timeout=5.0).query("slow.example", "TXT", time.monotonic() + 0.3)
    assert raised.value.failure is DnsFailure.TIMEOUT
    assert time.monotonic() - started < 2.0


def test_a_spent_deadline_asks_nothing(dns_port: int) -> None:
    with pytest.raises(DnsError, match="time budget"):
        resolver(dns_port).query("sender.example", "A", time.monotonic() - 1)


@pytest.mark.daemon
def test_a_dead_nameserver_fails_over_to_the_next(dns_port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as unused:
        unused.bind(("127.0.0.2", 0))
        dead_port = unused.getsockname()[1]
    stub = StubResolver(["127.0.0.2", "127.0.0.1"], port=dns_port, query_timeout=1.0)
    assert dead_port  # 127.0.0.2 has nothing listening on dns_port either: refused at once
    answer = stub.query("sender.example", "A", soon())
    assert answer.records == (DnsRecord("sender.example", "A", "192.0.2.10"),)


def test_unencodable_names_are_empty_answers(dns_port: int) -> None:
    answer = resolver(dns_port).query("a" * 64 + ".example", "TXT", soon())
    assert answer.records == ()


@pytest.mark.parametrize("name", ["a\\046b.example", "\\300.example", "user\\.name.example"])
def test_a_name_with_a_backslash_is_malformed_and_never_asked(name: str) -> None:
    # Nothing listens on port 9 of 127.0.0.1: asking at all would end in a DNS error.
    resolver = StubResolver(["127.0.0.1"], port=9, query_timeout=0.2)
    answer = resolver.query(name, "A", time.monotonic() + 1)
    assert answer.records == ()
    assert answer.rcode == "NXDOMAIN"


@pytest.mark.daemon
def test_a_name_of_8bit_octets_is_asked_as_those_octets(dns_port: int) -> None:
    """An 8-bit local part arrives as lone surrogates (spfpolicy.wire.protocol); %{l} puts
    them in a name, and the question carries the very octets, as do the answer's names."""
    answer = resolver(dns_port).query("j\udce9.bytes.example", "A", soon())
    assert [(r.name, r.value) for r in answer.records] == [("j\udce9.bytes.example", "127.0.0.2")]


@pytest.mark.daemon
def test_an_8bit_local_part_reaches_the_l_macro_unchanged(dns_port: int) -> None:
    results = {
        sender: mailfrom_result(dns_port, sender)
        for sender in ("j\udce9@bytes.example", "j\u00e9@bytes.example")
    }
    # The byte 0xE9 is the local part that exists; "é" as UTF-8 (0xC3 0xA9) is another.
    assert results == {
        "j\udce9@bytes.example": SpfResult.PASS,
        "j\u00e9@bytes.example": SpfResult.FAIL,
    }
