"""BEV previews, tiles, voxel downsampling and thumbnails."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from annostack.cli import app
from annostack.domain.images import ImageError, thumbnail
from annostack.domain.pointclouds import PointCloudError, read_pcd, write_pcd
from annostack.domain.rendering import LUT, render_bev, split_tiles, voxel_downsample
from tests.unit.test_pointclouds import sample_cloud


def test_bev_shows_the_highest_point_of_each_pixel() -> None:
    cloud = sample_cloud(4)
    points = cloud.points
    points["x"], points["y"] = [0, 0, 10, 10], [0, 0, 10, 10]
    points["z"] = [-5, 5, 0, 0]  # two points on one pixel: the higher one must show
    png = Image.open(io.BytesIO(render_bev(cloud, size=32)))
    assert png.size == (32, 32)
    pixels = np.asarray(png)
    # (x=0, y=0) is the bottom-left pixel; the higher point gets the top of the ramp.
    assert pixels[31, 0].tolist() == LUT[255].tolist(), "the low point must not hide the high one"
    assert not pixels[15, 15].any(), "empty pixels stay black"


def test_bev_refuses_clouds_without_points_to_draw() -> None:
    cloud = sample_cloud(3)
    cloud.points["x"] = np.nan
    with pytest.raises(PointCloudError, match="no finite points"):
        render_bev(cloud)


def test_tiles_partition_the_cloud_and_keep_fields() -> None:
    cloud = sample_cloud(2000)
    tiles = split_tiles(cloud, tile=10.0)
    finite = np.isfinite(cloud.points["x"]).sum()
    assert sum(meta.points for meta, _ in tiles) == finite
    for meta, part in tiles:
        assert part.dtype == cloud.dtype
        assert meta.bounds[0] <= float(np.nanmin(part.points["x"]))
        assert float(np.nanmax(part.points["x"])) - meta.bounds[0] < 10.0 + 1e-3


def test_voxel_downsample_keeps_real_points() -> None:
    cloud = sample_cloud(2000)
    down = voxel_downsample(cloud, voxel=5.0)
    assert 0 < len(down) < len(cloud)
    originals = {tuple(r) for r in cloud.points[["x", "y", "z"]].tolist()}
    assert all(tuple(r) in originals for r in down.points[["x", "y", "z"]].tolist())


def test_cli_split_writes_tiles_and_an_index(tmp_path: Path) -> None:
    source = tmp_path / "in.pcd"
    source.write_bytes(write_pcd(sample_cloud(3000)))
    out = tmp_path / "tiles"
    result = CliRunner().invoke(app, ["pcd", "split", str(source), str(out), "--tile", "20"])
    assert result.exit_code == 0, result.output
    index = json.loads((out / "index.json").read_text())
    assert sum(t["points"] for t in index["tiles"]) == len(read_pcd(source.read_bytes())) - 60
    for entry in index["tiles"]:
        assert len(read_pcd((out / entry["file"]).read_bytes())) == entry["points"]


def test_thumbnail_keeps_aspect_and_refuses_garbage() -> None:
    image = Image.new("RGB", (1920, 1080), (200, 10, 10))
    raw = io.BytesIO()
    image.save(raw, "JPEG")
    thumb = Image.open(io.BytesIO(thumbnail(raw.getvalue(), 400)))
    assert thumb.size == (400, 225)
    with pytest.raises(ImageError, match="not a readable image"):
        thumbnail(b"\xff\xd8 not really a jpeg")
