"""Real clients of a running service: REST over httpx, socket.io over websocket."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import socketio

Predicate = Callable[[Any], bool]


@dataclass
class Account:
    id: str
    username: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Api:
    """REST calls of the contract, answering raw httpx responses (tests assert on them)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.AsyncClient(base_url=base_url, timeout=15.0)

    async def close(self) -> None:
        await self.http.aclose()

    async def signup(self, prefix: str = "user") -> Account:
        """Register a fresh user and log in."""
        username = f"{prefix}_{uuid.uuid4().hex[:10]}"
        password = "correct horse battery"
        r = await self.http.post(
            "/api/v1/auth/register", json={"username": username, "password": password}
        )
        assert r.status_code == 201, r.text
        r = await self.http.post(
            "/api/v1/auth/login", json={"username": username, "password": password}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        return Account(body["user"]["id"], username, body["access_token"])

    async def create_room(
        self, owner: Account, *members: Account, name: str = "room"
    ) -> dict[str, Any]:
        r = await self.http.post(
            "/api/v1/rooms",
            json={"name": name, "member_ids": [m.id for m in members]},
            headers=owner.headers,
        )
        assert r.status_code == 201, r.text
        room: dict[str, Any] = r.json()["room"]
        return room

    async def send(
        self, who: Account, room_id: str, body: str, client_msg_id: str | None = None
    ) -> httpx.Response:
        payload: dict[str, Any] = {"body": body}
        if client_msg_id is not None:
            payload["client_msg_id"] = client_msg_id
        return await self.http.post(
            f"/api/v1/rooms/{room_id}/messages", json=payload, headers=who.headers
        )

    async def history(self, who: Account, room_id: str, **params: Any) -> dict[str, Any]:
        r = await self.http.get(
            f"/api/v1/rooms/{room_id}/messages", params=params, headers=who.headers
        )
        assert r.status_code == 200, r.text
        page: dict[str, Any] = r.json()
        return page

    async def all_messages(self, who: Account, room_id: str) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        after = 0
        while True:
            page = await self.history(who, room_id, after_seq=after, limit=200)
            messages += page["messages"]
            if not page["has_more"]:
                return messages
            after = messages[-1]["seq"]


@dataclass
class Socket:
    """A python-socketio client over websocket that records every event it gets."""

    url: str
    token: str | None
    client: socketio.AsyncClient = field(init=False)
    events: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def __post_init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)

        @self.client.on("*")
        async def any_event(event: str, data: Any = None) -> None:
            async with self._changed:
                self.events[event].append(data)
                self._changed.notify_all()

    async def connect(self) -> Socket:
        await self.client.connect(
            self.url,
            auth={"token": self.token} if self.token is not None else None,
            transports=["websocket"],
            wait_timeout=10,
        )
        return self

    async def disconnect(self) -> None:
        await self.client.disconnect()

    async def call(self, event: str, data: Any, timeout: float = 10.0) -> Any:
        return await self.client.call(event, data, timeout=timeout)

    async def wait_for(
        self,
        event: str,
        predicate: Predicate = lambda _: True,
        count: int = 1,
        timeout: float = 10.0,
    ) -> list[Any]:
        """Wait until ``count`` events named ``event`` match ``predicate``; return them."""

        def matching() -> list[Any]:
            return [e for e in self.events[event] if predicate(e)]

        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(matching()) >= count), timeout
            )
        return matching()
