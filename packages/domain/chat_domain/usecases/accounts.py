"""An account's life after registration, in an operator's hands: deactivation,
reactivation and password reset, and the sessions they end.

Operators run these from the command line, beside the servers, with nothing but the
database in common: a change reaches every server node through it. A node trusts what it
read of a user for its recheck interval (``Authenticate``) and rechecks its sockets as
often (``FindEndedSessions``), so each change takes effect everywhere within that time.
"""

from __future__ import annotations

from collections.abc import Mapping

from chat_domain.entities import User
from chat_domain.errors import NotFound
from chat_domain.password_rules import check_new_password
from chat_domain.ports.security import PasswordHasher
from chat_domain.ports.storage import UnitOfWorkFactory
from chat_domain.ports.system import Clock
from chat_domain.text import is_id
from chat_domain.usecases.auth import is_username

# Users read per statement when rechecking sessions: well under any backend's bound on
# bound parameters, and a short statement for a node with many sockets.
SESSION_CHECK_BATCH = 500


async def _user_named(uow: UnitOfWorkFactory, username: str) -> User:
    if not is_username(username):
        raise NotFound(f"no user named {username.strip()!r}")
    async with uow.reading() as reading:
        user = await reading.users.get_by_username(username.strip().lower())
    if user is None:
        raise NotFound(f"no user named {username.strip().lower()!r}")
    return user


def _changed(user: User | None, username: str) -> User:
    if user is None:  # gone between the read and the write: users are never deleted today
        raise NotFound(f"no user named {username!r}")
    return user


class DeactivateUser:
    """Stop an account: it can no longer log in (answered as a wrong password) and every
    session it has ends (tokens refused, sockets disconnected). Its rooms, memberships
    and messages stay as they are. Deactivating a deactivated account changes nothing."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow, self._clock = uow, clock

    async def __call__(self, username: str) -> User:
        return await self._deactivate(await _user_named(self._uow, username))

    async def by_id(self, user_id: str) -> User:
        """The same for a caller who knows the user by id (the app's backend)."""
        user = None
        if is_id(user_id):
            async with self._uow.reading() as uow:
                user = await uow.users.get(user_id)
        if user is None:
            raise NotFound("user not found")
        return await self._deactivate(user)

    async def _deactivate(self, user: User) -> User:
        if user.deactivated_at is not None:
            return user
        async with self._uow() as uow:
            changed = await uow.users.deactivate(user.id, self._clock.now())
            await uow.commit()
        return _changed(changed, user.username)


class ReactivateUser:
    """Let a deactivated account log in again. Its sessions from before stay ended: the
    user logs in anew. Reactivating an active account changes nothing."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, username: str) -> User:
        user = await _user_named(self._uow, username)
        if user.deactivated_at is None:
            return user
        async with self._uow() as uow:
            changed = await uow.users.reactivate(user.id)
            await uow.commit()
        return _changed(changed, user.username)


class ResetPassword:
    """Give an account a new password, under the rules of registration; every session
    issued before ends, so whoever knew the old password is out. A deactivated account
    keeps its status."""

    def __init__(self, uow: UnitOfWorkFactory, hasher: PasswordHasher) -> None:
        self._uow, self._hasher = uow, hasher

    async def __call__(self, username: str, password: str) -> User:
        user = await _user_named(self._uow, username)
        check_new_password(password, user.username)
        password_hash = await self._hasher.hash(password)  # slow on purpose: no transaction
        async with self._uow() as uow:
            changed = await uow.users.change_password(user.id, password_hash)
            await uow.commit()
        return _changed(changed, user.username)


class FindEndedSessions:
    """Which of a node's sockets belong to a session that has ended since it connected:
    its user is deactivated or gone, or has a newer session generation (a password reset).

    ``sessions`` maps each socket to (user id, session generation at connect); the users
    are read in a few batched statements, fresh from the database.
    """

    def __init__(self, uow: UnitOfWorkFactory, batch: int = SESSION_CHECK_BATCH) -> None:
        self._uow, self._batch = uow, batch

    async def __call__(self, sessions: Mapping[str, tuple[str, int]]) -> list[str]:
        user_ids = sorted({user_id for user_id, _ in sessions.values()})
        users: dict[str, User] = {}
        async with self._uow.reading() as uow:
            for start in range(0, len(user_ids), self._batch):
                users.update(await uow.users.get_many(user_ids[start : start + self._batch]))
        ended = []
        for socket_id, (user_id, generation) in sessions.items():
            user = users.get(user_id)
            if (
                user is None
                or user.deactivated_at is not None
                or user.session_generation != generation
            ):
                ended.append(socket_id)
        return ended
