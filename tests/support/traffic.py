"""Message traffic for fault tests: bursts that retry like a good client, and the checks
that nothing accepted was lost, duplicated or reordered."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.clients import Account, Api, Socket


@dataclass
class BurstResult:
    accepted_ids: list[str] = field(default_factory=list)
    unavailable_answers: int = 0  # 503s, each retried with the same client_msg_id
    other_answers: list[int] = field(default_factory=list)


async def burst(
    apis: list[Api],
    sender: Account,
    room_id: str,
    count: int,
    *,
    concurrency: int = 16,
    retry_for: float = 90.0,
    progress: asyncio.Event | None = None,
    progress_at: int = 0,
) -> BurstResult:
    """Post ``count`` messages, spread over ``apis`` (nodes); retry 503s and connection
    errors with the same client_msg_id (as the contract tells clients to) until accepted.
    ``progress`` is set once ``progress_at`` messages were accepted (to inject a fault)."""
    result = BurstResult()
    gate = asyncio.Semaphore(concurrency)

    async def post(i: int) -> None:
        key = f"burst-{uuid.uuid4()}"
        deadline = asyncio.get_running_loop().time() + retry_for
        async with gate:
            while True:
                api = apis[i % len(apis)]
                try:
                    r = await api.send(sender, room_id, f"message {i}", client_msg_id=key)
                except httpx.HTTPError:
                    r = None
                if r is not None and r.status_code == 202:
                    result.accepted_ids.append(r.json()["message"]["id"])
                    if progress is not None and len(result.accepted_ids) >= progress_at:
                        progress.set()
                    return
                if r is not None and r.status_code != 503:
                    result.other_answers.append(r.status_code)
                    return
                result.unavailable_answers += r is not None
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"message {i} never accepted")
                i += 1  # the next try goes to another node
                await asyncio.sleep(0.2)  # back-off between retries, not synchronisation

    await asyncio.gather(*(post(i) for i in range(count)))
    return result


async def wait_stored(
    api: Api, reader: Account, room_id: str, count: int, timeout: float = 120.0
) -> list[dict[str, Any]]:
    """Poll history until ``count`` messages are stored (the worker's progress is the event)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        page = await api.history(reader, room_id, limit=1)
        if page["messages"] and page["messages"][-1]["seq"] >= count:
            return await api.all_messages(reader, room_id)
        if asyncio.get_running_loop().time() > deadline:
            stored = await api.all_messages(reader, room_id)
            raise TimeoutError(f"only {len(stored)} of {count} messages stored")
        await asyncio.sleep(0.25)


def assert_exactly_once_in_order(stored: list[dict[str, Any]], accepted_ids: list[str]) -> None:
    assert [m["seq"] for m in stored] == list(range(1, len(stored) + 1)), (
        "seq has a gap or a duplicate"
    )
    ids = [m["id"] for m in stored]
    assert len(ids) == len(set(ids)), "a message was stored twice"
    lost, unexpected = set(accepted_ids) - set(ids), set(ids) - set(accepted_ids)
    assert not lost and not unexpected, f"lost: {len(lost)}, unexpected: {len(unexpected)}"


async def delivered_to(
    socket: Socket, room_id: str, stored: list[dict[str, Any]]
) -> tuple[int, int]:
    """What a connected member got: (live deliveries, filled in by `sync`). Asserts that live
    plus sync cover every stored message, as the client's reconnect recipe promises."""
    live = {m["id"] for m in socket.events["message:new"] if m["room_id"] == room_id}
    missing = {m["id"] for m in stored} - live
    filled: set[str] = set()
    after = 0
    while missing - filled:
        ack = await socket.call("sync", {"room_id": room_id, "after_seq": after})
        assert ack["ok"], ack
        filled |= {m["id"] for m in ack["messages"]} & missing
        if not ack["has_more"]:
            break
        after = ack["messages"][-1]["seq"]
    assert missing <= filled, f"{len(missing - filled)} messages never reached the member"
    return len(live & {m["id"] for m in stored}), len(missing)
