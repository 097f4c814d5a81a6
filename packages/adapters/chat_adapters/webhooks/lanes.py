"""Per-room lanes: items of one room handled one at a time in arrival order, rooms in parallel."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")


class RoomLanes(Generic[Item]):
    """One task per room with work waiting; it ends when its room's queue is empty.

    ``handle`` should not raise: an item it raises on is logged and left behind (its
    adapter decides what that means, e.g. unacknowledged until the channel closes).
    """

    def __init__(self, handle: Callable[[Item], Awaitable[None]]) -> None:
        self._handle = handle
        self._queues: dict[str, deque[Item]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def put(self, room_id: str, item: Item) -> None:
        queue = self._queues.get(room_id)
        if queue is not None:
            queue.append(item)
            return
        queue = self._queues[room_id] = deque([item])
        task = asyncio.create_task(self._run(room_id, queue))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, room_id: str, queue: deque[Item]) -> None:
        try:
            while queue:
                try:
                    await self._handle(queue[0])
                except Exception:
                    log.exception("handling a webhook event of room %s failed", room_id)
                queue.popleft()
        finally:
            # No await between the last check and this: nothing was appended meanwhile.
            if self._queues.get(room_id) is queue:
                del self._queues[room_id]

    async def close(self) -> list[Item]:
        """Interrupt every lane; answer what they held unhandled, each room's in order (the
        item in hand included: it may have been handled, so it may come again)."""
        left = [item for queue in self._queues.values() for item in queue]
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._queues.clear()
        return left
