"""The contenders, each started as its own process on 127.0.0.1 and stopped by its pid.

- spfpolicy: `python -m spfpolicy serve --config FILE`, the decision log on (level info) as in
  production, its stderr to a file. Extra config keys (the caches' switches and sizes) come in
  as "section.key" settings, so a variant is one command-line option away. A baseline runs the
  same way from another source tree (an older commit extracted somewhere), in the same venv.
- dunno: the floor, tests/bench/dunno_server.py.
- policyd-spf: Debian's postfix-policyd-spf-python, one process per connection under
  tests/bench/spawner.py (Postfix's spawn), on Debian's /usr/bin/python3.

The processes start in a session of their own: Ctrl-C reaches only the runner, which stops them.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from tests.support.fixtures import REPO_ROOT, ServerProcess, await_ready_line, stop_process

POLICYD_SPF = Path("/usr/bin/policyd-spf")
SYSTEM_PYTHON = Path("/usr/bin/python3")
WRAPPER = Path(__file__).with_name("policyd_spf_wrapper.py")
# Debian's python3-spf depends on "python3-dns | python3-dnspython"; a clean install of
# postfix-policyd-spf-python pulls in the first, pydns. Module and package of each:
DNS_LIBRARIES = {"pydns": ("DNS", "python3-dns"), "dnspython": ("dns", "python3-dnspython")}
DEFAULT_DNS_LIBRARY = "pydns"
READY_TIMEOUT = 20.0  # seconds; spfpolicy imports pyspf, dnspython, prometheus_client
PROBE_INTERVAL = 0.05
# policyd-spf.conf(5): its defaults, except no debug logging (it logs to syslog) and an explicit
# skip list of loopback only, so that every benchmark client really is checked.
POLICYD_SPF_CONFIG = """\
debugLevel = 0
TestOnly = 1
HELO_reject = Fail
Mail_From_reject = Fail
PermError_reject = False
TempError_Defer = False
skip_addresses = 127.0.0.0/8,::ffff:127.0.0.0/104,::1
Lookup_Time = 20
"""
# Log lines worth a look after a run: they are counted and the first few quoted in the results.
TROUBLE = re.compile(r"Traceback|^(ERROR|WARNING|CRITICAL)\b", re.MULTILINE)


class Kind(StrEnum):
    """What a contender is."""

    SPFPOLICY = "spfpolicy"
    DUNNO = "dunno"
    POLICYD_SPF = "policyd-spf"


@dataclass(frozen=True)
class Contender:
    """A contender as named on the command line, with spfpolicy's extra settings if any."""

    name: str
    kind: Kind
    # spfpolicy: extra config keys ("dns.cache_size" -> 100000); policyd-spf: "dns_library".
    settings: Mapping[str, Any] = field(default_factory=dict)
    # spfpolicy: the source tree whose spfpolicy package runs (a baseline); None: this checkout.
    source: Path | None = None

    @property
    def root(self) -> Path:
        """The directory it runs in, first on its PYTHONPATH."""
        return self.source or REPO_ROOT

    @property
    def keeps_caches(self) -> bool:
        """Whether a long warm-up can change what it does: only spfpolicy has caches. The floor
        keeps nothing, and policyd-spf's pyspf over pydns caches nothing between requests."""
        return self.kind is Kind.SPFPOLICY


