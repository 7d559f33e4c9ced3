"""Uploads through pre-signed URLs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, status

from annostack.apps.deps import ObjectsDep, StateDep, TenantDep
from annostack.domain.push import Destination, UploadProgress
from annostack.services import uploads as service
from annostack.services.datasets import ItemPublic
from annostack.services.uploads import Completion, PartPage, UploadRequest, UploadTicket

router = APIRouter(prefix="/v1", tags=["uploads"])


@router.post(
    "/datasets/{dataset_id}/uploads",
    status_code=status.HTTP_201_CREATED,
    summary="Register an item and get a pre-signed PUT URL for its file.",
)
async def start_upload(
    ctx: TenantDep, io: ObjectsDep, state: StateDep, dataset_id: int, body: UploadRequest
) -> UploadTicket:
    threshold = state.api.multipart_threshold_bytes
    return await service.start(ctx, io, dataset_id, body, threshold)


@router.get(
    "/items/{item_id}/upload/parts",
    summary="Pre-signed URLs for the next parts of a multipart upload (up to 100 per call).",
)
async def part_urls(
    ctx: TenantDep, io: ObjectsDep, item_id: int, first: Annotated[int, Query(ge=1)] = 1
) -> PartPage:
    return await service.part_urls(ctx, io, item_id, first)


@router.post(
    "/items/{item_id}/complete",
    summary="Confirm an upload: checks the object, records it and enqueues its processing.",
)
async def complete_upload(
    ctx: TenantDep,
    io: ObjectsDep,
    state: StateDep,
    item_id: int,
    body: Annotated[Completion | None, Body()] = None,
) -> ItemPublic:
    item = await service.complete(
        ctx, io, state.publisher, state.directory.kube, item_id, body or Completion()
    )
    # Push, best effort: the tenant's open sessions see the item arrive (docs/push.md).
    event = UploadProgress(item_id=item.id, state="uploaded")
    await state.push.publish(Destination.everyone(ctx.names.tenant), event)
    return item


@router.delete(
    "/items/{item_id}/upload",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Abort an upload in progress (drops uploaded parts and the item).",
)
async def abort_upload(ctx: TenantDep, io: ObjectsDep, item_id: int) -> None:
    await service.abort(ctx, io, item_id)
