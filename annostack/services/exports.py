"""Exports of a dataset's annotations: which frames or images, in pages, converted as they come.

An export is a ProcessingJob with `operations: [export]` (`start_export` creates one for the
API; GitOps applies its own). The operator publishes one `ExportMessage`; a worker
(workers.export) calls `write_export` with the pages of this module and a stream that is a
multipart upload to `exports/<job>.<ext>` in the tenant's bucket.

What is exported, per format:

| format  | unit                     | entries                                                  |
|---------|--------------------------|----------------------------------------------------------|
| xtreme1 | each frame of each scene | `<scene>/result/<frame>.json`: one entry per source       |
| kitti   | each frame of each scene | `<scene>/label_2/<frame>.txt`, `<scene>/calib/<frame>.txt` |
| coco    | each image item          | one instances JSON (not an archive: COCO is one file)    |
| nuscenes| each frame of each scene | `v1.0-annostack/<table>.json`: the devkit's 13 tables     |

`<scene>` is the scene's name as imported, so an export unpacks into the layout it came from
and imports again. Point clouds that are no scene's frame (uploaded one by one, or a
`POINT_CLOUD` dataset's) follow as the frames of one more scene, `unsequenced`, each named by
its item's name without the extension (`unsequenced/result/lidar/000042.json`); having no
cameras, they have no KITTI labels (the report says so per object).

Without `source`, every source of an item is exported: Xtreme1 writes one
result entry per source (as Xtreme1 itself does); KITTI and COCO write the objects of all of
them together; nuScenes keeps each source's tracks apart. A frame with no document gets no
Xtreme1 result, an empty KITTI label file, a nuScenes sample without annotations.

**Bounded memory.** Units are read `PAGE` at a time by keyset, each page's documents fetched
together (`Documents`), converted and written before the next page is read; entries are
generated lazily, so at most one page of documents is held. The report keeps counts and the
first few hundred notes (domain.exports.report). COCO and nuScenes write one file per table
across all units, so those wait in spools (in memory up to `SPOOL_BYTES` each, then on the
worker's disk) and are copied into the output at the end.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import IO, Any, Protocol

import numpy as np
import orjson
import sqlalchemy as sa
from pydantic import ConfigDict, Field, ValidationError
from pydantic.config import JsonDict

from annostack.adapters.kube import Kube
from annostack.adapters.object_store import EXPORTS_PREFIX
from annostack.adapters.objects import Presigner
from annostack.adapters.tenant_tables import (
    annotation_results,
    data_items,
    frame_images,
    frames,
    scenes,
)
from annostack.domain.annotations import AnnotationDocument
from annostack.domain.calibration import CameraCalibration, FrameCamera
from annostack.domain.conditions import ConditionType
from annostack.domain.errors import NotFound
from annostack.domain.exports.archive import ArchiveKind, write_archive
from annostack.domain.exports.coco import CocoImage, CocoWriter
from annostack.domain.exports.kitti import UNCONVERTED as KITTI_UNCONVERTED
from annostack.domain.exports.kitti import export_labels
from annostack.domain.exports.kitti_calib import (
    KittiCalibration,
    calibration_from_camera,
    format_calibration,
)
from annostack.domain.exports.nuscenes import NuScenesFrame, NuScenesWriter
from annostack.domain.exports.report import ExportFormat, ExportReport, Skip
from annostack.domain.exports.xtreme1 import UNCONVERTED as XTREME1_UNCONVERTED
from annostack.domain.exports.xtreme1 import result_to_xtreme1
from annostack.domain.items import FileKind, PixelSize
from annostack.domain.models import CamelModel
from annostack.domain.processing import (
    EXPORT,
    ExportSpec,
    ExportStatus,
    JobPhase,
    ProcessingJobSpec,
    ProcessingJobStatus,
    processing_job_manifest,
)
from annostack.domain.tenants import API_GROUP, API_VERSION
from annostack.services.annotations import document_key, document_of
from annostack.services.browsing import EXAMPLE_URL
from annostack.services.datasets import get_dataset
from annostack.services.tenancy import TenantContext

SPOOL_BYTES = 8 * 2**20  # a spool is in memory up to this, then a temporary file
PAGE = 100  # frames or images per page: 100 documents of ~25 KB in memory at a time
# Point clouds uploaded one by one belong to no scene; they export as the frames of one more,
# after the real ones. Scene ids start at 1, so 0 makes nuScenes tokens no real scene has.
UNSEQUENCED = "unsequenced"
UNSEQUENCED_SCENE_ID = 0
DOWNLOAD_LIFETIME = timedelta(minutes=15)  # short: the URL is a bearer credential for the file
KITTI_CAMERA = "image_2"  # the left colour camera, whose P2 KITTI's labels are drawn with
NO_CALIBRATION = "the frame has no camera calibration: KITTI labels are in a camera's frame"
EXTENSIONS = {ArchiveKind.ZIP: "zip", ArchiveKind.TAR_GZ: "tar.gz"}
CONTENT_TYPES = {"zip": "application/zip", "tar.gz": "application/gzip",
                 "json": "application/json"}  # fmt: skip


@dataclass(frozen=True)
class ExportUnit:
    """One frame (xtreme1, kitti, nuscenes) or image item (coco), and the sources it has
    documents of."""

    item_id: int  # the item whose documents are exported: the frame's point cloud, or the image
    name: str  # the frame's name, or the image item's name
    scene: str | None = None
    sources: tuple[str, ...] = ()  # in name order
    cameras: tuple[FrameCamera, ...] = ()  # kitti, nuscenes: the frame's images
    scene_id: int | None = None  # a frame's: its scene's row id
    index: int = 0  # a frame's: its index in the scene
    timestamp: datetime | None = None  # a frame's, if it has one
    file_name: str | None = None  # a frame's: its point cloud item's name
    revisions: tuple[str | None, ...] = ()  # each source's current document (annotations)
    pixel_size: PixelSize | None = None  # an image item's, if the worker recorded it (coco)

    @property
    def label(self) -> str:
        """How the report names it: `<scene>/<frame>`, or the item's name."""
        return self.name if self.scene is None else f"{self.scene}/{self.name}"

    def document_keys(self) -> list[str]:
        # Built without revisions (tests, imports): every document at its pre-revision key.
        revisions = self.revisions or (None,) * len(self.sources)
        pairs = zip(self.sources, revisions, strict=True)
        return [document_key(self.item_id, source, revision) for source, revision in pairs]


