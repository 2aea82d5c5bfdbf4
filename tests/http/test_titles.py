"""Titles: queued with a thread's first reply, written in the background, and a user's title wins."""

from __future__ import annotations

import uuid

import asyncpg
import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.conftest import AuthHeaders
from tests.support.accounting import assert_priced_from_the_built_in_table
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.sessions import chat, eventually, in_app, new_thread, sessions_of
from threadline.adapters.estimated_tokens import EstimatedTokens
from threadline.db.database import Database
from threadline.db.titles import TITLE_JOB, PostgresTitles, TitleOnFirstReply
from threadline.domain.models import RunStatus, Usage
from threadline.jobs import PgQueuerJobs
from threadline.ports import RunOutcome
from threadline.service.titles import TitleWriter

Client = AsyncTestClient[Litestar]


def model_titles(client: Client, title_model: str = "agent") -> TitleWriter:
    """The app's title writer as THREADLINE_TITLE_MODEL would configure it."""
    services = client.app.state.services
    return TitleWriter(
        store=PostgresTitles(services.database),
        models=sessions_of(client).models,
        counter=EstimatedTokens(),
        title_model=title_model,
        default_model=services.settings.model.default_model,
    )


async def untitled(db: asyncpg.Pool, thread_id: str) -> None:
    """Wait for the background title of a thread's first reply, then take it away again."""

    async def titled() -> bool:
        return await title_of(db, thread_id) is not None

    await eventually(titled)
    await db.execute("UPDATE threads SET title = NULL WHERE id = $1", uuid.UUID(thread_id))


async def title_of(db: asyncpg.Pool, thread_id: str) -> str | None:
    title: str | None = await db.fetchval("SELECT title FROM threads WHERE id = $1", uuid.UUID(thread_id))
    return title


async def test_the_first_reply_gets_the_thread_a_title_in_the_background(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool
) -> None:
    reply = (await client.post("/chat", json={"message": "  How do I bake\nsourdough bread at home?"},
                               headers=auth(user))).json()  # fmt: skip

    async def titled() -> bool:
        return await title_of(db, reply["thread_id"]) is not None

    await eventually(titled)
    assert await title_of(db, reply["thread_id"]) == "How do I bake sourdough bread at home?"
    listed = (await client.get("/threads", headers=auth(user))).json()["threads"]
    assert listed[0]["title"] == "How do I bake sourdough bread at home?"


async def test_the_title_job_commits_or_rolls_back_with_the_runs_end(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool
) -> None:
    thread = await new_thread(client, auth(user))
    reply = await chat(client, auth(user), thread["id"], "queue me")
    await untitled(db, thread["id"])
    hook = TitleOnFirstReply(PgQueuerJobs(Database(db, acquire_timeout_s=5), timeout_s=5))
    outcome = RunOutcome(
        run_id=uuid.UUID(reply["run_id"]), status=RunStatus.COMPLETED, content="", usage=Usage(),
        model="m", provider="p", error=None, finish_reason="stop", ttft_ms=1, latency_ms=1,
    )  # fmt: skip
    queued = "SELECT count(*) FROM pgqueuer WHERE dedupe_key = $1"

    async def settled() -> bool:  # the worker reports finished jobs in batches: the run's own title job
        pending: int = await db.fetchval(queued, f"title:{thread['id']}")
        return pending == 0

    await eventually(settled)
    async with db.acquire() as connection:
        transaction = connection.transaction()
        await transaction.start()
        await hook(connection, outcome)
        await hook(connection, outcome)  # a second finisher queues nothing more
        inside = await connection.fetchval(queued, f"title:{thread['id']}")
        await transaction.rollback()
    assert inside == 1
    assert await db.fetchval(queued, f"title:{thread['id']}") == 0
    failed = msgspec.structs.replace(outcome, status=RunStatus.FAILED)
    async with db.acquire() as connection, connection.transaction():
        await hook(connection, failed)
        assert await connection.fetchval(queued, f"title:{thread['id']}") == 0


