"""Small synthetic media files: a video whose frames say their own time, tones, and texts."""

from __future__ import annotations

import io
import wave

import av
import numpy as np


def video(seconds: float = 4.0, fps: int = 10, size: tuple[int, int] = (320, 240)) -> bytes:
    """An MP4 (MPEG-4 part 2) whose frame n is a solid grey of brightness 10 + 60 * (n / fps):
    the frame at t seconds has brightness 10 + 60 t, so a test can tell which frame it got."""
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = fps  # a keyframe every second: seeking has work to do
        for n in range(int(seconds * fps)):
            grey = np.full((size[1], size[0], 3), 10 + 60 * n / fps, dtype=np.float64)
            frame = av.VideoFrame.from_ndarray(np.clip(grey, 0, 255).astype(np.uint8), "rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


def tone(seconds: float = 2.0, rate: int = 16_000, channels: int = 2, peak: float = 0.5) -> bytes:
    """A WAV of a 440 Hz tone at `peak` amplitude; silent for its second half."""
    t = np.arange(int(seconds * rate)) / rate
    signal = peak * np.sin(2 * np.pi * 440 * t) * (t < seconds / 2)
    samples = np.repeat((signal * 32767).astype("<i2")[:, None], channels, axis=1)
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(samples.tobytes())
    return out.getvalue()


def flac(seconds: float = 1.5, rate: int = 44_100) -> bytes:
    """A mono FLAC tone, encoded by FFmpeg: a compressed format through the same decoder."""
    out = io.BytesIO()
    with av.open(out, mode="w", format="flac") as container:
        stream = container.add_stream("flac", rate=rate, layout="mono")
        t = np.arange(int(seconds * rate)) / rate
        samples = (0.8 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = rate
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()
