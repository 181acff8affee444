"""The command line: config check exit codes and messages, check's report, serve's errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from spfpolicy import cli


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spfpolicy.toml"
    path.write_text(text)
    return path


def test_config_check_accepts_a_good_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, '[spf]\ntime_budget = 15.0\n[actions.mailfrom]\nsoftfail = "warn"\n')
    assert cli.main(["config", "check", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"{path}: OK"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "[dns]\nport = 0\n", "dns.port: expected an integer from 1 to 65535, got 0", id="range"
        ),
        pytest.param("[spf]\nchek_helo = true\n", "[spf]: unknown key 'chek_helo'", id="unknown"),
        pytest.param("[spf\n", "not valid TOML", id="syntax"),
    ],
)
def test_config_check_rejects_a_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = write(tmp_path, text)
    assert cli.main(["config", "check", str(path)]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"spfpolicy: {path}: ")
    assert message in error


def test_config_check_of_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["config", "check", str(tmp_path / "absent.toml")]) == 1
    assert "cannot read the file" in capsys.readouterr().err


def test_check_shows_results_header_and_action(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A client in the skip networks: check says so and shows the DUNNO it would answer."""
    assert cli.main(["check", "--ip", "127.0.0.1", "--sender", "u@sender.example"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "skipped: skip_network (no SPF check for this request)"
    assert out[-2:] == ["header: (none)", "action=DUNNO"]


def test_serve_with_a_bad_config_exits_1_with_the_reason(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nlisten = ["inet:127.0.0.1:99999"]\n')
    done = subprocess.run(
        [sys.executable, "-m", "spfpolicy", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert f"{path}: server.listen:" in done.stderr


def test_serve_on_a_busy_port_exits_1_naming_the_address(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = write(tmp_path, f'[server]\nlisten = ["inet:127.0.0.1:{port}"]\n')
        done = subprocess.run(
            [sys.executable, "-m", "spfpolicy", "serve", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 1
    assert f"inet:127.0.0.1:{port}" in done.stderr


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        cli.main(["check"])
    assert raised.value.code == 2
    assert "--ip" in capsys.readouterr().err
