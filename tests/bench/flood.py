"""A flood of never-seen domains behind slow DNS, by hand (issue 15, item 5): does it queue?

    .venv/bin/python -m tests.bench.flood --connections 3000 --dns-delay 2

It serves one SPF record per sender domain (`d<N>.flood.example`, `v=spf1 ip4:192.0.2.0/24
-all`: one DNS question each) from the test DNS server, which holds every reply back
`--dns-delay` seconds without holding up the others. It starts spfpolicy as the benchmark does
(its own process, the decision log on), opens `--connections` connections, then sends one
request on each, as fast as it can, each for a domain of its own. It reports how many were
answered and how (a DEFER is a temperror: mail deferred by our own queueing), the reply times
from the moment each request went out, the daemon's peak threads and peak RSS, and its threads
`--settle` seconds after the last reply (idle workers end after 60 s). Run it on a quiet
machine; nothing here is a test.
"""

from __future__ import annotations

import argparse
import resource
import selectors
import socket
import statistics
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tests.bench.contenders import Contender, Kind, running
from tests.bench.procinfo import MemorySampler
from tests.support.fixtures import running_dns_server

RECORD = "v=spf1 ip4:192.0.2.0/24 -all"
CLIENT = "192.0.2.1"  # inside the record: every answer that arrives in time is a pass


def request(number: int) -> bytes:
    """Message `number`'s RCPT request, from a domain no other request uses."""
    return (
        "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
        f"client_address={CLIENT}\nhelo_name=[{CLIENT}]\n"
        f"sender=user@d{number}.flood.example\nrecipient=postmaster@receiver.example\n"
        f"instance=flood.{number}\n\n"
    ).encode()


def threads_of(pid: int) -> int:
    """The number of threads of a process (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in status.splitlines() if "Threads:" in line), 0)


class ThreadSampler:
    """The largest thread count a process reaches, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, threads_of(self.pid))

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join()


def flood(address: tuple[str, int], connections: int, timeout: float) -> list[tuple[float, str]]:
    """Open every connection, send one request on each, and collect (seconds, action)."""
    sockets = [socket.create_connection(address, timeout=30) for _ in range(connections)]
    selector = selectors.DefaultSelector()
    sent: dict[socket.socket, float] = {}
    received: dict[socket.socket, bytes] = {}
    for number, sock in enumerate(sockets):
        sock.sendall(request(number))
        sent[sock] = time.monotonic()
        sock.setblocking(False)
        received[sock] = b""
        selector.register(sock, selectors.EVENT_READ, sock)
    results: list[tuple[float, str]] = []
    deadline = time.monotonic() + timeout
    while len(results) < connections and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1.0):
            sock = key.data
            chunk = sock.recv(4096)
            received[sock] += chunk
            if received[sock].endswith(b"\n\n") or not chunk:
                action = received[sock].decode(errors="replace").strip() or "(closed)"
                results.append((time.monotonic() - sent[sock], action))
                selector.unregister(sock)
    for sock in sockets:
        sock.close()
    return results


def report(results: Sequence[tuple[float, str]], connections: int) -> None:
    """Print counts, kinds of answer and reply-time percentiles."""
    seconds = sorted(time for time, _ in results)
    kinds = Counter(action.removeprefix("action=").split(" ")[0] for _, action in results)
    print(f"answered {len(results)} of {connections}: {dict(kinds)}")
    if seconds:
        p99 = seconds[min(len(seconds) - 1, int(len(seconds) * 0.99))]
        print(
            f"reply seconds: p50 {statistics.median(seconds):.2f}  p99 {p99:.2f}  "
            f"max {seconds[-1]:.2f}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one flood and print what it found."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--dns-delay", type=float, default=2.0)
    parser.add_argument("--settle", type=float, default=70.0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/spfpolicy-flood"))
    parser.add_argument(
        "--source", type=Path, help="run the spfpolicy of this source tree (a baseline)"
    )
    arguments = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (max(soft, min(hard, 2 * arguments.connections + 256)), hard)
    )
    zone = {f"d{n}.flood.example": [{"TXT": RECORD}] for n in range(arguments.connections)}
    contender = Contender("spfpolicy", Kind.SPFPOLICY, source=arguments.source)
    with (
        running_dns_server(zone, delay=arguments.dns_delay) as dns_port,
        running(contender, arguments.workdir, dns_port) as daemon,
    ):
        idle_threads = threads_of(daemon.pid)
        memory, threads = MemorySampler(daemon.pid).start(), ThreadSampler(daemon.pid)
        results = flood(daemon.address, arguments.connections, timeout=60.0)
        memory.stop()
        threads.stop()
        report(results, arguments.connections)
        print(f"daemon threads: {idle_threads} idle, {threads.peak} at the peak", end="")
        time.sleep(arguments.settle)
        print(f", {threads_of(daemon.pid)} after {arguments.settle:.0f} s")
        print(f"peak RSS {memory.peak_rss / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
