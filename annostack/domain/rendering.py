"""Bird's-eye-view previews and spatial tiles of point clouds (pure numpy, PNG via Pillow).

BEV, what an annotator expects to see in a list view:

* **Square and metric.** The image covers ``2 * range_metres`` on each side, centred on the
  sensor origin (the PCD VIEWPOINT's translation, (0, 0) for most scans) — or, when the origin
  lies outside the cloud's x/y bounds (a map tile in world coordinates), on the cloud's centre
  (the middle of its 1st to 99th percentile box, so stray points do not move it). +x is to the
  right, +y up. The scale and the centre are written into the PNG (`BevMetadata`, text chunk
  ``annostack:bev``) so a front end can draw boxes on it; pixel (col, row) covers
  ``x = left + col * m``, ``y = top - row * m`` with ``m`` metres per pixel.
* **Splatted.** Every point is drawn as a square of ``2 * splat + 1`` pixels (a grey-scale
  dilation of the per-pixel maximum, so the highest point of a neighbourhood wins): 3 px at
  1024 px, 5 px when the cloud is sparse (`splat_radius`), so a ring is still a line when the
  image is shown at 200 px in a list.
* **A fixed ramp.** By height: 0 at the ground (the 1st percentile of the z values in view) to
  `HEIGHT_SPAN_METRES` above it, clipped — the same colour means the same height above the road
  in every frame. By intensity: the sensor's full scale (1.0 for float reflectance, 255 for
  8-bit, 65535 for LAS's 16-bit), square-rooted because most returns are dark. Each pixel shows
  the highest (or brightest) of its points. `RAMP` lists the anchor colours.
* **Transparent background.** An 8-bit palette PNG: index 0 is transparent (its colour, dark
  slate, shows where transparency is ignored), indices 1 to 255 are the ramp. Palette PNGs are
  a quarter of the size of RGBA ones and encode in a third of the time.

Per-pixel maxima come from one `np.maximum.at` over uint8 shades (no sort, no Python loop).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, PngImagePlugin
from pydantic import Field

from annostack.domain.models import CamelModel
from annostack.domain.pointclouds import PointCloud, PointCloudError

ColorBy = Literal["height", "intensity"]
DEFAULT_RANGE_METRES = 50.0
HEIGHT_SPAN_METRES = 6.0  # ground to a first-floor balcony: cars, people, poles all separate
METADATA_KEY = "annostack:bev"
BACKGROUND = (14, 17, 24)  # dark slate, for viewers that ignore transparency
# Anchor colours of the ramp, low to high; bright at the low end because most points are
# ground and must stand out against the dark background.
RAMP = np.array(
    [
        [52, 101, 228],  # 0.00 blue: ground
        [32, 196, 214],  # 0.25 cyan: kerbs, low vegetation
        [112, 222, 82],  # 0.50 green: car roofs, people
        [250, 204, 44],  # 0.75 amber: vans, signs
        [238, 64, 52],  # 1.00 red: at or above the span (walls, trees)
    ],
    dtype=np.float64,
)
LEVELS = 255  # shades 1..255; 0 is "no point here"


def _palette() -> np.ndarray:
    positions = np.linspace(0, 1, len(RAMP))
    steps = np.linspace(0, 1, LEVELS)
    ramp = np.stack([np.interp(steps, positions, RAMP[:, c]) for c in range(3)], 1)
    return np.vstack([np.array(BACKGROUND, dtype=np.float64), ramp]).round().astype(np.uint8)


PALETTE = _palette()  # 256 x RGB; PALETTE[0] is the (transparent) background


class BevMetadata(CamelModel):
    """What the PNG says about itself (JSON in its ``annostack:bev`` text chunk)."""

    size: int = Field(description="Width and height in pixels.")
    metres_per_pixel: float
    range_metres: float = Field(description="Centre to edge, in metres.")
    centre_x: float = Field(description="World x of the image centre.")
    centre_y: float = Field(description="World y of the image centre.")
    centred_on: Literal["sensor", "cloud"]
    color_by: ColorBy
    value_low: float = Field(description="Value shown by the first ramp colour.")
    value_high: float = Field(description="Value shown by the last ramp colour (and above).")
    points_drawn: int
    splat_pixels: int = Field(description="Half-width of each point's square.")

    @property
    def left(self) -> float:
        return self.centre_x - self.range_metres

    @property
    def top(self) -> float:
        return self.centre_y + self.range_metres


@dataclass(frozen=True)
class _View:
    centre_x: float
    centre_y: float
    centred_on: Literal["sensor", "cloud"]
    range_metres: float
    size: int

    @property
    def metres_per_pixel(self) -> float:
        return 2 * self.range_metres / self.size


def _finite_xyz(cloud: PointCloud) -> np.ndarray:
    names = cloud.points.dtype.names or ()
    if not {"x", "y", "z"} <= set(names):
        raise PointCloudError("the cloud has no x, y, z fields")
    mask: np.ndarray = np.isfinite(cloud.points["x"]) & np.isfinite(cloud.points["y"])
    mask &= np.isfinite(cloud.points["z"])
    if not mask.any():
        raise PointCloudError("the cloud has no finite points")
    return mask


def _view(
    x: np.ndarray, y: np.ndarray, origin: tuple[float, float], range_m: float, size: int
) -> _View:
    ox, oy = origin
    if x.min() <= ox <= x.max() and y.min() <= oy <= y.max():
        return _View(ox, oy, "sensor", range_m, size)
    (x1, x99), (y1, y99) = np.percentile(x, [1, 99]), np.percentile(y, [1, 99])
    return _View(float(x1 + x99) / 2, float(y1 + y99) / 2, "cloud", range_m, size)


def _pixels(x: np.ndarray, y: np.ndarray, view: _View) -> tuple[np.ndarray, np.ndarray]:
    """Flat pixel index of every point in view, and which points those are."""
    scale = 1.0 / view.metres_per_pixel
    col = np.floor((x - (view.centre_x - view.range_metres)) * scale)
    row = np.floor(((view.centre_y + view.range_metres) - y) * scale)
    inside = (col >= 0) & (col < view.size) & (row >= 0) & (row < view.size)
    index = row[inside].astype(np.int64) * view.size + col[inside].astype(np.int64)
    return index, inside


def _shades(
    cloud: PointCloud, mask: np.ndarray, inside: np.ndarray, color: ColorBy
) -> tuple[np.ndarray, float, float]:
    """Ramp index 1..255 of every point in view, and the values at both ends of the ramp."""
    if color == "intensity":
        if "intensity" not in (cloud.points.dtype.names or ()):
            raise PointCloudError("the cloud has no intensity field")
        raw = cloud.points["intensity"][mask][inside]
        high = _intensity_scale(raw)
        unit = np.sqrt(np.clip(raw.astype(np.float32) / high, 0, 1))
        low = 0.0
    else:
        z = cloud.points["z"][mask][inside].astype(np.float32)
        low = float(np.percentile(z, 1))
        high = low + HEIGHT_SPAN_METRES
        unit = np.clip((z - low) / HEIGHT_SPAN_METRES, 0, 1)
    return (1 + unit * (LEVELS - 1)).astype(np.uint8), low, high


def _intensity_scale(values: np.ndarray) -> float:
    """The sensor's full scale: by the field's type, or by its values for float fields."""
    if values.dtype == np.uint8:
        return 255.0
    if values.dtype.kind in "ui":
        return 65535.0
    peak = float(values.max())
    return 1.0 if peak <= 1.0 else 255.0 if peak <= 255.0 else 65535.0


def _dilate(image: np.ndarray, radius: int) -> np.ndarray:
    """Grey-scale dilation by a (2r+1)^2 square: each point becomes a square, highest wins."""
    out = image
    for axis in (0, 1):
        spread = out.copy()
        for shift in range(1, radius + 1):
            if axis == 0:
                np.maximum(spread[shift:], out[:-shift], out=spread[shift:])
                np.maximum(spread[:-shift], out[shift:], out=spread[:-shift])
            else:
                np.maximum(spread[:, shift:], out[:, :-shift], out=spread[:, shift:])
                np.maximum(spread[:, :-shift], out[:, shift:], out=spread[:, :-shift])
        out = spread
    return out


# A split writes one object per tile: 10,000 tiles of 50 m cover 25 km², far more than a sweep
# or a mapped street, and bound what one uploaded file can make a worker write.
MAX_TILES = 10_000
TILE_NUMBER_SPAN = 2**31  # tile numbers stay within ±2**30, so x * SPAN + y fits in int64
SPARSE_FRACTION = 0.01  # below this share of pixels hit, points are drawn one pixel wider


def splat_radius(size: int, hit_pixels: int) -> int:
    """One pixel each side per 1024 px, so a 3 px ring is still a line shown at a quarter of
    that size; one more for sparse clouds (a 16-beam scan hits well under 1 % of pixels)."""
    radius = max(1, round(size / 1024))
    return radius + 1 if hit_pixels < SPARSE_FRACTION * size * size else radius


def render_bev(
    cloud: PointCloud,
    size: int = 1024,
    color: ColorBy = "height",
    range_metres: float = DEFAULT_RANGE_METRES,
) -> bytes:
    """A size x size palette PNG with transparent background and `BevMetadata` inside."""
    if not 16 <= size <= 8192:
        raise PointCloudError(f"size {size} is out of range (16..8192)")
    if not 1.0 <= range_metres <= 100_000.0:
        raise PointCloudError(f"range {range_metres} m is out of range (1..100000)")
    mask = _finite_xyz(cloud)
    x = cloud.points["x"][mask].astype(np.float64)
    y = cloud.points["y"][mask].astype(np.float64)
    view = _view(x, y, (cloud.viewpoint[0], cloud.viewpoint[1]), range_metres, size)
    index, inside = _pixels(x, y, view)
    image = np.zeros(size * size, dtype=np.uint8)
    low = high = 0.0
    if index.size:
        shade, low, high = _shades(cloud, mask, inside, color)
        np.maximum.at(image, index, shade)
    radius = splat_radius(size, int(np.count_nonzero(image)))
    pixels = _dilate(image.reshape(size, size), radius)
    metadata = BevMetadata(
        size=size,
        metres_per_pixel=view.metres_per_pixel,
        range_metres=range_metres,
        centre_x=view.centre_x,
        centre_y=view.centre_y,
        centred_on=view.centred_on,
        color_by=color,
        value_low=low,
        value_high=high,
        points_drawn=int(index.size),
        splat_pixels=radius,
    )
    return _png(pixels, metadata)


def _png(pixels: np.ndarray, metadata: BevMetadata) -> bytes:
    png = Image.fromarray(pixels, "P")
    png.putpalette(PALETTE.tobytes())
    info = PngImagePlugin.PngInfo()
    info.add_text(METADATA_KEY, metadata.model_dump_json(by_alias=True))
    out = io.BytesIO()
    # compress_level 1: previews are fetched once and cached; encoding time dominates otherwise.
    png.save(out, "PNG", compress_level=1, transparency=0, pnginfo=info)
    return out.getvalue()


def bev_metadata(png: bytes) -> BevMetadata:
    """The metadata a BEV PNG carries (what a front end reads to overlay boxes)."""
    with Image.open(io.BytesIO(png)) as image:
        text = image.info.get(METADATA_KEY)
    if not isinstance(text, str):
        raise PointCloudError("the PNG has no annostack:bev metadata")
    return BevMetadata.model_validate_json(text)


@dataclass(frozen=True)
class Tile:
    name: str
    points: int
    bounds: tuple[float, float, float, float, float, float]  # min x, y, z, max x, y, z


def voxel_downsample(cloud: PointCloud, voxel: float) -> PointCloud:
    """One real point (the first) per voxel: every field of the kept points stays exact."""
    if voxel <= 0:
        raise PointCloudError("voxel size must be positive")
    mask = _finite_xyz(cloud)
    points = cloud.points[mask]
    keys = np.floor(np.stack([points[a] for a in "xyz"], 1) / voxel).astype(np.int64)
    _, first = np.unique(keys, axis=0, return_index=True)
    kept = points[np.sort(first)]
    return PointCloud(cloud.fields, kept, len(kept), 1, cloud.viewpoint)


def split_tiles(
    cloud: PointCloud, tile: float, max_tiles: int = MAX_TILES
) -> list[tuple[Tile, PointCloud]]:
    """Square x/y tiles of `tile` metres; each a cloud of its points, with its bounds.

    A cloud spread over more than `max_tiles` tiles is refused, not split: each tile is an
    object written to the bucket, and a file of noise read as floats (a mislabelled `.bin`)
    would otherwise become one object per point.
    """
    if tile <= 0:
        raise PointCloudError("tile size must be positive")
    mask = _finite_xyz(cloud)
    points = cloud.points[mask]
    ix, iy = (_tile_numbers(points[axis], tile, axis) for axis in "xy")
    occupied = len(np.unique(ix * TILE_NUMBER_SPAN + iy))
    if occupied > max_tiles:
        raise PointCloudError(
            f"the cloud covers {occupied:,} tiles of {tile:g} m, more than the {max_tiles:,} "
            f"a split writes (x from {points['x'].min():.3g} to {points['x'].max():.3g} m, "
            f"y from {points['y'].min():.3g} to {points['y'].max():.3g} m): not a LiDAR sweep "
            "in metres?"
        )
    order = np.lexsort((iy, ix))
    ix, iy, points = ix[order], iy[order], points[order]
    starts = np.flatnonzero(np.r_[True, (np.diff(ix) != 0) | (np.diff(iy) != 0)])
    tiles = []
    for start, end in zip(starts, [*starts[1:], len(points)], strict=True):
        part = points[start:end]
        xyz = np.stack([part[a] for a in "xyz"], 1).astype(np.float64)
        low, high = xyz.min(0), xyz.max(0)
        bounds = (
            float(low[0]), float(low[1]), float(low[2]),
            float(high[0]), float(high[1]), float(high[2]),
        )  # fmt: skip
        name = f"tile_{ix[start]}_{iy[start]}"
        tiles.append((Tile(name, len(part), bounds), PointCloud(cloud.fields, part, len(part), 1)))
    return tiles


def _tile_numbers(values: np.ndarray, tile: float, axis: str) -> np.ndarray:
    """Which tile along one axis each point is in; coordinates too far out are refused (they
    would wrap around in int64, and no sensor measures them)."""
    numbers = np.floor(values.astype(np.float64) / tile)
    if len(numbers) and np.abs(numbers).max() >= TILE_NUMBER_SPAN // 2:
        far = float(np.abs(values).max())
        raise PointCloudError(f"{axis} reaches {far:.3g} m: too far out to split into tiles")
    tiles: np.ndarray = numbers.astype(np.int64)
    return tiles


def tile_index(tiles: list[Tile], tile: float, voxel: float | None) -> bytes:
    return json.dumps(
        {
            "tileSizeMetres": tile,
            "voxelSizeMetres": voxel,
            "tiles": [
                {
                    "file": f"{t.name}.pcd",
                    "points": t.points,
                    "min": t.bounds[:3],
                    "max": t.bounds[3:],
                }
                for t in tiles
            ],
        },
        indent=2,
    ).encode()
