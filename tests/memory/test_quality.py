"""Retrieval quality on a generated corpus: later questions must bring back the planted facts.

The fast version of the quality benchmark (`make bench-memory` runs a larger corpus per embedder).
"""

from __future__ import annotations

import uuid

import asyncpg

from tests.support import memory_corpus
from threadline.adapters.hash_embed import HashEmbedder
from threadline.db.database import Database

# The hashing embedder measures 0.74 on this corpus (it is deterministic): the questions paraphrase
# their facts, and lexical matching misses what shares no word ("allergic" / "allergy"). Below this
# is a regression.
MIN_RECALL_AT_5 = 0.7


async def test_hash_embedder_recall_at_5_on_hundreds_of_threads(
    db: asyncpg.Pool, vectors_db: Database
) -> None:
    corpus = memory_corpus.generate(
        threads=200, messages_per_thread=16, facts=60, user_id=f"corpus-{uuid.uuid4().hex[:8]}"
    )
    assert len(corpus.messages) == 3_200
    async with db.acquire() as connection:
        await memory_corpus.load(connection, corpus)
    embedder = HashEmbedder(dim=256)
    await memory_corpus.embed(vectors_db, corpus, embedder)
    recall = await memory_corpus.recall_at(vectors_db, corpus, embedder, k=5)
    print(f"hash-v1 recall@5 = {recall:.3f} on {memory_corpus.describe(corpus)}")
    assert recall >= MIN_RECALL_AT_5
