"""ASCII PCD of ~1M points (~40 MB) to binary_compressed: annostack vs open3d, same file.

Both read the file from disk and write the result to disk; the figure is wall time for
read + convert + write, best of ROUNDS, and the output sizes. Losslessness is checked: our
output, read back, equals the values open3d read from the ASCII input.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import open3d as o3d

from annostack.domain.pointclouds import read_pcd, write_pcd
from bench.runner import Figures, benchmark

POINTS = 1_000_000
ROUNDS = 3


def make_ascii_pcd(path: Path) -> None:
    rng = np.random.default_rng(11)
    xyz = rng.normal(scale=30.0, size=(POINTS, 3)).astype(np.float32)
    intensity = rng.random(POINTS).astype(np.float32)
    header = (
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS x y z intensity\n"
        "SIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\n"
        f"WIDTH {POINTS}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {POINTS}\nDATA ascii\n"
    )
    table = np.column_stack([xyz, intensity])
    with path.open("w") as out:
        out.write(header)
        np.savetxt(out, table, fmt="%.6f")


def best(function: object, rounds: int = ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        function()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times)


@benchmark("pointcloud")
def pointcloud_bench() -> Figures:
    work = Path(tempfile.mkdtemp(prefix="annostack-pcd-"))
    source = work / "cloud-ascii.pcd"
    make_ascii_pcd(source)
    ours_path, theirs_path = work / "ours.pcd", work / "open3d.pcd"

    def ours() -> None:
        ours_path.write_bytes(write_pcd(read_pcd(source.read_bytes()), "binary_compressed"))

    def theirs() -> None:
        cloud = o3d.t.io.read_point_cloud(str(source))
        o3d.t.io.write_point_cloud(str(theirs_path), cloud, compressed=True)

    ours_seconds, theirs_seconds = best(ours), best(theirs)
    reference = o3d.t.io.read_point_cloud(str(source))
    result = read_pcd(ours_path.read_bytes())
    lossless = bool(
        np.array_equal(
            np.stack([result.points[a] for a in "xyz"], axis=1), reference.point.positions.numpy()
        )
        and np.array_equal(result.points["intensity"], reference.point["intensity"].numpy()[:, 0])
    )
    return {
        "points": POINTS,
        "ascii_mb": round(source.stat().st_size / 1e6, 1),
        "annostack_seconds": round(ours_seconds, 3),
        "open3d_seconds": round(theirs_seconds, 3),
        "speedup": round(theirs_seconds / ours_seconds, 2),
        "target_speedup": 3.0,
        "annostack_output_mb": round(ours_path.stat().st_size / 1e6, 2),
        "open3d_output_mb": round(theirs_path.stat().st_size / 1e6, 2),
        "lossless_vs_open3d_reading": lossless,
    }


@benchmark("previews")
def previews_bench() -> Figures:
    """BEV of 1M points to a 2000x2000 PNG; 1920x1080 JPEG thumbnails to 400 px, one core."""
    import io

    from PIL import Image

    from annostack.domain.images import thumbnail
    from annostack.domain.pointclouds import Field, PointCloud
    from annostack.domain.rendering import render_bev

    rng = np.random.default_rng(5)
    fields = [Field(name, 4, "F", 1) for name in ("x", "y", "z", "intensity")]
    cloud = PointCloud(fields, np.empty(0), POINTS)
    points = np.empty(POINTS, dtype=cloud.dtype)
    for name in ("x", "y", "z", "intensity"):
        points[name] = rng.normal(scale=30, size=POINTS).astype(np.float32)
    cloud.points = points
    bev_seconds = best(lambda: render_bev(cloud, 2000, "height"))

    photo = rng.integers(0, 255, size=(1080, 1920, 3), dtype=np.uint8)
    photo = np.asarray(Image.fromarray(photo).resize((480, 270)).resize((1920, 1080)))  # photo-like
    jpeg = io.BytesIO()
    Image.fromarray(photo).save(jpeg, "JPEG", quality=90)
    data = jpeg.getvalue()
    count = 200
    started = time.perf_counter()
    for _ in range(count):
        thumbnail(data, 400)
    per_second = count / (time.perf_counter() - started)
    return {
        "bev_points": POINTS,
        "bev_2000px_seconds": round(bev_seconds, 3),
        "target_bev_seconds": 0.5,
        "thumbnails_1920x1080_to_400_per_second_one_core": round(per_second, 1),
        "target_thumbnails_per_second": 100,
    }
