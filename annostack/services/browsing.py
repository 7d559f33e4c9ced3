"""Browsing a dataset: pages of its items, each with its annotations and derived files.

* Keyset pagination by item id, as datasets are paged: stable under inserts, no OFFSET scans.
  The cursor (`next`) is opaque, so its form can change without breaking clients; a cursor
  this API did not issue is a 422, not a silently different page.
* Filters combine with AND: statuses, kinds, a name prefix (LIKE, its wildcards escaped) and
  whether the item has annotations (EXISTS on the annotation index).
* Three queries per page: the dataset (404 if it is not the caller's — a tenant's connection
  sees only its own schema), the page, and the page's annotation index rows (one IN).
* Derived files are named from each item's kind and status (domain.derived), never looked up
  in the object store, and signed locally for the whole page at one instant
  (Presigner.presign_all): every URL of a page expires at the same time, said with each.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import ConfigDict, Field

from annostack.adapters.objects import URL_LIFETIME, Presigner
from annostack.adapters.tenant_tables import annotation_results, data_items, datasets
from annostack.domain.derived import derived_files, derived_key
from annostack.domain.errors import Invalid, NotFound
from annostack.domain.items import FileKind, ItemStatus, classify
from annostack.domain.models import CamelModel
from annostack.domain.processing import Operation
from annostack.services.tenancy import TenantContext

DEFAULT_PAGE = 100
MAX_PAGE = 1000  # a page's URLs are signed in one go: 1,000 videos are 13,000 URLs
# What follows the colon of each kind of cursor: item and scene ids start at 1, frame indexes
# at 0.
CURSOR_FORMS = {
    "item": re.compile(r"item:([1-9][0-9]{0,18})"),
    "frame": re.compile(r"frame:(0|[1-9][0-9]{0,8})"),
    "scene": re.compile(r"scene:([1-9][0-9]{0,18})"),
}
EXAMPLE_URL = "https://s3.example.com/annostack-demo/derived/42/bev.png?X-Amz-..."


class AnnotationSource(CamelModel):
    """One annotation document of the item: load it with this ETag, save with If-Match."""

    source: str
    etag: str
    version: int
    object_count: int | None = Field(
        description="Objects in the document; null if a browser committed it unparsed."
    )
    updated_at: datetime


class DerivedLink(CamelModel):
    """A derived file of the item and a pre-signed GET URL for it."""

    name: str = Field(description="Its name under `derived/<item id>/`, e.g. `thumb-200.jpg`.")
    operation: Operation = Field(description="The processing operation that writes it.")
    content_type: str
    optional: bool = Field(
        description="Written only when a condition holds (the split outputs: clouds over the "
        "worker's split threshold); its URL answers 404 otherwise."
    )
    url: str = Field(description="Pre-signed GET URL; no credentials needed.")
    expires_at: datetime = Field(description="When the URL stops working (UTC).")


class ListedItem(CamelModel):
    id: int
    name: str
    kind: FileKind | None = Field(description="None: registered before kinds were recorded.")
    status: ItemStatus
    status_reason: str | None = Field(description="Why: for `unsupported` and `failed` items.")
    size: int = Field(description="The file's size in bytes.")
    width: int | None = Field(
        description="An image's width in pixels as a viewer shows it (EXIF orientation "
        "applied), recorded when it is processed. Null for other kinds, for an image not "
        "processed yet, and for one processed before sizes were recorded (until it is "
        "processed again)."
    )
    height: int | None = Field(description="An image's height in pixels, as `width`.")
    created_at: datetime
    annotations: list[AnnotationSource] = Field(description="Its annotation documents, by source.")
    derived: list[DerivedLink] = Field(
        description="What processing wrote for it (empty until `processed`)."
    )


class ItemPage(CamelModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "id": 42,
                            "name": "lidar/000042.pcd",
                            "kind": "pointcloud",
                            "status": "processed",
                            "statusReason": None,
                            "size": 1843200,
                            "width": None,
                            "height": None,
                            "createdAt": "2026-12-01T09:31:02",
                            "annotations": [
                                {
                                    "source": "lidar",
                                    "etag": "8c1f0b",
                                    "version": 3,
                                    "objectCount": 30,
                                    "updatedAt": "2026-12-01T10:02:11",
                                }
                            ],
                            "derived": [
                                {
                                    "name": "bev.png",
                                    "operation": "render-bev",
                                    "contentType": "image/png",
                                    "optional": False,
                                    "url": EXAMPLE_URL,
                                    "expiresAt": "2026-12-01T10:17:00Z",
                                }
                            ],
                        }
                    ],
                    "next": "aXRlbTo0Mg",
                }
            ]
        }
    )

    items: list[ListedItem]
    next: str | None = Field(description="Pass as `after` for the next page; None on the last.")


@dataclass(frozen=True)
class ItemFilter:
    """Which items of a dataset to list; every filter given must hold."""

    statuses: tuple[ItemStatus, ...] = ()
    kinds: tuple[FileKind, ...] = ()
    name_prefix: str | None = None
    has_annotations: bool | None = None

    def conditions(self) -> list[sa.ColumnElement[bool]]:
        where: list[sa.ColumnElement[bool]] = []
        if self.statuses:
            where.append(data_items.c.status.in_([str(s) for s in self.statuses]))
        if self.kinds:
            where.append(data_items.c.kind.in_([str(k) for k in self.kinds]))
        if self.name_prefix:
            # autoescape: a `%` or `_` in the prefix is matched as itself, not as a wildcard.
            where.append(data_items.c.name.startswith(self.name_prefix, autoescape=True))
        if self.has_annotations is not None:
            annotated = sa.exists().where(annotation_results.c.data_item_id == data_items.c.id)
            where.append(annotated if self.has_annotations else ~annotated)
        return where


def encode_cursor(position: int, of: str = "item") -> str:
    """An opaque cursor continuing after `position` (an item or scene id; a frame index)."""
    return base64.urlsafe_b64encode(f"{of}:{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str, of: str = "item") -> int:
    """The position a cursor of ours continues after; Invalid for anything else."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    found = CURSOR_FORMS[of].fullmatch(text)
    if found is None:
        raise Invalid("`after` is not a cursor this API issued; pass `next` of the last page")
    return int(found.group(1))


