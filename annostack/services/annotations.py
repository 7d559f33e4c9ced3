"""Annotation results: JSON documents in the tenant's bucket, an index row in its database.

A save writes a new, immutable object, `annotations/<item id>/<source>/<revision>.json` (the
revision is random, so two writers never share a key), then moves the item's index row from
the version the writer loaded to the new revision in one compare-and-set
(services.annotation_index). A stale save loses it: 412, its object removed, nothing
overwritten. Loads read the revision the row names, so they see only committed documents.

Why not a conditional PUT on one key, as before: on SeaweedFS 300 PUTs with If-Match took
1.6 s against 0.9 s unconditional, and the index row was written anyway (docs/benchmarks.md,
issue 16). The condition is the writer's If-Match (the ETag it loaded) or If-None-Match: *
(a first save), checked against the row before anything is written, then held by the row.

Browsers save the same way: `presign` hands out a GET URL for the current document and a PUT
URL for a fresh revision (signed with If-None-Match: *, so it writes once and can never replace
a committed document), and `commit` makes that revision current under the same condition.

Keys are built only from the integer item id (checked to be this tenant's), a source matching a
strict pattern and a revision of hex digits, never from raw user strings. Documents saved
before revisions (no revision in their row, or no row) are at `annotations/<item>/<source>.json`;
they are read there, their ETag is the object's own (a browser could overwrite them without
the row knowing), and their next save moves them to a revision.

Batch load streams the stored bytes without parsing them; batch save reports per document, a
failed document is not written, the others are. Documents arrive here checked
(domain.annotations: size, standard JSON, schema), parsed off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import orjson

from annostack.adapters.objects import ObjectIO, ObjectMissing, Presigner, StoredObject
from annostack.domain.annotations import (
    BATCH_LIMIT,
    MAX_DOCUMENT_BYTES,
    CheckedDocument,
    CheckedEntry,
    valid_source,
)
from annostack.domain.errors import (
    AnnostackError,
    BackendUnavailable,
    Conflict,
    Invalid,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    TooLarge,
    http_status,
)
from annostack.services import annotation_index as index
from annostack.services.annotation_index import Current, Indexed, Move
from annostack.services.quotas import ensure_room
from annostack.services.tenancy import TenantContext

CONCURRENCY = 32  # requests in flight to the object store per batch
REVISION = re.compile(r"[0-9a-f]{24}")
STALE = "the document changed since it was loaded; load it again"
log = logging.getLogger(__name__)


def document_key(item_id: int, source: str, revision: str | None = None) -> str:
    """Where a document is: its revision's object, or (None) a document saved before revisions."""
    if not valid_source(source):
        raise Invalid(f"source {source!r} must match [a-z0-9][a-z0-9_-]{{0,63}}")
    if revision is None:
        return f"annotations/{int(item_id)}/{source}.json"
    if not REVISION.fullmatch(revision):
        raise Invalid(f"revision {revision!r} is not one this API handed out")
    return f"annotations/{int(item_id)}/{source}/{revision}.json"


DOCUMENT_KEY = re.compile(
    r"annotations/([0-9]+)/([a-z0-9][a-z0-9_-]{0,63})(?:/[0-9a-f]{24})?\.json"
)


def document_of(key: str) -> tuple[int, str]:
    """The item and source of a key document_key made (Invalid for any other)."""
    matched = DOCUMENT_KEY.fullmatch(key)
    if matched is None:
        raise Invalid(f"{key!r} is not an annotation document's key")
    return int(matched[1]), matched[2]


def new_revision() -> str:
    return secrets.token_hex(12)


@dataclass(frozen=True)
class Condition:
    """What the writer says it saves over: the ETag it loaded, or nothing (a first save)."""

    if_match: str | None
    if_none_match: bool

    def require(self) -> Condition:
        if self.if_match is None and not self.if_none_match:
            raise PreconditionRequired(
                "send If-Match with the ETag you loaded, or If-None-Match: * for a first save"
            )
        return self

    def check(self, etag: str | None) -> None:
        """PreconditionFailed unless the stored document (its ETag, None: none) is the writer's."""
        if self.if_none_match and etag is not None:
            raise PreconditionFailed("a document exists already; load it and send If-Match")
        if self.if_match is not None and self.if_match != etag:
            raise PreconditionFailed(STALE)


@dataclass(frozen=True)
class Saved:
    item_id: int
    etag: str
    version: int
    object_count: int | None


