"""Send, store, history, edit and delete on in-memory adapters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from chat_domain.entities import MarkerKind, Message, MessageStatus
from chat_domain.errors import Conflict, Forbidden, InvalidInput, NotFound, Unavailable
from chat_domain.usecases.messages import (
    DeleteMessage,
    EditMessage,
    ListHistory,
    SendMessage,
    StoreMessages,
)
from chat_domain.usecases.receipts import MoveMarker
from chat_domain.usecases.rooms import AddMember, ListRooms
from chat_domain.views import message_view
from tests.unit.conftest import World


def send(world: World) -> SendMessage:
    return SendMessage(world.storage, world.broker, world.clock, world.ids)


def store(world: World) -> Callable[[Message], Awaitable[Message]]:
    """StoreMessages for one message, as a quiet worker runs it."""

    async def store_one(accepted: Message) -> Message:
        [stored] = await StoreMessages(world.storage, world.notifier)([accepted])
        return stored

    return store_one


def history(world: World) -> ListHistory:
    return ListHistory(world.storage)


# --- send -------------------------------------------------------------------------------


async def test_send_accepts_into_the_broker_before_storing(world: World) -> None:
    alice, bob = await world.user("alice"), await world.user("bob")
    room = await world.room(alice, bob)
    result = await send(world)(alice.id, room.id, "  hello  ")
    assert result.status is MessageStatus.ACCEPTED
    message = result.message
    assert (message.body, message.seq, message.sender_id) == ("hello", None, alice.id)
    assert message.created_at == world.clock.now() and message.client_msg_id is None
    assert world.broker.published == [message]
    # Accepted is not stored: history is still empty.
    assert (await history(world)(alice.id, room.id)).messages == []


async def test_send_checks_its_input_and_the_sender(world: World) -> None:
    alice, mallory = await world.user("alice"), await world.user("mallory")
    room = await world.room(alice)
    with pytest.raises(InvalidInput, match="body"):
        await send(world)(alice.id, room.id, " \n ")
    with pytest.raises(InvalidInput, match="body"):
        await send(world)(alice.id, room.id, "x" * 4001)
    with pytest.raises(InvalidInput, match="client_msg_id"):
        await send(world)(alice.id, room.id, "hi", "k" * 65)
    with pytest.raises(NotFound):
        await send(world)(mallory.id, room.id, "let me in")
    with pytest.raises(NotFound):
        await send(world)(alice.id, "no-such-room", "hi")
    assert world.broker.published == []


async def test_send_is_unavailable_when_the_broker_is(world: World) -> None:
    alice = await world.user("alice")
    room = await world.room(alice)
    await world.broker.close()
    with pytest.raises(Unavailable):
        await send(world)(alice.id, room.id, "hi")


async def test_a_retried_send_keeps_its_id(world: World) -> None:
    alice = await world.user("alice")
    room = await world.room(alice)
    first = await send(world)(alice.id, room.id, "once", "key-1")
    second = await send(world)(alice.id, room.id, "once", "key-1")
    assert first.message.id == second.message.id
    assert first.message.id == world.ids.stable_id("message", room.id, alice.id, "key-1")
    # The same key from another room or sender is another message.
    other_room = await world.room(alice)
    assert (
        await send(world)(alice.id, other_room.id, "once", "key-1")
    ).message.id != first.message.id

    # Both copies reach the worker; storing them keeps one.
    for accepted in world.broker.published[:2]:
        await store(world)(accepted)
    again = await send(world)(alice.id, room.id, "once", "key-1")
    assert again.status is MessageStatus.STORED and again.message.seq == 1
    assert len(world.broker.published) == 3  # a stored message is not published again
    assert [m.id for m in (await history(world)(alice.id, room.id)).messages] == [first.message.id]


# --- store ------------------------------------------------------------------------------


async def test_store_numbers_the_room_and_fans_out_to_its_members(world: World) -> None:
    alice, bob, carol = (
        await world.user("alice"),
        await world.user("bob"),
        await world.user("carol"),
    )
    room = await world.room(alice, bob)
    world.forget_events()
    stored = [await world.message(alice, room, f"m{i}") for i in range(3)]
    assert [m.seq for m in stored] == [1, 2, 3]
    [first, *_] = world.notifier.sent
    assert first.event == "message:new" and set(first.user_ids) == {alice.id, bob.id}
    assert first.payload == message_view(stored[0])
    assert world.notifier.events_for(carol.id, "message:new") == []
    # Rooms count on their own.
    other = await world.room(bob)
    assert (await world.message(bob, other)).seq == 1


async def test_storing_the_same_message_twice_keeps_one_copy_and_emits_again(world: World) -> None:
    alice, bob = await world.user("alice"), await world.user("bob")
    room = await world.room(alice, bob)
    accepted = (await send(world)(alice.id, room.id, "redelivered")).message
    world.forget_events()
    once = await store(world)(accepted)
    twice = await store(world)(accepted)
    assert once == twice and once.seq == 1
    page = await history(world)(bob.id, room.id)
    assert [m.id for m in page.messages] == [accepted.id]
    # Emitted each time, so a member cut off during the first fan-out still gets it.
    assert world.notifier.events_for(bob.id, "message:new") == [message_view(once)] * 2
    assert (await world.message(alice, room)).seq == 2  # no seq was burnt


async def test_a_batch_of_several_rooms_numbers_each_room_in_order_and_emits_in_order(
    world: World,
) -> None:
    alice, bob = await world.user("alice"), await world.user("bob")
    room, other = await world.room(alice, bob), await world.room(bob)
    already = await world.message(alice, room, "before")
    sends = [(alice, room, "a1"), (bob, other, "b1"), (alice, room, "a2"), (bob, other, "b2")]
    accepted = [(await send(world)(u.id, r.id, body)).message for u, r, body in sends]
    world.forget_events()

    # A redelivered message rides along with new ones; the batch stores each once.
    stored = await StoreMessages(world.storage, world.notifier)([already, *accepted, accepted[0]])

    assert [(m.room_id, m.seq) for m in stored] == [
        (room.id, 1), (room.id, 2), (other.id, 1), (room.id, 3), (other.id, 2), (room.id, 2)
    ]  # fmt: skip
    assert [m.body for m in (await history(world)(alice.id, room.id)).messages] == [
        "before", "a1", "a2"
    ]  # fmt: skip
    # Each member gets the room's messages in seq order; the redelivered one again.
    bobs = world.notifier.events_for(bob.id, "message:new")
    assert [(p["room_id"], p["seq"]) for p in bobs] == [
        (room.id, 1), (room.id, 2), (other.id, 1), (room.id, 3), (other.id, 2)
    ]  # fmt: skip
    assert [p["seq"] for p in world.notifier.events_for(alice.id, "message:new")] == [1, 2, 3]


async def test_a_batch_with_a_message_of_an_unknown_room_stores_nothing(world: World) -> None:
    alice, bob = await world.user("alice"), await world.user("bob")
    room = await world.room(alice, bob)
    good = (await send(world)(alice.id, room.id, "good")).message
    bad = Message(world.ids.new_id(), "no-such-room", alice.id, "lost", world.clock.now())
    world.forget_events()
    with pytest.raises(NotFound):
        await StoreMessages(world.storage, world.notifier)([good, bad])
    # One transaction: the good message is not half-stored and its seq is not burnt.
    assert (await history(world)(alice.id, room.id)).messages == []
    assert world.notifier.sent == []
    assert (await store(world)(good)).seq == 1


# --- history ------------------------------------------------------------------------------


async def test_history_pages_by_seq(world: World) -> None:
    alice = await world.user("alice")
    room = await world.room(alice)
    for i in range(7):
        await world.message(alice, room, f"m{i}")
    list_history = history(world)

    async def seqs(**cursor: int) -> tuple[list[int | None], bool]:
        page = await list_history(alice.id, room.id, **cursor)
        return [m.seq for m in page.messages], page.has_more

    assert await seqs() == ([1, 2, 3, 4, 5, 6, 7], False)
    assert await seqs(limit=3) == ([5, 6, 7], True)
    assert await seqs(before_seq=5, limit=3) == ([2, 3, 4], True)
    assert await seqs(before_seq=2) == ([1], False)
    assert await seqs(after_seq=4, limit=2) == ([5, 6], True)
    assert await seqs(after_seq=6) == ([7], False)
    assert await seqs(after_seq=7) == ([], False)
    assert await seqs(after_seq=0, limit=200) == ([1, 2, 3, 4, 5, 6, 7], False)


@pytest.mark.parametrize(
    "cursor", [{"limit": 0}, {"limit": 201}, {"after_seq": -1}, {"before_seq": -1}]
)
async def test_history_refuses_bad_cursors(world: World, cursor: dict[str, int]) -> None:
    alice = await world.user("alice")
    room = await world.room(alice)
    with pytest.raises(InvalidInput):
        await history(world)(alice.id, room.id, **cursor)


async def test_history_is_for_members(world: World) -> None:
    alice, mallory = await world.user("alice"), await world.user("mallory")
    room = await world.room(alice)
    with pytest.raises(NotFound):
        await history(world)(mallory.id, room.id)


async def test_sender_status_follows_the_other_members_markers(world: World) -> None:
    alice, bob = await world.user("alice"), await world.user("bob")
    room = await world.room(alice, bob)
    mine = await world.message(alice, room)
    theirs = await world.message(bob, room)
    move = MoveMarker(world.storage, world.notifier)

    async def status() -> MessageStatus | None:
        return (await history(world)(alice.id, room.id)).status_of(mine)

    assert await status() is MessageStatus.STORED
    assert (await history(world)(alice.id, room.id)).status_of(theirs) is None
    await move(bob.id, room.id, mine.seq or 0, MarkerKind.DELIVERED)
    assert await status() is MessageStatus.DELIVERED
    await move(bob.id, room.id, mine.seq or 0, MarkerKind.READ)
    assert await status() is MessageStatus.READ
    # Alice's own markers do not count for her own messages.
    await move(alice.id, room.id, 2, MarkerKind.READ)
    assert (await history(world)(bob.id, room.id)).status_of(theirs) is MessageStatus.READ


async def test_with_three_members_status_waits_for_both_others(world: World) -> None:
    alice, bob, carol = (
        await world.user("alice"),
        await world.user("bob"),
        await world.user("carol"),
    )
    room = await world.room(alice, bob, carol)
    mine = await world.message(alice, room)
    move = MoveMarker(world.storage, world.notifier)

    async def status() -> MessageStatus | None:
        return (await history(world)(alice.id, room.id)).status_of(mine)

    await move(bob.id, room.id, 1, MarkerKind.READ)
    assert await status() is MessageStatus.STORED
    await move(carol.id, room.id, 1, MarkerKind.DELIVERED)
    assert await status() is MessageStatus.DELIVERED
    await move(carol.id, room.id, 1, MarkerKind.READ)
    assert await status() is MessageStatus.READ


async def test_alone_in_a_room_a_message_stays_stored(world: World) -> None:
    alice = await world.user("alice")
    room = await world.room(alice)
    mine = await world.message(alice, room)
    page = await history(world)(alice.id, room.id)
    assert page.others_delivered_seq is None and page.status_of(mine) is MessageStatus.STORED


# --- edit ---------------------------------------------------------------------------------


async def test_the_sender_edits_and_members_hear_it(world: World) -> None:
    alice, bob = await world.user("alice"), await world.user("bob")
    room = await world.room(alice, bob)
    original = await world.message(alice, room, "helo")
    world.clock.advance(30)
    world.forget_events()
    edited = await EditMessage(world.storage, world.notifier, world.clock)(
        alice.id, room.id, original.id, "  hello "
    )
    assert edited.body == "hello" and edited.edited_at == world.clock.now()
    assert (edited.seq, edited.created_at) == (original.seq, original.created_at)
    [event] = world.notifier.sent
    assert event.event == "message:updated" and set(event.user_ids) == {alice.id, bob.id}
    assert event.payload == message_view(edited)
    assert (await history(world)(bob.id, room.id)).messages == [edited]


async def test_only_the_sender_edits_a_live_message(world: World) -> None:
    alice, bob, mallory = (
        await world.user("alice"),
        await world.user("bob"),
        await world.user("mallory"),
    )
    room = await world.room(alice, bob)
    bobs = await world.message(bob, room)
    edit = EditMessage(world.storage, world.notifier, world.clock)
    with pytest.raises(Forbidden):
        await edit(alice.id, room.id, bobs.id, "the owner is not the sender")
    with pytest.raises(NotFound):
        await edit(mallory.id, room.id, bobs.id, "a stranger")
    with pytest.raises(NotFound):
        await edit(bob.id, room.id, "no-such-message", "hi")
    other = await world.room(bob)
    with pytest.raises(NotFound):
        await edit(bob.id, other.id, bobs.id, "through another room")
    with pytest.raises(InvalidInput):
        await edit(bob.id, room.id, bobs.id, "   ")
    await DeleteMessage(world.storage, world.notifier)(bob.id, room.id, bobs.id)
    with pytest.raises(Conflict):
        await edit(bob.id, room.id, bobs.id, "back from the dead")
    [tombstone] = (await history(world)(bob.id, room.id)).messages
    assert tombstone.body == "" and tombstone.edited_at is None


# --- delete -------------------------------------------------------------------------------


async def test_delete_leaves_a_tombstone_and_tells_the_room(world: World) -> None:
    alice, bob = await world.user("alice"), await world.user("bob")
    room = await world.room(alice, bob)
    first, second, third = [await world.message(bob, room, f"m{i}") for i in range(3)]
    world.forget_events()
    delete = DeleteMessage(world.storage, world.notifier)
    await delete(bob.id, room.id, second.id)
    [event] = world.notifier.sent
    assert event.event == "message:deleted" and set(event.user_ids) == {alice.id, bob.id}
    assert event.payload == {"room_id": room.id, "id": second.id, "seq": 2}
    page = (await history(world)(alice.id, room.id)).messages
    assert [(m.seq, m.deleted, m.body) for m in page] == [
        (1, False, "m0"),
        (2, True, ""),
        (3, False, "m2"),
    ]
    # Deleting again changes and tells nothing.
    await delete(bob.id, room.id, second.id)
    assert len(world.notifier.sent) == 1
    assert page[0] == first and page[2] == third


async def test_the_sender_or_the_owner_deletes(world: World) -> None:
    owner, bob, carol = (
        await world.user("owner"),
        await world.user("bob"),
        await world.user("carol"),
    )
    mallory = await world.user("mallory")
    room = await world.room(owner, bob, carol)
    bobs, owners = await world.message(bob, room), await world.message(owner, room)
    delete = DeleteMessage(world.storage, world.notifier)
    with pytest.raises(Forbidden):
        await delete(carol.id, room.id, bobs.id)
    with pytest.raises(Forbidden):
        await delete(bob.id, room.id, owners.id)
    with pytest.raises(NotFound):
        await delete(mallory.id, room.id, bobs.id)
    with pytest.raises(NotFound):
        await delete(bob.id, room.id, "no-such-message")
    await delete(owner.id, room.id, bobs.id)
    page = (await history(world)(carol.id, room.id)).messages
    assert [(m.seq, m.deleted) for m in page] == [(1, True), (2, False)]


async def test_a_newcomer_neither_owes_reads_nor_sets_back_the_senders_status(world: World) -> None:
    alice, bob, carol = (
        await world.user("alice"),
        await world.user("bob"),
        await world.user("carol"),
    )
    room = await world.room(alice, bob)
    mine = await world.message(alice, room)
    assert mine.seq is not None
    await MoveMarker(world.storage, world.notifier)(bob.id, room.id, mine.seq, MarkerKind.READ)
    assert (await history(world)(alice.id, room.id)).status_of(mine) is MessageStatus.READ

    await AddMember(world.storage, world.notifier, world.clock)(alice.id, room.id, carol.id)
    # Carol joined after it: alice's message stays read, and carol has nothing unread.
    assert (await history(world)(alice.id, room.id)).status_of(mine) is MessageStatus.READ
    [summary] = await ListRooms(world.storage)(carol.id)
    assert summary.unread_count == 0
    later = await world.message(alice, room)
    assert (await history(world)(alice.id, room.id)).status_of(later) is MessageStatus.STORED
    [summary] = await ListRooms(world.storage)(carol.id)
    assert summary.unread_count == 1
