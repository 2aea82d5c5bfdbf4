"""`threadline_event_loop_tasks`: the asyncio tasks alive in the app's loop, read when scraped."""

from __future__ import annotations

import asyncio

from tests.conftest import AuthHeaders
from tests.http.test_metrics import scrape, value
from tests.support.accounting import Client, in_threads, unique
from tests.support.fake_openai import Behaviour, FakeOpenAI

GAUGE = "threadline_event_loop_tasks"


async def tasks(client: Client) -> float:
    return value(await scrape(client), GAUGE)


async def test_a_live_run_shows_in_the_task_gauge_and_leaves_it(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI
) -> None:
    # A first run starts the app's lazy parts (the job queue's tasks): the baseline comes after it.
    async with in_threads(client) as post:
        await post("/chat/stream", {"message": unique("warm")}, auth(user))
    upstream.behaviour = Behaviour(reply="slow " * 20, gap_s=0.1)
    await asyncio.sleep(0.5)
    # Periodic jobs come and go: the baseline is the most seen while idle.
    idle = max([await tasks(client) for _ in range(5)])
    assert idle >= 1  # at least the scrape's own request
    async with in_threads(client) as post:
        streaming = post("/chat/stream", {"message": unique("tasks")}, auth(user))
        await upstream.wait_for(lambda: upstream.active_streams > 0)
        live = await tasks(client)
        await streaming
    assert live > idle  # the run's task and the streaming response's
    for _ in range(100):
        done = await tasks(client)
        if done <= idle:
            break
        await asyncio.sleep(0.05)
    assert done <= idle
