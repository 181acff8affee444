"""sd_notify(3) without a dependency: readiness, reloads and stopping told to systemd.

It follows the documented environment protocol, so the daemon also runs unchanged outside
systemd, where NOTIFY_SOCKET is not set.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import MutableMapping

log = logging.getLogger(__name__)


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
