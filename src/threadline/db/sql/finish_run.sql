-- Ends a run exactly once: the run, its reply, the thread's activity, one usage row, the
-- user's rollup and the run's admission (its slot and token reservation: the budget now counts
-- the usage row instead, through the daily rollup's trigger) change together, and only if the run
-- was still live (a sweeper or a second finisher that comes later changes nothing). Returns the
-- user id when it ended the run, no row otherwise.
-- $1 run id, $2 run status, $3 message status, $4 reply text, $5 error, $6 model, $7 provider,
-- $8..$12 prompt, completion, cached, reasoning, total tokens, $13 source, $14 ttft ms,
-- $15 latency ms, $16 finish reason, $17 cost in USD (NULL: the model has no price), $18 price version
WITH finished AS (
    UPDATE runs
    SET status = $2, error = $5, finished_at = now(), lease_expires_at = NULL,
        -- Set here when the run could not mark its first token as it came (Postgres was down).
        first_token_at = coalesce(first_token_at, coalesce(started_at, created_at) + $14::int * interval '1 ms')
    WHERE id = $1 AND status IN ('pending', 'running')
    RETURNING id, thread_id, user_id, assistant_message_id
),
reply AS (
    UPDATE messages m
    SET content = $4, status = $3, error = $5, completed_at = now()
    FROM finished f
    WHERE m.id = f.assistant_message_id
    RETURNING m.id
),
thread AS (
    UPDATE threads t
    SET last_activity_at = now(), updated_at = now()
    FROM finished f
    WHERE t.id = f.thread_id
    RETURNING t.agent
),
usage AS (
    INSERT INTO usage_events (
        run_id, user_id, thread_id, agent, model, provider, status,
        prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, total_tokens, source,
        ttft_ms, latency_ms, finish_reason, cost_usd, price_version
    )
    SELECT f.id, f.user_id, f.thread_id, (SELECT agent FROM thread), $6, $7, $2,
           $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18
    FROM finished f
    ON CONFLICT (run_id) DO NOTHING
    RETURNING user_id, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, total_tokens, cost_usd
),
settled AS (
    DELETE FROM run_admissions a USING finished f WHERE a.run_id = f.id
)
INSERT INTO user_usage AS u (
    user_id, runs, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, total_tokens, cost_usd
)
SELECT user_id, 1, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, total_tokens,
       coalesce(cost_usd, 0)
FROM usage
ON CONFLICT (user_id) DO UPDATE SET
    runs = u.runs + 1,
    prompt_tokens = u.prompt_tokens + excluded.prompt_tokens,
    completion_tokens = u.completion_tokens + excluded.completion_tokens,
    cached_tokens = u.cached_tokens + excluded.cached_tokens,
    reasoning_tokens = u.reasoning_tokens + excluded.reasoning_tokens,
    total_tokens = u.total_tokens + excluded.total_tokens,
    cost_usd = u.cost_usd + excluded.cost_usd,
    last_seen_at = now()
RETURNING u.user_id
