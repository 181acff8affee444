"""The floor: a threaded policy server that answers `action=DUNNO` to every request.

It reads requests the cheapest way Python offers, a socket file object's readline (the buffering
is in C), up to the empty line that ends each one, and does nothing else: no parsing, no logging.
What it costs per request is what any Python policy daemon pays before doing its own work.

    python -m tests.bench.dunno_server [--port 0]

prints `READY <port>` once it listens on 127.0.0.1 and serves until SIGTERM or SIGINT (exit 0).
"""

from __future__ import annotations

import argparse
import signal
import socketserver
import sys
import threading

REPLY = b"action=DUNNO\n\n"
MAX_LINE_BYTES = 8192  # as spfpolicy: a peer that never sends a newline cannot grow a line


class _Handler(socketserver.StreamRequestHandler):
    """One connection: answer each request as soon as its empty line arrives."""

    def handle(self) -> None:
        """Read lines until the client closes; each empty line gets the reply."""
        readline = self.rfile.readline
        send = self.connection.sendall
        while line := readline(MAX_LINE_BYTES):
            if line == b"\n":
                send(REPLY)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True  # a connection left open must not keep the process alive
    allow_reuse_address = True
    request_queue_size = 128  # many smtpd processes may connect at once


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    arguments = parser.parse_args(argv)
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    # Blocked before any thread starts, so that only sigwait() below ever sees them.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    with _Server(("127.0.0.1", arguments.port), _Handler) as server:
        thread = threading.Thread(target=server.serve_forever, name="dunno-accept", daemon=True)
        thread.start()
        print(f"READY {server.server_address[1]}", flush=True)
        signal.sigwait(stop_signals)
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
