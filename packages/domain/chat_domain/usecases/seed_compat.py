"""The seed's clients, unchanged: its rooms, clients and tokens mapped onto ours.

The system this service grew from knows rooms and clients by ids of its own choosing.
Each maps to one of ours by a stable id (``IdGenerator.stable_id``), the same on every
node and across restarts, so no mapping table is needed:

- a seed room is a group room whose id is ``stable_id("seed-room", roomId)``, named after
  the roomId and owned by one system user (``seed-system``), made on first use;
- a seed client is a user whose id is ``stable_id("seed-client", clientId)``, made on
  first sight, with a username derived from the clientId (``seed_username``), the display
  name ``seed:<clientId>``, and no password anyone can log in with;
- a seed token names (roomId, clientId); the client is a member of the room from the
  token's issue until it leaves (``leaveroom``).

Messages take our send path (``SendMessage``): checked, published, stored with a seq.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from chat_domain.entities import Membership, Role, Room, RoomKind, User
from chat_domain.errors import Conflict, InvalidInput, LimitExceeded, Unauthorized
from chat_domain.ports.notifier import RealtimeNotifier
from chat_domain.ports.security import SeedTokenService
from chat_domain.ports.storage import UnitOfWork, UnitOfWorkFactory
from chat_domain.ports.system import Clock, IdGenerator
from chat_domain.usecases.messages import SendMessage, SendResult

# A seed roomId or clientId: what our ids allow (they travel in paths and payloads),
# short enough that "seed:<clientId>" fits a display name.
SEED_ID = re.compile(r"[A-Za-z0-9._:\-]{1,56}")
SYSTEM_USERNAME = "seed-system"
DISPLAY_PREFIX = "seed:"
# Not a hash any hasher can parse: verify() answers False, so nobody logs in as these.
NO_PASSWORD = "!seed-compat: no password"
INVALID_SESSION = "invalid session token"
# Server events to the seed sockets that joined the room (translated to the seed's own
# "roomjoin" / "roomleave" by the server's seed layer).
SEED_ROOMJOIN = "seed:roomjoin"
SEED_ROOMLEAVE = "seed:roomleave"


def seed_id(raw: object, field: str) -> str:
    """A seed roomId or clientId as accepted: a string of 1..56 of ``A-Z a-z 0-9 . _ : -``."""
    if not isinstance(raw, str) or SEED_ID.fullmatch(raw) is None:
        raise InvalidInput(f"{field}: must be 1..56 characters of A-Z a-z 0-9 . _ : -")
    return raw


def seed_username(client_id: str) -> str:
    """Our username for a seed client: "s." and the clientId lowercased, reduced to the
    characters usernames allow (``USERNAME_RE``), cut to fit, and a hash of the exact
    clientId after it, so clientIds differing only in case or cut-off stay apart."""
    kept = re.sub(r"[^a-z0-9_.\-]", "-", client_id.lower())[:21]
    digest = hashlib.sha256(client_id.encode()).hexdigest()[:8]
    return f"s.{kept}.{digest}"


@dataclass(frozen=True, slots=True)
class SeedGrant:
    """What a valid seed token stands for: a seed client, in one of our rooms."""

    seed_room_id: str
    client_id: str
    room_id: str
    user_id: str


class SeedDirectory:
    """Where each seed id lives among ours (see the module)."""

    def __init__(self, ids: IdGenerator) -> None:
        self._ids = ids

    def room_id(self, seed_room_id: str) -> str:
        return self._ids.stable_id("seed-room", seed_room_id)

    def user_id(self, client_id: str) -> str:
        return self._ids.stable_id("seed-client", client_id)

    def system_user_id(self) -> str:
        return self._ids.stable_id("seed-system")

    def grant(self, seed_room_id: str, client_id: str) -> SeedGrant:
        return SeedGrant(
            seed_room_id, client_id, self.room_id(seed_room_id), self.user_id(client_id)
        )

    def client_id_of(self, user: User) -> str | None:
        """The seed clientId of a user made for one, else None (one of our own users)."""
        if not user.display_name.startswith(DISPLAY_PREFIX):
            return None
        client_id = user.display_name.removeprefix(DISPLAY_PREFIX)
        # A user of ours may call themselves "seed:x": only the id tells.
        return client_id if self.user_id(client_id) == user.id else None

    def sender_name(self, user: User) -> str:
        """How a seed client sees who sent a message: a clientId, or our username."""
        return self.client_id_of(user) or user.username


class IssueSeedToken:
    """``POST /chat-rooms/{roomId}/chat-token``: make the client a member of the room
    (creating the room, the client's user and the system owner on first use) and answer a
    token naming both."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        tokens: SeedTokenService,
        clock: Clock,
        directory: SeedDirectory,
        max_members: int = 1000,
    ) -> None:
        self._uow, self._tokens, self._clock = uow, tokens, clock
        self._directory, self._max_members = directory, max_members

    async def __call__(self, seed_room_id: str, client_id: str) -> str:
        seed_room_id = seed_id(seed_room_id, "roomId")
        client_id = seed_id(client_id, "clientId")
        grant = self._directory.grant(seed_room_id, client_id)
        try:
            await self._admit(grant)
        except Conflict:
            # Another request made the same user, room or membership meanwhile: the
            # second try finds them (a username taken by someone else fails again).
            await self._admit(grant)
        return self._tokens.issue(seed_room_id, client_id)

    async def _admit(self, grant: SeedGrant) -> None:
        now = self._clock.now()
        async with self._uow() as uow:
            await _ensure_user(
                uow,
                User(
                    grant.user_id,
                    seed_username(grant.client_id),
                    DISPLAY_PREFIX + grant.client_id,
                    now,
                    NO_PASSWORD,
                ),
            )
            room = await _ensure_room(uow, self._directory, grant.seed_room_id, now)
            await _ensure_member(uow, room, grant.user_id, now, self._max_members)
            await uow.commit()


