"""BEV previews of synthetic scans: readability (lit pixels) and speed, beside matplotlib.

Scans from `tests/scans.py`: a 128-beam street frame resampled to exactly 1M points, the
64-beam frame (~124k points), a sparse 16-beam frame and a map tile in UTM coordinates.
For each: the lit fraction of the whole 1024² image and of its central quarter (middle half
of each axis), for our renderer, for the renderer it replaced (fitted to the x/y extent,
anchored top-left, one pixel per point; kept here as the "before") and, for the 1M-point
frame, for the top-down plot most people write first — matplotlib's `scatter` coloured by
height, rendered by Agg to 1024² (open3d's offscreen renderer needs EGL or Vulkan, which a
headless worker does not have). Times are best of ROUNDS, PNG bytes included. The pictures
go next to the JSON results (`bench/results/bev-<stamp>/`); docs/processing.md shows them.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
from PIL import Image

from annostack.domain.pointclouds import PointCloud
from annostack.domain.rendering import bev_metadata, render_bev
from bench.runner import RESULTS, Figures, benchmark
from tests.scans import exactly, map_tile, sparse_scan, street_scan

SIZE = 1024
ROUNDS = 3
POINTS = 1_000_000


def best(function: Callable[[], object], rounds: int = ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def lit_fractions(png: bytes) -> tuple[float, float]:
    """(whole image, central quarter) share of pixels that are not background."""
    with Image.open(io.BytesIO(png)) as image:
        if image.mode == "P":
            pixels = np.asarray(image) > 0
        else:
            rgb = np.asarray(image.convert("RGB")).astype(np.int16)
            background = rgb[0, 0]  # every renderer here leaves its corner empty
            pixels = np.abs(rgb - background).sum(axis=2) > 30
    quarter = pixels[SIZE // 4 : 3 * SIZE // 4, SIZE // 4 : 3 * SIZE // 4]
    return round(float(pixels.mean()), 4), round(float(quarter.mean()), 4)


def before(cloud: PointCloud) -> bytes:
    """The renderer this replaced: x/y extent fitted into the square, anchored top-left."""
    x = cloud.points["x"].astype(np.float64)
    y = cloud.points["y"].astype(np.float64)
    z = cloud.points["z"].astype(np.float64)
    span = max(x.max() - x.min(), y.max() - y.min(), 1e-9)
    col = ((x - x.min()) / span * (SIZE - 1)).astype(np.int64)
    row = ((y.max() - y) / span * (SIZE - 1)).astype(np.int64)
    low, high = np.percentile(z, [1, 99])
    shade = np.clip((z - low) / max(high - low, 1e-9) * 255, 0, 255).astype(np.uint8)
    image = np.zeros(SIZE * SIZE, dtype=np.uint8)
    image[row * SIZE + col] = np.maximum(shade, 1)
    out = io.BytesIO()
    Image.fromarray(image.reshape(SIZE, SIZE), "L").convert("P").save(out, "PNG")
    return out.getvalue()


def matplotlib_top_down(cloud: PointCloud, range_metres: float = 50.0) -> bytes:
    """plt.scatter(x, y, c=z) on a dark square, same 100 m window, 1024² at 100 dpi."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure = plt.figure(figsize=(SIZE / 100, SIZE / 100), dpi=100, facecolor="black")
    axes = figure.add_axes((0, 0, 1, 1), facecolor="black")
    axes.scatter(
        cloud.points["x"], cloud.points["y"], c=cloud.points["z"], s=0.05, cmap="turbo",
        linewidths=0, vmin=-1.8, vmax=4.2,
    )  # fmt: skip
    axes.set_xlim(-range_metres, range_metres)
    axes.set_ylim(-range_metres, range_metres)
    axes.set_axis_off()
    out = io.BytesIO()
    figure.savefig(out, format="png", facecolor="black")
    plt.close(figure)
    return out.getvalue()


@benchmark("bev")
def bev_bench() -> Figures:
    pictures = RESULTS / f"bev-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    pictures.mkdir(parents=True, exist_ok=True)
    dense = exactly(street_scan(beams=128, azimuths=8192), POINTS)
    scans = {"street": street_scan(), "sparse": sparse_scan(), "map-tile": map_tile()}
    figures: Figures = {"size": SIZE, "range_metres": 50.0}

    ours = render_bev(dense, SIZE)
    mpl = matplotlib_top_down(dense)
    old = before(dense)
    for name, png in [("ours", ours), ("matplotlib", mpl), ("before", old)]:
        (pictures / f"street-1m-{name}.png").write_bytes(png)
        whole, quarter = lit_fractions(png)
        figures[f"street_1m_{name}_lit"] = whole
        figures[f"street_1m_{name}_central_quarter_lit"] = quarter
    figures["street_1m_points"] = len(dense)
    figures["street_1m_ours_seconds"] = round(best(lambda: render_bev(dense, SIZE)), 3)
    figures["street_1m_matplotlib_seconds"] = round(best(lambda: matplotlib_top_down(dense), 1), 3)
    figures["street_1m_before_seconds"] = round(best(lambda: before(dense)), 3)
    figures["target_seconds"] = 0.25
    figures["street_1m_ours_png_kib"] = round(len(ours) / 1024, 1)

    for name, cloud in scans.items():
        for color in ("height", "intensity"):
            png = render_bev(cloud, SIZE, color)
            (pictures / f"{name}-{color}.png").write_bytes(png)
        whole, quarter = lit_fractions(png)
        meta = bev_metadata(png)
        figures[f"{name}_points"] = len(cloud)
        figures[f"{name}_lit"], figures[f"{name}_central_quarter_lit"] = whole, quarter
        figures[f"{name}_centred_on"] = meta.centred_on
        figures[f"{name}_splat_pixels"] = meta.splat_pixels
        figures[f"{name}_before_lit"] = lit_fractions(before(cloud))[0]
    figures["pictures"] = str(pictures)
    return figures
