"""Memory's background work and its store: embedding jobs, the backfill, summaries, isolation by vector."""

from __future__ import annotations

import uuid

import asyncpg
import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.conftest import AuthHeaders
from tests.support.accounting import assert_priced_from_the_built_in_table
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.memory import echo_agent, embedded
from tests.support.sessions import chat, eventually, in_app, new_thread, sessions_of
from threadline.adapters.estimated_tokens import EstimatedTokens
from threadline.adapters.hash_embed import HashEmbedder
from threadline.db.database import Database
from threadline.db.embeddings import EMBED_JOB, EmbedOnFinish, PostgresEmbeddings
from threadline.db.recall import PostgresRecall
from threadline.db.search import PostgresSearch
from threadline.db.summaries import PostgresSummaries
from threadline.domain.memory import RecallQuery, SearchQuery
from threadline.domain.models import RunStatus, Usage
from threadline.domain.pricing import load_price_table
from threadline.jobs import PgQueuerJobs
from threadline.memory import Memory
from threadline.ports import RunOutcome
from threadline.service.embeddings import EmbeddingPipeline
from threadline.service.summaries import Summarizer

Client = AsyncTestClient[Litestar]
EMBEDDER = HashEmbedder(dim=256)


def memory_of(client: Client) -> Memory:
    memory: Memory = client.app.state.services.memory
    return memory


async def test_a_runs_end_queues_its_messages_in_the_same_transaction(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool
) -> None:
    reply = await chat(client, auth(user), (await new_thread(client, auth(user)))["id"], "queue me")
    await embedded(db, user, 2)  # the run's own job is done, and so no longer queued
    hook = EmbedOnFinish(PgQueuerJobs(Database(db, acquire_timeout_s=5), timeout_s=5))
    outcome = RunOutcome(
        run_id=uuid.UUID(reply["run_id"]), status=RunStatus.INTERRUPTED, content="partial", usage=Usage(),
        model="m", provider="p", error=None, finish_reason=None, ttft_ms=1, latency_ms=1,
    )  # fmt: skip
    queued = "SELECT payload FROM pgqueuer WHERE dedupe_key = $1"
    key = f"embed:{reply['run_id']}"

    async def settled() -> bool:  # the worker reports finished jobs in batches
        return await db.fetch(queued, key) == []

    await eventually(settled)
    async with db.acquire() as connection:
        transaction = connection.transaction()
        await transaction.start()
        await hook(connection, outcome)
        await hook(connection, outcome)  # a second finisher queues nothing more
        inside = await connection.fetch(queued, key)
        await transaction.rollback()
    assert len(inside) == 1
    payload = msgspec.json.decode(inside[0]["payload"])
    assert payload["message_ids"][1] == reply["message_id"]
    assert len(payload["message_ids"]) == 2
    assert await db.fetch(queued, key) == []


async def test_every_finished_message_gets_a_vector_filed_under_its_user_and_thread(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool
) -> None:
    thread = await new_thread(client, auth(user))
    await chat(client, auth(user), thread["id"], "first question")
    await chat(client, auth(user), thread["id"], "second question")
    await embedded(db, user, 4)
    rows = await db.fetch(
        """SELECT m.role, e.embedder, e.thread_id, e.user_id FROM message_embeddings e
           JOIN messages m ON m.id = e.message_id WHERE e.user_id = $1""",
        user,
    )
    assert sorted(r["role"] for r in rows) == ["assistant", "assistant", "user", "user"]
    assert {(r["embedder"], str(r["thread_id"])) for r in rows} == {("hash-v1", thread["id"])}


async def test_the_backfill_embeds_what_a_lost_job_left_behind(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool
) -> None:
    thread = await new_thread(client, auth(user))
    await chat(client, auth(user), thread["id"], "a message whose job is lost")
    await embedded(db, user, 2)
    await db.execute("DELETE FROM message_embeddings WHERE user_id = $1", user)
    # The backfill leaves the last minute to the jobs; these messages are older than that now.
    await db.execute("UPDATE messages SET created_at = now() - interval '2 minutes' WHERE user_id = $1", user)
    pipeline = memory_of(client).pipeline
    assert await in_app(client, pipeline.backfill, 10_000) >= 2
    assert await db.fetchval("SELECT count(*) FROM message_embeddings WHERE user_id = $1", user) == 2


