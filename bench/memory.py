"""`make bench-memory`: retrieval quality per embedder, and recall and search latency at 100k and 1M
stored messages, printed as the tables of docs/benchmarks.md ("Memory") and kept as JSON.

    python -m bench.memory [--sizes 100000,1000000] [--queries 200] [--quality-threads 500]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import msgspec
from tests.support import memory_corpus

from bench.load import Distribution
from bench.memory_report import (
    RESULTS,
    Latency,
    MemoryResults,
    Quality,
    Size,
    latency_table,
    merged,
    quality_table,
)
from bench.memory_seed import HEAVY_USER, seed
from bench.report import rewrite
from threadline.adapters import minilm_embed
from threadline.adapters.hash_embed import HashEmbedder
from threadline.db import migrate
from threadline.db.database import Connection, Database
from threadline.db.embeddings import PostgresEmbeddings
from threadline.db.pool import create_pool
from threadline.db.recall import PostgresRecall
from threadline.db.search import PostgresSearch
from threadline.domain.memory import RecallQuery, SearchQuery
from threadline.embedded import EmbeddedPostgres
from threadline.ports import Embedder
from threadline.settings import DatabaseSettings

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
DIM = 256
TOP_K = 10
EF_SEARCH = (40, 100, 200, 400)
EXACT = """
    SELECT message_id FROM message_embeddings WHERE user_id = $1 AND embedder = 'bench'
    ORDER BY embedding <=> $2 LIMIT $3
