"""The tables in every tenant's schema (SQLAlchemy Core), and the migration runner.

Only what is queried lives in SQL: datasets, data items, scenes with their frames and frame
images, and one index row per annotation document (item, source, version, object count,
updated time). The annotation documents
themselves are JSON files in the tenant's bucket.

The DDL lives in the Alembic revisions under `migrations/` (with TiDB-only options in
executable comments); these Core tables mirror it for queries.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

metadata = sa.MetaData()

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(253), nullable=False, unique=True),
    sa.Column("display_name", sa.String(256), nullable=False),
    sa.Column("data_type", sa.String(32), nullable=False),
    sa.Column("resource_name", sa.String(253), nullable=True, comment="Dataset CR, if any"),
    sa.Column("item_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("processed_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", sa.DateTime, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime, nullable=False, server_default=sa.func.now()),
)

data_items = sa.Table(
    "data_items",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("dataset_id", sa.BigInteger, sa.ForeignKey("datasets.id"), nullable=False),
    sa.Column("name", sa.String(512), nullable=False),
    sa.Column("object_key", sa.String(1024), nullable=False),
    sa.Column("content_type", sa.String(128), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("checksum", sa.String(128), nullable=True),
    sa.Column("status", sa.String(16), nullable=False, server_default="uploaded"),
    sa.Column("created_at", sa.DateTime, nullable=False, server_default=sa.func.now()),
    sa.Column("upload_id", sa.String(1024), nullable=True, comment="S3 multipart upload"),
    sa.Column("kind", sa.String(16), nullable=True, comment="FileKind at registration"),
    sa.Column("status_reason", sa.String(512), nullable=True, comment="Why it has its status"),
    # An image's size as shown (upright), in pixels; NULL: not an image, or not processed since
    # revision 0008 (processing it again records it).
    sa.Column("width", sa.Integer, nullable=True),
    sa.Column("height", sa.Integer, nullable=True),
    sa.UniqueConstraint("dataset_id", "name", name="uq_data_items_dataset_name"),
)

annotation_results = sa.Table(
    "annotation_results",
    metadata,
    sa.Column("data_item_id", sa.BigInteger, sa.ForeignKey("data_items.id"), primary_key=True),
    sa.Column("source", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("object_count", sa.Integer, nullable=True),  # unknown for a browser's commit
    sa.Column("etag", sa.String(128), nullable=False),
    # The current document's object; NULL: at the key of documents saved before revisions.
    sa.Column("revision", sa.String(32), nullable=True),
    sa.Column("updated_at", sa.DateTime, nullable=False, server_default=sa.func.now()),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime, nullable=False, server_default=sa.func.now()),
    sa.Column("revoked_at", sa.DateTime, nullable=True),
)

# BIGINT in MySQL and TiDB; INTEGER in SQLite, the only type it numbers by itself (the unit
# tests insert scenes and frames without ids, as the import does).
SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

scenes = sa.Table(
    "scenes",
    metadata,
    sa.Column("id", SERIAL, primary_key=True, autoincrement=True),
    sa.Column("dataset_id", sa.BigInteger, sa.ForeignKey("datasets.id"), nullable=False),
    sa.Column("name", sa.String(512), nullable=False),
    sa.Column("layout", sa.String(16), nullable=False),
    sa.Column("frame_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", sa.DateTime, nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("dataset_id", "name", name="uq_scenes_dataset_name"),
)

frames = sa.Table(
    "frames",
    metadata,
    sa.Column("id", SERIAL, primary_key=True, autoincrement=True),
    sa.Column("scene_id", sa.BigInteger, sa.ForeignKey("scenes.id"), nullable=False),
    sa.Column("idx", sa.Integer, nullable=False),
    sa.Column("name", sa.String(512), nullable=False),
    sa.Column("timestamp", sa.DateTime, nullable=True),
    sa.Column("point_cloud_item_id", sa.BigInteger, sa.ForeignKey("data_items.id"), nullable=False),
    sa.UniqueConstraint("scene_id", "idx", name="uq_frames_scene_idx"),
)

frame_images = sa.Table(
    "frame_images",
    metadata,
    sa.Column("frame_id", sa.BigInteger, sa.ForeignKey("frames.id"), primary_key=True),
    sa.Column("camera", sa.String(64), primary_key=True),
    sa.Column("data_item_id", sa.BigInteger, sa.ForeignKey("data_items.id"), nullable=False),
    sa.Column("calibration", sa.JSON, nullable=True),
)

tenant_locks = sa.Table(
    "tenant_locks",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
)

# What each of a tenant's two DB users may do in its schema; nothing schema-wide, no DDL (the
# migrations run as the operator). Workers (the Secret's user): the data tables. The API's
# user additionally reads and writes `api_tokens` — so nothing that holds the workers' Secret
# can mint itself an API token. Scenes are written once, by an import (a worker unpacking an
# archive, the operator registering a prefix): frames and their images inserted (INSERT IGNORE
# on a redelivery), a scene's frame count set after them; nothing deletes them, so no DELETE.
_DATA = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"})
_INSERTED = frozenset({"SELECT", "INSERT"})
WORKER_PRIVILEGES: dict[str, frozenset[str]] = {
    "datasets": _DATA,
    "data_items": _DATA,
    "annotation_results": _DATA,
    "scenes": frozenset({"SELECT", "INSERT", "UPDATE"}),
    "frames": _INSERTED,
    "frame_images": _INSERTED,
    "tenant_locks": frozenset({"SELECT", "UPDATE"}),
}
API_PRIVILEGES: dict[str, frozenset[str]] = {
    **WORKER_PRIVILEGES,
    "api_tokens": frozenset({"SELECT", "INSERT", "UPDATE"}),
}

MIGRATIONS = Path(__file__).parent / "migrations"


# Alembic's `context` and `op` are module-level proxies: two migrations in two threads of one
# process (the operator reconciles tenants in parallel) would trample each other's.
_alembic_lock = threading.Lock()


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


@functools.cache
def head_revision() -> str | None:
    """The newest revision shipped with this build (read once per process)."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def migrate(engine: Engine) -> bool:
    """Bring one tenant schema to the latest revision; True if anything ran.

    The drift pass calls this for every tenant every interval, so the common case (already at
    head) is one SELECT, not an Alembic run.
    """
    if current_revision(engine) == head_revision():
        return False
    cfg = _config()
    with _alembic_lock, engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")
    return True


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
