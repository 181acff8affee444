"""The daemon's life as systemd runs it: notify, socket activation, reload, graceful stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.support.fixtures import REPO_ROOT, ask, running_dns_server

pytestmark = pytest.mark.daemon

ZONE = {
    "sender.example": [{"TXT": "v=spf1 ip4:192.0.2.0/24 -all"}],
    "slow.example": ["TIMEOUT"],
}
WAIT = 15.0  # seconds for anything the daemon must do "promptly" on a loaded CI machine


def request(sender: str, client: str = "203.0.113.9", instance: str = "") -> bytes:
    lines = [
        "request=smtpd_access_policy",
        "protocol_state=RCPT",
        f"client_address={client}",
        "helo_name=h.client.example",
        f"sender={sender}",
        f"instance={instance or sender + client + str(time.monotonic_ns())}",
    ]
    return ("\n".join(lines) + "\n\n").encode()


class Daemon:
    """`python -m spfpolicy serve` with a NOTIFY_SOCKET the test reads, like systemd's."""

    def __init__(self, tmp_path: Path, config: str, pass_fd: int | None = None) -> None:
        self.config_path = tmp_path / "spfpolicy.toml"
        self.config_path.write_text(config)
        self.log_path = tmp_path / "daemon.log"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(tmp_path / "notify.sock"))
        env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock"))
        env["PYTHONPATH"] = str(REPO_ROOT)
        command: Sequence[str] = [
            sys.executable,
            "-m",
            "spfpolicy",
            "serve",
            "--config",
            str(self.config_path),
        ]
        pass_fds: tuple[int, ...] = ()
        if pass_fd is not None:
            # Like systemd: the socket at fd 3, LISTEN_PID naming the daemon's own pid (exec
            # keeps the pid, so the wrapper can set it before becoming the daemon).
            wrapper = (
                "import os, sys; "
                f"os.dup2({pass_fd}, 3); os.close({pass_fd}); "
                "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); "
                "os.execv(sys.executable, sys.argv[1:])"
            )
            command = [sys.executable, "-c", wrapper, *command]
            pass_fds = (pass_fd,)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                pass_fds=pass_fds,
            )

    def messages(self, timeout: float = WAIT) -> str:
        """The next sd_notify message."""
        self.notify.settimeout(timeout)
        try:
            return self.notify.recv(4096).decode()
        except TimeoutError:
            raise AssertionError(f"no notify message; log:\n{self.log()}") from None

    def wait_ready(self) -> str:
        message = self.messages()
        assert message.startswith("READY=1"), message
        return message

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_shows(self, text: str, timeout: float = WAIT) -> bool:
        """Whether text appears in the log within timeout: a background thread writes it."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=WAIT)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.notify.close()


@pytest.fixture(scope="module")
def dns_port() -> Iterator[int]:
    """A loopback DNS server for the daemon under test."""
    with running_dns_server(ZONE) as port:
        yield port


def config_text(
    socket_path: Path, dns_port: int, extra: str = "", query_timeout: float = 1.0
) -> str:
    return (
        f'[server]\nlisten = ["unix:{socket_path}"]\n'
        f'[dns]\nnameservers = ["127.0.0.1"]\nport = {dns_port}\nquery_timeout = {query_timeout}\n'
        f'[metrics]\nlisten = ""\n{extra}'
    )


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[Daemon]]:
    """Started daemons, stopped at the end of the test whatever happened."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop()


def connect(path: Path) -> socket.socket:
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(WAIT)
    try:
        connection.connect(str(path))
    except OSError:
        connection.close()
        raise
    return connection


def test_notify_ready_names_the_sockets_and_stop_says_stopping(
    tmp_path: Path, dns_port: int, daemons: list[Daemon]
) -> None:
    daemon = Daemon(tmp_path, config_text(tmp_path / "policy.sock", dns_port))
    daemons.append(daemon)
    assert f"STATUS=listening on unix:{tmp_path / 'policy.sock'}" in daemon.wait_ready()
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.messages() == "STOPPING=1"
    assert daemon.process.wait(timeout=WAIT) == 0
    assert not (tmp_path / "policy.sock").exists()


