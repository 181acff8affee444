"""systemd integration without a dependency: socket activation and sd_notify(3) messages.

Both follow the documented environment protocols (sd_listen_fds(3), sd_notify(3)), so the daemon
also runs unchanged outside systemd, where neither variable is set.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import MutableMapping

log = logging.getLogger(__name__)

SD_LISTEN_FDS_START = 3  # sd_listen_fds(3): passed sockets start at file descriptor 3
_ACTIVATION_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def listen_sockets(environ: MutableMapping[str, str] | None = None) -> list[socket.socket]:
    """The listening sockets systemd passed to this process (none when not socket-activated).

    The variables are removed afterwards so that no child process believes they are its own.
    """
    environ = os.environ if environ is None else environ
    pid, count = environ.get("LISTEN_PID", ""), environ.get("LISTEN_FDS", "")
    for name in _ACTIVATION_VARIABLES:
        environ.pop(name, None)
    if pid != str(os.getpid()) or not count.isdigit():
        return []
    sockets = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)):
        os.set_inheritable(fd, False)
        sockets.append(socket.socket(fileno=fd))  # family and type are read from the fd
    return sockets


class Notifier:
    """Tells the service manager about readiness, reloads and stopping (Type=notify)."""

    def __init__(self, environ: MutableMapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        address = environ.pop("NOTIFY_SOCKET", "")
        # An abstract socket is written with a leading "@" (sd_notify(3)).
        self.address = "\0" + address[1:] if address.startswith("@") else address

    def ready(self, status: str = "") -> None:
        """The daemon accepts connections (also sent when a reload is finished)."""
        self._send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def reloading(self) -> None:
        """A reload started; systemd waits for the next ready()."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        """The daemon is shutting down."""
        self._send("STOPPING=1")

    def _send(self, message: str) -> None:
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self.address)
                sock.sendall(message.encode())
        except OSError as error:
            # The service manager going away must never take the daemon down with it.
            log.warning("cannot notify the service manager at %r: %s", self.address, error)