class JoinSeedRoom:
    """One of our users joins a seed room (made on first use, as for a seed client), to
    talk with its seed clients: ``POST /api/v1/seed-rooms/{roomId}/join``."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        directory: SeedDirectory,
        max_members: int = 1000,
    ) -> None:
        self._uow, self._clock, self._directory = uow, clock, directory
        self._max_members = max_members

    async def __call__(self, user_id: str, seed_room_id: str) -> Room:
        seed_room_id = seed_id(seed_room_id, "roomId")
        try:
            return await self._join(user_id, seed_room_id)
        except Conflict:  # a racing first use made the room: the second try finds it
            return await self._join(user_id, seed_room_id)

    async def _join(self, user_id: str, seed_room_id: str) -> Room:
        now = self._clock.now()
        async with self._uow() as uow:
            room = await _ensure_room(uow, self._directory, seed_room_id, now)
            await _ensure_member(uow, room, user_id, now, self._max_members)
            await uow.commit()
        return room


async def _ensure_user(uow: UnitOfWork, user: User) -> None:
    """Add ``user`` unless a user of its id exists (refused if deactivated)."""
    existing = await uow.users.get(user.id)
    if existing is None:
        if await uow.users.get_by_username(user.username) is not None:
            raise Conflict(f"username {user.username} is taken by a user of ours")
        await uow.users.add(user)
    elif existing.deactivated_at is not None:
        raise Unauthorized(INVALID_SESSION)


async def _ensure_room(
    uow: UnitOfWork, directory: SeedDirectory, seed_room_id: str, now: datetime
) -> Room:
    """The seed room's group room, made now if new, owned by the system user."""
    room_id = directory.room_id(seed_room_id)
    room = await uow.rooms.get(room_id)
    if room is not None:
        return room
    system_id = directory.system_user_id()
    await _ensure_user(uow, User(system_id, SYSTEM_USERNAME, SYSTEM_USERNAME, now, NO_PASSWORD))
    room = Room(room_id, seed_room_id, RoomKind.GROUP, now)
    await uow.rooms.add(room)
    await uow.rooms.add_member(Membership(room.id, system_id, Role.OWNER, now))
    return room


async def _ensure_member(
    uow: UnitOfWork, room: Room, user_id: str, now: datetime, max_members: int
) -> None:
    if await uow.rooms.get_membership(room.id, user_id) is None:
        if len(await uow.rooms.member_ids(room.id)) >= max_members:
            raise LimitExceeded(f"a room has at most {max_members} members")
        await uow.rooms.add_member(Membership.newcomer(room, user_id, Role.MEMBER, now))


