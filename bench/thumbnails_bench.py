"""Image thumbnails on ONE core: Pillow (with and without JPEG DCT scaling) beside libvips.

The photo is the one the earlier figures used (1920x1080, quality 90, ~450 KB). Every figure
is images per second on one core (the process is pinned to one CPU and libvips is told to
use one thread), best of ROUNDS, in the same run:

* 400 px, the issue's figure: Pillow with `draft` (DCT scaling: the decoder produces 1/4
  scale directly), Pillow decoding the full image, and pyvips' `thumbnail_buffer` (libvips'
  shrink-on-load, the same DCT scaling) with `jpegsave_buffer`;
* what a worker does per image: 200, 400 and 800 px — before, three separate thumbnails
  (three decodes), now `thumbnails` (one decode at the largest size, the others resized).
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

from bench.runner import Figures, benchmark

ROUNDS = 3
COUNT = 150
SIZES = (200, 400, 800)


def photo() -> bytes:
    rng = np.random.default_rng(5)
    noise = rng.integers(0, 255, size=(1080, 1920, 3), dtype=np.uint8)
    pixels = np.asarray(Image.fromarray(noise).resize((480, 270)).resize((1920, 1080)))
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def per_second(function: Callable[[], object]) -> float:
    best = 0.0
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(COUNT):
            function()
        best = max(best, COUNT / (time.perf_counter() - started))
    return round(best, 1)


def pillow_full_decode(data: bytes, size: int) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        image.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG", quality=85)
    return out.getvalue()


@benchmark("thumbnails")
def thumbnails_bench() -> Figures:
    os.environ["VIPS_CONCURRENCY"] = "1"  # read when libvips starts: before the import
    cpu = sorted(os.sched_getaffinity(0))[-1]
    os.sched_setaffinity(0, {cpu})
    import pyvips

    from annostack.domain.images import thumbnail, thumbnails

    pyvips.cache_set_max(0)  # no cached decode between rounds
    data = photo()

    def vips() -> bytes:
        image = pyvips.Image.thumbnail_buffer(data, 400)
        return bytes(image.jpegsave_buffer(Q=85))

    sizes = {Image.open(io.BytesIO(vips())).size, Image.open(io.BytesIO(thumbnail(data))).size}
    assert sizes == {(400, 225)}, sizes
    return {
        "photo_kb": round(len(data) / 1024),
        "core": cpu,
        "pillow_draft_400_per_second": per_second(lambda: thumbnail(data, 400)),
        "pillow_full_decode_400_per_second": per_second(lambda: pillow_full_decode(data, 400)),
        "pyvips_400_per_second": per_second(vips),
        "libvips_version": ".".join(str(pyvips.version(n)) for n in range(3)),
        "target_400_per_second": 250,
        "three_sizes_before_per_second": per_second(
            lambda: [thumbnail(data, size) for size in SIZES]
        ),
        "three_sizes_one_decode_per_second": per_second(lambda: thumbnails(data, SIZES)),
    }
