"""Scenes of a dataset: created from a plan by an import, read whole or frame by frame.

Creating (`import_scenes`, run by the archive import once its entries are items, and by a
prefix import once its objects are): the plan (domain.scenes) names files; their items are
found by (dataset, name) in batches, the calibration files read through `SceneFiles`, and
scenes, frames and frame images inserted with INSERT IGNORE on their unique keys, so a
redelivered import message ends as one that ran once. A frame's annotations become documents
on its point cloud by the converters the exports use: an Xtreme1 result one per entry of the
file (domain.exports.xtreme1: source `imported`, then `imported-2`...), KITTI labels one
(domain.exports.kitti: source `imported`, converted from the camera frame to the LiDAR frame
with the frame's own calib file; labels of a frame without one are a problem, not guessed).
Each is written only if none is there (an import never overwrites a document), and indexed
like any saved document.

Listing (`list_scenes`): a dataset's scenes by keyset on their id, which is the order the
import made them in (natural, as planned), without their frames.

Reading (`get_scene`, `list_frames`): frames in index order by keyset on (scene, idx); each
frame's point cloud and images are listed as the items listing lists them (services.browsing:
annotation ETags, derived-file URLs signed at one instant), in four queries for any number of
frames: the scene, its frames, their images, and the annotation index of all their items.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from pydantic import ConfigDict, Field
from pydantic.config import JsonDict

from annostack.adapters.objects import Presigner
from annostack.adapters.tenant_tables import (
    annotation_results,
    data_items,
    frame_images,
    frames,
    scenes,
)
from annostack.domain.calibration import CameraCalibration
from annostack.domain.errors import Invalid, NotFound
from annostack.domain.exports.imported import ImportedDocument, ResultError
from annostack.domain.exports.kitti import import_label_file
from annostack.domain.exports.kitti_calib import KittiCalibration, calibration_of
from annostack.domain.exports.xtreme1 import import_result
from annostack.domain.models import CamelModel
from annostack.domain.scenes import (
    FrameCalibration,
    Layout,
    PlannedFrame,
    PlannedScene,
    Problem,
    ScenePlan,
    calibrations_of,
)
from annostack.services.annotations import document_key
from annostack.services.browsing import (
    EXAMPLE_URL,
    LISTED_COLUMNS,
    MAX_PAGE,
    ListedItem,
    decode_cursor,
    encode_cursor,
    listed_items,
    require_dataset,
)
from annostack.services.tenancy import TenantContext

LOOKUP_BATCH = 1000  # names per IN query
INSERT_BATCH = 500  # frames per INSERT
MAX_REASON = 512  # data_items.status_reason
PROBLEMS_SHOWN = 5


class SceneFiles(Protocol):
    """Where an import's files are: read one by name, write a document once."""

    def read(self, name: str) -> bytes: ...

    def put_new(self, key: str, body: bytes) -> str:
        """Write unless something is at `key`; the ETag of what is there."""
        ...


@dataclass(frozen=True)
class SceneImport:
    scenes: int
    frames: int
    annotations: int
    problems: tuple[Problem, ...]

    def describe(self) -> str:
        """One line for an item's status reason (and the log): counts, then the problems."""
        text = f"{self.scenes} scene(s), {self.frames} frame(s), {self.annotations} annotated"
        if not self.problems:
            return text
        shown = "; ".join(f"{p.name}: {p.reason}" for p in self.problems[:PROBLEMS_SHOWN])
        more = len(self.problems) - PROBLEMS_SHOWN
        text += f"; {len(self.problems)} problem(s): {shown}" + (
            f"; {more} more" if more > 0 else ""
        )
        return text[:MAX_REASON]


# -- creating ----------------------------------------------------------------------------------


