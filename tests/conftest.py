"""Fixtures shared by several test tiers: the SQL databases of the storage contract
(tests/contract) and of the SQL-only tests (tests/integration), one PostgreSQL database
per session for both."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.storage import SQL_BACKENDS, open_sql_engine, postgres_database


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated database for this test session, dropped at the end."""
    with postgres_database() as url:
        yield url


@pytest.fixture(params=SQL_BACKENDS)
async def sql_engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated, empty database on each SQL backend (a new engine per test: an engine
    belongs to one event loop)."""
    engine = await open_sql_engine(request.param, request, tmp_path)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def postgres_engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AsyncEngine]:
    engine = await open_sql_engine("postgres", request, tmp_path)
    try:
        yield engine
    finally:
        await engine.dispose()
