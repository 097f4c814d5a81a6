"""Driver errors translated to domain errors, in one place for every repository."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from chat_domain.errors import Conflict, Unavailable

# SQLSTATE classes meaning "the server is not there for us": connection exceptions (08),
# shutdown or start-up in progress (57P01..57P03), too many connections (53300).
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be reached (retry later), not a bug."""
    if isinstance(exc, OSError | TimeoutError):  # refused, reset, DNS: before SQLAlchemy wraps
        return True
    if isinstance(exc, PoolTimeout):  # every connection busy for pool_timeout: overloaded
        return True
    if not isinstance(exc, DBAPIError) or isinstance(exc, IntegrityError):
        return False
    if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc.orig, OSError | TimeoutError):
        return True
    return has_unavailable_sqlstate(exc.orig)


def has_unavailable_sqlstate(driver_error: BaseException | None) -> bool:
    """Whether a driver's own error (asyncpg's, psycopg's) says the server is not there."""
    sqlstate = getattr(driver_error, "sqlstate", None) or getattr(driver_error, "pgcode", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATES)


@contextmanager
def translate_errors() -> Iterator[None]:
    """Raise ``Conflict`` for a broken constraint and ``Unavailable`` for a lost database."""
    try:
        yield
    except IntegrityError as exc:
        raise Conflict("conflicts with stored data") from exc
    except Exception as exc:
        if is_unavailable(exc):
            raise Unavailable("database unavailable") from exc
        raise


@contextmanager
def connecting() -> Iterator[None]:
    """Raise ``Unavailable`` for any failure to get a connection (refused, unknown database,
    bad credentials): without one, the database is unusable whatever the reason."""
    try:
        yield
    except (DBAPIError, OSError, TimeoutError, PoolTimeout) as exc:
        raise Unavailable("database unavailable: cannot connect") from exc