@dataclass
class Write:
    """One document on its way to becoming current; `error` ends it."""

    item_id: int
    condition: Condition
    revision: str
    body: bytes | None = None  # None: a browser uploaded it already
    object_count: int | None = None
    read: Current | None = None  # the index row as the condition was checked against it
    replaces: str | None = None  # the key of the document it replaces
    uploaded: bool = False  # an object at its revision is this write's (removed if it fails)
    etag: str = ""
    error: AnnostackError | None = None


Outcome = Saved | AnnostackError
# Reads a document's bytes as a save's body is read: within the limits, valid, counted.
Checker = Callable[[bytes], Awaitable[CheckedDocument]]


async def load(ctx: TenantContext, io: ObjectIO, item_id: int, source: str) -> StoredObject:
    document_key(item_id, source)
    found = await _indexed(ctx, source, [item_id])
    if item_id not in found.items:
        raise NotFound(f"data item {item_id} not found")
    try:
        return await _get_current(ctx, io, source, item_id, found.current.get(item_id))
    except ObjectMissing as error:
        raise NotFound(f"no {source!r} annotations for item {item_id}") from error


async def save(
    ctx: TenantContext, io: ObjectIO, item_id: int, source: str, document: CheckedDocument,
    condition: Condition,
) -> Saved:  # fmt: skip
    document_key(item_id, source)
    write = Write(
        item_id, condition.require(), new_revision(), document.body, document.object_count
    )
    (outcome,) = await _store(ctx, io, source, [write])
    if isinstance(outcome, AnnostackError):
        raise outcome
    return outcome


async def _indexed(ctx: TenantContext, source: str, item_ids: Sequence[int]) -> Indexed:
    return await asyncio.to_thread(index.indexed, ctx, source, item_ids)


async def _get_current(
    ctx: TenantContext, io: ObjectIO, source: str, item_id: int, current: Current | None
) -> StoredObject:
    """The current document; if a save replaced it between the index read and the GET (and
    removed its object), the one that save made current."""
    bucket = ctx.connection.bucket
    try:
        return await io.get(bucket, _key(item_id, source, current))
    except ObjectMissing:
        if current is None or current.revision is None:
            raise
    now = (await _indexed(ctx, source, [item_id])).current.get(item_id)
    if now == current:
        raise ObjectMissing(_key(item_id, source, current))
    return await io.get(bucket, _key(item_id, source, now))


def _key(item_id: int, source: str, current: Current | None) -> str:
    return document_key(item_id, source, current.revision if current else None)


def _check_batch(item_ids: Sequence[int]) -> None:
    if len(item_ids) > BATCH_LIMIT:
        raise TooLarge(f"{len(item_ids)} documents in one batch; the limit is {BATCH_LIMIT}")


async def load_batch(
    ctx: TenantContext, io: ObjectIO, item_ids: list[int], source: str
) -> AsyncIterator[bytes]:
    """Stream `{"source":..,"results":[{itemId,status,etag?,document?}...]}`, in request order.

    Documents are passed through as stored (no parse, no re-encode); at most CONCURRENCY
    fetches are in flight, and results are emitted as soon as their turn comes. Once the
    answer has started, a document the object store fails to give is that item's 503.
    """
    _check_batch(item_ids)
    document_key(0, source)  # validates the source before any work
    found = await _indexed(ctx, source, item_ids)
    limit = asyncio.Semaphore(CONCURRENCY)

    async def fetch(item_id: int) -> bytes:
        if item_id not in found.items:
            return orjson.dumps({"itemId": item_id, "status": 404})
        async with limit:
            try:
                stored = await _get_current(ctx, io, source, item_id, found.current.get(item_id))
            except ObjectMissing:
                return orjson.dumps({"itemId": item_id, "status": 404})
            except BackendUnavailable as error:
                return orjson.dumps({"itemId": item_id, "status": 503, "error": str(error)})
        head = orjson.dumps({"itemId": item_id, "status": 200, "etag": stored.etag})
        return head[:-1] + b',"document":' + stored.body + b"}"

    tasks = [asyncio.ensure_future(fetch(item_id)) for item_id in item_ids]
    try:
        yield b'{"source":' + orjson.dumps(source) + b',"results":['
        for position, task in enumerate(tasks):
            yield (b"," if position else b"") + await task
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

    One query reads every item's row, the documents are written concurrently, and one
    transaction makes current those whose condition still holds. Entries that cannot be
    saved (a bad document, no condition, an item someone else holds the edit lock on: 409)
    are reported and not written.
    """
    _check_batch([entry.item_id for entry in entries])
    document_key(0, source)
    planned = [_planned_save(entry, locked_by_others) for entry in entries]
    return await _store_planned(ctx, io, source, [e.item_id for e in entries], planned)


@dataclass(frozen=True)
class Upload:
    """A document a browser put at a revision's pre-signed URL, to make current."""

    item_id: int
    revision: str
    condition: Condition


