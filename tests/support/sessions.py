"""Helpers for the session tests: threads and chats over HTTP, and calls on the app's own loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from litestar import Litestar
from litestar.testing import AsyncTestClient

from threadline.sessions import Sessions

Client = AsyncTestClient[Litestar]
T = TypeVar("T")


async def new_thread(client: Client, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await client.post("/threads", json=body, headers=headers)
    assert response.status_code == 201, response.text
    thread: dict[str, Any] = response.json()
    return thread


async def chat(client: Client, headers: dict[str, str], thread_id: str, message: str) -> dict[str, Any]:
    response = await client.post("/chat", json={"message": message, "thread_id": thread_id}, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def sessions_of(client: Client) -> Sessions:
    sessions: Sessions = client.app.state.services.sessions
    return sessions


async def in_app(client: Client, call: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Await `call(*args)` on the app's event loop (its pool lives there), without blocking ours."""
    return await asyncio.to_thread(client.blocking_portal.call, call, *args)


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout_s: float = 20.0) -> None:
    """Wait until `check()` is true: for work a background job does."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the condition did not become true in time")
        await asyncio.sleep(0.05)