def import_scenes(
    ctx: TenantContext, dataset_id: int, plan: ScenePlan, files: SceneFiles
) -> SceneImport:
    """Create the plan's scenes in the dataset; every problem met is reported, none stops it."""
    items = _item_ids(ctx, dataset_id, _names_in(plan.scenes))
    problems, scene_total, frame_total, annotated = list(plan.problems), 0, 0, 0
    for scene in plan.scenes:
        calibrations = calibrations_of(scene, files.read)
        problems.extend(p for c in calibrations for p in c.problems)
        placed = [(f, c) for f, c in zip(scene.frames, calibrations, strict=True)]
        kept, missing = _with_items(placed, items)
        problems.extend(missing)
        if not kept:
            continue
        scene_id = _ensure_scene(ctx, dataset_id, scene)
        _insert_frames(ctx, scene_id, kept, items)
        scene_total, frame_total = scene_total + 1, frame_total + len(kept)
        found, written = _import_annotations(ctx, kept, items, files)
        problems.extend(found)
        annotated += written
    return SceneImport(scene_total, frame_total, annotated, tuple(problems))


def _insert_ignore(table: sa.Table) -> sa.Insert:
    """INSERT that skips rows already there (MySQL and TiDB; SQLite for the unit tests)."""
    return (
        table.insert()
        .prefix_with("IGNORE", dialect="mysql")
        .prefix_with("OR IGNORE", dialect="sqlite")
    )


def _names_in(planned: Iterable[PlannedScene]) -> list[str]:
    return [
        name
        for scene in planned
        for frame in scene.frames
        for name in (frame.point_cloud, *(image.name for image in frame.images))
    ]


