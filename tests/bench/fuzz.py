"""The socket fuzzer, run by hand: mutated Postfix sessions against a running daemon (issue 8).

    .venv/bin/python -m tests.bench.fuzz --minutes 10 [--seed N] [--workdir DIR]

It starts a DNS server on loopback (tests/support/socketfuzz.ZONE) and the daemon
(`python -m spfpolicy serve`) on a free loopback port, then sends case after case: a
recorded session from tests/wire/golden/ mutated (tests/bench/fuzzmutate.py), in random pieces,
ended a random way (read every reply, close at once, reset). After every case it checks the
invariants of tests/wire/test_fuzz_socket.py: the replies read are clean and as many as the
requests the protocol can read from the bytes; a good request on a new connection still gets
its real answer; the daemon's threads and descriptors are back within the baseline; its log
gained no traceback.

A case that breaks one is a finding: its bytes go to WORKDIR/findings/, and a daemon that no
longer answers is restarted so the run goes on. It stops after --minutes (or Ctrl-C) and prints
the number of cases and findings. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from tests.bench import fuzzmutate
from tests.support import socketfuzz
from tests.support.fixtures import running_dns_server, running_policy_daemon
from tests.support.socketfuzz import Ending, Usage

PASS = "PREPEND Received-SPF: pass "
WARM_CONNECTIONS = 8
PROGRESS_EVERY = 30.0  # seconds between progress lines
SLOW_CASE = 5.0  # seconds: a case taking longer is kept in WORKDIR/slow/
PIECES = (1, 2, 7, 64, 512, 4096, 65536)
ENDINGS = (Ending.READ,) * 6 + (Ending.CLOSE, Ending.RESET)


@dataclass
class Daemon:
    """A running daemon: where it listens, its pid, and how far its log has been read."""

    address: tuple[str, int]
    pid: int
    log_path: Path
    baseline: Usage = field(default_factory=lambda: Usage(0, 0))
    log_offset: int = 0

    def new_tracebacks(self) -> list[str]:
        """Traceback lines written since the last call."""
        with self.log_path.open("rb") as log:
            log.seek(self.log_offset)
            text = log.read()
        self.log_offset += len(text)
        lines = text.decode("utf-8", "replace").splitlines()
        return [line for line in lines if "Traceback" in line or "Logging error" in line]


@contextmanager
def running_daemon(dns_port: int, workdir: Path, number: int) -> Iterator[Daemon]:
    """Start daemon number N (a restart gets a new log); warm it up and take its baseline."""
    port = socketfuzz.free_port()
    config_path = workdir / f"spfpolicy-{number}.toml"
    config_path.write_text(socketfuzz.daemon_config(port, dns_port))
    log_path = workdir / f"daemon-{number}.log"
    with running_policy_daemon(config_path, log_path) as process:
        socketfuzz.wait_listening(port, lambda: process.process.poll() is None)
        daemon = Daemon(("127.0.0.1", port), process.process.pid, log_path)
        socketfuzz.warm_up(daemon.address, WARM_CONNECTIONS)
        daemon.baseline = socketfuzz.steady(lambda: socketfuzz.process_usage(daemon.pid))
        yield daemon


def run_case(daemon: Daemon, payload: bytes, piece: int, ending: Ending) -> list[str]:
    """Send one case and check every invariant; what broke (empty when nothing did)."""
    problems = []
    try:
        data = socketfuzz.converse(daemon.address, payload, piece=piece, ending=ending)
        actions = socketfuzz.parse_replies(data)
        framing = socketfuzz.frame(payload)
        if ending is Ending.READ and not framing.replies_fit(len(actions)):
            problems.append(f"{len(actions)} replies for {len(framing.requests)} requests")
    except (AssertionError, UnicodeDecodeError, OSError) as error:
        problems.append(f"conversation: {error!r}"[:500])
    problems.extend(health_problems(daemon))
    return problems


def health_problems(daemon: Daemon) -> list[str]:
    """What is wrong with the daemon after a case: answer, threads, descriptors, log."""
    problems = []
    try:
        actions = socketfuzz.ask(daemon.address, socketfuzz.rcpt_request())
        if not actions or not actions[0].startswith(PASS):
            problems.append(f"good request answered {actions!r}"[:500])
    except (AssertionError, OSError) as error:
        problems.append(f"good request failed: {error!r}"[:500])
    try:
        usage = socketfuzz.settle(lambda: socketfuzz.process_usage(daemon.pid), daemon.baseline)
    except FileNotFoundError:
        problems.append("the daemon process is gone")
    else:
        if not usage.within(daemon.baseline):
            problems.append(f"holds {usage}, baseline {daemon.baseline}")
    problems.extend(f"log: {line}" for line in daemon.new_tracebacks())
    return problems


@dataclass
class Tally:
    """What the run has done so far."""

    cases: int = 0
    findings: int = 0
    restarts: int = 0
    slow: int = 0
    endings: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)

    def line(self, started: float) -> str:
        """A one-line summary."""
        elapsed = time.monotonic() - started
        return (
            f"{elapsed:7.0f} s  cases={self.cases}  findings={self.findings}  "
            f"restarts={self.restarts}  slow={self.slow}  endings={dict(self.endings)}"
        )


def save_finding(directory: Path, number: int, payload: bytes, problems: list[str]) -> None:
    """Keep a case that broke something: its bytes and what broke."""
    directory.mkdir(exist_ok=True)
    (directory / f"case-{number}.bin").write_bytes(payload)
    (directory / f"case-{number}.txt").write_text("\n".join(problems) + "\n")


def fuzz(arguments: argparse.Namespace, workdir: Path) -> Tally:
    """Run cases until the time is up; restart the daemon whenever a case leaves it broken."""
    rng = random.Random(arguments.seed)
    sessions = fuzzmutate.recorded_sessions()
    tally = Tally()
    started = time.monotonic()
    stop_at = started + arguments.minutes * 60
    next_progress = started + PROGRESS_EVERY
    with running_dns_server(socketfuzz.ZONE) as dns_port, ExitStack() as stack:
        daemon = stack.enter_context(running_daemon(dns_port, workdir, 0))
        while time.monotonic() < stop_at:
            is_burst = rng.random() < arguments.burst_rate
            payload = fuzzmutate.burst(rng) if is_burst else fuzzmutate.mutate(sessions, rng)
            if arguments.max_requests and (
                len(socketfuzz.frame(payload).requests) > arguments.max_requests
            ):
                continue  # a flood is honest, slow work: time better spent on other cases
            piece = max(rng.choice(PIECES), len(payload) // 2000)
            ending = rng.choice(ENDINGS)
            case_started = time.monotonic()
            problems = run_case(daemon, payload, piece, ending)
            took = time.monotonic() - case_started
            if took > SLOW_CASE:  # not a failure, but worth a look: the bytes are kept
                tally.slow += 1
                save_finding(workdir / "slow", tally.cases + 1, payload, [f"{took:.1f} s"])
            tally.cases += 1
            tally.endings[ending.value] += 1
            if problems:
                tally.findings += 1
                tally.kinds[problems[0][:60]] += 1
                save_finding(workdir / "findings", tally.cases, payload, problems)
                print(f"finding in case {tally.cases}: {'; '.join(problems)[:300]}", flush=True)
                if health_problems(daemon):  # still broken: a fresh daemon for the next case
                    stack.close()
                    tally.restarts += 1
                    daemon = stack.enter_context(running_daemon(dns_port, workdir, tally.restarts))
            if time.monotonic() >= next_progress:
                print(tally.line(started), flush=True)
                next_progress = time.monotonic() + PROGRESS_EVERY
    print(tally.line(started))
    return tally


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Parse the options, fuzz, print the summary; exit 1 if anything was found."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to run")
    parser.add_argument(
        "--seed", type=int, default=8, help="the random seed (same seed, same cases)"
    )
    parser.add_argument("--workdir", type=Path, help="logs and findings (default: a temp dir)")
    parser.add_argument(
        "--burst-rate",
        type=float,
        default=0.002,
        help="share of cases that are a burst of tiny pipelined requests",
    )
    parser.add_argument(
        "--max-requests",
        type=int,
        default=20_000,
        help="skip cases with more pipelined requests than this (0: no limit); a megabyte of "
        "empty requests is a minute of honest work that finds nothing new",
    )
    arguments = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # stop the daemon and DNS server on the way out
    with ExitStack() as stack:
        workdir = arguments.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            tally = fuzz(arguments, workdir)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        for kind, count in tally.kinds.most_common():
            print(f"{count:6d}  {kind}")
        if arguments.workdir:
            print(f"logs and findings in {workdir}")
    return 1 if tally.findings else 0


if __name__ == "__main__":
    sys.exit(main())
