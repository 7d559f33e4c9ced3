"""Exports: ask for one (a ProcessingJob with operations [export]), follow it, download it."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Body, Path, status

from annostack.apps.deps import ObjectsDep, StateDep, TenantDep
from annostack.domain.processing import ExportSpec
from annostack.domain.tenants import NAME_PATTERN
from annostack.services import exports as service
from annostack.services.exports import ExportAccepted, ExportPublic

router = APIRouter(prefix="/v1", tags=["exports"])
ExportId = Annotated[str, Path(max_length=253, pattern=NAME_PATTERN)]
EXAMPLES = {
    "kitti": {"value": {"format": "kitti", "source": "imported", "classes": {"car": "Car"}}},
    "xtreme1": {"value": {"format": "xtreme1"}},
    "coco": {"value": {"format": "coco", "source": "default", "categories": ["car", "person"]}},
    "nuscenes": {
        "value": {
            "format": "nuscenes",
            "classes": {"car": "vehicle.car", "person": "human.pedestrian.adult"},
        }
    },
}


@router.post(
    "/datasets/{dataset_id}/exports",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Export the dataset's annotations (xtreme1, kitti, coco, nuscenes) to its bucket, "
    "in the background.",
)
async def start_export(
    ctx: TenantDep,
    state: StateDep,
    dataset_id: int,
    body: Annotated[ExportSpec, Body(openapi_examples=EXAMPLES)],
) -> ExportAccepted:
    kube = state.directory.kube
    name = await asyncio.to_thread(service.start_export, kube, ctx, dataset_id, body)
    return ExportAccepted(id=name, status_url=f"/v1/exports/{name}")


@router.get(
    "/exports/{export_id}",
    summary="An export's progress and report, and once complete a short-lived download URL.",
)
async def get_export(
    ctx: TenantDep, state: StateDep, io: ObjectsDep, export_id: ExportId
) -> ExportPublic:
    kube = state.directory.kube
    return await asyncio.to_thread(service.get_export, kube, ctx, io.presigner, export_id)
