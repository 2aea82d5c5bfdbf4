"""Sessions: what each usage row paid for, retention-purge indexes, exact agent temperatures.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PURPOSES = "'run', 'title', 'summary', 'embedding'"


def upgrade() -> None:
    # A title (or later a summary) is a model call too: its tokens are accounted for, apart from runs.
    op.execute(
        f"""
        ALTER TABLE usage_events
        ADD COLUMN purpose text NOT NULL DEFAULT 'run' CHECK (purpose IN ({PURPOSES}))
        """
    )
    # The purge visits only rows that still hold an IP or a user agent; purged rows leave the index.
    for table in ("threads", "messages"):
        op.execute(
            f"""
            CREATE INDEX {table}_client_identity ON {table} (created_at)
            WHERE metadata -> 'client' ?| array['ip', 'user_agent']
            """
        )
    op.execute("CREATE INDEX threads_user_created ON threads (user_id, created_at DESC)")
    # `real` turns an agent's 0.7 into 0.699999988 on its way to the model; keep what the admin typed.
    op.execute("ALTER TABLE agents ALTER COLUMN temperature TYPE double precision")


def downgrade() -> None:
    op.execute("ALTER TABLE agents ALTER COLUMN temperature TYPE real")
    op.execute("DROP INDEX IF EXISTS threads_user_created")
    for table in ("threads", "messages"):
        op.execute(f"DROP INDEX IF EXISTS {table}_client_identity")
    op.execute("ALTER TABLE usage_events DROP COLUMN IF EXISTS purpose")