Documented = tuple[ExportUnit, list[tuple[str, bytes]]]  # a unit, its (source, body) pairs


class Documents(Protocol):
    """Reads annotation documents; a key with nothing stored is left out of the answer."""

    def read(self, keys: list[str]) -> dict[str, bytes]: ...


@dataclass(frozen=True)
class FollowingSaves:
    """Documents as `inner` reads them, and one that a save replaced (removing its object)
    after the page was listed is read at the revision now current: an export racing an editor
    exports the newer document, never none."""

    inner: Documents
    ctx: TenantContext

    def read(self, keys: list[str]) -> dict[str, bytes]:
        found = self.inner.read(keys)
        missing = [key for key in keys if key not in found]
        if not missing:
            return found
        now = _current_keys(self.ctx, [document_of(key) for key in missing])
        moved = {
            old: now[document_of(old)] for old in missing if now.get(document_of(old), old) != old
        }
        again = self.inner.read(sorted(set(moved.values())))
        found.update({old: again[new] for old, new in moved.items() if new in again})
        return found


def _current_keys(
    ctx: TenantContext, documents: list[tuple[int, str]]
) -> dict[tuple[int, str], str]:
    results = annotation_results.c
    pairs = sa.tuple_(results.data_item_id, results.source).in_(documents)
    query = sa.select(results.data_item_id, results.source, results.revision).where(pairs)
    with ctx.engine.connect() as conn:
        rows = conn.execute(query).all()
    return {
        (int(row.data_item_id), str(row.source)): document_key(
            int(row.data_item_id), str(row.source), row.revision
        )
        for row in rows
    }


