"""Export archives streamed to a writable binary stream, one entry in memory at a time.

The worker hands `write_archive` an iterator of (name, body) entries and a stream (a
multipart upload to the tenant's bucket, a file): nothing here keeps an entry once it is
written. A body is bytes, or a readable, seekable file that is copied from its start in
`CHUNK`s: a nuScenes table of millions of records waits in a spool on disk and goes into the
archive without ever being in memory whole. What does stay in memory is per-entry metadata
the format needs at the end:

* **zip** writes its central directory last, so `zipfile` keeps one `ZipInfo` per entry
  (~500 bytes; 100,000 entries are ~50 MB, against GBs of labels).
  On a stream that cannot seek (a pipe, an upload) `zipfile` writes each entry's sizes and
  CRC in a data descriptor after its data (general purpose flag bit 3), which every reader
  understands; Python 3.11 does this by itself, the tests check it.
* **tar.gz** needs no directory and no seeking; `tarfile` keeps a `TarInfo` per member all
  the same (for `getmembers()`), so the list is emptied after each entry.

Entries get a fixed timestamp (`FIXED_TIME`) and mode, so the same entries give the same
archive bytes: a re-run export job overwrites its archive with an identical one.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
import zipfile
from collections.abc import Iterable
from enum import StrEnum
from pathlib import PurePosixPath
from typing import IO

from annostack.domain.errors import Invalid

FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can record; tar gets 0 (1970)
FILE_MODE = 0o644
COMPRESS_LEVEL = 6  # zlib's default: labels and JSON compress ~10x, the last levels gain ~1%
CHUNK = 1 * 2**20  # bytes of a file body read at a time
Body = bytes | IO[bytes]  # the bytes, or a readable seekable file, copied from its start


class ArchiveKind(StrEnum):
    ZIP = "zip"
    TAR_GZ = "tar.gz"


def entry_name(name: str) -> str:
    """The name as it is written; refused if it could land outside the unpacking folder."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\\" in name or "\x00" in name:
        raise Invalid(f"archive entry name {name[:80]!r} is not a safe relative path")
    return str(path)


def write_archive(
    entries: Iterable[tuple[str, Body]], stream: IO[bytes], kind: ArchiveKind = ArchiveKind.ZIP
) -> int:
    """Writes every entry to `stream` (which need not seek) and returns how many."""
    if kind is ArchiveKind.ZIP:
        return _write_zip(entries, stream)
    return _write_tar_gz(entries, stream)


def body_size(body: Body) -> int:
    """Its length in bytes; a file is left at its start, ready to be copied."""
    if isinstance(body, bytes):
        return len(body)
    size = body.seek(0, os.SEEK_END)
    body.seek(0)
    return size


def _write_zip(entries: Iterable[tuple[str, Body]], stream: IO[bytes]) -> int:
    count = 0
    with zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as zf:
        for name, body in entries:
            info = zipfile.ZipInfo(entry_name(name), date_time=FIXED_TIME)
            if info.filename in zf.NameToInfo:  # zipfile would only warn, and write it twice
                raise Invalid(f"archive entry {info.filename!r} is written twice")
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o100000 | FILE_MODE) << 16  # a regular file, rw-r--r--
            # The size known before writing lets zipfile choose zip64 for a body over 2 GiB.
            info.file_size = body_size(body)
            with zf.open(info, "w") as entry:
                _copy(body, entry)
            count += 1
    return count


def _write_tar_gz(entries: Iterable[tuple[str, Body]], stream: IO[bytes]) -> int:
    count = 0
    # gzip by hand rather than tarfile's "w|gz": that one stamps the current time into the
    # gzip header (and takes no compresslevel before Python 3.12).
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=stream, compresslevel=COMPRESS_LEVEL,
                      mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w|") as archive,
    ):  # fmt: skip
        for name, body in entries:
            info = tarfile.TarInfo(entry_name(name))
            info.size, info.mtime, info.mode = body_size(body), 0, FILE_MODE
            archive.addfile(info, io.BytesIO(body) if isinstance(body, bytes) else body)
            # Streaming never reads them back (see the docstring); typeshed does not list it.
            archive.members.clear()  # type: ignore[attr-defined]
            count += 1
    return count


def _copy(body: Body, entry: IO[bytes]) -> None:
    if isinstance(body, bytes):
        entry.write(body)
    else:
        shutil.copyfileobj(body, entry, CHUNK)
