"""Helpers for accounting tests: apps with settings of their own, threads made directly, model calls."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import httpx
from litestar import Litestar
from litestar.testing import AsyncTestClient
from litestar.testing.transport import TestClientTransport

from tests.support.fake_openai import FakeOpenAI
from threadline.app import create_app
from threadline.domain.models import Usage
from threadline.domain.pricing import load_price_table
from threadline.services import Services
from threadline.settings import Settings

Client = AsyncTestClient[Litestar]
Poster = Callable[[str, Any, Mapping[str, str]], "asyncio.Future[httpx.Response]"]
INSERT_THREADS = """
    INSERT INTO threads (id, user_id, agent)
    SELECT gen_random_uuid(), $1, $3 FROM generate_series(1, $2)
    RETURNING id
"""


@contextlib.asynccontextmanager
async def app_client(base_env: Mapping[str, str], **settings: str) -> AsyncIterator[Client]:
    """An app of its own (same Postgres, Redis and upstream) with `settings` on top of the test env."""
    app = create_app(Settings.from_env({**base_env, **settings}))
    async with AsyncTestClient(app=app, timeout=60) as client:
        yield client


def services_of(client: Client) -> Services:
    services: Services = client.app.state.services
    return services


async def new_threads(db: asyncpg.Pool, user_id: str, count: int, agent: str = "default") -> list[str]:
    """`count` empty threads of the user, so concurrent messages never wait for each other's thread."""
    rows = await db.fetch(INSERT_THREADS, user_id, count, agent)
    return [str(row["id"]) for row in rows]


def model_calls(upstream: FakeOpenAI, marker: str) -> list[dict[str, Any]]:
    """The chat completion requests whose newest message contains `marker` (a run's, not a title's)."""
    return [
        request
        for request in upstream.requests
        if marker in str((request.get("messages") or [{}])[-1].get("content", ""))
    ]


def problem_code(body: Mapping[str, Any]) -> str:
    return str(body.get("code") or body.get("extra", {}).get("code"))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@contextlib.asynccontextmanager
async def in_threads(client: Client, workers: int = 64) -> AsyncIterator[Poster]:
    """A `post(path, json, headers)` that sends from a thread of its own and returns at once.

    AsyncTestClient serves one request at a time (each call blocks on the app's portal); requests
    sent from threads reach the app's loop together, so they really run concurrently.
    """
    loop = asyncio.get_running_loop()
    with (
        httpx.Client(transport=_PortalTransport(client), base_url=str(client.base_url), timeout=60) as sync,
        ThreadPoolExecutor(max_workers=workers) as pool,
    ):

        def post(path: str, body: Any, headers: Mapping[str, str]) -> asyncio.Future[httpx.Response]:
            return loop.run_in_executor(
                pool, functools.partial(sync.post, path, json=body, headers=dict(headers))
            )

        yield post


async def post_concurrently(
    client: Client, path: str, bodies: Sequence[Any], headers: Mapping[str, str]
) -> list[httpx.Response]:
    """POST every body at once and wait for every response."""
    async with in_threads(client, workers=len(bodies)) as post:
        return list(await asyncio.gather(*(post(path, body, headers) for body in bodies)))


class _PortalTransport(httpx.BaseTransport):
    """The transport AsyncTestClient uses (the app runs on the client's portal), for a sync client."""

    def __init__(self, client: Client) -> None:
        self._inner = TestClientTransport(client)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._inner.handle_request(request)


def assert_priced_from_the_built_in_table(row: asyncpg.Record) -> None:
    """A usage row (model, its token counts, cost_usd, price_version) priced by the built-in table."""
    prices = load_price_table(None)
    spent = Usage(
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        total_tokens=row["total_tokens"],
        source="measured",
    )
    assert row["cost_usd"] is not None, f"{row['model']} has a price: its row must have a cost"
    assert row["cost_usd"] == prices.cost(row["model"], spent)
    assert row["price_version"] == prices.version
