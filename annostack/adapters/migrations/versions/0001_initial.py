"""Tenant schema: datasets, data items, annotation result index.

Revision ID: 0001
Revises:

Written as DDL so the TiDB parts can ride in executable comments: on TiDB, AUTO_INCREMENT keys
would funnel every insert into one region, so the primary keys are NONCLUSTERED and the rows
are scattered with SHARD_ROW_ID_BITS; MySQL and MariaDB read `/*T! ... */` as plain comments.
"""

from alembic import op

# MySQL and TiDB commit every DDL statement on its own, so a migration killed half-way (the
# operator is SIGKILLed mid-reconcile) leaves some tables without a version row; every statement
# is therefore idempotent and the whole revision can simply run again.

revision = "0001"
down_revision = None

SPREAD = "/*T! SHARD_ROW_ID_BITS=4 */"
NONCLUSTERED = "/*T![clustered_index] NONCLUSTERED */"


def upgrade() -> None:
    op.execute(
        f"""CREATE TABLE IF NOT EXISTS datasets (
            id BIGINT NOT NULL AUTO_INCREMENT,
            name VARCHAR(253) NOT NULL,
            display_name VARCHAR(256) NOT NULL,
            data_type VARCHAR(32) NOT NULL,
            resource_name VARCHAR(253) NULL COMMENT 'Dataset custom resource, if any',
            item_count INT NOT NULL DEFAULT 0,
            processed_count INT NOT NULL DEFAULT 0,
            created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
            updated_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
            PRIMARY KEY (id) {NONCLUSTERED},
            UNIQUE KEY uq_datasets_name (name)
        ) {SPREAD}"""
    )
    op.execute(
        f"""CREATE TABLE IF NOT EXISTS data_items (
            id BIGINT NOT NULL AUTO_INCREMENT,
            dataset_id BIGINT NOT NULL,
            name VARCHAR(512) NOT NULL,
            object_key VARCHAR(1024) NOT NULL,
            content_type VARCHAR(128) NOT NULL,
            size BIGINT NOT NULL,
            checksum VARCHAR(128) NULL,
            status VARCHAR(16) NOT NULL DEFAULT 'uploaded',
            created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
            PRIMARY KEY (id) {NONCLUSTERED},
            UNIQUE KEY uq_data_items_dataset_name (dataset_id, name),
            CONSTRAINT fk_data_items_dataset FOREIGN KEY (dataset_id) REFERENCES datasets (id)
        ) {SPREAD}"""
    )
    op.execute(
        """CREATE TABLE IF NOT EXISTS annotation_results (
            data_item_id BIGINT NOT NULL,
            source VARCHAR(64) NOT NULL,
            version INT NOT NULL,
            object_count INT NOT NULL,
            etag VARCHAR(128) NOT NULL,
            updated_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
            PRIMARY KEY (data_item_id, source),
            CONSTRAINT fk_annotation_results_item FOREIGN KEY (data_item_id)
                REFERENCES data_items (id)
        )"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE annotation_results")
    op.execute("DROP TABLE data_items")
    op.execute("DROP TABLE datasets")