async def test_a_failed_first_reply_queues_no_title_and_a_titled_thread_keeps_its_title(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, db: asyncpg.Pool
) -> None:
    upstream.behaviour = Behaviour(fail_status=500)
    failed = await new_thread(client, auth(user))
    await client.post("/chat", json={"message": "fails", "thread_id": failed["id"]}, headers=auth(user))
    upstream.behaviour = Behaviour(reply="ok")
    named = await new_thread(client, auth(user), title="Mine")
    await chat(client, auth(user), named["id"], "a question")
    # Both would have been titled by now if a job had been queued for them.
    await in_app(client, sessions_of(client).jobs.run, TITLE_JOB, {"thread_id": named["id"]})
    assert await title_of(db, failed["id"]) is None
    assert await title_of(db, named["id"]) == "Mine"


async def test_a_title_edited_by_the_user_wins_over_the_job(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool
) -> None:
    thread = await new_thread(client, auth(user))
    await chat(client, auth(user), thread["id"], "anything")
    await untitled(db, thread["id"])
    # The job was queued before the user named the thread; it runs after.
    await client.patch(f"/threads/{thread['id']}", json={"title": "Chosen"}, headers=auth(user))
    assert await in_app(client, model_titles(client).write, uuid.UUID(thread["id"])) is None
    assert await title_of(db, thread["id"]) == "Chosen"


async def test_a_model_writes_the_title_with_a_short_capped_call_and_its_tokens_are_accounted(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, db: asyncpg.Pool
) -> None:
    thread = await new_thread(client, auth(user))
    await chat(client, auth(user), thread["id"], "I need help planning a week in Lisbon in May")
    await untitled(db, thread["id"])
    before = await db.fetchrow("SELECT runs, total_tokens, cost_usd FROM user_usage WHERE user_id = $1", user)
    assert before is not None
    upstream.behaviour = Behaviour(reply='"Lisbon Week in May."')
    title = await in_app(client, model_titles(client).write, uuid.UUID(thread["id"]))
    assert title == "Lisbon Week in May"
    assert await title_of(db, thread["id"]) == "Lisbon Week in May"
    request = upstream.requests[-1]
    assert request["messages"][-1]["content"] == "I need help planning a week in Lisbon in May"
    assert request.get("max_completion_tokens", request.get("max_tokens")) == 24
    usage = await db.fetchrow(
        "SELECT purpose, status, source, model, prompt_tokens, completion_tokens, total_tokens, thread_id, "
        "cost_usd, price_version FROM usage_events WHERE user_id = $1 AND purpose = 'title'",
        user,
    )
    assert usage is not None
    assert (usage["status"], usage["source"], str(usage["thread_id"])) == (
        "completed",
        "measured",
        thread["id"],
    )
    assert usage["total_tokens"] == upstream.reported_usage[-1]["total_tokens"]
    # Priced like a run, from the same table, and added to the user's spend.
    assert_priced_from_the_built_in_table(usage)
    after = await db.fetchrow("SELECT runs, total_tokens, cost_usd FROM user_usage WHERE user_id = $1", user)
    assert after is not None
    assert after["runs"] == before["runs"]
    assert after["total_tokens"] == before["total_tokens"] + usage["total_tokens"]
    assert after["cost_usd"] == before["cost_usd"] + usage["cost_usd"]


async def test_a_failing_title_model_falls_back_to_the_trimmed_message(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, db: asyncpg.Pool
) -> None:
    thread = await new_thread(client, auth(user))
    await chat(client, auth(user), thread["id"], "what is the airspeed of a swallow")
    await untitled(db, thread["id"])
    upstream.behaviour = Behaviour(fail_status=500)
    title = await in_app(client, model_titles(client).write, uuid.UUID(thread["id"]))
    assert title == "what is the airspeed of a swallow"


async def test_the_echo_model_titles_with_the_trimmed_message_and_no_call(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, db: asyncpg.Pool
) -> None:
    thread = await new_thread(client, auth(user))
    await chat(client, auth(user), thread["id"], "one two three four five six seven eight nine")
    await untitled(db, thread["id"])
    calls = len(upstream.requests)
    title = await in_app(client, model_titles(client, "threadline-echo").write, uuid.UUID(thread["id"]))
    assert title == "one two three four five six seven eight…"
    assert len(upstream.requests) == calls
