"""The test DNS server (tests/support/dnsserver.py), queried over the wire with dnspython."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
import yaml

from tests.support.fixtures import ServerProcessError, running_dns_server
from tests.support.zones import MAX_CNAME_CHAIN, Zone

SERVER = "127.0.0.1"
QUERY_TIMEOUT = 1.0
SILENCE_TIMEOUT = 0.5  # how long a query that must get no reply is given
SUITE = Path(__file__).parents[1] / "conformance" / "rfc7208-tests.yml"

ZONE = {
    "a.example": [{"A": "192.0.2.1"}, {"A": "192.0.2.2"}],
    "aaaa.example": [{"AAAA": "2001:DB8::1"}],
    "mx.example": [{"MX": [10, "mail.mx.example"]}, {"MX": [20, "backup.mx.example."]}],
    "1.2.0.192.in-addr.arpa": [{"PTR": "a.example"}],
    "txt.example": [{"TXT": ["v=spf1 ip4:", "192.0.2.5 -all"]}, {"TXT": "second record"}],
    "zero.example": [{"TXT": []}],
    "long.example": [{"TXT": "x" * 600}],
    "bytes.example": [{"TXT": "\u00ef\u00bb\u00bfExplanation a:ctrl\rptr\n\x96"}],
    "spf.example": [{"SPF": "v=spf1 -all"}],
    "spf-and-txt.example": [{"SPF": "v=spf1 -all"}, {"TXT": "v=spf1 +all"}],
    "spf-txt-none.example": [{"SPF": "v=spf1 -all"}, {"TXT": "NONE"}],
    "timeout.example": ["TIMEOUT"],
    "txt-then-timeout.example": [{"TXT": "v=spf1 -all"}, "TIMEOUT"],
    "spf-then-timeout.example": [{"SPF": "v=spf1 -all"}, {"TXT": "NONE"}, "TIMEOUT"],
    "a-timeout.example": [{"A": "TIMEOUT"}, {"TXT": "v=spf1 a -all"}],
    # pyspf puts the TXT copies of SPF entries after all written entries, so after the TIMEOUT.
    "spf-copy-after-timeout.example": [{"SPF": "v=spf1 -all"}, "TIMEOUT"],
    "cname.example": [{"CNAME": "hop.example"}],
    "hop.example": [{"CNAME": "A.example."}],
    "dangling.example": [{"CNAME": "missing.example"}],
    "self-loop.example": [{"CNAME": "self-loop.example."}],
    "loop1.example": [{"CNAME": "loop2.example"}],
    "loop2.example": [{"CNAME": "loop1.example"}],
    **{f"chain{i}.example": [{"CNAME": f"chain{i + 1}.example"}] for i in range(12)},
    "chain12.example": [{"A": "192.0.2.12"}],
    "big.example": [{"TXT": f"record {i} " + "y" * 100} for i in range(6)],
}


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    """The port of one DNS server subprocess serving ZONE for the whole module."""
    with running_dns_server(ZONE) as server_port:
        yield server_port


def ask(
    port: int, qname: str, rdtype: str, *, tcp: bool = False, payload: int | None = None
) -> dns.message.Message:
    """One query; EDNS0 with `payload` if given, else a classic query."""
    if payload is None:
        query = dns.message.make_query(qname, rdtype, use_edns=False)
    else:
        query = dns.message.make_query(qname, rdtype, use_edns=0, payload=payload)
    if tcp:
        return dns.query.tcp(query, SERVER, timeout=QUERY_TIMEOUT, port=port)
    return dns.query.udp(query, SERVER, timeout=QUERY_TIMEOUT, port=port)


def section(rrsets: list[dns.rrset.RRset]) -> list[tuple[str, str, set[str]]]:
    """A section as (owner as sent, type, record texts): owner case survives, unlike Name ==."""
    return [
        (rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), {rd.to_text() for rd in rrset})
        for rrset in rrsets
    ]


ANSWERS = [
    pytest.param("a.example", "A", {"192.0.2.1", "192.0.2.2"}, id="A"),
    pytest.param("aaaa.example", "AAAA", {"2001:db8::1"}, id="AAAA"),
    pytest.param("mx.example", "MX", {"10 mail.mx.example.", "20 backup.mx.example."}, id="MX"),
    pytest.param("1.2.0.192.in-addr.arpa", "PTR", {"a.example."}, id="PTR"),
    pytest.param(
        "txt.example",
        "TXT",
        {'"v=spf1 ip4:" "192.0.2.5 -all"', '"second record"'},
        id="TXT-several-strings-and-records",
    ),
    pytest.param("spf.example", "TXT", {'"v=spf1 -all"'}, id="SPF-served-as-TXT"),
    pytest.param("spf.example", "SPF", {'"v=spf1 -all"'}, id="SPF-type-99"),
    pytest.param("spf-and-txt.example", "TXT", {'"v=spf1 +all"'}, id="own-TXT-wins-over-SPF"),
    pytest.param("spf-and-txt.example", "SPF", {'"v=spf1 -all"'}, id="SPF-beside-own-TXT"),
    pytest.param("spf-txt-none.example", "SPF", {'"v=spf1 -all"'}, id="SPF-beside-TXT-NONE"),
    pytest.param(
        "txt-then-timeout.example", "TXT", {'"v=spf1 -all"'}, id="answered-before-TIMEOUT"
    ),
    pytest.param("spf-then-timeout.example", "SPF", {'"v=spf1 -all"'}, id="SPF-before-TIMEOUT"),
    pytest.param("a-timeout.example", "TXT", {'"v=spf1 a -all"'}, id="other-type-than-A-TIMEOUT"),
    pytest.param(
        "spf-copy-after-timeout.example", "SPF", {'"v=spf1 -all"'}, id="SPF-before-bare-TIMEOUT"
    ),
    pytest.param("A.EXAMPLE", "A", {"192.0.2.1", "192.0.2.2"}, id="upper-case-query"),
    pytest.param("a.ExAmPlE.", "A", {"192.0.2.1", "192.0.2.2"}, id="mixed-case-query"),
]


@pytest.mark.daemon
@pytest.mark.parametrize(("qname", "rdtype", "records"), ANSWERS)
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_answer(port: int, qname: str, rdtype: str, records: set[str], tcp: bool) -> None:
    response = ask(port, qname, rdtype, tcp=tcp)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    owner = qname if qname.endswith(".") else qname + "."
    assert section(response.answer) == [(owner, rdtype, records)]
    assert response.answer[0].ttl == 300
    assert response.authority == []


NEGATIVES = [
    pytest.param("missing.example", "A", dns.rcode.NXDOMAIN, [], id="NXDOMAIN"),
    pytest.param("deep.missing.example", "TXT", dns.rcode.NXDOMAIN, [], id="NXDOMAIN-deep"),
    pytest.param("a.example", "TXT", dns.rcode.NOERROR, [], id="NODATA"),
    pytest.param("a.example", "SPF", dns.rcode.NOERROR, [], id="NODATA-SPF-type"),
    pytest.param("spf-txt-none.example", "TXT", dns.rcode.NOERROR, [], id="TXT-NONE-is-NODATA"),
    pytest.param("txt.example", "SPF", dns.rcode.NOERROR, [], id="TXT-not-served-as-SPF"),
    pytest.param(
        "dangling.example",
        "A",
        dns.rcode.NXDOMAIN,
        [("dangling.example.", "CNAME", {"missing.example."})],
        id="CNAME-to-missing-name",
    ),
]


@pytest.mark.parametrize(("qname", "rdtype", "rcode", "answer"), NEGATIVES)
def test_negative_answer_has_soa(
    port: int, qname: str, rdtype: str, rcode: dns.rcode.Rcode, answer: list[object]
) -> None:
    response = ask(port, qname, rdtype)
    assert response.rcode() == rcode
    assert response.flags & dns.flags.AA
    assert section(response.answer) == answer
    [soa] = response.authority
    assert soa.rdtype == dns.rdatatype.SOA
    assert soa.ttl == 300
    assert soa[0].minimum == 300  # the negative-caching TTL (RFC 2308 §5)
    assert response.question[0].name.is_subdomain(soa.name)


SILENT = [
    pytest.param("timeout.example", "A", id="TIMEOUT-entry-A"),
    pytest.param("timeout.example", "TXT", id="TIMEOUT-entry-TXT"),
    pytest.param("txt-then-timeout.example", "A", id="type-not-answered-before-TIMEOUT"),
    pytest.param("spf-then-timeout.example", "TXT", id="TXT-NONE-then-TIMEOUT"),
    pytest.param("a-timeout.example", "A", id="A-TIMEOUT"),
    pytest.param("spf-copy-after-timeout.example", "TXT", id="TXT-copy-of-SPF-after-TIMEOUT"),
]


@pytest.mark.daemon
@pytest.mark.parametrize(("qname", "rdtype"), SILENT)
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_timeout_gets_no_reply(port: int, qname: str, rdtype: str, tcp: bool) -> None:
    query = dns.message.make_query(qname, rdtype)
    send = dns.query.tcp if tcp else dns.query.udp
    with pytest.raises(dns.exception.Timeout):
        send(query, SERVER, timeout=SILENCE_TIMEOUT, port=port)


def test_zero_string_txt_is_a_record_with_empty_rdata(port: int) -> None:
    query = dns.message.make_query("zero.example", "TXT")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(QUERY_TIMEOUT)
        client.sendto(query.to_wire(), (SERVER, port))
        wire = client.recv(65535)
    # Read off the octets, not through dnspython: 2.9 and later drop a TXT record of no strings
    # when parsing, older releases keep it. One answer record, and it is the message's end:
    # its TYPE (TXT), CLASS (IN), TTL and an RDLENGTH of 0 are the last ten octets.
    assert int.from_bytes(wire[6:8], "big") == 1
    rdtype, rdclass, rdlength = wire[-10:-8], wire[-8:-6], wire[-2:]
    assert (rdtype, rdclass, rdlength) == (b"\x00\x10", b"\x00\x01", b"\x00\x00")


@pytest.mark.daemon
@pytest.mark.parametrize(
    ("qname", "strings"),
    [
        pytest.param("long.example", (b"x" * 255, b"x" * 255, b"x" * 90), id="split-at-255"),
        pytest.param(
            "bytes.example",
            ("\u00ef\u00bb\u00bfExplanation a:ctrl\rptr\n\x96".encode(),),
            id="utf8-and-control-characters",
        ),
    ],
)
def test_txt_strings_arrive_byte_for_byte(port: int, qname: str, strings: tuple[bytes]) -> None:
    [rrset] = ask(port, qname, "TXT", tcp=True).answer  # 600 bytes do not fit in 512
    assert [rdata.strings for rdata in rrset] == [strings]


def test_cname_chain_is_followed(port: int) -> None:
    response = ask(port, "cname.example", "A")
    assert response.rcode() == dns.rcode.NOERROR
    assert section(response.answer) == [
        ("cname.example.", "CNAME", {"hop.example."}),
        ("hop.example.", "CNAME", {"A.example."}),
        ("A.example.", "A", {"192.0.2.1", "192.0.2.2"}),
    ]


def test_cname_query_is_not_followed(port: int) -> None:
    response = ask(port, "cname.example", "CNAME")
    assert section(response.answer) == [("cname.example.", "CNAME", {"hop.example."})]


@pytest.mark.parametrize(
    ("qname", "answer"),
    [
        pytest.param(
            "self-loop.example",
            [("self-loop.example.", "CNAME", {"self-loop.example."})],
            id="to-itself",
        ),
        pytest.param(
            "loop1.example",
            [
                ("loop1.example.", "CNAME", {"loop2.example."}),
                ("loop2.example.", "CNAME", {"loop1.example."}),
            ],
            id="two-names",
        ),
    ],
)
def test_cname_loop_is_answered_as_far_as_it_goes(
    port: int, qname: str, answer: list[object]
) -> None:
    response = ask(port, qname, "A")
    assert response.rcode() == dns.rcode.NOERROR
    assert section(response.answer) == answer
    assert ask(port, "a.example", "A").answer, "the server still answers after a loop"


@pytest.mark.daemon
@pytest.mark.parametrize(
    ("qname", "kinds"),
    [
        pytest.param("chain4.example", ["CNAME"] * MAX_CNAME_CHAIN + ["A"], id="at-the-limit"),
        pytest.param("chain0.example", ["CNAME"] * MAX_CNAME_CHAIN, id="past-the-limit"),
    ],
)
def test_cname_chain_length_is_limited(port: int, qname: str, kinds: list[str]) -> None:
    response = ask(port, qname, "A", tcp=True)
    assert [dns.rdatatype.to_text(rrset.rdtype) for rrset in response.answer] == kinds


def test_big_answer_is_truncated_over_udp(port: int) -> None:
    response = ask(port, "big.example", "TXT")
    assert response.flags & dns.flags.TC
    assert response.answer == []
    assert response.edns == -1


@pytest.mark.daemon
def test_big_answer_is_whole_over_tcp(port: int) -> None:
    response = ask(port, "big.example", "TXT", tcp=True)
    assert not response.flags & dns.flags.TC
    assert len(response.answer[0]) == 6


def test_big_answer_fits_the_edns_payload(port: int) -> None:
    response = ask(port, "big.example", "TXT", payload=4096)
    assert not response.flags & dns.flags.TC
    assert len(response.answer[0]) == 6
    assert response.edns == 0


def test_small_edns_payload_still_gets_512_bytes(port: int) -> None:
    response = ask(port, "txt.example", "TXT", payload=100)
    assert not response.flags & dns.flags.TC
    assert response.edns == 0


def test_reply_echoes_id_and_question(port: int) -> None:
    query = dns.message.make_query("A.Example", "A", use_edns=False)
    query.id = 4242
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(QUERY_TIMEOUT)
        client.sendto(query.to_wire(), (SERVER, port))
        response = dns.message.from_wire(client.recv(65535))
    assert response.id == 4242
    assert response.flags & dns.flags.QR
    assert [(q.name.to_text(), q.rdtype) for q in response.question] == [
        ("A.Example.", dns.rdatatype.A)
    ]


@pytest.mark.daemon
def test_several_queries_on_one_tcp_connection(port: int) -> None:
    with socket.create_connection((SERVER, port), timeout=QUERY_TIMEOUT) as connection:
        for qname in ("a.example", "txt.example", "missing.example"):
            query = dns.message.make_query(qname, "A")
            dns.query.send_tcp(connection, query)
            response, _ = dns.query.receive_tcp(connection, expiration=None)
            assert response.id == query.id


@pytest.mark.parametrize(
    ("wire", "reply"),
    [
        pytest.param(b"\x12", None, id="shorter-than-a-header"),
        pytest.param(b"\x12\x34\x01\x00" + b"\xff" * 20, "FORMERR", id="garbage-after-header"),
        pytest.param(b"\x12\x34\x81\x80" + b"\x00" * 8, None, id="a-response-not-a-query"),
    ],
)
def test_malformed_query(port: int, wire: bytes, reply: str | None) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(SILENCE_TIMEOUT)
        client.sendto(wire, (SERVER, port))
        if reply is None:
            with pytest.raises(TimeoutError):
                client.recv(65535)
        else:
            answer = client.recv(65535)
            query_id, flags = struct.unpack("!HH", answer[:4])
            assert query_id == 0x1234
            assert dns.rcode.from_flags(flags, 0) == dns.rcode.from_text(reply)
    assert ask(port, "a.example", "A").answer, "the server still answers"


def test_every_suite_zone_loads() -> None:
    with SUITE.open("rb") as suite:
        scenarios = list(yaml.safe_load_all(suite))
    for scenario in scenarios:
        Zone.from_zonedata(scenario["zonedata"])


@pytest.mark.daemon
def test_start_up_error_quotes_the_servers_stderr() -> None:
    with pytest.raises(ServerProcessError, match="expected a list of entries"):  # noqa: SIM117
        with running_dns_server({"bad.example": {"A": "192.0.2.1"}}):
            pytest.fail("the server should not have started")


DELAY = 0.2
CONCURRENT_QUERIES = 20


@pytest.mark.daemon
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_delay_holds_each_reply_back_without_serialising(tcp: bool) -> None:
    """--delay: every reply comes no sooner than the delay, and all of them at about the same
    time, not one delay after another (that would take CONCURRENT_QUERIES * DELAY seconds)."""
    with running_dns_server(ZONE, delay=DELAY) as delayed_port:
        started = time.monotonic()
        with ThreadPoolExecutor(CONCURRENT_QUERIES) as pool:
            timings = list(
                pool.map(lambda _: timed_ask(delayed_port, tcp), range(CONCURRENT_QUERIES))
            )
        total = time.monotonic() - started
    assert all(answered for _, answered in timings)
    assert min(elapsed for elapsed, _ in timings) >= DELAY
    assert total < 2.0, f"{CONCURRENT_QUERIES} queries took {total:.2f} s: serialised?"


def timed_ask(port: int, tcp: bool) -> tuple[float, bool]:
    """Seconds one query took, and whether it got its records."""
    started = time.monotonic()
    response = ask(port, "a.example", "A", tcp=tcp)
    return time.monotonic() - started, bool(response.answer)


BURST_SOCKETS = 50  # far below the usual limit of 1024 open files
BURST_PER_SOCKET = 40  # replies each socket's own default buffer holds until read


@pytest.mark.daemon
def test_a_burst_of_queries_is_answered_whole(port: int) -> None:
    """Thousands of queries sent before any reply is read all get their reply: the server's
    receive buffer holds a burst the flood benchmark sends, instead of dropping the excess."""
    sockets = []
    try:
        wires = []
        for number in range(BURST_SOCKETS * BURST_PER_SOCKET):
            query = dns.message.make_query("a.example", "A", use_edns=False)
            query.id = number
            wires.append(query.to_wire())
        for _ in range(BURST_SOCKETS):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sockets.append(sock)
            sock.connect((SERVER, port))
        # Sent in a tight loop, far faster than one Python thread can answer them.
        for number, wire in enumerate(wires):
            sockets[number % BURST_SOCKETS].send(wire)
        answered = 0
        deadline = time.monotonic() + 5.0  # one deadline for all: a dropped query costs no wait
        for sock in sockets:
            for _ in range(BURST_PER_SOCKET):
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                try:
                    answered += bool(dns.message.from_wire(sock.recv(65535)).answer)
                except TimeoutError:
                    break
    finally:
        for sock in sockets:
            sock.close()
    assert answered == BURST_SOCKETS * BURST_PER_SOCKET
