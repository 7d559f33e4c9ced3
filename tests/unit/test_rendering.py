"""BEV previews (judged on synthetic scans), tiles, voxel downsampling and thumbnails."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from annostack.cli import app
from annostack.domain.images import QUARTER_TURNS, ImageError, thumbnail, thumbnails
from annostack.domain.items import PixelSize
from annostack.domain.pointclouds import PointCloudError, read_any, read_pcd, write_pcd
from annostack.domain.rendering import (
    DEFAULT_RANGE_METRES,
    PALETTE,
    RAMP,
    bev_metadata,
    render_bev,
    split_tiles,
    voxel_downsample,
)
from tests.scans import map_tile, sparse_scan, street_scan
from tests.unit.test_pointclouds import sample_cloud


def lit(png: bytes) -> np.ndarray:
    """Which pixels show a point (palette index 0 is the transparent background)."""
    with Image.open(io.BytesIO(png)) as image:
        assert image.mode == "P" and image.info["transparency"] == 0
        return np.asarray(image) > 0


def central_quarter(pixels: np.ndarray) -> np.ndarray:
    """The middle half of each axis: a quarter of the image, around its centre."""
    size = pixels.shape[0]
    return pixels[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4]


def test_a_street_scan_fills_the_image_around_the_sensor() -> None:
    png = render_bev(street_scan(), size=1024)
    pixels = lit(png)
    assert pixels.shape == (1024, 1024)
    assert pixels.mean() >= 0.05, "at least 5 % of the pixels show points"
    assert central_quarter(pixels).mean() >= 0.10, "the sensor's surroundings are drawn"
    meta = bev_metadata(png)
    assert (meta.centred_on, meta.centre_x, meta.centre_y) == ("sensor", 0.0, 0.0)
    assert meta.range_metres == DEFAULT_RANGE_METRES == 50.0
    assert meta.metres_per_pixel == pytest.approx(100 / 1024)
    # The walls at y = +-12 m are rows 512 -+ 12 / (100/1024): both are drawn, nothing beyond.
    wall_rows = [round(512 - wall / meta.metres_per_pixel) for wall in (12.0, -12.0)]
    for row in wall_rows:
        assert pixels[row - 2 : row + 3].mean() > 0.5, f"the wall at row {row} is a line"
    assert not pixels[: wall_rows[0] - 5].any() and not pixels[wall_rows[1] + 5 :].any()


def test_a_map_tile_far_from_the_origin_is_centred_on_itself() -> None:
    png = render_bev(map_tile(), size=512, range_metres=40.0)
    meta = bev_metadata(png)
    assert meta.centred_on == "cloud"
    assert meta.centre_x == pytest.approx(352_130.0, abs=1.0)
    assert meta.centre_y == pytest.approx(5_812_330.0, abs=1.0)
    assert meta.metres_per_pixel == pytest.approx(80 / 512)
    pixels = lit(png)
    # The 60 m tile is 384 of 512 px wide, in the middle; its ground is densely sampled.
    assert central_quarter(pixels).mean() > 0.95
    assert pixels.mean() == pytest.approx((60 / 80) ** 2, abs=0.05)


def test_a_sparse_scan_stays_visible_at_list_view_size() -> None:
    png = render_bev(sparse_scan(), size=1024)
    assert bev_metadata(png).splat_pixels == 2, "sparse clouds are drawn wider"
    with Image.open(io.BytesIO(png)) as image:
        small = image.convert("RGBA").resize((256, 256), Image.Resampling.BOX)
    opaque = np.asarray(small)[:, :, 3] >= 128
    assert opaque.mean() >= 0.03, "the rings are still solid lines at 256 px"


def test_bev_shows_the_highest_point_of_each_pixel() -> None:
    cloud = sample_cloud(4)
    points = cloud.points
    points["x"], points["y"] = [0, 0, 10, 10], [0, 0, 10, 10]
    points["z"] = [-5, 5, 0, 0]  # two points on one pixel: the higher one must show
    png = render_bev(cloud, size=32, range_metres=16.0)
    with Image.open(io.BytesIO(png)) as image:
        shades = np.asarray(image)
    # (0, 0) is the centre; the higher point is 10 m above the lowest: the top of the ramp.
    assert shades[16, 16] == 255, "the low point must not hide the high one"
    assert shades[16, 16] == shades[15, 15] == shades[17, 17], "each point is a 3x3 square"
    assert shades[0, 31] == 0, "empty pixels stay transparent"
    assert PALETTE[255].tolist() == RAMP[-1].tolist()


def test_intensity_uses_the_sensors_full_scale() -> None:
    cloud = sample_cloud(3)
    cloud.points["x"], cloud.points["y"], cloud.points["z"] = [0, 5, -5], [0, 5, -5], 0
    cloud.points["intensity"] = [0.0, 0.25, 1.0]  # float reflectance: full scale is 1.0
    png = render_bev(cloud, size=64, color="intensity", range_metres=10.0)
    with Image.open(io.BytesIO(png)) as image:
        shades = np.asarray(image)
    meta = bev_metadata(png)
    assert (meta.value_low, meta.value_high) == (0.0, 1.0)
    assert shades[32, 32] == 1 and shades[16, 48] == 128 and shades[48, 16] == 255


def test_bev_refuses_clouds_without_points_to_draw() -> None:
    cloud = sample_cloud(3)
    cloud.points["x"] = np.nan
    with pytest.raises(PointCloudError, match="no finite points"):
        render_bev(cloud)


def test_cli_render_takes_a_range_and_writes_it_into_the_png(tmp_path: Path) -> None:
    source, target = tmp_path / "scan.pcd", tmp_path / "bev.png"
    source.write_bytes(write_pcd(street_scan(beams=32, azimuths=1024)))
    result = CliRunner().invoke(
        app, ["pcd", "render", str(source), str(target), "--range", "30", "--size", "600"]
    )
    assert result.exit_code == 0, result.output
    meta = bev_metadata(target.read_bytes())
    assert (meta.size, meta.range_metres, meta.metres_per_pixel) == (600, 30.0, 0.1)


def test_tiles_partition_the_cloud_and_keep_fields() -> None:
    cloud = sample_cloud(2000)
    tiles = split_tiles(cloud, tile=10.0)
    finite = np.isfinite(cloud.points["x"]).sum()
    assert sum(meta.points for meta, _ in tiles) == finite
    for meta, part in tiles:
        assert part.dtype == cloud.dtype
        assert meta.bounds[0] <= float(np.nanmin(part.points["x"]))
        assert float(np.nanmax(part.points["x"])) - meta.bounds[0] < 10.0 + 1e-3


def test_a_split_refuses_more_tiles_than_its_limit() -> None:
    cloud = sample_cloud(2000)
    occupied = len(split_tiles(cloud, tile=10.0))
    assert len(split_tiles(cloud, tile=10.0, max_tiles=occupied)) == occupied
    with pytest.raises(PointCloudError, match=f"covers {occupied:,} tiles of 10 m"):
        split_tiles(cloud, tile=10.0, max_tiles=occupied - 1)


def test_noise_read_as_a_kitti_bin_is_refused_before_any_tile_is_made() -> None:
    # 9 MiB of random bytes as float32 x, y, z, intensity: what a mislabelled .bin gives.
    noise = np.random.default_rng(3).integers(0, 256, 9 * 2**20, dtype=np.uint8).tobytes()
    cloud = read_any(noise, "raw/sweep.bin")
    with pytest.raises(PointCloudError, match=r"x reaches 3\.4e\+38 m: too far out to split"):
        split_tiles(cloud, tile=50.0)


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


def test_thumbnails_are_upright_whatever_the_camera_stored() -> None:
    landscape = Image.new("RGB", (1600, 900), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view": a phone held upright
    raw = io.BytesIO()
    landscape.save(raw, "JPEG", exif=exif.tobytes())
    with Image.open(io.BytesIO(thumbnail(raw.getvalue(), 400))) as thumb:
        assert thumb.size == (225, 400), "portrait, as the photographer saw it"
        assert 0x0112 not in thumb.getexif(), "the orientation is applied, not passed on"


def photo(width: int, height: int, format_: str = "JPEG", orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    raw = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(raw, format_, exif=exif.tobytes())
    return raw.getvalue()


def test_thumbnails_report_the_full_size_not_the_decoders_draft() -> None:
    # JPEGs decoded at 1/8 for a 200 px box (240 x 135), one of them shown portrait.
    assert thumbnails(photo(1920, 1080), (200,)).size == PixelSize(width=1920, height=1080)
    portrait = photo(1920, 1080, orientation=6)
    assert thumbnails(portrait, (200,)).size == PixelSize(width=1080, height=1920)


@pytest.mark.parametrize("format_", ["JPEG", "PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_size_is_upright_as_the_thumbnails_are(format_: str, orientation: int) -> None:
    """Stored 64 x 48; the orientations that turn it a quarter show it 48 wide. The 800 px
    thumbnail is not enlarged, so it is the size recorded: the two agree on every tag."""
    made = thumbnails(photo(64, 48, format_, orientation), (200, 800))
    turned = orientation in QUARTER_TURNS
    assert made.size == (PixelSize(48, 64) if turned else PixelSize(64, 48))
    with Image.open(io.BytesIO(made.jpegs[800])) as largest:
        assert largest.size == (made.size.width, made.size.height)


@pytest.mark.parametrize("format_", ["PNG", "WEBP", "TIFF"])
def test_png_webp_and_tiff_thumbnails(format_: str) -> None:
    raw = io.BytesIO()
    Image.new("RGB", (800, 600), (10, 200, 10)).save(raw, format_)
    with Image.open(io.BytesIO(thumbnail(raw.getvalue(), 200))) as thumb:
        assert (thumb.format, thumb.size) == ("JPEG", (200, 150))


def test_a_16_bit_tiff_is_stretched_not_clipped_to_white() -> None:
    ramp = np.tile(np.linspace(1000, 4000, 256, dtype=np.uint16), (64, 1))  # 12-bit sensor data
    raw = io.BytesIO()
    Image.fromarray(ramp).save(raw, "TIFF")
    with Image.open(io.BytesIO(thumbnail(raw.getvalue(), 128))) as thumb:
        grey = np.asarray(thumb.convert("L")).astype(int)
    assert grey[:, :8].mean() < 30 and grey[:, -8:].mean() > 225, "dark to bright, left to right"
