"""The kind of each item (the classifier's verdict at registration) and why it has its status.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    # MariaDB and TiDB both accept IF NOT EXISTS here, keeping the revision re-runnable.
    op.execute("ALTER TABLE data_items ADD COLUMN IF NOT EXISTS kind VARCHAR(16) NULL")
    op.execute("ALTER TABLE data_items ADD COLUMN IF NOT EXISTS status_reason VARCHAR(512) NULL")


def downgrade() -> None:
    op.execute("ALTER TABLE data_items DROP COLUMN status_reason")
    op.execute("ALTER TABLE data_items DROP COLUMN kind")