class OpenSeedSession:
    """A seed token's grant, if the token is valid, its client an active member of the
    room; else ``Unauthorized("invalid session token")``."""

    def __init__(
        self, uow: UnitOfWorkFactory, tokens: SeedTokenService, directory: SeedDirectory
    ) -> None:
        self._uow, self._tokens, self._directory = uow, tokens, directory

    async def __call__(self, token: object) -> SeedGrant:
        if not isinstance(token, str) or not token:
            raise Unauthorized(INVALID_SESSION)
        try:
            grant = self._directory.grant(*self._tokens.read(token))
        except Unauthorized:
            raise Unauthorized(INVALID_SESSION) from None
        async with self._uow.reading() as uow:
            user = await uow.users.get(grant.user_id)
            member = await uow.rooms.get_membership(grant.room_id, grant.user_id)
        if user is None or user.deactivated_at is not None or member is None:
            raise Unauthorized(INVALID_SESSION)
        return grant


class SendSeedMessage:
    """``POST /chat-messages``: the token's client sends ``content`` to the token's room,
    through ``SendMessage`` (rate limit, text rules, broker, store, fan-out)."""

    def __init__(self, open_session: OpenSeedSession, send_message: SendMessage) -> None:
        self._open, self._send = open_session, send_message

    async def __call__(self, token: object, content: str) -> SendResult:
        grant = await self._open(token)
        return await self._send(grant.user_id, grant.room_id, content)


class SeedRoomPresence:
    """``joinroom`` / ``leaveroom``: tell the room's seed clients (``seed:roomjoin`` /
    ``seed:roomleave``); one who leaves is no longer a member (a new token brings it back)."""

    def __init__(
        self, uow: UnitOfWorkFactory, notifier: RealtimeNotifier, directory: SeedDirectory
    ) -> None:
        self._uow, self._notifier, self._directory = uow, notifier, directory

    async def joined(self, grant: SeedGrant) -> None:
        await self._tell(grant, SEED_ROOMJOIN)

    async def left(self, grant: SeedGrant) -> None:
        await self._tell(grant, SEED_ROOMLEAVE)  # its other sockets hear it too
        async with self._uow() as uow:
            if await uow.rooms.get_membership(grant.room_id, grant.user_id) is not None:
                await uow.rooms.remove_member(grant.room_id, grant.user_id)
                await uow.commit()

    async def _tell(self, grant: SeedGrant, event: str) -> None:
        async with self._uow.reading() as uow:
            members = await uow.rooms.members(grant.room_id)
            users = await uow.users.get_many([m.membership.user_id for m in members])
        seed_members = [u.id for u in users.values() if self._directory.client_id_of(u)]
        payload = {
            "room_id": grant.room_id,
            "seed_room_id": grant.seed_room_id,
            "client_id": grant.client_id,
        }
        await self._notifier.emit_to_users(seed_members, event, payload)


class ListSeedClients:
    """``GET /chat-rooms/{roomId}/clients``: the clientIds of the room's seed members."""

    def __init__(self, uow: UnitOfWorkFactory, directory: SeedDirectory) -> None:
        self._uow, self._directory = uow, directory

    async def __call__(self, seed_room_id: str) -> list[str]:
        room_id = self._directory.room_id(seed_id(seed_room_id, "roomId"))
        async with self._uow.reading() as uow:
            member_ids = await uow.rooms.member_ids(room_id)
            users = await uow.users.get_many(member_ids)
        found = (self._directory.client_id_of(users[uid]) for uid in member_ids if uid in users)
        return sorted(c for c in found if c is not None)


class NameSeedSenders:
    """Who sent a message, as a seed client reads it (the ``clientId`` of its ``chat``
    event): a seed client's clientId, or one of our users' username. Neither ever changes,
    so the names read are kept (the ``remembered`` most recent)."""

    def __init__(
        self, uow: UnitOfWorkFactory, directory: SeedDirectory, remembered: int = 10_000
    ) -> None:
        self._uow, self._directory, self._remembered = uow, directory, remembered
        self._names: OrderedDict[str, str] = OrderedDict()

    async def __call__(self, user_id: str) -> str:
        name = self._names.get(user_id)
        if name is not None:
            self._names.move_to_end(user_id)
            return name
        async with self._uow.reading() as uow:
            user = await uow.users.get(user_id)
        if user is None:  # no message has an unknown sender; told as its id all the same
            return user_id
        name = self._directory.sender_name(user)
        self._names[user_id] = name
        if len(self._names) > self._remembered:
            self._names.popitem(last=False)
        return name
