"""Annotation results: JSON documents in the tenant's bucket, an index row in its database.

Key: ``annotations/<item id>/<source>.json`` — built only from the integer item id (checked to
be this tenant's) and a source name matching a strict pattern, never from raw user strings.

Writes are conditional: an update carries the ETag the writer read (If-Match), a first save
says the document must not exist yet (If-None-Match: *). The object store enforces both, so a
save through the API and a save through a pre-signed URL are protected the same way, and a
stale save changes nothing (412). Only what is queried goes to SQL: item, source, version,
object count, ETag, time.

Batch load streams the stored bytes into the response without parsing them; batch save
reports per document — a failed document is not written, the others are. Documents arrive
here checked (domain.annotations: size, standard JSON, schema), parsed off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.mysql import insert as mysql_insert

from annostack.adapters.objects import ObjectIO, ObjectMissing, Presigner, StoredObject
from annostack.adapters.tenant_tables import annotation_results
from annostack.domain.annotations import (
    BATCH_LIMIT,
    CheckedDocument,
    CheckedEntry,
    valid_source,
)
from annostack.domain.errors import (
    AnnostackError,
    BackendUnavailable,
    Invalid,
    NotFound,
    PreconditionRequired,
    TooLarge,
    http_status,
)
from annostack.services.datasets import existing_items
from annostack.services.quotas import ensure_room
from annostack.services.tenancy import TenantContext

CONCURRENCY = 32  # requests in flight to the object store per batch


def document_key(item_id: int, source: str) -> str:
    if not valid_source(source):
        raise Invalid(f"source {source!r} must match [a-z0-9][a-z0-9_-]{{0,63}}")
    return f"annotations/{int(item_id)}/{source}.json"


@dataclass(frozen=True)
class Saved:
    item_id: int
    etag: str
    version: int
    object_count: int


async def _require_item(ctx: TenantContext, item_id: int) -> None:
    if item_id not in await asyncio.to_thread(existing_items, ctx, [item_id]):
        raise NotFound(f"data item {item_id} not found")


async def load(ctx: TenantContext, io: ObjectIO, item_id: int, source: str) -> StoredObject:
    key = document_key(item_id, source)
    await _require_item(ctx, item_id)
    try:
        return await io.get(ctx.connection.bucket, key)
    except ObjectMissing as error:
        raise NotFound(f"no {source!r} annotations for item {item_id}") from error


async def _write(
    io: ObjectIO,
    ctx: TenantContext,
    item_id: int,
    source: str,
    document: CheckedDocument,
    if_match: str | None,
    if_none_match: bool,
) -> str:
    """Conditionally store one checked document; its ETag."""
    key = document_key(item_id, source)
    if if_match is None and not if_none_match:
        raise PreconditionRequired(
            "send If-Match with the ETag you loaded, or If-None-Match: * for a first save"
        )
    bucket = ctx.connection.bucket
    body = document.body
    try:
        written = await io.put(bucket, key, body, if_match=if_match, if_none_match=if_none_match)
    except BackendUnavailable:
        # A full SeaweedFS bucket is read-only and answers 5xx: say it is the quota.
        await ensure_room(ctx, io, len(body))
        raise
    return written.etag


async def save(
    ctx: TenantContext,
    io: ObjectIO,
    item_id: int,
    source: str,
    document: CheckedDocument,
    if_match: str | None,
    if_none_match: bool,
) -> Saved:
    document_key(item_id, source)
    await _require_item(ctx, item_id)
    etag = await _write(io, ctx, item_id, source, document, if_match, if_none_match)
    count = document.object_count
    versions = await asyncio.to_thread(_record, ctx, source, [(item_id, etag, count)])
    return Saved(item_id, etag, versions[item_id], count)


def _record(ctx: TenantContext, source: str, written: list[tuple[int, str, int]]) -> dict[int, int]:
    """Upsert the index rows of written documents in one transaction; their new versions."""
    if not written:
        return {}
    insert = mysql_insert(annotation_results).values(
        [
            {"data_item_id": item, "source": source, "version": 1, "object_count": n, "etag": etag}
            for item, etag, n in written
        ]
    )
    upsert = insert.on_duplicate_key_update(
        version=annotation_results.c.version + 1,
        object_count=insert.inserted.object_count,
        etag=insert.inserted.etag,
        updated_at=sa.func.now(),
    )
    items = [item for item, _, _ in written]
    query = sa.select(annotation_results.c.data_item_id, annotation_results.c.version).where(
        annotation_results.c.source == source, annotation_results.c.data_item_id.in_(items)
    )
    with ctx.engine.begin() as conn:
        conn.execute(upsert)
        return {int(item): int(version) for item, version in conn.execute(query)}


def _check_batch(item_ids: list[int]) -> None:
    if len(item_ids) > BATCH_LIMIT:
        raise TooLarge(f"{len(item_ids)} documents in one batch; the limit is {BATCH_LIMIT}")


async def load_batch(
    ctx: TenantContext, io: ObjectIO, item_ids: list[int], source: str
) -> AsyncIterator[bytes]:
    """Stream `{"source":..,"results":[{itemId,status,etag?,document?}...]}`, in request order.

    Documents are passed through as stored (no parse, no re-encode); at most CONCURRENCY
    fetches are in flight, and results are emitted as soon as their turn comes.
    """
    _check_batch(item_ids)
    document_key(0, source)  # validates the source before any work
    known = await asyncio.to_thread(existing_items, ctx, item_ids)
    limit = asyncio.Semaphore(CONCURRENCY)

    async def fetch(item_id: int) -> bytes:
        if item_id not in known:
            return orjson.dumps({"itemId": item_id, "status": 404})
        async with limit:
            try:
                stored = await io.get(ctx.connection.bucket, document_key(item_id, source))
            except ObjectMissing:
                return orjson.dumps({"itemId": item_id, "status": 404})
        head = orjson.dumps({"itemId": item_id, "status": 200, "etag": stored.etag})
        return head[:-1] + b',"document":' + stored.body + b"}"

    tasks = [asyncio.ensure_future(fetch(item_id)) for item_id in item_ids]
    try:
        yield b'{"source":' + orjson.dumps(source) + b',"results":['
        for index, task in enumerate(tasks):
            yield (b"," if index else b"") + await task
        yield b"]}"
    finally:
        for task in tasks:
            task.cancel()


async def save_batch(
    ctx: TenantContext,
    io: ObjectIO,
    source: str,
    entries: list[CheckedEntry],
    locked_by_others: dict[int, str],
) -> list[dict[str, object]]:
    """Save each document on its own; a result per document, in request order.

    One query checks every item, the documents are written concurrently (each atomically,
    each under its own condition), and one transaction records the ones that were written.
    Items someone else holds the edit lock on are refused (409) and not written.
    """
    _check_batch([entry.item_id for entry in entries])
    document_key(0, source)
    known = await asyncio.to_thread(existing_items, ctx, [e.item_id for e in entries])
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(entry: CheckedEntry) -> dict[str, object]:
        item = entry.item_id
        if entry.error is not None or entry.document is None:
            error = entry.error or Invalid("no document")
            return {"itemId": item, "status": http_status(error), "error": str(error)}
        if item in locked_by_others:
            return {
                "itemId": item,
                "status": 409,
                "error": f"being edited by {locked_by_others[item]}",
            }
        if item not in known:
            return {"itemId": item, "status": 404, "error": f"data item {item} not found"}
        async with limit:
            try:
                etag = await _write(
                    io, ctx, item, source, entry.document, entry.if_match, entry.if_none_match
                )
            except AnnostackError as error:
                return {"itemId": item, "status": http_status(error), "error": str(error)}
        count = entry.document.object_count
        return {"itemId": item, "status": 200, "etag": etag, "objectCount": count}

    results = list(await asyncio.gather(*(one(entry) for entry in entries)))
    written = [
        (int(r["itemId"]), str(r["etag"]), int(r["objectCount"]))  # type: ignore[call-overload]
        for r in results
        if r["status"] == 200
    ]
    versions = await asyncio.to_thread(_record, ctx, source, written)
    for result in results:
        if result["status"] == 200:
            result["version"] = versions[int(result["itemId"])]  # type: ignore[call-overload]
    return results


def presign_sequence(
    ctx: TenantContext, signer: Presigner, item_ids: list[int], source: str
) -> list[dict[str, object]]:
    """GET and PUT URLs for a whole sequence at once (items checked in one query)."""
    _check_batch(item_ids)
    known = existing_items(ctx, item_ids)
    missing = [item_id for item_id in item_ids if item_id not in known]
    if missing:
        raise NotFound(f"data items not found: {missing[:10]}")
    keys = [document_key(item_id, source) for item_id in item_ids]
    gets = signer.presign_all("GET", ctx.connection.bucket, keys)
    puts = signer.presign_all("PUT", ctx.connection.bucket, keys)
    return [
        {"itemId": item_id, "get": get, "put": put}
        for item_id, get, put in zip(item_ids, gets, puts, strict=True)
    ]
