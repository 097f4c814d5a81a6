"""Typing indicators that stop by themselves when their socket stops refreshing them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from chat_domain.errors import DomainError

log = logging.getLogger("chat.realtime")


class TypingTimers:
    """This node's typing indicators: per socket and room, a timer that relays
    ``is_typing: false`` when no refresh comes within ``ttl`` (and at once when the socket
    goes), so a client that crashed mid-word never leaves "typing..." on screen for good."""

    def __init__(self, relay: Callable[[str, str, bool], Awaitable[None]], ttl: float) -> None:
        self._relay, self._ttl = relay, ttl
        self._timers: dict[tuple[str, str], tuple[str, asyncio.TimerHandle]] = {}
        self._relaying: set[asyncio.Task[None]] = set()

    def typing(self, sid: str, user_id: str, room_id: str, is_typing: bool) -> None:
        """After a relayed ``typing`` event: (re)arm the timer, or disarm it on a stop."""
        key = (sid, room_id)
        previous = self._timers.pop(key, None)
        if previous is not None:
            previous[1].cancel()
        if is_typing:
            timer = asyncio.get_running_loop().call_later(self._ttl, self._expire, key)
            self._timers[key] = (user_id, timer)

    async def socket_gone(self, sid: str) -> None:
        for key in [k for k in self._timers if k[0] == sid]:
            user_id, timer = self._timers.pop(key)
            timer.cancel()
            await self._stop(user_id, key[1])

    def _expire(self, key: tuple[str, str]) -> None:
        user_id, _ = self._timers.pop(key)
        task = asyncio.create_task(self._stop(user_id, key[1]))
        self._relaying.add(task)  # keep a reference until it is done
        task.add_done_callback(self._relaying.discard)

    async def _stop(self, user_id: str, room_id: str) -> None:
        try:
            await self._relay(user_id, room_id, False)
        except DomainError:
            pass  # no longer a member of the room: nobody there to tell
        except Exception:
            log.exception("relaying the end of typing in room %s failed", room_id)
