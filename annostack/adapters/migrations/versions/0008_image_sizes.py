"""Each image item's size in pixels, as shown (upright), recorded by the worker that makes
its thumbnails, in the UPDATE that marks it processed.

Items processed before this revision keep NULL (so does every item that is not an image):
processing them again (a ProcessingJob with `thumbnail`) records their size.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    # MariaDB and TiDB both accept IF NOT EXISTS here, keeping the revision re-runnable.
    op.execute("ALTER TABLE data_items ADD COLUMN IF NOT EXISTS width INT NULL")
    op.execute("ALTER TABLE data_items ADD COLUMN IF NOT EXISTS height INT NULL")


def downgrade() -> None:
    op.execute("ALTER TABLE data_items DROP COLUMN height")
    op.execute("ALTER TABLE data_items DROP COLUMN width")
