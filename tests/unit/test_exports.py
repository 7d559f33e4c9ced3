"""Export jobs without a backend: the spec's checks, the paging and converting orchestration
(services.exports) with fake pages and documents, the job's fold, the multipart stream and
the worker's message check."""

from __future__ import annotations

import io
import math
import re
import tarfile
import zipfile
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr, ValidationError

from annostack.adapters.job_progress import ExportCounts, ExportState, JobProgress
from annostack.adapters.multipart import MultipartUpload, multipart_upload
from annostack.adapters.objects import Presigner
from annostack.adapters.tenant_tables import annotation_results, data_items
from annostack.domain.calibration import CameraCalibration, FrameCamera
from annostack.domain.errors import BackendUnavailable
from annostack.domain.exports.archive import ArchiveKind
from annostack.domain.exports.report import ExportFormat, ExportReport
from annostack.domain.exports.xtreme1 import document_from_xtreme1
from annostack.domain.items import ExportMessage, PixelSize
from annostack.domain.processing import ExportSpec, ProcessingJobSpec, processing_job_manifest
from annostack.domain.scenes import plan_scenes
from annostack.services.annotations import document_key
from annostack.services.exports import (
    NO_CALIBRATION,
    ExportUnit,
    FollowingSaves,
    count_units,
    export_key,
    image_units,
    kitti_camera,
    source_documents,
    units_of,
    write_export,
)
from annostack.services.jobs import JobRef, JobRunner
from annostack.services.processing import InvalidTask
from annostack.services.scenes import import_scenes
from annostack.services.tenancy import TenantContext
from annostack.settings import ObjectStoreSettings
from annostack.workers.export import parse_export
from tests.unit.exports.test_nuscenes import SCHEMA, checked, walk
from tests.unit.test_browsing import ctx  # noqa: F401  (the fixture)
from tests.unit.test_scene_service import DATASET, Files, tenant

# An ideal LiDAR-to-camera rotation (x_cam = -y, y_cam = -z, z_cam = x), K of 700 px.
CAMERA = CameraCalibration.model_validate(
    {"intrinsics": {"fx": 700, "fy": 700, "cx": 600, "cy": 180},
     "extrinsics": [0, -1, 0, 0, 0, 0, -1, 0, 1, 0, 0, 0, 0, 0, 0, 1]}
)  # fmt: skip
BOX = {"center": [10, 2, -0.75], "size": [4, 2, 1.5], "rotation": [0, 0, 0]}
CAR = {"id": "c1", "type": "3D_BOX", "classId": "car", "contour": BOX}
# Worked by hand: bottom centre (10, 2, -1.5) is (-2, 1.5, 10) in the camera; rotation_y =
# -yaw - pi/2; alpha = ry - atan2(-2, 10); the box spans x -3..-1, y 0..1.5, z 8..12, so
# u = 700 x / z + 600 runs 337.50 (x -3, z 8) to 541.67 (x -1, z 12), v = 700 y / z + 180
# 180.00 (y 0) to 311.25 (y 1.5, z 8).
CAR_LINE = "Car 0.00 0 -1.37 337.50 180.00 541.67 311.25 1.50 2.00 4.00 -2.00 1.50 10.00 -1.57\n"
RECT = {"id": "r1", "type": "RECTANGLE", "classId": "car",
        "contour": {"x": 10, "y": 20, "width": 30, "height": 40}}  # fmt: skip


# -- the spec ----------------------------------------------------------------------------------


