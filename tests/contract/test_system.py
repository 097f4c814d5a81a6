"""Contract of the system ports (clock and ids): one set of asserts, run on every adapter.

The production adapters (``SystemClock``, ``UuidGenerator``) and the deterministic ones the
unit tests run on (``FixedClock``, ``SequentialIds``) must behave alike wherever a use case
can tell: what passes on the fakes then holds in production.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from chat_adapters.memory.system import FixedClock, SequentialIds
from chat_adapters.system import SystemClock, UuidGenerator
from chat_domain.ports.system import Clock, IdGenerator
from chat_domain.text import ID_MAX, is_id

CLOCKS: dict[str, Callable[[], Clock]] = {"system": SystemClock, "fixed": FixedClock}
IDS: dict[str, Callable[[], IdGenerator]] = {"uuid": UuidGenerator, "sequential": SequentialIds}


@pytest.fixture(params=list(CLOCKS))
def clock(request: pytest.FixtureRequest) -> Clock:
    return CLOCKS[request.param]()


@pytest.fixture(params=list(IDS))
def make_ids(request: pytest.FixtureRequest) -> Callable[[], IdGenerator]:
    """A factory: stable ids must agree between two generators (two nodes)."""
    return IDS[request.param]


# --- clock --------------------------------------------------------------------------------


def test_now_is_timezone_aware_utc(clock: Clock) -> None:
    now = clock.now()
    assert now.tzinfo is not None
    assert now.utcoffset() == timedelta(0)


def test_now_never_goes_back(clock: Clock) -> None:
    readings = [clock.now() for _ in range(1000)]
    assert readings == sorted(readings)


# --- ids ----------------------------------------------------------------------------------


def test_new_ids_are_unique(make_ids: Callable[[], IdGenerator]) -> None:
    ids = make_ids()
    made = [ids.new_id() for _ in range(10_000)]
    assert len(set(made)) == len(made)


def test_every_id_has_the_shape_a_client_may_name(make_ids: Callable[[], IdGenerator]) -> None:
    """A path or payload naming an id of another shape is refused before storage is asked
    (chat_domain.text.is_id): an id the generator made must never be refused that way."""
    ids = make_ids()
    made = [ids.new_id() for _ in range(100)]
    made += [ids.stable_id("message", "room", "sender", "x" * 200), ids.stable_id()]
    assert all(is_id(i) and len(i) <= ID_MAX for i in made), made


def test_a_stable_id_is_the_same_for_the_same_parts_on_every_node(
    make_ids: Callable[[], IdGenerator],
) -> None:
    here, there = make_ids(), make_ids()
    here.new_id()  # what a generator made before does not change its stable ids
    assert here.stable_id("message", "r1", "u1", "c1") == there.stable_id(
        "message", "r1", "u1", "c1"
    )


def test_stable_ids_of_different_parts_differ(make_ids: Callable[[], IdGenerator]) -> None:
    ids = make_ids()
    parts = [
        ("message", "r1", "u1", "c1"),
        ("message", "r1", "u1", "c2"),
        ("message", "r2", "u1", "c1"),
        ("message", "r1", "u2", "c1"),
        # Where one part ends and the next begins is part of the identity.
        ("message", "r1u1", "", "c1"),
        ("message", "r", "1u1", "c1"),
        ("message", "r1", "u1c1"),
        ("message", "r1", "u1", "c1", ""),
    ]
    assert len({ids.stable_id(*p) for p in parts}) == len(parts)


def test_a_stable_id_is_not_a_new_id(make_ids: Callable[[], IdGenerator]) -> None:
    ids = make_ids()
    stable = {ids.stable_id("message", str(n)) for n in range(100)}
    assert stable.isdisjoint(ids.new_id() for _ in range(100))
