"""Seeds memory benchmarks in SQL: messages with text and clustered vectors, fast, at any size.

One heavy user owns half of the messages (retrieval walks the HNSW graph for them); 500
others share the rest (their few thousand vectors are scanned exactly). Vectors are noisy copies of
2,048 random centres, like real embeddings (topics), not uniform noise, which no index handles well.
Texts are twelve words drawn log-uniformly from a 5,000-word vocabulary, so some words are common
and most are rare, as in real text.
"""

from __future__ import annotations

import time

from threadline.db.database import Connection

HEAVY_USER = "bench-heavy"
USERS = 1_000
PER_THREAD = 50
CENTRES = 2_048
SETUP = """
    SET maintenance_work_mem = '3GB';
    SET max_parallel_maintenance_workers = 1;
    DROP INDEX IF EXISTS message_embeddings_hnsw;
    DROP INDEX IF EXISTS messages_tsv;
    CREATE TABLE IF NOT EXISTS bench_centres (id int PRIMARY KEY, v float4[] NOT NULL);
"""
CENTRES_SQL = """
    INSERT INTO bench_centres (id, v)
    SELECT c, ARRAY(SELECT random_normal()::float4 FROM generate_series(1, $1::int) d WHERE c >= 0)
    FROM generate_series(0, $2::int - 1) c
    ON CONFLICT (id) DO NOTHING
"""
# Rows $1 .. $2 (1-based) of the benchmark's messages: even rows the heavy user's, odd rows spread.
THREADS_SQL = """
    INSERT INTO threads (id, user_id, agent, message_count, next_seq)
    SELECT md5('thread' || t)::uuid,
           CASE WHEN t % 2 = 0 THEN $3::text ELSE 'bench-u' || (t % $4::int) END,
           'default', $5::int, $5::int + 1
    FROM generate_series(($1::int - 1) / $5::int, ($2::int - 1) / $5::int) t
    ON CONFLICT (id) DO NOTHING
"""
MESSAGES_SQL = """
    INSERT INTO messages (id, thread_id, user_id, seq, role, content, created_at)
    SELECT md5('message' || n)::uuid, md5('thread' || t)::uuid,
           CASE WHEN t % 2 = 0 THEN $3::text ELSE 'bench-u' || (t % $4::int) END,
           (n - 1) % $5::int + 1, CASE WHEN n % 2 = 1 THEN 'user' ELSE 'assistant' END,
           (SELECT string_agg('w' || floor(exp(random() * ln(5000)))::int, ' ')
            FROM generate_series(1, 12) w WHERE n > 0),
           now() - make_interval(secs => $2::int - n)
    FROM generate_series($1::int, $2::int) n, LATERAL (SELECT (n - 1) / $5::int AS t) th
"""
VECTORS_SQL = """
    INSERT INTO message_embeddings (message_id, user_id, thread_id, embedder, embedding)
    SELECT m.id, m.user_id, m.thread_id, 'bench',
           (SELECT array_agg(c.v[i] + 0.6 * random_normal()) FROM generate_subscripts(c.v, 1) i
            WHERE m.seq > 0)::vector
    FROM messages m
    JOIN bench_centres c ON c.id = abs(hashtext(m.id::text)) % $3::int
    WHERE m.id IN (SELECT md5('message' || n)::uuid FROM generate_series($1::int, $2::int) n)
"""
BUILD_HNSW = (
    "CREATE INDEX message_embeddings_hnsw ON message_embeddings USING hnsw (embedding vector_cosine_ops)"
)
BUILD_GIN = "CREATE INDEX messages_tsv ON messages USING gin (content_tsv)"
CHUNK = 50_000


async def seed(connection: Connection, start: int, stop: int, dim: int) -> dict[str, float]:
    """Messages `start`..`stop` (1-based, inclusive) with their vectors; then the two indexes rebuilt.
    Returns seconds per step."""
    timings: dict[str, float] = {}
    began = time.perf_counter()
    await connection.execute(SETUP)
    await connection.execute(CENTRES_SQL, dim, CENTRES)
    for low in range(start, stop + 1, CHUNK):
        high = min(stop, low + CHUNK - 1)
        await connection.execute(THREADS_SQL, low, high, HEAVY_USER, USERS, PER_THREAD, timeout=None)
        await connection.execute(MESSAGES_SQL, low, high, HEAVY_USER, USERS, PER_THREAD, timeout=None)
        await connection.execute(VECTORS_SQL, low, high, CENTRES, timeout=None)
    timings["insert_s"] = time.perf_counter() - began
    began = time.perf_counter()
    await connection.execute(BUILD_GIN, timeout=None)
    timings["gin_build_s"] = time.perf_counter() - began
    began = time.perf_counter()
    await connection.execute(BUILD_HNSW, timeout=None)
    timings["hnsw_build_s"] = time.perf_counter() - began
    await connection.execute("VACUUM ANALYZE messages", timeout=None)
    await connection.execute("VACUUM ANALYZE message_embeddings", timeout=None)
    return timings