@dataclass
class Running:
    """A started contender: where it listens, its process, its log."""

    contender: Contender
    process: subprocess.Popen[bytes]
    address: tuple[str, int]
    log_path: Path
    stop_problem: str | None = None

    @property
    def pid(self) -> int:
        """The pid whose process tree is the contender."""
        return self.process.pid

    def trouble(self) -> list[str]:
        """The warning, error and traceback lines of its log."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return [line for line in text.splitlines() if TROUBLE.search(line)]


def missing_requirement(contender: Contender) -> str | None:
    """Why `contender` cannot run on this machine, or None."""
    if contender.source is not None and not (contender.source / "spfpolicy/__main__.py").is_file():
        return f"{contender.source} has no spfpolicy package (spfpolicy/__main__.py)"
    if contender.kind is not Kind.POLICYD_SPF:
        return None
    if not (POLICYD_SPF.exists() and SYSTEM_PYTHON.exists()):
        return f"{POLICYD_SPF} is missing: apt-get install postfix-policyd-spf-python"
    library = dns_library(contender)
    module, package = DNS_LIBRARIES[library]
    probe = [str(SYSTEM_PYTHON), "-c", f"import {module}"]
    if subprocess.run(probe, capture_output=True, check=False).returncode != 0:
        return f"{SYSTEM_PYTHON} cannot import {module} ({library}): apt-get install {package}"
    return None


def dns_library(contender: Contender) -> str:
    """Which DNS library policyd-spf's pyspf is made to use (see policyd_spf_wrapper.py)."""
    return str(contender.settings.get("dns_library", DEFAULT_DNS_LIBRARY))


@contextmanager
def running(contender: Contender, workdir: Path, dns_port: int) -> Iterator[Running]:
    """Start `contender` with its DNS at 127.0.0.1:`dns_port`; stop it (SIGTERM) on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{contender.name}.log"
    command, port = _command(contender, workdir, dns_port)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(contender.root), env.get("PYTHONPATH")]))
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log if port else subprocess.PIPE,  # no port yet: it prints READY <port>
            stderr=log,
            cwd=contender.root,
            env=env,
            start_new_session=True,
        )
    server = ServerProcess(contender.name, process, log_path)
    try:
        if port:
            await_listening(server, port)
        else:
            port = await_ready_line(server, READY_TIMEOUT)
        yield Running(contender, process, ("127.0.0.1", port), log_path)
    finally:
        problem = stop_process(process)
        if process.stdout is not None:
            process.stdout.close()
    if problem:
        print(f"warning: {contender.name}: {problem}", file=sys.stderr)


def _command(contender: Contender, workdir: Path, dns_port: int) -> tuple[list[str], int]:
    """The command line of `contender`, and its port if chosen here (0: it reports one)."""
    if contender.kind is Kind.SPFPOLICY:
        port = free_port()
        config_path = workdir / f"{contender.name}.toml"
        config_path.write_text(spfpolicy_config(port, dns_port, contender.settings))
        return [sys.executable, "-m", "spfpolicy", "serve", "--config", str(config_path)], port
    if contender.kind is Kind.DUNNO:
        return [sys.executable, "-m", "tests.bench.dunno_server"], 0
    config_path = workdir / "policyd-spf.conf"
    config_path.write_text(POLICYD_SPF_CONFIG)
    wrapper = [str(SYSTEM_PYTHON), str(WRAPPER), str(dns_port), str(config_path)]
    wrapper.append(dns_library(contender))
    return [sys.executable, "-m", "tests.bench.spawner", "--", *wrapper], 0


def await_listening(server: ServerProcess, port: int) -> None:
    """Wait until 127.0.0.1:`port` accepts a connection (closed at once: Postfix does that too)."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise server.failure("exited before it was ready")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
        except OSError:
            time.sleep(PROBE_INTERVAL)
            continue
        return
    raise server.failure(f"not listening on port {port} within {READY_TIMEOUT:g} s")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the kernel's pick for port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def spfpolicy_config(port: int, dns_port: int, settings: Mapping[str, Any]) -> str:
    """spfpolicy's TOML for the benchmark, with `settings` ("section.key" -> value) on top."""
    sections: dict[str, dict[str, Any]] = {
        "server": {"listen": [f"inet:127.0.0.1:{port}"]},
        "dns": {"nameservers": ["127.0.0.1"], "port": dns_port},
        "log": {"level": "info"},  # the decision log stays on, as in production
    }
    for dotted, value in settings.items():
        section, _, key = dotted.rpartition(".")
        if not section:
            raise ValueError(f"{dotted!r}: expected section.key")
        sections.setdefault(section, {})[key] = value
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
        lines.append("")
    return "\n".join(lines)


def toml_value(value: Any) -> str:
    """A TOML literal for a string, number, boolean or list of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")
