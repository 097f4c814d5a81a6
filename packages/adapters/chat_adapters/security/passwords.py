"""Argon2id password hashing, run off the event loop because it is slow on purpose."""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher as Argon2
from argon2.exceptions import InvalidHashError, VerificationError

from chat_domain.ports.security import PasswordHasher


class Argon2PasswordHasher(PasswordHasher):
    def __init__(
        self, time_cost: int = 2, memory_cost: int = 19 * 1024, parallelism: int = 1
    ) -> None:
        # OWASP's minimum argon2id profile (19 MiB, 2 passes): slow enough for an attacker,
        # quick enough (~20 ms) that login is not a bottleneck on a 2-core machine.
        self._argon2 = Argon2(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)
        # Made once, when the hasher is built (one hash, ~20 ms), with these same parameters:
        # verifying against it costs exactly what verifying a user's real hash costs.
        self._decoy = self._argon2.hash(secrets.token_urlsafe(32))

    @property
    def decoy_hash(self) -> str:
        return self._decoy

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._argon2.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        def check() -> bool:
            try:
                return self._argon2.verify(password_hash, password)
            except (VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(check)
