"""Run the test servers as subprocesses, the safe way: wait for readiness, surface stderr, stop.

`running_dns_server(zone)` serves suite zone data from tests/support/dnsserver.py and yields its
port; `running_policy_daemon(config)` runs `python -m spfpolicy serve`. Both stop their process
with SIGTERM on exit and fail loudly if it does not stop, or stops with a non-zero status.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
DNS_SERVER_SCRIPT = Path(__file__).with_name("dnsserver.py")
DEFAULT_TTL = 300
READY_TIMEOUT = 10.0  # seconds for a server to start listening
STOP_TIMEOUT = 10.0  # seconds for a server to exit after SIGTERM before it is killed
POLL_INTERVAL = 0.05
READY_LINE = re.compile(rb"READY (\d+)\r?\n")
OUTPUT_TAIL = 4000  # characters of a server's stderr quoted in an error


class ServerProcessError(RuntimeError):
    """A test server did not start, or did not stop, as it should. The message quotes its stderr."""


@dataclass(frozen=True, slots=True)
class ServerProcess:
    """A server subprocess and the file its stderr goes to."""

    label: str  # "DNS server", "policy daemon": for error messages
    process: subprocess.Popen[bytes]
    log_path: Path

    def output(self) -> str:
        """The end of what the process wrote to stderr, for error messages."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as error:
            return f"(cannot read {self.log_path}: {error})"
        return text[-OUTPUT_TAIL:] or "(nothing)"

    def failure(self, problem: str) -> ServerProcessError:
        """An error saying what went wrong, with the exit status if any and the stderr tail."""
        status = self.process.poll()
        state = "running" if status is None else f"exit status {status}"
        return ServerProcessError(f"{self.label}: {problem} ({state}); stderr:\n{self.output()}")


@contextmanager
def running_dns_server(
    zone: Mapping[str, Any], ttl: int = DEFAULT_TTL, delay: float = 0.0
) -> Iterator[int]:
    """Serve `zone` from a DNS server subprocess on 127.0.0.1 and yield its port (UDP and TCP).

    `zone` is a suite `zonedata:` mapping (name -> entries); see tests/support/zones.py for what
    each entry means. `delay` holds every reply back that many seconds, concurrently.
    Raises ServerProcessError, quoting the server's stderr, if it does not report READY within
    READY_TIMEOUT seconds, or does not exit cleanly on SIGTERM at the end.
    """
    with tempfile.TemporaryDirectory(prefix="spfpolicy-dns-") as workdir:
        zone_path = Path(workdir) / "zone.json"
        # json.dumps escapes every control and non-ASCII character: the strings arrive exactly.
        zone_path.write_text(json.dumps(zone), encoding="utf-8")
        command = [sys.executable, str(DNS_SERVER_SCRIPT), "--zone", str(zone_path)]
        command += ["--ttl", str(ttl), "--delay", repr(delay)]
        log_path = Path(workdir) / "stderr.log"
        with managed_process("DNS server", command, log_path, capture_stdout=True) as server:
            yield await_ready_line(server)


@contextmanager
def running_policy_daemon(config_path: Path, log_path: Path) -> Iterator[ServerProcess]:
    """Run `python -m spfpolicy serve --config config_path`, its output going to `log_path`.

    The caller waits for readiness in its own way (`connect_unix` for a unix listener).
    """
    command = [sys.executable, "-m", "spfpolicy", "serve", "--config", str(config_path)]
    # The checkout comes first on the path, so the code under test is the one in this tree.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    with managed_process("policy daemon", command, log_path, cwd=REPO_ROOT, env=env) as daemon:
        yield daemon


@contextmanager
def managed_process(
    label: str,
    command: list[str],
    log_path: Path,
    *,
    capture_stdout: bool = False,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[ServerProcess]:
    """Start `command`; on exit stop it with SIGTERM (SIGKILL after STOP_TIMEOUT).

    A process that does not stop in time, or exits non-zero, raises ServerProcessError, unless
    the body of the `with` already raised: that first error is the one worth reading.
    """
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture_stdout else log,
            stderr=log,
            cwd=cwd,
            env=env,
        )
    server = ServerProcess(label, process, log_path)
    try:
        yield server
    finally:
        problem = stop_process(process)
        if process.stdout is not None:
            process.stdout.close()
    if problem:
        raise server.failure(problem)


def stop_process(process: subprocess.Popen[bytes]) -> str | None:
    """SIGTERM, wait, SIGKILL if need be; returns what went wrong, or None for a clean exit 0."""
    if process.poll() is not None:
        return f"exited before it was asked to stop, status {process.returncode}"
    process.terminate()
    try:
        status = process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return f"did not stop within {STOP_TIMEOUT:g} s of SIGTERM and was killed"
    return None if status == 0 else f"exited with status {status} on SIGTERM"


def await_ready_line(server: ServerProcess, timeout: float = READY_TIMEOUT) -> int:
    """Read the server's `READY <port>` line from its stdout; the port, or ServerProcessError."""
    stdout = server.process.stdout
    assert stdout is not None, "the process was started without capture_stdout"
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(stdout, selectors.EVENT_READ)
        while (remaining := deadline - time.monotonic()) > 0:
            if not selector.select(remaining):
                continue
            line = stdout.readline()
            if not line:
                raise server.failure("exited before it was ready")
            match = READY_LINE.fullmatch(line)
            if match is None:
                raise server.failure(f"printed {line!r} instead of READY <port>")
            return int(match.group(1))
    raise server.failure(f"not ready within {timeout:g} s")


def connect_unix(
    server: ServerProcess, path: Path, timeout: float = READY_TIMEOUT
) -> socket.socket:
    """Connect to the server's unix socket once it accepts connections; ServerProcessError if not.

    The connection that proves readiness is the one returned: no extra empty connection is made.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise server.failure("exited before it was ready")
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.connect(str(path))
        except OSError:  # not there yet, or not listening yet
            connection.close()
            time.sleep(POLL_INTERVAL)
            continue
        return connection
    raise server.failure(f"{path} did not accept connections within {timeout:g} s")


def read_reply(connection: socket.socket) -> bytes:
    """Read one policy reply, up to its empty line; ConnectionError if the server closes first."""
    reply = b""
    while not reply.endswith(b"\n\n"):
        chunk = connection.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed after {reply!r}")
        reply += chunk
    return reply


def ask(connection: socket.socket, payload: bytes) -> str:
    """Send one request (nothing if payload is empty) and return its reply's action text."""
    if payload:
        connection.sendall(payload)
    return read_reply(connection).decode().removeprefix("action=").removesuffix("\n\n")
