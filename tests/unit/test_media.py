"""Video, audio and text items: metadata and list-view previews from real (synthetic) files."""

from __future__ import annotations

import io

import numpy as np
import orjson
import pytest
from PIL import Image

from annostack.domain.items import FileKind, ProcessingMessage
from annostack.domain.media import (
    FRAME_COUNT,
    WAVEFORM_HEIGHT,
    WAVEFORM_WIDTH,
    MediaError,
    audio_waveform,
    video_preview,
)
from annostack.domain.texts import TextError, read_text
from annostack.services.processing import Options, Task, process
from tests.media import flac, tone, video

CHINESE = "这是一个用于标注的中文文本示例。包含足够多的字符以便识别编码。\n"


def brightness(image: Image.Image) -> float:
    return float(np.asarray(image.convert("L")).mean())


def test_a_video_has_its_metadata_a_poster_and_frames_in_order() -> None:
    preview = video_preview(video(seconds=4.0, fps=10, size=(320, 240)))
    info = preview.info
    assert (info.duration_seconds, info.frame_rate) == (4.0, 10.0)
    assert (info.width, info.height) == (320, 240)
    assert info.codec == "mpeg4" and not info.has_audio
    # Frame brightness is 10 + 60 t: the poster is the frame at 10 % (0.4 s) of the video.
    assert brightness(preview.poster) == pytest.approx(10 + 60 * 0.4, abs=4)
    times = [at for at, _ in preview.frames]
    assert len(times) == FRAME_COUNT and times == sorted(times)
    assert times[0] == pytest.approx(0.25) and times[-1] == pytest.approx(3.75)
    for at, frame in preview.frames:  # the first frame at or after each time, not a keyframe
        assert brightness(frame) == pytest.approx(10 + 60 * (np.ceil(at * 10) / 10), abs=4)


def test_audio_has_exact_duration_and_a_waveform_of_its_envelope() -> None:
    info, png = audio_waveform(tone(seconds=2.0, rate=16_000, channels=2, peak=0.5))
    assert (info.duration_seconds, info.sample_rate, info.channels) == (2.0, 16_000, 2)
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (WAVEFORM_WIDTH, WAVEFORM_HEIGHT)
        drawn = np.asarray(image) > 0
    loud, silent = drawn[:, WAVEFORM_WIDTH // 4], drawn[:, 3 * WAVEFORM_WIDTH // 4]
    assert loud.mean() == pytest.approx(0.5, abs=0.03), "a 0.5 peak fills half the height"
    assert silent.sum() == 1, "silence is the zero line alone"
    info, _ = audio_waveform(flac(seconds=1.5, rate=44_100))
    assert (info.duration_seconds, info.sample_rate, info.channels, info.codec) == (
        1.5, 44_100, 1, "flac",
    )  # fmt: skip


@pytest.mark.parametrize("data", [b"", b"RIFF\x00\x00\x00\x00WAVEjunk", b"\x00" * 4096])
def test_broken_media_is_a_clear_error(data: bytes) -> None:
    with pytest.raises(MediaError):
        audio_waveform(data)
    with pytest.raises(MediaError):
        video_preview(data)


def test_a_video_without_sound_has_no_waveform() -> None:
    with pytest.raises(MediaError, match="no audio stream"):
        audio_waveform(video(seconds=1.0))


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        ("Grüße aus Köln\nzweite Zeile\n".encode(), "utf-8"),
        ("Grüße\n".encode("utf-8-sig"), "utf-8-sig"),
        ("标注平台\n".encode("utf-16"), "utf-16"),
        (CHINESE.encode("gb18030") * 8, "gb18030"),
    ],
)
def test_text_encoding_length_and_snippet(data: bytes, encoding: str) -> None:
    info = read_text(data)
    assert info.encoding == encoding
    text = data.decode(encoding)
    assert (info.characters, info.bytes) == (len(text), len(data))
    assert info.snippet == text[:500] and info.lines == text.count("\n")


def test_binary_is_not_text() -> None:
    with pytest.raises(TextError):
        read_text(bytes(range(256)) * 64)


def task(kind: FileKind, key: str) -> Task:
    message = ProcessingMessage(tenant="acme", item_id=7, key=key, kind=kind)
    return Task.parse(message.model_dump_json(by_alias=True), "persistent://acme/p/media")


def test_processing_writes_each_kinds_outputs_under_derived() -> None:
    processed = process(task(FileKind.VIDEO, "data/1/7.mp4"), video(seconds=2.0), Options())
    assert processed.pixel_size is None, "only images have their size recorded"
    outputs = processed.outputs
    keys = {output.key for output in outputs}
    assert {"derived/7/info.json", "derived/7/poster.jpg", "derived/7/thumb-200.jpg"} <= keys
    assert {f"derived/7/frames/{n}.jpg" for n in range(FRAME_COUNT)} <= keys
    info = orjson.loads(next(o.body for o in outputs if o.key.endswith("info.json")))
    assert info["durationSeconds"] == 2.0 and len(info["frameThumbnails"]) == FRAME_COUNT

    audio = process(task(FileKind.AUDIO, "data/1/7.wav"), tone(), Options()).outputs
    assert [o.key for o in audio] == ["derived/7/info.json", "derived/7/waveform.png"]

    text = process(task(FileKind.TEXT, "data/1/7.txt"), b"hello\nworld\n", Options()).outputs
    assert orjson.loads(text[0].body)["snippet"] == "hello\nworld\n"
