"""Video and audio: what they are (duration, frame rate, size, sample rate, channels) and the
previews a list view shows (a video's poster frame and frame thumbnails, an audio waveform).

PyAV (FFmpeg's libraries, bundled in its wheel) is used here and nowhere else; every error it
raises for a bad file becomes a `MediaError` that says what is wrong. Files are read from
memory (the worker holds the object it fetched), never from a path.

* Duration comes from the container's header when it has one, else from the stream, else
  from what was decoded; for audio it is counted from the decoded samples, exactly.
* The poster frame is the first frame at or after 10 % of the duration (the first frames of
  a recording are often black or a slate); frame thumbnails are `FRAME_COUNT` frames evenly
  spaced over the duration, each found by seeking to the nearest keyframe before it.
* The waveform is the min/max envelope over all channels (not a down-mix, which would
  scale a stereo signal by 1/sqrt(2)), one column per `WAVEFORM_WIDTH`-th of the file,
  drawn as a palette PNG on a transparent background; peaks are kept per block of `BLOCK`
  samples while decoding, so an hour of audio needs a few MB, not gigabytes.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import av.container
import numpy as np
from PIL import Image

from annostack.domain.derived import FRAME_COUNT
from annostack.domain.models import CamelModel

POSTER_AT = 0.10
POSTER_MAX_EDGE = 1280
WAVEFORM_WIDTH, WAVEFORM_HEIGHT = 1024, 200
BLOCK = 256  # samples per min/max pair kept while decoding
WAVE_COLOUR = (52, 101, 228)  # the BEV ramp's ground blue
MAX_DECODED_SECONDS = 6 * 3600  # beyond any recording we annotate; a bigger claim is corrupt


class MediaError(ValueError):
    """The input is not a video or audio file we can read; the message says why."""


class VideoInfo(CamelModel):
    kind: str = "video"
    duration_seconds: float
    frame_rate: float | None
    width: int
    height: int
    codec: str
    frames: int | None = None  # as the container says; None when it does not
    has_audio: bool


class AudioInfo(CamelModel):
    kind: str = "audio"
    duration_seconds: float
    sample_rate: int
    channels: int
    codec: str


@dataclass(frozen=True)
class VideoPreview:
    info: VideoInfo
    poster: Image.Image
    frames: list[tuple[float, Image.Image]]  # (seconds, frame)


def _open(data: bytes) -> av.container.InputContainer:
    try:
        return av.open(io.BytesIO(data), mode="r")
    except (av.FFmpegError, ValueError, OSError) as error:
        raise MediaError(f"not a readable media file: {error}") from error


def _seconds(value: int | None, base: Fraction | None) -> float | None:
    return float(value * base) if value is not None and base is not None else None


def _rate(rate: Fraction | None) -> float | None:
    return round(float(rate), 3) if rate else None


def video_preview(data: bytes) -> VideoPreview:
    """Metadata, poster frame and evenly spaced frames of a video."""
    with _open(data) as container:
        if not container.streams.video:
            raise MediaError("the file has no video stream")
        stream = container.streams.video[0]
        duration = _container_seconds(container) or _seconds(stream.duration, stream.time_base)
        try:
            times = _frame_times(duration or 0.0)
            frames = [(at, _frame_at(container, stream, at)) for at in times]
        except (av.FFmpegError, ValueError, OSError) as error:
            raise MediaError(f"the video could not be decoded: {error}") from error
        info = VideoInfo(
            duration_seconds=round(duration or frames[-1][0], 3),
            frame_rate=_rate(stream.average_rate or stream.guessed_rate),
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            codec=stream.codec_context.name,
            frames=stream.frames or None,
            has_audio=bool(container.streams.audio),
        )
    poster = frames[0][1]
    poster.thumbnail((POSTER_MAX_EDGE, POSTER_MAX_EDGE), Image.Resampling.BILINEAR)
    return VideoPreview(info, poster, frames[1:])


def _container_seconds(container: av.container.InputContainer) -> float | None:
    return container.duration / av.time_base if container.duration else None


def _frame_times(duration: float) -> list[float]:
    """The poster's time, then FRAME_COUNT evenly spaced times (mid-points of equal parts)."""
    parts = [(index + 0.5) * duration / FRAME_COUNT for index in range(FRAME_COUNT)]
    return [POSTER_AT * duration, *parts]


