"""Access tokens as signed, expiring JWTs (HS256)."""

from __future__ import annotations

import jwt

from chat_domain.errors import Unauthorized
from chat_domain.ports.security import IssuedToken, TokenService
from chat_domain.ports.system import Clock


class JwtTokenService(TokenService):
    _ALGORITHM = "HS256"

    def __init__(self, secret_key: str, clock: Clock, ttl_seconds: int = 12 * 3600) -> None:
        self._key, self._clock, self._ttl = secret_key, clock, ttl_seconds

    def issue(self, user_id: str) -> IssuedToken:
        now = int(self._clock.now().timestamp())
        claims = {"sub": user_id, "iat": now, "exp": now + self._ttl}
        return IssuedToken(jwt.encode(claims, self._key, algorithm=self._ALGORITHM), self._ttl)

    def verify(self, token: str) -> str:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self._ALGORITHM],
                options={"require": ["sub", "exp"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("access token expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("invalid access token") from exc
        subject = claims.get("sub")
        if not isinstance(subject, str):
            raise Unauthorized("invalid access token")
        return subject
