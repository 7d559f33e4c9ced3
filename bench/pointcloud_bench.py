"""ASCII PCD of ~1M points (~40 MB) to binary_compressed: annostack vs open3d, same file.

Ours three ways in the same run: Arrow's CSV reader on all cores (the default), on one core
(a worker pod limited to one CPU), and numpy's `loadtxt` (the parser before, for the ratio).

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

from annostack.domain import pointclouds
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
        cloud = o3d.t.io.read_point_cloud(source)
        o3d.t.io.write_point_cloud(theirs_path, cloud, compressed=True)

    ours_seconds, theirs_seconds = best(ours), best(theirs)
    pointclouds.ARROW_THREADS = False  # what a worker pod limited to one core gets
    ours_one_core = best(ours)
    pointclouds.ARROW_THREADS = True
    arrow = pointclouds._read_ascii_arrow
    pointclouds._read_ascii_arrow = lambda *_: None
    numpy_parser = best(ours)  # the parser before Arrow's: numpy's loadtxt
    pointclouds._read_ascii_arrow = arrow
    reference = o3d.t.io.read_point_cloud(source)
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
        "annostack_one_core_seconds": round(ours_one_core, 3),
        "speedup_one_core": round(theirs_seconds / ours_one_core, 2),
        "before_numpy_loadtxt_seconds": round(numpy_parser, 3),
        "before_speedup": round(theirs_seconds / numpy_parser, 2),
        "target_speedup": 6.0,
        "annostack_output_mb": round(ours_path.stat().st_size / 1e6, 2),
        "open3d_output_mb": round(theirs_path.stat().st_size / 1e6, 2),
        "lossless_vs_open3d_reading": lossless,
    }
