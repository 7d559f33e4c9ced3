"""Archive entry checks: unsafe names, links and sizes are refused before anything is written."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from annostack.services import archives
from annostack.services.archives import (
    RangeReader,
    UnsafeArchive,
    check_name,
    check_tar,
    iter_tar,
    iter_zip,
)


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "../up.pcd", "a/../../b.jpg", "\\\\server\\x", "C:/windows/x", "a\x00b"]
)
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(UnsafeArchive):
        check_name(name)


def make_zip(files: dict[str, bytes], link: str | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, body in files.items():
            archive.writestr(name, body)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = 0o120777 << 16  # a symlink
            archive.writestr(info, "/etc/passwd")
    return out.getvalue()


def reader_for(data: bytes) -> RangeReader:
    return RangeReader(len(data), lambda first, last: data[first : last + 1])


def test_zip_is_read_through_ranges_after_a_full_check() -> None:
    data = make_zip({"lidar_point_cloud_0/1.pcd": b"a" * 10, "camera_image_0/1.jpg": b"b" * 5})
    entries = [(entry.name, entry.size, body.read()) for entry, body in iter_zip(reader_for(data))]
    assert entries == [
        ("lidar_point_cloud_0/1.pcd", 10, b"a" * 10),
        ("camera_image_0/1.jpg", 5, b"b" * 5),
    ]


def test_a_zip_with_a_link_is_refused_before_the_first_entry() -> None:
    data = make_zip({"ok.pcd": b"x"}, link="evil")
    with pytest.raises(UnsafeArchive, match="not a regular file"):
        next(iter_zip(reader_for(data)))


def make_tar(files: dict[str, bytes], symlink: str | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))
        if symlink:
            info = tarfile.TarInfo(symlink)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            archive.addfile(info)
    return out.getvalue()


def test_tar_check_then_stream() -> None:
    data = make_tar({"camera_image_0/1.jpg": b"j" * 7, "result/1.json": b"{}"})
    assert check_tar(io.BytesIO(data)) == 2
    names = [(entry.name, body.read()) for entry, body in iter_tar(io.BytesIO(data))]
    assert names == [("camera_image_0/1.jpg", b"j" * 7), ("result/1.json", b"{}")]


@pytest.mark.parametrize(
    ("files", "symlink", "reason"),
    [
        ({"../escape.pcd": b"x"}, None, "'..'"),
        ({"/abs.pcd": b"x"}, None, "absolute"),
        ({"ok.pcd": b"x"}, "link", "a link"),
    ],
)
def test_malicious_tars_are_refused(
    files: dict[str, bytes], symlink: str | None, reason: str
) -> None:
    with pytest.raises(UnsafeArchive, match=reason):
        check_tar(io.BytesIO(make_tar(files, symlink)))


def test_absurd_sizes_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archives, "MAX_ENTRY_BYTES", 100)
    with pytest.raises(UnsafeArchive, match="claims"):
        check_tar(io.BytesIO(make_tar({"big.pcd": b"x" * 101})))
    monkeypatch.setattr(archives, "MAX_ENTRIES", 2)
    with pytest.raises(UnsafeArchive, match="more than 2 entries"):
        check_tar(io.BytesIO(make_tar({f"{i}.pcd": b"x" for i in range(3)})))


def test_garbage_is_not_an_archive() -> None:
    with pytest.raises(UnsafeArchive, match="not a readable"):
        check_tar(io.BytesIO(b"this is not a tar at all" * 50))
    with pytest.raises(UnsafeArchive, match="not a readable zip"):
        next(iter_zip(reader_for(b"PK\x03\x04 garbage")))