def _frame_at(
    container: av.container.InputContainer, stream: av.VideoStream, seconds: float
) -> Image.Image:
    """The first frame at or after `seconds` (the last frame if the video ends before)."""
    base = stream.time_base or Fraction(1, av.time_base)
    container.seek(int(seconds / base), stream=stream, backward=True, any_frame=False)
    last = None
    for frame in container.decode(stream):
        last = frame
        if frame.pts is None or float(frame.pts * base) >= seconds:
            break
    if last is None:
        raise MediaError("the video has no decodable frames")
    image: Image.Image = last.to_image()  # type: ignore[no-untyped-call]
    return image


def audio_waveform(data: bytes) -> tuple[AudioInfo, bytes]:
    """Metadata and a waveform PNG of an audio file (or of a video's sound track)."""
    with _open(data) as container:
        if not container.streams.audio:
            raise MediaError("the file has no audio stream")
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate or stream.rate
        if not rate:
            raise MediaError("the audio stream has no sample rate")
        try:
            lows, highs, samples = _peaks(_envelope(container, stream, rate), rate)
        except (av.FFmpegError, ValueError, OSError) as error:
            raise MediaError(f"the audio could not be decoded: {error}") from error
        info = AudioInfo(
            duration_seconds=round(samples / rate, 3),
            sample_rate=rate,
            channels=stream.codec_context.channels,
            codec=stream.codec_context.name,
        )
    return info, _waveform_png(lows, highs)


def _envelope(
    container: av.container.InputContainer, stream: av.AudioStream, rate: int
) -> Iterator[np.ndarray]:
    """Per sample, the lowest and the highest value over all channels: (2, n) float32 blocks
    (FFmpeg's resampler turns any sample format into planar float)."""
    planar = av.AudioResampler(format="fltp", rate=rate)
    frames = (out for frame in container.decode(stream) for out in planar.resample(frame))
    for frame in (*frames, *planar.resample(None)):
        values = frame.to_ndarray()
        yield np.stack([values.min(axis=0), values.max(axis=0)])


def _peaks(blocks: Iterator[np.ndarray], rate: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Min and max per BLOCK samples, and the number of samples seen."""
    lows, highs, pending, samples = [], [], np.empty((2, 0), np.float32), 0
    for block in blocks:
        samples += block.shape[1]
        if samples > MAX_DECODED_SECONDS * rate:
            raise MediaError(f"longer than {MAX_DECODED_SECONDS // 3600} hours of audio")
        pending = np.concatenate([pending, block], axis=1)
        whole = pending.shape[1] // BLOCK * BLOCK
        if whole:
            lows.append(pending[0, :whole].reshape(-1, BLOCK).min(axis=1))
            highs.append(pending[1, :whole].reshape(-1, BLOCK).max(axis=1))
            pending = pending[:, whole:]
    if pending.shape[1]:
        lows.append(pending[0].min(keepdims=True))
        highs.append(pending[1].max(keepdims=True))
    if not samples:
        raise MediaError("the audio stream has no samples")
    return np.concatenate(lows), np.concatenate(highs), samples


def _waveform_png(lows: np.ndarray, highs: np.ndarray) -> bytes:
    """Min/max envelope, one column per equal share of the blocks; palette PNG, transparent."""
    # reduceat over [start, next start), or the one block at `start` where a short file has
    # fewer blocks than columns (those columns repeat it: the file is stretched to fit).
    starts = np.arange(WAVEFORM_WIDTH) * len(lows) // WAVEFORM_WIDTH
    low = np.minimum.reduceat(lows, starts)
    high = np.maximum.reduceat(highs, starts)
    half = (WAVEFORM_HEIGHT - 1) / 2
    top = np.floor(half - np.clip(high, -1, 1) * half).astype(np.int64)
    bottom = np.floor(half - np.clip(low, -1, 1) * half).astype(np.int64)
    rows = np.arange(WAVEFORM_HEIGHT)[:, None]
    pixels = ((rows >= top[None, :]) & (rows <= bottom[None, :])).astype(np.uint8)
    pixels[int(half)] = 1  # the zero line, so silence still shows as a line
    image = Image.fromarray(pixels, "P")
    image.putpalette([0, 0, 0, *WAVE_COLOUR])
    out = io.BytesIO()
    image.save(out, "PNG", transparency=0, optimize=False)
    return out.getvalue()
