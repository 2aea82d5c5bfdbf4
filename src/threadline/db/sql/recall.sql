-- A run's memory: the caller's earlier messages nearest to the question, never another user's.
-- Two nearest-neighbour scans, each served by the HNSW index (or, for a user with few vectors, by
-- the per-user index and an exact sort, whichever the planner finds cheaper): this thread before
-- its recent window, and the user's other threads. Both keep only vectors of the current embedder;
-- the candidates are then ranked by similarity, this thread's raised by a small boost.
-- $1 user id, $2 thread id, $3 question vector, $4 embedder, $5 first seq of the recent window,
-- $6 top k, $7 whether other threads count, $8 minimum cosine similarity, $9 this thread's boost
WITH this_thread AS MATERIALIZED (
    SELECT e.message_id, 1 - (e.embedding <=> $3) AS score
    FROM message_embeddings e
    JOIN messages m ON m.id = e.message_id
    WHERE e.thread_id = $2 AND e.user_id = $1 AND e.embedder = $4
      AND m.seq < $5 AND m.superseded_at IS NULL
    ORDER BY e.embedding <=> $3
    LIMIT $6::int
),
other_threads AS MATERIALIZED (
    SELECT e.message_id, 1 - (e.embedding <=> $3) AS score
    FROM message_embeddings e
    JOIN messages m ON m.id = e.message_id
    WHERE $7 AND e.user_id = $1 AND e.thread_id <> $2 AND e.embedder = $4
      AND m.superseded_at IS NULL
    ORDER BY e.embedding <=> $3
    LIMIT $6::int
)
SELECT m.id AS message_id, m.thread_id, m.role, m.content, m.created_at, c.score
FROM (SELECT * FROM this_thread UNION ALL SELECT * FROM other_threads) c
JOIN messages m ON m.id = c.message_id
WHERE c.score >= $8::float8
ORDER BY c.score + CASE WHEN m.thread_id = $2 THEN $9::float8 ELSE 0 END DESC, m.created_at DESC
LIMIT $6
