"""systemd integration: the units verify and are hardened; socket passing and sd_notify parsing."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from spfpolicy.ops import notify
from spfpolicy.wire import activation
from tests.conftest import require_tool

UNITS = Path(__file__).parent.parent / "systemd"
MAX_EXPOSURE = 1.5  # systemd-analyze security: lower is better; Debian's best mail daemons ~2.3


def installed_units(tmp_path: Path) -> list[Path]:
    """The units as installed: ExecStart names the spfpolicy that this Python runs."""
    executable = Path(sys.executable).parent / "spfpolicy"
    assert executable.exists(), f"{executable}: install the package (make test does)"
    paths = []
    for unit in ("spfpolicy.service", "spfpolicy.socket"):
        text = (UNITS / unit).read_text().replace("/usr/bin/spfpolicy", str(executable))
        path = tmp_path / unit
        path.write_text(text)
        paths.append(path)
    return paths


@pytest.mark.system
def test_units_verify(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze", "systemd")
    done = subprocess.run(
        [analyze, "verify", "--man=no", *map(str, installed_units(tmp_path))],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr.strip() == ""


@pytest.mark.system
def test_service_exposure_is_low() -> None:
    analyze = require_tool("systemd-analyze", "systemd")
    done = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(UNITS / "spfpolicy.service")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    match = re.search(r"Overall exposure level for spfpolicy.service: (\d+\.\d+)", done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, done.stdout


def test_the_service_runs_as_its_own_user_and_reloads_with_sighup() -> None:
    service = (UNITS / "spfpolicy.service").read_text()
    for line in (
        "Type=notify",
        "User=_spfpolicy",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "CapabilityBoundingSet=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "MemoryDenyWriteExecute=yes",
        "Documentation=man:spfpolicy(8)",
    ):
        assert line in service.splitlines(), line
    socket_unit = (UNITS / "spfpolicy.socket").read_text().splitlines()
    assert "ListenStream=/var/spool/postfix/private/spfpolicy" in socket_unit
    assert "SocketUser=postfix" in socket_unit


@pytest.mark.parametrize(
    ("environ", "count"),
    [
        pytest.param({}, 0, id="not-activated"),
        pytest.param({"LISTEN_PID": "1", "LISTEN_FDS": "1"}, 0, id="another-process"),
        pytest.param({"LISTEN_PID": "{pid}", "LISTEN_FDS": "x"}, 0, id="garbage-count"),
    ],
)
def test_listen_sockets_ignores_what_is_not_for_us(environ: dict[str, str], count: int) -> None:
    env = {key: value.format(pid=os.getpid()) for key, value in environ.items()}
    env["LISTEN_FDNAMES"] = "policy"
    assert len(activation.listen_sockets(env)) == count
    assert env == {}  # never passed on to children


@pytest.mark.daemon
def test_notifier_sends_datagrams(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(str(tmp_path / "notify"))
        manager.settimeout(5)
        env = {"NOTIFY_SOCKET": str(tmp_path / "notify")}
        notifier = notify.Notifier(env)
        assert env == {}
        notifier.ready("listening on unix:/run/spfpolicy/policy.sock")
        notifier.reloading()
        notifier.stopping()
        messages = [manager.recv(1000).decode() for _ in range(3)]
    assert messages[0] == "READY=1\nSTATUS=listening on unix:/run/spfpolicy/policy.sock"
    assert re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=\d+", messages[1])
    assert messages[2] == "STOPPING=1"


@pytest.mark.daemon
def test_notifier_reaches_an_abstract_socket() -> None:
    name = f"spfpolicy-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind("\0" + name)
        manager.settimeout(5)
        notify.Notifier({"NOTIFY_SOCKET": "@" + name}).stopping()
        assert manager.recv(100) == b"STOPPING=1"


@pytest.mark.daemon
def test_a_vanished_manager_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notify.Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).ready()
    assert "cannot notify the service manager" in caplog.text


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = notify.Notifier({})
    assert notifier.address == ""
    notifier.ready()  # must not raise
