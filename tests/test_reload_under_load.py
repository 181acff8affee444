"""A configuration reload under load loses no request: each gets one answer, old or new config.

The real daemon process, K connections sending requests back to back, while the test rewrites
the config file (two configs whose answers to the same request differ) and sends SIGHUP a dozen
times, each time waiting for the daemon's sd_notify READY that ends the reload. A request sent
and answered within one configuration's span must get that configuration's answer; one that
straddles a reload may get either; none may get anything else, none may go unanswered, none
may be answered twice, and no connection may be closed.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.fixtures import (
    REPO_ROOT,
    ServerProcess,
    connect_unix,
    managed_process,
    read_reply,
    running_dns_server,
    running_policy_daemon,
)

pytestmark = pytest.mark.daemon

ZONE = {"sender.example": [{"TXT": "v=spf1 ip4:192.0.2.0/24 -all"}]}  # the client fails
CONNECTIONS = 10
RELOADS = 12
SPAN = 0.3  # seconds of traffic under each configuration
WAIT = 15.0  # for anything the daemon must do promptly on a loaded machine
# Two configurations and the start of their answer to the same failing request.
CONFIGS = ("", '[actions.mailfrom]\nfail = "accept"\n[headers]\ntype = "authentication-results"\n')
ANSWERS = ("550 5.7.23 SPF mailfrom check failed: ", "PREPEND Authentication-Results: ")


@dataclass(frozen=True)
class Exchange:
    sent: float  # time.monotonic() before the request was sent
    received: float  # ... once its reply was complete
    reply: str


@dataclass
class Connection:
    """One client connection's record: its exchanges, and what went wrong."""

    exchanges: list[Exchange] = field(default_factory=list)
    problem: str = ""


def request(instance: str) -> bytes:
    lines = [
        "request=smtpd_access_policy",
        "protocol_state=RCPT",
        "client_address=203.0.113.9",
        "helo_name=h.client.example",
        "sender=u@sender.example",
        "recipient=a@receiver.example",
        f"instance={instance}",  # a new message each time: nothing comes from the memo
    ]
    return ("\n".join(lines) + "\n\n").encode()


def exchange(connection: socket.socket, payload: bytes) -> str:
    """Send one request; its reply, which must come alone (no second reply behind it)."""
    connection.sendall(payload)
    reply = read_reply(connection)
    if reply.count(b"\n\n") != 1 or not reply.startswith(b"action="):
        raise AssertionError(f"not exactly one reply: {reply!r}")
    return reply.decode().removeprefix("action=").removesuffix("\n\n")


def keep_asking(path: Path, number: int, stop: threading.Event, record: Connection) -> None:
    """Send requests back to back on one connection until stop is set."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(WAIT)
            connection.connect(str(path))
            count = 0
            while not stop.is_set():
                count += 1
                sent = time.monotonic()
                reply = exchange(connection, request(f"reload.{number}.{count}"))
                record.exchanges.append(Exchange(sent, time.monotonic(), reply))
            connection.setblocking(False)
            try:
                extra = connection.recv(4096)
            except BlockingIOError:
                extra = None  # nothing pending: the connection is open and quiet
            if extra is not None:
                record.problem = f"after the last reply: {extra!r}"
    except (OSError, AssertionError) as error:
        record.problem = f"{type(error).__name__}: {error}"


class Notifications:
    """The NOTIFY_SOCKET the daemon reports READY and RELOADING to, as systemd's."""

    def __init__(self, path: Path) -> None:
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(path))
        self.socket.settimeout(WAIT)

    def next(self, daemon: ServerProcess) -> str:
        try:
            return self.socket.recv(4096).decode()
        except TimeoutError:
            raise AssertionError(f"no notify message; log:\n{daemon.output()}") from None


