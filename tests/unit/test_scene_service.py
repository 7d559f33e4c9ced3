"""services.scenes on SQLite: a plan becomes scenes once however often it runs (KITTI labels
and Xtreme1 results their frames' documents), read back in order with calibration, annotation
ETags and derived-file URLs, paged by frame index; a dataset's scenes paged by id, also through
the route."""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
import pytest
import sqlalchemy as sa

from annostack.adapters.tenant_tables import (
    annotation_results,
    data_items,
    datasets,
    metadata,
    scenes,
)
from annostack.domain.annotations import AnnotationDocument, Box2DObject, Box3DObject
from annostack.domain.errors import Invalid, NotFound
from annostack.domain.exports.kitti import UNCONVERTED, export_labels
from annostack.domain.exports.kitti_calib import parse_calibration
from annostack.domain.items import ItemStatus, classify
from annostack.domain.scenes import plan_scenes
from annostack.domain.tenants import TenantNames
from annostack.services.annotations import document_key
from annostack.services.browsing import encode_cursor
from annostack.services.exports import frame_units
from annostack.services.scenes import (
    get_scene,
    import_scenes,
    imported_revision,
    list_frames,
    list_scenes,
)
from annostack.services.tenancy import TenantContext
from tests.unit.exports.test_kitti import CROSSING_LINE, DONT_CARE_LINE, IMAGE
from tests.unit.test_browsing import SIGNER, connection, get
from tests.unit.test_scenes import BOX, camera

DATASET = 1
DONT_CARE_EXPORTED = (
    "DontCare -1.00 -1 -10.00 503.89 169.71 590.61 190.13 -1.00 -1.00 -1.00 -1000.00 -1000.00 "
    "-1000.00 -10.00"
)
STEMS = [str(n) for n in range(12)]


class Files:
    """The import's files in memory; documents written once, as the object store does."""

    def __init__(self, contents: dict[str, bytes]) -> None:
        self.contents, self.written = contents, {}  # type: dict[str, bytes], dict[str, bytes]

    def read(self, name: str) -> bytes:
        return self.contents[name]

    def put_new(self, key: str, body: bytes) -> str:
        self.written.setdefault(key, body)
        return f"etag-{key}"


def names() -> list[str]:
    found = []
    for stem in STEMS:
        found += [f"scene_1/lidar_point_cloud_0/{stem}.pcd", f"scene_1/camera_image_0/{stem}.jpg"]
        found += [f"scene_1/camera_config/{stem}.json", f"scene_1/result/{stem}.json"]
    return [*found, "scene_1/camera_image_0/99.jpg"]  # a frame without a point cloud