def job(**fields: Any) -> ProcessingJobSpec:
    return ProcessingJobSpec.model_validate({"dataset": "d", **fields})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"operations": ["export", "thumbnail"], "export": {"format": "kitti"}},
         "an export job has operations: [export] alone"),
        ({"operations": ["export"]}, "operations: [export] needs export.format"),
        ({"operations": ["thumbnail"], "export": {"format": "coco"}},
         "export is set but operations does not name it"),
        ({"operations": ["export"], "export": {"format": "xtreme1"}, "archiveItemId": 3},
         "an export job takes no archiveItemId or itemPrefix"),
        ({"operations": ["export"], "export": {"format": "coco", "archive": "zip"}},
         "export.archive does not apply to coco"),
        ({"operations": ["export"], "export": {"format": "coco", "classes": {"a": "Car"}}},
         "set it for kitti or nuscenes only"),
        ({"operations": ["export"], "export": {"format": "kitti", "classes": {"a": "Auto"}}},
         "export.classes maps a to no KITTI type; use one of Car, Van"),
        ({"operations": ["export"], "export": {"format": "kitti", "categories": ["a"]}},
         "export.categories lists COCO categories"),
        ({"operations": ["export"], "export": {"format": "waymo"}}, "'coco' or 'nuscenes'"),
        ({"operations": ["export"], "export": {"format": "nuscenes", "categories": ["car"]}},
         "set it for coco only (nuscenes names its categories with export.classes)"),
        ({"operations": ["export"], "export": {"format": "nuscenes", "camera": "image_2"}},
         "set it for kitti only (nuscenes writes every calibrated camera)"),
        ({"operations": ["export"], "export": {"format": "nuscenes", "classes": {"car": " "}}},
         "export.classes maps car to an empty category name"),
        ({"operations": ["export"], "export": {"format": "kitti", "source": "Bad Source"}},
         "String should match pattern"),
    ],
)  # fmt: skip
def test_a_bad_export_spec_is_refused_with_what_to_change(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        job(**fields)


def test_a_good_export_spec_round_trips_through_its_manifest() -> None:
    spec = job(operations=["export"], export={"format": "kitti", "classes": {"car": "Car"}})
    manifest = processing_job_manifest("tenant-a", "export-1-ab", spec, "annostack-api")
    assert manifest["spec"]["export"] == {"format": "kitti", "classes": {"car": "Car"},
                                          "categories": []}  # fmt: skip
    assert ProcessingJobSpec.model_validate(manifest["spec"]) == spec
    assert job(operations=["thumbnail"]).export is None, "processing jobs are unchanged"


def test_a_nuscenes_spec_maps_classes_to_any_category_name() -> None:
    classes = {"car": "vehicle.car", "Pedestrian": "human.pedestrian.adult", "7": "Car"}
    spec = job(operations=["export"],
               export={"format": "nuscenes", "classes": classes, "archive": "tar.gz"})  # fmt: skip
    assert spec.export is not None and spec.export.classes == classes, "no KITTI types here"
    assert export_key("e", spec.export) == "exports/e.tar.gz"


def test_export_keys_say_what_is_in_them() -> None:
    assert export_key("e", ExportSpec(format=ExportFormat.XTREME1)) == "exports/e.zip"
    tar = ExportSpec(format=ExportFormat.KITTI, archive=ArchiveKind.TAR_GZ)
    assert export_key("e", tar) == "exports/e.tar.gz"
    assert export_key("e", ExportSpec(format=ExportFormat.COCO)) == "exports/e.json"


# -- orchestration, with fakes at the service boundary --------------------------------------


class FakeDocuments:
    """Documents by key; remembers each read, to show reads come a page at a time."""

    def __init__(self, documents: dict[str, dict[str, Any]]) -> None:
        self.bodies = {key: orjson.dumps(document) for key, document in documents.items()}
        self.reads: list[list[str]] = []

    def read(self, keys: list[str]) -> dict[str, bytes]:
        self.reads.append(keys)
        return {key: self.bodies[key] for key in keys if key in self.bodies}


def unit(item: int, name: str, *sources: str, **fields: Any) -> ExportUnit:
    return ExportUnit(item_id=item, name=name, scene="scene_1", sources=sources, **fields)


def image(camera: str, calibration: CameraCalibration | None = None) -> FrameCamera:
    return FrameCamera(camera, f"scene_1/{camera}/1.png", calibration)


def pages_of(*pages: list[ExportUnit]) -> Iterator[list[ExportUnit]]:
    yield from pages


def run(
    spec: ExportSpec, pages: Iterator[list[ExportUnit]], documents: FakeDocuments
) -> tuple[bytes, ExportReport, list[int]]:
    out, written = io.BytesIO(), []
    report = write_export(spec, pages, documents, out, written.append)
    return out.getvalue(), report, written


def test_xtreme1_writes_one_result_per_annotated_frame_page_by_page() -> None:
    segment = {"id": "s1", "type": "SEGMENTATION", "pointIndices": [1, 2]}
    documents = FakeDocuments({
        document_key(1, "imported"): {"version": "Xtreme1 V0.6", "objects": [
            {**CAR, "contour": {**CAR["contour"], "pointN": 3}}, segment]},
        document_key(1, "model"): {"objects": []},
        document_key(3, "imported"): {"objects": []},
    })  # fmt: skip
    pages = pages_of([unit(1, "1", "imported", "model"), unit(2, "2")], [unit(3, "10", "imported")])
    body, report, written = run(ExportSpec(format=ExportFormat.XTREME1), pages, documents)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        names = archive.namelist()
        first = orjson.loads(archive.read("scene_1/result/1.json"))
    assert names == ["scene_1/result/1.json", "scene_1/result/10.json"], "frame 2 has none"
    assert [entry.get("version") for entry in first] == ["Xtreme1 V0.6", None], "per source"
    (box,) = first[0]["objects"]
    assert box["contour"]["center3D"] == {"x": 10, "y": 2, "z": -0.75}
    assert box["contour"]["pointN"] == 3
    assert written == [2, 3]
    assert [len(keys) for keys in documents.reads] == [2, 1], "one read per page"
    assert report.formats[ExportFormat.XTREME1].objects == 1
    assert report.unsupported_types == {"xtreme1:SEGMENTATION": 1}, "listed, not dropped"
    assert (report.skipped[0].item, report.skipped[0].object_id) == ("scene_1/1", "s1")


def test_kitti_labels_match_the_hand_computed_line_and_carry_their_calib() -> None:
    documents = FakeDocuments({
        document_key(1, "imported"): {"objects": [CAR, RECT]},
        document_key(2, "imported"): {"objects": [CAR]},
    })  # fmt: skip
    pages = pages_of([
        unit(1, "000001", "imported", cameras=(image("image_2", CAMERA),)),
        unit(2, "000002", "imported", cameras=(image("image_2"),)),
        unit(3, "000003", cameras=(image("image_2", CAMERA),)),
    ])  # fmt: skip
    spec = ExportSpec(format=ExportFormat.KITTI, archive=ArchiveKind.TAR_GZ)
    body, report, _ = run(spec, pages, documents)
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        files = {m.name: archive.extractfile(m).read().decode() for m in archive}  # type: ignore[union-attr]
    assert files["scene_1/label_2/000001.txt"] == CAR_LINE
    assert files["scene_1/calib/000001.txt"].startswith("P0: 7.000000000000e+02 ")
    assert files["scene_1/label_2/000003.txt"] == "", "a frame without objects: empty labels"
    assert "scene_1/label_2/000002.txt" not in files, "no calibration, no labels"
    reasons = {(note.item, note.object_id): note.reason for note in report.skipped}
    assert reasons[("scene_1/000002", "c1")] == NO_CALIBRATION
    assert "2D box" in reasons[("scene_1/000001", "r1")]
    assert report.formats[ExportFormat.KITTI].objects == 1


def test_kitti_takes_the_camera_asked_for_then_image_2_then_the_first() -> None:
    other = CAMERA.model_copy(update={"width": 640})
    frame = unit(1, "1", cameras=(image("image_0", other), image("image_2", CAMERA),
                                  image("image_3")))  # fmt: skip
    assert kitti_camera(frame, None) is CAMERA
    assert kitti_camera(frame, "image_0") is other
    assert kitti_camera(frame, "image_3") is None
    assert kitti_camera(unit(1, "1", cameras=(image("cam_a", other),)), None) is other


def test_coco_writes_boxes_and_reports_what_it_cannot_hold() -> None:
    documents = FakeDocuments({document_key(5, "default"): {"objects": [RECT, CAR]}})
    pages = pages_of([ExportUnit(5, "images/a.jpg", sources=("default",),
                                 pixel_size=PixelSize(1280, 720)),
                      ExportUnit(6, "images/b.jpg")])  # fmt: skip
    spec = ExportSpec(format=ExportFormat.COCO, categories=["person", "car"])
    body, report, written = run(spec, pages, documents)
    coco = orjson.loads(body)
    assert coco["images"] == [
        {"id": 5, "file_name": "images/a.jpg", "width": 1280, "height": 720},
        {"id": 6, "file_name": "images/b.jpg", "width": None, "height": None},
    ], "b.jpg's size was never recorded"
    assert report.images_without_size == ["images/b.jpg"], "listed, to be processed again"
    assert report.formats[ExportFormat.COCO].images_without_size == 1
    assert report.summary().endswith(", 1 images without width and height")
    (annotation,) = coco["annotations"]
    assert (annotation["bbox"], annotation["area"], annotation["category_id"]) == (
        [10, 20, 30, 40], 1200, 2,
    )  # fmt: skip
    assert coco["categories"] == [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}]
    assert report.unsupported_types == {"coco:3D_BOX": 1}
    assert written == [2]


