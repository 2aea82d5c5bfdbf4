"""Fixtures for memory's store-level tests: a Database on the test loop with Threadline's codecs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from threadline.db.database import Database
from threadline.db.pool import create_pool
from threadline.settings import Settings


@pytest.fixture(scope="session")
async def vectors_db(database_url: str, settings: Settings) -> AsyncIterator[Database]:
    """Threadline's own pool set-up (pgvector's codec among them), on the tests' event loop."""
    pool = await create_pool(database_url, settings.database)
    yield Database(pool, acquire_timeout_s=5)
    await pool.close()
