"""Golden wire tests: recorded requests replayed through the real server and the real service.

Each tests/wire/golden/NAME.request holds the bytes an smtpd process sends on one connection;
NAME.reply holds the exact bytes the daemon must answer before the connection ends (a malformed
request ends it without a reply; garbage-closes ends with one, so that the close is a clean
FIN). Every file is replayed in writes of 4096, 16 and 1 bytes: the answers may not depend on
how the bytes arrive. The server and service are wired by cli as the daemon wires them, the
caches included, and each file is replayed once more after other messages warmed them:
answered from the caches on the I/O thread, the replies must be the same bytes.
Set SPFPOLICY_REGENERATE_GOLDEN=1 to rewrite the .reply files after a deliberate change, then
read the diff.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from spfpolicy import cli
from spfpolicy.config.settings import parse_config
from spfpolicy.decision.actions import Receiver
from spfpolicy.resolver.answers import DnsFailure
from spfpolicy.wire.server import PolicyServer
from tests.support.fakedns import FakeResolver

WIRE = Path(__file__).with_name("golden")
CASES = sorted(path.stem for path in WIRE.glob("*.request"))
REGENERATE = os.environ.get("SPFPOLICY_REGENERATE_GOLDEN") == "1"

ZONE = {
    "sender.example": ["TXT v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/48 -all"],
    "mail.sender.example": ["TXT v=spf1 ip4:192.0.2.0/24 -all"],
    "explained.example": ["TXT v=spf1 -all exp=why.explained.example"],
    "why.explained.example": ["TXT %{i} may not send mail for %{d}"],
    "soft.example": ["TXT v=spf1 ~all"],
    "broken.example": ["TXT v=spf1 ip4:192.0.2.300 -all"],
}


@pytest.fixture
def server() -> Iterator[PolicyServer]:
    """The daemon's server and service as cli wires them (fresh caches) over the fake zone."""
    config = parse_config('[server]\nlisten = ["inet:127.0.0.1:0"]\n')
    upstream = FakeResolver(ZONE, failing={"timeout.example": DnsFailure.TIMEOUT})
    resolver = cli.build_resolver(config, upstream=upstream)
    receiver = Receiver("mx.receiver.example", "mx.receiver.example")
    service = cli.build_service(config, resolver=resolver, receiver=receiver)
    policy_server = cli.build_server(config, service)
    policy_server.start()
    try:
        yield policy_server
    finally:
        policy_server.shutdown(grace=1.0)


def replay(server: PolicyServer, request: bytes, write_size: int) -> bytes:
    """Send request in pieces of write_size, half-close, and read every reply until EOF."""
    address = server.addresses[0]
    with socket.create_connection((address.host, address.port), timeout=10) as client:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for start in range(0, len(request), write_size):
            client.sendall(request[start : start + write_size])
        client.shutdown(socket.SHUT_WR)
        received = bytearray()
        while chunk := client.recv(65536):
            received += chunk
    return bytes(received)


@pytest.mark.daemon
@pytest.mark.parametrize("write_size", [4096, 16, 1])
@pytest.mark.parametrize("case", CASES)
def test_golden_reply(server: PolicyServer, case: str, write_size: int) -> None:
    request = (WIRE / f"{case}.request").read_bytes()
    reply = replay(server, request, write_size)
    golden = WIRE / f"{case}.reply"
    if REGENERATE and write_size == 4096:
        golden.write_bytes(reply)
    assert reply == golden.read_bytes()


@pytest.mark.daemon
@pytest.mark.parametrize("case", CASES)
def test_golden_reply_from_warm_caches(server: PolicyServer, case: str) -> None:
    request = (WIRE / f"{case}.request").read_bytes()
    # Other messages of the same senders and clients first: new instances, so not the memo.
    replay(server, request.replace(b"instance=", b"instance=warm-"), 4096)
    assert replay(server, request, 4096) == (WIRE / f"{case}.reply").read_bytes()


def test_every_case_has_a_reply_file() -> None:
    requests = {path.stem for path in WIRE.glob("*.request")}
    replies = {path.stem for path in WIRE.glob("*.reply")}
    assert requests == replies
    assert len(requests) >= 10
