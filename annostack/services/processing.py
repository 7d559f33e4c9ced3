"""What processing makes of one uploaded item: derived files under deterministic keys.

Outputs live under ``derived/<item id>/`` with fixed names, so processing a message twice
(a redelivery after a crash) writes the same keys; the worker writes them with
If-None-Match: * and treats "already there" as done, so nothing is duplicated — not even as
an extra object version in the versioned bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from annostack.domain.images import thumbnail
from annostack.domain.pointclouds import PointCloud, read_any, write_pcd
from annostack.domain.rendering import (
    DEFAULT_RANGE_METRES,
    render_bev,
    split_tiles,
    tile_index,
    voxel_downsample,
)

THUMBNAIL_SIZES = (200, 400, 800)
BEV_SIZE = 1024
TILE_METRES = 50.0
PREVIEW_VOXEL_METRES = 0.2  # a light cloud a browser can open before the full-resolution tiles


class InvalidTask(ValueError):
    """The message itself is malformed (not the data it points at)."""


# Keys the platform writes itself; processing reads inputs, never its own outputs.
RESERVED_PREFIXES = ("derived/", "annotations/")


@dataclass(frozen=True)
class Task:
    tenant: str
    item_id: int
    key: str
    topic: str
    job: str | None = None  # the ProcessingJob's uid, when the message came from one
    operations: frozenset[str] | None = None  # None: everything the topic does (an upload)

    @classmethod
    def parse(cls, payload: bytes, topic: str) -> Task:
        try:
            body = orjson.loads(payload)
            operations = body.get("operations")
            task = cls(
                tenant=str(body["tenant"]),
                item_id=int(body["itemId"]),
                key=str(body["key"]),
                topic=topic,
                job=str(body["job"]) if body.get("job") else None,
                operations=frozenset(map(str, operations)) if operations is not None else None,
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise InvalidTask(f"malformed processing message: {error}") from error
        if not task.key or task.key.startswith(("/", *RESERVED_PREFIXES)) or ".." in task.key:
            raise InvalidTask(f"refusing to process key {task.key!r}")
        return task

    def wants(self, operation: str) -> bool:
        return self.operations is None or operation in self.operations


@dataclass(frozen=True)
class Options:
    """How the worker processes (its settings), for every message alike."""

    split_above_points: int = 2_000_000
    bev_range_metres: float = DEFAULT_RANGE_METRES


@dataclass(frozen=True)
class Output:
    key: str
    body: bytes
    content_type: str


def derived(item_id: int, name: str) -> str:
    return f"derived/{int(item_id)}/{name}"


def image_outputs(task: Task, data: bytes) -> list[Output]:
    if not task.wants("thumbnail"):
        return []
    return [
        Output(derived(task.item_id, f"thumb-{size}.jpg"), thumbnail(data, size), "image/jpeg")
        for size in THUMBNAIL_SIZES
    ]


def pointcloud_outputs(task: Task, data: bytes, options: Options) -> list[Output]:
    cloud = read_any(data, task.key)
    outputs = []
    if task.wants("compress"):
        outputs.append(
            Output(derived(task.item_id, "cloud.pcd"), write_pcd(cloud), "application/octet-stream")
        )
    if task.wants("render-bev"):
        outputs.append(
            Output(
                derived(task.item_id, "bev.png"),
                render_bev(cloud, BEV_SIZE, range_metres=options.bev_range_metres),
                "image/png",
            )
        )
    if task.wants("split") and len(cloud) > options.split_above_points:
        outputs += split_outputs(task, cloud)
    return outputs


def split_outputs(task: Task, cloud: PointCloud) -> list[Output]:
    """A light preview, fixed-size tiles and their index, for clouds too big to open whole."""
    preview = voxel_downsample(cloud, PREVIEW_VOXEL_METRES)
    outputs = [
        Output(derived(task.item_id, "preview.pcd"), write_pcd(preview), "application/octet-stream")
    ]
    tiles = split_tiles(cloud, TILE_METRES)
    outputs += [
        Output(
            derived(task.item_id, f"tiles/{meta.name}.pcd"),
            write_pcd(part),
            "application/octet-stream",
        )
        for meta, part in tiles
    ]
    index = tile_index([meta for meta, _ in tiles], TILE_METRES, None)
    outputs.append(Output(derived(task.item_id, "tiles/index.json"), index, "application/json"))
    return outputs


def outputs_for(task: Task, data: bytes, options: Options) -> list[Output]:
    if task.topic.endswith("/thumbnails"):
        return image_outputs(task, data)
    if task.topic.endswith("/pointclouds"):
        return pointcloud_outputs(task, data, options)
    raise InvalidTask(f"no processing for topic {task.topic}")
