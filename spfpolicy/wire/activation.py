"""systemd socket activation without a dependency: the listening sockets systemd passed us.

It follows sd_listen_fds(3)'s environment protocol, so the daemon also runs unchanged outside
systemd, where the variables are not set.
"""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping

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
