"""A token longer than Threadline accepts is refused before it is decoded, however well it is signed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import jwt

from tests.conftest import JWT_SECRET
from tests.support.fake_openai import FakeOpenAI
from tests.support.sessions import Client
from threadline.http.auth import MAX_TOKEN_CHARS


def signed_token(user: str, pad: int) -> str:
    now = datetime.now(UTC)
    claims = {"sub": user, "iat": now, "exp": now + timedelta(hours=1), "roles": [], "pad": "p" * pad}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


async def test_a_validly_signed_token_over_the_limit_is_refused_before_any_work(
    client: Client, user: str, upstream: FakeOpenAI, db: asyncpg.Pool
) -> None:
    # Base64 makes the padding a third longer.
    fits = signed_token(user, MAX_TOKEN_CHARS * 3 // 4 - 300)
    too_long = signed_token(user, MAX_TOKEN_CHARS * 3 // 4 + 100)
    assert len(fits) <= MAX_TOKEN_CHARS < len(too_long)

    accepted = await client.get("/chat/history", headers={"Authorization": f"Bearer {fits}"})
    refused = await client.post(
        "/chat", json={"message": "hi"}, headers={"Authorization": f"Bearer {too_long}"}
    )
    stream = await client.get(f"/runs/{uuid.uuid4()}/stream", params={"token": too_long})

    assert accepted.status_code == 200
    for response in (refused, stream):
        assert response.status_code == 401, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
    assert upstream.requests == []
    assert await db.fetchval("SELECT count(*) FROM messages WHERE user_id = $1", user) == 0
