"""Security ports: password hashing, our access tokens, and the tokens an app issues."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


class PasswordHasher(ABC):
    """A slow, salted password hash.

    ``decoy_hash`` is a hash of a random secret nobody knows, made once with the same
    parameters as real hashes: a login for a username that has no account is verified
    against it, so that answer costs what a wrong password costs and a stopwatch cannot
    tell which usernames exist.
    """

    @property
    @abstractmethod
    def decoy_hash(self) -> str: ...

    @abstractmethod
    async def hash(self, password: str) -> str: ...

    @abstractmethod
    async def verify(self, password_hash: str, password: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int  # seconds


@dataclass(frozen=True, slots=True)
class TokenSubject:
    """Whom a valid token was issued to, and in which of their session generations."""

    user_id: str
    session_generation: int


class TokenService(ABC):
    """Signed, expiring access tokens that carry a user id and a session generation."""

    @abstractmethod
    def issue(self, user_id: str, session_generation: int = 0) -> IssuedToken: ...

    @abstractmethod
    def read(self, token: str) -> TokenSubject:
        """Return the token's subject, or raise ``Unauthorized`` (bad signature, expired,
        malformed). A token that carries no generation is of generation 0."""

    def verify(self, token: str) -> str:
        """Return the user id, or raise ``Unauthorized`` as ``read`` does."""
        return self.read(token).user_id


class SeedTokenService(ABC):
    """Signed, expiring tokens of the seed's API (docs/seed-compat.md): each names one seed
    client in one seed room, by the seed's own ids. Never accepted as an access token."""

    @abstractmethod
    def issue(self, seed_room_id: str, client_id: str) -> str: ...

    @abstractmethod
    def read(self, token: str) -> tuple[str, str]:
        """The token's (seed room id, client id), or raise ``Unauthorized`` (bad signature,
        expired, malformed, or an access token)."""


@dataclass(frozen=True, slots=True)
class AppIdentity:
    """A user the app vouches for: the app's own id for them (``sub``) and, if the token
    names one, the name to show (not yet checked against the display-name rules)."""

    subject: str
    display_name: str | None = None


class AppTokenVerifier(ABC):
    """Tokens an app issues for its users, when the app vouches for who they are.

    An adapter checks the signature with only the algorithms it was configured for (never
    ``none``, never another family than its keys'), and the issuer, audience and expiry.
    """

    @abstractmethod
    async def verify(self, token: str) -> AppIdentity:
        """The identity the token carries, or raise ``Unauthorized`` (bad signature, unknown
        key, wrong issuer or audience, expired, malformed), or ``Unavailable`` if the keys
        to check it with cannot be had."""
