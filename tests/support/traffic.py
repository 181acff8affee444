"""Benchmark traffic: messages drawn from a world, encoded as the requests Postfix 3.7 sends.

Senders follow a Zipf-like popularity over the world's domains (or, for a flood, each message
comes from a domain of its own, one never seen before). Most messages come from a host
the sender domain's record authorises; the rest from outsiders, some with a forged HELO name.
A message with N recipients makes N RCPT requests that share one `instance` (DESIGN.md §2); the
queue id is known from the second recipient on, as in smtpd. Deterministic in the seed.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass

from tests.support.world import DomainKind, SenderDomain, World
from tests.support.zonebuilder import Host

ZIPF_EXPONENT = 1.0  # s of the Zipf law: the top domain sends ~1/9 of the mail of 5000
UNAUTHORISED_SHARE = 0.2  # messages from outsiders
NULL_SENDER_SHARE = 0.05  # bounces: MAIL FROM:<>, only the HELO identity is checked
IPV6_SHARE = 0.1
VERP_SHARE = 0.1  # bulk senders' per-message bounce addresses: a sender seen once
TLS_SHARE = 0.85
# Local parts of a domain's regular senders, most frequent first.
LOCAL_PARTS = (
    "noreply",
    "info",
    "news",
    "support",
    "orders",
    "billing",
    "alerts",
    "hello",
    *(f"{first}.{last}" for first in ("anna", "ben", "chloe", "dev") for last in ("kim", "ortiz")),
)
LOCAL_WEIGHTS = list(itertools.accumulate(1 / rank for rank in range(1, len(LOCAL_PARTS) + 1)))
# (recipients per message, weight): most mail has one recipient, a little has many.
RECIPIENT_COUNTS = ((1, 78), (2, 10), (3, 5), (5, 4), (12, 2), (30, 1))
RECEIVER_DOMAINS = ("receiver.example", "receiver-2.example")
SERVER_ADDRESS = "192.0.2.254"  # our own MX, as smtpd reports it


@dataclass(frozen=True, slots=True)
class Message:
    """One SMTP transaction as smtpd sees it at RCPT time."""

    client_address: str
    client_name: str  # the forward-confirmed name, or "unknown"
    reverse_client_name: str  # the PTR name, or "unknown"
    client_port: int
    helo_name: str
    sender: str  # "" for the null sender
    recipients: tuple[str, ...]
    size: int  # SIZE= of MAIL FROM; 0 when the client gave none
    tls: bool


def generate_messages(
    world: World, count: int, seed: int, timeout_share: float | None = None
) -> list[Message]:
    """`count` messages; the same world, seed and share give the same messages.

    `timeout_share` None draws every sender from the Zipf law, timing-out domains included
    (they are in its tail: rare). A number instead gives exactly that share of messages a
    timing-out sender domain, spread evenly, and none to the others (0: no timeouts at all).
    """
    rng = random.Random(seed)
    if timeout_share is None:
        domains = _zipf(rng, world.domains, count)
    else:
        timing_out = [d for d in world.domains if d.kind is DomainKind.TIMEOUT]
        answering = [d for d in world.domains if d.kind is not DomainKind.TIMEOUT]
        domains = _zipf(rng, answering, count)
        for index in range(count):
            if timing_out and int((index + 1) * timeout_share) > int(index * timeout_share):
                domains[index] = rng.choice(timing_out)
    return [_message(rng, world, domain) for domain in domains]


def generate_flood(world: World, start: int, count: int, seed: int) -> list[Message]:
    """`count` messages, one from each of the world's flood domains from number `start` on:
    every sender domain new to a daemon that has seen no other slice of the flood."""
    domains = world.flood[start : start + count]
    if len(domains) < count:
        raise ValueError(f"the world has {len(world.flood)} flood domains, not {start + count}")
    rng = random.Random(seed)
    return [_message(rng, world, domain) for domain in domains]


def _zipf(rng: random.Random, domains: Sequence[SenderDomain], count: int) -> list[SenderDomain]:
    """`count` draws from `domains`, the first the most popular (weight 1/rank^s)."""
    weights = [1 / rank**ZIPF_EXPONENT for rank in range(1, len(domains) + 1)]
    return rng.choices(domains, cum_weights=list(itertools.accumulate(weights)), k=count)


def _message(rng: random.Random, world: World, domain: SenderDomain) -> Message:
    if rng.random() < UNAUTHORISED_SHARE:
        host = rng.choice(world.outsiders)
        client, helo = _address(rng, host), _outsider_helo(rng, host, domain)
        client_name, reverse_name = "unknown", rng.choice((host.name, "unknown"))
    else:
        host = rng.choice(domain.senders)
        client, helo = _address(rng, host), host.name
        client_name = reverse_name = host.name
    if rng.random() < NULL_SENDER_SHARE:
        sender = ""
    elif rng.random() < VERP_SHARE:
        sender = f"bounce-{rng.getrandbits(48):012x}@{domain.name}"
    else:
        sender = rng.choices(LOCAL_PARTS, cum_weights=LOCAL_WEIGHTS)[0] + f"@{domain.name}"
    counts, weights = zip(*RECIPIENT_COUNTS, strict=True)
    recipients = rng.choices(counts, weights=weights)[0]
    receiver = rng.choice(RECEIVER_DOMAINS)
    return Message(
        client_address=client,
        client_name=client_name,
        reverse_client_name=reverse_name,
        client_port=rng.randint(32768, 60999),  # Linux's default ephemeral range
        helo_name=helo,
        sender=sender,
        recipients=tuple(f"user{rng.randrange(10_000)}@{receiver}" for _ in range(recipients)),
        size=0 if rng.random() < 0.2 else int(rng.lognormvariate(9.5, 1.3)),
        tls=rng.random() < TLS_SHARE,
    )


def _address(rng: random.Random, host: Host) -> str:
    return host.ipv6 if rng.random() < IPV6_SHARE else host.ipv4


def _outsider_helo(rng: random.Random, host: Host, domain: SenderDomain) -> str:
    """What an unauthorised client says in HELO: its own name, a literal, a forgery, a word."""
    roll = rng.random()
    if roll < 0.4:
        return host.name  # exists, no SPF record: HELO result none
    if roll < 0.65:
        return f"[{host.ipv4}]"  # an address literal is not checked (RFC 7208 §2.3)
    if roll < 0.85:
        return domain.name  # forged: checked against the sender domain's own record
    return rng.choice(("localhost", "user-pc", "WIN-7QK3M2"))  # a bare word: not checked


def encode_message(message: Message, instance: str, queue_id: str) -> list[bytes]:
    """The RCPT requests of one message, in the attribute order of Postfix 3.7's smtpd."""
    requests = []
    for count, recipient in enumerate(message.recipients):
        attributes = _attributes(message, recipient, count, instance, queue_id if count else "")
        requests.append("".join(f"{name}={value}\n" for name, value in attributes).encode() + b"\n")
    return requests


