"""The benchmark world's flood domains and the flood traffic drawn from them."""

from __future__ import annotations

import pytest

from tests.support.traffic import generate_flood
from tests.support.world import DomainKind, build_world

DOMAINS, FLOOD = 300, 400


def test_flood_domains_leave_the_rest_of_the_world_as_it_was() -> None:
    plain = build_world(DOMAINS, seed=3)
    flooded = build_world(DOMAINS, seed=3, flood=FLOOD)
    assert flooded.domains == plain.domains
    assert flooded.outsiders == plain.outsiders
    assert {name: flooded.zone[name] for name in plain.zone} == plain.zone
    assert plain.flood == ()


def test_flood_domains_are_new_names_of_every_kind_but_timeout() -> None:
    world = build_world(DOMAINS, seed=3, flood=FLOOD)
    names = [domain.name for domain in world.flood]
    assert len(set(names)) == FLOOD
    assert not set(names) & {domain.name for domain in world.domains}
    assert all(name in world.zone for name in names)
    kinds = {domain.kind for domain in world.flood}
    assert DomainKind.TIMEOUT not in kinds
    assert {DomainKind.PROVIDER, DomainKind.MIXED, DomainKind.SELF_HOSTED} <= kinds


def test_flood_traffic_takes_each_domain_once_from_its_slice() -> None:
    world = build_world(DOMAINS, seed=3, flood=FLOOD)
    warmup = generate_flood(world, 0, 100, seed=1)
    measured = generate_flood(world, 100, 300, seed=2)
    slices = (world.flood[:100], world.flood[100:])
    for messages, domains in zip((warmup, measured), slices, strict=True):
        senders = [m.sender.rpartition("@")[2] for m in messages if m.sender]
        assert len(senders) == len(set(senders))  # no domain twice
        assert set(senders) <= {domain.name for domain in domains}
        assert len(senders) > 0.9 * len(messages)  # all but the null senders


def test_a_flood_longer_than_the_world_is_refused() -> None:
    world = build_world(DOMAINS, seed=3, flood=10)
    with pytest.raises(ValueError, match="10 flood domains"):
        generate_flood(world, 5, 6, seed=1)
    with pytest.raises(ValueError, match="at most 65536"):
        build_world(60_000, seed=3, flood=6_000)