async def commit_uploads(
    ctx: TenantContext,
    io: ObjectIO,
    source: str,
    uploads: list[Upload],
    locked_by_others: dict[int, str],
    check: Checker,
) -> list[dict[str, object]]:
    """Make documents browsers uploaded current, each on its condition, as a batch save
    would; a result per document, in request order. `check` reads an upload as a save's
    body is read (the API's parse workers: a hostile upload costs one of them, not the pod)."""
    _check_batch([upload.item_id for upload in uploads])
    document_key(0, source)
    planned = [_planned_upload(source, upload, locked_by_others) for upload in uploads]
    return await _store_planned(ctx, io, source, [u.item_id for u in uploads], planned, check)


Plan = Write | AnnostackError


def _planned_save(entry: CheckedEntry, locked_by_others: dict[int, str]) -> Plan:
    if entry.error is not None or entry.document is None:
        return entry.error or Invalid("no document")
    try:
        _not_locked(entry.item_id, locked_by_others)
        condition = Condition(entry.if_match, entry.if_none_match).require()
    except AnnostackError as error:
        return error
    document = entry.document
    return Write(entry.item_id, condition, new_revision(), document.body, document.object_count)


def _planned_upload(source: str, upload: Upload, locked_by_others: dict[int, str]) -> Plan:
    try:
        _not_locked(upload.item_id, locked_by_others)
        document_key(upload.item_id, source, upload.revision)
        return Write(upload.item_id, upload.condition.require(), upload.revision)
    except AnnostackError as error:
        return error


def _not_locked(item_id: int, locked_by_others: dict[int, str]) -> None:
    if item_id in locked_by_others:
        raise Conflict(f"being edited by {locked_by_others[item_id]}")


async def _store_planned(
    ctx: TenantContext,
    io: ObjectIO,
    source: str,
    item_ids: list[int],
    planned: list[Plan],
    check: Checker | None = None,
) -> list[dict[str, object]]:
    writes = [p for p in planned if isinstance(p, Write)]
    outcomes = iter(await _store(ctx, io, source, writes, check))
    return [
        _reported(item, plan if isinstance(plan, AnnostackError) else next(outcomes))
        for item, plan in zip(item_ids, planned, strict=True)
    ]


def _reported(item_id: int, outcome: Outcome) -> dict[str, object]:
    if isinstance(outcome, AnnostackError):
        return {"itemId": item_id, "status": http_status(outcome), "error": str(outcome)}
    return {
        "itemId": item_id,
        "status": 200,
        "etag": outcome.etag,
        "objectCount": outcome.object_count,
        "version": outcome.version,
    }


async def _store(
    ctx: TenantContext,
    io: ObjectIO,
    source: str,
    writes: list[Write],
    check: Checker | None = None,
) -> list[Outcome]:
    """Check, write (or find the upload), then move the index rows of every write at once."""
    found = await _indexed(ctx, source, [w.item_id for w in writes])
    await _each(writes, lambda w: _check(ctx, io, source, found, w))
    await _each(writes, lambda w: _put(ctx, io, source, w, check))
    moves = [
        Move(w.item_id, w.read, w.revision, w.etag, w.object_count)
        for w in writes
        if w.error is None
    ]
    versions = await asyncio.to_thread(index.move, ctx, source, moves)
    for write in writes:
        if write.error is None and write.item_id not in versions:
            write.error = PreconditionFailed(STALE)
    _tidy(io, ctx.connection.bucket, source, writes, versions)
    return [_outcome(w, versions) for w in writes]


async def _each(writes: list[Write], step: Callable[[Write], Awaitable[None]]) -> None:
    """Run `step` on every write still going, CONCURRENCY at a time; an error ends a write."""
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(write: Write) -> None:
        async with limit:
            try:
                await step(write)
            except AnnostackError as error:
                write.error = error

    await asyncio.gather(*(one(w) for w in writes if w.error is None))


