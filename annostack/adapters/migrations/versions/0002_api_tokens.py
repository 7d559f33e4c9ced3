"""API tokens of the tenant, stored as SHA-256 hashes.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.execute(
        """CREATE TABLE IF NOT EXISTS api_tokens (
            id BIGINT NOT NULL AUTO_INCREMENT,
            name VARCHAR(128) NOT NULL,
            token_hash CHAR(64) NOT NULL,
            created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
            revoked_at DATETIME NULL,
            PRIMARY KEY (id) /*T![clustered_index] NONCLUSTERED */,
            UNIQUE KEY uq_api_tokens_hash (token_hash)
        )"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE api_tokens")
