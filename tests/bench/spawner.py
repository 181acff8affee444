"""Postfix's spawn(8), for the benchmark: one process per connection, the connection as its
standard input and output. This is how Postfix runs policyd-spf (master.cf `spawn` service).

    python -m tests.bench.spawner [--port 0] [--max-processes 200] -- COMMAND [ARG...]

prints `READY <port>` once it listens on 127.0.0.1. On SIGTERM or SIGINT it stops accepting,
terminates the processes it started (each by its pid), and exits 0. The children's stderr goes
to the spawner's own stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time

POLL_INTERVAL = 0.2  # how often the accept loop looks at the stop flag
STOP_TIMEOUT = 5.0  # seconds a child gets after SIGTERM before SIGKILL


class Spawner:
    """Accepts connections and runs `command` for each, until stopped."""

    def __init__(self, command: list[str], port: int, max_processes: int) -> None:
        """Listen on 127.0.0.1:`port` (0: the kernel picks) for `command`'s connections."""
        self.command = command
        self.max_processes = max_processes
        self.listener = socket.create_server(("127.0.0.1", port), backlog=128)
        self.listener.settimeout(POLL_INTERVAL)
        self.port: int = self.listener.getsockname()[1]
        self.children: list[subprocess.Popen[bytes]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="spawner-accept", daemon=True)

    def start(self) -> None:
        """Start accepting, in a thread of its own."""
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                self._reap()
                continue
            except OSError:  # EMFILE and the like: the connection waits in the backlog
                self.stopping.wait(POLL_INTERVAL)
                continue
            with connection:
                self._reap()
                if len(self.children) >= self.max_processes:
                    continue  # closed at once, as spawn does past its process limit
                # The child gets the socket as fds 0 and 1; our copy closes with the `with`.
                child = subprocess.Popen(
                    self.command, stdin=connection.fileno(), stdout=connection.fileno()
                )
                self.children.append(child)

    def _reap(self) -> None:
        self.children = [child for child in self.children if child.poll() is None]

    def stop(self) -> None:
        """Stop accepting, then end every child still running, by its pid."""
        self.stopping.set()
        self.thread.join()  # after this, no child can be added any more
        self.listener.close()
        running = [child for child in self.children if child.poll() is None]
        for child in running:
            with contextlib.suppress(ProcessLookupError):
                child.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        killed = []
        for child in running:
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
                killed.append(child.pid)
        if running:
            print(
                f"spawner: stopped {len(running)} children, killed {killed or 'none'}",
                file=sys.stderr,
            )


def main(argv: list[str] | None = None) -> int:
    """Spawn until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--max-processes", type=int, default=200)
    parser.add_argument("command", nargs="+", help="the program to run for each connection")
    arguments = parser.parse_args(argv)
    stop = threading.Event()
    # Handlers, not a blocked mask with sigwait(): a blocked mask would pass to the children
    # through fork and exec, and then their SIGTERM would never arrive.
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda _number, _frame: stop.set())
    spawner = Spawner(arguments.command, arguments.port, arguments.max_processes)
    spawner.start()
    print(f"READY {spawner.port}", flush=True)
    while not stop.wait(POLL_INTERVAL):
        pass
    spawner.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
