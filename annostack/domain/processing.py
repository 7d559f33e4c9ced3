"""Dataset and ProcessingJob resources (namespaced, in the tenant's namespace)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Literal, Self, get_args

from pydantic import Field, model_validator

from annostack.domain.annotations import SOURCE_PATTERN
from annostack.domain.conditions import Conditions
from annostack.domain.exports.archive import ArchiveKind
from annostack.domain.exports.kitti import KITTI_TYPES
from annostack.domain.exports.report import ExportFormat, ExportReport
from annostack.domain.models import CamelModel
from annostack.domain.tenants import API_GROUP, API_VERSION

DataType = Literal["IMAGE", "POINT_CLOUD", "POINT_CLOUD_SEQUENCE", "TEXT", "AUDIO", "VIDEO"]
Operation = Literal["thumbnail", "compress", "render-bev", "split"]
# What a ProcessingJob may ask for: the per-item operations, or one `export` of the dataset
# (not a per-item operation, so a Dataset's `operations` cannot name it).
JobOperation = Literal["thumbnail", "compress", "render-bev", "split", "export"]
EXPORT: JobOperation = "export"
DEFAULT_OPERATIONS: tuple[Operation, ...] = ("thumbnail", "compress", "render-bev")
MAX_CLASSES = 1000  # class mappings and COCO category lists: a dataset's class list, not data
MAX_CATEGORY = 256  # characters of a nuScenes category name (vehicle.emergency.ambulance: 27)

# Which operations each processing topic carries out. One message per item goes to the topic
# for its kind of data and lists the operations wanted, so a point cloud is read and parsed
# once for all of its operations rather than once per operation.
# `thumbnail` is the list-view preview of every kind: image thumbnails, a video's poster
# frame and thumbnails, an audio waveform, a text snippet (each with the file's metadata).
OPERATIONS_BY_TOPIC: dict[str, frozenset[Operation]] = {
    "thumbnails": frozenset({"thumbnail"}),
    "pointclouds": frozenset({"compress", "render-bev", "split"}),
    "media": frozenset({"thumbnail"}),
}


class JobPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETE = "Complete"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobPhase.COMPLETE, JobPhase.FAILED, JobPhase.CANCELLED)


class DatasetPhase(StrEnum):
    PENDING = "Pending"
    IMPORTING = "Importing"
    READY = "Ready"
    FAILED = "Failed"


def wanted_on(topic: str, operations: Iterable[str]) -> list[Operation]:
    """The requested operations a message on `topic` carries out, in a stable order."""
    return sorted(OPERATIONS_BY_TOPIC.get(topic, frozenset()) & set(operations))


class ImportSource(CamelModel):
    """Where a dataset's files come from."""

    s3_prefix: str | None = Field(
        default=None, max_length=1024, description="Prefix in the tenant's bucket to import."
    )
    archive: str | None = Field(
        default=None, max_length=1024, description="Key of a zip/tar archive in the bucket."
    )


class DatasetSpec(CamelModel):
    """Desired state of a dataset."""

    display_name: str = Field(min_length=1, max_length=256, description="Shown in UIs.")
    data_type: DataType = Field(description="Kind of data; fixed once created.")
    source: ImportSource | None = Field(default=None, description="Optional import source.")
    operations: list[Operation] = Field(
        default_factory=lambda: list(DEFAULT_OPERATIONS),
        max_length=8,
        description="Processing run on every imported item.",
    )


class DatasetStatus(CamelModel):
    """Observed state of a dataset."""

    observed_generation: int | None = Field(default=None, description="Generation observed.")
    phase: DatasetPhase | None = Field(
        default=None, description="Pending, Importing, Ready or Failed."
    )
    dataset_id: int | None = Field(default=None, description="Row id in the tenant database.")
    import_job: str | None = Field(
        default=None, description="The ProcessingJob that processes the imported source."
    )
    items: int = Field(default=0, description="Data items registered.")
    processed: int = Field(default=0, description="Items whose processing finished.")
    conditions: Conditions = Field(default_factory=list)


def per_item(operations: Iterable[str]) -> list[Operation]:
    """The operations run on every item (all of a job's, except `export`)."""
    known = set(get_args(Operation))
    return [operation for operation in operations if operation in known]  # type: ignore[misc]


