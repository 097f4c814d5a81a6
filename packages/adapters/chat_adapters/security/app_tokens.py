"""The app's tokens (JWTs) checked with PyJWT: HS256 with a shared secret, or RS256 and
ES256 against the app's JSON Web Key Set (at a URL or in a file).

Only the configured algorithms are accepted: ``none`` never, and a key of one family is
never used for another (an RS256 public key is no HS256 secret), because the algorithm
comes from the configuration and the key's own type, not from the token alone.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jwt
from jwt import PyJWK, PyJWKClient, PyJWKSet

from chat_domain.errors import Unauthorized, Unavailable
from chat_domain.ports.security import AppIdentity, AppTokenVerifier
from chat_domain.ports.system import Clock

log = logging.getLogger("chat.app_tokens")

SECRET_ALGORITHMS: tuple[str, ...] = ("HS256",)
KEY_SET_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256")


class SigningKeys(ABC):
    """Where the keys come from."""

    @abstractmethod
    async def key_for(self, key_id: str | None, algorithm: str) -> Any:
        """The key that checks a token signed with ``algorithm`` by the key ``key_id`` (the
        token's ``kid``, if any); ``Unauthorized`` if there is none."""


class SharedSecret(SigningKeys):
    """One secret shared with the app (HS256): any ``kid`` is the same key."""

    def __init__(self, secret: str) -> None:
        self._secret = secret

    async def key_for(self, key_id: str | None, algorithm: str) -> Any:
        return self._secret


def key_set_from_url(url: str, timeout: float = 5.0) -> Callable[[], PyJWKSet]:
    """Fetch the key set at ``url`` on each call (the caching is ``KeySet``'s)."""
    client = PyJWKClient(url, cache_jwk_set=False, timeout=int(max(1, timeout)))

    def fetch() -> PyJWKSet:
        return client.get_jwk_set(refresh=True)

    return fetch


def key_set_from_file(path: str | Path) -> Callable[[], PyJWKSet]:
    """Read the key set in ``path`` on each call: replacing the file rotates the keys."""

    def read() -> PyJWKSet:
        return PyJWKSet.from_json(Path(path).read_text())

    return read


class KeySet(SigningKeys):
    """The app's public keys by ``kid``, loaded on first use and kept ``cache_seconds``.

    A token signed by a key not in the set (the app rotated its keys) reloads the set at
    once, but at most once per ``min_refresh_seconds``: a stream of tokens with made-up
    ``kid``s cannot make this node hammer the app's key server. Loading runs in a thread
    (PyJWT fetches synchronously); if it fails, the keys already loaded are kept.
    """

    def __init__(
        self,
        load: Callable[[], PyJWKSet],
        clock: Clock,
        cache_seconds: float = 300.0,
        min_refresh_seconds: float = 30.0,
    ) -> None:
        self._load, self._clock = load, clock
        self._cache_seconds, self._min_refresh = cache_seconds, min_refresh_seconds
        self._keys: dict[str | None, PyJWK] | None = None
        self._loaded_at = 0.0
        self._tried_at: float | None = None
        self._lock = asyncio.Lock()
        self.loads = 0  # how many times the set was loaded (observable in tests)

    async def key_for(self, key_id: str | None, algorithm: str) -> Any:
        now = self._clock.now().timestamp()
        stale = self._keys is None or now - self._loaded_at >= self._cache_seconds
        if stale or self._find(key_id) is None:
            await self._refresh()
        key = self._find(key_id)
        if key is None:
            if self._keys is None:
                raise Unavailable("the app's signing keys cannot be loaded")
            raise Unauthorized("invalid app token: unknown key id")
        if key.algorithm_name != algorithm:
            raise Unauthorized("invalid app token: the key is not for this algorithm")
        return key.key

    def _find(self, key_id: str | None) -> PyJWK | None:
        if self._keys is None:
            return None
        if key_id is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))  # a set of one key: no kid needed
        return self._keys.get(key_id)

    async def _refresh(self) -> None:
        async with self._lock:
            now = self._clock.now().timestamp()
            if self._tried_at is not None and now - self._tried_at < self._min_refresh:
                return  # loaded (or tried) just now, maybe by a concurrent call
            self._tried_at = now
            self.loads += 1
            try:
                key_set = await asyncio.to_thread(self._load)
            except (jwt.PyJWTError, OSError, ValueError) as exc:
                log.warning("cannot load the app's signing keys: %s", exc)
                return
            self._keys = {k.key_id: k for k in key_set.keys}
            self._loaded_at = now


class JwtAppTokenVerifier(AppTokenVerifier):
    """Check an app token: signature (only ``algorithms``), ``iss``, ``aud``, ``exp`` (with
    ``leeway_seconds`` of clock skew) and a ``sub``; the display name is ``name_claim``.

    Every REST call checks its token, and a signature costs 90 (HS256) to 220 (ES256)
    microseconds. A token is immutable, so one that verified is remembered (bounded, least
    recently used) until its ``exp`` (plus leeway) by this verifier's clock, and for at
    most ``remember_seconds``: with a key set, its cache time, so a key the app withdrew
    stops being honoured no later than the key set itself forgets it.
    """

    def __init__(
        self,
        keys: SigningKeys,
        algorithms: Sequence[str],
        issuer: str,
        audience: str,
        clock: Clock,
        leeway_seconds: float = 30.0,
        name_claim: str = "name",
        remember_seconds: float | None = None,
        remembered: int = 10_000,
    ) -> None:
        if not algorithms or "none" in (a.lower() for a in algorithms):
            raise ValueError("name the algorithms to accept; never none")
        self._keys, self._algorithms = keys, tuple(algorithms)
        self._issuer, self._audience, self._clock = issuer, audience, clock
        self._leeway, self._name_claim = leeway_seconds, name_claim
        self._remember_seconds, self._remembered = remember_seconds, remembered
        # token -> (identity, the time after which it must be verified again)
        self._verified: OrderedDict[str, tuple[AppIdentity, float]] = OrderedDict()

    async def verify(self, token: str) -> AppIdentity:
        now = self._clock.now().timestamp()
        known = self._verified.get(token)
        if known is not None:
            identity, until = known
            if now < until:
                self._verified.move_to_end(token)
                return identity
            del self._verified[token]
        identity, expires_at = await self._decode(token)
        until = expires_at + self._leeway
        # Expiry by this verifier's clock (PyJWT would use the wall clock), fresh or not.
        if now >= until:
            raise Unauthorized("app token expired")
        if self._remember_seconds is not None:
            until = min(until, now + self._remember_seconds)
        self._verified[token] = (identity, until)
        if len(self._verified) > self._remembered:
            self._verified.popitem(last=False)
        return identity

    async def _decode(self, token: str) -> tuple[AppIdentity, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized("invalid app token") from exc
        algorithm = header.get("alg")
        if algorithm not in self._algorithms:
            raise Unauthorized("invalid app token: algorithm not accepted")
        key_id = header.get("kid")
        if key_id is not None and not isinstance(key_id, str):
            raise Unauthorized("invalid app token")
        key = await self._keys.key_for(key_id, algorithm)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["sub", "exp", "iss", "aud"], "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized("invalid app token") from exc
        subject, expires_at = claims.get("sub"), claims.get("exp")
        if not isinstance(subject, str) or not isinstance(expires_at, int | float):
            raise Unauthorized("invalid app token")
        name = claims.get(self._name_claim)
        return AppIdentity(subject, name if isinstance(name, str) else None), float(expires_at)
