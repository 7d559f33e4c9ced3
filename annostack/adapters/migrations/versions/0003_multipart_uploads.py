"""The S3 multipart upload id of an item while it is being uploaded.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    # MariaDB and TiDB both accept IF NOT EXISTS here, keeping the revision re-runnable.
    op.execute("ALTER TABLE data_items ADD COLUMN IF NOT EXISTS upload_id VARCHAR(1024) NULL")


def downgrade() -> None:
    op.execute("ALTER TABLE data_items DROP COLUMN upload_id")
