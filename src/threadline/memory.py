"""The memory features' objects (embedder, recall, search, summaries, the embedding pipeline), built
once per process; `attach_memory_jobs` adds their jobs to the queue and their finish hooks to runs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from openai import AsyncOpenAI

from threadline.adapters.batching_embed import BatchingEmbedder
from threadline.adapters.hash_embed import HashEmbedder
from threadline.adapters.minilm_embed import MiniLMEmbedder
from threadline.adapters.openai_chat import create_client
from threadline.adapters.openai_embed import OpenAIEmbedder
from threadline.db.chat import PostgresChatStore
from threadline.db.database import Database
from threadline.db.embeddings import EMBED_JOB, EmbedOnFinish, PostgresEmbeddings
from threadline.db.recall import PostgresRecall
from threadline.db.search import PostgresSearch
from threadline.db.summaries import SUMMARY_JOB, PostgresSummaries, SummaryWhenOutgrown
from threadline.domain.pricing import load_price_table
from threadline.jobs import PgQueuerJobs
from threadline.ports import ChatModels, Embedder, TokenCounter
from threadline.service.embeddings import EmbeddingPipeline
from threadline.service.memory import Recaller
from threadline.service.search import SearchService
from threadline.service.summaries import Summarizer
from threadline.settings import Settings

log = logging.getLogger("threadline.memory")
BACKFILL_JOB = "embed_backlog"
EVERY_TEN_MINUTES = "*/10 * * * *"
BACKFILL_LIMIT = 2_000


class EmbeddingDimMismatch(RuntimeError):
    """The vector column was made for another dimension than the configured embedder's."""


@dataclass(frozen=True, slots=True)
class Memory:
    embedder: Embedder
    embeddings: PostgresEmbeddings
    pipeline: EmbeddingPipeline
    recaller: Recaller
    search: SearchService
    summarizer: Summarizer


def create_embedder(settings: Settings, client: AsyncOpenAI | None = None) -> Embedder:
    """THREADLINE_EMBEDDER's embedder; the OpenAI one shares the chat model's client when there is one."""
    memory = settings.memory
    if memory.embedder == "openai":
        remote = OpenAIEmbedder(
            client or create_client(settings.model),
            model=memory.embedding_model,
            dim=memory.embedding_dim,
            batch_size=memory.embedding_batch,
            timeout_s=memory.embedding_timeout_s,
        )
        # Concurrent runs' questions and finished messages share requests under load.
        return BatchingEmbedder(remote, batch_size=memory.embedding_batch)
    if memory.embedder == "minilm":
        return MiniLMEmbedder(batch_size=memory.embedding_batch)
    return HashEmbedder(dim=memory.embedding_dim)


def build_memory(
    *,
    database: Database,
    models: ChatModels,
    counter: TokenCounter,
    settings: Settings,
    client: AsyncOpenAI | None = None,
    embedder: Embedder | None = None,
) -> Memory:
    embedder = embedder or create_embedder(settings, client)
    embeddings = PostgresEmbeddings(database)
    memory = settings.memory
    log.info("embedder: %s (%d dimensions)", embedder.name, embedder.dim)
    return Memory(
        embedder=embedder,
        embeddings=embeddings,
        pipeline=EmbeddingPipeline(embedder=embedder, store=embeddings, batch_size=memory.embedding_batch),
        recaller=Recaller(embedder=embedder, store=PostgresRecall(database), settings=memory),
        search=SearchService(embedder=embedder, search=PostgresSearch(database), settings=memory),
        summarizer=Summarizer(
            store=PostgresSummaries(database, prices=load_price_table(settings.quotas.price_table)),
            models=models,
            counter=counter,
            summary_model=memory.summary_model,
            default_model=settings.model.default_model,
            window=settings.model.context_messages,
        ),
    )


def attach_memory_jobs(
    memory: Memory, jobs: PgQueuerJobs, *, store: PostgresChatStore | None, settings: Settings
) -> None:
    """Jobs: a finished run's messages embedded, a thread's summary rolled forward, and every ten
    minutes the backlog of messages whose job was lost. With `store`, a run's end queues the first
    two in its own transaction (`threadline worker` runs the jobs without ending runs)."""
    window = settings.model.context_messages

    async def embed(payload: dict[str, Any]) -> None:
        await memory.pipeline.embed_messages([UUID(value) for value in payload["message_ids"]])

    async def summarize(payload: dict[str, Any]) -> None:
        await memory.summarizer.summarize(UUID(payload["thread_id"]))

    async def backfill() -> None:
        await memory.pipeline.backfill(BACKFILL_LIMIT)

    jobs.register(EMBED_JOB, embed)
    jobs.register(SUMMARY_JOB, summarize)
    jobs.register(BACKFILL_JOB, lambda _: backfill())
    jobs.schedule(BACKFILL_JOB, EVERY_TEN_MINUTES, backfill)
    if store is not None:
        store.on_finish(EmbedOnFinish(jobs))
        store.on_finish(SummaryWhenOutgrown(jobs, window=window, every=max(1, window // 2)))


async def check_embedding_dim(memory: Memory) -> None:
    """Refuse to start when the stored vectors cannot be compared with the embedder's."""
    stored = await memory.embeddings.column_dim()
    if stored != memory.embedder.dim:
        raise EmbeddingDimMismatch(
            f"message_embeddings holds vector({stored}) but the embedder {memory.embedder.name} makes "
            f"{memory.embedder.dim} dimensions: run `threadline reembed` to move the vectors to "
            f"{memory.embedder.dim} dimensions (or set THREADLINE_EMBEDDING_DIM={stored})"
        )
