"""Listening sockets: TCP on IPv4/IPv6 and unix sockets, opened the way a mail daemon should.

The server owns the sockets once opened; this module only makes them and cleans up the files.
"""

from __future__ import annotations

import errno
import os
import resource
import socket
import stat
from dataclasses import dataclass

from spfpolicy.model import ListenAddress, ListenKind

# The kernel caps the accept queue at net.core.somaxconn; ask for all of it, since a busy Postfix
# opens a burst of connections when many smtpd processes start together.
LISTEN_BACKLOG = socket.SOMAXCONN
# How long the stale-socket probe waits on a live server whose accept queue is full.
STALE_PROBE_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class SocketFile:
    """A unix socket file we created, known by device and inode so we remove only our own."""

    path: str
    device: int
    inode: int


def open_inet(host: str, port: int) -> socket.socket:
    """Bind and listen on a TCP address; an IPv6 socket takes IPv6 only."""
    family, kind, proto, _, sockaddr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        # A restart must not fail while old connections sit in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # inet:[::]:port means IPv6 only, so that inet:0.0.0.0:port can be listed beside it.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def open_unix(path: str, mode: int) -> tuple[socket.socket, SocketFile]:
    """Bind and listen on a unix socket with the given mode, replacing a stale socket file."""
    _remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        created = os.stat(path)
        os.chmod(path, mode)  # before listen(): no client ever sees the umask's mode
        sock.listen(LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock, SocketFile(path, created.st_dev, created.st_ino)


def remove_own_socket_file(socket_file: SocketFile) -> None:
    """Remove a socket file we created, unless a newer instance has replaced it meanwhile."""
    try:
        found = os.lstat(socket_file.path)
        if (found.st_dev, found.st_ino) == (socket_file.device, socket_file.inode):
            os.unlink(socket_file.path)
    except OSError:
        pass  # already gone: nothing to clean up


def _remove_stale_socket(path: str) -> None:
    """Remove a socket file left by a previous run; leave any other kind of file alone."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(found.st_mode):
        raise FileExistsError(errno.EEXIST, "exists and is not a socket", path)
    # Stale means nobody listens: connecting is refused. Never take over a running instance's
    # socket.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(STALE_PROBE_TIMEOUT)
        result = probe.connect_ex(path)
    if result == 0:
        raise OSError(errno.EADDRINUSE, "another server is listening there", path)
    if result != errno.ECONNREFUSED:
        raise OSError(result, os.strerror(result), path)
    os.unlink(path)


def address_of(listener: socket.socket) -> ListenAddress:
    """The ListenAddress a listening socket is bound to."""
    name = listener.getsockname()
    if listener.family == socket.AF_UNIX:
        return ListenAddress(ListenKind.UNIX, path=str(name))
    return ListenAddress(ListenKind.INET, host=name[0], port=name[1])


# Descriptors besides client connections: listeners, DNS sockets, logs, the metrics exporter.
SPARE_DESCRIPTORS = 256


def raise_open_file_limit(connections: int) -> int:
    """Raise the soft RLIMIT_NOFILE (up to the hard one) to fit connections; return it.

    systemd and most shells start services with a soft limit of 1024, far below what an event
    loop holding thousands of idle connections needs; the hard limit is usually much higher.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + SPARE_DESCRIPTORS
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    return soft