async def test_an_embed_job_run_twice_embeds_once(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool, vectors_db: Database
) -> None:
    reply = await chat(client, auth(user), (await new_thread(client, auth(user)))["id"], "twice")
    await embedded(db, user, 2)
    pipeline = EmbeddingPipeline(embedder=EMBEDDER, store=PostgresEmbeddings(vectors_db), batch_size=8)
    assert await pipeline.embed_messages([uuid.UUID(reply["message_id"])]) == 0
    jobs = client.app.state.services.sessions.jobs
    await in_app(client, jobs.run, EMBED_JOB, {"message_ids": [reply["message_id"]]})


async def test_exact_vectors_of_one_user_find_nothing_for_another(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool, vectors_db: Database
) -> None:
    canary = f"canary {uuid.uuid4().hex}"
    thread = await new_thread(client, auth(user))
    await chat(client, auth(user), thread["id"], canary)
    await embedded(db, user, 2)
    # The question's own vector (the reply quotes the canary too, so its vector would find the reply).
    stolen = await vectors_db.pool.fetchval(
        "SELECT e.embedding FROM message_embeddings e JOIN messages m ON m.id = e.message_id"
        " WHERE e.user_id = $1 AND m.role = 'user'",
        user,
    )
    vector = stolen.to_list()
    intruder = f"{user}-intruder"
    their_thread = await new_thread(client, auth(intruder))
    their_run = await chat(client, auth(intruder), their_thread["id"], "anything")
    recall = RecallQuery(
        user_id=intruder, thread_id=uuid.UUID(their_thread["id"]), run_id=uuid.UUID(their_run["run_id"]),
        vector=vector, embedder="hash-v1", window_seq=10**6, top_k=10, other_threads=True, min_score=-1.0,
        thread_boost=0.0, ef_search=100,
    )  # fmt: skip
    found = await PostgresRecall(vectors_db).recall(recall)
    assert all(canary not in item.content for item in found)
    search = SearchQuery(
        user_id=intruder, text=canary, vector=vector, embedder="hash-v1", thread_id=None, limit=50,
        candidates=50, min_score=-1.0, ef_search=100,
    )  # fmt: skip
    hits = await PostgresSearch(vectors_db).search(search)
    assert all(canary not in hit.content for hit in hits)
    # The owner, with the same vector, finds it first.
    mine = msgspec.structs.replace(
        recall, user_id=user, thread_id=uuid.uuid4(), run_id=uuid.UUID(their_run["run_id"])
    )
    assert (await PostgresRecall(vectors_db).recall(mine))[0].content == canary


async def test_scope_thread_recalls_only_the_current_thread(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool, vectors_db: Database
) -> None:
    here, elsewhere = await new_thread(client, auth(user)), await new_thread(client, auth(user))
    await chat(client, auth(user), elsewhere["id"], "the parrot is named Kiwi")
    await chat(client, auth(user), here["id"], "the parrot eats seeds")
    run = await chat(client, auth(user), here["id"], "tell me about the parrot")
    await embedded(db, user, 6)
    [vector] = await EMBEDDER.embed(["parrot"])
    query = RecallQuery(
        user_id=user, thread_id=uuid.UUID(here["id"]), run_id=uuid.UUID(run["run_id"]), vector=vector,
        embedder="hash-v1", window_seq=3, top_k=5, other_threads=False, min_score=0.05, thread_boost=0.05,
        ef_search=100,
    )  # fmt: skip
    only_here = await PostgresRecall(vectors_db).recall(query)
    assert only_here
    assert {str(item.thread_id) for item in only_here} == {here["id"]}
    assert all(item.content != "tell me about the parrot" for item in only_here)  # the window
    both = await PostgresRecall(vectors_db).recall(msgspec.structs.replace(query, other_threads=True))
    assert {str(item.thread_id) for item in both} == {here["id"], elsewhere["id"]}
    # This thread first: its boost orders it ahead of an equally similar message elsewhere.
    assert str(both[0].thread_id) == here["id"]


