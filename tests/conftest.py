"""Shared fixtures: a real Postgres with pgvector, a real Redis, a fake OpenAI upstream, the app."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.support.fake_openai import FakeOpenAI
from tests.support.live_app import LiveApp, live_app
from threadline.app import create_app
from threadline.db import migrate
from threadline.embedded import EmbeddedPostgres, EmbeddedRedis
from threadline.http.auth import issue_token
from threadline.lifespan import EMBEDDING_DIM
from threadline.settings import Settings

# Each session gets its own embedded servers, so concurrent test sessions never stop each other's.
# Not pytest's tmp_path: the server runs as another user and pytest resets its base dir to 0700.
TEST_DATA_DIR = Path(tempfile.mkdtemp(prefix="threadline-test-"))
JWT_SECRET = "test-secret-" + "x" * 40


@pytest.fixture(scope="session", autouse=True)
def _remove_test_data_dir() -> Iterator[None]:
    yield
    shutil.rmtree(TEST_DATA_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """TEST_DATABASE_URL, or an embedded PostgreSQL 18 with pgvector for this session."""
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    server = EmbeddedPostgres(TEST_DATA_DIR)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def database_url(postgres_server_url: str) -> AsyncIterator[str]:
    """A fresh database for this session, migrated to the newest schema, dropped afterwards."""
    name = f"threadline_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_server_url, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = with_database(postgres_server_url, name)
    await asyncio.to_thread(migrate.upgrade, url, embedding_dim=EMBEDDING_DIM)
    yield url
    admin = await asyncpg.connect(postgres_server_url, timeout=10)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database (works for TCP and unix-socket URLs)."""
    head, _, query = url.partition("?")
    scheme, _, rest = head.partition("://")
    authority = rest.split("/", 1)[0]
    return f"{scheme}://{authority}/{name}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """TEST_REDIS_URL, or an embedded redis-server for this session."""
    configured = os.environ.get("TEST_REDIS_URL")
    if configured:
        yield configured
        return
    server = EmbeddedRedis(TEST_DATA_DIR)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream: FakeOpenAI) -> None:
    upstream.reset()


@pytest.fixture(scope="session")
def base_env(database_url: str, redis_url: str, upstream: FakeOpenAI) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "OPENAI_BASE_URL": upstream.url,
        "OPENAI_API_KEY": "test-key",
        "THREADLINE_JWT_SECRET": JWT_SECRET,
        "THREADLINE_MODEL_MAX_RETRIES": "0",
        "THREADLINE_ECHO_DELAY_MS": "0",
        "THREADLINE_MIGRATE_ON_START": "false",
        "THREADLINE_DATA_DIR": str(TEST_DATA_DIR),
        # Lexical and deterministic, so memory tests can reason about what is similar; the OpenAI
        # embedder runs the same contract tests against the fake upstream.
        "THREADLINE_EMBEDDER": "hash",
    }


@pytest.fixture(scope="session")
def settings(base_env: dict[str, str]) -> Settings:
    return Settings.from_env(base_env)


@pytest.fixture(scope="session")
def app(settings: Settings) -> Litestar:
    return create_app(settings)


@pytest.fixture(scope="session")
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app, timeout=30) as test_client:
        yield test_client


@pytest.fixture(scope="session")
async def db(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A direct pool for assertions about what Threadline wrote."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4, timeout=10)
    assert pool is not None
    yield pool
    await pool.close()


@pytest.fixture
def user() -> str:
    """A user of its own for every test: tests never see each other's threads."""
    return f"user-{uuid.uuid4().hex[:10]}"


AuthHeaders = Callable[..., dict[str, str]]


@pytest.fixture(scope="session")
def auth() -> AuthHeaders:
    def headers(user_id: str, *, admin: bool = False, **extra: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(JWT_SECRET, user_id, admin=admin)}", **extra}

    return headers


@pytest.fixture(scope="session")
def live_threadline(
    database_url: str, redis_url: str, upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApp]:
    """A real Threadline process on this session's Postgres, Redis and fake upstream, for clients that
    need a socket: the `ai` npm package, the `openai` SDK, the browser, the docs' snippets."""
    root = tmp_path_factory.mktemp("live-threadline")
    settings = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "OPENAI_BASE_URL": upstream.url,
        "OPENAI_API_KEY": "test-key",
        "THREADLINE_JWT_SECRET": JWT_SECRET,
        "THREADLINE_MIGRATE_ON_START": "false",
        "THREADLINE_MODEL_MAX_RETRIES": "0",
        "THREADLINE_HEARTBEAT_S": "1",
        "THREADLINE_SHUTDOWN_GRACE": "2",
        "THREADLINE_EMBEDDER": "hash",
        "THREADLINE_DATA_DIR": str(root),
    }
    with live_app(settings, root) as app:
        yield app
