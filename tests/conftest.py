"""Fixtures shared by every test layer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.services import create_postgres_database, drop_postgres_database


@pytest.fixture(scope="session")
async def postgres_url() -> AsyncIterator[str]:
    """A PostgreSQL database created for this test run and dropped after it."""
    url = await create_postgres_database()
    yield url
    await drop_postgres_database(url)
