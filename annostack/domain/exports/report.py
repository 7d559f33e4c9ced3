"""What an export did: per format, how many items and objects went out, and which did not.

The report goes into the export job's status and its final condition, so it is a pydantic
model with camelCase names like the resources. Lists are capped (`MAX_LISTED`): an export
of 100,000 frames of unsupported objects must not grow a report of millions of entries; the
totals still count every one.

Besides objects, a COCO export lists the images it wrote without `width` and `height`: their
size was never recorded (not processed yet, or processed before sizes were recorded).
Processing them again (a ProcessingJob with `thumbnail`) records it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

MAX_LISTED = 200  # objects listed by name in each list; the totals count all of them


class ExportFormat(StrEnum):
    XTREME1 = "xtreme1"
    KITTI = "kitti"
    COCO = "coco"
    NUSCENES = "nuscenes"


@dataclass(frozen=True)
class Skip:
    """One object a converter could not write (or wrote with loss), and why.

    `unsupported_type` is set when the reason is the object's type itself (COCO has no
    place for a 3D box): those are also counted per type in the report.
    """

    object_id: str | None
    object_type: str | None
    reason: str
    unsupported_type: bool = False


class _ReportModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ObjectNote(_ReportModel):
    """An object of one item that was skipped or exported with loss."""

    format: ExportFormat = Field(description="The format it was left out of (or cut for).")
    item: str = Field(description="The frame (<scene>/<frame>) or item it belongs to.")
    object_id: str | None = Field(default=None, description="The object's id, if it has one.")
    object_type: str | None = Field(default=None, description="Its type, e.g. 3D_BOX.")
    reason: str = Field(description="Why it was left out or cut.")


class FormatCounts(_ReportModel):
    items: int = Field(default=0, description="Frames or items written.")
    objects: int = Field(default=0, description="Objects written.")
    skipped: int = Field(default=0, description="Objects left out (each with its reason).")
    lossy: int = Field(default=0, description="Objects written with loss (roll, pitch...).")
    images_without_size: int = Field(
        default=0, description="COCO: images written with null width and height."
    )


class ExportReport(_ReportModel):
    """Counts per format; the first `MAX_LISTED` skipped and lossy objects by name."""

    formats: dict[ExportFormat, FormatCounts] = Field(
        default_factory=dict, description="Counts per format written."
    )
    skipped: list[ObjectNote] = Field(
        default_factory=list, description=f"The first {MAX_LISTED} objects left out, and why."
    )
    lossy: list[ObjectNote] = Field(
        default_factory=list, description=f"The first {MAX_LISTED} objects written with loss."
    )
    unsupported_types: dict[str, int] = Field(
        default_factory=dict,
        description="Object types a format has no place for, with how many were skipped.",
    )
    images_without_size: list[str] = Field(
        default_factory=list,
        description=f"COCO: the first {MAX_LISTED} images written with null width and height, "
        "their size not recorded yet; processing them again (operation thumbnail) records it.",
    )

    def record(
        self,
        format: ExportFormat,
        item: str,
        exported: int,
        skipped: tuple[Skip, ...] | list[Skip] = (),
        lossy: tuple[Skip, ...] | list[Skip] = (),
    ) -> None:
        """Adds one item's outcome in one format."""
        counts = self.formats.setdefault(format, FormatCounts())
        counts.items += 1
        counts.objects += exported
        counts.skipped += len(skipped)
        counts.lossy += len(lossy)
        for skip in skipped:
            _listed(self.skipped, format, item, skip)
            if skip.unsupported_type and skip.object_type is not None:
                key = f"{format}:{skip.object_type}"
                self.unsupported_types[key] = self.unsupported_types.get(key, 0) + 1
        for note in lossy:
            _listed(self.lossy, format, item, note)

    def record_without_size(self, format: ExportFormat, item: str) -> None:
        """Adds one image written without its width and height."""
        self.formats.setdefault(format, FormatCounts()).images_without_size += 1
        if len(self.images_without_size) < MAX_LISTED:
            self.images_without_size.append(item)

    def summary(self) -> str:
        """One line for a condition message: `kitti: 3 items, 41 objects, 2 skipped`."""
        parts = []
        for format, counts in self.formats.items():
            part = f"{format}: {counts.items} items, {counts.objects} objects"
            if counts.skipped:
                part += f", {counts.skipped} skipped"
            if counts.lossy:
                part += f", {counts.lossy} with loss"
            if counts.images_without_size:
                part += f", {counts.images_without_size} images without width and height"
            parts.append(part)
        return "; ".join(parts) or "nothing exported"


def _listed(notes: list[ObjectNote], format: ExportFormat, item: str, skip: Skip) -> None:
    if len(notes) < MAX_LISTED:
        notes.append(
            ObjectNote(
                format=format,
                item=item,
                object_id=skip.object_id,
                object_type=skip.object_type,
                reason=skip.reason,
            )
        )
