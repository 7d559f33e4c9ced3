"""Datasets and data items."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, status

from annostack.apps.deps import AfterQuery, ObjectsDep, TenantDep
from annostack.domain.items import FileKind, ItemStatus
from annostack.services import browsing
from annostack.services import datasets as service
from annostack.services.browsing import DEFAULT_PAGE, MAX_PAGE, ItemFilter, ItemPage
from annostack.services.datasets import DatasetCreate, DatasetPage, DatasetPublic, ItemPublic

router = APIRouter(prefix="/v1", tags=["datasets"])


@router.post("/datasets", status_code=status.HTTP_201_CREATED, summary="Create a dataset.")
async def create_dataset(ctx: TenantDep, body: DatasetCreate) -> DatasetPublic:
    return await asyncio.to_thread(service.create_dataset, ctx, body)


@router.get("/datasets", summary="List datasets (keyset pagination).")
async def list_datasets(
    ctx: TenantDep,
    after: Annotated[int | None, Query(description="`nextCursor` of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    data_type: Annotated[str | None, Query(alias="dataType")] = None,
) -> DatasetPage:
    return await asyncio.to_thread(service.list_datasets, ctx, after, limit, data_type)


@router.get("/datasets/{dataset_id}", summary="One dataset.")
async def get_dataset(ctx: TenantDep, dataset_id: int) -> DatasetPublic:
    return await asyncio.to_thread(service.get_dataset, ctx, dataset_id)


@router.delete(
    "/datasets/{dataset_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an empty dataset.",
)
async def delete_dataset(ctx: TenantDep, dataset_id: int) -> None:
    await asyncio.to_thread(service.delete_dataset, ctx, dataset_id)


@router.get(
    "/datasets/{dataset_id}/items",
    summary="Browse a dataset's items: keyset pages, filters, annotations, derived-file URLs.",
)
async def list_items(
    ctx: TenantDep,
    io: ObjectsDep,
    dataset_id: int,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items per page.")] = DEFAULT_PAGE,
    after: AfterQuery = None,
    status: Annotated[
        list[ItemStatus] | None, Query(description="Only items in these statuses (repeatable).")
    ] = None,
    kind: Annotated[
        list[FileKind] | None, Query(description="Only items of these kinds (repeatable).")
    ] = None,
    name_prefix: Annotated[
        str | None,
        Query(alias="namePrefix", min_length=1, max_length=512, description="Name starts with."),
    ] = None,
    has_annotations: Annotated[
        bool | None,
        Query(alias="hasAnnotations", description="Only items with (true) or without (false)."),
    ] = None,
) -> ItemPage:
    filters = ItemFilter(tuple(status or ()), tuple(kind or ()), name_prefix, has_annotations)
    return await asyncio.to_thread(
        browsing.list_items, ctx, io.presigner, dataset_id, filters, after, limit
    )


@router.get("/items/{item_id}", summary="One data item and its processing status.")
async def get_item(ctx: TenantDep, item_id: int) -> ItemPublic:
    return await asyncio.to_thread(service.get_item, ctx, item_id)
