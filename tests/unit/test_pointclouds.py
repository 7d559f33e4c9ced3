"""PCD reading and writing: lossless for every field, checked against open3d; bad input refused."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import open3d as o3d
import plyfile
import pytest
from typer.testing import CliRunner

from annostack.cli import app
from annostack.domain.pointclouds import (
    Field,
    PointCloud,
    PointCloudError,
    read_any,
    read_kitti_bin,
    read_pcd,
    write_pcd,
)

N = 500


def sample_cloud(points: int = N) -> PointCloud:
    rng = np.random.default_rng(7)
    fields = [
        Field("x", 4, "F", 1),
        Field("y", 4, "F", 1),
        Field("z", 4, "F", 1),
        Field("intensity", 4, "F", 1),
        Field("ring", 2, "U", 1),
        Field("timestamp", 8, "F", 1),
        Field("label", 4, "I", 1),
        Field("normal", 4, "F", 3),
    ]
    cloud = PointCloud(fields, np.empty(0), points)
    data = np.zeros(points, dtype=cloud.dtype)
    for axis in "xyz":
        data[axis] = rng.normal(scale=20, size=points).astype(np.float32)
    data["x"][::50] = np.nan  # NaN points are kept unless asked otherwise
    data["intensity"] = rng.random(points).astype(np.float32)
    data["ring"] = rng.integers(0, 128, points)
    data["timestamp"] = 1.7e9 + rng.random(points)
    data["label"] = rng.integers(-5, 40, points)
    data["normal"] = rng.normal(size=(points, 3)).astype(np.float32)
    cloud.points = data
    return cloud


def ascii_pcd(cloud: PointCloud) -> bytes:
    """What an ascii PCD from PCL looks like (repr keeps every float exactly)."""
    header = write_pcd(cloud, "binary").split(b"DATA binary\n")[0] + b"DATA ascii\n"
    rows = []
    for record in cloud.points:
        values = []
        for f in cloud.fields:
            value = record[f.name]
            values += [repr(v.item()) for v in np.atleast_1d(value)]
        rows.append(" ".join(values))
    return header + "\n".join(rows).encode() + b"\n"


def assert_same(a: PointCloud, b: PointCloud) -> None:
    assert [f.name for f in a.fields] == [f.name for f in b.fields]
    assert a.dtype == b.dtype
    for f in a.fields:
        assert np.array_equal(a.points[f.name], b.points[f.name], equal_nan=f.type == "F"), f.name


@pytest.mark.parametrize("kind", ["ascii", "binary", "binary_compressed"])
def test_every_kind_reads_back_every_field_exactly(kind: str) -> None:
    cloud = sample_cloud()
    data = ascii_pcd(cloud) if kind == "ascii" else write_pcd(cloud, kind)  # type: ignore[arg-type]
    assert_same(read_pcd(data), cloud)


@pytest.mark.parametrize("kind", ["binary", "binary_compressed"])
def test_open3d_reads_what_we_write(tmp_path: Path, kind: str) -> None:
    cloud = sample_cloud()
    path = tmp_path / "out.pcd"
    path.write_bytes(write_pcd(cloud, kind))  # type: ignore[arg-type]
    theirs = o3d.t.io.read_point_cloud(str(path))
    positions = theirs.point.positions.numpy()
    ours = np.stack([cloud.points[a] for a in "xyz"], axis=1)
    assert np.array_equal(positions, ours, equal_nan=True)
    assert np.array_equal(theirs.point["intensity"].numpy()[:, 0], cloud.points["intensity"])
    assert np.array_equal(theirs.point["ring"].numpy()[:, 0], cloud.points["ring"])
    assert np.array_equal(theirs.point["timestamp"].numpy()[:, 0], cloud.points["timestamp"])


def test_we_read_what_open3d_writes(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    theirs = o3d.t.geometry.PointCloud()
    positions = rng.normal(size=(N, 3)).astype(np.float32)
    intensity = rng.random((N, 1)).astype(np.float32)
    theirs.point.positions = o3d.core.Tensor(positions)
    theirs.point["intensity"] = o3d.core.Tensor(intensity)
    for ascii_, compressed in [(True, False), (False, False), (False, True)]:
        path = tmp_path / f"o3d-{ascii_}-{compressed}.pcd"
        o3d.t.io.write_point_cloud(str(path), theirs, write_ascii=ascii_, compressed=compressed)
        ours = read_pcd(path.read_bytes())
        assert np.array_equal(np.stack([ours.points[a] for a in "xyz"], axis=1), positions)
        assert np.array_equal(ours.points["intensity"], intensity[:, 0])


def test_compressed_output_is_no_larger_than_binary() -> None:
    cloud = sample_cloud(5000)
    assert len(write_pcd(cloud, "binary_compressed")) < len(write_pcd(cloud, "binary"))


def test_kitti_bin() -> None:
    raw = np.arange(40, dtype=np.float32).tobytes()
    cloud = read_kitti_bin(raw)
    assert len(cloud) == 10 and cloud.points["intensity"][-1] == 39
    with pytest.raises(PointCloudError, match="16-byte"):
        read_kitti_bin(raw[:-3])


def _header(**overrides: str) -> bytes:
    header = {
        "VERSION": "0.7",
        "FIELDS": "x y z",
        "SIZE": "4 4 4",
        "TYPE": "F F F",
        "COUNT": "1 1 1",
        "WIDTH": "2",
        "HEIGHT": "1",
        "POINTS": "2",
        "DATA": "binary",
    } | overrides
    return "".join(f"{k} {v}\n" for k, v in header.items()).encode()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_header() + b"\x00" * 20, "truncated"),
        (_header(POINTS="3") + b"\x00" * 36, "WIDTH x HEIGHT"),
        (_header(DATA="xml") + b"", "unknown DATA kind"),
        (_header(WIDTH="0", POINTS="0"), "zero points"),
        (_header(WIDTH="99999999999", POINTS="99999999999"), "out of range"),
        (_header(SIZE="4 4 3"), "unsupported TYPE"),
        (_header(FIELDS="x y"), "different lengths"),
        (b"hello world\n" * 10, "no DATA line"),
        (_header(DATA="ascii") + b"1 2 3\n4 5\n", "ascii data"),
        (_header(DATA="ascii") + b"1 2 3\n4 5 six\n", "ascii data"),
        (_header(DATA="binary_compressed") + struct.pack("<II", 10, 24) + b"\xff" * 10, "corrupt"),
        (_header(DATA="binary_compressed") + struct.pack("<II", 10, 99), "header implies"),
    ],
)
def test_bad_input_is_a_clear_error(data: bytes, reason: str) -> None:
    with pytest.raises(PointCloudError, match=reason):
        read_pcd(data)


def test_cli_converts_atomically_and_refuses_bad_input(tmp_path: Path) -> None:
    source = tmp_path / "in.pcd"
    source.write_bytes(ascii_pcd(sample_cloud()))
    target = tmp_path / "out.pcd"
    result = CliRunner().invoke(app, ["pcd", "convert", str(source), str(target)])
    assert result.exit_code == 0, result.output
    assert_same(read_pcd(target.read_bytes()), sample_cloud())

    dropped = CliRunner().invoke(app, ["pcd", "convert", str(source), str(target), "--drop-nan"])
    assert dropped.exit_code == 0
    assert len(read_pcd(target.read_bytes())) == N - N // 50

    broken = tmp_path / "broken.pcd"
    broken.write_bytes(_header() + b"\x00" * 5)
    failed = CliRunner().invoke(app, ["pcd", "convert", str(broken), str(tmp_path / "x.pcd")])
    assert failed.exit_code == 2 and "truncated" in failed.output
    assert not (tmp_path / "x.pcd").exists(), "no partial output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.pcd", "in.pcd", "out.pcd"]


@pytest.mark.parametrize("compressed", [False, True], ids=["las", "laz"])
def test_las_and_laz_keep_every_dimension(compressed: bool) -> None:
    import io

    import laspy

    from annostack.domain.pointclouds import read_las

    header = laspy.LasHeader(point_format=3, version="1.2")
    header.scales, header.offsets = [0.001, 0.001, 0.001], [100.0, 200.0, 0.0]
    las = laspy.LasData(header)
    n = 300
    las.x = np.linspace(100, 110, n)
    las.y = np.linspace(200, 205, n)
    las.z = np.linspace(0, 1, n)
    las.intensity = np.arange(n)
    las.classification = np.full(n, 2)
    las.gps_time = np.linspace(1000, 1001, n)
    raw = io.BytesIO()
    las.write(raw, do_compress=compressed)
    cloud = read_las(raw.getvalue())
    assert len(cloud) == n
    assert np.array_equal(cloud.points["x"], np.asarray(las.x))
    assert np.array_equal(cloud.points["intensity"], np.arange(n))
    assert np.array_equal(cloud.points["gps_time"], np.asarray(las.gps_time))
    assert "classification" in cloud.points.dtype.names
    assert_same(read_pcd(write_pcd(cloud)), cloud)


def test_a_broken_las_is_a_clear_error() -> None:
    from annostack.domain.pointclouds import read_las

    with pytest.raises(PointCloudError, match="not a readable LAS"):
        read_las(b"LASF" + b"\x00" * 50)


@pytest.mark.parametrize(
    ("text", "byte_order"), [(True, "="), (False, "<"), (False, ">")], ids=["ascii", "le", "be"]
)
def test_ply_keeps_every_vertex_property_exactly(
    tmp_path: Path, text: bool, byte_order: str
) -> None:
    rng = np.random.default_rng(3)
    vertices = np.zeros(
        300, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("intensity", "f4"),
                    ("red", "u1"), ("ring", "u2"), ("t", "f8"), ("label", "i4")],
    )  # fmt: skip
    for axis in "xyz":
        vertices[axis] = rng.normal(scale=20, size=300)
    vertices["intensity"] = rng.random(300)
    vertices["red"] = rng.integers(0, 256, 300)
    vertices["ring"] = rng.integers(0, 128, 300)
    vertices["t"] = 1.7e9 + rng.random(300)
    vertices["label"] = rng.integers(-5, 40, 300)
    path = tmp_path / "scan.ply"
    element = plyfile.PlyElement.describe(vertices, "vertex")
    face = plyfile.PlyElement.describe(
        np.array([([0, 1, 2],)], dtype=[("vertex_indices", "i4", (3,))]), "face"
    )  # a mesh's faces are not points: left out
    plyfile.PlyData([element, face], text=text, byte_order=byte_order).write(str(path))

    cloud = read_any(path.read_bytes(), "scan.ply")
    assert [(f.name, f.type, f.size) for f in cloud.fields] == [
        ("x", "F", 4), ("y", "F", 4), ("z", "F", 4), ("intensity", "F", 4), ("red", "U", 1),
        ("ring", "U", 2), ("t", "F", 8), ("label", "I", 4),
    ]  # fmt: skip
    for name in vertices.dtype.names or ():
        assert np.array_equal(cloud.points[name], vertices[name]), name
    converted = read_pcd(write_pcd(cloud))
    assert np.array_equal(converted.points, cloud.points), "PLY -> PCD is lossless"
    if not text:  # open3d agrees on the positions
        positions = o3d.t.io.read_point_cloud(str(path)).point.positions.numpy()
        assert np.array_equal(np.stack([cloud.points[a] for a in "xyz"], 1), positions)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"ply\nformat ascii 1.0\nelement face 0\nend_header\n", "no vertex element"),
        (
            b"ply\nformat binary_little_endian 1.0\nelement vertex 10\nproperty float x\n"
            b"end_header\n\x00\x00",
            "not a readable PLY",
        ),
        (b"not a ply at all", "not a readable PLY"),
    ],
)
def test_a_broken_ply_is_a_clear_error(data: bytes, reason: str) -> None:
    with pytest.raises(PointCloudError, match=reason):
        read_any(data, "broken.ply")
