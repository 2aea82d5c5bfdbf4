-- Hybrid search over the caller's own messages: full text (websearch syntax, English stemming) and
-- vector similarity, each contributing its best `candidates`, fused by reciprocal rank (k = 60).
-- Snippets come from ts_headline with private-use characters around the matches: the caller escapes
-- the text for HTML, then turns them into <mark> tags, so a message's own markup is never live.
-- $1 user id, $2 query text, $3 query vector (NULL: full text only), $4 embedder,
-- $5 thread id (NULL: every thread), $6 limit, $7 candidates per arm, $8 minimum cosine similarity
WITH query AS (
    SELECT websearch_to_tsquery('english', $2) AS tsq
),
text_hits AS MATERIALIZED (
    SELECT id, row_number() OVER (ORDER BY rank DESC, created_at DESC) AS position
    FROM (
        SELECT m.id, m.created_at, ts_rank_cd(m.content_tsv, q.tsq) AS rank
        FROM messages m, query q
        WHERE m.user_id = $1 AND m.content_tsv @@ q.tsq AND m.superseded_at IS NULL
          AND ($5::uuid IS NULL OR m.thread_id = $5)
        ORDER BY rank DESC, m.created_at DESC
        LIMIT $7
    ) ranked
),
nearest AS MATERIALIZED (
    SELECT e.message_id AS id, 1 - (e.embedding <=> $3) AS similarity
    FROM message_embeddings e
    JOIN messages m ON m.id = e.message_id
    WHERE $3::vector IS NOT NULL AND e.user_id = $1 AND e.embedder = $4
      AND ($5::uuid IS NULL OR e.thread_id = $5) AND m.superseded_at IS NULL
    ORDER BY e.embedding <=> $3
    LIMIT $7
),
vector_hits AS (
    SELECT id, similarity, row_number() OVER (ORDER BY similarity DESC) AS position
    FROM nearest WHERE similarity >= $8::float8
),
fused AS (
    SELECT coalesce(t.id, v.id) AS id, t.position AS text_rank, v.position AS vector_rank, v.similarity,
           coalesce(1.0 / (60 + t.position), 0) + coalesce(1.0 / (60 + v.position), 0) AS score
    FROM text_hits t FULL JOIN vector_hits v ON v.id = t.id
),
top AS (
    SELECT f.*, m.created_at FROM fused f JOIN messages m ON m.id = f.id
    ORDER BY f.score DESC, m.created_at DESC
    LIMIT $6
)
-- ts_headline is the costly part: only the page's messages get one.
SELECT m.id AS message_id, m.thread_id, m.role, m.seq, m.content, m.created_at,
       t.score::float8 AS score, t.text_rank::int AS text_rank, t.vector_rank::int AS vector_rank,
       t.similarity::float8 AS similarity,
       ts_headline('english', translate(m.content, chr(57344) || chr(57345), ''), q.tsq,
                   'StartSel=' || chr(57344) || ', StopSel=' || chr(57345)
                   || ', MaxWords=30, MinWords=12, ShortWord=2, MaxFragments=2, FragmentDelimiter=" … "')
           AS snippet
FROM top t
JOIN messages m ON m.id = t.id
CROSS JOIN query q
ORDER BY t.score DESC, t.created_at DESC
