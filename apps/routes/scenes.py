"""Scenes: a dataset's, listed; a sequence of frames (point cloud, camera images, calibration)
in one call."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query

from annostack.apps.deps import AfterQuery, ObjectsDep, TenantDep
from annostack.services import scenes as service
from annostack.services.browsing import DEFAULT_PAGE, MAX_PAGE
from annostack.services.scenes import FramePage, ScenePage, ScenePublic

router = APIRouter(prefix="/v1", tags=["scenes"])


@router.get(
    "/datasets/{dataset_id}/scenes",
    summary="A dataset's scenes, in the order they were imported (keyset pages, no frames).",
)
async def list_scenes(
    ctx: TenantDep,
    dataset_id: int,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Scenes per page.")] = DEFAULT_PAGE,
    after: AfterQuery = None,
) -> ScenePage:
    return await asyncio.to_thread(service.list_scenes, ctx, dataset_id, after, limit)


@router.get(
    "/scenes/{scene_id}",
    summary="A scene and its frames in order: items, calibration, annotation ETags, URLs.",
)
async def get_scene(ctx: TenantDep, io: ObjectsDep, scene_id: int) -> ScenePublic:
    return await asyncio.to_thread(service.get_scene, ctx, io.presigner, scene_id)


@router.get("/scenes/{scene_id}/frames", summary="A scene's frames, in order (keyset pages).")
async def list_frames(
    ctx: TenantDep,
    io: ObjectsDep,
    scene_id: int,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Frames per page.")] = DEFAULT_PAGE,
    after: AfterQuery = None,
) -> FramePage:
    return await asyncio.to_thread(service.list_frames, ctx, io.presigner, scene_id, after, limit)
