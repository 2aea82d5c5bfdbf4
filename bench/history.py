"""History page latency: a thread of 100k messages seeded in SQL, then `GET /chat/history` timed."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import asyncpg
import msgspec

from bench.load import Distribution
from bench.sse_client import request_bytes
from threadline.http.auth import issue_token

HISTORY_USER = "bench-history"
INSERT_THREAD = """
    INSERT INTO threads (id, user_id, agent, title, message_count, next_seq)
    VALUES ($1, $2, 'default', 'a long thread', $3, $3 + 1)
"""
# Alternating user and assistant messages, each about 40 words, created one second apart.
SEED_MESSAGES = """
    INSERT INTO messages (id, thread_id, user_id, seq, role, content, status, created_at, completed_at)
    SELECT gen_random_uuid(), $1, $2, n,
           CASE WHEN n % 2 = 1 THEN 'user' ELSE 'assistant' END,
           'message ' || n || ': ' || repeat('lorem ipsum dolor sit amet ', 8),
           CASE WHEN n % 2 = 1 THEN NULL ELSE 'completed' END,
           now() - make_interval(secs => $3 - n), now() - make_interval(secs => $3 - n)
    FROM generate_series(1, $3) AS n
"""


class HistoryResult(msgspec.Struct, frozen=True):
    messages: int
    seed_s: float
    requests: int
    errors: int
    latency_ms: Distribution


async def seed(database_url: str, messages: int) -> tuple[uuid.UUID, float]:
    started = time.perf_counter()
    thread_id = uuid.uuid4()
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        async with connection.transaction():
            await connection.execute(INSERT_THREAD, thread_id, HISTORY_USER, messages)
            await connection.execute(SEED_MESSAGES, thread_id, HISTORY_USER, messages, timeout=600)
        await connection.execute("ANALYZE messages", timeout=600)
    finally:
        await connection.close()
    return thread_id, time.perf_counter() - started


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def time_history(
    port: int, secret: str, thread_id: uuid.UUID, *, requests: int, limit: int = 50
) -> tuple[list[float], int]:
    """`requests` sequential GETs on one keep-alive connection; their latencies in ms and the errors."""
    token = issue_token(secret, HISTORY_USER, ttl=timedelta(hours=1))
    path = f"/chat/history?thread_id={thread_id}&limit={limit}"
    request = request_bytes("GET", path, f"127.0.0.1:{port}", b"", {"Authorization": f"Bearer {token}"})
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    latencies: list[float] = []
    errors = 0
    try:
        async with asyncio.timeout(120):
            for _ in range(requests):
                started = time.perf_counter()
                writer.write(request)
                status = await _read_response(reader)
                latencies.append((time.perf_counter() - started) * 1000)
                errors += status != 200
    finally:
        writer.close()
    return latencies, errors


async def measure(
    database_url: str, port: int, secret: str, *, messages: int, requests: int
) -> HistoryResult:
    thread_id, seed_s = await seed(database_url, messages)
    await time_history(port, secret, thread_id, requests=20)  # warm the plan cache and the pages
    latencies, errors = await time_history(port, secret, thread_id, requests=requests)
    return HistoryResult(
        messages=messages,
        seed_s=seed_s,
        requests=requests,
        errors=errors,
        latency_ms=Distribution.of(latencies),
    )