# What a listing shows of an item (ListedItem's own columns).
LISTED_COLUMNS = tuple(
    data_items.c[name]
    for name in (
        "id", "name", "kind", "status", "status_reason", "size", "width", "height", "created_at",
    )
)  # fmt: skip


def items_query(
    dataset_id: int, filters: ItemFilter, after: int | None, limit: int
) -> sa.Select[Any]:
    """One page of a dataset's items (and one more row, to tell whether another page follows)."""
    query = (
        sa.select(*LISTED_COLUMNS)
        .where(data_items.c.dataset_id == dataset_id, *filters.conditions())
        .order_by(data_items.c.id)
        .limit(limit + 1)
    )
    return query if after is None else query.where(data_items.c.id > after)


def require_dataset(conn: sa.Connection, dataset_id: int) -> None:
    """NotFound unless the dataset is in the caller's schema (another tenant's is not)."""
    found = conn.execute(sa.select(datasets.c.id).where(datasets.c.id == dataset_id)).first()
    if found is None:
        raise NotFound(f"dataset {dataset_id} not found")


def _annotations_of(conn: sa.Connection, item_ids: list[int]) -> dict[int, list[AnnotationSource]]:
    if not item_ids:
        return {}
    rows = conn.execute(
        sa.select(annotation_results)
        .where(annotation_results.c.data_item_id.in_(item_ids))
        .order_by(annotation_results.c.data_item_id, annotation_results.c.source)
    )
    found: dict[int, list[AnnotationSource]] = defaultdict(list)
    for row in rows:
        found[int(row.data_item_id)].append(AnnotationSource.model_validate(row._mapping))
    return found


def _kind(row: sa.Row[Any]) -> FileKind:
    # Items registered before kinds were recorded: the classifier decides, as the worker does.
    return FileKind(row.kind) if row.kind else classify(row.name).kind


def _listed(
    row: sa.Row[Any], annotations: list[AnnotationSource], derived: list[DerivedLink]
) -> ListedItem:
    return ListedItem.model_validate(
        {**row._mapping, "annotations": annotations, "derived": derived}
    )


def sign_derived(
    signer: Presigner,
    bucket: str,
    items: Sequence[tuple[int, FileKind, ItemStatus]],
    now: datetime,
    lifetime: timedelta = URL_LIFETIME,
) -> dict[int, list[DerivedLink]]:
    """Pre-signed GET URLs of the derived files of (item id, kind, status), all at `now`."""
    wanted = [(item, file) for item, kind, status in items for file in derived_files(kind, status)]
    keys = [derived_key(item, file.name) for item, file in wanted]
    urls = signer.presign_all("GET", bucket, keys, lifetime, now)
    expires = now + lifetime
    links: dict[int, list[DerivedLink]] = defaultdict(list)
    for (item, file), url in zip(wanted, urls, strict=True):
        links[item].append(
            DerivedLink(
                name=file.name,
                operation=file.operation,
                content_type=file.content_type,
                optional=file.optional,
                url=url,
                expires_at=expires,
            )
        )
    return links


def listed_items(
    conn: sa.Connection, signer: Presigner, bucket: str, rows: Sequence[sa.Row[Any]]
) -> dict[int, ListedItem]:
    """Rows of LISTED_COLUMNS as listed items, with their annotations and derived-file URLs
    (one query for the annotations, every URL signed at one instant)."""
    annotations = _annotations_of(conn, [int(row.id) for row in rows])
    now = datetime.now(UTC).replace(microsecond=0)
    items = [(int(row.id), _kind(row), ItemStatus(row.status)) for row in rows]
    links = sign_derived(signer, bucket, items, now)
    return {
        int(row.id): _listed(row, annotations.get(int(row.id), []), links.get(int(row.id), []))
        for row in rows
    }


def list_items(
    ctx: TenantContext,
    signer: Presigner,
    dataset_id: int,
    filters: ItemFilter,
    after: str | None = None,
    limit: int = DEFAULT_PAGE,
) -> ItemPage:
    """A page of the dataset's items, in id order, with their annotations and derived files."""
    start = None if after is None else decode_cursor(after)
    with ctx.engine.connect() as conn:
        require_dataset(conn, dataset_id)
        rows = conn.execute(items_query(dataset_id, filters, start, limit)).all()
        page = rows[:limit]
        listed = list(listed_items(conn, signer, ctx.connection.bucket, page).values())
    next_cursor = encode_cursor(listed[-1].id) if len(rows) > limit else None
    return ItemPage(items=listed, next=next_cursor)