def _attributes(
    message: Message, recipient: str, count: int, instance: str, queue_id: str
) -> list[tuple[str, object]]:
    tls = (
        ("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256) if message.tls else ("", "", 0)
    )  # what smtpd reports for a TLS 1.3 session, or nothing
    return [
        ("request", "smtpd_access_policy"),
        ("protocol_state", "RCPT"),
        ("protocol_name", "ESMTP"),
        ("client_address", message.client_address),
        ("client_name", message.client_name),
        ("client_port", message.client_port),
        ("reverse_client_name", message.reverse_client_name),
        ("server_address", SERVER_ADDRESS),
        ("server_port", 25),
        ("helo_name", message.helo_name),
        ("sender", message.sender),
        ("recipient", recipient),
        ("recipient_count", count),
        ("queue_id", queue_id),
        ("instance", instance),
        ("size", message.size),
        ("etrn_domain", ""),
        ("stress", ""),
        ("sasl_method", ""),
        ("sasl_username", ""),
        ("sasl_sender", ""),
        ("ccert_subject", ""),
        ("ccert_issuer", ""),
        ("ccert_fingerprint", ""),
        ("ccert_pubkey_fingerprint", ""),
        ("encryption_protocol", tls[0]),
        ("encryption_cipher", tls[1]),
        ("encryption_keysize", tls[2]),
        ("policy_context", ""),
    ]


def encode_all(messages: list[Message], run: int) -> list[list[bytes]]:
    """Every message's requests, with instances and queue ids unique to `run`.

    smtpd's instance is "<pid>.<seconds>.<microseconds>.<sequence>" in hex; a different `run`
    (warm-up, measurement, another contender) gives different instances for the same messages,
    so no daemon can answer from its per-message memo of an earlier run.
    """
    encoded = []
    for number, message in enumerate(messages):
        instance = f"{0x4000 + run:x}.{0x65000000 + number // 50:x}.{number * 7919 % 10**6:x}.0"
        queue_id = f"{run:02X}{number:08X}"
        encoded.append(encode_message(message, instance, queue_id))
    return encoded
