"""Accounting: run admissions (live-run slots and token reservations), daily token rollup, usage view.

`run_admissions` holds one row per admitted run until `finish_run.sql` ends it: the rows a user has
are their live runs (the concurrent-run cap) and the tokens those runs may still spend (the budget
reservations). `user_daily_tokens` is kept by a trigger on `usage_events`, so every writer of usage
rows (runs, titles, summaries) counts against budgets without knowing about them, and a budget
check reads at most 31 rows. `daily_usage` keeps its grain (user, day, model, agent), counts runs
only in `runs` (titles add tokens and cost), and gains the columns an analyst asks for next: runs by
outcome, how many were measured, mean time to first token and latency.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DAILY_USAGE_V1 = """
    CREATE VIEW daily_usage AS
    SELECT user_id,
           (created_at AT TIME ZONE 'UTC')::date AS day,
           model,
           agent,
           count(*)               AS runs,
           sum(prompt_tokens)     AS prompt_tokens,
           sum(completion_tokens) AS completion_tokens,
           sum(cached_tokens)     AS cached_tokens,
           sum(reasoning_tokens)  AS reasoning_tokens,
           sum(total_tokens)      AS total_tokens,
           sum(cost_usd)          AS cost_usd
    FROM usage_events
    GROUP BY 1, 2, 3, 4
"""
# CREATE OR REPLACE VIEW keeps the names and types of 0001's eleven columns and may append more.
# `runs` now counts runs only: a title's model call (0003's `purpose`) adds tokens and cost, not a run.
DAILY_USAGE_V2 = """
    CREATE OR REPLACE VIEW daily_usage AS
    SELECT user_id,
           (created_at AT TIME ZONE 'UTC')::date AS day,
           model,
           agent,
           count(*) FILTER (WHERE purpose = 'run') AS runs,
           sum(prompt_tokens)     AS prompt_tokens,
           sum(completion_tokens) AS completion_tokens,
           sum(cached_tokens)     AS cached_tokens,
           sum(reasoning_tokens)  AS reasoning_tokens,
           sum(total_tokens)      AS total_tokens,
           sum(cost_usd)          AS cost_usd,
           count(*) FILTER (WHERE purpose = 'run' AND status = 'completed')                  AS completed_runs,
           count(*) FILTER (WHERE purpose = 'run' AND status IN ('failed', 'timeout'))       AS failed_runs,
           count(*) FILTER (WHERE purpose = 'run' AND status IN ('cancelled', 'interrupted')) AS stopped_runs,
           count(*) FILTER (WHERE purpose = 'run' AND source = 'measured')                  AS measured_runs,
           (avg(ttft_ms) FILTER (WHERE purpose = 'run'))::integer                           AS mean_ttft_ms,
           (avg(latency_ms) FILTER (WHERE purpose = 'run'))::integer                        AS mean_latency_ms
    FROM usage_events
    GROUP BY 1, 2, 3, 4
