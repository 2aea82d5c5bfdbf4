"""The whole data model: agents, threads, messages, runs, usage and embeddings.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from alembic import context, op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

THREAD_STATUSES = "'active', 'closed', 'resolved', 'archived', 'abandoned'"
RUN_STATUSES = "'pending', 'running', 'completed', 'failed', 'cancelled', 'interrupted', 'timeout'"
MESSAGE_STATUSES = "'streaming', 'completed', 'failed', 'cancelled', 'interrupted'"


def upgrade() -> None:
    dim = int(context.config.attributes.get("embedding_dim", 256))
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute(
        """
        CREATE TABLE agents (
            slug              text PRIMARY KEY CHECK (slug ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
            name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
            system_prompt     text NOT NULL,
            model             text,
            temperature       real CHECK (temperature BETWEEN 0 AND 2),
            max_output_tokens integer CHECK (max_output_tokens > 0),
            is_default        boolean NOT NULL DEFAULT false,
            created_at        timestamptz NOT NULL DEFAULT now(),
            updated_at        timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE UNIQUE INDEX agents_one_default ON agents (is_default) WHERE is_default")
    op.execute(
        """
        INSERT INTO agents (slug, name, system_prompt, is_default)
        VALUES ('default', 'Assistant', 'You are a helpful assistant. Answer clearly and concisely.', true)
        """
    )
    op.execute(
        f"""
        CREATE TABLE threads (
            id                  uuid PRIMARY KEY,
            user_id             text NOT NULL,
            agent               text NOT NULL REFERENCES agents (slug) ON UPDATE CASCADE,
            title               text,
            status              text NOT NULL DEFAULT 'active' CHECK (status IN ({THREAD_STATUSES})),
            metadata            jsonb NOT NULL DEFAULT '{{}}',
            context_summary     text,
            summary_through_seq integer NOT NULL DEFAULT 0,
            message_count       integer NOT NULL DEFAULT 0,
            next_seq            integer NOT NULL DEFAULT 1,
            created_at          timestamptz NOT NULL DEFAULT now(),
            updated_at          timestamptz NOT NULL DEFAULT now(),
            last_activity_at    timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX threads_user_activity ON threads (user_id, last_activity_at DESC)")
    op.execute("CREATE INDEX threads_status_activity ON threads (status, last_activity_at)")
    op.execute(
        f"""
        CREATE TABLE runs (
            id                   uuid PRIMARY KEY,
            thread_id            uuid NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
            user_id              text NOT NULL,
            status               text NOT NULL CHECK (status IN ({RUN_STATUSES})),
            model                text NOT NULL,
            provider             text NOT NULL,
            user_message_id      uuid NOT NULL,
            assistant_message_id uuid NOT NULL,
            error                text,
            retrieved            jsonb NOT NULL DEFAULT '[]',
            on_disconnect        text NOT NULL DEFAULT 'continue' CHECK (on_disconnect IN ('continue', 'cancel')),
            owner                text,
            lease_expires_at     timestamptz,
            created_at           timestamptz NOT NULL DEFAULT now(),
            started_at           timestamptz,
            first_token_at       timestamptz,
            finished_at          timestamptz,
            cancel_requested_at  timestamptz
        )
        """
    )
    op.execute("CREATE INDEX runs_thread ON runs (thread_id, created_at DESC)")
    op.execute("CREATE INDEX runs_user ON runs (user_id, created_at DESC)")
    op.execute("CREATE INDEX runs_live ON runs (lease_expires_at) WHERE status IN ('pending', 'running')")
    op.execute(
        f"""
        CREATE TABLE messages (
            id                  uuid PRIMARY KEY,
            thread_id           uuid NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
            user_id             text NOT NULL,
            seq                 integer NOT NULL CHECK (seq > 0),
            role                text NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
            content             text NOT NULL DEFAULT '',
            status              text CHECK (status IN ({MESSAGE_STATUSES})),
            error               text,
            run_id              uuid REFERENCES runs (id) ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED,
            client_message_id   text,
            request_fingerprint text,
            metadata            jsonb NOT NULL DEFAULT '{{}}',
            superseded_at       timestamptz,
            created_at          timestamptz NOT NULL DEFAULT now(),
            completed_at        timestamptz,
            content_tsv         tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED,
            UNIQUE (thread_id, seq)
        )
        """
    )
    op.execute(
        """
        CREATE UNIQUE INDEX messages_client_id ON messages (user_id, client_message_id)
        WHERE client_message_id IS NOT NULL
        """
    )
    op.execute("CREATE INDEX messages_user_created ON messages (user_id, created_at DESC)")
    op.execute("CREATE INDEX messages_tsv ON messages USING gin (content_tsv)")
    op.execute(
        f"""
        CREATE TABLE usage_events (
            id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            run_id            uuid NOT NULL UNIQUE,
            user_id           text NOT NULL,
            thread_id         uuid REFERENCES threads (id) ON DELETE SET NULL,
            agent             text,
            model             text NOT NULL,
            provider          text NOT NULL,
            status            text NOT NULL CHECK (status IN ({RUN_STATUSES})),
            prompt_tokens     integer NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),
            completion_tokens integer NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0),
            cached_tokens     integer NOT NULL DEFAULT 0 CHECK (cached_tokens >= 0),
            reasoning_tokens  integer NOT NULL DEFAULT 0 CHECK (reasoning_tokens >= 0),
            total_tokens      integer NOT NULL DEFAULT 0 CHECK (total_tokens >= 0),
            source            text NOT NULL CHECK (source IN ('measured', 'estimated')),
            cost_usd          numeric(14, 8),
            price_version     text,
            ttft_ms           integer,
            latency_ms        integer,
            finish_reason     text,
            created_at        timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX usage_events_user_created ON usage_events (user_id, created_at)")
    op.execute("CREATE INDEX usage_events_created ON usage_events (created_at)")
    op.execute(
        """
        CREATE TABLE user_usage (
            user_id           text PRIMARY KEY,
            runs              bigint NOT NULL DEFAULT 0,
            prompt_tokens     bigint NOT NULL DEFAULT 0,
            completion_tokens bigint NOT NULL DEFAULT 0,
            cached_tokens     bigint NOT NULL DEFAULT 0,
            reasoning_tokens  bigint NOT NULL DEFAULT 0,
            total_tokens      bigint NOT NULL DEFAULT 0,
            cost_usd          numeric(18, 8) NOT NULL DEFAULT 0,
            first_seen_at     timestamptz NOT NULL DEFAULT now(),
            last_seen_at      timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
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
    )
    op.execute(
        """
        CREATE TABLE user_limits (
            user_id              text PRIMARY KEY,
            daily_token_budget   bigint CHECK (daily_token_budget >= 0),
            monthly_token_budget bigint CHECK (monthly_token_budget >= 0),
            updated_at           timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        f"""
        CREATE TABLE message_embeddings (
            message_id uuid PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
            user_id    text NOT NULL,
            thread_id  uuid NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
            embedder   text NOT NULL,
            embedding  vector({dim}) NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        "CREATE INDEX message_embeddings_hnsw ON message_embeddings USING hnsw (embedding vector_cosine_ops)"
    )
    op.execute("CREATE INDEX message_embeddings_user ON message_embeddings (user_id)")


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS daily_usage")
    for table in ("message_embeddings", "user_limits", "user_usage", "usage_events", "messages", "runs"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
    op.execute("DROP TABLE IF EXISTS threads")
    op.execute("DROP TABLE IF EXISTS agents")
