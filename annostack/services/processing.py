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
from annostack.domain.pointclouds import read_any, write_pcd
from annostack.domain.rendering import render_bev, split_tiles, tile_index, voxel_downsample

THUMBNAIL_SIZES = (200, 400, 800)
BEV_SIZE = 1024
TILE_METRES = 50.0
PREVIEW_VOXEL_METRES = 0.2  # a light cloud a browser can open before the full-resolution tiles


class InvalidTask(ValueError):
    """The message itself is malformed (not the data it points at)."""


@dataclass(frozen=True)
class Task:
    tenant: str
    item_id: int
    key: str
    topic: str

    @classmethod
    def parse(cls, payload: bytes, topic: str) -> Task:
        try:
            body = orjson.loads(payload)
            task = cls(str(body["tenant"]), int(body["itemId"]), str(body["key"]), topic)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise InvalidTask(f"malformed processing message: {error}") from error
        if not task.key.startswith("data/") or ".." in task.key:
            raise InvalidTask(f"refusing to process key {task.key!r}")
        return task


@dataclass(frozen=True)
class Output:
    key: str
    body: bytes
    content_type: str


def derived(item_id: int, name: str) -> str:
    return f"derived/{int(item_id)}/{name}"


def image_outputs(task: Task, data: bytes) -> list[Output]:
    return [
        Output(derived(task.item_id, f"thumb-{size}.jpg"), thumbnail(data, size), "image/jpeg")
        for size in THUMBNAIL_SIZES
    ]


def pointcloud_outputs(task: Task, data: bytes, split_above: int) -> list[Output]:
    cloud = read_any(data, task.key)
    outputs = [
        Output(derived(task.item_id, "cloud.pcd"), write_pcd(cloud), "application/octet-stream"),
        Output(derived(task.item_id, "bev.png"), render_bev(cloud, BEV_SIZE), "image/png"),
    ]
    if len(cloud) > split_above:
        preview = voxel_downsample(cloud, PREVIEW_VOXEL_METRES)
        outputs.append(
            Output(
                derived(task.item_id, "preview.pcd"), write_pcd(preview), "application/octet-stream"
            )
        )
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


def outputs_for(task: Task, data: bytes, split_above: int) -> list[Output]:
    if task.topic.endswith("/thumbnails"):
        return image_outputs(task, data)
    if task.topic.endswith("/pointclouds"):
        return pointcloud_outputs(task, data, split_above)
    raise InvalidTask(f"no processing for topic {task.topic}")
