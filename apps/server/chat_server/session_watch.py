"""Sockets whose session an operator ended (deactivation, password reset) are disconnected.

The operator's command changes the database only, so each node looks for itself: every
``interval`` seconds while it has sockets, it asks which of their sessions have ended and
disconnects those. A socket's session is its user and their session generation at connect.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from chat_domain.entities import User
from chat_domain.usecases.accounts import FindEndedSessions

log = logging.getLogger("chat.realtime")


class SessionWatch:
    """This node's sockets and their sessions, rechecked on a timer that runs only while
    there are sockets (no task is left behind when the last one goes)."""

    def __init__(
        self,
        find_ended: FindEndedSessions,
        disconnect: Callable[[str], Awaitable[None]],
        interval: float,
    ) -> None:
        self._find_ended, self._disconnect, self._interval = find_ended, disconnect, interval
        self._sessions: dict[str, tuple[str, int]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._checking: asyncio.Task[list[str]] | None = None

    def opened(self, sid: str, user: User) -> None:
        self._sessions[sid] = (user.id, user.session_generation)
        self._arm()

    def closed(self, sid: str) -> None:
        self._sessions.pop(sid, None)

    async def recheck(self) -> list[str]:
        """Disconnect the sockets whose session has ended; their ids."""
        if not self._sessions:
            return []
        ended = await self._find_ended(dict(self._sessions))
        for sid in ended:
            if sid in self._sessions:  # not gone while the users were read
                await self._disconnect(sid)
        return ended

    def _arm(self) -> None:
        if self._timer is None and self._checking is None and self._sessions:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self._start)

    def _start(self) -> None:
        self._timer = None
        self._checking = asyncio.create_task(self.recheck())
        self._checking.add_done_callback(self._checked)

    def _checked(self, task: asyncio.Task[list[str]]) -> None:
        self._checking = None
        if not task.cancelled() and task.exception() is not None:
            # The database may be down for a while: try again at the next turn.
            log.error("rechecking the sockets' sessions failed", exc_info=task.exception())
        self._arm()
