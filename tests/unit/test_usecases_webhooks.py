"""Webhooks on in-memory adapters: what the chat announces, and how the dispatcher delivers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from chat_adapters.memory.presence import InMemoryPresenceTracker
from chat_adapters.memory.storage import InMemoryPendingWebhookEvents
from chat_adapters.webhooks.memory import InMemoryWebhookOutbox
from chat_domain.entities import Message
from chat_domain.errors import Unavailable
from chat_domain.ports.webhooks import (
    WebhookEndpoint,
    WebhookEvent,
    WebhookRejected,
    WebhookSender,
)
from chat_domain.usecases.messages import DeleteMessage, EditMessage, SendMessage, StoreMessages
from chat_domain.usecases.rooms import (
    AddMember,
    CreateGroupRoom,
    OpenDirectRoom,
    RemoveMember,
)
from chat_domain.usecases.server_api import SetRoomMembers
from chat_domain.usecases.webhook_relay import WebhookRelay
from chat_domain.usecases.webhooks import WebhookAnnouncements, WebhookDispatcher
from tests.unit.conftest import World

ENDPOINT = WebhookEndpoint("http://receiver.test/hook", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")


class RecordingOutbox(InMemoryWebhookOutbox):
    """The embedded outbox, remembering what was published (nobody consumes it here)."""

    def __init__(self) -> None:
        super().__init__()
        self.published: list[WebhookEvent] = []

    async def publish(self, events: list[WebhookEvent]) -> None:  # type: ignore[override]
        await super().publish(events)
        self.published.extend(events)


class ScriptedSender(WebhookSender):
    """A receiver that refuses the first ``failures`` POSTs of each event id, then takes it;
    ``hold`` rooms' events wait until released."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.attempts: dict[str, int] = {}
        self.delivered: list[WebhookEvent] = []
        self.held: dict[str, asyncio.Event] = {}
        self.arrived = asyncio.Event()

    async def send(self, endpoint: WebhookEndpoint, event: WebhookEvent) -> None:
        if event.room_id in self.held:
            await self.held[event.room_id].wait()
        self.attempts[event.id] = self.attempts.get(event.id, 0) + 1
        if self.attempts[event.id] <= self.failures:
            raise WebhookRejected("status 503")
        self.delivered.append(event)
        self.arrived.set()


class Pauses:
    """The dispatcher's sleep, recorded instead of waited."""

    def __init__(self) -> None:
        self.taken: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.taken.append(seconds)


@pytest.fixture
def outbox() -> RecordingOutbox:
    return RecordingOutbox()


@pytest.fixture
def presence() -> InMemoryPresenceTracker:
    return InMemoryPresenceTracker()


@pytest.fixture
def announcements(
    world: World, outbox: RecordingOutbox, presence: InMemoryPresenceTracker
) -> WebhookAnnouncements:
    return WebhookAnnouncements(outbox, presence, world.clock, world.ids, [ENDPOINT])


@pytest.fixture
def relay(world: World, outbox: RecordingOutbox) -> WebhookRelay:
    """The relay of what the request side recorded (run by hand here: ``relay()``)."""
    return WebhookRelay(InMemoryPendingWebhookEvents(world.storage), outbox)


async def accepted(world: World, sender_id: str, room_id: str, body: str) -> Message:
    send = SendMessage(world.storage, world.broker, world.clock, world.ids)
    return (await send(sender_id, room_id, body)).message


async def test_stored_messages_are_announced_with_unread_for_offline_members_only(
    world: World,
    outbox: RecordingOutbox,
    presence: InMemoryPresenceTracker,
    announcements: WebhookAnnouncements,
) -> None:
    alice, bob, carol = [await world.user(n) for n in ("alice", "bob", "carol")]
    room = await world.room(alice, bob, carol)
    await presence.socket_connected(bob.id, "bob-socket")
    store = StoreMessages(world.storage, world.notifier, announcements)

    [stored] = await store([await accepted(world, alice.id, room.id, "hello")])

    new, unread = outbox.published
    assert (new.type, new.room_id, new.data["id"], new.data["seq"]) == (
        "message.new",
        room.id,
        stored.id,
        1,
    )
    # Bob has a socket: he hears it live. Alice sent it. Only Carol needs a push.
    assert unread.type == "message.unread"
    assert unread.data["user_ids"] == [carol.id]
    assert unread.data["body"] == "hello"


async def test_a_redelivered_batch_is_announced_again_under_the_same_ids(
    world: World, outbox: RecordingOutbox, announcements: WebhookAnnouncements
) -> None:
    alice, bob = [await world.user(n) for n in ("alice", "bob")]
    room = await world.room(alice, bob)
    store = StoreMessages(world.storage, world.notifier, announcements)
    message = await accepted(world, alice.id, room.id, "once")

    await store([message])
    first = [e.id for e in outbox.published]
    outbox.published.clear()
    await store([message])  # the broker's redelivery after a crash

    assert [e.id for e in outbox.published] == first
    assert len(set(first)) == 2  # message.new and message.unread differ


