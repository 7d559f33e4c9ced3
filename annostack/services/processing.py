"""What processing makes of one uploaded item: derived files under deterministic keys.

Outputs live under ``derived/<item id>/`` with fixed names, so processing a message twice
(a redelivery after a crash) writes the same keys; the worker writes them with
If-None-Match: * and treats "already there" as done, so nothing is duplicated — not even as
an extra object version in the versioned bucket.

Besides its files, processing may measure the item: an image's size (domain.images), which
the worker records with the item's status in one UPDATE (services.item_states).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import orjson
from PIL import Image
from pydantic import ValidationError

from annostack.domain.derived import (
    BEV,
    CLOUD,
    INFO,
    POSTER,
    PREVIEW_CLOUD,
    THUMBNAIL_SIZES,
    TILE_INDEX,
    WAVEFORM,
    DerivedFile,
    derived_key,
    frame,
    thumbnail,
    tile,
)
from annostack.domain.images import thumbnails
from annostack.domain.items import (
    DATA_KINDS,
    FileClass,
    FileKind,
    ItemStatus,
    PixelSize,
    ProcessingMessage,
    classify,
)
from annostack.domain.media import audio_waveform, video_preview
from annostack.domain.models import CamelModel
from annostack.domain.pointclouds import PointCloud, read_any, write_pcd
from annostack.domain.rendering import (
    DEFAULT_RANGE_METRES,
    render_bev,
    split_tiles,
    tile_index,
    voxel_downsample,
)
from annostack.domain.texts import read_text

FRAME_SIZE = 200  # a video's frame thumbnails: a strip under the player
BEV_SIZE = 1024
TILE_METRES = 50.0
PREVIEW_VOXEL_METRES = 0.2  # a light cloud a browser can open before the full-resolution tiles


class InvalidTask(ValueError):
    """The message itself is malformed (not the data it points at)."""


# Keys the platform writes itself; processing reads inputs, never its own outputs.
RESERVED_PREFIXES = ("derived/", "annotations/", "exports/")
KIND_OF_TOPIC = {"thumbnails": FileKind.IMAGE, "pointclouds": FileKind.POINT_CLOUD,
                 "archives": FileKind.ARCHIVE}  # fmt: skip


@dataclass(frozen=True)
class Task:
    """A message received on a topic: what to process, and what kind of file it is."""

    message: ProcessingMessage
    topic: str

    @classmethod
    def parse(cls, payload: bytes, topic: str) -> Task:
        try:
            message = ProcessingMessage.model_validate_json(payload)
        except ValidationError as error:
            raise InvalidTask(f"malformed processing message: {error}") from error
        key = message.key
        if key.startswith(("/", *RESERVED_PREFIXES)) or ".." in key:
            raise InvalidTask(f"refusing to process key {key!r}")
        return cls(message, topic)

    @property
    def tenant(self) -> str:
        return self.message.tenant

    @property
    def item_id(self) -> int:
        return self.message.item_id

    @property
    def key(self) -> str:
        return self.message.key

    @property
    def job(self) -> str | None:
        return self.message.job

    @property
    def operations(self) -> frozenset[str] | None:
        wanted = self.message.operations
        return None if wanted is None else frozenset(wanted)

    @property
    def verdict(self) -> FileClass:
        """The kind the message says; for a message without one (an older producer), the
        classifier's verdict on its key, or failing that the kind its topic carries."""
        if self.message.kind is not None:
            return FileClass(self.message.kind)
        verdict = classify(self.key)
        if verdict.kind is FileKind.UNSUPPORTED:
            by_topic = KIND_OF_TOPIC.get(self.topic.rsplit("/", 1)[-1])
            return verdict if by_topic is None else FileClass(by_topic)
        return verdict

    @property
    def kind(self) -> FileKind:
        return self.verdict.kind

    def wants(self, operation: str) -> bool:
        return self.operations is None or operation in self.operations


@dataclass(frozen=True)
class Outcome:
    """The item's status once its message is done, why when it was not processed, and what
    processing measured of it (recorded with the status)."""

    status: ItemStatus
    reason: str | None = None
    pixel_size: PixelSize | None = None


def kept_as_is(task: Task) -> Outcome | None:
    """For a file of no processed kind (queued by an older producer): its final status."""
    verdict = task.verdict
    if verdict.kind in DATA_KINDS:
        return None
    if verdict.kind is FileKind.UNSUPPORTED:
        return Outcome(ItemStatus.UNSUPPORTED, verdict.reason or "not a processed kind")
    return Outcome(ItemStatus.STORED, f"a {verdict.kind} file: kept, not processed")


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


