"""Embedded mode keeps accepted messages in memory until the in-process worker stores them:
a graceful stop (SIGTERM) must drain them first, so a 202 still means stored."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.clients import Api
from tests.support.processes import chat_serve


async def test_sigterm_right_after_a_burst_loses_nothing(tmp_path: Path) -> None:
    first = chat_serve(tmp_path).start()
    api = Api(first.url)
    try:
        alice = await api.signup()
        room = await api.create_room(alice)
        answers = await asyncio.gather(*(api.send(alice, room["id"], f"m{i}") for i in range(200)))
        accepted = [r.json()["message"]["id"] for r in answers if r.status_code == 202]
        assert len(accepted) == 200
    finally:
        await api.close()
    assert first.stop() == 0, first.log()

    second = chat_serve(tmp_path, name="server-again").start()
    api = Api(second.url)
    try:
        stored = await api.all_messages(alice, room["id"])
    finally:
        await api.close()
        second.stop()
    assert sorted(m["id"] for m in stored) == sorted(accepted)
    assert [m["seq"] for m in stored] == list(range(1, 201))
