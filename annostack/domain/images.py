"""Image thumbnails (Pillow): JPEG, PNG, TIFF, WebP and BMP in, JPEG out.

For JPEG, `draft` asks the decoder to produce a 1/2, 1/4 or 1/8 scaled image directly from
the DCT coefficients, so a 1920x1080 photo is decoded at about 480x270 instead of in full:
most of the time of a thumbnail is decoding, and this skips most of it.

Thumbnails are shown the way up the camera meant: the EXIF orientation (phones store
portrait photos as landscape pixels plus an orientation tag) is applied, then dropped.
High-bit-depth images (16-bit TIFF, float) are stretched to 8 bits over their own range;
Pillow's plain conversion would clip them to white.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 200_000_000  # Pillow's decompression-bomb guard, made explicit
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I", "F")


class ImageError(ValueError):
    """The input is not an image we can read; the message says why."""


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
    if not 16 <= size <= 4096:
        raise ImageError(f"size {size} is out of range (16..4096)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise ImageError(f"{image.width}x{image.height} is too large to thumbnail")
            # Ask the decoder for the final box, not size x size: for a 16:9 photo that lets
            # it scale by 1/4 instead of 1/2 (draft keeps both edges at least this large).
            scale = size / max(image.width, image.height)
            image.draft("RGB", (int(image.width * scale) + 1, int(image.height * scale) + 1))
            image.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
            upright = ImageOps.exif_transpose(image)
            out = io.BytesIO()
            _eight_bit(upright).save(out, "JPEG", quality=quality, optimize=False)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise ImageError(f"not a readable image: {error}") from error
    return out.getvalue()
