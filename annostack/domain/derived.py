"""The files processing writes under ``derived/<item id>/``, named in this one place.

Workers name their outputs with these functions and the item listing signs URLs for the same
names, so the two cannot disagree (a unit test runs the worker's processing for every kind and
compares). The listing never asks the object store what exists: an item's kind and status say
what its processing wrote. Files of an operation that only runs under a condition are marked
`optional` — the split outputs exist only for clouds over the worker's split threshold
(`ANNOSTACK_WORKER_SPLIT_ABOVE_POINTS`) when `split` was asked for, and a GET of their URL
answers 404 otherwise.

What the listing cannot see is an item processed by a job with fewer operations than its kind
has (a Dataset whose `operations` leave out `render-bev`, say): the URLs of what was not run
answer 404. Uploads and the default operations run everything.

Tiles (``tiles/<name>.pcd``) are named by the tile index, not listed here: their names depend
on where the points are.
"""

from __future__ import annotations

from dataclasses import dataclass

from annostack.domain.items import FileKind, ItemStatus
from annostack.domain.processing import Operation

THUMBNAIL_SIZES = (200, 400, 800)
FRAME_COUNT = 8  # a video's frame thumbnails: evenly spaced, a strip under the player
OCTET, JPEG, PNG, JSON = "application/octet-stream", "image/jpeg", "image/png", "application/json"


@dataclass(frozen=True)
class DerivedFile:
    """One output of processing: its name under ``derived/<item id>/`` and what makes it."""

    name: str
    operation: Operation
    content_type: str
    optional: bool = False  # written only when a condition holds (see the module docstring)


def derived_key(item_id: int, name: str) -> str:
    """The object key of an item's derived file (the id is an integer: never a raw string)."""
    return f"derived/{int(item_id)}/{name}"


def thumbnail(size: int) -> DerivedFile:
    return DerivedFile(f"thumb-{size}.jpg", "thumbnail", JPEG)


def frame(number: int) -> DerivedFile:
    return DerivedFile(f"frames/{number}.jpg", "thumbnail", JPEG)


def tile(name: str) -> DerivedFile:
    return DerivedFile(f"tiles/{name}.pcd", "split", OCTET, optional=True)


CLOUD = DerivedFile("cloud.pcd", "compress", OCTET)
BEV = DerivedFile("bev.png", "render-bev", PNG)
PREVIEW_CLOUD = DerivedFile("preview.pcd", "split", OCTET, optional=True)
TILE_INDEX = DerivedFile("tiles/index.json", "split", JSON, optional=True)
INFO = DerivedFile("info.json", "thumbnail", JSON)
POSTER = DerivedFile("poster.jpg", "thumbnail", JPEG)
WAVEFORM = DerivedFile("waveform.png", "thumbnail", PNG)

THUMBNAILS = tuple(thumbnail(size) for size in THUMBNAIL_SIZES)
FILES_OF_KIND: dict[FileKind, tuple[DerivedFile, ...]] = {
    FileKind.IMAGE: THUMBNAILS,
    FileKind.POINT_CLOUD: (CLOUD, BEV, PREVIEW_CLOUD, TILE_INDEX),
    FileKind.VIDEO: (INFO, POSTER, *THUMBNAILS, *(frame(n) for n in range(FRAME_COUNT))),
    FileKind.AUDIO: (INFO, WAVEFORM),
    FileKind.TEXT: (INFO,),
}


def derived_files(kind: FileKind, status: ItemStatus) -> tuple[DerivedFile, ...]:
    """What processing wrote for an item of this kind in this status (nothing until it is
    `processed`; nothing for kinds that are kept as they are)."""
    if status is not ItemStatus.PROCESSED:
        return ()
    return FILES_OF_KIND.get(kind, ())
