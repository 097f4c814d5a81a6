"""Seed tokens as signed, expiring JWTs (HS256) with their own audience."""

from __future__ import annotations

import jwt

from chat_domain.errors import Unauthorized
from chat_domain.ports.security import SeedTokenService
from chat_domain.ports.system import Clock

# An access token has no "aud": PyJWT refuses a token with an audience where none is
# expected, and one without where one is, so neither kind passes for the other.
AUDIENCE = "chat-seed"


class JwtSeedTokenService(SeedTokenService):
    """HS256 tokens with ``room`` (the seed roomId), ``sub`` (the clientId), ``exp``, and
    the audience ``chat-seed``."""

    _ALGORITHM = "HS256"

    def __init__(self, secret_key: str, clock: Clock, ttl_seconds: int = 12 * 3600) -> None:
        self._key, self._clock, self._ttl = secret_key, clock, ttl_seconds

    def issue(self, seed_room_id: str, client_id: str) -> str:
        now = int(self._clock.now().timestamp())
        claims = {
            "sub": client_id,
            "room": seed_room_id,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + self._ttl,
        }
        return jwt.encode(claims, self._key, algorithm=self._ALGORITHM)

    def read(self, token: str) -> tuple[str, str]:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self._ALGORITHM],
                audience=AUDIENCE,
                options={"require": ["sub", "room", "exp", "aud"], "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized("invalid session token") from exc
        client_id, room, expires_at = claims.get("sub"), claims.get("room"), claims.get("exp")
        if (
            not isinstance(client_id, str)
            or not isinstance(room, str)
            or not isinstance(expires_at, int | float)
        ):
            raise Unauthorized("invalid session token")
        # Expiry by this service's clock, as the access tokens' (PyJWT would use the wall's).
        if self._clock.now().timestamp() >= expires_at:
            raise Unauthorized("session token expired")
        return room, client_id