def _item_ids(ctx: TenantContext, dataset_id: int, names: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    with ctx.engine.connect() as conn:
        for start in range(0, len(names), LOOKUP_BATCH):
            batch = names[start : start + LOOKUP_BATCH]
            query = sa.select(data_items.c.id, data_items.c.name).where(
                data_items.c.dataset_id == dataset_id, data_items.c.name.in_(batch)
            )
            found.update({str(row.name): int(row.id) for row in conn.execute(query)})
    return found


def _with_items(
    placed: list[tuple[PlannedFrame, FrameCalibration]], items: dict[str, int]
) -> tuple[list[tuple[PlannedFrame, FrameCalibration]], list[Problem]]:
    """The frames whose point cloud is an item (a prefix import skips what it cannot store)."""
    kept = [(f, c) for f, c in placed if f.point_cloud in items]
    missing = [
        Problem(f.point_cloud, "the point cloud is not a data item of the dataset: frame left out")
        for f, _ in placed
        if f.point_cloud not in items
    ]
    return kept, missing


def _ensure_scene(ctx: TenantContext, dataset_id: int, scene: PlannedScene) -> int:
    values = {"dataset_id": dataset_id, "name": scene.name[:512], "layout": scene.layout}
    with ctx.engine.begin() as conn:
        conn.execute(_insert_ignore(scenes).values(**values))
        query = sa.select(scenes.c.id).where(
            scenes.c.dataset_id == dataset_id, scenes.c.name == values["name"]
        )
        return int(conn.execute(query).scalar_one())


def _insert_frames(
    ctx: TenantContext,
    scene_id: int,
    kept: list[tuple[PlannedFrame, FrameCalibration]],
    items: dict[str, int],
) -> None:
    """The frames (renumbered 0.. in order: frames left out leave no gaps), then their images."""
    for start in range(0, len(kept), INSERT_BATCH):
        batch = list(enumerate(kept[start : start + INSERT_BATCH], start))
        rows = [
            {"scene_id": scene_id, "idx": index, "name": frame.stem[:512],
             "point_cloud_item_id": items[frame.point_cloud]}
            for index, (frame, _) in batch
        ]  # fmt: skip
        with ctx.engine.begin() as conn:
            conn.execute(_insert_ignore(frames), rows)
            ids = _frame_ids(conn, scene_id, [index for index, _ in batch])
            images = [
                _image_row(ids[index], image.camera, items[image.name], calibration.cameras)
                for index, (frame, calibration) in batch
                for image in frame.images
                if image.name in items
            ]
            if images:
                conn.execute(_insert_ignore(frame_images), images)
    with ctx.engine.begin() as conn:
        counted = sa.select(sa.func.count()).where(frames.c.scene_id == scene_id)
        conn.execute(
            scenes.update()
            .where(scenes.c.id == scene_id)
            .values(frame_count=counted.scalar_subquery())
        )


def _frame_ids(conn: sa.Connection, scene_id: int, indexes: list[int]) -> dict[int, int]:
    query = sa.select(frames.c.id, frames.c.idx).where(
        frames.c.scene_id == scene_id, frames.c.idx.in_(indexes)
    )
    return {int(row.idx): int(row.id) for row in conn.execute(query)}


def _image_row(
    frame_id: int, camera: str, item_id: int, cameras: dict[str, CameraCalibration]
) -> dict[str, object]:
    calibration = cameras.get(camera)
    return {
        "frame_id": frame_id,
        "camera": camera[:64],
        "data_item_id": item_id,
        "calibration": None if calibration is None else calibration.model_dump(by_alias=True),
    }


def _import_annotations(
    ctx: TenantContext,
    kept: list[tuple[PlannedFrame, FrameCalibration]],
    items: dict[str, int],
    files: SceneFiles,
) -> tuple[list[Problem], int]:
    """Each frame's result or labels as the `imported` documents of its point cloud; and how
    many frames are annotated."""
    problems, written, annotated = [], [], 0
    for frame, calibration in kept:
        name = frame.result or frame.label  # one of them at most: a scene is of one layout
        if name is None:
            continue
        try:
            documents = _documents(frame, calibration, files)
        except ResultError as error:
            problems.append(Problem(name, f"not imported: {error}"))
            continue
        item_id = items[frame.point_cloud]
        for imported in documents:
            revision = imported_revision(item_id, imported.source)
            key = document_key(item_id, imported.source, revision)
            etag = files.put_new(key, imported.document.body)
            written.append((item_id, imported.source, etag, imported.document.object_count))
        annotated += bool(documents)
        problems.extend(_unconverted(name, documents))
    _record_imported(ctx, written)
    return problems, annotated


def _documents(
    frame: PlannedFrame, calibration: FrameCalibration, files: SceneFiles
) -> list[ImportedDocument]:
    if frame.result is not None:
        return import_result(files.read(frame.result), frame.stem)
    assert frame.label is not None
    return [import_label_file(files.read(frame.label), _labels_frame(frame, calibration))]


def _labels_frame(frame: PlannedFrame, calibration: FrameCalibration) -> KittiCalibration:
    """What a frame's KITTI labels are converted with: its own calib file, nothing guessed."""
    if frame.calibration is None:
        raise ResultError(
            f"frame {frame.stem!r} has no calib/{frame.stem}.txt, and KITTI labels are placed "
            "in its camera frame"
        )
    if calibration.kitti is None:
        raise ResultError(f"{frame.calibration} could not be read (see its own problem)")
    try:
        return calibration_of(calibration.kitti)
    except Invalid as error:
        raise ResultError(f"{frame.calibration} cannot place them: {error}") from None


def _unconverted(name: str, documents: list[ImportedDocument]) -> list[Problem]:
    """One problem for all that a file's documents keep unconverted (one format per file)."""
    skipped = [skip for imported in documents for skip in imported.skipped]
    if not skipped:
        return []
    reason = f"{len(skipped)} object(s) not converted (first: {skipped[0].reason}): "
    return [Problem(name, reason + f"kept whole under `{documents[0].kept_under}`")]


def imported_revision(item_id: int, source: str) -> str:
    """The revision an import writes an item's document to: the same on every delivery of the
    archive, so a redelivered import finds its own object (put_new) instead of adding one."""
    return hashlib.sha256(f"imported/{item_id}/{source}".encode()).hexdigest()[:24]


def _record_imported(ctx: TenantContext, written: list[tuple[int, str, str, int]]) -> None:
    """Index rows of imported documents; one already there (an earlier delivery, or a save
    since) is kept."""
    if not written:
        return
    rows = [
        {"data_item_id": item, "source": source, "version": 1, "object_count": n, "etag": etag,
         "revision": imported_revision(item, source)}
        for item, source, etag, n in written
    ]  # fmt: skip
    with ctx.engine.begin() as conn:
        conn.execute(_insert_ignore(annotation_results), rows)


# -- reading -----------------------------------------------------------------------------------


class FrameImage(CamelModel):
    camera: str = Field(description="The camera's folder: camera_image_0, image_2, image_02.")
    item: ListedItem
    calibration: CameraCalibration | None = Field(
        description="How LiDAR points land on this image; None if the import had none."
    )


class FramePublic(CamelModel):
    id: int
    index: int = Field(description="Position in the scene, from 0.")
    name: str = Field(description="The file stem the frame's files were matched by.")
    timestamp: datetime | None
    point_cloud: ListedItem = Field(description="Its annotations are the frame's annotations.")
    images: list[FrameImage]


_ITEM: JsonDict = {
    "id": 42, "name": "scene_1/lidar_point_cloud_0/2.pcd", "kind": "pointcloud",
    "status": "processed", "statusReason": None, "size": 1843200, "width": None, "height": None,
    "createdAt": "2026-12-01T09:31:02",
    "annotations": [{"source": "imported", "etag": "8c1f0b", "version": 1, "objectCount": 30,
                     "updatedAt": "2026-12-01T09:31:09"}],
    "derived": [{"name": "bev.png", "operation": "render-bev", "contentType": "image/png",
                 "optional": False, "url": EXAMPLE_URL, "expiresAt": "2026-12-01T10:17:00Z"}],
}  # fmt: skip
_FRAME: JsonDict = {
    "id": 7, "index": 0, "name": "2", "timestamp": None, "pointCloud": _ITEM,
    "images": [{
        "camera": "camera_image_0",
        "item": {**_ITEM, "id": 43, "name": "scene_1/camera_image_0/2.jpg", "kind": "image",
                 "width": 1920, "height": 1080, "annotations": [], "derived": []},
        "calibration": {"intrinsics": {"fx": 933.5, "fy": 934.7, "cx": 896.5, "cy": 507.4},
                        "extrinsics": [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1],
                        "width": 1920, "height": 1080},
    }],
}  # fmt: skip


class FramePage(CamelModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"frames": [_FRAME], "next": None}]})

    frames: list[FramePublic]
    next: str | None = Field(description="Pass as `after` for the next page; None on the last.")


