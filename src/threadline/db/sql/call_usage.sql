-- Accounts for a model call that is no run (a thread's title, its summary): one usage row with its
-- purpose (and its own id in run_id), priced like a run's, and its tokens and cost in the user's
-- rollup, whose `runs` counts runs only.
-- $1 call id, $2 thread id, $3 purpose, $4 model, $5 provider, $6..$10 prompt, completion, cached,
-- reasoning, total tokens, $11 source, $12 latency ms, $13 cost in USD (NULL: the model has no
-- price), $14 price version
WITH thread AS (
    SELECT id, user_id, agent FROM threads WHERE id = $2
),
usage AS (
    INSERT INTO usage_events (
        run_id, user_id, thread_id, agent, model, provider, status, purpose,
        prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, total_tokens, source,
        latency_ms, cost_usd, price_version
    )
    SELECT $1, t.user_id, t.id, t.agent, $4, $5, 'completed', $3, $6, $7, $8, $9, $10, $11, $12, $13, $14
    FROM thread t
    RETURNING user_id, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, total_tokens, cost_usd
)
INSERT INTO user_usage AS u (
    user_id, runs, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, total_tokens, cost_usd
)
SELECT user_id, 0, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, total_tokens,
       coalesce(cost_usd, 0)
FROM usage
ON CONFLICT (user_id) DO UPDATE SET
    prompt_tokens = u.prompt_tokens + excluded.prompt_tokens,
    completion_tokens = u.completion_tokens + excluded.completion_tokens,
    cached_tokens = u.cached_tokens + excluded.cached_tokens,
    reasoning_tokens = u.reasoning_tokens + excluded.reasoning_tokens,
    total_tokens = u.total_tokens + excluded.total_tokens,
    cost_usd = u.cost_usd + excluded.cost_usd,
    last_seen_at = now()
