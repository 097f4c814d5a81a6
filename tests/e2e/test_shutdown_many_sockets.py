"""`chat serve` with hundreds of connected sockets stops promptly on SIGTERM and exits 0,
even when some clients never answer the close.

hypercorn waits for every open connection before it returns (PITFALLS §1, hypercorn#308),
and engine.io's disconnect only asks a client to close: a client that does not answer
(a frozen process, a dead network path) kept its connection open, so on stock asyncio
with Python >= 3.12 the server never exited; with uvloop hypercorn cancelled each
connection after its graceful_timeout, one logged traceback per socket.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from tests.support.clients import Account, Api, Socket
from tests.support.processes import chat_serve

T = TypeVar("T")

USERS = 20
SOCKETS_PER_USER = 15  # under CHAT_MAX_SOCKETS_PER_USER (32) and the connect burst (60)
FROZEN_USERS = 5  # their 75 sockets never answer the server's close
STOP_WITHIN_S = 10.0


class FrozenClients:
    """Sockets on their own event loop in a thread that the test can freeze: a client
    process that stopped answering, its connections open and nothing read."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sockets: list[Socket] = []
        self._thaw = threading.Event()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def connect(self, url: str, user: Account, count: int) -> None:
        async def connect_all() -> None:
            batch = [Socket(url, user.token) for _ in range(count)]
            await asyncio.gather(*(s.connect() for s in batch))
            self.sockets += batch

        await self.run(connect_all())

    def freeze(self) -> None:
        self.loop.call_soon_threadsafe(self._thaw.wait)

    async def close(self) -> None:
        self._thaw.set()

        async def disconnect_all() -> None:
            await asyncio.gather(*(s.disconnect() for s in self.sockets), return_exceptions=True)
            # The clients' own background tasks, ended as asyncio.run would before closing.
            others = asyncio.all_tasks() - {asyncio.current_task()}
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        await self.run(disconnect_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        await asyncio.to_thread(self.thread.join)
        self.loop.close()


async def test_sigterm_with_300_sockets_some_frozen_exits_0_promptly(tmp_path: Path) -> None:
    server = chat_serve(tmp_path).start()
    api = Api(server.url)
    frozen = FrozenClients()
    live: list[Socket] = []
    try:
        users = await asyncio.gather(*(api.signup() for _ in range(USERS)))
        # One room for all: every user going offline fans presence out to every socket,
        # the shutdown's heaviest case.
        await api.create_room(users[0], *users[1:])
        for i, user in enumerate(users):  # one user's sockets at a time: a steady connect rate
            if i < FROZEN_USERS:
                await frozen.connect(server.url, user, SOCKETS_PER_USER)
            else:
                batch = [Socket(server.url, user.token) for _ in range(SOCKETS_PER_USER)]
                await asyncio.gather(*(s.connect() for s in batch))
                live += batch
        assert all(s.client.connected for s in live + frozen.sockets)
        frozen.freeze()

        # Stop from a thread: the live clients share this loop and must keep answering.
        started = time.monotonic()
        code = await asyncio.to_thread(server.stop, STOP_WITHIN_S + 10)
        elapsed = time.monotonic() - started

        log = server.log()
        assert code == 0, log[-3000:]
        assert elapsed < STOP_WITHIN_S, f"took {elapsed:.1f}s\n{log[-3000:]}"
        assert f"closing {USERS * SOCKETS_PER_USER} client connections" in log
        # The live clients closed when asked; only the frozen ones had to be ended.
        ended = re.search(r"(\d+) clients did not close their websocket; ending them", log)
        assert ended is not None, log[-3000:]
        assert 0 < int(ended[1]) <= FROZEN_USERS * SOCKETS_PER_USER, ended[0]
        assert "server stopped" in log
        assert "Traceback" not in log, log[-3000:]  # no connection cancelled by hypercorn
    finally:
        await frozen.close()
        await asyncio.gather(*(s.disconnect() for s in live), return_exceptions=True)
        await api.close()
        server.kill()
