"""What a Dataset resource means in the tenant's database, and importing its source.

The resource and the REST API meet in one row: the dataset's name is unique in the tenant's
schema, so a Dataset applied with kubectl adopts a row the API created under that name (and
the API sees the resource's row), provided the data type agrees.

An S3-prefix source registers every image and point cloud under the prefix as a data item that
points at the object where it is; nothing is copied. Registering is idempotent (the dataset and
item name are unique), so an import interrupted by an operator restart is simply run again.
An archive source registers the archive as one item; a ProcessingJob then unpacks it.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import PurePosixPath

import orjson
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from annostack.adapters.object_store import ListedObject, list_objects
from annostack.adapters.tenant_tables import data_items, datasets
from annostack.domain.errors import Invalid
from annostack.domain.processing import DatasetSpec, ImportSource
from annostack.services.archives import classify
from annostack.services.datasets import insert_dataset
from annostack.services.processing import RESERVED_PREFIXES
from annostack.services.tenancy import TenantContext, object_store_of
from annostack.services.uploads import count_by_status

INSERT_BATCH = 1000
IMPORTABLE_KINDS = frozenset({"image", "pointcloud"})


@dataclass(frozen=True)
class ImportResult:
    registered: int  # items new or already there
    skipped: int  # objects that are neither images nor point clouds
    archive_item_id: int | None = None


def ensure_dataset(ctx: TenantContext, name: str, spec: DatasetSpec) -> int:
    """The id of the dataset's row, created or adopted; the data type must agree."""
    for _ in range(2):  # a concurrent insert of the same name is adopted on the second pass
        with ctx.engine.begin() as conn:
            row = conn.execute(
                sa.select(datasets.c.id, datasets.c.data_type).where(datasets.c.name == name)
            ).first()
            if row is not None:
                return _adopt(conn, int(row.id), str(row.data_type), name, spec)
        try:
            with ctx.engine.begin() as conn:
                return insert_dataset(
                    conn,
                    ctx,
                    name=name,
                    display_name=spec.display_name,
                    data_type=spec.data_type,
                    resource_name=name,
                )
        except IntegrityError:
            continue
    raise Invalid(f"dataset {name!r} could not be created or found")


def _adopt(
    conn: sa.Connection, dataset_id: int, data_type: str, name: str, spec: DatasetSpec
) -> int:
    if data_type != spec.data_type:
        raise Invalid(
            f"dataset {name!r} already exists with data type {data_type}, not {spec.data_type}; "
            "choose another name or delete the existing dataset"
        )
    conn.execute(
        datasets.update()
        .where(datasets.c.id == dataset_id)
        .values(display_name=spec.display_name, resource_name=name)
    )
    return dataset_id


def source_fingerprint(source: ImportSource) -> str:
    """Short, stable id of a source: a changed source is a new import (and a new job)."""
    canonical = orjson.dumps(source.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:8]


def import_source(ctx: TenantContext, dataset_id: int, source: ImportSource) -> ImportResult:
    if source.archive:
        return ImportResult(
            1, 0, archive_item_id=_register_archive(ctx, dataset_id, source.archive)
        )
    prefix = source.s3_prefix or ""
    registered = skipped = 0
    batch: list[dict[str, object]] = []
    for found in list_objects(object_store_of(ctx.connection), ctx.connection.bucket, prefix):
        row = _item_row(dataset_id, prefix, found)
        if row is None:
            skipped += 1
            continue
        batch.append(row)
        if len(batch) == INSERT_BATCH:
            registered += _insert_new(ctx, batch)
            batch = []
    registered += _insert_new(ctx, batch)
    return ImportResult(registered, skipped)


def _item_row(dataset_id: int, prefix: str, found: ListedObject) -> dict[str, object] | None:
    name = found.key[len(prefix) :].lstrip("/")
    if not name or found.key.startswith(RESERVED_PREFIXES):
        return None
    if classify(name) not in IMPORTABLE_KINDS:
        return None
    return _row(dataset_id, name, found)


def _row(dataset_id: int, name: str, found: ListedObject) -> dict[str, object]:
    """A data item for an object already in the bucket: uploaded, at its own key."""
    return {
        "dataset_id": dataset_id,
        "name": name[:512],
        "object_key": found.key,
        "content_type": mimetypes.guess_type(name)[0] or "application/octet-stream",
        "size": found.size,
        "checksum": found.etag or None,
        "status": "uploaded",
    }


def _insert_new(ctx: TenantContext, rows: list[dict[str, object]]) -> int:
    """Insert the rows not yet there (INSERT IGNORE: MySQL and TiDB both have it)."""
    if not rows:
        return 0
    with ctx.engine.begin() as conn:
        conn.execute(data_items.insert().prefix_with("IGNORE"), rows)
    return len(rows)


def _register_archive(ctx: TenantContext, dataset_id: int, key: str) -> int:
    name = PurePosixPath(key).name or key
    listed = list_objects(object_store_of(ctx.connection), ctx.connection.bucket, key)
    found = next((candidate for candidate in listed if candidate.key == key), None)
    if found is None:
        raise Invalid(f"archive {key!r} is not in the tenant's bucket")
    row = _row(dataset_id, name, found)
    _insert_new(ctx, [row])
    with ctx.engine.connect() as conn:
        item_id = conn.execute(
            sa.select(data_items.c.id).where(
                data_items.c.dataset_id == dataset_id, data_items.c.name == row["name"]
            )
        ).scalar_one()
    return int(item_id)


def item_counts(ctx: TenantContext, dataset_id: int) -> tuple[int, int]:
    """(items registered, items processed) of one dataset."""
    by_status = count_by_status(ctx, dataset_id)
    return sum(by_status.values()), by_status.get("processed", 0)
