"""Image thumbnails (Pillow), with JPEG draft decoding.

For JPEG, `draft` asks the decoder to produce a 1/2, 1/4 or 1/8 scaled image directly from
the DCT coefficients, so a 1920x1080 photo is decoded at about 480x270 instead of in full:
most of the time of a thumbnail is decoding, and this skips most of it.
"""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

MAX_PIXELS = 200_000_000  # Pillow's decompression-bomb guard, made explicit


class ImageError(ValueError):
    """The input is not an image we can read; the message says why."""


def thumbnail(data: bytes, size: int = 400, quality: int = 85) -> bytes:
    """A JPEG no larger than size x size, aspect ratio kept."""
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
            out = io.BytesIO()
            image.convert("RGB").save(out, "JPEG", quality=quality, optimize=False)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise ImageError(f"not a readable image: {error}") from error
    return out.getvalue()
