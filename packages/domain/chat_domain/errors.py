"""Domain errors. The server maps each ``code`` to the contract's error shape in one place."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a use case raises on purpose."""

    code = "internal_error"

    def __init__(self, message: str, details: list[object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class InvalidInput(DomainError):
    """The request is well formed but breaks a rule (a name too long, an empty body)."""

    code = "validation_error"


class Unauthorized(DomainError):
    """No identity, or one we cannot trust (bad credentials, bad or expired token)."""

    code = "unauthorized"


class Forbidden(DomainError):
    """The caller is known and may see the resource, but may not do this to it."""

    code = "forbidden"


class NotFound(DomainError):
    """No such thing, or one the caller may not know exists."""

    code = "not_found"


class Conflict(DomainError):
    """The change clashes with the current state (a username already taken)."""

    code = "conflict"


class LimitExceeded(DomainError):
    """A configured limit would be passed (members per room, rooms per user)."""

    code = "validation_error"


class RateLimited(DomainError):
    """Too many calls of one kind from one user or address; ``retry_after`` seconds to wait."""

    code = "rate_limited"

    def __init__(self, retry_after: float, message: str = "too many requests") -> None:
        super().__init__(message, [{"retry_after": round(retry_after, 3)}])
        self.retry_after = retry_after


class Unavailable(DomainError):
    """A backing service (broker, database, ...) does not answer; retry later."""

    code = "unavailable"
