"""services.scenes on SQLite: a plan becomes scenes once however often it runs, read back in
order with calibration, annotation ETags and derived-file URLs, paged by frame index."""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
import pytest
import sqlalchemy as sa

from annostack.adapters.tenant_tables import annotation_results, data_items, datasets, metadata
from annostack.domain.errors import Invalid, NotFound
from annostack.domain.items import ItemStatus, classify
from annostack.domain.scenes import plan_scenes
from annostack.domain.tenants import TenantNames
from annostack.services.exports import frame_units
from annostack.services.scenes import get_scene, import_scenes, list_frames
from annostack.services.tenancy import TenantContext
from tests.unit.test_browsing import SIGNER, connection
from tests.unit.test_scenes import BOX, camera

DATASET = 1
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


@pytest.fixture
def ctx() -> Iterator[TenantContext]:
    engine = sa.create_engine(
        "sqlite://", poolclass=sa.StaticPool, connect_args={"check_same_thread": False}
    )
    metadata.create_all(engine)
    rows = [
        {"id": number, "dataset_id": DATASET, "name": name, "object_key": f"data/{name}",
         "content_type": "application/octet-stream", "size": 10, "kind": classify(name).kind,
         "status": ItemStatus.PROCESSED}
        for number, name in enumerate(names(), 1)
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(datasets.insert(), [{"id": DATASET, "name": "d", "display_name": "d",
                                          "data_type": "POINT_CLOUD_SEQUENCE"}])  # fmt: skip
        conn.execute(data_items.insert(), rows)
    yield TenantContext(TenantNames(tenant="acme"), connection(), engine, time.monotonic())
    engine.dispose()


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