def output(task: Task, file: DerivedFile, body: bytes) -> Output:
    """One of the item's derived files, named as the listing names it (domain.derived)."""
    return Output(derived_key(task.item_id, file.name), body, file.content_type)


@dataclass(frozen=True)
class Processed:
    """What processing made of one file: its derived files, and an image's size when its
    thumbnails were made (None otherwise: nothing decoded it)."""

    outputs: list[Output]
    pixel_size: PixelSize | None = None


def process_image(task: Task, data: bytes) -> Processed:
    """Thumbnails, and the size they show the image at, from one decode."""
    if not task.wants("thumbnail"):
        return Processed([])
    made = thumbnails(data, THUMBNAIL_SIZES)
    outputs = [output(task, thumbnail(size), jpeg) for size, jpeg in sorted(made.jpegs.items())]
    return Processed(outputs, made.size)


def pointcloud_outputs(task: Task, data: bytes, options: Options) -> list[Output]:
    cloud = read_any(data, task.key)
    outputs = []
    if task.wants("compress"):
        outputs.append(output(task, CLOUD, write_pcd(cloud)))
    if task.wants("render-bev"):
        png = render_bev(cloud, BEV_SIZE, range_metres=options.bev_range_metres)
        outputs.append(output(task, BEV, png))
    if task.wants("split") and len(cloud) > options.split_above_points:
        outputs += split_outputs(task, cloud)
    return outputs


def _jpeg(image: Image.Image, size: int | None = None) -> bytes:
    if size is not None:
        image = image.copy()
        image.thumbnail((size, size), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=85)
    return out.getvalue()


def _info(task: Task, info: CamelModel) -> Output:
    return output(task, INFO, orjson.dumps(info.model_dump(mode="json", by_alias=True)))


def video_outputs(task: Task, data: bytes) -> list[Output]:
    """info.json, a poster frame, list thumbnails of it, and frame thumbnails over time."""
    if not task.wants("thumbnail"):
        return []
    preview = video_preview(data)
    frames = [{"file": frame(n).name, "seconds": round(at, 3)}
              for n, (at, _) in enumerate(preview.frames)]  # fmt: skip
    info = preview.info.model_dump(mode="json", by_alias=True) | {"frameThumbnails": frames}
    outputs = [output(task, INFO, orjson.dumps(info)), output(task, POSTER, _jpeg(preview.poster))]
    outputs += [
        output(task, thumbnail(size), _jpeg(preview.poster, size)) for size in THUMBNAIL_SIZES
    ]
    outputs += [
        output(task, frame(n), _jpeg(image, FRAME_SIZE))
        for n, (_, image) in enumerate(preview.frames)
    ]
    return outputs


def audio_outputs(task: Task, data: bytes) -> list[Output]:
    """info.json and waveform.png."""
    if not task.wants("thumbnail"):
        return []
    info, png = audio_waveform(data)
    return [_info(task, info), output(task, WAVEFORM, png)]


def text_outputs(task: Task, data: bytes) -> list[Output]:
    """info.json with the encoding, the length and a snippet."""
    if not task.wants("thumbnail"):
        return []
    return [_info(task, read_text(data))]


def split_outputs(task: Task, cloud: PointCloud) -> list[Output]:
    """A light preview, fixed-size tiles and their index, for clouds too big to open whole."""
    preview = voxel_downsample(cloud, PREVIEW_VOXEL_METRES)
    outputs = [output(task, PREVIEW_CLOUD, write_pcd(preview))]
    tiles = split_tiles(cloud, TILE_METRES)
    outputs += [output(task, tile(meta.name), write_pcd(part)) for meta, part in tiles]
    index = tile_index([meta for meta, _ in tiles], TILE_METRES, None)
    outputs.append(output(task, TILE_INDEX, index))
    return outputs


def process(task: Task, data: bytes, options: Options) -> Processed:
    """Everything processing makes of one file, by its kind."""
    kind = task.kind
    if kind is FileKind.IMAGE:
        return process_image(task, data)
    if kind is FileKind.POINT_CLOUD:
        return Processed(pointcloud_outputs(task, data, options))
    if kind is FileKind.VIDEO:
        return Processed(video_outputs(task, data))
    if kind is FileKind.AUDIO:
        return Processed(audio_outputs(task, data))
    if kind is FileKind.TEXT:
        return Processed(text_outputs(task, data))
    raise InvalidTask(f"no processing for a file of kind {kind} ({task.key})")