async def test_an_outbox_that_cannot_take_the_batch_fails_the_store_for_a_retry(
    world: World, outbox: RecordingOutbox, announcements: WebhookAnnouncements
) -> None:
    alice, bob = [await world.user(n) for n in ("alice", "bob")]
    room = await world.room(alice, bob)
    await outbox.close()
    store = StoreMessages(world.storage, world.notifier, announcements)

    with pytest.raises(Unavailable):
        await store([await accepted(world, alice.id, room.id, "hi")])


async def test_edits_deletes_and_membership_changes_are_recorded_then_relayed(
    world: World, outbox: RecordingOutbox, announcements: WebhookAnnouncements, relay: WebhookRelay
) -> None:
    alice, bob, carol = [await world.user(n) for n in ("alice", "bob", "carol")]
    room = await world.room(alice, bob)
    message = await world.message(alice, room, "draft")

    await EditMessage(world.storage, world.notifier, world.clock, webhooks=announcements)(
        alice.id, room.id, message.id, "final"
    )
    await DeleteMessage(world.storage, world.notifier, announcements)(alice.id, room.id, message.id)
    await DeleteMessage(world.storage, world.notifier, announcements)(alice.id, room.id, message.id)
    await AddMember(world.storage, world.notifier, world.clock, webhooks=announcements)(
        alice.id, room.id, carol.id
    )
    await RemoveMember(world.storage, world.notifier, world.clock, announcements)(
        alice.id, room.id, carol.id
    )
    assert outbox.published == []  # recorded with each change, not yet relayed

    assert await relay.relay() == 4
    assert [(e.type, e.room_id) for e in outbox.published] == [
        ("message.updated", room.id),
        ("message.deleted", room.id),  # deleting twice announces once
        ("member.added", room.id),
        ("member.removed", room.id),
    ]
    updated, deleted, added, removed = (e.data for e in outbox.published)
    assert (updated["id"], updated["body"]) == (message.id, "final")
    assert deleted == {"room_id": room.id, "id": message.id, "seq": message.seq}
    assert added == {"room_id": room.id, "user_id": carol.id, "by": alice.id}
    assert removed == {"room_id": room.id, "user_id": carol.id, "by": alice.id}


async def test_a_new_group_room_announces_each_of_its_members(
    world: World, outbox: RecordingOutbox, announcements: WebhookAnnouncements, relay: WebhookRelay
) -> None:
    alice, bob, carol = [await world.user(n) for n in ("alice", "bob", "carol")]
    create = CreateGroupRoom(
        world.storage, world.notifier, world.clock, world.ids, webhooks=announcements
    )

    room = (await create(alice.id, "trip", [bob.id, carol.id])).room
    await relay.relay()

    assert [(e.type, e.data) for e in outbox.published] == [
        ("member.added", {"room_id": room.id, "user_id": uid, "by": alice.id})
        for uid in (alice.id, bob.id, carol.id)
    ]
    assert len({e.id for e in outbox.published}) == 3


async def test_a_direct_room_announces_both_users_when_created_and_the_caller_coming_back(
    world: World, outbox: RecordingOutbox, announcements: WebhookAnnouncements, relay: WebhookRelay
) -> None:
    alice, bob = [await world.user(n) for n in ("alice", "bob")]
    open_direct = OpenDirectRoom(
        world.storage, world.notifier, world.clock, world.ids, webhooks=announcements
    )

    room = (await open_direct(alice.id, [bob.id]))[0].room
    await open_direct(alice.id, [bob.id])  # already both members: nothing to announce
    await RemoveMember(world.storage, world.notifier, world.clock)(bob.id, room.id, bob.id)
    await open_direct(bob.id, [alice.id])  # bob comes back
    await relay.relay()

    added = [
        (e.data["user_id"], e.data["by"]) for e in outbox.published if e.type == "member.added"
    ]
    assert added == [(alice.id, alice.id), (bob.id, alice.id), (bob.id, bob.id)]
    assert all(e.room_id == room.id for e in outbox.published)


async def test_a_committed_edit_succeeds_though_the_outbox_is_down_and_its_event_waits(
    world: World, outbox: RecordingOutbox, announcements: WebhookAnnouncements, relay: WebhookRelay
) -> None:
    alice, bob = [await world.user(n) for n in ("alice", "bob")]
    room = await world.room(alice, bob)
    message = await world.message(alice, room, "draft")
    await outbox.close()

    edited = await EditMessage(world.storage, world.notifier, world.clock, webhooks=announcements)(
        alice.id, room.id, message.id, "final"
    )

    assert edited.body == "final"
    with pytest.raises(Unavailable):
        await relay.relay()
    assert outbox.published == []
    [waiting] = await InMemoryPendingWebhookEvents(world.storage).oldest(10)
    assert (waiting.event.type, waiting.event.data["body"]) == ("message.updated", "final")


