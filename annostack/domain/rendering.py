"""Bird's-eye-view previews and spatial tiles of point clouds (pure numpy, PNG via Pillow).

BEV: points are projected onto an N x N grid over their x/y extent; each pixel shows the
highest point (by height) or the brightest (by intensity). Sorting once by the colouring value
and letting later writes win gives "max per pixel" without a Python loop or `ufunc.at`.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from annostack.domain.pointclouds import PointCloud, PointCloudError

ColorBy = Literal["height", "intensity"]
# A perceptually ordered ramp (dark blue -> teal -> yellow), as viridis-like anchor colours.
RAMP = np.array(
    [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64
)


def _lut() -> np.ndarray:
    positions = np.linspace(0, 1, len(RAMP))
    steps = np.linspace(0, 1, 256)
    return np.stack([np.interp(steps, positions, RAMP[:, c]) for c in range(3)], 1).astype(np.uint8)


LUT = _lut()


def _finite_xyz(cloud: PointCloud) -> np.ndarray:
    names = cloud.points.dtype.names or ()
    if not {"x", "y", "z"} <= set(names):
        raise PointCloudError("the cloud has no x, y, z fields")
    mask: np.ndarray = np.isfinite(cloud.points["x"]) & np.isfinite(cloud.points["y"])
    mask &= np.isfinite(cloud.points["z"])
    if not mask.any():
        raise PointCloudError("the cloud has no finite points")
    return mask


def render_bev(cloud: PointCloud, size: int = 1024, color: ColorBy = "height") -> bytes:
    """A size x size PNG, north (+y) up."""
    if not 16 <= size <= 8192:
        raise PointCloudError(f"size {size} is out of range (16..8192)")
    mask = _finite_xyz(cloud)
    x = cloud.points["x"][mask].astype(np.float64)
    y = cloud.points["y"][mask].astype(np.float64)
    if color == "intensity":
        if "intensity" not in (cloud.points.dtype.names or ()):
            raise PointCloudError("the cloud has no intensity field")
        value = cloud.points["intensity"][mask].astype(np.float64)
    else:
        value = cloud.points["z"][mask].astype(np.float64)
    span = max(x.max() - x.min(), y.max() - y.min(), 1e-9)
    col = ((x - x.min()) / span * (size - 1)).astype(np.int64)
    row = ((y.max() - y) / span * (size - 1)).astype(np.int64)
    low, high = np.percentile(value, [1, 99])
    shade = np.clip((value - low) / max(high - low, 1e-9) * 255, 0, 255).astype(np.uint8)
    order = np.argsort(value, kind="stable")  # later (higher) values overwrite lower ones
    image = np.zeros((size * size, 3), dtype=np.uint8)
    image[(row * size + col)[order]] = LUT[shade[order]]
    out = io.BytesIO()
    # compress_level 1: previews are fetched once and cached; encoding time dominates otherwise.
    Image.fromarray(image.reshape(size, size, 3), "RGB").save(out, "PNG", compress_level=1)
    return out.getvalue()


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


def split_tiles(cloud: PointCloud, tile: float) -> list[tuple[Tile, PointCloud]]:
    """Square x/y tiles of `tile` metres; each a cloud of its points, with its bounds."""
    if tile <= 0:
        raise PointCloudError("tile size must be positive")
    mask = _finite_xyz(cloud)
    points = cloud.points[mask]
    ix = np.floor(points["x"] / tile).astype(np.int64)
    iy = np.floor(points["y"] / tile).astype(np.int64)
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
