"""A row to lock while a limited resource is created (`plan.maxDatasets`).

Revision ID: 0004
Revises: 0003

Counting the datasets and inserting one is a race between two concurrent creations (each sees
the same count under snapshot reads); both first take `SELECT ... FOR UPDATE` on this row, so
they run one after the other on MariaDB and on TiDB (pessimistic transactions) alike.
"""

from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.execute(
        """CREATE TABLE IF NOT EXISTS tenant_locks (
            name VARCHAR(32) NOT NULL,
            PRIMARY KEY (name)
        )"""
    )
    op.execute("INSERT IGNORE INTO tenant_locks (name) VALUES ('datasets')")


def downgrade() -> None:
    op.execute("DROP TABLE tenant_locks")
