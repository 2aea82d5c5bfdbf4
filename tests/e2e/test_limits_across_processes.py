"""Rate limits are exact across processes: two real Threadline processes share one window in Redis.

500 chat requests at once, spread over both processes, against 60 per minute: exactly 60 are
answered and 440 refused with 429, and only the 60 reach the model. Each process gets 250, so
windows of their own would have answered up to 120. Failed sign-ins from one address
are counted across both processes too, and past the limit that address is refused outright.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import JWT_SECRET, AuthHeaders
from tests.support.accounting import model_calls, new_threads, unique
from tests.support.fake_openai import FakeOpenAI
from tests.support.processes import Server, server_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
REQUESTS = 500
RATE = 60
AUTH_FAILURES = 10


@pytest.fixture(scope="module")
def servers(
    database_url: str, redis_url: str, upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    root = tmp_path_factory.mktemp("limits-across-processes")
    pair = tuple(
        Server(name, env=_env(root / name, database_url, redis_url, upstream), log_dir=root)
        for name in ("A", "B")
    )
    try:
        for server in pair:
            server.start()
        for server in pair:
            server.wait_ready()
        yield pair[0], pair[1]
    finally:
        for server in pair:
            server.terminate()


def _env(data_dir: Path, database_url: str, redis_url: str, upstream: FakeOpenAI) -> dict[str, str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    return server_env(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "OPENAI_BASE_URL": upstream.url,
            "OPENAI_API_KEY": "test-key",
            "THREADLINE_JWT_SECRET": JWT_SECRET,
            "THREADLINE_MIGRATE_ON_START": "false",
            "THREADLINE_MODEL_MAX_RETRIES": "0",
            "THREADLINE_DATA_DIR": str(data_dir),
            "THREADLINE_RATE_LIMIT": f"{RATE}/minute",
            "THREADLINE_AUTH_FAILURE_LIMIT": f"{AUTH_FAILURES}/minute",
            # Only the rate limit is under test: let every admitted request run at once.
            "THREADLINE_MAX_STREAMS_PER_USER": str(REQUESTS),
            # The test client stands behind a proxy on loopback (loopback itself is never limited).
            "THREADLINE_TRUSTED_PROXIES": "127.0.0.1/32",
        }
    )


async def test_500_requests_at_once_over_two_processes_admit_exactly_60(
    servers: tuple[Server, Server], auth: AuthHeaders, user: str, upstream: FakeOpenAI, db: asyncpg.Pool
) -> None:
    question = unique("burst")
    threads = await new_threads(db, user, REQUESTS)
    limits = httpx.Limits(max_connections=REQUESTS, max_keepalive_connections=REQUESTS)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:

        async def send(index: int) -> httpx.Response:
            server = servers[index % 2]
            body = {"message": question, "thread_id": threads[index]}
            return await http.post(f"{server.url}/chat", json=body, headers=auth(user))

        started = time.monotonic()
        responses = await asyncio.gather(*(send(index) for index in range(REQUESTS)))
        elapsed = time.monotonic() - started

    statuses = [response.status_code for response in responses]
    assert statuses.count(200) == RATE, {status: statuses.count(status) for status in set(statuses)}
    assert statuses.count(429) == REQUESTS - RATE
    refused = [response for response in responses if response.status_code == 429]
    assert {response.json()["code"] for response in refused} == {"rate_limited"}
    assert all(1 <= int(response.headers["retry-after"]) <= 60 for response in refused)
    assert {response.headers["ratelimit-limit"] for response in responses} == {str(RATE)}
    # The window is shared, not split: each process got REQUESTS / 2 requests, far more than RATE, so
    # windows of their own would have admitted up to RATE each. (Which process admits how many of the
    # RATE is a race: under load one of them may take them all.)
    assert REQUESTS // 2 > RATE
    assert len(model_calls(upstream, question)) == RATE
    # All of it happened inside one window: nothing was admitted because an early request expired.
    assert elapsed < 60, f"the burst took {elapsed:.1f} s"


async def test_failed_sign_ins_from_one_address_are_counted_across_processes(
    servers: tuple[Server, Server], auth: AuthHeaders, user: str
) -> None:
    guesser = {"X-Forwarded-For": "203.0.113.7"}
    bad = {"Authorization": "Bearer not-a-token", **guesser}
    async with httpx.AsyncClient(timeout=30) as http:
        for index in range(AUTH_FAILURES):
            response = await http.get(f"{servers[index % 2].url}/chat/sessions", headers=bad)
            assert response.status_code == 401
        for server in servers:
            # Now even a valid token from this address waits: the next guess is not even checked.
            blocked = await http.get(f"{server.url}/chat/sessions", headers=auth(user, **guesser))
            assert blocked.status_code == 429
            assert blocked.json()["code"] == "rate_limited"
            assert 1 <= int(blocked.headers["retry-after"]) <= 60
            # Operations probes never need a credential and are never refused.
            assert (await http.get(f"{server.url}/health", headers=guesser)).status_code == 200
            # Other addresses, and the proxy's own loopback, are not affected.
            other = {"X-Forwarded-For": "198.51.100.20"}
            assert (
                await http.get(f"{server.url}/chat/sessions", headers=auth(user, **other))
            ).status_code == 200
            assert (await http.get(f"{server.url}/chat/sessions", headers=auth(user))).status_code == 200
