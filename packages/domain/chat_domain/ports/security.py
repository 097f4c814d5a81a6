"""Security ports: password hashing and access tokens."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


class PasswordHasher(ABC):
    """A slow, salted password hash."""

    @abstractmethod
    async def hash(self, password: str) -> str: ...

    @abstractmethod
    async def verify(self, password_hash: str, password: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int  # seconds


class TokenService(ABC):
    """Signed, expiring access tokens that carry a user id."""

    @abstractmethod
    def issue(self, user_id: str) -> IssuedToken: ...

    @abstractmethod
    def verify(self, token: str) -> str:
        """Return the user id, or raise ``Unauthorized`` (bad signature, expired, malformed)."""
