-- Accounts for the model call that wrote a thread's title: one usage row with purpose 'title'
-- (its own id in run_id: it is no run) and the tokens in the user's rollup, which counts runs only.
-- $1 call id, $2 thread id, $3 model, $4 provider, $5..$9 prompt, completion, cached, reasoning,
-- total tokens, $10 source, $11 latency ms
WITH thread AS (
    SELECT id, user_id, agent FROM threads WHERE id = $2
),
usage AS (
    INSERT INTO usage_events (
        run_id, user_id, thread_id, agent, model, provider, status, purpose,
        prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, total_tokens, source,
        latency_ms
    )
    SELECT $1, t.user_id, t.id, t.agent, $3, $4, 'completed', 'title', $5, $6, $7, $8, $9, $10, $11
    FROM thread t
    RETURNING user_id, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, total_tokens
)
INSERT INTO user_usage AS u (
    user_id, runs, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, total_tokens
)
SELECT user_id, 0, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, total_tokens
FROM usage
ON CONFLICT (user_id) DO UPDATE SET
    prompt_tokens = u.prompt_tokens + excluded.prompt_tokens,
    completion_tokens = u.completion_tokens + excluded.completion_tokens,
    cached_tokens = u.cached_tokens + excluded.cached_tokens,
    reasoning_tokens = u.reasoning_tokens + excluded.reasoning_tokens,
    total_tokens = u.total_tokens + excluded.total_tokens,
    last_seen_at = now()