def test_coco_image_units_carry_the_sizes_the_worker_recorded() -> None:
    # Items 1, 2, 3; only 1 was processed since sizes are recorded
    images_ctx = tenant(["a.jpg", "b.png", "lidar/1.pcd"])
    with images_ctx.engine.begin() as conn:
        sized = data_items.update().where(data_items.c.id == 1)
        conn.execute(sized.values(width=1280, height=720))
    (page,) = image_units(images_ctx, DATASET, None)
    images_ctx.engine.dispose()
    assert [(unit.name, unit.pixel_size) for unit in page] == [
        ("a.jpg", PixelSize(1280, 720)), ("b.png", None),
    ], "images only; b.png was processed before sizes were recorded"  # fmt: skip
    body, report, _ = run(ExportSpec(format=ExportFormat.COCO), pages_of(page), FakeDocuments({}))
    assert [(i["width"], i["height"]) for i in orjson.loads(body)["images"]] == [
        (1280, 720), (None, None),
    ]  # fmt: skip
    assert report.images_without_size == ["b.png"]


def test_point_clouds_of_no_scene_export_after_the_scenes_as_one_more() -> None:
    names = ["drive/lidar_point_cloud_0/0.pcd", "drive/lidar_point_cloud_0/1.pcd",
             "lidar/000042.pcd", "b.pcd", "c.jpg"]  # fmt: skip
    dataset = tenant(names)  # items 1..5
    import_scenes(dataset, DATASET, plan_scenes(names[:2]), Files({}))
    with dataset.engine.begin() as conn:
        conn.execute(annotation_results.insert().values(
            data_item_id=3, source="default", version=1, etag="e"))  # fmt: skip
    documents = FakeDocuments({document_key(3, "default"): {"objects": [CAR]}})
    xtreme1 = ExportSpec(format=ExportFormat.XTREME1)
    units = [unit for page in units_of(dataset, DATASET, xtreme1, page=3) for unit in page]
    assert [unit.label for unit in units] == [
        "drive/0",
        "drive/1",
        "unsequenced/lidar/000042",
        "unsequenced/b",
    ], "the scene's frames, then the other point clouds in id order; no image"
    assert [(unit.scene_id, unit.index, unit.sources) for unit in units[2:]] == [
        (0, 0, ("default",)), (0, 1, ()),
    ]  # fmt: skip
    assert count_units(dataset, DATASET, xtreme1) == 4
    body, report, _ = run(xtreme1, units_of(dataset, DATASET, xtreme1), documents)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.namelist() == ["unsequenced/result/lidar/000042.json"]
    assert report.formats[ExportFormat.XTREME1].objects == 1
    nuscenes = ExportSpec(format=ExportFormat.NUSCENES)
    body, report, _ = run(nuscenes, units_of(dataset, DATASET, nuscenes), documents)
    dataset.engine.dispose()
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        scenes = orjson.loads(archive.read("v1.0-annostack/scene.json"))
        lidar = orjson.loads(archive.read("v1.0-annostack/sample_data.json"))
    assert [(scene["name"], scene["nbr_samples"]) for scene in scenes] == [
        ("drive", 2), ("unsequenced", 2),
    ]  # fmt: skip
    assert "lidar/000042.pcd" in {record["filename"] for record in lidar}
    assert report.formats[ExportFormat.NUSCENES].objects == 1


