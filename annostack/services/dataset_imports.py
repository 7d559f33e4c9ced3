"""What a Dataset resource means in the tenant's database, and importing its source.

The resource and the REST API meet in one row: the dataset's name is unique in the tenant's
schema, so a Dataset applied with kubectl adopts a row the API created under that name (and
the API sees the resource's row), provided the data type agrees.

An S3-prefix source registers every file of a processed kind under the prefix (point clouds,
images, video, audio, text: `annostack.domain.items.classify` decides) as a data item that
points at the object where it is; nothing is copied. A prefix is a selection of a bucket, not
a package the user made, so sidecars (calibration, configs) and unsupported files are not
registered but counted by kind, and the job says how many were skipped. Registering is
idempotent (the dataset and item name are unique), so an import interrupted by an operator
restart is simply run again. A prefix laid out as Xtreme1 or KITTI scenes also becomes scenes
(services.scenes): their calibration files are read where they are, once per import.
An archive source registers the archive as one item; a ProcessingJob then unpacks it.
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import orjson
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from annostack.adapters.object_store import (
    ListedObject,
    list_objects,
    put_object_once,
    read_object,
)
from annostack.adapters.tenant_tables import data_items, datasets
from annostack.domain.errors import Invalid
from annostack.domain.items import DATA_KINDS, FileClass, ItemStatus, classify
from annostack.domain.processing import DatasetSpec, DataType, ImportSource
from annostack.domain.scenes import plan_scenes
from annostack.services.datasets import insert_dataset
from annostack.services.processing import RESERVED_PREFIXES
from annostack.services.scenes import SceneImport, import_scenes
from annostack.services.tenancy import TenantContext, object_store_of
from annostack.services.uploads import count_by_status

INSERT_BATCH = 1000


@dataclass(frozen=True)
class ImportResult:
    registered: int  # items new or already there
    skipped: int  # objects of no processed kind
    archive_item_id: int | None = None
    skipped_by_kind: dict[str, int] = field(default_factory=dict)  # sidecar, unsupported
    scenes: SceneImport | None = None  # what the prefix's layout made of it, if anything

    def describe_skipped(self) -> str:
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(self.skipped_by_kind.items()))
        return f"{self.skipped} skipped ({kinds})" if self.skipped else "none skipped"


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


def import_source(
    ctx: TenantContext, dataset_id: int, data_type: DataType, source: ImportSource
) -> ImportResult:
    if source.archive:
        return ImportResult(
            1, 0, archive_item_id=_register_archive(ctx, dataset_id, source.archive)
        )
    prefix = source.s3_prefix or ""
    registered = 0
    skipped: Counter[str] = Counter()
    batch: list[dict[str, object]] = []
    keys: dict[str, str] = {}  # every name under the prefix: the scene plan reads sidecars too
    for found in list_objects(object_store_of(ctx.connection), ctx.connection.bucket, prefix):
        name = found.key[len(prefix) :].lstrip("/")
        if not name or found.key.startswith(RESERVED_PREFIXES):
            continue  # the platform's own outputs are never data
        keys[name] = found.key
        verdict = classify(name, data_type, _content_type(name))
        if verdict.kind not in DATA_KINDS:
            skipped[verdict.kind] += 1
            continue
        batch.append(_row(dataset_id, name, found, verdict))
        if len(batch) == INSERT_BATCH:
            registered += _insert_new(ctx, batch)
            batch = []
    registered += _insert_new(ctx, batch)
    made = import_scenes(ctx, dataset_id, plan_scenes(keys), _PrefixFiles(ctx, keys))
    return ImportResult(
        registered, sum(skipped.values()), skipped_by_kind=dict(skipped), scenes=made
    )


@dataclass(frozen=True)
class _PrefixFiles:
    """A prefix's objects where they are, as the scene import reads and writes them."""

    ctx: TenantContext
    keys: dict[str, str]

    def read(self, name: str) -> bytes:
        store = object_store_of(self.ctx.connection)
        return read_object(store, self.ctx.connection.bucket, self.keys[name])

    def put_new(self, key: str, body: bytes) -> str:
        store = object_store_of(self.ctx.connection)
        return put_object_once(store, self.ctx.connection.bucket, key, body)


def _content_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _row(dataset_id: int, name: str, found: ListedObject, verdict: FileClass) -> dict[str, object]:
    """A data item for an object already in the bucket: uploaded, at its own key."""
    return {
        "dataset_id": dataset_id,
        "name": name[:512],
        "object_key": found.key,
        "content_type": _content_type(name),
        "size": found.size,
        "checksum": found.etag or None,
        "kind": verdict.kind,
        "status": ItemStatus.UPLOADED,
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
    row = _row(dataset_id, name, found, classify(name))
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
    return sum(by_status.values()), by_status.get(ItemStatus.PROCESSED, 0)
