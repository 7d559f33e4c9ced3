"""The one classifier of files, the item statuses it leads to, and the queue message."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from annostack.domain.items import (
    FileKind,
    ItemStatus,
    ProcessingMessage,
    classify,
    status_on_arrival,
)
from annostack.domain.processing import DataType
from annostack.services.processing import Task, kept_as_is

POINT_CLOUD = FileKind.POINT_CLOUD


@pytest.mark.parametrize(
    ("name", "data_type", "content_type", "kind", "topic"),
    [
        ("lidar/000042.pcd", "POINT_CLOUD", "", POINT_CLOUD, "pointclouds"),
        ("velodyne/000042.bin", "POINT_CLOUD", "", POINT_CLOUD, "pointclouds"),
        ("survey.LAZ", "POINT_CLOUD", "", POINT_CLOUD, "pointclouds"),
        ("scan.ply", "POINT_CLOUD", "", POINT_CLOUD, "pointclouds"),  # was accepted, unread
        ("scan.tif", "IMAGE", "", FileKind.IMAGE, "thumbnails"),
        ("photo.webp", "IMAGE", "", FileKind.IMAGE, "thumbnails"),
        ("no-extension", "IMAGE", "image/jpeg", FileKind.IMAGE, "thumbnails"),
        ("clip.mp4", "VIDEO", "", FileKind.VIDEO, "media"),  # went to pointclouds before
        ("talk.mp3", "AUDIO", "", FileKind.AUDIO, "media"),
        ("notes.txt", "TEXT", "", FileKind.TEXT, "media"),
        ("corpus/doc.json", "TEXT", "", FileKind.TEXT, "media"),
        ("drive.zip", "POINT_CLOUD", "", FileKind.ARCHIVE, "archives"),
        ("drive.tar.gz", "IMAGE", "", FileKind.ARCHIVE, "archives"),
        ("calib.json", "POINT_CLOUD", "", FileKind.SIDECAR, None),
        ("calib/000042.txt", "POINT_CLOUD", "", FileKind.SIDECAR, None),  # KITTI calibration
        ("scene/camera_config/000001.json", "POINT_CLOUD", "", FileKind.SIDECAR, None),
        ("scene/result/000001.json", None, "", FileKind.SIDECAR, None),
        ("model.obj", "POINT_CLOUD", "", FileKind.UNSUPPORTED, None),
        ("no-extension", "TEXT", "application/octet-stream", FileKind.UNSUPPORTED, None),
    ],
)
def test_every_file_gets_one_kind_and_topic(
    name: str, data_type: DataType | None, content_type: str, kind: FileKind, topic: str | None
) -> None:
    verdict = classify(name, data_type, content_type)
    assert (verdict.kind, verdict.topic) == (kind, topic)


def test_xtreme1_sensor_folders_keep_their_data_kinds() -> None:
    assert classify("scene/lidar_point_cloud_0/000001.pcd").kind is POINT_CLOUD
    assert classify("scene/camera_image_2/000001.jpg").kind is FileKind.IMAGE


def test_an_unsupported_file_says_why_and_what_is_supported() -> None:
    verdict = classify("mesh.obj", "POINT_CLOUD", "model/obj")
    assert verdict.reason.startswith(".obj files (model/obj) are not processed; supported:")
    assert ".ply" in verdict.reason and ".mp4" in verdict.reason
    assert status_on_arrival(verdict) == (ItemStatus.UNSUPPORTED, verdict.reason)
    assert status_on_arrival(classify("calib.json", "IMAGE")) == (ItemStatus.STORED, None)
    assert status_on_arrival(classify("a.pcd")) == (ItemStatus.UPLOADED, None)


def test_an_archive_inside_an_archive_is_not_unpacked() -> None:
    verdict = classify("nested/more.zip", "POINT_CLOUD", in_archive=True)
    assert verdict.kind is FileKind.UNSUPPORTED and "inside an archive" in verdict.reason


def test_the_queue_message_is_typed_on_both_ends() -> None:
    message = ProcessingMessage(
        tenant="acme", item_id=4, key="data/1/4.mp4", kind=FileKind.VIDEO, job="u1",
        operations=["thumbnail"],
    )  # fmt: skip
    assert message.wire() == {
        "tenant": "acme", "itemId": 4, "key": "data/1/4.mp4", "kind": "video", "job": "u1",
        "operations": ["thumbnail"],
    }  # fmt: skip
    task = Task.parse(message.model_dump_json(by_alias=True), "persistent://acme/p/media")
    assert task.kind is FileKind.VIDEO and task.wants("thumbnail")
    with pytest.raises(ValidationError):
        ProcessingMessage(tenant="acme", item_id=0, key="k")


def test_a_message_without_a_kind_is_classified_by_its_key_then_its_topic() -> None:
    def task(key: str, topic: str) -> Task:
        body = ProcessingMessage(tenant="a", item_id=1, key=key).model_dump_json(by_alias=True)
        return Task.parse(body, f"persistent://a/p/{topic}")

    assert task("data/1/1.mp3", "pointclouds").kind is FileKind.AUDIO
    assert task("data/1/1", "thumbnails").kind is FileKind.IMAGE  # content type decided it
    unsupported = kept_as_is(task("data/1/1.obj", "media"))
    assert unsupported is not None and unsupported.status is ItemStatus.UNSUPPORTED
    assert kept_as_is(task("data/1/1.pcd", "pointclouds")) is None, "processed, not kept"