def test_a_document_that_does_not_validate_is_reported_not_fatal() -> None:
    documents = FakeDocuments({document_key(5, "default"): {"objects": [{"type": "3D_BOX"}]}})
    pages = pages_of([ExportUnit(5, "a.jpg", sources=("default",))])
    _, report, _ = run(ExportSpec(format=ExportFormat.COCO), pages, documents)
    (note,) = report.skipped
    assert note.reason.startswith("the default document is not valid")


def nuscenes_pages() -> Iterator[list[ExportUnit]]:
    """Two scenes: scene_1 of three frames with a calibrated camera, scene_2 of two."""

    def frame(scene: int, index: int) -> ExportUnit:
        item = scene * 10 + index
        cameras = (FrameCamera("camera_image_0", f"scene_{scene}/camera_image_0/{index}.jpg",
                               CAMERA),) if scene == 1 else ()  # fmt: skip
        return ExportUnit(item, str(index), f"scene_{scene}", ("default",), cameras, scene, index,
                          file_name=f"scene_{scene}/lidar_point_cloud_0/{index}.pcd")  # fmt: skip

    yield [frame(1, 0), frame(1, 1)]
    yield [frame(1, 2), frame(2, 0), frame(2, 1)]


def nuscenes_documents() -> FakeDocuments:
    car = {**CAR, "trackId": "t1"}
    walker = {"id": "w1", "type": "3D_BOX", "classId": "person", "contour": BOX}
    segment = {"id": "s1", "type": "SEGMENTATION", "pointIndices": [1, 2]}
    return FakeDocuments({
        document_key(10, "default"): {"objects": [car, walker, segment]},
        document_key(11, "default"): {"objects": [car]},
        document_key(12, "default"): {"objects": [car, RECT]},
        document_key(20, "default"): {"objects": [car]},
        document_key(21, "default"): {"objects": [car]},
    })  # fmt: skip


