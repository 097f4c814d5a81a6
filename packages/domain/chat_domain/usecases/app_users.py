"""Users the app vouches for: made on first sight, from the app's own id for them.

A user of the app is known by the token's ``sub``; our user id is derived from it, so
every node maps one ``sub`` to one user without a lookup table, and no account of ours
(whose ids are UUIDs) can ever be taken over by a ``sub``:

- ``app:<sub>`` when ``sub`` has the shape of our ids and is at most 60 characters;
- ``apph:<sha256 of sub, hex>`` otherwise.

The username is ``sub`` made to follow the username rules (lowercase, other characters
replaced by ``_``, cut to 32, padded to 3); if another user has it, a few characters of
the hash of ``sub`` tell them apart. Such a user has no password: they log in only
through the app.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Iterator

from chat_domain.entities import USERNAME_RE, User, normalise_display_name
from chat_domain.errors import Conflict, InvalidInput, Unauthorized
from chat_domain.ports.security import AppIdentity, AppTokenVerifier
from chat_domain.ports.storage import UnitOfWork, UnitOfWorkFactory
from chat_domain.ports.system import Clock
from chat_domain.text import client_token, is_id, lookalike_key
from chat_domain.usecases.auth import Authenticate

SUBJECT_MAX = 255
_PLAIN_SUBJECT_MAX = 60
# No password hash verifies against this: a user of the app cannot log in with one.
NO_PASSWORD = "!app-user"
_NOT_IN_USERNAME = re.compile(r"[^a-z0-9_.\-]")
USERNAME_MAX = 32


def check_subject(subject: str) -> str:
    """A ``sub`` as accepted: 1..255 characters, no control, format or bidi character."""
    return client_token(subject, SUBJECT_MAX, "sub")


def app_user_id(subject: str) -> str:
    """Our user id of the app's user ``subject`` (see the module)."""
    if len(subject) <= _PLAIN_SUBJECT_MAX and is_id(subject):
        return f"app:{subject}"
    return f"apph:{hashlib.sha256(subject.encode()).hexdigest()}"


def username_candidates(subject: str) -> Iterator[str]:
    """The usernames ``subject`` may get, the most readable first."""
    base = _NOT_IN_USERNAME.sub("_", subject.strip().lower())[:USERNAME_MAX].ljust(3, "_")
    yield base
    digest = hashlib.sha256(subject.encode()).hexdigest()
    for width in (6, 12, 24):
        yield f"{base[: USERNAME_MAX - width - 1]}-{digest[:width]}"


class ProvisionAppUser:
    """The user of an app's ``sub``, created now if this is the first time it is seen.

    The display name follows the display-name rules. From a token (``strict=False``) a
    name that breaks them, or that reads as another user's username, is replaced by the
    username: a user is never locked out by what the app put in a claim. From the server
    API (``strict=True``) such a name is refused (``InvalidInput``). A known user is
    returned as stored: users are not edited.
    """

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow, self._clock = uow, clock

    async def __call__(self, identity: AppIdentity, strict: bool = False) -> tuple[User, bool]:
        """The user, and whether it was created now."""
        subject = check_subject(identity.subject)
        user_id = app_user_id(subject)
        async with self._uow.reading() as uow:
            known = await uow.users.get(user_id)
        if known is not None:
            return known, False
        if strict and identity.display_name is not None:
            # Checked before a username is chosen, so a bad name changes nothing.
            normalise_display_name(identity.display_name, "placeholder")
        for username in username_candidates(subject):
            if not USERNAME_RE.fullmatch(username):
                continue
            try:
                async with self._uow() as uow:
                    known = await uow.users.get(user_id)
                    if known is not None:  # made meanwhile, on this node or another
                        return known, False
                    if await uow.users.get_by_username(username) is not None:
                        continue
                    name = await self._display_name(uow, identity.display_name, username, strict)
                    user = User(user_id, username, name, self._clock.now(), NO_PASSWORD)
                    await uow.users.add(user)
                    await uow.commit()
                    return user, True
            except Conflict:  # raced for the id or the username: look again
                async with self._uow.reading() as uow:
                    known = await uow.users.get(user_id)
                if known is not None:
                    return known, False
        raise Conflict("sub: no free username for this user")

    async def _display_name(
        self, uow: UnitOfWork, raw: str | None, username: str, strict: bool
    ) -> str:
        try:
            name = normalise_display_name(raw, username)
            key = lookalike_key(name)
            if (
                key != username
                and USERNAME_RE.fullmatch(key)
                and await uow.users.get_by_username(key) is not None
            ):
                raise InvalidInput("display_name: looks like another user's username")
        except InvalidInput:
            if strict:
                raise
            return username
        return name


class AuthenticateWithApp:
    """Resolve a token when the app vouches for users (``CHAT_AUTH_MODE`` app or both):
    the app's tokens, and ours too if ``accounts`` is given (a token that is not one of
    ours is then tried as the app's).

    Every REST call and socket connect asks this, so the app's users it has resolved are
    kept in a bounded cache, read again from storage after ``recheck_seconds`` (an
    operator may change a user out of every server's reach).
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        app_tokens: AppTokenVerifier,
        provision: ProvisionAppUser,
        clock: Clock,
        accounts: Authenticate | None = None,
        cache_size: int = 10_000,
        recheck_seconds: float = 30.0,
    ) -> None:
        self._uow, self._app_tokens, self._provision = uow, app_tokens, provision
        self._clock, self._accounts = clock, accounts
        self._known: OrderedDict[str, tuple[User, float]] = OrderedDict()  # with read time
        self._cache_size, self._recheck = cache_size, recheck_seconds

    async def __call__(self, token: str | None) -> User:
        if not token:
            raise Unauthorized("missing access token")
        if self._accounts is not None:
            try:
                return await self._accounts(token)
            except Unauthorized:
                pass  # not one of ours (or no longer good): it may be the app's
        identity = await self._app_tokens.verify(token)
        try:
            user_id = app_user_id(check_subject(identity.subject))
            user = self._cached(user_id)
            if user is None:
                user, _ = await self._provision(identity)
                self._remember(user)
        except InvalidInput as exc:  # a sub we cannot take: the token is no good to us
            raise Unauthorized(f"invalid app token: {exc.message}") from None
        if user.deactivated_at is not None:  # an operator closed the account (chat users)
            raise Unauthorized("invalid access token")
        return user

    def _cached(self, user_id: str) -> User | None:
        known = self._known.get(user_id)
        if known is None:
            return None
        user, read_at = known
        if self._clock.now().timestamp() - read_at >= self._recheck:
            return None
        self._known.move_to_end(user_id)
        return user

    def _remember(self, user: User) -> None:
        self._known[user.id] = (user, self._clock.now().timestamp())
        self._known.move_to_end(user.id)
        if len(self._known) > self._cache_size:
            self._known.popitem(last=False)
