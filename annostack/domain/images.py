"""Image thumbnails (Pillow): JPEG, PNG, TIFF, WebP and BMP in, JPEG out.

libvips (pyvips) was measured as the alternative and was slower for this job on the same
core (docs/benchmarks.md): its per-call pipeline set-up costs more than it saves on a
1080p photo, and both end up in libjpeg-turbo's Huffman decoder, which is the floor.

For JPEG, `draft` asks the decoder to produce a 1/2, 1/4 or 1/8 scaled image directly from
the DCT coefficients, so a 1920x1080 photo is decoded at about 480x270 instead of in full:
most of the time of a thumbnail is decoding, and this skips most of it.

Thumbnails are shown the way up the camera meant: the EXIF orientation (phones store
portrait photos as landscape pixels plus an orientation tag) is applied, then dropped. The
image's size is reported the same way (upright, at full resolution): it is what a viewer
shows and what 2D annotations drawn on that view are measured in, so a COCO export's
`width`/`height` and the thumbnails agree.
High-bit-depth images (16-bit TIFF, float) are stretched to 8 bits over their own range;
Pillow's plain conversion would clip them to white.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from annostack.domain.items import PixelSize

MAX_PIXELS = 200_000_000  # Pillow's decompression-bomb guard, made explicit
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I", "F")
# The EXIF orientations exif_transpose turns a quarter (transpose, rotate 270, transverse,
# rotate 90): the picture shown is as wide as the stored pixels are high.
QUARTER_TURNS = frozenset({5, 6, 7, 8})


class ImageError(ValueError):
    """The input is not an image we can read; the message says why."""


@dataclass(frozen=True)
class Thumbnails:
    """JPEGs by the box they fit in, and the size of the image they were made from."""

    jpegs: dict[int, bytes]
    size: PixelSize  # upright and at full resolution, not the decoder's draft


def upright(image: Image.Image, opened: tuple[int, int]) -> tuple[Image.Image, PixelSize]:
    """The image turned as its EXIF orientation says, and its full-resolution size so turned
    (`opened`: its size before `draft` decoded it smaller).

    The orientation is read as exif_transpose reads it, after loading: a TIFF turns itself
    upright as it opens and loads (its size is already upright, its tag gone by then), a
    JPEG or PNG is turned by exif_transpose."""
    image.load()
    width, height = opened
    if image.getexif().get(ExifTags.Base.Orientation, 1) in QUARTER_TURNS:
        width, height = height, width
    return ImageOps.exif_transpose(image), PixelSize(width=width, height=height)


def _eight_bit(image: Image.Image) -> Image.Image:
    """An 8-bit image for JPEG: wide grey modes stretched over their own range."""
    if image.mode not in WIDE_MODES:
        return image.convert("RGB")
    values = np.asarray(image, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) * (255.0 / max(high - low, 1e-9))
    return Image.fromarray(scaled.astype(np.uint8), "L").convert("RGB")


def thumbnail(data: bytes, size: int = 400, quality: int = 85) -> bytes:
    """A JPEG no larger than size x size, aspect ratio kept, upright."""
    return thumbnails(data, (size,), quality).jpegs[size]


def thumbnails(data: bytes, sizes: tuple[int, ...], quality: int = 85) -> Thumbnails:
    """JPEGs no larger than size x size for every size, from ONE decode, and the image's size.

    The decoder is asked for the largest box (DCT scaling for JPEG); each smaller size is
    resized from the next larger one. Decoding (Huffman and IDCT) is most of the cost, so
    three sizes cost little more than the largest alone.
    """
    if not sizes or not all(16 <= size <= 4096 for size in sizes):
        raise ImageError(f"sizes {sizes} are out of range (16..4096)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise ImageError(f"{image.width}x{image.height} is too large to thumbnail")
            opened = image.size  # before the draft, which decodes a JPEG smaller
            # Ask the decoder for the final box, not size x size: for a 16:9 photo that lets
            # it scale by 1/4 instead of 1/2 (draft keeps both edges at least this large).
            largest = max(sizes)
            scale = largest / max(image.width, image.height)
            image.draft("RGB", (int(image.width * scale) + 1, int(image.height * scale) + 1))
            current, shown = upright(image, opened)
            out: dict[int, bytes] = {}
            for size in sorted(set(sizes), reverse=True):
                current.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
                out[size] = _jpeg(_eight_bit(current), quality)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise ImageError(f"not a readable image: {error}") from error
    return Thumbnails(out, shown)


def _jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=False)
    return out.getvalue()