_SCENE: JsonDict = {
    "id": 3, "datasetId": 1, "name": "scene_1", "layout": "xtreme1", "frameCount": 1,
    "createdAt": "2026-12-01T09:31:10",
}  # fmt: skip


class SceneSummary(CamelModel):
    """A scene as its dataset's listing shows it; `GET /v1/scenes/{id}` adds its frames."""

    id: int
    dataset_id: int
    name: str = Field(description="The folders above its layout's folders, as imported.")
    layout: Layout
    frame_count: int
    created_at: datetime


class ScenePage(CamelModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"scenes": [_SCENE], "next": "c2NlbmU6Mw"}]}
    )

    scenes: list[SceneSummary]
    next: str | None = Field(description="Pass as `after` for the next page; None on the last.")


class ScenePublic(SceneSummary):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{**_SCENE, "frames": [_FRAME], "next": None}]}
    )

    frames: list[FramePublic] = Field(description=f"In order; the first {MAX_PAGE}.")
    next: str | None = Field(
        description="Set only for scenes of more frames than one answer holds: pass it as "
        "`after` to `GET /v1/scenes/{id}/frames`."
    )


def list_scenes(ctx: TenantContext, dataset_id: int, after: str | None, limit: int) -> ScenePage:
    """A page of the dataset's scenes, in id order; NotFound if the dataset is not the caller's."""
    start = None if after is None else decode_cursor(after, "scene")
    query = sa.select(scenes).where(scenes.c.dataset_id == dataset_id)
    if start is not None:
        query = query.where(scenes.c.id > start)
    with ctx.engine.connect() as conn:
        require_dataset(conn, dataset_id)
        rows = conn.execute(query.order_by(scenes.c.id).limit(limit + 1)).all()
    listed = [SceneSummary.model_validate(row._mapping) for row in rows[:limit]]
    next_cursor = encode_cursor(listed[-1].id, "scene") if len(rows) > limit else None
    return ScenePage(scenes=listed, next=next_cursor)


