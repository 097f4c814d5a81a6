"""Access tokens as signed, expiring JWTs (HS256)."""

from __future__ import annotations

from collections import OrderedDict

import jwt

from chat_domain.errors import Unauthorized
from chat_domain.ports.security import IssuedToken, TokenService, TokenSubject
from chat_domain.ports.system import Clock


class JwtTokenService(TokenService):
    """HS256 tokens with ``sub``, ``exp`` and ``gen`` (the user's session generation).

    Every REST call verifies its token, and checking a signature and parsing the claims
    costs more than the rest of a send's authentication. A token is immutable, so one that
    verified is remembered (bounded, least recently used) with its expiry, which is checked
    again at every use: a remembered token expires exactly when a fresh one would.
    """

    _ALGORITHM = "HS256"

    def __init__(
        self,
        secret_key: str,
        clock: Clock,
        ttl_seconds: int = 12 * 3600,
        remembered: int = 10_000,
    ) -> None:
        self._key, self._clock, self._ttl = secret_key, clock, ttl_seconds
        self._verified: OrderedDict[str, tuple[TokenSubject, float]] = OrderedDict()
        self._remembered = remembered

    def issue(self, user_id: str, session_generation: int = 0) -> IssuedToken:
        now = int(self._clock.now().timestamp())
        claims = {"sub": user_id, "iat": now, "exp": now + self._ttl, "gen": session_generation}
        return IssuedToken(jwt.encode(claims, self._key, algorithm=self._ALGORITHM), self._ttl)

    def read(self, token: str) -> TokenSubject:
        known = self._verified.get(token)
        if known is None:
            known = self._decode(token)
            self._verified[token] = known
            if len(self._verified) > self._remembered:
                self._verified.popitem(last=False)
        else:
            self._verified.move_to_end(token)
        subject, expires_at = known
        # Expiry by this service's clock (PyJWT would use the wall clock), fresh or not.
        if self._clock.now().timestamp() >= expires_at:
            raise Unauthorized("access token expired")
        return subject

    def _decode(self, token: str) -> tuple[TokenSubject, float]:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self._ALGORITHM],
                options={"require": ["sub", "exp"], "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized("invalid access token") from exc
        subject, expires_at = claims.get("sub"), claims.get("exp")
        generation = claims.get("gen", 0)  # tokens issued before generations carry none
        if (
            not isinstance(subject, str)
            or not isinstance(expires_at, int | float)
            or type(generation) is not int
        ):
            raise Unauthorized("invalid access token")
        return TokenSubject(subject, generation), float(expires_at)
