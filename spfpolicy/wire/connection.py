"""The event loop's records: a client connection and a listening socket, and their names.

Touched only by the I/O thread (spfpolicy.wire.eventloop), so they need no lock.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from spfpolicy.model import ListenAddress
from spfpolicy.wire import protocol


@dataclass(slots=True, eq=False)
class Connection:
    """One client connection, touched only by the I/O thread."""

    sock: socket.socket
    peer: str
    idle_since: float  # when it last had nothing to do; partial requests do not reset it
    reader: protocol.RequestReader = field(default_factory=protocol.RequestReader)
    busy: bool = False  # a worker is deciding its request
    unsent: bytes = b""  # the part of a reply the socket did not take yet
    closed: bool = False
    lingering_until: float = 0.0  # set after a malformed request: read, drop, then close


@dataclass(slots=True, eq=False)
class Listener:
    """A listening socket and where it listens."""

    sock: socket.socket
    address: ListenAddress
    paused_until: float = 0.0


def describe_peer(peer: object, address: ListenAddress) -> str:
    """A peer for the logs: "192.0.2.1:4321", "[2001:db8::1]:4321" or the unix socket."""
    if isinstance(peer, tuple):
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(address)  # unix clients have no name of their own
