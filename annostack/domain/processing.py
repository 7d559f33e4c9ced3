"""Dataset and ProcessingJob resources (namespaced, in the tenant's namespace)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from annostack.domain.conditions import Conditions
from annostack.domain.models import CamelModel

DataType = Literal["IMAGE", "POINT_CLOUD", "POINT_CLOUD_SEQUENCE", "TEXT", "AUDIO", "VIDEO"]
Operation = Literal["thumbnail", "compress", "render-bev", "split"]
DEFAULT_OPERATIONS: tuple[Operation, ...] = ("thumbnail", "compress", "render-bev")


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
    phase: str | None = Field(default=None, description="Pending, Importing, Ready or Failed.")
    dataset_id: int | None = Field(default=None, description="Row id in the tenant database.")
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
        default=None, max_length=1024, description="Only items whose key starts with this."
    )
    cancelled: bool = Field(default=False, description="Set to true to stop the fan-out.")
    ttl_seconds_after_finished: int | None = Field(
        default=86400, ge=0, description="Delete the job this long after it finishes."
    )


class ProcessingJobStatus(CamelModel):
    """Observed progress of a processing job."""

    observed_generation: int | None = Field(default=None, description="Generation observed.")
    phase: str | None = Field(
        default=None, description="Pending, Running, Complete, Failed or Cancelled."
    )
    total: int = Field(default=0, description="Messages fanned out (items x operations).")
    succeeded: int = Field(default=0, description="Finished successfully.")
    failed: int = Field(default=0, description="Ended in the dead-letter topic.")
    start_time: datetime | None = Field(default=None, description="When fan-out began.")
    completion_time: datetime | None = Field(default=None, description="When it finished.")
    conditions: Conditions = Field(default_factory=list)