# -- which units, page by page ---------------------------------------------------------------


def frame_units(
    ctx: TenantContext, dataset_id: int, source: str | None, with_cameras: bool, page: int = PAGE
) -> Iterator[list[ExportUnit]]:
    """The dataset's frames, scene by scene in import order, each scene's in index order."""
    for rows in _frame_pages(ctx, dataset_id, page):
        with ctx.engine.connect() as conn:
            items = [int(row.point_cloud_item_id) for row in rows]
            sources = _sources(conn, items, source)
            cameras = _cameras(conn, [int(row.id) for row in rows]) if with_cameras else {}
        yield [_frame_unit(row, sources, cameras) for row in rows]


def _frame_pages(ctx: TenantContext, dataset_id: int, page: int) -> Iterator[list[sa.Row[Any]]]:
    """Pages of `page` frames (the last may be short), each read within one scene at a time.

    The keyset stays inside a scene (`scene_id = s AND idx > i`, a range of the unique
    (scene_id, idx) index): a dataset-wide `(scene_id, idx) > (s, i)` is an OR that TiDB
    plans as a join of every remaining frame per page, which made a 100,000-frame export
    quadratic (1.9 s per page at the end)."""
    with ctx.engine.connect() as conn:
        scene_ids = _scene_ids(conn, dataset_id)
    pending: list[sa.Row[Any]] = []
    for scene_id in scene_ids:
        after: int | None = None
        while True:
            wanted = page - len(pending)
            with ctx.engine.connect() as conn:
                rows = conn.execute(_frames_of(scene_id, after, wanted)).all()
            pending.extend(rows)
            if len(pending) == page:
                yield pending
                pending = []
            if len(rows) < wanted:
                break  # the scene's last frame is read
            after = int(rows[-1].idx)
    if pending:
        yield pending


def _scene_ids(conn: sa.Connection, dataset_id: int) -> list[int]:
    query = sa.select(scenes.c.id).where(scenes.c.dataset_id == dataset_id).order_by(scenes.c.id)
    return [int(scene_id) for scene_id in conn.execute(query).scalars()]


def _frames_of(scene_id: int, after: int | None, limit: int) -> sa.Select[Any]:
    query = (
        sa.select(frames.c.id, frames.c.idx, frames.c.name, frames.c.point_cloud_item_id,
                  frames.c.scene_id, frames.c.timestamp, scenes.c.name.label("scene"),
                  data_items.c.name.label("file_name"))
        .join(scenes, scenes.c.id == frames.c.scene_id)
        .join(data_items, data_items.c.id == frames.c.point_cloud_item_id)
        .where(frames.c.scene_id == scene_id)
    )  # fmt: skip
    if after is not None:
        query = query.where(frames.c.idx > after)
    return query.order_by(frames.c.idx).limit(limit)


def _frame_unit(
    row: sa.Row[Any],
    sources: Mapping[int, Sourced],
    cameras: Mapping[int, tuple[FrameCamera, ...]],
) -> ExportUnit:
    item = int(row.point_cloud_item_id)
    names, revisions = sources.get(item, ((), ()))
    return ExportUnit(
        item_id=item,
        name=str(row.name),
        scene=str(row.scene),
        sources=names,
        revisions=revisions,
        cameras=cameras.get(int(row.id), ()),
        scene_id=int(row.scene_id),
        index=int(row.idx),
        timestamp=row.timestamp,
        file_name=str(row.file_name),
    )


def image_units(
    ctx: TenantContext, dataset_id: int, source: str | None, page: int = PAGE
) -> Iterator[list[ExportUnit]]:
    """The dataset's image items, in id order."""
    condition = data_items.c.kind == FileKind.IMAGE
    for rows in _item_pages(ctx, dataset_id, condition, page):
        with ctx.engine.connect() as conn:
            sources = _sources(conn, [int(row.id) for row in rows], source)
        yield [_image_unit(row, sources) for row in rows]


