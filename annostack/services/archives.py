"""Dataset archives (zip, tar, tar.gz) imported from the bucket without buffering them.

A zip is read through HTTP range requests (its directory is at the end, so it needs seeking,
never the whole file); a tar is read as a stream. Every entry is checked before anything is
written — a zip from its central directory, a tar in a first streaming pass — so a malicious
archive (absolute paths, `..`, links, devices, absurd sizes or counts) is refused whole.

Accepted layouts include Xtreme1's export, so datasets move over without re-packing:
``[root/]lidar_point_cloud_N/<frame>.pcd``, ``camera_image_N/<frame>.jpg``,
``camera_config/<frame>.json`` and optional ``result/<frame>.json``. Every regular entry
becomes a data item; `annostack.domain.items.classify` decides its kind, so point clouds,
images, video, audio and text are queued for processing, configs and results are kept as
``stored`` items, anything else as ``unsupported`` with the reason.
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


class _Budget:
    def __init__(self) -> None:
        self.count = 0
        self.total = 0

    def admit(self, name: str, size: int) -> Entry:
        self.count += 1
        self.total += size
        if self.count > MAX_ENTRIES:
            raise UnsafeArchive(f"more than {MAX_ENTRIES} entries")
        if size > MAX_ENTRY_BYTES:
            raise UnsafeArchive(f"entry {name!r} claims {size} bytes (limit {MAX_ENTRY_BYTES})")
        if self.total > MAX_TOTAL_BYTES:
            raise UnsafeArchive(f"entries add up to more than {MAX_TOTAL_BYTES} bytes")
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


def zip_entries(archive: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, Entry]]:
    budget, entries = _Budget(), []
    for info in archive.infolist():
        if info.is_dir():
            continue
        mode = (info.external_attr >> 16) & 0o170000
        if mode and mode != 0o100000:  # a symlink, device or fifo stored in the zip
            raise UnsafeArchive(f"entry {info.filename!r} is not a regular file")
        entries.append((info, budget.admit(info.filename, info.file_size)))
    return entries


def iter_zip(reader: RangeReader) -> Iterator[tuple[Entry, IO[bytes]]]:
    try:
        archive = zipfile.ZipFile(io.BufferedReader(reader, buffer_size=CHUNK))
    except zipfile.BadZipFile as error:
        raise UnsafeArchive(f"not a readable zip: {error}") from error
    for info, entry in zip_entries(archive):  # all checked before the first is yielded
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


def check_tar(stream: IO[bytes]) -> int:
    budget = _Budget()
    for _, member in _tar_members(stream):
        if member.isdir():
            continue
        if not member.isfile():
            kind = "a link" if member.issym() or member.islnk() else "not a regular file"
            raise UnsafeArchive(f"entry {member.name!r} is {kind}")
        budget.admit(member.name, member.size)
    return budget.count


def iter_tar(stream: IO[bytes]) -> Iterator[tuple[Entry, IO[bytes]]]:
    for archive, member in _tar_members(stream):
        if member.isfile():
            data = archive.extractfile(member)
            assert data is not None
            yield Entry(check_name(member.name), member.size), data


def is_zip(head: bytes) -> bool:
    return head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06")