async def _check(ctx: TenantContext, io: ObjectIO, source: str, found: Indexed, w: Write) -> None:
    """The write's condition against the stored document, before anything is written."""
    if w.item_id not in found.items:
        raise NotFound(f"data item {w.item_id} not found")
    w.read = found.current.get(w.item_id)
    if w.read is not None and w.read.revision == w.revision:
        raise Conflict(f"revision {w.revision} is the current document already")
    w.uploaded = w.body is None  # a browser's upload is garbage from here if the write fails
    w.replaces = _key(w.item_id, source, w.read)
    if w.read is not None and w.read.revision is not None:
        w.condition.check(w.read.etag)
        return
    # Saved before revisions: the object says what is there (its row may not know).
    stored = await io.head(ctx.connection.bucket, w.replaces)
    w.condition.check(stored[1] if stored else None)
    if stored is None:
        w.replaces = None


async def _put(
    ctx: TenantContext, io: ObjectIO, source: str, w: Write, check: Checker | None
) -> None:
    """Write the document to its revision, or find what a browser uploaded there."""
    bucket, key = ctx.connection.bucket, document_key(w.item_id, source, w.revision)
    if w.body is None:
        assert check is not None, "uploads are committed with a checker"
        await _check_upload(io, bucket, key, w, check)
        return
    try:
        w.etag = (await io.put(bucket, key, w.body)).etag
        w.uploaded = True
    except BackendUnavailable:
        # A full SeaweedFS bucket is read-only and answers 5xx: say it is the quota.
        await ensure_room(ctx, io, len(w.body))
        raise


async def _check_upload(io: ObjectIO, bucket: str, key: str, w: Write, check: Checker) -> None:
    """What a browser uploaded to the write's revision is a document a save would take: the
    size first (a HEAD, so a huge upload is never read), then the body checked as a save's.
    The upload was signed `If-None-Match: *`, so the object checked is the one committed."""
    uploaded = await io.head(bucket, key)
    if uploaded is None:
        raise Invalid(f"nothing was uploaded to revision {w.revision} of item {w.item_id}")
    if uploaded[0] > MAX_DOCUMENT_BYTES:
        raise TooLarge(f"document is {uploaded[0]} bytes; the limit is {MAX_DOCUMENT_BYTES}")
    stored = await io.get(bucket, key)
    try:
        checked = await check(stored.body)
    except Invalid as error:
        raise Invalid(f"the document uploaded to revision {w.revision}: {error}") from error
    w.etag, w.object_count = stored.etag, checked.object_count


def _outcome(w: Write, versions: dict[int, int]) -> Outcome:
    if w.error is not None:
        return w.error
    return Saved(w.item_id, w.etag, versions[w.item_id], w.object_count)


_tidying: set[asyncio.Task[None]] = set()


def _tidy(
    io: ObjectIO, bucket: str, source: str, writes: list[Write], versions: dict[int, int]
) -> None:
    """Remove, after answering, the documents the saves replaced and the objects of saves that
    lost (or were refused after their upload); a failure only leaves garbage behind."""
    replaced = [w.replaces for w in writes if w.item_id in versions and w.replaces]
    lost = [
        document_key(w.item_id, source, w.revision)
        for w in writes
        if w.error is not None and w.uploaded
    ]
    keys = [*replaced, *lost]
    if keys:
        task = asyncio.create_task(_discard(io, bucket, keys))
        _tidying.add(task)
        task.add_done_callback(_tidying.discard)


async def _discard(io: ObjectIO, bucket: str, keys: list[str]) -> None:
    try:
        await io.discard(bucket, keys)
    except AnnostackError as error:
        log.warning("could not remove %d replaced annotation documents: %s", len(keys), error)


def presign_sequence(
    ctx: TenantContext, signer: Presigner, item_ids: list[int], source: str
) -> list[dict[str, object]]:
    """Per item a GET URL of its current document and a PUT URL of a fresh revision (to
    commit after the upload), for a whole sequence at once (items checked in one query)."""
    _check_batch(item_ids)
    found = index.indexed(ctx, source, item_ids)
    missing = [item_id for item_id in item_ids if item_id not in found.items]
    if missing:
        raise NotFound(f"data items not found: {missing[:10]}")
    revisions = [new_revision() for _ in item_ids]
    bucket = ctx.connection.bucket
    gets = signer.presign_all(
        "GET", bucket, [_key(item, source, found.current.get(item)) for item in item_ids]
    )
    puts = signer.presign_put_once(
        bucket,
        [document_key(item, source, rev) for item, rev in zip(item_ids, revisions, strict=True)],
    )
    return [
        {"itemId": item, "get": get, "put": put, "revision": revision}
        for item, get, put, revision in zip(item_ids, gets, puts, revisions, strict=True)
    ]