def test_nuscenes_tables_of_two_scenes_in_the_schemas_terms() -> None:
    spec = ExportSpec(format=ExportFormat.NUSCENES, classes={"car": "vehicle.car"})
    body, report, written = run(spec, nuscenes_pages(), nuscenes_documents())
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        names = archive.namelist()
        tables = {n.removeprefix("v1.0-annostack/").removesuffix(".json"): orjson.loads(
            archive.read(n)) for n in names}  # fmt: skip
    assert sorted(names) == [f"v1.0-annostack/{table}.json" for table in sorted(SCHEMA)]
    db = checked(tables)  # every field the schema's, every foreign key found
    scenes = {scene["name"]: scene for scene in db["scene"].values()}
    assert {name: s["nbr_samples"] for name, s in scenes.items()} == {"scene_1": 3, "scene_2": 2}
    samples = walk(db["sample"], scenes["scene_1"]["first_sample_token"])
    assert samples[-1]["token"] == scenes["scene_1"]["last_sample_token"]
    cars = [i for i in db["instance"].values() if i["nbr_annotations"] > 1]
    assert sorted(i["nbr_annotations"] for i in cars) == [2, 3], "t1 of each scene, apart"
    longest = max(cars, key=lambda i: i["nbr_annotations"])
    chain = walk(db["sample_annotation"], longest["first_annotation_token"])
    assert [a["sample_token"] for a in chain] == [s["token"] for s in samples]
    assert chain[0]["size"] == [2, 4, 1.5] and chain[0]["rotation"] == [1, 0, 0, 0]
    assert {c["name"] for c in db["category"].values()} == {"vehicle.car", "person"}
    images = [d for d in db["sample_data"].values() if d["fileformat"] == "jpg"]
    assert sorted(d["filename"] for d in images) == [f"scene_1/camera_image_0/{i}.jpg"
                                                     for i in range(3)]  # fmt: skip
    counts = report.formats[ExportFormat.NUSCENES]
    assert (counts.items, counts.objects, counts.skipped) == (5, 6, 2)
    assert report.unsupported_types == {"nuscenes:SEGMENTATION": 1, "nuscenes:RECTANGLE": 1}
    assert written == [2, 5]


