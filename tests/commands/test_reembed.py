"""`threadline reembed`: a new embedder or a new dimension for every stored message, resumable."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.conftest import with_database
from threadline.db import migrate
from threadline.reembed import reembed
from threadline.settings import Settings

MESSAGES = 23


@pytest.fixture
async def corpus_url(postgres_server_url: str) -> AsyncIterator[str]:
    """A database of its own (reembed retypes the vector column), with a few threads of messages."""
    name = f"threadline_reembed_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_server_url, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = with_database(postgres_server_url, name)
    await asyncio.to_thread(migrate.upgrade, url, embedding_dim=32)
    connection = await asyncpg.connect(url, timeout=10)
    try:
        for t in range(3):
            thread_id = uuid.uuid4()
            await connection.execute(
                "INSERT INTO threads (id, user_id, agent) VALUES ($1, $2, 'default')", thread_id, f"u{t}"
            )
            await connection.executemany(
                "INSERT INTO messages (id, thread_id, user_id, seq, role, content) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                [
                    (uuid.uuid4(), thread_id, f"u{t}", seq, "user", f"message {seq} of thread {t}")
                    for seq in range(1, 1 + MESSAGES // 3 + (t < MESSAGES % 3))
                ],
            )
    finally:
        await connection.close()
    yield url
    admin = await asyncpg.connect(postgres_server_url, timeout=10)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def settings_for(base_env: dict[str, str], url: str, **env: str) -> Settings:
    return Settings.from_env({**base_env, "DATABASE_URL": url, **env})


async def column_and_vectors(url: str) -> tuple[str, list[tuple[str, int]], bool]:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        column = await connection.fetchval(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'message_embeddings'::regclass AND attname = 'embedding'"
        )
        rows = await connection.fetch(
            "SELECT embedder, vector_dims(embedding) AS dims, count(*) FROM message_embeddings GROUP BY 1, 2"
        )
        index = await connection.fetchval("SELECT to_regclass('message_embeddings_hnsw') IS NOT NULL")
    finally:
        await connection.close()
    return column, [(r["embedder"], r["count"]) for r in rows], index


async def test_embeds_everything_then_nothing(corpus_url: str, base_env: dict[str, str]) -> None:
    settings = settings_for(base_env, corpus_url, THREADLINE_EMBEDDING_DIM="32")
    output = io.StringIO()
    first = await reembed(corpus_url, settings, batch_size=5, output=output)
    assert (first.embedded, first.remaining, first.dim_changed) == (MESSAGES, 0, False)
    assert f"reembedded {MESSAGES} message(s) with hash-v1" in output.getvalue()
    assert await column_and_vectors(corpus_url) == ("vector(32)", [("hash-v1", MESSAGES)], True)
    again = await reembed(corpus_url, settings, output=io.StringIO())
    assert again.embedded == 0


async def test_a_new_dimension_migrates_the_column_and_resumes_after_an_interruption(
    corpus_url: str, base_env: dict[str, str]
) -> None:
    await reembed(
        corpus_url, settings_for(base_env, corpus_url, THREADLINE_EMBEDDING_DIM="32"), output=io.StringIO()
    )
    wider = settings_for(base_env, corpus_url, THREADLINE_EMBEDDING_DIM="48")
    # Interrupted after 10 messages: the column is already vector(48), the index waits for the rest.
    partial = await reembed(corpus_url, wider, batch_size=4, limit=10, output=io.StringIO())
    assert (partial.dim_changed, partial.embedded, partial.remaining, partial.index_built) == (
        True,
        10,
        13,
        False,
    )
    assert await column_and_vectors(corpus_url) == ("vector(48)", [("hash-v1", 10)], False)
    resumed = await reembed(corpus_url, wider, batch_size=4, output=io.StringIO())
    assert (resumed.dim_changed, resumed.embedded, resumed.remaining, resumed.index_built) == (
        False,
        13,
        0,
        True,
    )
    assert await column_and_vectors(corpus_url) == ("vector(48)", [("hash-v1", MESSAGES)], True)


async def test_a_new_embedder_of_the_same_dimension_replaces_every_vector(
    corpus_url: str, base_env: dict[str, str]
) -> None:
    await reembed(
        corpus_url, settings_for(base_env, corpus_url, THREADLINE_EMBEDDING_DIM="32"), output=io.StringIO()
    )
    remote = settings_for(base_env, corpus_url, THREADLINE_EMBEDDING_DIM="32", THREADLINE_EMBEDDER="openai")
    report = await reembed(corpus_url, remote, batch_size=8, output=io.StringIO())
    assert report.embedded == MESSAGES
    assert await column_and_vectors(corpus_url) == (
        "vector(32)",
        [("openai:text-embedding-3-small", MESSAGES)],
        True,
    )


def test_the_command_shows_progress_with_an_eta_on_stderr(corpus_url: str, base_env: dict[str, str]) -> None:
    env = {**os.environ, **base_env, "DATABASE_URL": corpus_url, "THREADLINE_EMBEDDING_DIM": "32"}
    done = subprocess.run(
        [sys.executable, "-m", "threadline.cli", "reembed", "--batch", "5"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "ETA" in done.stderr
    assert f"{MESSAGES}/{MESSAGES}" in done.stderr
    assert f"reembedded {MESSAGES} message(s)" in done.stderr
    assert done.stdout == ""