class ExportSpec(CamelModel):
    """What an `export` job writes, and from which annotations.

    Checked here as well as by the CRD's rules, so the API refuses a bad request with the
    same message the apiserver gives a bad manifest.
    """

    format: ExportFormat = Field(
        description="xtreme1 (result/<frame>.json per frame), kitti (label_2/ and calib/ per "
        "frame), coco (one instances JSON of the 2D boxes and polygons of the images) or "
        "nuscenes (the nuScenes devkit's v1.0-annostack/ tables of the 3D boxes of every "
        "scene, tracks as instances)."
    )
    source: str | None = Field(
        default=None,
        pattern=SOURCE_PATTERN,
        description="The annotation source to export (e.g. imported); every source if unset.",
    )
    archive: ArchiveKind | None = Field(
        default=None,
        description="zip (the default) or tar.gz, for xtreme1, kitti and nuscenes. A COCO "
        "export is one JSON file, not an archive.",
    )
    classes: dict[str, str] = Field(
        default_factory=dict,
        max_length=MAX_CLASSES,
        description="kitti: class id or name -> KITTI type (Car, Pedestrian, ...), for classes "
        "whose name is not a KITTI type already. nuscenes: class id or name -> category name "
        "(vehicle.car, human.pedestrian.adult, ...); other classes keep their own name.",
    )
    categories: list[str] = Field(
        default_factory=list,
        max_length=MAX_CLASSES,
        description="coco only: the dataset's class names; class i gets category id i + 1 in "
        "every export. Classes not listed get the next ids, in the order met.",
    )
    camera: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="kitti only: the camera whose calibration labels are written for (the "
        "frame's image folder, e.g. image_2); default image_2, else the frame's first camera.",
    )

    @model_validator(mode="after")
    def _fits_its_format(self) -> Self:
        for problem in export_spec_problems(self):
            raise ValueError(problem)
        return self


def export_spec_problems(spec: ExportSpec) -> list[str]:
    """What is wrong with an export spec, in words a person can act on ([] if nothing)."""
    problems = []
    if spec.format is ExportFormat.COCO and spec.archive is not None:
        problems.append("export.archive does not apply to coco: a COCO export is one JSON file")
    nuscenes = spec.format is ExportFormat.NUSCENES
    if spec.classes and spec.format not in (ExportFormat.KITTI, ExportFormat.NUSCENES):
        problems.append(
            "export.classes maps classes to KITTI types or nuScenes categories: set it for "
            "kitti or nuscenes only"
        )
    if spec.categories and spec.format is not ExportFormat.COCO:
        hint = " (nuscenes names its categories with export.classes)" if nuscenes else ""
        problems.append(f"export.categories lists COCO categories: set it for coco only{hint}")
    if spec.camera is not None and spec.format is not ExportFormat.KITTI:
        hint = " (nuscenes writes every calibrated camera)" if nuscenes else ""
        problems.append(f"export.camera chooses KITTI's calibration: set it for kitti only{hint}")
    if spec.format is ExportFormat.KITTI:
        problems.extend(_kitti_class_problems(spec.classes))
    if nuscenes:
        problems.extend(_nuscenes_class_problems(spec.classes))
    return problems


def _kitti_class_problems(classes: dict[str, str]) -> list[str]:
    wrong = sorted(name for name, kind in classes.items() if kind not in KITTI_TYPES)
    if not wrong:
        return []
    return [
        f"export.classes maps {', '.join(wrong[:5])} to no KITTI type; use one of "
        + ", ".join(KITTI_TYPES)
    ]


def _nuscenes_class_problems(classes: dict[str, str]) -> list[str]:
    wrong = sorted(
        name for name, category in classes.items()
        if not category.strip() or len(category) > MAX_CATEGORY
    )  # fmt: skip
    if not wrong:
        return []
    return [
        f"export.classes maps {', '.join(wrong[:5])} to an empty category name (or one over "
        f"{MAX_CATEGORY} characters); name a category such as vehicle.car"
    ]