def get_scene(ctx: TenantContext, signer: Presigner, scene_id: int) -> ScenePublic:
    """A scene with its frames in order (up to MAX_PAGE: a 300-frame scene in one answer)."""
    with ctx.engine.connect() as conn:
        scene = _scene_row(conn, scene_id)
        page = _frames_page(conn, signer, ctx.connection.bucket, scene_id, None, MAX_PAGE)
    return ScenePublic.model_validate({**scene._mapping, "frames": page.frames, "next": page.next})


def list_frames(
    ctx: TenantContext, signer: Presigner, scene_id: int, after: str | None, limit: int
) -> FramePage:
    """A page of a scene's frames, in index order (keyset on the scene's frame index)."""
    start = None if after is None else decode_cursor(after, "frame")
    with ctx.engine.connect() as conn:
        _scene_row(conn, scene_id)
        return _frames_page(conn, signer, ctx.connection.bucket, scene_id, start, limit)


def _scene_row(conn: sa.Connection, scene_id: int) -> sa.Row[Any]:
    row = conn.execute(sa.select(scenes).where(scenes.c.id == scene_id)).first()
    if row is None:
        raise NotFound(f"scene {scene_id} not found")
    return row


def _frames_page(
    conn: sa.Connection, signer: Presigner, bucket: str, scene_id: int, after: int | None,
    limit: int,
) -> FramePage:  # fmt: skip
    query = sa.select(frames).where(frames.c.scene_id == scene_id)
    if after is not None:
        query = query.where(frames.c.idx > after)
    rows = conn.execute(query.order_by(frames.c.idx).limit(limit + 1)).all()
    page = rows[:limit]
    images = _images_of(conn, [int(row.id) for row in page])
    item_ids = {int(row.point_cloud_item_id) for row in page}
    item_ids |= {int(image.data_item_id) for found in images.values() for image in found}
    items = _items(conn, signer, bucket, sorted(item_ids))
    listed = [_frame(row, images.get(int(row.id), []), items) for row in page]
    next_cursor = encode_cursor(listed[-1].index, "frame") if len(rows) > limit else None
    return FramePage(frames=listed, next=next_cursor)


def _images_of(conn: sa.Connection, frame_ids: list[int]) -> dict[int, list[sa.Row[Any]]]:
    if not frame_ids:
        return {}
    found: dict[int, list[sa.Row[Any]]] = defaultdict(list)
    query = sa.select(frame_images).where(frame_images.c.frame_id.in_(frame_ids))
    for row in conn.execute(query.order_by(frame_images.c.frame_id, frame_images.c.camera)):
        found[int(row.frame_id)].append(row)
    return found


def _items(
    conn: sa.Connection, signer: Presigner, bucket: str, item_ids: list[int]
) -> dict[int, ListedItem]:
    if not item_ids:
        return {}
    rows = conn.execute(sa.select(*LISTED_COLUMNS).where(data_items.c.id.in_(item_ids))).all()
    return listed_items(conn, signer, bucket, rows)


def _frame(
    row: sa.Row[Any], images: list[sa.Row[Any]], items: dict[int, ListedItem]
) -> FramePublic:
    return FramePublic(
        id=int(row.id),
        index=int(row.idx),
        name=str(row.name),
        timestamp=row.timestamp,
        point_cloud=items[int(row.point_cloud_item_id)],
        images=[
            FrameImage(
                camera=str(image.camera),
                item=items[int(image.data_item_id)],
                calibration=image.calibration,
            )
            for image in images
        ],
    )