async def test_a_thread_that_outgrows_its_window_gets_a_rolling_summary(
    client: Client, auth: AuthHeaders, user: str, db: asyncpg.Pool
) -> None:
    agent = await echo_agent(client, auth)
    thread = await new_thread(client, auth(user), agent=agent)
    window = client.app.state.services.settings.model.context_messages
    turns = window // 2 + window // 4 + 1  # two messages a turn: a quarter of a window beyond it
    for i in range(turns):
        await chat(client, auth(user), thread["id"], f"fact number {i}: the colour {i} is teal-{i}")

    async def summarized() -> bool:
        return bool(
            await db.fetchval("SELECT context_summary FROM threads WHERE id = $1", uuid.UUID(thread["id"]))
        )

    await eventually(summarized, timeout_s=15)
    row = await db.fetchrow(
        "SELECT context_summary, summary_through_seq FROM threads WHERE id = $1", uuid.UUID(thread["id"])
    )
    assert row is not None
    assert "fact number 0" in row["context_summary"]
    # Through the newest message outside the window when the job ran: never into the window.
    assert window // 2 <= row["summary_through_seq"] <= turns * 2 - window
    detail = (await client.get(f"/threads/{thread['id']}", headers=auth(user))).json()
    assert detail["context_summary"] == row["context_summary"]
    # Rolled forward to everything outside the window, then there is nothing new to fold in.
    summarizer = memory_of(client).summarizer
    await in_app(client, summarizer.summarize, uuid.UUID(thread["id"]))
    assert await in_app(client, summarizer.summarize, uuid.UUID(thread["id"])) is None
    through = await db.fetchval(
        "SELECT summary_through_seq FROM threads WHERE id = $1", uuid.UUID(thread["id"])
    )
    assert through == turns * 2 - window


async def test_a_model_written_summary_is_priced_and_in_the_users_tokens_not_runs(
    client: Client, auth: AuthHeaders, user: str, upstream: FakeOpenAI, db: asyncpg.Pool
) -> None:
    thread = await new_thread(client, auth(user))
    window = client.app.state.services.settings.model.context_messages
    turns = window // 2 + 1  # one turn past the window
    for i in range(turns):
        await chat(client, auth(user), thread["id"], f"fact number {i}")
    services = client.app.state.services
    summarizer = Summarizer(
        store=PostgresSummaries(services.database, prices=load_price_table(None)),
        models=sessions_of(client).models,
        counter=EstimatedTokens(),
        summary_model="agent",  # THREADLINE_SUMMARY_MODEL=agent: the thread's own model
        default_model=services.settings.model.default_model,
        window=window,
    )
    before = await db.fetchrow("SELECT runs, total_tokens, cost_usd FROM user_usage WHERE user_id = $1", user)
    assert before is not None
    upstream.behaviour = Behaviour(reply="The user listed facts.")
    assert await in_app(client, summarizer.summarize, uuid.UUID(thread["id"])) == "The user listed facts."
    call = await db.fetchrow(
        "SELECT model, status, source, prompt_tokens, completion_tokens, total_tokens, cost_usd, "
        "price_version FROM usage_events WHERE user_id = $1 AND purpose = 'summary'",
        user,
    )
    assert call is not None
    assert (call["status"], call["source"]) == ("completed", "measured")
    assert call["total_tokens"] == upstream.reported_usage[-1]["total_tokens"]
    assert_priced_from_the_built_in_table(call)
    after = await db.fetchrow("SELECT runs, total_tokens, cost_usd FROM user_usage WHERE user_id = $1", user)
    assert after is not None
    assert after["runs"] == before["runs"] == turns
    assert after["total_tokens"] == before["total_tokens"] + call["total_tokens"]
    assert after["cost_usd"] == before["cost_usd"] + call["cost_usd"]