def test_a_nuscenes_export_is_the_same_bytes_every_time() -> None:
    spec = ExportSpec(format=ExportFormat.NUSCENES, archive=ArchiveKind.TAR_GZ)
    first, _, _ = run(spec, nuscenes_pages(), nuscenes_documents())
    second, _, _ = run(spec, nuscenes_pages(), nuscenes_documents())
    assert first == second
    with tarfile.open(fileobj=io.BytesIO(first)) as archive:
        assert len(archive.getnames()) == len(SCHEMA)


# -- the job's fold ----------------------------------------------------------------------------


class CannedExport(JobProgress):
    def __init__(self, counts: ExportCounts) -> None:
        self.canned = counts

    def export_counts(self, tenant: str, job: str) -> ExportCounts:
        return self.canned


EXPORT_JOB = job(operations=["export"], export={"format": "kitti"})
REF = JobRef(tenant="acme", uid="3f0c", name="export-1-ab")


def fold(counts: ExportCounts, spec: ProcessingJobSpec = EXPORT_JOB) -> Any:
    runner = JobRunner(publisher=None, progress=CannedExport(counts))  # type: ignore[arg-type]
    return runner.fold(REF, spec, 10, True)


def test_an_export_job_is_running_until_its_worker_says_done() -> None:
    running = fold(ExportCounts(ExportState.RUNNING, done=4, total=10))
    assert (running.phase, running.succeeded, running.total) == ("Running", 4, 10)
    assert running.export.key is None, "no key until the archive is complete"
    report = ExportReport()
    report.record(ExportFormat.KITTI, "s/1", 3)
    done = fold(ExportCounts(ExportState.DONE, 10, 10, report=report.model_dump_json()))
    assert (done.phase, done.reason) == ("Complete", "Exported")
    assert done.message == "kitti: 1 items, 3 objects; written to exports/export-1-ab.zip"
    assert done.export.key == "exports/export-1-ab.zip" and done.export.report == report


def test_an_export_job_fails_or_is_cancelled_with_the_reason() -> None:
    failed = fold(ExportCounts(ExportState.FAILED, reason="S3: 403 AccessDenied"))
    assert (failed.phase, failed.reason, failed.message) == (
        "Failed", "ExportFailed", "S3: 403 AccessDenied",
    )  # fmt: skip
    cancelled = fold(
        ExportCounts(ExportState.RUNNING, 2, 10),
        EXPORT_JOB.model_copy(update={"cancelled": True}),
    )
    assert cancelled.phase == "Cancelled"


# -- the multipart stream and the worker's message check --------------------------------------


STORE = ObjectStoreSettings(
    endpoint="http://s3.local:9000",
    access_key=SecretStr("ak"),
    secret_key=SecretStr("sk"),
)


class FakeS3:
    def __init__(self, fail_part: int | None = None) -> None:
        self.parts: dict[int, bytes] = {}
        self.completed: bytes | None = None
        self.aborted = False
        self.fail_part = fail_part

    def __call__(self, request: httpx.Request) -> httpx.Response:
        query = request.url.params
        if request.method == "POST" and "uploads" in query:
            return httpx.Response(200, content=b"<R><UploadId>u-1</UploadId></R>")
        if request.method == "PUT":
            number = int(query["partNumber"])
            if number == self.fail_part:
                return httpx.Response(503)
            self.parts[number] = request.content
            return httpx.Response(200, headers={"etag": f'"e{number}"'})
        if request.method == "POST":
            self.completed = request.content
            return httpx.Response(200, content=b'<R><ETag>"whole"</ETag></R>')
        self.aborted = request.method == "DELETE"
        return httpx.Response(204)


def upload(store: FakeS3, part_bytes: int) -> MultipartUpload:
    client = httpx.Client(transport=httpx.MockTransport(store))
    return MultipartUpload(Presigner(STORE), client, "b", "exports/e.zip", "x", part_bytes)