@pytest.fixture
def notifications(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Notifications]:
    """A notify socket, named in the environment the daemon inherits."""
    notify = Notifications(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    yield notify
    notify.socket.close()


def write_config(path: Path, base: str, number: int) -> None:
    """Replace the file in one step: the daemon never reads half a file."""
    temporary = path.with_suffix(".new")
    temporary.write_text(base + CONFIGS[number])
    os.replace(temporary, path)


def test_reloads_under_load_lose_no_request(tmp_path: Path, notifications: Notifications) -> None:
    socket_path = tmp_path / "policy.sock"
    config_path = tmp_path / "spfpolicy.toml"
    stop = threading.Event()
    records = [Connection() for _ in range(CONNECTIONS)]
    spans: list[tuple[int, float, float]] = []  # (config, from, to): answered in between
    with running_dns_server(ZONE) as dns_port:
        base = (
            f'[server]\nlisten = ["unix:{socket_path}"]\n'
            f'[dns]\nnameservers = ["127.0.0.1"]\nport = {dns_port}\n[metrics]\nlisten = ""\n'
        )
        write_config(config_path, base, 0)
        with running_policy_daemon(config_path, tmp_path / "daemon.log") as daemon:
            assert notifications.next(daemon).startswith("READY=1")
            threads = [
                threading.Thread(target=keep_asking, args=(socket_path, n, stop, records[n]))
                for n in range(CONNECTIONS)
            ]
            for thread in threads:
                thread.start()
            current, since = 0, time.monotonic()
            for _ in range(RELOADS):
                time.sleep(SPAN)
                current = 1 - current
                write_config(config_path, base, current)
                spans.append((1 - current, since, time.monotonic()))
                daemon.process.send_signal(signal.SIGHUP)
                assert notifications.next(daemon).startswith("RELOADING=1")
                assert notifications.next(daemon) == "READY=1\nSTATUS=configuration reloaded"
                since = time.monotonic()
            time.sleep(SPAN)
            stop.set()
            for thread in threads:
                thread.join(WAIT)
            spans.append((current, since, time.monotonic()))
            with connect_unix(daemon, socket_path) as last:
                last.settimeout(WAIT)
                assert exchange(last, request("reload.last")).startswith(ANSWERS[current])
    log = (tmp_path / "daemon.log").read_text()
    assert not any(thread.is_alive() for thread in threads)
    assert [record.problem for record in records] == [""] * CONNECTIONS
    exchanges = [e for record in records for e in record.exchanges]
    assert all(len(record.exchanges) > RELOADS for record in records)  # each kept asking
    strange = [e.reply for e in exchanges if not e.reply.startswith(ANSWERS)]
    assert not strange, strange[:5]
    for config, start, end in spans:
        within = [e for e in exchanges if start <= e.sent and e.received <= end]
        assert within, f"no request answered within the span of config {config}"
        wrong = [e for e in within if not e.reply.startswith(ANSWERS[config])]
        assert not wrong, (config, wrong[:3])
    assert log.count("configuration reloaded") == RELOADS
    assert "Traceback" not in log
    assert "reload failed" not in log


# `spfpolicy serve` with every PolicyService watched through a weak reference: once the second
# (the reloaded) one is in place and the test sends SIGUSR1, it prints which are still alive.
WATCHED_DAEMON = """
import gc, signal, sys, threading, time, weakref
from spfpolicy import cli
from spfpolicy.service.policyservice import PolicyService

services = []
build = PolicyService.__init__
def watched(self, *args, **kwargs):
    build(self, *args, **kwargs)
    services.append(weakref.ref(self))
PolicyService.__init__ = watched

def report(reloaded):
    reloaded.wait(30)
    time.sleep(0.5)  # set_handlers() comes after the build
    gc.collect()
    print("ALIVE", [ref() is not None for ref in services], flush=True)

reloaded = threading.Event()
signal.signal(signal.SIGUSR1, lambda *_: reloaded.set())  # the test says: reload is done
threading.Thread(target=report, args=(reloaded,), daemon=True).start()
sys.exit(cli.main(["serve", "--config", sys.argv[1]]))
"""


@pytest.mark.parametrize("evaluated", [False, True], ids=["skipped", "evaluated-on-a-worker"])
def test_a_reload_frees_the_service_it_replaces(
    tmp_path: Path, notifications: Notifications, evaluated: bool
) -> None:
    socket_path = tmp_path / "policy.sock"
    config_path = tmp_path / "spfpolicy.toml"
    script = tmp_path / "watched.py"
    script.write_text(WATCHED_DAEMON)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    with running_dns_server(ZONE) as dns_port:
        base = (
            f'[server]\nlisten = ["unix:{socket_path}"]\n'
            f'[dns]\nnameservers = ["127.0.0.1"]\nport = {dns_port}\n[metrics]\nlisten = ""\n'
        )
        write_config(config_path, base, 0)
        command = [sys.executable, str(script), str(config_path)]
        log = tmp_path / "daemon.log"
        with managed_process("policy daemon", command, log, cwd=REPO_ROOT, env=env) as daemon:
            assert notifications.next(daemon).startswith("READY=1")
            with connect_unix(daemon, socket_path) as connection:
                connection.settimeout(WAIT)
                if evaluated:
                    # A cold cache: a worker evaluates it, over DNS, and then sits idle.
                    reply = exchange(connection, request("reload.first"))
                    assert reply.startswith(ANSWERS[0])
                else:  # answered without DNS, on the event loop
                    skipped = request("reload.first").replace(b"\n\n", b"\nsasl_username=alice\n\n")
                    assert exchange(connection, skipped) == "DUNNO"
            write_config(config_path, base, 1)
            daemon.process.send_signal(signal.SIGHUP)
            assert notifications.next(daemon).startswith("RELOADING=1")
            assert notifications.next(daemon) == "READY=1\nSTATUS=configuration reloaded"
            daemon.process.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + WAIT
            while "ALIVE" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
    # The first service is gone; the second is the one answering.
    assert "ALIVE [False, True]" in log.read_text(), log.read_text()
