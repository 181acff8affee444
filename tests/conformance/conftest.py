"""Fixtures for the RFC 7208 suite: per scenario, a DNS server, a daemon and one connection."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.support.fixtures import (
    ServerProcess,
    connect_unix,
    running_dns_server,
    running_policy_daemon,
)

REPLY_TIMEOUT = 30.0  # well past the daemon's time_budget below: a late reply is a failure too
MAX_UNIX_PATH = 100  # sun_path holds 108 bytes on Linux; keep a margin
REPLY_END = b"\n\n"

# The daemon as the suite needs it: every result visible in the reply (a fail rejects, the rest
# is accepted with a Received-SPF header naming the result), no HELO check to get in the way of
# the MAIL FROM result, nothing skipped, and DNS from the scenario's own server.
CONFIG_TEMPLATE = """\
[server]
listen = [{listen}]
[dns]
nameservers = ["127.0.0.1"]
port = {dns_port}
query_timeout = 1.0
[spf]
time_budget = 8.0
check_helo = false
[actions.mailfrom]
pass = "accept"
fail = "reject"
softfail = "accept"
neutral = "accept"
none = "accept"
temperror = "accept"
permerror = "accept"
[headers]
type = "received-spf"
[skip]
networks = []
[metrics]
listen = ""
"""


def daemon_config(socket_path: Path, dns_port: int, *, caches: bool = True) -> str:
    """The TOML configuration of the daemon under test; caches False turns off the DNS cache
    and the result caches (and with them address maps and evaluations over cached DNS)."""
    # A JSON string is a valid TOML basic string for any path we make.
    text = CONFIG_TEMPLATE.format(listen=json.dumps(f"unix:{socket_path}"), dns_port=dns_port)
    if not caches:
        text = text.replace("[dns]\n", "[dns]\ncache_size = 0\n")
        text = text.replace("[spf]\n", "[spf]\nresult_cache = false\n")
    return text


def encode_request(attributes: Mapping[str, str]) -> bytes:
    """A policy request as Postfix writes it: name=value lines, then an empty line."""
    for name, value in attributes.items():
        if "\n" in value or "=" in name:
            raise ValueError(f"Postfix cannot send {name}={value!r}")
    lines = "".join(f"{name}={value}\n" for name, value in attributes.items())
    return (lines + "\n").encode("utf-8")


class PolicyClient:
    """A persistent connection to the daemon, used the way one Postfix smtpd process uses it."""

    def __init__(self, daemon: ServerProcess, socket_path: Path) -> None:
        """Connect to `socket_path` once the daemon listens there."""
        self._daemon = daemon
        self._socket_path = socket_path
        self._connection: socket.socket | None = connect_unix(daemon, socket_path)
        self._buffer = b""

    def ask(self, attributes: Mapping[str, str]) -> bytes:
        """Send one request and return the raw reply, up to and including its empty line."""
        if self._connection is None:  # a failed exchange dropped it: start clean
            self._connection = connect_unix(self._daemon, self._socket_path)
        try:
            self._connection.settimeout(REPLY_TIMEOUT)
            self._connection.sendall(encode_request(attributes))
            return self._read_reply(self._connection)
        except BaseException:
            # A reply still on its way would be read as the answer to the next request.
            self.close()
            raise

    def _read_reply(self, connection: socket.socket) -> bytes:
        while REPLY_END not in self._buffer:
            try:
                chunk = connection.recv(4096)
            except TimeoutError:
                raise self._daemon.failure(f"no reply within {REPLY_TIMEOUT:g} s") from None
            if not chunk:
                raise self._daemon.failure("closed the connection instead of replying")
            self._buffer += chunk
        reply, _, self._buffer = self._buffer.partition(REPLY_END)
        return reply + REPLY_END

    def close(self) -> None:
        """Close the connection (the daemon must take that in its stride)."""
        if self._connection is not None:
            with contextlib.suppress(OSError):
                self._connection.close()
        self._connection = None
        self._buffer = b""


class ScenarioRunner:
    """Runs the DNS server, daemon and connection of one scenario at a time.

    Asking for another scenario stops the current one first, so whatever order pytest runs the
    cases in, each scenario starts once per run of its consecutive cases.
    """

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        """Make working directories (config, socket, daemon log) with `tmp_path_factory`."""
        self._tmp_path_factory = tmp_path_factory
        self._key: str | None = None
        self._client: PolicyClient | None = None
        self._stack = ExitStack()

    def client(self, key: str, zonedata: Mapping[str, Any], *, caches: bool = True) -> PolicyClient:
        """The connection to the daemon for scenario `key`, starting it if need be."""
        key = f"{key} (caches {'on' if caches else 'off'})"
        if self._key == key and self._client is not None:
            return self._client
        self.close()
        with ExitStack() as stack:
            dns_port = stack.enter_context(running_dns_server(zonedata))
            workdir = self._tmp_path_factory.mktemp("rfc7208-")
            socket_path = workdir / "policy.sock"
            if len(bytes(socket_path)) > MAX_UNIX_PATH:
                raise RuntimeError(f"{socket_path} is too long for a unix socket: use --basetemp")
            config_path = workdir / "spfpolicy.toml"
            config_path.write_text(
                daemon_config(socket_path, dns_port, caches=caches), encoding="utf-8"
            )
            daemon = stack.enter_context(running_policy_daemon(config_path, workdir / "daemon.log"))
            client = PolicyClient(daemon, socket_path)
            stack.callback(client.close)
            self._stack = stack.pop_all()  # started: keep it all running past this block
        self._key, self._client = key, client
        return client

    def close(self) -> None:
        """Stop the current scenario; raises if its daemon did not stop cleanly."""
        self._key, self._client = None, None
        stack, self._stack = self._stack, ExitStack()
        stack.close()


@pytest.fixture(scope="module")
def scenario_runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScenarioRunner]:
    """A ScenarioRunner for the module; the last scenario is stopped at the end."""
    runner = ScenarioRunner(tmp_path_factory)
    try:
        yield runner
    finally:
        runner.close()
