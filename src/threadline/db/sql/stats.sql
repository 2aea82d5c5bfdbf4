-- What operators watch: threads by status, runs by status, timings and tokens, for one user or
-- everyone, one agent or all, in a time range. Finished runs are counted from usage_events, which
-- outlive deleted threads; live ones from runs. Timings are those of completed runs.
-- $1 user id or NULL, $2 agent or NULL, $3 from (inclusive) or NULL, $4 to (exclusive) or NULL
WITH thread_counts AS (
    SELECT status, count(*) AS n FROM threads
    WHERE ($1::text IS NULL OR user_id = $1) AND ($2::text IS NULL OR agent = $2)
      AND ($3::timestamptz IS NULL OR created_at >= $3) AND ($4::timestamptz IS NULL OR created_at < $4)
    GROUP BY status
),
usage AS (
    SELECT * FROM usage_events
    WHERE ($1::text IS NULL OR user_id = $1) AND ($2::text IS NULL OR agent = $2)
      AND ($3::timestamptz IS NULL OR created_at >= $3) AND ($4::timestamptz IS NULL OR created_at < $4)
),
run_counts AS (
    SELECT status, count(*) AS n FROM usage WHERE purpose = 'run' GROUP BY status
    UNION ALL
    SELECT r.status, count(*) AS n FROM runs r JOIN threads t ON t.id = r.thread_id
    WHERE r.status IN ('pending', 'running')
      AND ($1::text IS NULL OR r.user_id = $1) AND ($2::text IS NULL OR t.agent = $2)
      AND ($3::timestamptz IS NULL OR r.created_at >= $3) AND ($4::timestamptz IS NULL OR r.created_at < $4)
    GROUP BY r.status
),
timings AS (
    SELECT avg(ttft_ms)::float8 AS ttft_mean_ms,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY ttft_ms) AS ttft_p95_ms,
           avg(latency_ms)::float8 AS latency_mean_ms,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS latency_p95_ms
    FROM usage WHERE purpose = 'run' AND status = 'completed'
),
tokens AS (
    SELECT coalesce(sum(prompt_tokens), 0)::bigint AS prompt_tokens,
           coalesce(sum(completion_tokens), 0)::bigint AS completion_tokens,
           coalesce(sum(cached_tokens), 0)::bigint AS cached_tokens,
           coalesce(sum(reasoning_tokens), 0)::bigint AS reasoning_tokens,
           coalesce(sum(total_tokens), 0)::bigint AS total_tokens,
           coalesce(sum(cost_usd), 0)::float8 AS cost_usd
    FROM usage
)
SELECT (SELECT coalesce(jsonb_object_agg(status, n), '{}') FROM thread_counts) AS threads,
       (SELECT coalesce(jsonb_object_agg(status, n), '{}') FROM run_counts) AS runs,
       timings.*, tokens.*
FROM timings, tokens