class ProcessingJobSpec(CamelModel):
    """A batch of processing over a dataset, or an export of it."""

    dataset: str = Field(min_length=1, max_length=253, description="Dataset resource name.")
    operations: list[JobOperation] = Field(
        min_length=1,
        max_length=8,
        description="Operations to run on every selected item; or [export] alone, with "
        "`export`, to write the dataset's annotations to an archive in the bucket.",
    )
    export: ExportSpec | None = Field(
        default=None, description="For operations: [export]: the format and what to export."
    )
    item_prefix: str | None = Field(
        default=None, max_length=512, description="Only items whose name starts with this."
    )
    archive_item_id: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Import this uploaded archive (a data item of the dataset) first; its entries "
            "become items and are processed. Set by the API for every archive upload."
        ),
    )
    cancelled: bool = Field(default=False, description="Set to true to stop the fan-out.")
    ttl_seconds_after_finished: int | None = Field(
        default=86400, ge=0, description="Delete the job this long after it finishes."
    )

    @model_validator(mode="after")
    def _export_alone(self) -> Self:
        for problem in job_spec_problems(self):
            raise ValueError(problem)
        return self

    @property
    def is_export(self) -> bool:
        return self.export is not None


def job_spec_problems(spec: ProcessingJobSpec) -> list[str]:
    """An export job is `operations: [export]` with `export` set, and nothing per item."""
    exporting = EXPORT in spec.operations
    if exporting and spec.operations != [EXPORT]:
        return ["an export job has operations: [export] alone; run processing in a job of its own"]
    if exporting and spec.export is None:
        return ["operations: [export] needs export.format (xtreme1, kitti, coco or nuscenes)"]
    if spec.export is not None and not exporting:
        return ["export is set but operations does not name it: set operations: [export]"]
    if exporting and (spec.archive_item_id is not None or spec.item_prefix is not None):
        return ["an export job takes no archiveItemId or itemPrefix: it exports the dataset"]
    return []


class ExportStatus(CamelModel):
    """Where an export job is: items written, the archive's key, and at the end its report."""

    format: ExportFormat = Field(description="xtreme1, kitti, coco or nuscenes.")
    key: str | None = Field(
        default=None, description="Object key of the export in the tenant's bucket, once written."
    )
    done: int = Field(default=0, description="Frames or images written so far.")
    total: int = Field(default=0, description="Frames or images to write.")
    report: ExportReport | None = Field(
        default=None, description="What was exported, and every object that was not (and why)."
    )


class ProcessingJobStatus(CamelModel):
    """Observed progress of a processing job."""

    observed_generation: int | None = Field(default=None, description="Generation observed.")
    phase: JobPhase | None = Field(
        default=None, description="Pending, Running, Complete, Failed or Cancelled."
    )
    total: int = Field(default=0, description="Items to process (one message per item).")
    published: int = Field(default=0, description="Messages published so far.")
    fanned_out: bool = Field(default=False, description="Every message of the job is published.")
    last_item_id: int | None = Field(
        default=None, description="Fan-out cursor: the last item id published (resume point)."
    )
    snapshot_item_id: int | None = Field(
        default=None, description="Highest item id at the start; later items are not in the job."
    )
    succeeded: int = Field(default=0, description="Finished successfully.")
    failed: int = Field(default=0, description="Ended in the dead-letter topic.")
    skipped: int = Field(
        default=0,
        description="Files left out (unsupported, sidecars, no requested operation applies); "
        "counts per reason and examples are in the final condition's message.",
    )
    export: ExportStatus | None = Field(
        default=None, description="An export job's progress, archive and report."
    )
    start_time: datetime | None = Field(default=None, description="When fan-out began.")
    completion_time: datetime | None = Field(default=None, description="When it finished.")
    conditions: Conditions = Field(default_factory=list)


def processing_job_manifest(
    namespace: str,
    name: str,
    spec: ProcessingJobSpec,
    created_by: str,
    owner: dict[str, str] | None = None,
) -> dict[str, object]:
    """A ProcessingJob as the API and the Dataset controller create it.

    `owner` (a Dataset's apiVersion, kind, name and uid) makes the job part of that Dataset,
    so the garbage collector removes it with the Dataset.
    """
    metadata: dict[str, object] = {
        "name": name,
        "namespace": namespace,
        "labels": {
            "app.kubernetes.io/part-of": "annostack",
            "app.kubernetes.io/created-by": created_by,
            f"{API_GROUP}/dataset": spec.dataset,
        },
    }
    if owner is not None:
        metadata["ownerReferences"] = [{**owner, "controller": True, "blockOwnerDeletion": True}]
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "ProcessingJob",
        "metadata": metadata,
        "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
    }
