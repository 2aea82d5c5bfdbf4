"""Helpers for the memory tests: an echo-model agent, and waiting for the embedding jobs."""

from __future__ import annotations

import uuid

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.conftest import AuthHeaders
from tests.support.sessions import eventually

Client = AsyncTestClient[Litestar]


async def echo_agent(client: Client, auth: AuthHeaders) -> str:
    """A new agent on the offline echo model, which quotes the memory it is given."""
    slug = f"echo-{uuid.uuid4().hex[:8]}"
    body = {"slug": slug, "name": "Echo", "system_prompt": "Answer briefly.", "model": "threadline-echo"}
    response = await client.post("/agents", json=body, headers=auth("admin-user", admin=True))
    assert response.status_code == 201, response.text
    return slug


async def embedded(db: asyncpg.Pool, user_id: str, count: int, *, timeout_s: float = 15.0) -> None:
    """Wait until the background jobs have stored `count` vectors for the user."""

    async def done() -> bool:
        found: int = await db.fetchval("SELECT count(*) FROM message_embeddings WHERE user_id = $1", user_id)
        return found >= count

    await eventually(done, timeout_s=timeout_s)