def tenant(items: list[str]) -> TenantContext:
    """A tenant database on SQLite whose dataset holds `items`, numbered from 1."""
    engine = sa.create_engine(
        "sqlite://", poolclass=sa.StaticPool, connect_args={"check_same_thread": False}
    )
    metadata.create_all(engine)
    rows = [
        {"id": number, "dataset_id": DATASET, "name": name, "object_key": f"data/{name}",
         "content_type": "application/octet-stream", "size": 10, "kind": classify(name).kind,
         "status": ItemStatus.PROCESSED}
        for number, name in enumerate(items, 1)
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(datasets.insert(), [{"id": DATASET, "name": "d", "display_name": "d",
                                          "data_type": "POINT_CLOUD_SEQUENCE"}])  # fmt: skip
        conn.execute(data_items.insert(), rows)
    return TenantContext(TenantNames(tenant="acme"), connection(), engine, time.monotonic())


@pytest.fixture
def ctx() -> Iterator[TenantContext]:
    context = tenant(names())
    yield context
    context.engine.dispose()


def files() -> Files:
    contents = {f"scene_1/camera_config/{s}.json": orjson.dumps([camera()]) for s in STEMS}
    contents |= {f"scene_1/result/{s}.json": orjson.dumps({"objects": [BOX]}) for s in STEMS}
    contents["scene_1/result/3.json"] = b"{broken"
    return Files(contents)


def test_a_plan_becomes_one_scene_once(ctx: TenantContext) -> None:
    store = files()
    made = import_scenes(ctx, DATASET, plan_scenes(names()), store)
    again = import_scenes(ctx, DATASET, plan_scenes(names()), store)  # a redelivered import
    assert (made.scenes, made.frames, made.annotations) == (1, 12, 11)
    assert {p.name for p in made.problems} == {
        "scene_1/camera_image_0/99.jpg",
        "scene_1/result/3.json",
    }
    assert (again.scenes, again.frames) == (1, 12)
    with ctx.engine.connect() as conn:
        indexed = conn.execute(sa.select(sa.func.count()).select_from(annotation_results))
        assert indexed.scalar_one() == 11
    assert len(store.written) == 11


def test_a_scene_reads_back_in_order_with_everything_an_editor_needs(ctx: TenantContext) -> None:
    import_scenes(ctx, DATASET, plan_scenes(names()), files())
    scene = get_scene(ctx, SIGNER, 1)
    assert (scene.name, scene.layout, scene.frame_count, scene.next) == ("scene_1", "xtreme1", 12,
                                                                          None)  # fmt: skip
    assert [f.name for f in scene.frames] == STEMS
    assert [f.index for f in scene.frames] == list(range(12))
    first = scene.frames[0]
    assert first.point_cloud.name == "scene_1/lidar_point_cloud_0/0.pcd"
    assert [a.source for a in first.point_cloud.annotations] == ["imported"]
    assert {d.name for d in first.point_cloud.derived} >= {"bev.png", "cloud.pcd"}
    (image,) = first.images
    assert image.camera == "camera_image_0" and image.item.derived
    assert image.calibration is not None and image.calibration.intrinsics.fx == 933.4667
    assert scene.frames[3].point_cloud.annotations == []  # its result did not parse


def test_frames_are_paged_by_index(ctx: TenantContext) -> None:
    import_scenes(ctx, DATASET, plan_scenes(names()), files())
    seen, after = [], None
    while True:
        page = list_frames(ctx, SIGNER, 1, after, 5)
        seen += [f.index for f in page.frames]
        if page.next is None:
            break
        after = page.next
    assert seen == list(range(12))
    with pytest.raises(Invalid):
        list_frames(ctx, SIGNER, 1, "aXRlbTo0Mg", 5)  # an item cursor is not a frame cursor
    with pytest.raises(NotFound):
        get_scene(ctx, SIGNER, 404)


def test_export_units_are_the_frames_with_their_files_and_cameras(ctx: TenantContext) -> None:
    import_scenes(ctx, DATASET, plan_scenes(names()), files())
    pages = list(frame_units(ctx, DATASET, None, with_cameras=True, page=5))
    assert [len(page) for page in pages] == [5, 5, 2], "paged by keyset"
    units = [unit for page in pages for unit in page]
    assert [(unit.name, unit.index) for unit in units] == [(s, n) for n, s in enumerate(STEMS)]
    first = units[0]
    assert (first.scene, first.scene_id, first.timestamp) == ("scene_1", 1, None)
    assert first.file_name == "scene_1/lidar_point_cloud_0/0.pcd"
    assert first.sources == ("imported",) and units[3].sources == ()
    (image,) = first.cameras
    assert (image.camera, image.file_name) == ("camera_image_0", "scene_1/camera_image_0/0.jpg")
    assert image.calibration is not None and image.calibration.intrinsics.fx == 933.4667
    without = next(frame_units(ctx, DATASET, "imported", with_cameras=False))
    assert without[0].cameras == () and without[0].file_name == first.file_name


# -- KITTI object labels -----------------------------------------------------------------------

IDEAL_CALIB = (
    "P2: 700 0 600 0 0 700 180 0 0 0 1 0\nR0_rect: 1 0 0 0 1 0 0 0 1\n"
    "Tr_velo_to_cam: 0 -1 0 0 0 0 -1 0 1 0 0 0\n"
)  # tests.unit.exports.test_kitti's IDEAL, as a calib file
KITTI_FRAMES = ["1", "2", "3", "4", "5"]


def kitti_items() -> list[str]:
    clouds = [f"training/velodyne/{stem}.bin" for stem in KITTI_FRAMES]
    return [*clouds, *(f"training/image_2/{stem}.png" for stem in KITTI_FRAMES),
            "training/image_3/4.png"]  # fmt: skip


def kitti_files() -> Files:
    """Frame 1 labelled well but for one line; 2 without calib; 3 with a calib that does not
    parse; 4 with a calib that lacks image_3's P3 (its cameras, not its labels); 5 unlabelled;
    and labels for a frame 9 that has no point cloud."""
    labels = f"{CROSSING_LINE}\n{DONT_CARE_LINE}\nCar 0 0\n".encode()
    return Files({
        "training/calib/1.txt": IDEAL_CALIB.encode(), "training/label_2/1.txt": labels,
        "training/label_2/2.txt": labels,
        "training/calib/3.txt": b"P2: 1 2 x\n", "training/label_2/3.txt": labels,
        "training/calib/4.txt": IDEAL_CALIB.encode(),
        "training/label_2/4.txt": f"{CROSSING_LINE}\n".encode(),
        "training/calib/5.txt": IDEAL_CALIB.encode(), "training/label_2/9.txt": labels,
    })  # fmt: skip


@pytest.fixture
def kitti() -> Iterator[TenantContext]:
    context = tenant(kitti_items())
    yield context
    context.engine.dispose()


def test_kitti_labels_become_the_frames_imported_documents_in_the_lidar_frame(
    kitti: TenantContext,
) -> None:
    ctx, store = kitti, kitti_files()
    made = import_scenes(ctx, DATASET, plan_scenes([*kitti_items(), *store.contents]), store)
    assert (made.scenes, made.frames, made.annotations) == (1, 5, 2)
    scene = get_scene(ctx, SIGNER, 1)
    counts = [[(a.source, a.object_count) for a in f.point_cloud.annotations] for f in scene.frames]
    assert counts == [[("imported", 2)], [], [], [("imported", 1)], []]
    key = document_key(1, "imported", imported_revision(1, "imported"))
    stored = AnnotationDocument.model_validate_json(store.written[key])
    car, region = stored.objects
    assert isinstance(car, Box3DObject) and isinstance(region, Box2DObject)
    assert car.contour.center == pytest.approx([10.0, 2.0, -1.0], abs=1e-12)
    assert (stored.model_extra or {})[UNCONVERTED] == [{"line": 3, "text": "Car 0 0"}]
    exported = export_labels(stored, parse_calibration(IDEAL_CALIB), image_size=IMAGE)
    assert exported.label.splitlines() == [CROSSING_LINE, DONT_CARE_EXPORTED]


def test_each_label_that_cannot_be_imported_says_why(kitti: TenantContext) -> None:
    ctx, store = kitti, kitti_files()
    made = import_scenes(ctx, DATASET, plan_scenes([*kitti_items(), *store.contents]), store)
    found = {p.name.removeprefix("training/"): p.reason for p in made.problems}
    assert found == {
        "label_2/9.txt": "labels for frame '9', which has no point cloud: not imported",
        "label_2/1.txt": "1 object(s) not converted (first: label line 3 has 3 values, not 15): "
        "kept whole under `kittiUnconverted`",
        "label_2/2.txt": "not imported: frame '2' has no calib/2.txt, and KITTI labels are "
        "placed in its camera frame",
        "calib/3.txt": "not a camera config: calibration line 1 (P2): could not convert string "
        "to float: 'x'",
        "label_2/3.txt": "not imported: training/calib/3.txt could not be read (see its own "
        "problem)",
        "calib/4.txt": "not a camera config: calibration has no P3",
    }


# -- a dataset's scenes ------------------------------------------------------------------------

SCENES = [f"drive_{n}" for n in range(1, 12)]  # drive_10 and drive_11 after drive_9


@pytest.fixture
def drives() -> Iterator[TenantContext]:
    """Eleven one-frame scenes in the dataset, and one in another dataset of the tenant."""
    clouds = [f"{scene}/lidar_point_cloud_0/0.pcd" for scene in SCENES]
    context = tenant(clouds)
    import_scenes(context, DATASET, plan_scenes(reversed(clouds)), Files({}))
    with context.engine.begin() as conn:
        conn.execute(datasets.insert().values(id=2, name="e", display_name="e",
                                              data_type="POINT_CLOUD_SEQUENCE"))  # fmt: skip
        conn.execute(scenes.insert().values(dataset_id=2, name="other", layout="xtreme1"))
    yield context
    context.engine.dispose()


def test_a_datasets_scenes_page_by_id_without_gaps_or_repeats(drives: TenantContext) -> None:
    seen, after, sizes = [], None, []
    while True:
        page = list_scenes(drives, DATASET, after, 4)
        seen += page.scenes
        sizes.append(len(page.scenes))
        if page.next is None:
            break
        after = page.next
    assert sizes == [4, 4, 3]
    assert [scene.name for scene in seen] == SCENES, "ids in the order the import planned"
    assert [scene.id for scene in seen] == sorted(scene.id for scene in seen)
    assert {(s.dataset_id, s.layout, s.frame_count) for s in seen} == {(DATASET, "xtreme1", 1)}


def test_a_last_page_that_is_exactly_full_has_no_next(drives: TenantContext) -> None:
    assert list_scenes(drives, DATASET, None, len(SCENES)).next is None
    last = list_scenes(drives, DATASET, None, len(SCENES) - 1)
    assert last.next is not None
    assert [s.name for s in list_scenes(drives, DATASET, last.next, 5).scenes] == ["drive_11"]
    assert [s.name for s in list_scenes(drives, 2, None, 5).scenes] == ["other"]


def test_a_scene_listing_refuses_other_cursors_and_datasets(drives: TenantContext) -> None:
    # An item's cursor, a frame's, and `scene:0` (scene ids start at 1).
    for cursor in (encode_cursor(3), encode_cursor(0, "frame"), "c2NlbmU6MA"):
        with pytest.raises(Invalid, match="not a cursor this API issued"):
            list_scenes(drives, DATASET, cursor, 5)
    with pytest.raises(NotFound, match="dataset 77 not found"):
        list_scenes(drives, 77, None, 5)


def test_the_scene_listing_route_pages_and_refuses(drives: TenantContext) -> None:
    path = f"/v1/datasets/{DATASET}/scenes"
    first = get(drives, f"{path}?limit=10")
    assert first.status_code == 200, first.text
    body = first.json()
    assert set(body["scenes"][0]) == {"id", "datasetId", "name", "layout", "frameCount",
                                      "createdAt"}  # fmt: skip
    rest = get(drives, f"{path}?after={body['next']}").json()
    assert [s["name"] for s in body["scenes"] + rest["scenes"]] == SCENES
    assert rest["next"] is None
    assert get(drives, f"{path}?after=42").status_code == 422
    assert get(drives, f"{path}?limit=0").status_code == 422
    missing = get(drives, "/v1/datasets/77/scenes")
    assert missing.status_code == 404 and missing.json() == {"detail": "dataset 77 not found"}


def test_export_pages_cross_scenes_and_reach_every_frame_once(drives: TenantContext) -> None:
    pages = list(frame_units(drives, DATASET, None, with_cameras=False, page=4))
    assert [len(page) for page in pages] == [4, 4, 3], "pages filled across scene boundaries"
    assert [unit.scene for page in pages for unit in page] == SCENES


def test_export_pages_read_one_scene_per_query(ctx: TenantContext) -> None:
    import_scenes(ctx, DATASET, plan_scenes(names()), files())
    statements: list[str] = []
    sa.event.listen(ctx.engine, "before_cursor_execute",
                    lambda *args: statements.append(args[2]))  # fmt: skip
    pages = list(frame_units(ctx, DATASET, None, with_cameras=False, page=5))
    assert [unit.index for page in pages for unit in page] == list(range(len(STEMS)))
    frame_reads = [s for s in statements if "FROM frames" in s and "JOIN scenes" in s]
    assert len(frame_reads) == 3, "one read per page, the last one short"
    assert all(" OR " not in s and "frames.scene_id = " in s for s in frame_reads)
