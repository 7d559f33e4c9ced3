"""Synthetic point clouds that look like real ones: what previews are judged on.

* `street_scan`: a spinning LiDAR on a car roof (1.8 m) in a street between two building
  fronts at y = ±12 m, parked cars along both kerbs, a lamp post every 25 m; rays are cast
  against that scene and kept up to 120 m, as a 64/128-beam sensor returns them.
* `map_tile`: a 60 m tile of an aggregated map in UTM coordinates (float64, far from the
  origin), ground, two buildings and trees: the sensor origin is nowhere near it.
* `sparse_scan`: a 16-beam sensor in an open car park: a handful of rings and a few cars.

Deterministic for a seed; `x, y, z, intensity` float32 (float64 x/y for the map tile).
"""

from __future__ import annotations

import numpy as np

from annostack.domain.pointclouds import Field, PointCloud

SENSOR_HEIGHT = 1.8
WALL_Y = 12.0
WALL_HEIGHT = 10.0
MAX_RANGE = 120.0


def _boxes_street() -> np.ndarray:
    """Axis-aligned boxes (x0, y0, z0, x1, y1, z1) in sensor coordinates: cars and posts."""
    ground = -SENSOR_HEIGHT
    boxes = []
    for side in (-1, 1):
        for start in np.arange(-100.0, 100.0, 6.5):
            if (start * 7 + side * 3) % 5 < 1.2:  # gaps between parked cars
                continue
            y0 = side * 7.0 - 0.9
            boxes.append((start, y0, ground, start + 4.4, y0 + 1.8, ground + 1.5))
        for post in np.arange(-100.0, 101.0, 25.0):
            y0 = side * 10.5
            boxes.append((post, y0, ground, post + 0.25, y0 + 0.25, ground + 6.0))
    return np.array(boxes)


def _hit_boxes(directions: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Distance along each ray to the nearest box (slab method), inf where none is hit."""
    nearest = np.full(len(directions), np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = 1.0 / directions
    for box in boxes:
        t0 = box[:3] * inverse
        t1 = box[3:] * inverse
        near = np.minimum(t0, t1).max(axis=1)
        far = np.maximum(t0, t1).min(axis=1)
        hit = (far >= near) & (near > 0)
        nearest = np.where(hit & (near < nearest), near, nearest)
    return nearest


def _rays(elevations_deg: np.ndarray, azimuths: int) -> np.ndarray:
    elevation = np.radians(elevations_deg)[:, None]
    azimuth = np.linspace(0, 2 * np.pi, azimuths, endpoint=False)[None, :]
    directions = np.stack(
        [
            np.cos(elevation) * np.cos(azimuth),
            np.cos(elevation) * np.sin(azimuth),
            np.broadcast_to(np.sin(elevation), (elevation.shape[0], azimuths)),
        ],
        axis=-1,
    )
    return directions.reshape(-1, 3)


def _cloud(columns: dict[str, np.ndarray], wide_xy: bool = False) -> PointCloud:
    fields = [Field(n, 8 if wide_xy and n in "xy" else 4, "F", 1) for n in columns]
    cloud = PointCloud(fields, np.empty(0), len(columns["x"]))
    points = np.empty(len(columns["x"]), dtype=cloud.dtype)
    for name, values in columns.items():
        points[name] = values
    cloud.points = points
    return cloud


def _cast(
    directions: np.ndarray, boxes: np.ndarray, walls: bool, rng: np.random.Generator
) -> PointCloud:
    with np.errstate(divide="ignore", invalid="ignore"):
        ground = np.where(directions[:, 2] < 0, -SENSOR_HEIGHT / directions[:, 2], np.inf)
        wall = np.where(np.abs(directions[:, 1]) > 0, WALL_Y / np.abs(directions[:, 1]), np.inf)
    if walls:
        wall_z = wall * directions[:, 2]
        wall = np.where(wall_z < WALL_HEIGHT - SENSOR_HEIGHT, wall, np.inf)
    else:
        wall = np.full(len(directions), np.inf)
    box = _hit_boxes(directions, boxes) if len(boxes) else np.full(len(directions), np.inf)
    distance = np.minimum(np.minimum(ground, wall), box)
    kept = distance <= MAX_RANGE
    distance = distance[kept] + rng.normal(scale=0.02, size=int(kept.sum()))
    xyz = directions[kept] * distance[:, None]
    surface = np.select(
        [box[kept] <= distance + 0.1, wall[kept] <= distance + 0.1], [0.8, 0.5], 0.15
    )
    intensity = np.clip(surface + rng.normal(scale=0.05, size=len(xyz)), 0, 1)
    columns = {a: xyz[:, i].astype(np.float32) for i, a in enumerate("xyz")}
    return _cloud({**columns, "intensity": intensity.astype(np.float32)})


def street_scan(beams: int = 64, azimuths: int = 2048, seed: int = 1) -> PointCloud:
    """A spinning-LiDAR frame in a street (64 x 2048 rays: ~75k points)."""
    directions = _rays(np.linspace(-25.0, 15.0, beams), azimuths)
    return _cast(directions, _boxes_street(), walls=True, rng=np.random.default_rng(seed))


def sparse_scan(seed: int = 2) -> PointCloud:
    """A 16-beam frame (±15°, 2° apart, 0.2° azimuth steps) in an open car park."""
    directions = _rays(np.arange(-15.0, 16.0, 2.0), 1800)
    cars = np.array([(4.0, -3.0, -1.8, 8.4, -1.2, -0.3), (-9.0, 2.0, -1.8, -4.6, 3.8, -0.3)])
    return _cast(directions, cars, walls=False, rng=np.random.default_rng(seed))


def map_tile(points: int = 300_000, seed: int = 3) -> PointCloud:
    """60 m x 60 m of an aggregated map at UTM (352 100, 5 812 300), ground at ~48 m."""
    rng = np.random.default_rng(seed)
    east, north, edge = 352_100.0, 5_812_300.0, 60.0
    x = rng.uniform(0, edge, points)
    y = rng.uniform(0, edge, points)
    z = 48.0 + 0.02 * x + rng.normal(scale=0.03, size=points)  # a gentle slope
    intensity = rng.uniform(0.05, 0.3, points)
    for x0, y0, x1, y1, height in [(5, 35, 25, 55, 9.0), (38, 8, 56, 22, 14.0)]:
        roof = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
        z[roof] += height
        intensity[roof] = rng.uniform(0.4, 0.6, int(roof.sum()))
    for tx, ty in [(12, 12), (30, 40), (48, 45), (20, 26)]:
        crown = (x - tx) ** 2 + (y - ty) ** 2 < 9
        z[crown] += 5 + 2 * rng.random(int(crown.sum()))
    columns: dict[str, np.ndarray] = {"x": x + east, "y": y + north, "z": z.astype(np.float32)}
    return _cloud({**columns, "intensity": intensity.astype(np.float32)}, wide_xy=True)


def exactly(cloud: PointCloud, points: int, seed: int = 4) -> PointCloud:
    """The cloud resampled to exactly `points` points (for benchmarks at a fixed size)."""
    chosen = np.random.default_rng(seed).choice(len(cloud), points, replace=points > len(cloud))
    return PointCloud(cloud.fields, cloud.points[np.sort(chosen)], points)
