"""Register, log in, and resolve a token to its user."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from chat_domain.entities import (
    USERNAME_RE,
    User,
    normalise_display_name,
    normalise_username,
)
from chat_domain.errors import Conflict, InvalidInput, Unauthorized
from chat_domain.password_rules import check_new_password
from chat_domain.ports.admission import Admission
from chat_domain.ports.rate_limit import RateLimiter, RateRule
from chat_domain.ports.security import IssuedToken, PasswordHasher, TokenService
from chat_domain.ports.storage import UnitOfWork, UnitOfWorkFactory
from chat_domain.ports.system import Clock, IdGenerator
from chat_domain.text import lookalike_key, username_prefix

USER_SEARCH_LIMIT = 20


class RegisterUser:
    """Create an account; the username is unique without regard to case.

    With an ``admission``, the password is hashed inside that lane: a burst of
    registrations queues there (or is refused with ``RateLimited``) instead of taking
    every hashing thread from the logins.
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        hasher: PasswordHasher,
        clock: Clock,
        ids: IdGenerator,
        admission: Admission | None = None,
    ) -> None:
        self._uow, self._hasher, self._clock, self._ids = uow, hasher, clock, ids
        self._admission = admission

    async def __call__(self, username: str, password: str, display_name: str | None) -> User:
        username = normalise_username(username)
        check_new_password(password, username)
        name = normalise_display_name(display_name, username)
        async with self._uow.reading() as uow:
            if await uow.users.get_by_username(username):
                raise Conflict("username: already taken")
            await _refuse_impersonation(uow, name, username)
        # Hash outside the transaction: it is slow on purpose.
        if self._admission is None:
            password_hash = await self._hasher.hash(password)
        else:
            async with self._admission.admit():
                password_hash = await self._hasher.hash(password)
        user = User(self._ids.new_id(), username, name, self._clock.now(), password_hash)
        async with self._uow() as uow:
            await uow.users.add(user)  # raises Conflict if a racing register won
            await uow.commit()
        return user


def is_username(raw: str) -> bool:
    """Whether ``raw`` is spelled like a username (as login reads it: trimmed, any case)."""
    return USERNAME_RE.fullmatch(raw.strip().lower()) is not None


async def _refuse_impersonation(uow: UnitOfWork, display_name: str, own_username: str) -> None:
    """A display name may not read as another user's username (see ``lookalike_key``)."""
    key = lookalike_key(display_name)
    if key != own_username and is_username(key) and await uow.users.get_by_username(key):
        raise InvalidInput("display_name: looks like another user's username")


@dataclass(frozen=True, slots=True)
class Session:
    token: IssuedToken
    user: User


class LogIn:
    """Trade a username and password for an access token.

    With a ``limiter``, the attempts at one username from one ``client`` (the caller's
    address) are limited by ``attempt_rule``, and a login that succeeds clears them. Keyed
    by both, a stranger's wrong guesses lock out only the stranger's own address: never
    the account's owner, who logs in from elsewhere.
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        hasher: PasswordHasher,
        tokens: TokenService,
        limiter: RateLimiter | None = None,
        attempt_rule: RateRule | None = None,
    ) -> None:
        self._uow, self._hasher, self._tokens = uow, hasher, tokens
        self._limiter, self._attempt_rule = limiter, attempt_rule

    async def __call__(self, username: str, password: str, client: str = "") -> Session:
        attempts = login_attempts_key(username, client)
        if self._limiter is not None and self._attempt_rule is not None:
            await self._limiter.acquire(attempts, self._attempt_rule)
        if not is_username(username):  # no account can have it: answered as an unknown user
            raise Unauthorized("invalid username or password")
        async with self._uow.reading() as uow:
            user = await uow.users.get_by_username(username.strip().lower())
        # One answer for an unknown user and a wrong password, in one answer time (an unknown
        # user is verified against the decoy, the same work), so names cannot be probed.
        password_hash = self._hasher.decoy_hash if user is None else user.password_hash
        if not await self._hasher.verify(password_hash, password) or user is None:
            raise Unauthorized("invalid username or password")
        if self._limiter is not None and self._attempt_rule is not None:
            await self._limiter.reset(attempts, self._attempt_rule)
        return Session(self._tokens.issue(user.id), user)


def login_attempts_key(username: str, client: str) -> str:
    """The bucket of login attempts at ``username`` (any case) from ``client``."""
    return f"{username.strip().lower()}|{client}"


class Authenticate:
    """Resolve an access token to the user it was issued to.

    Every REST call and socket connect asks this, so the users it has seen are kept in a
    bounded cache: users are never edited or deleted in this contract, so a cached user
    cannot go stale (if they ever can be, that change must evict them here). Unknown ids
    are not cached: a token for a user that does not exist stays refused.
    """

    def __init__(
        self, uow: UnitOfWorkFactory, tokens: TokenService, cache_size: int = 10_000
    ) -> None:
        self._uow, self._tokens = uow, tokens
        self._known: OrderedDict[str, User] = OrderedDict()
        self._cache_size = cache_size

    async def __call__(self, token: str | None) -> User:
        if not token:
            raise Unauthorized("missing access token")
        user_id = self._tokens.verify(token)
        user = self._known.get(user_id)
        if user is not None:
            self._known.move_to_end(user_id)
            return user
        async with self._uow.reading() as uow:
            user = await uow.users.get(user_id)
        if user is None:
            raise Unauthorized("invalid access token")
        self._known[user_id] = user
        if len(self._known) > self._cache_size:
            self._known.popitem(last=False)
        return user


class SearchUsers:
    """Find users by username prefix."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, prefix: str) -> list[User]:
        found = username_prefix(prefix)
        if found is None:
            return []  # no username starts like that
        prefix = found
        async with self._uow.reading() as uow:
            return await uow.users.search(prefix, USER_SEARCH_LIMIT)