def test_socket_activation_serves_the_passed_socket(
    tmp_path: Path, dns_port: int, daemons: list[Daemon]
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        # The config names the same address: the daemon must use the passed socket, not bind.
        config = (
            f'[server]\nlisten = ["inet:127.0.0.1:{port}", "unix:{tmp_path / "own.sock"}"]\n'
            f'[dns]\nnameservers = ["127.0.0.1"]\nport = {dns_port}\n[metrics]\nlisten = ""\n'
        )
        daemon = Daemon(tmp_path, config, pass_fd=listener.fileno())
        daemons.append(daemon)
        ready = daemon.wait_ready()
    assert f"inet:127.0.0.1:{port}" in ready
    assert f"unix:{tmp_path / 'own.sock'}" in ready
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as connection:
        assert ask(connection, request("u@sender.example", "192.0.2.1")).startswith(
            "PREPEND Received-SPF: pass"
        )
    with connect(tmp_path / "own.sock") as connection:
        assert ask(connection, request("u@sender.example")).startswith("550 5.7.23 ")


def test_reload_applies_a_good_file_to_open_connections(
    tmp_path: Path, dns_port: int, daemons: list[Daemon]
) -> None:
    socket_path = tmp_path / "policy.sock"
    daemon = Daemon(tmp_path, config_text(socket_path, dns_port))
    daemons.append(daemon)
    daemon.wait_ready()
    with connect(socket_path) as connection:
        assert ask(connection, request("u@sender.example")).startswith("550 5.7.23 ")
        daemon.config_path.write_text(
            config_text(socket_path, dns_port, '[actions.mailfrom]\nfail = "accept"\n')
        )
        daemon.process.send_signal(signal.SIGHUP)
        assert daemon.messages().startswith("RELOADING=1\nMONOTONIC_USEC=")
        assert daemon.messages() == "READY=1\nSTATUS=configuration reloaded"
        # Same connection, new configuration.
        assert ask(connection, request("u@sender.example")).startswith("PREPEND Received-SPF: fail")
    assert daemon.log_shows("configuration reloaded"), daemon.log()


def test_reload_with_a_bad_file_keeps_the_running_config(
    tmp_path: Path, dns_port: int, daemons: list[Daemon]
) -> None:
    socket_path = tmp_path / "policy.sock"
    daemon = Daemon(tmp_path, config_text(socket_path, dns_port))
    daemons.append(daemon)
    daemon.wait_ready()
    daemon.config_path.write_text('[actions.mailfrom]\nfail = "drop"\n')
    daemon.process.send_signal(signal.SIGHUP)
    assert daemon.messages().startswith("RELOADING=1")
    assert daemon.messages() == "READY=1\nSTATUS=reload failed; running the previous configuration"
    with connect(socket_path) as connection:
        assert ask(connection, request("u@sender.example")).startswith("550 5.7.23 ")
    expected = f"{daemon.config_path}: actions.mailfrom.fail: expected one of"
    assert daemon.log_shows(expected), daemon.log()
    assert "reload failed, keeping the running configuration" in daemon.log()


def test_sigterm_lets_requests_in_flight_finish(
    tmp_path: Path, dns_port: int, daemons: list[Daemon]
) -> None:
    socket_path = tmp_path / "policy.sock"
    daemon = Daemon(tmp_path, config_text(socket_path, dns_port, query_timeout=2.0))
    daemons.append(daemon)
    daemon.wait_ready()
    with connect(socket_path) as busy, connect(socket_path) as idle:
        busy.sendall(request("u@slow.example"))  # the DNS server never answers: 2 s in flight
        time.sleep(0.5)
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.messages() == "STOPPING=1"
        assert idle.recv(10) == b""  # an idle connection is closed at once
        reply = ask(busy, b"")
        assert reply.startswith("DEFER_IF_PERMIT 4.7.24 "), reply
    assert daemon.process.wait(timeout=WAIT) == 0
    assert not socket_path.exists()  # the socket file is removed: Postfix sees a clean refusal


def test_a_second_sigterm_exits_at_once(
    tmp_path: Path, dns_port: int, daemons: list[Daemon]
) -> None:
    socket_path = tmp_path / "policy.sock"
    extra = "[spf]\ntime_budget = 60\n"
    daemon = Daemon(tmp_path, config_text(socket_path, dns_port, extra, query_timeout=30.0))
    daemons.append(daemon)
    daemon.wait_ready()
    with connect(socket_path) as busy:
        busy.sendall(request("u@slow.example"))  # in flight for 30 s
        time.sleep(0.5)
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.messages() == "STOPPING=1"
        started = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.process.wait(timeout=WAIT) == 0
        assert time.monotonic() - started < 5.0
    assert "second stop signal" in daemon.log()