def unsequenced_units(
    ctx: TenantContext, dataset_id: int, source: str | None, page: int = PAGE
) -> Iterator[list[ExportUnit]]:
    """The dataset's point clouds that are no scene's frame (uploaded one by one), in id
    order: frames of one scene, `UNSEQUENCED`, without cameras."""
    index = 0
    for rows in _item_pages(ctx, dataset_id, _unsequenced(), page):
        with ctx.engine.connect() as conn:
            sources = _sources(conn, [int(row.id) for row in rows], source)
        units = []
        for row in rows:
            units.append(_unsequenced_unit(row, index, sources))
            index += 1
        yield units


def _unsequenced() -> sa.ColumnElement[bool]:
    in_a_frame = sa.exists().where(frames.c.point_cloud_item_id == data_items.c.id)
    return sa.and_(data_items.c.kind == FileKind.POINT_CLOUD, ~in_a_frame)


def _item_pages(
    ctx: TenantContext, dataset_id: int, condition: sa.ColumnElement[bool], page: int
) -> Iterator[list[sa.Row[Any, Any, Any, Any]]]:
    after = 0
    while True:
        query = (
            sa.select(data_items.c.id, data_items.c.name, data_items.c.width,
                      data_items.c.height)
            .where(data_items.c.dataset_id == dataset_id, condition, data_items.c.id > after)
            .order_by(data_items.c.id)
            .limit(page)
        )  # fmt: skip
        with ctx.engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return
        yield list(rows)
        after = int(rows[-1].id)


def _unsequenced_unit(
    row: sa.Row[Any, Any, Any, Any], index: int, sources: Mapping[int, Sourced]
) -> ExportUnit:
    names, revisions = sources.get(int(row.id), ((), ()))
    return ExportUnit(
        item_id=int(row.id),
        name=str(PurePosixPath(str(row.name)).with_suffix("")),
        scene=UNSEQUENCED,
        sources=names,
        revisions=revisions,
        scene_id=UNSEQUENCED_SCENE_ID,
        index=index,
        file_name=str(row.name),
    )


def units_of(
    ctx: TenantContext, dataset_id: int, spec: ExportSpec, page: int = PAGE
) -> Iterator[list[ExportUnit]]:
    if spec.format is ExportFormat.COCO:
        return image_units(ctx, dataset_id, spec.source, page)
    with_cameras = spec.format in (ExportFormat.KITTI, ExportFormat.NUSCENES)
    return itertools.chain(
        frame_units(ctx, dataset_id, spec.source, with_cameras, page),
        unsequenced_units(ctx, dataset_id, spec.source, page),
    )


def count_units(ctx: TenantContext, dataset_id: int, spec: ExportSpec) -> int:
    """How many frames (or images) the export will write: its progress' total."""
    if spec.format is ExportFormat.COCO:
        query = sa.select(sa.func.count()).where(
            data_items.c.dataset_id == dataset_id, data_items.c.kind == FileKind.IMAGE
        )
        with ctx.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
    framed = (
        sa.select(sa.func.count())
        .select_from(frames.join(scenes, scenes.c.id == frames.c.scene_id))
        .where(scenes.c.dataset_id == dataset_id)
    )
    unsequenced = sa.select(sa.func.count()).where(
        data_items.c.dataset_id == dataset_id, _unsequenced()
    )
    with ctx.engine.connect() as conn:
        return int(conn.execute(framed).scalar_one()) + int(conn.execute(unsequenced).scalar_one())


Sourced = tuple[tuple[str, ...], tuple[str | None, ...]]  # an item's sources, their revisions


