"""The test kinds of tests/conftest.py: a unit test really cannot reach a server or a process."""

from __future__ import annotations

import socket
import subprocess

import pytest


def test_a_unit_test_cannot_bind_or_connect_a_socket() -> None:
    with socket.socket() as sock, pytest.raises(AssertionError, match="mark it daemon"):
        sock.bind(("127.0.0.1", 0))
    with socket.socket() as sock, pytest.raises(AssertionError, match="mark it daemon"):
        sock.connect(("127.0.0.1", 9))


def test_a_unit_test_cannot_start_a_process() -> None:
    with pytest.raises(AssertionError, match="mark it daemon"):
        subprocess.run(["true"], check=False)


def test_socketpair_stays_allowed_in_a_unit_test() -> None:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(b"x")
        assert right.recv(1) == b"x"


@pytest.mark.daemon
def test_a_daemon_test_may_bind() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        assert sock.getsockname()[1] > 0