"""
SAMPLE_VECTORS = "SELECT embedding FROM message_embeddings WHERE user_id = $1 ORDER BY random() LIMIT $2"


def embedders() -> list[Embedder]:
    """Every embedder that runs here: the hashing one, and MiniLM when its extra is installed."""
    found: list[Embedder] = [HashEmbedder(dim=DIM)]
    if minilm_embed.available():
        found.append(minilm_embed.MiniLMEmbedder(batch_size=64))
    return found


async def quality(database: Database, connection: Connection, threads: int) -> list[Quality]:
    """Each embedder on the same corpus, searched exactly (no index): this measures the embedders."""
    results = []
    store = PostgresEmbeddings(database)
    for embedder in embedders():
        await store.change_dim(embedder.dim)
        corpus = memory_corpus.generate(
            threads=threads, messages_per_thread=20, facts=threads // 2, user_id=f"quality-{embedder.name}"
        )
        await memory_corpus.load(connection, corpus)
        began = time.perf_counter()
        await memory_corpus.embed(database, corpus, embedder)
        per_message = (time.perf_counter() - began) * 1000 / len(corpus.messages)
        at1 = await memory_corpus.recall_at(database, corpus, embedder, k=1)
        at5 = await memory_corpus.recall_at(database, corpus, embedder, k=5)
        results.append(Quality(embedder.name, memory_corpus.describe(corpus), at1, at5, per_message))
        print(f"  {embedder.name}: recall@1 {at1:.3f}, recall@5 {at5:.3f}", file=sys.stderr)
    await store.change_dim(DIM)
    return results


async def timed(call: Callable[[], Awaitable[object]], runs: int) -> Distribution:
    for _ in range(3):
        await call()  # warm the plan cache and the pages
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - began) * 1000)
    return Distribution.of(samples)


async def latency(database: Database, size: int, user: str, ef_search: int, queries: int) -> Latency:
    rng = random.Random(size + ef_search)
    async with database.connection() as connection:
        owned: int = await connection.fetchval(
            "SELECT count(*) FROM message_embeddings WHERE user_id = $1", user
        )
        samples = await connection.fetch(SAMPLE_VECTORS, user, queries)
    vectors = [[x + rng.gauss(0, 0.3) for x in row["embedding"].to_list()] for row in samples]
    recall, search = PostgresRecall(database), PostgresSearch(database)

    def recall_query(vector: list[float]) -> RecallQuery:
        return RecallQuery(
            user_id=user, thread_id=uuid.uuid4(), run_id=uuid.uuid4(), vector=vector, embedder="bench",
            window_seq=1, top_k=TOP_K, other_threads=True, min_score=-1.0, thread_boost=0.0,
            ef_search=ef_search,
        )  # fmt: skip

    agreement = 0.0
    for vector in vectors[:50]:
        found = {item.message_id for item in await recall.recall(recall_query(vector))}
        async with database.transaction() as connection:
            await connection.execute("SET LOCAL enable_indexscan = off")
            exact = {row["message_id"] for row in await connection.fetch(EXACT, user, vector, TOP_K)}
        agreement += len(found & exact) / TOP_K
    cycle = iter(vectors * 10)
    recall_ms = await timed(lambda: recall.recall(recall_query(next(cycle))), queries)
    words = iter([f"w{rng.randint(1, 60)} w{rng.randint(1, 400)}" for _ in range(queries + 3)])
    search_ms = await timed(
        lambda: search.search(
            SearchQuery(
                user_id=user,
                text=next(words),
                vector=next(cycle),
                embedder="bench",
                thread_id=None,
                limit=20,
                candidates=50,
                min_score=-1.0,
                ef_search=ef_search,
            )
        ),
        queries,
    )
    return Latency(size, user, owned, ef_search, recall_ms, agreement / min(50, len(vectors)), search_ms)


async def run(
    database_url: str, sizes: Sequence[int], queries: int, quality_threads: int, *, seeded: bool = False
) -> MemoryResults:
    """Quality, then each size seeded and measured; `seeded`: the database holds the largest size
    already (a previous run's), so only its latencies are measured again."""
    load_before = os.getloadavg()[0]
    await asyncio.to_thread(migrate.upgrade, database_url, embedding_dim=DIM)
    pool = await create_pool(database_url, DatabaseSettings(pool_max=4, command_timeout_s=7_200))
    database = Database(pool, acquire_timeout_s=30)
    try:
        found_quality = []
        if not seeded and quality_threads:
            async with pool.acquire() as connection:
                print("quality …", file=sys.stderr)
                found_quality = await quality(database, connection, quality_threads)
        hash_ms = (await timed(lambda: HashEmbedder(dim=DIM).embed(["What is my gym locker code?"]), 200)).p50
        done, measured = 0, []
        for size in sorted(sizes)[-1:] if seeded else sorted(sizes):
            timings: dict[str, float] = {}
            if not seeded:
                print(f"seeding {size} messages …", file=sys.stderr)
                async with pool.acquire() as connection:
                    timings = await seed(connection, done + 1, size, DIM)
                done = size
                print(f"  seeded: {timings}", file=sys.stderr)
            latencies = [await latency(database, size, HEAVY_USER, ef, queries) for ef in EF_SEARCH]
            latencies.append(await latency(database, size, "bench-u7", 100, queries))
            for item in latencies:
                line = (
                    f"  {item.user} ef={item.ef_search}: recall p95 {item.recall_ms.p95:.2f} ms, "
                    f"vs exact {item.recall_vs_exact:.3f}, search p95 {item.search_ms.p95:.2f} ms"
                )
                print(line, file=sys.stderr)
            measured.append(Size(size, timings, latencies))
        return MemoryResults(
            quality=found_quality, sizes=measured, hash_embed_ms=hash_ms or 0.0,
            load_before=load_before, load_after=os.getloadavg()[0],
        )  # fmt: skip
    finally:
        await pool.close()


def measure(arguments: argparse.Namespace) -> MemoryResults:
    sizes = [int(size) for size in arguments.sizes.split(",") if size]
    server = None
    url = arguments.database_url
    if url is None:
        server = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="threadline-bench-memory-")))
        url = server.start()
    try:
        return asyncio.run(
            run(url, sizes, arguments.queries, arguments.quality_threads, seeded=arguments.seeded)
        )
    finally:
        if server is not None:
            server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--sizes", default="100000,1000000", help="stored messages, comma-separated")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--quality-threads", type=int, default=500)
    parser.add_argument("--database-url", default=None, help="an empty database (default: embedded)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--seeded", action="store_true", help="measure the database's messages again")
    parser.add_argument("--render", type=Path, nargs="+", help="write the doc from these JSON results only")
    arguments = parser.parse_args(argv)
    if arguments.render:
        results = merged(
            [msgspec.json.decode(path.read_bytes(), type=MemoryResults) for path in arguments.render]
        )
    else:
        results = measure(arguments)
        arguments.output.parent.mkdir(parents=True, exist_ok=True)
        arguments.output.write_bytes(msgspec.json.format(msgspec.json.encode(results)))
    regions = {"memory-quality": quality_table(results)}
    if results.sizes:
        regions["memory-latency"] = latency_table(results)
    rewrite(DOC, regions)
    print("\n\n".join(regions.values()))
    summary = (
        f"\nhash embedding of a question: {results.hash_embed_ms:.3f} ms; load average "
        f"{results.load_before:.1f} → {results.load_after:.1f}"
    )
    print(summary, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
