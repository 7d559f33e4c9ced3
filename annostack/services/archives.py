"""Dataset archives (zip, tar, tar.gz) imported from the bucket without buffering them.

A zip is read through HTTP range requests (its directory is at the end, so it needs seeking,
never the whole file); a tar is read as a stream. Every entry is checked before anything is
written — a zip from its central directory, a tar in a first streaming pass — so a malicious
archive (absolute paths, `..`, symlinks, hardlinks, devices, FIFOs, absurd sizes or counts)
is refused whole.

Decompression bombs: a zip entry may inflate to at most `Limits.max_ratio` times its
compressed size (checked for entries above `RATIO_FLOOR`, so a small file of zeros is fine),
a tar to at most that ratio of the archive's own size (a tar's entries are not compressed
one by one), and all entries together to at most `Limits.total_bytes` — the tenant's storage
quota, since unpacking more than that could never be stored. zipfile never reads past an
entry's declared size, so a lying header cannot inflate beyond what was checked.

Accepted layouts include Xtreme1's export, so datasets move over without re-packing:
``[root/]lidar_point_cloud_N/<frame>.pcd``, ``camera_image_N/<frame>.jpg``,
``camera_config/<frame>.json`` and optional ``result/<frame>.json``. Every regular entry
becomes a data item; `annostack.domain.items.classify` decides its kind, so point clouds,
images, video, audio and text are queued for processing, configs and results are kept as
``stored`` items, anything else as ``unsupported`` with the reason. Once every entry is an item
the Xtreme1 and KITTI layouts become scenes (services.scenes): configs are read into the
frames' calibration, results into `imported` annotation documents.
"""

from __future__ import annotations

import io
import re
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO

MAX_ENTRIES = 200_000
MAX_ENTRY_BYTES = 20 * 2**30
MAX_TOTAL_BYTES = 2 * 2**40
# Real data compresses 2-20x (point clouds, text), a sparse or zero-padded cloud ~50x; bombs
# are built at 1,000x and more.
MAX_RATIO = 200.0
RATIO_FLOOR = 8 * 2**20  # below this inflated size an entry's ratio is not checked
CHUNK = 1 * 2**20


class UnsafeArchive(ValueError):
    """The archive is refused as a whole; nothing was written."""


@dataclass(frozen=True)
class Entry:
    name: str  # the normalised relative path inside the archive
    size: int


def check_name(raw: str) -> str:
    path = PurePosixPath(raw.replace("\\", "/"))
    if path.is_absolute() or raw.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", raw):
        raise UnsafeArchive(f"entry {raw!r} has an absolute path")
    if any(part == ".." for part in path.parts):
        raise UnsafeArchive(f"entry {raw!r} climbs out of the archive with '..'")
    if len(raw) > 1024 or "\x00" in raw:
        raise UnsafeArchive(f"entry name {raw[:60]!r}... is not acceptable")
    return str(path)


@dataclass(frozen=True)
class Limits:
    """How much one archive may unpack to."""

    total_bytes: int = MAX_TOTAL_BYTES  # all entries together (the tenant's storage quota)
    max_ratio: float = MAX_RATIO  # inflated / compressed


def _ratio_exceeded(inflated: int, compressed: int, limits: Limits) -> bool:
    return inflated > RATIO_FLOOR and inflated > limits.max_ratio * max(compressed, 1)


class _Budget:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.count = 0
        self.total = 0

    def admit(self, name: str, size: int, compressed: int | None = None) -> Entry:
        self.count += 1
        self.total += size
        if self.count > MAX_ENTRIES:
            raise UnsafeArchive(f"more than {MAX_ENTRIES} entries")
        if size > MAX_ENTRY_BYTES:
            raise UnsafeArchive(f"entry {name!r} claims {size} bytes (limit {MAX_ENTRY_BYTES})")
        if compressed is not None and _ratio_exceeded(size, compressed, self.limits):
            raise UnsafeArchive(
                f"entry {name!r} inflates {compressed} bytes to {size}, more than "
                f"{self.limits.max_ratio:g}x: refused as a decompression bomb"
            )
        if self.total > self.limits.total_bytes:
            raise UnsafeArchive(
                f"entries add up to more than {self.limits.total_bytes} bytes "
                "(the tenant's storage quota)"
            )
        return Entry(check_name(name), size)


# -- zip: random access through range requests -------------------------------------------------


class RangeReader(io.RawIOBase):
    """A seekable read-only file over an object, each read one HTTP range request."""

    def __init__(self, size: int, fetch: Callable[[int, int], bytes]) -> None:
        self.size, self.fetch, self.position = size, fetch, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.position >= self.size:
            return 0
        end = min(self.position + len(buffer), self.size)
        data = self.fetch(self.position, end - 1)
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


def zip_entries(archive: zipfile.ZipFile, limits: Limits) -> list[tuple[zipfile.ZipInfo, Entry]]:
    budget, entries = _Budget(limits), []
    for info in archive.infolist():
        if info.is_dir():
            continue
        mode = (info.external_attr >> 16) & 0o170000
        if mode and mode != 0o100000:  # a symlink, device or fifo stored in the zip
            raise UnsafeArchive(f"entry {info.filename!r} is not a regular file")
        entries.append((info, budget.admit(info.filename, info.file_size, info.compress_size)))
    return entries


def iter_zip(reader: RangeReader, limits: Limits) -> Iterator[tuple[Entry, IO[bytes]]]:
    try:
        archive = zipfile.ZipFile(io.BufferedReader(reader, buffer_size=CHUNK))
    except zipfile.BadZipFile as error:
        raise UnsafeArchive(f"not a readable zip: {error}") from error
    for info, entry in zip_entries(archive, limits):  # all checked before the first yield
        with archive.open(info) as member:
            yield entry, member


# -- tar: one checking pass, one extracting pass ----------------------------------------------


def _tar_members(stream: IO[bytes]) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as archive:
            for member in archive:
                yield archive, member
    except tarfile.TarError as error:
        raise UnsafeArchive(f"not a readable tar: {error}") from error


def check_tar(stream: IO[bytes], limits: Limits, archive_bytes: int) -> int:
    """The number of entries, after refusing the archive if any entry is unsafe."""
    budget = _Budget(limits)
    for _, member in _tar_members(stream):
        if member.isdir():
            continue
        if not member.isfile():
            raise UnsafeArchive(f"entry {member.name!r} is {_tar_kind(member)}")
        budget.admit(member.name, member.size)
        if _ratio_exceeded(budget.total, archive_bytes, limits):
            raise UnsafeArchive(
                f"the archive inflates {archive_bytes} bytes to more than {budget.total}, more "
                f"than {limits.max_ratio:g}x: refused as a decompression bomb"
            )
    return budget.count


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "a symbolic link"
    if member.islnk():
        return "a hard link"
    if member.ischr() or member.isblk():
        return "a device"
    return "a FIFO" if member.isfifo() else "not a regular file"


def iter_tar(stream: IO[bytes]) -> Iterator[tuple[Entry, IO[bytes]]]:
    for archive, member in _tar_members(stream):
        if member.isfile():
            data = archive.extractfile(member)
            assert data is not None
            yield Entry(check_name(member.name), member.size), data


def is_zip(head: bytes) -> bool:
    return head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06")
