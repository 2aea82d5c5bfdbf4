"""Memory: a thread's vectors found without the HNSW graph (recall within the current thread).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Recall looks at the current thread on its own (it comes first): a thread holds few vectors,
    # so an exact scan of them beats a filtered walk of the whole graph.
    op.execute("CREATE INDEX message_embeddings_thread ON message_embeddings (thread_id)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS message_embeddings_thread")