def test_the_multipart_stream_sends_full_parts_as_it_goes_and_assembles_them() -> None:
    store = FakeS3()
    stream = upload(store, part_bytes=4)
    for chunk in (b"abc", b"defgh", b"ij"):
        stream.write(chunk)
    assert store.parts == {1: b"abcd", 2: b"efgh"}, "sent while writing, not at the end"
    assert stream.finish() == "whole"
    assert store.parts[3] == b"ij"
    assert store.completed is not None and store.completed.count(b"<Part>") == 3


def test_a_failed_export_aborts_its_upload() -> None:
    store = FakeS3(fail_part=1)
    client = httpx.Client(transport=httpx.MockTransport(store))
    with (
        pytest.raises(BackendUnavailable),
        multipart_upload(Presigner(STORE), client, "b", "exports/e.zip", "x") as stream,
    ):
        stream.write(b"x" * (9 * 2**20))  # more than one part: the first PUT fails
    assert store.aborted and store.completed is None


def message(**fields: Any) -> bytes:
    values: dict[str, Any] = {"tenant": "acme", "job": "3f0c", "jobName": "e", "datasetId": 1,
                              "key": "exports/e.zip", "export": {"format": "xtreme1"}}  # fmt: skip
    return orjson.dumps({**values, **fields})


def test_the_worker_refuses_exports_of_another_tenant_or_outside_exports() -> None:
    assert isinstance(parse_export(message(), "acme"), ExportMessage)
    with pytest.raises(InvalidTask, match="for tenant other"):
        parse_export(message(tenant="other"), "acme")
    with pytest.raises(InvalidTask, match="refusing to write an export to 'annotations/1/a"):
        parse_export(message(key="annotations/1/a.json"), "acme")
    with pytest.raises(InvalidTask, match="malformed export message"):
        parse_export(b"{}", "acme")


def test_hand_values_of_the_kitti_case() -> None:
    """The constants above, recomputed, so the comment and the line cannot drift apart."""
    ry = -math.pi / 2
    assert f"{ry - math.atan2(-2, 10):.2f}" == "-1.37"
    assert (f"{700 * -3 / 8 + 600:.2f}", f"{700 * -1 / 12 + 600:.2f}") == ("337.50", "541.67")
    assert f"{700 * 1.5 / 8 + 180:.2f}" == "311.25"


def test_what_an_import_kept_unconverted_is_reported_by_the_exports_that_cannot_write_it() -> None:
    segment = {"id": "seg-1", "type": "3D_SEGMENT_POINTS", "contour": {"indexs": [1, 2]}}
    imported, _ = document_from_xtreme1({"objects": [segment]})  # as the import keeps it
    body = orjson.dumps({**imported, "kittiUnconverted": [{"line": 3, "text": "Car 0 0"}]})
    documents, skips = source_documents([("imported", body)])
    assert [source for source, _ in documents] == ["imported"]
    segment, line = skips
    assert (segment.object_id, segment.object_type, segment.unsupported_type) == (
        "seg-1",
        "3D_SEGMENT_POINTS",
        True,
    )
    assert "only an xtreme1 export writes it" in segment.reason
    assert line.reason == "KITTI line 3 of the imported import did not parse"


def test_a_document_saved_over_while_exporting_is_read_at_its_new_revision(
    ctx: TenantContext,  # noqa: F811  (test_browsing's fixture: a schema with annotated items)
) -> None:
    """The page named the row's revision then; a save replaced it and removed that object."""
    item, source = 12, "lidar"
    listed, now = document_key(item, source), document_key(item, source, "ab" * 12)
    with ctx.engine.begin() as conn:
        conn.execute(
            annotation_results.update()
            .where(annotation_results.c.data_item_id == item)
            .values(revision="ab" * 12)
        )
    inner = FakeDocuments({now: {"objects": [CAR]}})
    found = FollowingSaves(inner, ctx).read([listed])
    assert orjson.loads(found[listed]) == {"objects": [CAR]}
    assert inner.reads == [[listed], [now]]
    # A document deleted with its row is left out, as before.
    with ctx.engine.begin() as conn:
        conn.execute(annotation_results.delete().where(annotation_results.c.data_item_id == item))
    assert FollowingSaves(FakeDocuments({}), ctx).read([listed]) == {}
