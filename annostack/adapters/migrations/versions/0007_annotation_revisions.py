"""Annotation documents as immutable revisions: the index row names the current one.

A save writes a new object (`annotations/<item>/<source>/<revision>.json`) and then moves the
row from the version the writer loaded to the new one in one conditional UPDATE: the
compare-and-set that the object store's conditional PUT did before, at the cost of a plain PUT.
Rows written before this revision keep `revision` NULL: their document is still at
`annotations/<item>/<source>.json`. A document committed from a browser is not parsed by the
API, so its object count may be unknown (NULL).

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.execute("ALTER TABLE annotation_results ADD COLUMN IF NOT EXISTS revision VARCHAR(32) NULL")
    op.execute("ALTER TABLE annotation_results MODIFY COLUMN object_count INT NULL")


def downgrade() -> None:
    op.execute("UPDATE annotation_results SET object_count = 0 WHERE object_count IS NULL")
    op.execute("ALTER TABLE annotation_results MODIFY COLUMN object_count INT NOT NULL")
    op.execute("ALTER TABLE annotation_results DROP COLUMN revision")
