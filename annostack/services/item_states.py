"""The two writers of an item's status once its file is in the bucket, and why their order
does not matter.

The API (`uploads.complete`) and the archive importer queue a file for processing *before*
they mark its item arrived: a crash in between leaves the item `uploading`, and the retry
queues it again, which deterministic output keys make harmless — the reverse order could lose
the work. So a fast worker can record its verdict first, and each writer only moves an item
forward:

- arrival moves `uploading` to `uploaded` (or `stored`, `unsupported`) and never overwrites a
  worker's `processed` or `failed`;
- a worker's verdict applies to an item that is `uploading` too (its message proves the file
  was complete when it was queued), besides the statuses a job may reprocess.

Either order ends in the worker's verdict, which is what a client polling the item waits for.
What the worker measured (an image's size) goes into the same UPDATE as its verdict, so the
two land together or not at all (a verdict that does not apply sizes nothing either); arrival
does not touch it.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

from annostack.adapters.tenant_tables import data_items
from annostack.domain.items import (
    PROCESSABLE_STATUSES,
    FileClass,
    ItemStatus,
    PixelSize,
    status_on_arrival,
)

# What a worker's verdict may overwrite.
SETTLED_BY_WORKERS = (ItemStatus.UPLOADING, *PROCESSABLE_STATUSES)


def mark_arrived(
    conn: Connection,
    item_id: int,
    verdict: FileClass,
    *,
    checksum: str | None = None,
    object_key: str | None = None,
) -> None:
    """The file of `item_id` is complete: record what it is, and its arrival status unless a
    worker already settled it. Two statements rather than one with CASE: MySQL evaluates a
    single UPDATE's assignments left to right, each seeing the ones before it."""
    found: dict[str, object] = {"kind": verdict.kind}
    if checksum is not None:
        found["checksum"] = checksum
    if object_key is not None:
        found["object_key"] = object_key
    item = data_items.c.id == item_id
    conn.execute(data_items.update().where(item).values(**found))
    status, reason = status_on_arrival(verdict)
    conn.execute(
        data_items.update()
        .where(item, data_items.c.status == ItemStatus.UPLOADING)
        .values(status=status, status_reason=reason)
    )


def record_outcome(
    conn: Connection,
    item_id: int,
    status: ItemStatus,
    reason: str | None,
    pixel_size: PixelSize | None = None,
) -> None:
    """A worker's verdict on an item whose file is (or was queued as) in the bucket, and the
    image's size if processing measured it. Without one (a failure, another kind, a job that
    made no thumbnails) a size recorded earlier stays: the file has not changed."""
    verdict: dict[str, object] = {"status": status, "status_reason": reason}
    if pixel_size is not None:
        verdict |= {"width": pixel_size.width, "height": pixel_size.height}
    conn.execute(
        data_items.update()
        .where(data_items.c.id == item_id, data_items.c.status.in_(SETTLED_BY_WORKERS))
        .values(**verdict)
    )
