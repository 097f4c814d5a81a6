"""Contract of the admission port: one set of asserts, run on every adapter.

Each adapter is built for a lane of ``CONCURRENCY`` at once and ``QUEUE`` waiting; the
asserts use the port alone (``admit()``), counting callers inside from the outside.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from chat_adapters.admission import LocalAdmission
from chat_domain.errors import RateLimited
from chat_domain.ports.admission import Admission

CONCURRENCY, QUEUE = 2, 3
WAIT = 5.0

ADAPTERS: dict[str, Callable[[], Admission]] = {
    "local": lambda: LocalAdmission("things", concurrency=CONCURRENCY, queue=QUEUE),
}


@pytest.fixture(params=list(ADAPTERS))
def admission(request: pytest.FixtureRequest) -> Admission:
    return ADAPTERS[request.param]()


class Lane:
    """Callers that enter the lane and stay inside until the test lets them go."""

    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        self.inside: list[int] = []  # who is inside now
        self.entered: list[int] = []  # in the order they got in
        self.most_inside = 0
        self.go = asyncio.Event()
        self.changed = asyncio.Event()

    async def caller(self, n: int, fail: bool = False) -> int:
        async with self.admission.admit():
            self.inside.append(n)
            self.entered.append(n)
            self.most_inside = max(self.most_inside, len(self.inside))
            self.changed.set()
            try:
                await self.go.wait()
                if fail:
                    raise ValueError(f"caller {n} failed inside the lane")
            finally:
                self.inside.remove(n)
        return n

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


async def settle() -> None:
    """Let every runnable task take its next step (none of them sleeps)."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_at_most_concurrency_inside_and_the_queue_waits(admission: Admission) -> None:
    lane = Lane(admission)
    callers = [asyncio.create_task(lane.caller(n)) for n in range(CONCURRENCY + QUEUE)]
    await lane.until(lambda: len(lane.inside) == CONCURRENCY)
    await settle()
    assert len(lane.inside) == CONCURRENCY  # the others wait their turn, not refused
    assert not any(c.done() for c in callers)
    lane.go.set()
    assert sorted(await asyncio.wait_for(asyncio.gather(*callers), WAIT)) == list(
        range(CONCURRENCY + QUEUE)
    )
    assert lane.most_inside == CONCURRENCY


async def test_a_caller_beyond_the_queue_is_refused_at_once_with_a_retry_after(
    admission: Admission,
) -> None:
    lane = Lane(admission)
    callers = [asyncio.create_task(lane.caller(n)) for n in range(CONCURRENCY + QUEUE)]
    await lane.until(lambda: len(lane.inside) == CONCURRENCY)
    await settle()
    with pytest.raises(RateLimited) as refused:
        async with admission.admit():
            pytest.fail("admitted beyond its queue")
    assert refused.value.retry_after > 0
    lane.go.set()
    await asyncio.wait_for(asyncio.gather(*callers), WAIT)
    async with admission.admit():  # everyone left: the lane admits again
        pass


async def test_the_queue_is_served_first_come_first_served(admission: Admission) -> None:
    lane = Lane(admission)
    callers = []
    for n in range(CONCURRENCY + QUEUE):  # each one queued before the next arrives
        callers.append(asyncio.create_task(lane.caller(n)))
        await settle()
    lane.go.set()
    await asyncio.wait_for(asyncio.gather(*callers), WAIT)
    assert lane.entered == list(range(CONCURRENCY + QUEUE))


async def test_a_caller_that_fails_inside_gives_its_turn_up(admission: Admission) -> None:
    lane = Lane(admission)
    callers = [
        asyncio.create_task(lane.caller(n, fail=n < CONCURRENCY))
        for n in range(CONCURRENCY + QUEUE)
    ]
    await lane.until(lambda: len(lane.inside) == CONCURRENCY)
    lane.go.set()
    results = await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), WAIT)
    assert [type(r) for r in results[:CONCURRENCY]] == [ValueError] * CONCURRENCY
    assert results[CONCURRENCY:] == list(range(CONCURRENCY, CONCURRENCY + QUEUE))
    await _admits_a_full_lane_again(admission)


async def test_a_waiting_caller_that_is_cancelled_gives_its_place_up(
    admission: Admission,
) -> None:
    """A client that goes away while queued (its request is cancelled) frees its place."""
    lane = Lane(admission)
    callers = [asyncio.create_task(lane.caller(n)) for n in range(CONCURRENCY + QUEUE)]
    await lane.until(lambda: len(lane.inside) == CONCURRENCY)
    await settle()
    for waiting in callers[CONCURRENCY:]:
        waiting.cancel()
    await asyncio.gather(*callers[CONCURRENCY:], return_exceptions=True)
    # The queue is empty again: QUEUE newcomers wait, where one more would be refused.
    newcomers = [asyncio.create_task(lane.caller(n)) for n in range(10, 10 + QUEUE)]
    await settle()
    assert not any(n.done() for n in newcomers)
    with pytest.raises(RateLimited):
        async with admission.admit():
            pass
    lane.go.set()
    await asyncio.wait_for(asyncio.gather(*callers[:CONCURRENCY], *newcomers), WAIT)
    assert 10 + QUEUE - 1 in lane.entered and not set(
        range(CONCURRENCY, CONCURRENCY + QUEUE)
    ) & set(lane.entered)


async def _admits_a_full_lane_again(admission: Admission) -> None:
    lane = Lane(admission)
    callers = [asyncio.create_task(lane.caller(n)) for n in range(CONCURRENCY + QUEUE)]
    await lane.until(lambda: len(lane.inside) == CONCURRENCY)
    lane.go.set()
    await asyncio.wait_for(asyncio.gather(*callers), WAIT)
