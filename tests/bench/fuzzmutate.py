"""Mutations of recorded Postfix requests, for the hand-run socket fuzzer (tests/bench/fuzz.py).

Each mutation takes the bytes of a recorded smtpd session (tests/wire/golden/*.request) and a seeded
random.Random, and returns new bytes: a flipped byte, hostile bytes where a value was, a line
cut, repeated or taken from another session, the empty line dropped, a request pipelined many
times. Several are applied in a row, so that cases range from nearly right to pure garbage.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path

WIRE = Path(__file__).resolve().parents[1] / "wire" / "golden"

# What an attacker (or a broken client) puts where a value should be.
HOSTILE = [
    b"\0",
    b"\r",
    b"\n",
    b"\n\n",
    b"\r\n",
    b"\xff",
    b"\xc3",  # a UTF-8 lead byte without its continuation
    "\u2028".encode(),
    "\u0085".encode(),
    "\u202e".encode(),
    b"\x1b[31m",
    b"=",
    b"%{l}",
    b"\\",
    b'"',
    b"(",
    b"<>",
    "bücher.example".encode(),
    b"::ffff:192.0.2.1",
    b"fe80::1%eth0",
    b"300.1.1.1",
    b"unknown",
]
# A burst of requests the server can answer from what it knows: needs no DNS, so no worker.
BURST_REQUESTS = [b"\n", b"request=junk\n\n", b"request=smtpd_access_policy\n\n"]

Mutation = Callable[[bytes, random.Random], bytes]


def recorded_sessions(directory: Path = WIRE) -> list[bytes]:
    """Every recorded session's request bytes."""
    sessions = [path.read_bytes() for path in sorted(directory.glob("*.request"))]
    if not sessions:
        raise FileNotFoundError(f"no *.request files in {directory}")
    return sessions


def _spot(data: bytes, rng: random.Random) -> int:
    return rng.randrange(len(data) + 1)


def flip_byte(data: bytes, rng: random.Random) -> bytes:
    """One byte replaced by any byte."""
    if not data:
        return bytes([rng.randrange(256)])
    at = rng.randrange(len(data))
    return data[:at] + bytes([rng.randrange(256)]) + data[at + 1 :]


def insert_hostile(data: bytes, rng: random.Random) -> bytes:
    """Hostile bytes inserted anywhere."""
    at = _spot(data, rng)
    return data[:at] + rng.choice(HOSTILE) + data[at:]


def long_run(data: bytes, rng: random.Random) -> bytes:
    """A run of one byte, from a few hundred bytes to well past the line limit."""
    at = _spot(data, rng)
    run = bytes([rng.choice(b"ax.@= ")]) * rng.randrange(100, 70_000)
    return data[:at] + run + data[at:]


def delete_span(data: bytes, rng: random.Random) -> bytes:
    """A piece cut out."""
    start = _spot(data, rng)
    return data[:start] + data[start + rng.randrange(1, 200) :]


def duplicate_span(data: bytes, rng: random.Random) -> bytes:
    """A piece repeated in place."""
    start = _spot(data, rng)
    piece = data[start : start + rng.randrange(1, 200)]
    return data[:start] + piece * rng.randrange(2, 20) + data[start:]


def truncate(data: bytes, rng: random.Random) -> bytes:
    """The session cut short: the connection ends mid-request or mid-line."""
    return data[: _spot(data, rng)]


def drop_empty_lines(data: bytes, rng: random.Random) -> bytes:
    """Requests no longer end (or end later than meant)."""
    del rng
    return data.replace(b"\n\n", b"\n")


def shuffle_lines(data: bytes, rng: random.Random) -> bytes:
    """The lines in another order: empty lines move, requests merge and split."""
    lines = data.split(b"\n")
    rng.shuffle(lines)
    return b"\n".join(lines)


def replace_value(data: bytes, rng: random.Random) -> bytes:
    """One attribute's value replaced by hostile bytes, possibly long."""
    lines = data.split(b"\n")
    candidates = [number for number, line in enumerate(lines) if b"=" in line]
    if not candidates:
        return insert_hostile(data, rng)
    number = rng.choice(candidates)
    name = lines[number].partition(b"=")[0]
    value = b"".join(rng.choice(HOSTILE) for _ in range(rng.randrange(1, 8)))
    lines[number] = name + b"=" + value * rng.choice([1, 1, 1, 50, 2000])
    return b"\n".join(lines)


def drop_equals(data: bytes, rng: random.Random) -> bytes:
    """A line without "=": garbage the server must refuse."""
    at = data.find(b"=", _spot(data, rng))
    return data if at < 0 else data[:at] + data[at + 1 :]


def repeat_name(data: bytes, rng: random.Random) -> bytes:
    """An attribute sent twice, the second time with another value."""
    lines = data.split(b"\n")
    number = rng.randrange(len(lines))
    return b"\n".join([*lines[: number + 1], rng.choice(lines), *lines[number + 1 :]])


def pipeline(data: bytes, rng: random.Random) -> bytes:
    """The whole session sent again and again on one connection."""
    return data * rng.randrange(2, 30)


MUTATIONS: Sequence[Mutation] = (
    flip_byte,
    insert_hostile,
    long_run,
    delete_span,
    duplicate_span,
    truncate,
    drop_empty_lines,
    shuffle_lines,
    replace_value,
    replace_value,
    drop_equals,
    repeat_name,
    pipeline,
)


def mutate(sessions: Sequence[bytes], rng: random.Random) -> bytes:
    """A recorded session (now and then spliced with another) with 1 to 4 mutations."""
    data = rng.choice(sessions)
    if rng.random() < 0.1:
        other = rng.choice(sessions)
        data = data[: _spot(data, rng)] + other[_spot(other, rng) :]
    for _ in range(rng.randrange(1, 5)):
        data = rng.choice(MUTATIONS)(data, rng)
    return data


def burst(rng: random.Random) -> bytes:
    """Many tiny requests in one write, each answerable without DNS."""
    return rng.choice(BURST_REQUESTS) * rng.randrange(500, 3000)
