"""Uploads through pre-signed URLs."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, status

from annostack.apps.deps import ObjectsDep, StateDep, TenantDep
from annostack.services import uploads as service
from annostack.services.datasets import ItemPublic
from annostack.services.uploads import UploadRequest, UploadTicket

router = APIRouter(prefix="/v1", tags=["uploads"])


@router.post(
    "/datasets/{dataset_id}/uploads",
    status_code=status.HTTP_201_CREATED,
    summary="Register an item and get a pre-signed PUT URL for its file.",
)
async def start_upload(
    ctx: TenantDep, io: ObjectsDep, dataset_id: int, body: UploadRequest
) -> UploadTicket:
    return await asyncio.to_thread(service.start, ctx, io, dataset_id, body)


@router.post(
    "/items/{item_id}/complete",
    summary="Confirm an upload: checks the object, records it and enqueues its processing.",
)
async def complete_upload(
    ctx: TenantDep, io: ObjectsDep, state: StateDep, item_id: int
) -> ItemPublic:
    return await service.complete(ctx, io, state.publisher, item_id)
