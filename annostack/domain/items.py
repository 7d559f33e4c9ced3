"""Data items: what kind of file one is, what state it is in, and the message that has it
processed. One module, as httpx keeps its request and response types in one.

`classify` is the one place that decides the kind of a file, for uploads, archive entries,
S3-prefix imports and job fan-out alike.

The decision is made from the name (its suffix and, for Xtreme1 exports, its folder), the
dataset's data type where a suffix is ambiguous, and the content type a client announced
when the name says nothing. Contents are not sniffed: the API never sees the bytes of a
pre-signed upload. A file whose contents do not match its name is found by the reader in
the worker (a permanent, reasoned failure).

| kind        | suffixes                                         | topic       |
|-------------|--------------------------------------------------|-------------|
| pointcloud  | .pcd .bin (KITTI) .las .laz .ply                 | pointclouds |
| image       | .jpg .jpeg .png .tif .tiff .webp .bmp            | thumbnails  |
| video       | .mp4 .m4v .mov .mkv .webm .avi                   | media       |
| audio       | .wav .mp3 .flac .ogg .oga .opus .m4a .aac        | media       |
| text        | .txt .md .csv .tsv .jsonl (.json in TEXT sets)   | media       |
| archive     | .zip .tar .tgz .tar.gz                           | archives    |
| sidecar     | Xtreme1 camera_config/ and result/, .json, and   | (kept)      |
|             | text files beside clouds and images (calibration) |             |
| unsupported | anything else, with the reason                   | (kept)      |

Sidecars and unsupported files are registered where the user put them (an upload, an entry
of an archive) and never queued, so nothing dead-letters for being of an unknown kind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath

from pydantic import Field

from annostack.domain.models import CamelModel
from annostack.domain.processing import DataType, ExportSpec, Operation


class FileKind(StrEnum):
    POINT_CLOUD = "pointcloud"
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    TEXT = "text"
    ARCHIVE = "archive"
    SIDECAR = "sidecar"  # calibration, camera configs, imported results: kept, not processed
    UNSUPPORTED = "unsupported"


# The processing topic of each kind that is processed; the others have none.
TOPIC_OF_KIND: dict[FileKind, str] = {
    FileKind.POINT_CLOUD: "pointclouds",
    FileKind.IMAGE: "thumbnails",
    FileKind.VIDEO: "media",
    FileKind.AUDIO: "media",
    FileKind.TEXT: "media",
    FileKind.ARCHIVE: "archives",
}
DATA_KINDS = frozenset({FileKind.POINT_CLOUD, FileKind.IMAGE, FileKind.VIDEO, FileKind.AUDIO,
                        FileKind.TEXT})  # fmt: skip

SUFFIXES: dict[str, tuple[FileKind, str]] = {
    ".pcd": (FileKind.POINT_CLOUD, "pcd"),
    ".bin": (FileKind.POINT_CLOUD, "kitti-bin"),
    ".las": (FileKind.POINT_CLOUD, "las"),
    ".laz": (FileKind.POINT_CLOUD, "laz"),
    ".ply": (FileKind.POINT_CLOUD, "ply"),
    ".jpg": (FileKind.IMAGE, "jpeg"),
    ".jpeg": (FileKind.IMAGE, "jpeg"),
    ".png": (FileKind.IMAGE, "png"),
    ".tif": (FileKind.IMAGE, "tiff"),
    ".tiff": (FileKind.IMAGE, "tiff"),
    ".webp": (FileKind.IMAGE, "webp"),
    ".bmp": (FileKind.IMAGE, "bmp"),
    ".mp4": (FileKind.VIDEO, "mp4"),
    ".m4v": (FileKind.VIDEO, "mp4"),
    ".mov": (FileKind.VIDEO, "quicktime"),
    ".mkv": (FileKind.VIDEO, "matroska"),
    ".webm": (FileKind.VIDEO, "webm"),
    ".avi": (FileKind.VIDEO, "avi"),
    ".wav": (FileKind.AUDIO, "wav"),
    ".mp3": (FileKind.AUDIO, "mp3"),
    ".flac": (FileKind.AUDIO, "flac"),
    ".ogg": (FileKind.AUDIO, "ogg"),
    ".oga": (FileKind.AUDIO, "ogg"),
    ".opus": (FileKind.AUDIO, "opus"),
    ".m4a": (FileKind.AUDIO, "m4a"),
    ".aac": (FileKind.AUDIO, "aac"),
    ".txt": (FileKind.TEXT, "plain"),
    ".md": (FileKind.TEXT, "markdown"),
    ".csv": (FileKind.TEXT, "csv"),
    ".tsv": (FileKind.TEXT, "tsv"),
    ".jsonl": (FileKind.TEXT, "jsonl"),
    ".json": (FileKind.SIDECAR, "json"),
    ".yaml": (FileKind.SIDECAR, "yaml"),
    ".yml": (FileKind.SIDECAR, "yaml"),
    ".xml": (FileKind.SIDECAR, "xml"),
    ".zip": (FileKind.ARCHIVE, "zip"),
    ".tar": (FileKind.ARCHIVE, "tar"),
    ".tgz": (FileKind.ARCHIVE, "tar.gz"),
    ".gz": (FileKind.ARCHIVE, "tar.gz"),
}
CONTENT_TYPES: dict[str, tuple[FileKind, str]] = {
    "image/jpeg": (FileKind.IMAGE, "jpeg"),
    "image/png": (FileKind.IMAGE, "png"),
    "image/tiff": (FileKind.IMAGE, "tiff"),
    "image/webp": (FileKind.IMAGE, "webp"),
    "image/bmp": (FileKind.IMAGE, "bmp"),
    "video/mp4": (FileKind.VIDEO, "mp4"),
    "video/quicktime": (FileKind.VIDEO, "quicktime"),
    "video/webm": (FileKind.VIDEO, "webm"),
    "video/x-matroska": (FileKind.VIDEO, "matroska"),
    "audio/wav": (FileKind.AUDIO, "wav"),
    "audio/x-wav": (FileKind.AUDIO, "wav"),
    "audio/mpeg": (FileKind.AUDIO, "mp3"),
    "audio/flac": (FileKind.AUDIO, "flac"),
    "audio/ogg": (FileKind.AUDIO, "ogg"),
    "text/plain": (FileKind.TEXT, "plain"),
    "text/markdown": (FileKind.TEXT, "markdown"),
    "text/csv": (FileKind.TEXT, "csv"),
}
# Xtreme1 export folders whose files are kept beside the data, not processed as data.
# fullmatch, never match: `$` also matches before a trailing newline.
SIDECAR_FOLDER = re.compile(r"camera_config|result")
# In a TEXT dataset these are the data; beside clouds and images they describe them.
TEXT_SUFFIXES_OF_TEXT_DATASETS = {".json", ".xml", ".yaml", ".yml"}
NESTED_ARCHIVE = "an archive inside an archive is not unpacked"
SUPPORTED = (
    "point clouds .pcd .bin .las .laz .ply; images .jpg .png .tif .webp .bmp; video .mp4 "
    ".mov .mkv .webm .avi; audio .wav .mp3 .flac .ogg .opus .m4a .aac; text .txt .md .csv "
    ".tsv .jsonl; archives .zip .tar .tgz"
)


@dataclass(frozen=True)
class FileClass:
    """The verdict on one file: its kind, its format within the kind, and why if refused."""

    kind: FileKind
    format: str = ""
    reason: str = ""

    @property
    def topic(self) -> str | None:
        """The processing topic it goes to; None for files that are kept, not processed."""
        return TOPIC_OF_KIND.get(self.kind)


def _suffix(name: str) -> str:
    path = PurePosixPath(name.lower())
    if path.name.endswith(".tar.gz"):
        return ".tgz"
    return path.suffix


def classify(
    name: str,
    data_type: DataType | None = None,
    content_type: str = "",
    in_archive: bool = False,
) -> FileClass:
    """The kind of a file named `name` in a dataset of `data_type` (None: not known)."""
    path = PurePosixPath(name.replace("\\", "/"))
    if any(SIDECAR_FOLDER.fullmatch(part) for part in path.parts[:-1]):
        return FileClass(FileKind.SIDECAR, "xtreme1")
    suffix = _suffix(name)
    found = SUFFIXES.get(suffix) or CONTENT_TYPES.get(content_type.split(";")[0].strip().lower())
    if found is None:
        return FileClass(FileKind.UNSUPPORTED, reason=_unsupported(suffix, content_type))
    kind, format_ = found
    if kind is FileKind.ARCHIVE and in_archive:
        return FileClass(FileKind.UNSUPPORTED, format_, NESTED_ARCHIVE)
    if data_type == "TEXT" and suffix in TEXT_SUFFIXES_OF_TEXT_DATASETS:
        return FileClass(FileKind.TEXT, format_)
    if kind is FileKind.TEXT and data_type not in (None, "TEXT"):
        return FileClass(FileKind.SIDECAR, format_)  # a calibration or label file
    return FileClass(kind, format_)


def _unsupported(suffix: str, content_type: str) -> str:
    what = f"{suffix} files" if suffix else "files without an extension"
    if content_type and content_type != "application/octet-stream":
        what += f" ({content_type})"
    return f"{what} are not processed; supported: {SUPPORTED}"


class ItemStatus(StrEnum):
    """Where a data item is in its life (the `status` column; `status_reason` says why)."""

    UPLOADING = "uploading"  # registered, its file not complete yet
    UPLOADED = "uploaded"  # in the bucket, processing queued
    PROCESSED = "processed"  # every output written
    FAILED = "failed"  # processing gave up on its contents (the reason is kept)
    IMPORTED = "imported"  # an archive whose entries became items
    STORED = "stored"  # kept as it is, nothing to process (a sidecar)
    UNSUPPORTED = "unsupported"  # kept, not processed: not a kind annostack handles


@dataclass(frozen=True)
class PixelSize:
    """An image item's width and height in pixels, as a viewer shows it (upright: after its
    EXIF orientation), which is the frame its 2D annotations are drawn in."""

    width: int
    height: int


# What a processing job may (re)process: the file is in the bucket and of a processed kind.
PROCESSABLE_STATUSES = (ItemStatus.UPLOADED, ItemStatus.PROCESSED, ItemStatus.FAILED)


def status_on_arrival(verdict: FileClass) -> tuple[ItemStatus, str | None]:
    """The status (and reason) of an item whose file has just arrived in the bucket."""
    if verdict.kind is FileKind.UNSUPPORTED:
        return ItemStatus.UNSUPPORTED, verdict.reason
    if verdict.kind is FileKind.SIDECAR:
        return ItemStatus.STORED, None
    return ItemStatus.UPLOADED, None


class SkipReason(StrEnum):
    """Why a job left a file out (counted per reason in the job's status)."""

    UNSUPPORTED = "unsupported"  # not a kind annostack processes
    SIDECAR = "sidecar"  # calibration, configs, results: kept, not processed
    NOT_REQUESTED = "not-requested"  # none of the job's operations applies to its kind


def skip_reason(verdict: FileClass) -> SkipReason | None:
    """Why a file of this verdict is not queued at all (None: it is, if an operation applies)."""
    if verdict.kind is FileKind.UNSUPPORTED:
        return SkipReason.UNSUPPORTED
    if verdict.kind is FileKind.SIDECAR:
        return SkipReason.SIDECAR
    return None


def describe_skipped(counts: dict[str, int], examples: dict[str, list[str]]) -> str:
    """'3 skipped: 2 unsupported (a.obj, b.xyz), 1 sidecar (calib.json)'; '' if none."""
    parts = [
        f"{count} {reason} ({', '.join(examples.get(reason, []))}"
        f"{', ...' if count > len(examples.get(reason, [])) else ''})"
        for reason, count in sorted(counts.items())
        if count
    ]
    total = sum(counts.values())
    return f"{total} skipped: {'; '.join(parts)}" if total else ""


class ProcessingMessage(CamelModel):
    """One item to process: the body of every message on a processing topic (JSON)."""

    tenant: str = Field(min_length=1, max_length=64)
    item_id: int = Field(ge=1)
    key: str = Field(min_length=1, max_length=1024, description="Object key of the file.")
    kind: FileKind | None = Field(
        default=None, description="The classifier's verdict when queued (None: by topic)."
    )
    etag: str | None = Field(default=None, max_length=128)
    job: str | None = Field(default=None, description="The ProcessingJob's uid, if any.")
    operations: list[Operation] | None = Field(
        default=None, description="What to do; None: everything the topic does (an upload)."
    )

    def wire(self) -> dict[str, object]:
        """The JSON object sent (camelCase, unset fields left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ExportMessage(CamelModel):
    """One export to write: the body of a message on the `exports` topic (JSON).

    One message per export job: a worker streams the whole export (it pages through the
    dataset itself), so there is no fan-out to count.
    """

    tenant: str = Field(min_length=1, max_length=64)
    job: str = Field(min_length=1, max_length=64, description="The ProcessingJob's uid.")
    job_name: str = Field(min_length=1, max_length=253, description="Its name (push events).")
    dataset_id: int = Field(ge=1)
    key: str = Field(min_length=1, max_length=1024, description="Where the export is written.")
    export: ExportSpec

    def wire(self) -> dict[str, object]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
