"""The socket events one by one: the namespace's methods on in-memory use cases.

The transport (engine.io sessions) is out of the picture: a test calls an event as
python-socketio would dispatch it, with the socket's user known to the namespace.
"""

from __future__ import annotations

from typing import Any

import pytest
import socketio

from chat_adapters.memory.presence import InMemoryPresenceTracker
from chat_adapters.memory.rate_limit import InMemoryRateLimiter
from chat_adapters.security.tokens import JwtTokenService
from chat_domain.entities import Room, User
from chat_domain.ports.rate_limit import RateRule
from chat_domain.usecases.accounts import FindEndedSessions
from chat_domain.usecases.auth import Authenticate
from chat_domain.usecases.messages import ListHistory, SendMessage
from chat_domain.usecases.presence import ConnectSocket, DisconnectSocket
from chat_domain.usecases.receipts import ListReceipts, MoveMarker
from chat_domain.usecases.rooms import RelayTyping
from chat_server.realtime import ChatNamespace, SocketUseCases
from tests.unit.conftest import World

WAIT_S = 5.0


class KnownSockets(ChatNamespace):
    """The namespace with its sockets' users given by the test, not by engine.io sessions."""

    def __init__(self, use_cases: SocketUseCases, typing_ttl: float) -> None:
        super().__init__(use_cases, typing_ttl)
        self.sessions: dict[str, str] = {}

    async def user_of(self, sid: str) -> str:
        return self.sessions[sid]


@pytest.fixture
def events(world: World, tokens: JwtTokenService) -> KnownSockets:
    presence = InMemoryPresenceTracker()
    use_cases = SocketUseCases(
        authenticate=Authenticate(world.storage, tokens),
        connect_socket=ConnectSocket(world.storage, presence, world.notifier),
        disconnect_socket=DisconnectSocket(world.storage, presence, world.notifier),
        send_message=SendMessage(world.storage, world.broker, world.clock, world.ids),
        move_marker=MoveMarker(world.storage, world.notifier),
        relay_typing=RelayTyping(world.storage, world.notifier),
        expire_typing=RelayTyping(world.storage, world.notifier),
        list_history=ListHistory(world.storage),
        rate_limiter=InMemoryRateLimiter(),
        connect_rate=RateRule("connect", 1.0, 10),
        max_sockets_per_user=2,
        find_ended_sessions=FindEndedSessions(world.storage),
        session_recheck_seconds=30.0,
    )
    namespace = KnownSockets(use_cases, typing_ttl=0.01)
    socketio.AsyncServer(async_mode="asgi").register_namespace(namespace)
    return namespace


async def pair(world: World) -> tuple[User, User, Room]:
    alice, bob = await world.user("alice"), await world.user("bob")
    return alice, bob, await world.room(alice, bob)


async def emit(events: KnownSockets, event: str, user: User, *args: Any) -> Any:
    """What python-socketio does with a client's event on socket "s-<user>"."""
    sid = f"s-{user.username}"
    events.sessions[sid] = user.id
    return await events.trigger_event(event, sid, *args)


async def test_send_acks_the_accepted_message_and_hands_it_to_the_broker(
    world: World, events: KnownSockets
) -> None:
    alice, _, room = await pair(world)

    ack = await emit(events, "message:send", alice, {"room_id": room.id, "body": "hello"})

    assert ack["ok"] is True
    assert ack["message"]["body"] == "hello" and ack["message"]["room_id"] == room.id
    assert [m.body for m in world.broker.published] == ["hello"]


async def test_a_malformed_payload_gets_a_validation_ack_and_changes_nothing(
    world: World, events: KnownSockets
) -> None:
    alice, _, room = await pair(world)

    for args in ([{"room_id": room.id}], [{"room_id": room.id, "body": 7}], ["x", "y"], []):
        ack = await emit(events, "message:send", alice, *args)
        assert ack["ok"] is False and ack["error"]["code"] == "validation_error", args
    assert world.broker.published == []


async def test_a_domain_error_becomes_the_error_ack(world: World, events: KnownSockets) -> None:
    alice, _, _ = await pair(world)
    carol = await world.user("carol")
    her_room = await world.room(carol)

    ack = await emit(events, "sync", alice, {"room_id": her_room.id, "after_seq": 0})

    assert ack == {"ok": False, "error": {"code": "not_found", "message": "room not found"}}


async def test_read_moves_the_readers_marker(world: World, events: KnownSockets) -> None:
    alice, bob, room = await pair(world)
    stored = await world.message(alice, room)

    ack = await emit(events, "read", bob, {"room_id": room.id, "seq": stored.seq})

    assert ack == {"ok": True}
    receipts = await ListReceipts(world.storage)(alice.id, room.id)
    assert {r.user_id: r.read_seq for r in receipts}[bob.id] == stored.seq


async def test_sync_answers_the_messages_after_a_seq(world: World, events: KnownSockets) -> None:
    alice, bob, room = await pair(world)
    for body in ("one", "two", "three"):
        await world.message(alice, room, body)

    ack = await emit(events, "sync", bob, {"room_id": room.id, "after_seq": 1, "limit": 1})

    assert ack["ok"] is True and ack["has_more"] is True
    assert [m["body"] for m in ack["messages"]] == ["two"]


async def test_typing_is_relayed_then_stopped_when_not_refreshed(
    world: World, events: KnownSockets
) -> None:
    alice, bob, room = await pair(world)
    world.forget_events()

    ack = await emit(events, "typing", alice, {"room_id": room.id, "is_typing": True})

    assert ack == {"ok": True}
    started, stopped = await world.notifier.wait_for(bob.id, "typing", 2, WAIT_S)
    assert started["is_typing"] is True and stopped["is_typing"] is False


async def test_an_event_outside_the_contract_is_not_handled(
    world: World, events: KnownSockets
) -> None:
    alice, _, _ = await pair(world)

    assert await emit(events, "message:shout", alice, {}) is events.server.not_handled