def _image_unit(row: sa.Row[Any, Any, Any, Any], sources: Mapping[int, Sourced]) -> ExportUnit:
    names, revisions = sources.get(int(row.id), ((), ()))
    # Both or neither: the worker records them in one UPDATE.
    size = None if row.width is None else PixelSize(int(row.width), int(row.height))
    return ExportUnit(
        int(row.id), str(row.name), sources=names, revisions=revisions, pixel_size=size
    )


def _sources(conn: sa.Connection, item_ids: list[int], source: str | None) -> dict[int, Sourced]:
    results = annotation_results.c
    query = sa.select(results.data_item_id, results.source, results.revision).where(
        results.data_item_id.in_(item_ids)
    )
    if source is not None:
        query = query.where(results.source == source)
    found: defaultdict[int, list[tuple[str, str | None]]] = defaultdict(list)
    for row in conn.execute(query.order_by(results.source)):
        found[int(row.data_item_id)].append((str(row.source), row.revision))
    return {
        item: (tuple(name for name, _ in pairs), tuple(rev for _, rev in pairs))
        for item, pairs in found.items()
    }


def _cameras(conn: sa.Connection, frame_ids: list[int]) -> dict[int, tuple[FrameCamera, ...]]:
    query = (
        sa.select(frame_images.c.frame_id, frame_images.c.camera, frame_images.c.calibration,
                  data_items.c.name)
        .join(data_items, data_items.c.id == frame_images.c.data_item_id)
        .where(frame_images.c.frame_id.in_(frame_ids))
        .order_by(frame_images.c.camera)
    )  # fmt: skip
    found: defaultdict[int, list[FrameCamera]] = defaultdict(list)
    for row in conn.execute(query):
        calibration = None if row.calibration is None else CameraCalibration(**row.calibration)
        found[int(row.frame_id)].append(FrameCamera(str(row.camera), str(row.name), calibration))
    return {frame: tuple(cameras) for frame, cameras in found.items()}


# -- converting, page by page ----------------------------------------------------------------


def write_export(
    spec: ExportSpec,
    pages: Iterable[list[ExportUnit]],
    documents: Documents,
    out: IO[bytes],
    on_page: Callable[[int], None] = lambda _: None,
) -> ExportReport:
    """Writes the whole export to `out`; `on_page(done)` after each page is written."""
    report = ExportReport()
    units = _documented(_counted(pages, on_page), documents)
    if spec.format is ExportFormat.COCO:
        _write_coco(spec, units, out, report)
        return report
    if spec.format is ExportFormat.NUSCENES:
        _write_nuscenes(spec, units, out, report)
        return report
    convert = _xtreme1_entries if spec.format is ExportFormat.XTREME1 else _kitti_entries
    entries = (entry for unit, bodies in units for entry in convert(spec, unit, bodies, report))
    write_archive(entries, out, spec.archive or ArchiveKind.ZIP)
    return report


def _counted(
    pages: Iterable[list[ExportUnit]], on_page: Callable[[int], None]
) -> Iterator[list[ExportUnit]]:
    """The pages; `on_page` runs when the next one is asked for, i.e. once one is written."""
    done = 0
    for page in pages:
        yield page
        done += len(page)
        on_page(done)


def _documented(pages: Iterable[list[ExportUnit]], documents: Documents) -> Iterator[Documented]:
    """Every unit of every page with its documents' bodies, read a page at a time."""
    for page in pages:
        yield from _with_documents(page, documents)


def _with_documents(page: list[ExportUnit], documents: Documents) -> Iterator[Documented]:
    """Each unit with its documents' bodies (source, body), read for the page at once."""
    found = documents.read([key for unit in page for key in unit.document_keys()])
    for unit in page:
        keys = zip(unit.sources, unit.document_keys(), strict=True)
        yield unit, [(source, found[key]) for source, key in keys if key in found]