"""

# Admits one run of a user, or says why not, in one round trip. The advisory lock queues the user's
# admissions; each statement of a VOLATILE function takes a fresh snapshot, so the second one sees
# every admission and every settlement committed before the lock was granted: a user can never hold
# more than p_max_live live runs, nor reserve tokens beyond a budget, however many requests race.
# p_thread NULL: the user's latest active thread. p_fixed: tokens of the question, the system prompt
# and the longest reply; the thread's last prompt and reply (at most p_context_cap) are added to it.
# p_stale_s: how old an admission whose run never committed must be before it is forgotten.
ADMIT_RUN = """
    CREATE FUNCTION threadline_admit_run(
        p_user text, p_run uuid, p_thread uuid, p_max_live integer, p_daily bigint, p_monthly bigint,
        p_fixed bigint, p_context_cap bigint, p_stale_s double precision
    ) RETURNS TABLE (
        refused text, reserved_tokens bigint, live_runs bigint, held_tokens bigint, used_today bigint,
        used_this_month bigint, daily_budget bigint, monthly_budget bigint, admitted boolean
    ) LANGUAGE sql VOLATILE AS $$
        SELECT pg_advisory_xact_lock(hashtextextended('threadline.admission:' || p_user, 0));
        WITH limits AS (
            SELECT coalesce(l.daily_token_budget, p_daily) AS daily,
                   coalesce(l.monthly_token_budget, p_monthly) AS monthly
            FROM (VALUES (1)) AS one (x)
            LEFT JOIN user_limits l ON l.user_id = p_user
        ),
        stale AS (
            DELETE FROM run_admissions a
            WHERE a.user_id = p_user AND a.created_at < now() - make_interval(secs => p_stale_s)
              AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = a.run_id AND r.status IN ('pending', 'running'))
            RETURNING a.run_id
        ),
        held AS (
            SELECT count(*) AS live_runs, coalesce(sum(a.reserved_tokens), 0)::bigint AS reserved
            FROM run_admissions a
            WHERE a.user_id = p_user AND a.run_id NOT IN (SELECT run_id FROM stale)
        ),
        today AS (
            SELECT (now() AT TIME ZONE 'UTC')::date AS day
        ),
        used AS (
            SELECT coalesce(sum(d.total_tokens) FILTER (WHERE d.day = today.day), 0)::bigint AS daily,
                   coalesce(sum(d.total_tokens), 0)::bigint AS monthly
            FROM today
            LEFT JOIN user_daily_tokens d
              ON d.user_id = p_user AND d.day >= date_trunc('month', today.day)::date AND d.day <= today.day
        ),
        -- The thread's last prompt plus its reply is about what the next prompt repeats before the question.
        context AS (
            SELECT coalesce((
                SELECT u.prompt_tokens + u.completion_tokens
                FROM usage_events u
                WHERE u.user_id = p_user AND u.purpose = 'run'
                  AND u.thread_id = coalesce(p_thread, (
                      SELECT t.id FROM threads t WHERE t.user_id = p_user AND t.status = 'active'
                      ORDER BY t.last_activity_at DESC LIMIT 1))
                ORDER BY u.created_at DESC LIMIT 1
            ), 0)::bigint AS tokens
        ),
        ask AS (
            SELECT p_fixed + least(context.tokens, p_context_cap) AS tokens FROM context
        ),
        verdict AS (
            SELECT CASE
                       WHEN held.live_runs >= p_max_live THEN 'streams'
                       WHEN used.daily + held.reserved + ask.tokens > limits.daily THEN 'daily'
                       WHEN used.monthly + held.reserved + ask.tokens > limits.monthly THEN 'monthly'
                   END AS refused,
                   ask.tokens AS reserved_tokens, held.live_runs, held.reserved AS held_tokens,
                   used.daily AS used_today, used.monthly AS used_this_month,
                   limits.daily AS daily_budget, limits.monthly AS monthly_budget
            FROM limits, held, used, ask
        ),
        admitted AS (
            INSERT INTO run_admissions (run_id, user_id, reserved_tokens)
            SELECT p_run, p_user, reserved_tokens FROM verdict WHERE refused IS NULL
            RETURNING run_id
        )
        SELECT verdict.*, EXISTS (SELECT 1 FROM admitted) AS admitted FROM verdict;
    $$
"""


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE run_admissions (
            run_id          uuid PRIMARY KEY,
            user_id         text NOT NULL,
            reserved_tokens bigint NOT NULL CHECK (reserved_tokens >= 0),
            created_at      timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX run_admissions_user ON run_admissions (user_id)")
    op.execute(
        """
        CREATE TABLE user_daily_tokens (
            user_id      text NOT NULL,
            day          date NOT NULL,
            total_tokens bigint NOT NULL DEFAULT 0,
            PRIMARY KEY (user_id, day)
        )
        """
    )
    op.execute(
        """
        CREATE FUNCTION threadline_count_daily_tokens() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO user_daily_tokens AS d (user_id, day, total_tokens)
            VALUES (NEW.user_id, (NEW.created_at AT TIME ZONE 'UTC')::date, NEW.total_tokens)
            ON CONFLICT (user_id, day) DO UPDATE SET total_tokens = d.total_tokens + excluded.total_tokens;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER usage_events_daily_tokens AFTER INSERT ON usage_events
        FOR EACH ROW EXECUTE FUNCTION threadline_count_daily_tokens()
        """
    )
    op.execute(
        """
        INSERT INTO user_daily_tokens (user_id, day, total_tokens)
        SELECT user_id, (created_at AT TIME ZONE 'UTC')::date, sum(total_tokens)
        FROM usage_events GROUP BY 1, 2
        """
    )
    # The size of a thread's last prompt and reply estimates the next prompt at admission.
    op.execute("CREATE INDEX usage_events_thread_created ON usage_events (thread_id, created_at DESC)")
    op.execute(DAILY_USAGE_V2)
    op.execute(ADMIT_RUN)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS threadline_admit_run")
    op.execute("DROP VIEW IF EXISTS daily_usage")
    op.execute(DAILY_USAGE_V1)
    op.execute("DROP INDEX IF EXISTS usage_events_thread_created")
    op.execute("DROP TRIGGER IF EXISTS usage_events_daily_tokens ON usage_events")
    op.execute("DROP FUNCTION IF EXISTS threadline_count_daily_tokens()")
    op.execute("DROP TABLE IF EXISTS user_daily_tokens")
    op.execute("DROP TABLE IF EXISTS run_admissions")
