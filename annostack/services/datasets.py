"""Datasets and data items of a tenant (rows in the tenant's own schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import ConfigDict, Field
from sqlalchemy.exc import IntegrityError

from annostack.adapters.tenant_tables import data_items, datasets, tenant_locks
from annostack.domain.errors import Conflict, NotFound, QuotaExceeded
from annostack.domain.items import FileKind, ItemStatus
from annostack.domain.models import CamelModel
from annostack.domain.processing import DataType
from annostack.services.tenancy import TenantContext

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"


class DatasetCreate(CamelModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"name": "drive-01", "displayName": "Drive 01", "dataType": "POINT_CLOUD"}]
        }
    )

    name: str = Field(pattern=NAME_PATTERN, description="Unique, DNS-label style.")
    display_name: str = Field(min_length=1, max_length=256)
    data_type: DataType


class DatasetPublic(CamelModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 3,
                    "name": "drive-01",
                    "displayName": "Drive 01",
                    "dataType": "POINT_CLOUD",
                    "itemCount": 300,
                    "processedCount": 298,
                    "createdAt": "2026-11-26T09:30:00",
                }
            ]
        }
    )

    id: int
    name: str
    display_name: str
    data_type: DataType
    item_count: int
    processed_count: int
    created_at: datetime


class DatasetPage(CamelModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [], "nextCursor": None}]})

    items: list[DatasetPublic]
    next_cursor: int | None = Field(description="Pass as `after` for the next page.")


class ItemPublic(CamelModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 42,
                    "datasetId": 3,
                    "name": "lidar/000042.pcd",
                    "contentType": "application/octet-stream",
                    "size": 1843200,
                    "checksum": "9b2cf535f27731c974343645a3985328",
                    "kind": "pointcloud",
                    "status": "processed",
                    "statusReason": None,
                    "createdAt": "2026-11-26T09:31:02",
                }
            ]
        }
    )

    id: int
    dataset_id: int
    name: str
    content_type: str
    size: int
    checksum: str | None
    kind: FileKind | None = Field(
        default=None, description="What kind of file it is (None: registered before kinds)."
    )
    status: ItemStatus
    status_reason: str | None = Field(
        default=None, description="Why: for `unsupported` and `failed` items."
    )
    created_at: datetime


def _with_counts() -> sa.Select[Any]:
    """Datasets with their item counts, counted when asked (workers and imports change them)."""

    def count(*conditions: sa.ColumnElement[bool]) -> sa.ScalarSelect[Any]:
        where = (data_items.c.dataset_id == datasets.c.id, *conditions)
        return sa.select(sa.func.count()).where(*where).scalar_subquery()

    counted = {"item_count", "processed_count"}
    return sa.select(
        *(column for column in datasets.c if column.name not in counted),
        count().label("item_count"),
        count(data_items.c.status == ItemStatus.PROCESSED).label("processed_count"),
    )


def insert_dataset(conn: sa.Connection, ctx: TenantContext, **values: object) -> int:
    """Insert a dataset row within the plan's `maxDatasets` (API and Dataset controller alike).

    The lock row makes count-then-insert atomic against concurrent creations.
    """
    conn.execute(
        sa.select(tenant_locks.c.name).where(tenant_locks.c.name == "datasets").with_for_update()
    )
    count = int(conn.execute(sa.select(sa.func.count()).select_from(datasets)).scalar_one())
    limit = ctx.plan.max_datasets
    if count >= limit:
        raise QuotaExceeded(
            f"tenant {ctx.names.tenant} has {count} datasets, the most its plan allows "
            f"(plan.maxDatasets={limit}); delete one or raise the limit"
        )
    result = conn.execute(datasets.insert().values(**values))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def create_dataset(ctx: TenantContext, data: DatasetCreate) -> DatasetPublic:
    try:
        with ctx.engine.begin() as conn:
            dataset_id = insert_dataset(
                conn,
                ctx,
                name=data.name,
                display_name=data.display_name,
                data_type=data.data_type,
            )
    except IntegrityError as error:
        raise Conflict(f"a dataset named {data.name!r} already exists") from error
    return get_dataset(ctx, dataset_id)


def get_dataset(ctx: TenantContext, dataset_id: int) -> DatasetPublic:
    with ctx.engine.connect() as conn:
        row = conn.execute(_with_counts().where(datasets.c.id == dataset_id)).first()
    if row is None:
        raise NotFound(f"dataset {dataset_id} not found")
    return DatasetPublic.model_validate(row._mapping)


def list_datasets(
    ctx: TenantContext, after: int | None, limit: int, data_type: str | None
) -> DatasetPage:
    """Keyset pagination by id: stable under inserts, no OFFSET scans."""
    query = _with_counts().order_by(datasets.c.id).limit(limit + 1)
    if after is not None:
        query = query.where(datasets.c.id > after)
    if data_type is not None:
        query = query.where(datasets.c.data_type == data_type)
    with ctx.engine.connect() as conn:
        rows = conn.execute(query).all()
    items = [DatasetPublic.model_validate(row._mapping) for row in rows[:limit]]
    next_cursor = items[-1].id if len(rows) > limit else None
    return DatasetPage(items=items, next_cursor=next_cursor)


def delete_dataset(ctx: TenantContext, dataset_id: int) -> None:
    with ctx.engine.begin() as conn:
        if conn.execute(
            sa.select(data_items.c.id).where(data_items.c.dataset_id == dataset_id).limit(1)
        ).first():
            raise Conflict(f"dataset {dataset_id} still has data items")
        if conn.execute(datasets.delete().where(datasets.c.id == dataset_id)).rowcount == 0:
            raise NotFound(f"dataset {dataset_id} not found")


def get_item(ctx: TenantContext, item_id: int) -> ItemPublic:
    with ctx.engine.connect() as conn:
        row = conn.execute(sa.select(data_items).where(data_items.c.id == item_id)).first()
    if row is None:
        raise NotFound(f"data item {item_id} not found")
    return ItemPublic.model_validate(row._mapping)


def existing_items(ctx: TenantContext, item_ids: list[int]) -> set[int]:
    """Which of these ids are items of this tenant (one IN query)."""
    if not item_ids:
        return set()
    with ctx.engine.connect() as conn:
        rows = conn.execute(sa.select(data_items.c.id).where(data_items.c.id.in_(item_ids)))
        return {int(row.id) for row in rows}