async def test_with_no_endpoints_nothing_is_announced(
    world: World, outbox: RecordingOutbox, presence: InMemoryPresenceTracker
) -> None:
    silent = WebhookAnnouncements(outbox, presence, world.clock, world.ids, [])
    alice, bob = [await world.user(n) for n in ("alice", "bob")]
    room = await world.room(alice, bob)

    await StoreMessages(world.storage, world.notifier, silent)(
        [await accepted(world, alice.id, room.id, "hi")]
    )
    message = await world.message(alice, room, "draft")
    await EditMessage(world.storage, world.notifier, world.clock, webhooks=silent)(
        alice.id, room.id, message.id, "final"
    )

    assert outbox.published == []
    assert await InMemoryPendingWebhookEvents(world.storage).count() == 0  # no rows either


def event(room_id: str, n: int) -> WebhookEvent:
    return WebhookEvent(f"evt_{room_id}_{n}", "message.new", room_id, 0, {"n": n})


class WatchedOutbox(InMemoryWebhookOutbox):
    """The embedded outbox, letting a test wait for its dead letters."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = asyncio.Event()

    async def set_aside(self, event: WebhookEvent, url: str, reason: str) -> None:
        await super().set_aside(event, url, reason)
        self._changed.set()

    async def dead_lettered(self, count: int) -> None:
        while len(self.dead_letters) < count:
            self._changed.clear()
            await self._changed.wait()


@pytest.fixture
async def running_outbox() -> AsyncIterator[WatchedOutbox]:
    outbox = WatchedOutbox()
    await outbox.start()
    yield outbox
    await outbox.close()


async def wait_for(sender: ScriptedSender, count: int) -> None:
    async def delivered() -> None:
        while len(sender.delivered) < count:
            sender.arrived.clear()
            await sender.arrived.wait()

    await asyncio.wait_for(delivered(), 5)


async def test_a_refused_event_is_retried_with_doubling_pauses_then_delivered_in_order(
    running_outbox: WatchedOutbox,
) -> None:
    sender, pauses = ScriptedSender(failures=4), Pauses()
    dispatcher = WebhookDispatcher(
        running_outbox, sender, [ENDPOINT], max_attempts=8, retry_base=1, retry_max=5, sleep=pauses
    )
    await running_outbox.publish([event("r1", n) for n in range(3)])
    running = asyncio.create_task(dispatcher.run())

    await wait_for(sender, 3)

    assert [e.data["n"] for e in sender.delivered] == [0, 1, 2]
    assert pauses.taken[:4] == [1, 2, 4, 5]  # doubling, capped at retry_max
    assert running_outbox.dead_letters == []
    await running_outbox.close()
    await running


async def test_an_event_refused_max_attempts_times_is_dead_lettered_and_the_room_moves_on(
    running_outbox: WatchedOutbox,
) -> None:
    sender = ScriptedSender(failures=3)
    dispatcher = WebhookDispatcher(
        running_outbox, sender, [ENDPOINT], max_attempts=3, retry_base=0, retry_max=0
    )
    running = asyncio.create_task(dispatcher.run())
    await running_outbox.publish([event("r1", 0), event("r1", 1)])

    await asyncio.wait_for(running_outbox.dead_lettered(2), 5)

    assert [(e.id, url) for e, url, _ in running_outbox.dead_letters] == [
        ("evt_r1_0", ENDPOINT.url),
        ("evt_r1_1", ENDPOINT.url),
    ]
    assert sender.attempts == {"evt_r1_0": 3, "evt_r1_1": 3}
    assert "503" in running_outbox.dead_letters[0][2]
    await running_outbox.close()
    await running


async def test_a_room_stuck_at_its_receiver_holds_neither_other_rooms_nor_its_own_order(
    running_outbox: WatchedOutbox,
) -> None:
    sender = ScriptedSender()
    sender.held["stuck"] = asyncio.Event()
    dispatcher = WebhookDispatcher(running_outbox, sender, [ENDPOINT])
    running = asyncio.create_task(dispatcher.run())
    await running_outbox.publish(
        [event("stuck", 0), event("free", 0), event("stuck", 1), event("free", 1)]
    )

    await wait_for(sender, 2)
    assert [e.id for e in sender.delivered] == ["evt_free_0", "evt_free_1"]

    sender.held["stuck"].set()
    await wait_for(sender, 4)
    assert [e.id for e in sender.delivered if e.room_id == "stuck"] == [
        "evt_stuck_0",
        "evt_stuck_1",
    ]
    await running_outbox.close()
    await running


async def test_members_set_through_the_server_api_are_announced_as_by_the_app(
    world: World, outbox: RecordingOutbox, announcements: WebhookAnnouncements, relay: WebhookRelay
) -> None:
    alice, bob, carol = [await world.user(n) for n in ("alice", "bob", "carol")]
    room = await world.room(alice, bob)

    await SetRoomMembers(world.storage, world.notifier, world.clock, webhooks=announcements)(
        room.id, [alice.id, carol.id]
    )
    await relay.relay()

    assert [(e.type, e.data) for e in outbox.published] == [
        ("member.added", {"room_id": room.id, "user_id": carol.id, "by": "server-api"}),
        ("member.removed", {"room_id": room.id, "user_id": bob.id, "by": "server-api"}),
    ]
