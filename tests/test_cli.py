"""The command line: config check exit codes and messages, check's report, serve's errors."""

from __future__ import annotations

import json
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


@pytest.mark.daemon
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


@pytest.mark.daemon
def test_serve_on_a_busy_port_exits_1_naming_the_address(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = write(
            tmp_path, f'[server]\nlisten = ["inet:127.0.0.1:{port}"]\n[metrics]\nlisten = ""\n'
        )
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


@pytest.mark.daemon
def test_check_against_a_real_dns_server(tmp_path: Path) -> None:
    """`spfpolicy check` as an administrator runs it: results, DNS, header and action line."""
    from tests.support.fixtures import running_dns_server

    zone = {
        "sender.example": [{"TXT": "v=spf1 mx -all"}, {"MX": [10, "mx.sender.example"]}],
        "mx.sender.example": [{"A": "192.0.2.25"}],
    }
    with running_dns_server(zone) as port:
        path = write(tmp_path, f'[dns]\nnameservers = ["127.0.0.1"]\nport = {port}\n')
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "spfpolicy",
                "check",
                "--config",
                str(path),
                "--ip",
                "192.0.2.25",
                "--helo",
                "mx.sender.example",
                "--sender",
                "user@sender.example",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "helo: none for postmaster@mx.sender.example"
    assert "  dns: mx.sender.example TXT -> no records" in lines
    assert "mailfrom: pass for user@sender.example" in lines
    assert "  mechanism: mx" in lines
    assert "  dns: sender.example MX -> 1 records" in lines
    assert lines[-2].startswith("header: Received-SPF: pass (")
    assert lines[-1].startswith("action=PREPEND Received-SPF: pass (")
    assert lines[-1].endswith("identity=mailfrom; mechanism=mx")


@pytest.mark.daemon
def test_check_trace_and_json_against_a_real_dns_server(tmp_path: Path) -> None:
    """--trace draws the records and terms the result came from; --json holds the same."""
    from tests.support.fixtures import running_dns_server

    zone = {
        "sender.example": [
            {"TXT": "v=spf1 ip4:198.51.100.0/24 include:_spf.provider.example -all"}
        ],
        "_spf.provider.example": [{"TXT": "v=spf1 a:out.provider.example ~all"}],
        "out.provider.example": [{"A": "192.0.2.40"}],
    }
    with running_dns_server(zone) as port:
        path = write(tmp_path, f'[dns]\nnameservers = ["127.0.0.1"]\nport = {port}\n')
        command = [
            sys.executable,
            "-m",
            "spfpolicy",
            "check",
            "--config",
            str(path),
            "--ip",
            "192.0.2.40",
            "--helo",
            "h.client.example",
            "--sender",
            "user@sender.example",
            "--trace",
        ]
        text = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        data = subprocess.run(
            [*command, "--json"], capture_output=True, text=True, timeout=60, check=False
        )
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert "mailfrom: pass for user@sender.example" in lines
    assert "  sender.example: result pass" in lines
    tree = "\n".join(lines)
    assert "ip4:198.51.100.0/24  no match" in tree
    assert "include:_spf.provider.example  matched: include gave pass" in tree
    assert "a:out.provider.example  matched  [DNS-querying terms 2/10, void lookups 0/2]" in tree
    assert "dns out.provider.example A: 1 records = 192.0.2.40 (asked, ttl" in tree
    assert "-all  not reached" in tree
    assert "\033[" not in tree  # no colour into a pipe
    assert data.returncode == 0, data.stderr
    document = json.loads(data.stdout)
    mailfrom = next(i for i in document["identities"] if i["identity"] == "mailfrom")
    assert mailfrom["result"] == mailfrom["tree_result"] == "pass"
    include = mailfrom["tree"]["terms"][1]
    assert include["status"] == "matched"
    assert include["child"]["terms"][0]["dns"][0]["records"] == ["192.0.2.40"]
    assert document["action"].startswith("PREPEND Received-SPF: pass")