def _xtreme1_entries(
    spec: ExportSpec, unit: ExportUnit, bodies: list[tuple[str, bytes]], report: ExportReport
) -> list[tuple[str, bytes]]:
    if not bodies:
        return []  # nothing annotated: Xtreme1 writes no result either
    entries, skipped = result_to_xtreme1(orjson.loads(body) for _, body in bodies)
    # What Xtreme1 cannot hold is not in `entries` (it is in `skipped`); everything else is.
    exported = sum(len(entry.get("objects") or []) for entry in entries)
    report.record(ExportFormat.XTREME1, unit.label, exported, skipped)
    return [(f"{unit.scene}/result/{unit.name}.json", orjson.dumps(entries))]


def _kitti_entries(
    spec: ExportSpec, unit: ExportUnit, bodies: list[tuple[str, bytes]], report: ExportReport
) -> list[tuple[str, bytes]]:
    document, unreadable = merged_document(bodies)
    camera = kitti_camera(unit, spec.camera)
    if camera is None:
        skipped = [Skip(obj.id, obj.type, NO_CALIBRATION) for obj in document.objects]
        report.record(ExportFormat.KITTI, unit.label, 0, [*unreadable, *skipped])
        return []
    calibration = kitti_calibration(camera)
    size = (camera.width, camera.height) if camera.width and camera.height else None
    frame = export_labels(document, calibration, spec.classes, size)
    report.record(
        ExportFormat.KITTI, unit.label, frame.exported, [*unreadable, *frame.skipped], frame.lossy
    )
    return [
        (f"{unit.scene}/label_2/{unit.name}.txt", frame.label.encode()),
        (f"{unit.scene}/calib/{unit.name}.txt", format_calibration(calibration).encode()),
    ]


def _write_coco(
    spec: ExportSpec, units: Iterable[Documented], out: IO[bytes], report: ExportReport
) -> None:
    # The annotations wait in a spool until the images are written (domain.exports.coco).
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        writer = CocoWriter(out, spool, spec.categories)
        for unit, bodies in units:
            document, unreadable = merged_document(bodies)
            written, skipped = writer.add(coco_image(unit), document)
            report.record(ExportFormat.COCO, unit.label, written, [*unreadable, *skipped])
            if unit.pixel_size is None:
                report.record_without_size(ExportFormat.COCO, unit.label)
        writer.close()


def coco_image(unit: ExportUnit) -> CocoImage:
    """The image entry of an image item: its size as recorded, or null (domain.exports.coco)."""
    size = unit.pixel_size
    if size is None:
        return CocoImage(unit.item_id, unit.name)
    return CocoImage(unit.item_id, unit.name, size.width, size.height)


def _write_nuscenes(
    spec: ExportSpec, units: Iterable[Documented], out: IO[bytes], report: ExportReport
) -> None:
    # One spool per table (domain.exports.nuscenes), all copied into the archive at the end.
    with contextlib.ExitStack() as spools:

        def spool() -> IO[bytes]:
            return spools.enter_context(tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES))

        writer = NuScenesWriter(spool, spec.classes)
        for unit, bodies in units:
            by_source, unreadable = source_documents(bodies)
            frame = writer.add(nuscenes_frame(unit), by_source)
            skipped = [*unreadable, *frame.skipped]
            report.record(ExportFormat.NUSCENES, unit.label, frame.exported, skipped, frame.lossy)
        write_archive(writer.close(), out, spec.archive or ArchiveKind.ZIP)


def nuscenes_frame(unit: ExportUnit) -> NuScenesFrame:
    # frame_units gives every unit its scene and point cloud; only image items lack them.
    assert unit.scene is not None and unit.scene_id is not None and unit.file_name is not None
    return NuScenesFrame(
        scene_id=unit.scene_id,
        scene=unit.scene,
        index=unit.index,
        item_id=unit.item_id,
        lidar_file=unit.file_name,
        timestamp=unit.timestamp,
        cameras=unit.cameras,
    )


