"""Shared test helpers, and the markers that say what a test needs.

unit (the default): pure and in-process; a guard makes such a test fail if it binds or
connects a socket or starts a process. daemon: starts the daemon, the policy server or a DNS
server on loopback. system: needs Postfix, systemd tools, promtool, man or the package tools.
`pytest -m unit` runs in seconds; `make test` runs everything.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

import pytest

# .ci/run sets this: there, a missing system tool is a failure, never a skip.
REQUIRE_SYSTEM_TOOLS = os.environ.get("SPFPOLICY_REQUIRE_SYSTEM_TOOLS") == "1"

KINDS = ("unit", "daemon", "system")
# Older, narrower markers and the kind they imply.
IMPLIED_KINDS = {"postfix": "system", "conformance": "daemon"}


def require_tool(name: str, package: str) -> str:
    """The path of a system tool, or skip (fail under CI) saying how to install it."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install {package})"
        if REQUIRE_SYSTEM_TOOLS:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give every test its kind: the one it is marked with, implied, or unit."""
    for item in items:
        for marker, kind in IMPLIED_KINDS.items():
            if item.get_closest_marker(marker) is not None:
                item.add_marker(kind)
        kinds = [kind for kind in KINDS if item.get_closest_marker(kind) is not None]
        if not kinds:
            item.add_marker("unit")
        elif "unit" in kinds and len(kinds) > 1:
            raise pytest.UsageError(f"{item.nodeid}: marked {kinds}; a test has one kind")


def _not_in_a_unit_test(*args: object, **kwargs: object) -> None:
    raise AssertionError(
        "a unit test binds or connects a socket or starts a process: mark it daemon or system"
    )


@pytest.fixture(autouse=True)
def _unit_tests_stay_in_process(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Make the unit marker true: no server, no network, no subprocess (socketpair is fine)."""
    if request.node.get_closest_marker("unit") is not None:
        for name in ("bind", "connect", "connect_ex"):
            monkeypatch.setattr(socket.socket, name, _not_in_a_unit_test)
        monkeypatch.setattr(subprocess.Popen, "__init__", _not_in_a_unit_test)
