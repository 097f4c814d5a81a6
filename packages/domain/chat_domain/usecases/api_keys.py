"""API keys of the server API: an operator creates, lists and revokes them; each call of
the app's backend presents one.

A key is 32 random bytes (URL-safe base64, prefixed ``chk_``): it is not a password, so
a fast hash (SHA-256) is enough to keep it, and lets a call find its key in one indexed
read. Every call reads its key from storage, so a revocation holds at once on every node.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable

from chat_domain.entities import ApiKey, Scope
from chat_domain.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from chat_domain.ports.rate_limit import RateLimiter, RateRule
from chat_domain.ports.storage import UnitOfWorkFactory
from chat_domain.ports.system import Clock, IdGenerator
from chat_domain.text import is_id, name_text

KEY_PREFIX = "chk_"
KEY_NAME_MAX = 100
_KEY_MAX = 200  # far longer than any key made here: no hashing of megabytes


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(raw: Iterable[str]) -> frozenset[Scope]:
    """The scopes named, each one of ``Scope``; at least one."""
    scopes = set()
    for name in raw:
        try:
            scopes.add(Scope(name.strip()))
        except ValueError:
            known = ", ".join(s.value for s in Scope)
            raise InvalidInput(f"scope: {name!r} is none of {known}") from None
    if not scopes:
        raise InvalidInput("scope: name at least one")
    return frozenset(scopes)


class CreateApiKey:
    """A new key with these scopes; the key itself is returned here, and never again."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, ids: IdGenerator) -> None:
        self._uow, self._clock, self._ids = uow, clock, ids

    async def __call__(self, name: str, scopes: Iterable[str]) -> tuple[ApiKey, str]:
        label = name_text(name, KEY_NAME_MAX, "name")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        api_key = ApiKey(
            self._ids.new_id(), label, parse_scopes(scopes), key_hash(key), self._clock.now()
        )
        async with self._uow() as uow:
            await uow.api_keys.add(api_key)
            await uow.commit()
        return api_key, key


class ListApiKeys:
    """Every key, revoked ones too, the oldest first (never the keys themselves)."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self) -> list[ApiKey]:
        async with self._uow.reading() as uow:
            return await uow.api_keys.list_all()


class RevokeApiKey:
    """Revoke a key: the next call that presents it, on any node, is refused."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow, self._clock = uow, clock

    async def __call__(self, key_id: str) -> ApiKey:
        if not is_id(key_id):
            raise NotFound("API key not found")
        async with self._uow() as uow:
            revoked = await uow.api_keys.revoke(key_id, self._clock.now())
            if revoked is None:
                raise NotFound("API key not found")
            await uow.commit()
        return revoked


class AuthenticateApiKey:
    """The key a call presents, if it is known and not revoked (``Unauthorized``), within
    its rate (``RateLimited``, per key) and holding ``scope`` (``Forbidden``).

    Read from storage on every call, never cached: revoking a key holds at once on every
    node, for one indexed read per call.
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        limiter: RateLimiter | None = None,
        rate_rule: RateRule | None = None,
    ) -> None:
        self._uow = uow
        self._limiter, self._rate_rule = limiter, rate_rule

    async def __call__(self, key: str | None, scope: Scope) -> ApiKey:
        if not key or len(key) > _KEY_MAX:
            raise Unauthorized("missing or invalid API key")
        async with self._uow.reading() as uow:
            api_key = await uow.api_keys.get_by_hash(key_hash(key))
        if api_key is None or api_key.revoked:
            raise Unauthorized("missing or invalid API key")
        if self._limiter is not None and self._rate_rule is not None:
            await self._limiter.acquire(f"api-key:{api_key.id}", self._rate_rule)
        if scope not in api_key.scopes:
            raise Forbidden(f"this API key lacks the scope {scope.value}")
        return api_key