def source_documents(
    bodies: list[tuple[str, bytes]],
) -> tuple[list[tuple[str, AnnotationDocument]], list[Skip]]:
    """Each source's document; one that does not validate is one Skip with the reason (it
    was saved before a check it fails, or by hand)."""
    documents = []
    unreadable = []
    for source, body in bodies:
        try:
            document = AnnotationDocument.model_validate_json(body)
        except ValidationError as error:
            reason = f"the {source} document is not valid: {error.errors()[0]['msg']}"
            unreadable.append(Skip(None, None, reason))
            continue
        documents.append((source, document))
        unreadable += kept_unconverted(source, document)
    return documents, unreadable


def kept_unconverted(source: str, document: AnnotationDocument) -> list[Skip]:
    """What an import kept whole because annostack has no such object (an Xtreme1 point
    segment, a KITTI line that did not parse): not objects of the document, so no converter
    sees them, and each is a skip of every export but the Xtreme1 one that writes them back."""
    kept = document.model_extra or {}
    # domain.exports.xtreme1 keeps each as {"index": its place in the result, "object": it}.
    kept_objects = kept.get(XTREME1_UNCONVERTED) or []
    objects = [entry.get("object") for entry in kept_objects if isinstance(entry, dict)]
    skips = [
        Skip(
            _text(obj.get("id")),
            _text(obj.get("type")),
            f"kept as Xtreme1 wrote it by the {source} import ({XTREME1_UNCONVERTED}); "
            "only an xtreme1 export writes it",
            unsupported_type=obj.get("type") is not None,
        )
        for obj in objects
        if isinstance(obj, dict)
    ]
    skips += [
        Skip(None, None, f"KITTI line {line.get('line')} of the {source} import did not parse")
        for line in kept.get(KITTI_UNCONVERTED) or []
        if isinstance(line, dict)
    ]
    return skips


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def merged_document(bodies: list[tuple[str, bytes]]) -> tuple[AnnotationDocument, list[Skip]]:
    """The objects of every source's document as one (see source_documents)."""
    documents, unreadable = source_documents(bodies)
    objects: list[Any] = [obj for _, document in documents for obj in document.objects]
    return AnnotationDocument(objects=objects), unreadable


def kitti_camera(unit: ExportUnit, wanted: str | None) -> CameraCalibration | None:
    """The calibration labels are written for: the camera asked for, else image_2, else the
    first camera of the frame that has one."""
    calibrated = {c.camera: c.calibration for c in unit.cameras if c.calibration is not None}
    if wanted is not None:
        return calibrated.get(wanted)
    return calibrated.get(KITTI_CAMERA) or next(iter(calibrated.values()), None)


def kitti_calibration(camera: CameraCalibration) -> KittiCalibration:
    """KITTI matrices of an annostack camera (taken as rectified: P2 = [K|0], R0_rect = I)."""
    k = camera.intrinsics
    intrinsics = np.array([[k.fx, 0, k.cx], [0, k.fy, k.cy], [0, 0, 1]], dtype=np.float64)
    extrinsics = np.array(camera.extrinsics, dtype=np.float64).reshape(4, 4)
    return calibration_from_camera(intrinsics, extrinsics)


# -- the job, for the API --------------------------------------------------------------------


def export_extension(spec: ExportSpec) -> str:
    if spec.format is ExportFormat.COCO:
        return "json"
    return EXTENSIONS[spec.archive or ArchiveKind.ZIP]


def export_key(job_name: str, spec: ExportSpec) -> str:
    """Where a job's export is written: the job's name is unique in the tenant's namespace."""
    return f"{EXPORTS_PREFIX}{job_name}.{export_extension(spec)}"


def content_type(spec: ExportSpec) -> str:
    return CONTENT_TYPES[export_extension(spec)]


def export_job_name(dataset_id: int) -> str:
    # A new name per request: every POST is a new export, never a replay of an earlier one.
    return f"export-{int(dataset_id)}-{secrets.token_hex(4)}"


def start_export(kube: Kube, ctx: TenantContext, dataset_id: int, spec: ExportSpec) -> str:
    """The ProcessingJob that exports the dataset; its name."""
    dataset = get_dataset(ctx, dataset_id)
    job = ProcessingJobSpec(dataset=dataset.name, operations=[EXPORT], export=spec)
    name = export_job_name(dataset_id)
    kube.apply(processing_job_manifest(ctx.names.namespace, name, job, "annostack-api"))
    return name


