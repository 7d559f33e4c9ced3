"""Archive entry checks: unsafe names, links and sizes are refused before anything is written."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from annostack.domain.tenant_stack import CREDENTIALS_ANNOTATION, WORKER_SCRATCH, worker_deployment
from annostack.domain.tenants import Plan, TenantNames, TenantSpec
from annostack.services import archives
from annostack.services.archives import (
    Limits,
    RangeReader,
    UnsafeArchive,
    check_name,
    check_tar,
    iter_tar,
    iter_zip,
)
from annostack.workers.settings import WorkerSettings


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "../up.pcd", "a/../../b.jpg", "\\\\server\\x", "C:/windows/x", "a\x00b"]
)
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(UnsafeArchive):
        check_name(name)


LIMITS = Limits()


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
    entries = [
        (entry.name, entry.size, body.read()) for entry, body in iter_zip(reader_for(data), LIMITS)
    ]
    assert entries == [
        ("lidar_point_cloud_0/1.pcd", 10, b"a" * 10),
        ("camera_image_0/1.jpg", 5, b"b" * 5),
    ]


def test_a_zip_with_a_link_is_refused_before_the_first_entry() -> None:
    data = make_zip({"ok.pcd": b"x"}, link="evil")
    with pytest.raises(UnsafeArchive, match="not a regular file"):
        next(iter_zip(reader_for(data), LIMITS))


def make_tar(
    files: dict[str, bytes], symlink: str | None = None, special: bytes | None = None
) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))
        if symlink:
            info = tarfile.TarInfo(symlink)
            info.type = special or tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            archive.addfile(info)
    return out.getvalue()


def test_tar_check_then_stream() -> None:
    data = make_tar({"camera_image_0/1.jpg": b"j" * 7, "result/1.json": b"{}"})
    assert check_tar(io.BytesIO(data), LIMITS, 10**9) == 2
    names = [(entry.name, body.read()) for entry, body in iter_tar(io.BytesIO(data))]
    assert names == [("camera_image_0/1.jpg", b"j" * 7), ("result/1.json", b"{}")]


@pytest.mark.parametrize(
    ("files", "symlink", "reason"),
    [
        ({"../escape.pcd": b"x"}, None, "'..'"),
        ({"/abs.pcd": b"x"}, None, "absolute"),
        ({"ok.pcd": b"x"}, "link", "a symbolic link"),
    ],
)
def test_malicious_tars_are_refused(
    files: dict[str, bytes], symlink: str | None, reason: str
) -> None:
    with pytest.raises(UnsafeArchive, match=reason):
        check_tar(io.BytesIO(make_tar(files, symlink)), LIMITS, 10**9)


@pytest.mark.parametrize(
    ("special", "reason"),
    [
        (tarfile.LNKTYPE, "a hard link"),
        (tarfile.CHRTYPE, "a device"),
        (tarfile.BLKTYPE, "a device"),
        (tarfile.FIFOTYPE, "a FIFO"),
    ],
)
def test_hardlinks_devices_and_fifos_are_refused(special: bytes, reason: str) -> None:
    data = make_tar({"ok.pcd": b"x"}, "lidar/000001.pcd", special)
    with pytest.raises(UnsafeArchive, match=reason):
        check_tar(io.BytesIO(data), LIMITS, len(data))


def test_a_zip_bomb_is_refused_before_anything_is_read() -> None:
    zeros = 64 * 2**20  # 64 MiB of zeros deflate to ~64 KB: a 1,000x ratio
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("small.pcd", b"\0" * 4096)  # highly compressible but small: fine
        archive.writestr("lidar/bomb.pcd", b"\0" * zeros)
    with pytest.raises(UnsafeArchive, match="decompression bomb"):
        next(iter_zip(reader_for(out.getvalue()), LIMITS))


def test_a_tar_bomb_and_an_archive_beyond_the_quota_are_refused() -> None:
    data = make_tar({"lidar/zeros.pcd": b"\0" * (16 * 2**20)})
    with pytest.raises(UnsafeArchive, match="decompression bomb"):
        check_tar(io.BytesIO(data), LIMITS, len(data))
    quota = Limits(total_bytes=1000)
    with pytest.raises(UnsafeArchive, match="storage quota"):
        check_tar(io.BytesIO(make_tar({"a.pcd": b"x" * 600, "b.pcd": b"y" * 600})), quota, 10**9)


def test_absurd_sizes_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archives, "MAX_ENTRY_BYTES", 100)
    with pytest.raises(UnsafeArchive, match="claims"):
        check_tar(io.BytesIO(make_tar({"big.pcd": b"x" * 101})), LIMITS, 10**9)
    monkeypatch.setattr(archives, "MAX_ENTRIES", 2)
    with pytest.raises(UnsafeArchive, match="more than 2 entries"):
        check_tar(io.BytesIO(make_tar({f"{i}.pcd": b"x" for i in range(3)})), LIMITS, 10**9)


def test_garbage_is_not_an_archive() -> None:
    with pytest.raises(UnsafeArchive, match="not a readable"):
        check_tar(io.BytesIO(b"this is not a tar at all" * 50), LIMITS, 10**9)
    with pytest.raises(UnsafeArchive, match="not a readable zip"):
        next(iter_zip(reader_for(b"PK\x03\x04 garbage"), LIMITS))


def test_the_worker_deployment_caps_archives_at_the_storage_quota() -> None:
    spec = TenantSpec(display_name="Acme", plan=Plan(storage="50Gi"))
    image = "registry.example/annostack/worker:1"
    deployment = worker_deployment(TenantNames(tenant="acme"), spec, 1, image, "c0ffee")
    template = deployment["spec"]["template"]
    (container,) = template["spec"]["containers"]
    # The quota sits beside the image and the credentials' digest (which rolls the pods).
    assert container["image"] == image
    assert template["metadata"]["annotations"][CREDENTIALS_ANNOTATION] == "c0ffee"
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["ANNOSTACK_WORKER_ARCHIVE_BUDGET_BYTES"] == str(50 * 2**30)
    assert WorkerSettings.model_validate({"archive_budget_bytes": env[
        "ANNOSTACK_WORKER_ARCHIVE_BUDGET_BYTES"]}).archive_budget_bytes == 50 * 2**30  # fmt: skip


def test_the_worker_has_a_bounded_tmp_for_export_spools() -> None:
    deployment = worker_deployment(TenantNames(tenant="acme"), TenantSpec(display_name="A"), 1, "i")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": WORKER_SCRATCH}}]
