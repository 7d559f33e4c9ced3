"""Uploads: the client PUTs straight to the bucket through a pre-signed URL, then says done.

`start` registers the item (status ``uploading``) and returns the URL; the object key is
``data/<dataset id>/<item id><ext>``, from ids and an extension checked against a pattern —
never the client's file name. `complete` verifies the object (it exists, the size matches),
marks the item ``uploaded`` with its checksum (ETag) and enqueues processing: one Pulsar
message per item, on the topic for its kind of data.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import PurePosixPath

import sqlalchemy as sa
from pydantic import Field
from sqlalchemy.exc import IntegrityError

from annostack.adapters.objects import ObjectIO
from annostack.adapters.queue import Publisher
from annostack.adapters.tenant_tables import data_items
from annostack.domain.errors import Conflict, Invalid, NotFound, TooLarge
from annostack.domain.models import CamelModel
from annostack.services.datasets import ItemPublic, get_dataset, get_item
from annostack.services.tenancy import TenantContext

EXTENSION = re.compile(r"^\.[a-z0-9]{1,8}$")
MAX_SINGLE_PUT_BYTES = 5 * 2**30  # S3's limit for one PUT; bigger files need multipart
POINT_CLOUD_EXTENSIONS = {".pcd", ".bin", ".las", ".laz", ".ply"}
ARCHIVE_EXTENSIONS = {".zip", ".tar", ".tgz", ".gz"}


class UploadRequest(CamelModel):
    name: str = Field(min_length=1, max_length=512, description="File name shown to users.")
    size: int = Field(ge=1, description="Exact size in bytes; checked on completion.")
    content_type: str = Field(default="application/octet-stream", max_length=128)


class UploadTicket(CamelModel):
    item_id: int
    url: str = Field(description="Pre-signed PUT URL; valid for 15 minutes.")
    method: str = "PUT"


def _extension(name: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    return suffix if EXTENSION.match(suffix) else ""


def object_key(dataset_id: int, item_id: int, name: str) -> str:
    return f"data/{int(dataset_id)}/{int(item_id)}{_extension(name)}"


def topic_for(name: str, content_type: str) -> str:
    extension = _extension(name)
    if extension in ARCHIVE_EXTENSIONS:
        return "archives"
    if extension in POINT_CLOUD_EXTENSIONS:
        return "pointclouds"
    return "thumbnails" if content_type.startswith("image/") else "pointclouds"


def start(
    ctx: TenantContext, io: ObjectIO, dataset_id: int, request: UploadRequest
) -> UploadTicket:
    if request.size > MAX_SINGLE_PUT_BYTES:
        raise TooLarge(f"{request.size} bytes is over {MAX_SINGLE_PUT_BYTES}; use multipart")
    get_dataset(ctx, dataset_id)
    try:
        with ctx.engine.begin() as conn:
            result = conn.execute(
                data_items.insert().values(
                    dataset_id=dataset_id,
                    name=request.name,
                    object_key="",
                    content_type=request.content_type,
                    size=request.size,
                    status="uploading",
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
    return UploadTicket(item_id=item_id, url=io.presigner.presign_put(ctx.connection.bucket, key))


async def complete(
    ctx: TenantContext, io: ObjectIO, publisher: Publisher, item_id: int
) -> ItemPublic:
    item = await asyncio.to_thread(get_item, ctx, item_id)
    if item.status != "uploading":
        return item  # completing twice is harmless
    key = object_key(item.dataset_id, item.id, item.name)
    found = await io.head(ctx.connection.bucket, key)
    if found is None:
        raise NotFound(f"nothing was uploaded for item {item_id}")
    size, etag = found
    if size != item.size:
        raise Invalid(f"uploaded {size} bytes, announced {item.size}; upload again")
    topic = ctx.names.topic(topic_for(item.name, item.content_type))
    message = {"tenant": ctx.names.tenant, "itemId": item.id, "key": key, "etag": etag}
    # Enqueue before marking uploaded: a crash in between leaves the item `uploading` and the
    # client's retry of `complete` enqueues again, which the workers' deterministic output
    # keys make harmless. The reverse order could lose the message.
    await asyncio.to_thread(publisher.publish, topic, message, str(item.id))
    await asyncio.to_thread(_mark_uploaded, ctx, item_id, etag)
    return await asyncio.to_thread(get_item, ctx, item_id)


def _mark_uploaded(ctx: TenantContext, item_id: int, etag: str) -> None:
    with ctx.engine.begin() as conn:
        conn.execute(
            data_items.update()
            .where(data_items.c.id == item_id)
            .values(status="uploaded", checksum=etag)
        )


def count_by_status(ctx: TenantContext, dataset_id: int) -> dict[str, int]:
    with ctx.engine.connect() as conn:
        rows = conn.execute(
            sa.select(data_items.c.status, sa.func.count())
            .where(data_items.c.dataset_id == dataset_id)
            .group_by(data_items.c.status)
        )
        return {str(status): int(count) for status, count in rows}
