"""Dataset and ProcessingJob resources (namespaced, in the tenant's namespace)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from annostack.domain.conditions import Conditions
from annostack.domain.models import CamelModel
from annostack.domain.tenants import API_GROUP, API_VERSION

DataType = Literal["IMAGE", "POINT_CLOUD", "POINT_CLOUD_SEQUENCE", "TEXT", "AUDIO", "VIDEO"]
Operation = Literal["thumbnail", "compress", "render-bev", "split"]
DEFAULT_OPERATIONS: tuple[Operation, ...] = ("thumbnail", "compress", "render-bev")

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


class ProcessingJobSpec(CamelModel):
    """A batch of processing over a dataset."""

    dataset: str = Field(min_length=1, max_length=253, description="Dataset resource name.")
    operations: list[Operation] = Field(
        min_length=1, max_length=8, description="Operations to run on every selected item."
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