def export_job(kube: Kube, ctx: TenantContext, name: str) -> dict[str, Any]:
    """An export job of the caller's tenant (its namespace, so no other tenant's), as stored."""
    found = kube.get(f"{API_GROUP}/{API_VERSION}", "ProcessingJob", name, ctx.names.namespace)
    job = found.to_dict() if hasattr(found, "to_dict") else found
    if not job or EXPORT not in (job.get("spec", {}).get("operations") or []):
        raise NotFound(f"export {name!r} not found")
    return dict(job)


_EXPORT_EXAMPLE: JsonDict = {
    "id": "export-3-9f2c4b1a", "dataset": "drive-1", "format": "kitti", "phase": "Complete",
    "done": 300, "total": 300, "message": "kitti: 300 items, 8950 objects, 2 skipped; written "
    "to exports/export-3-9f2c4b1a.zip",
    "report": {"formats": {"kitti": {"items": 300, "objects": 8950, "skipped": 2, "lossy": 0}},
               "skipped": [{"format": "kitti", "item": "scene_1/17", "objectId": "p-3",
                            "objectType": "POLYGON", "reason": "KITTI labels hold 3D boxes"}],
               "lossy": [], "unsupportedTypes": {"kitti:POLYGON": 2}},
    "downloadUrl": EXAMPLE_URL, "expiresAt": "2026-12-01T10:17:00Z",
}  # fmt: skip


class ExportAccepted(CamelModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"id": "export-3-9f2c4b1a", "statusUrl": "/v1/exports/export-3-9f2c4b1a"}]
        }
    )

    id: str = Field(description="The export's id: its ProcessingJob's name.")
    status_url: str = Field(description="Where to follow it: `GET /v1/exports/{id}`.")


class ExportPublic(CamelModel):
    """An export as the API shows it: progress, report, and once done where to get it."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXPORT_EXAMPLE]})

    id: str = Field(description="The ProcessingJob's name.")
    dataset: str = Field(description="The dataset's resource name.")
    format: ExportFormat
    phase: JobPhase = Field(description="Pending, Running, Complete, Failed or Cancelled.")
    done: int = Field(description="Frames or images written so far.")
    total: int = Field(description="Frames or images to write.")
    message: str = Field(description="How it ended (the report's summary), or why it failed.")
    report: ExportReport | None = Field(description="Counts, and every object left out or cut.")
    download_url: str | None = Field(description="A pre-signed GET of the export, once done.")
    expires_at: datetime | None = Field(description="When the URL stops working (UTC).")


def get_export(kube: Kube, ctx: TenantContext, signer: Presigner, name: str) -> ExportPublic:
    """The caller's export `name`; a download URL if it is complete."""
    job = export_job(kube, ctx, name)
    spec = ProcessingJobSpec.model_validate(job["spec"])
    status = ProcessingJobStatus.model_validate(job.get("status") or {})
    assert spec.export is not None  # export_job returns export jobs only
    export = status.export or ExportStatus(format=spec.export.format)
    url, expires = None, None
    if status.phase is JobPhase.COMPLETE and export.key:
        expires = datetime.now(UTC) + DOWNLOAD_LIFETIME
        url = signer.presign_get(ctx.connection.bucket, export.key, DOWNLOAD_LIFETIME)
    return ExportPublic(
        id=name,
        dataset=spec.dataset,
        format=spec.export.format,
        phase=status.phase or JobPhase.PENDING,
        done=export.done,
        total=export.total or status.total,
        message=_last_message(status),
        report=export.report,
        download_url=url,
        expires_at=expires,
    )


def _last_message(status: ProcessingJobStatus) -> str:
    for condition in status.conditions:
        if condition.type in (ConditionType.COMPLETE, ConditionType.FAILED):
            return condition.message
    return ""
