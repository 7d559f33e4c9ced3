"""Uploads: the client PUTs straight to the bucket through pre-signed URLs, then says done.

`start` registers the item (status ``uploading``) and returns one pre-signed PUT URL, or for
files above the multipart threshold an S3 multipart upload: its part size and count and the
URLs of the first PART_PAGE parts; `part_urls` signs the next ones when the client gets there.
A 5 TiB file is 10,000 parts: signing them all up front would be a 5 MB answer, seconds of
signing, and URLs that expire before a long upload reaches them. Clients sign parts as they
go anyway (Uppy's `signPart`, the AWS SDKs' per-part requests).
The object key is ``data/<dataset id>/<item id><ext>``, from ids and an extension checked
against a pattern — never the client's file name. `complete` assembles the parts if any,
verifies the object (it exists, the size matches), marks the item ``uploaded`` with its
checksum (ETag) and enqueues processing: one Pulsar message per item, on the topic for its
kind of data (`annostack.domain.items.classify` decides), or for an archive a ProcessingJob
(`import-<item id>`) that unpacks it and processes its entries, visible with kubectl like any
other job. A file of no processed kind is kept, ``unsupported`` with the reason (or
``stored``, a sidecar such as a calibration file), and nothing is queued for it. `abort` drops
the upload and the item.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import PurePosixPath

import sqlalchemy as sa
from pydantic import ConfigDict, Field
from sqlalchemy.exc import IntegrityError

from annostack.adapters.kube import Kube
from annostack.adapters.objects import ObjectIO
from annostack.adapters.queue import Publisher
from annostack.adapters.tenant_tables import data_items
from annostack.domain.errors import Conflict, Invalid, NotFound, TooLarge
from annostack.domain.items import (
    FileClass,
    FileKind,
    ItemStatus,
    ProcessingMessage,
    classify,
)
from annostack.domain.models import CamelModel
from annostack.domain.processing import (
    DEFAULT_OPERATIONS,
    ProcessingJobSpec,
    processing_job_manifest,
)
from annostack.services.datasets import ItemPublic, get_dataset, get_item
from annostack.services.item_states import mark_arrived
from annostack.services.quotas import ensure_room
from annostack.services.tenancy import TenantContext

EXTENSION = re.compile(r"^\.[a-z0-9]{1,8}$")
MAX_OBJECT_BYTES = 5 * 2**40  # S3's object size limit
MIN_PART_BYTES = 8 * 2**20  # S3 needs >= 5 MiB for every part but the last
MAX_PARTS = 10_000  # S3's limit
PART_PAGE = 100  # part URLs per answer: 800 MiB to 55 GiB of upload, signed in milliseconds


class UploadRequest(CamelModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "lidar/000042.pcd",
                    "size": 1843200,
                    "contentType": "application/octet-stream",
                }
            ]
        }
    )

    name: str = Field(min_length=1, max_length=512, description="File name shown to users.")
    size: int = Field(ge=1, description="Exact size in bytes; checked on completion.")
    content_type: str = Field(default="application/octet-stream", max_length=128)


class PartTicket(CamelModel):
    part_number: int
    url: str = Field(description="Pre-signed PUT URL for this part; keep the ETag it returns.")


class PartPage(CamelModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "parts": [
                        {
                            "partNumber": 101,
                            "url": "https://s3.example.com/annostack-demo/data/3/42.las?partNumber=101&uploadId=...",
                        }
                    ],
                    "nextPartNumber": 102,
                }
            ]
        }
    )

    parts: list[PartTicket] = Field(description=f"At most {PART_PAGE} parts, in order.")
    next_part_number: int | None = Field(
        description="Ask `GET /v1/items/{id}/upload/parts?first=` this for the next URLs; null "
        "when these are the last."
    )


class MultipartTicket(PartPage):
    upload_id: str
    part_size: int = Field(description="Bytes per part; the last part may be smaller.")
    part_count: int = Field(description="Parts the file is uploaded in.")


class UploadTicket(CamelModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "itemId": 42,
                    "url": "https://s3.example.com/annostack-demo/data/3/42.pcd?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=...",
                }
            ]
        }
    )

    item_id: int
    url: str | None = Field(
        default=None, description="Pre-signed PUT URL for the whole file (small files)."
    )
    multipart: MultipartTicket | None = Field(
        default=None, description="For large files: PUT each part, then complete with ETags."
    )


class UploadedPart(CamelModel):
    part_number: int = Field(ge=1, le=MAX_PARTS)
    etag: str = Field(min_length=1, max_length=128)


class Completion(CamelModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"parts": [{"partNumber": 1, "etag": '"5d41402abc4b2a76b9719d911017c592"'}]}
            ]
        }
    )

    parts: list[UploadedPart] = Field(
        default_factory=list, max_length=MAX_PARTS, description="Multipart uploads only."
    )


def _extension(name: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    return suffix if EXTENSION.fullmatch(suffix) else ""


def object_key(dataset_id: int, item_id: int, name: str) -> str:
    return f"data/{int(dataset_id)}/{int(item_id)}{_extension(name)}"


def register_item(ctx: TenantContext, dataset_id: int, request: UploadRequest) -> tuple[int, str]:
    """A new item in `uploading` state, of the kind the classifier says, and its key."""
    dataset = get_dataset(ctx, dataset_id)
    verdict = classify(request.name, dataset.data_type, request.content_type)
    try:
        with ctx.engine.begin() as conn:
            result = conn.execute(
                data_items.insert().values(
                    dataset_id=dataset_id,
                    name=request.name,
                    object_key="",
                    content_type=request.content_type,
                    size=request.size,
                    kind=verdict.kind,
                    status=ItemStatus.UPLOADING,
                )
            )
            item_id = int(result.inserted_primary_key[0])  # type: ignore[index]
            key = object_key(dataset_id, item_id, request.name)
            conn.execute(
                data_items.update().where(data_items.c.id == item_id).values(object_key=key)
            )
    except IntegrityError as error:
        raise Conflict(
            f"dataset {dataset_id} already has an item named {request.name!r}"
        ) from error
    return item_id, key


def part_size_for(size: int) -> int:
    """The smallest part size >= MIN_PART_BYTES that fits the file in MAX_PARTS parts."""
    return max(MIN_PART_BYTES, -(-size // MAX_PARTS))


async def start(
    ctx: TenantContext,
    io: ObjectIO,
    dataset_id: int,
    request: UploadRequest,
    multipart_threshold: int,
) -> UploadTicket:
    if request.size > MAX_OBJECT_BYTES:
        raise TooLarge(f"{request.size} bytes is over the object size limit {MAX_OBJECT_BYTES}")
    await ensure_room(ctx, io, request.size)
    item_id, key = await asyncio.to_thread(register_item, ctx, dataset_id, request)
    bucket = ctx.connection.bucket
    if request.size <= multipart_threshold:
        return UploadTicket(item_id=item_id, url=io.presigner.presign_put(bucket, key))
    upload_id = await io.create_multipart(bucket, key, request.content_type)
    await asyncio.to_thread(_set_upload_id, ctx, item_id, upload_id)
    size = part_size_for(request.size)
    page = _part_page(io, bucket, key, upload_id, request.size, 1)
    ticket = MultipartTicket(
        upload_id=upload_id,
        part_size=size,
        part_count=-(-request.size // size),
        parts=page.parts,
        next_part_number=page.next_part_number,
    )
    return UploadTicket(item_id=item_id, multipart=ticket)


def _part_page(
    io: ObjectIO, bucket: str, key: str, upload_id: str, size: int, first: int
) -> PartPage:
    count = -(-size // part_size_for(size))
    if not 1 <= first <= count:
        raise Invalid(f"part numbers of this upload are 1 to {count}")
    last = min(count, first + PART_PAGE - 1)
    parts = [
        PartTicket(part_number=n, url=io.presigner.presign_part(bucket, key, upload_id, n))
        for n in range(first, last + 1)
    ]
    return PartPage(parts=parts, next_part_number=last + 1 if last < count else None)


async def part_urls(ctx: TenantContext, io: ObjectIO, item_id: int, first: int) -> PartPage:
    """Pre-signed URLs for the parts from `first` on, of an upload in progress."""
    item = await asyncio.to_thread(get_item, ctx, item_id)
    upload_id = await asyncio.to_thread(_upload_id, ctx, item_id)
    if item.status != ItemStatus.UPLOADING or upload_id is None:
        raise Conflict(f"item {item_id} has no multipart upload in progress")
    key = object_key(item.dataset_id, item.id, item.name)
    return _part_page(io, ctx.connection.bucket, key, upload_id, item.size, first)


def _set_upload_id(ctx: TenantContext, item_id: int, upload_id: str | None) -> None:
    with ctx.engine.begin() as conn:
        conn.execute(
            data_items.update().where(data_items.c.id == item_id).values(upload_id=upload_id)
        )


def _upload_id(ctx: TenantContext, item_id: int) -> str | None:
    with ctx.engine.connect() as conn:
        value = conn.execute(
            sa.select(data_items.c.upload_id).where(data_items.c.id == item_id)
        ).scalar()
    return str(value) if value else None


def archive_job_name(item_id: int) -> str:
    return f"import-{int(item_id)}"


def start_archive_job(kube: Kube, ctx: TenantContext, item: ItemPublic) -> str:
    """The ProcessingJob that imports an uploaded archive into its dataset."""
    dataset = get_dataset(ctx, item.dataset_id)
    spec = ProcessingJobSpec(
        dataset=dataset.name, operations=list(DEFAULT_OPERATIONS), archive_item_id=item.id
    )
    name = archive_job_name(item.id)
    kube.apply(processing_job_manifest(ctx.names.namespace, name, spec, "annostack-api"))
    return name


async def complete(
    ctx: TenantContext,
    io: ObjectIO,
    publisher: Publisher,
    kube: Kube,
    item_id: int,
    completion: Completion,
) -> ItemPublic:
    item = await asyncio.to_thread(get_item, ctx, item_id)
    if item.status != ItemStatus.UPLOADING:
        return item  # completing twice is harmless
    key = object_key(item.dataset_id, item.id, item.name)
    upload_id = await asyncio.to_thread(_upload_id, ctx, item_id)
    if upload_id is not None:
        if not completion.parts:
            raise Invalid("a multipart upload completes with the parts' numbers and ETags")
        parts = [(part.part_number, part.etag.strip('"')) for part in completion.parts]
        await io.complete_multipart(ctx.connection.bucket, key, upload_id, parts)
        await asyncio.to_thread(_set_upload_id, ctx, item_id, None)
    found = await io.head(ctx.connection.bucket, key)
    if found is None:
        raise NotFound(f"nothing was uploaded for item {item_id}")
    size, etag = found
    if size != item.size:
        # A pre-signed PUT does not bind the length: whatever else arrived is removed, so it
        # neither stays in the bucket nor counts against the quota.
        await io.remove(ctx.connection.bucket, key)
        raise Invalid(f"uploaded {size} bytes, announced {item.size}; removed, upload again")
    # Enqueue before marking uploaded: a crash in between leaves the item `uploading` and the
    # client's retry of `complete` enqueues again, which the workers' deterministic output
    # keys (and the job's fixed name) make harmless. The reverse order could lose the work.
    # A worker may so finish first; marking arrived never overwrites its verdict (item_states).
    # Files of no processed kind are kept as they are, with the reason; nothing is queued.
    dataset = await asyncio.to_thread(get_dataset, ctx, item.dataset_id)
    verdict = classify(item.name, dataset.data_type, item.content_type)
    if verdict.kind is FileKind.ARCHIVE:
        await asyncio.to_thread(start_archive_job, kube, ctx, item)
    elif verdict.topic is not None:
        message = ProcessingMessage(
            tenant=ctx.names.tenant, item_id=item.id, key=key, kind=verdict.kind, etag=etag
        )
        await asyncio.to_thread(publisher.publish, ctx.names.topic(verdict.topic), message)
    await asyncio.to_thread(_mark_arrived, ctx, item_id, etag, verdict)
    return await asyncio.to_thread(get_item, ctx, item_id)


async def abort(ctx: TenantContext, io: ObjectIO, item_id: int) -> None:
    """Give up an upload in progress: the parts are dropped and the item forgotten."""
    item = await asyncio.to_thread(get_item, ctx, item_id)
    if item.status != ItemStatus.UPLOADING:
        raise Conflict(f"item {item_id} is already uploaded; delete it instead")
    upload_id = await asyncio.to_thread(_upload_id, ctx, item_id)
    if upload_id is not None:
        key = object_key(item.dataset_id, item.id, item.name)
        await io.abort_multipart(ctx.connection.bucket, key, upload_id)
    await asyncio.to_thread(_forget, ctx, item_id)


def _forget(ctx: TenantContext, item_id: int) -> None:
    with ctx.engine.begin() as conn:
        conn.execute(data_items.delete().where(data_items.c.id == item_id))


def _mark_arrived(ctx: TenantContext, item_id: int, etag: str, verdict: FileClass) -> None:
    with ctx.engine.begin() as conn:
        mark_arrived(conn, item_id, verdict, checksum=etag)


def count_by_status(ctx: TenantContext, dataset_id: int) -> dict[str, int]:
    with ctx.engine.connect() as conn:
        rows = conn.execute(
            sa.select(data_items.c.status, sa.func.count())
            .where(data_items.c.dataset_id == dataset_id)
            .group_by(data_items.c.status)
        )
        return {str(status): int(count) for status, count in rows}
