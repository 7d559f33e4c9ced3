"""Annotation results: one document per (item, source); single, batch, and pre-signed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from annostack.apps.deps import CallerDep, ObjectsDep, StateDep, TenantDep
from annostack.domain.annotations import (
    BATCH_LIMIT,
    MAX_BATCH_BYTES,
    MAX_DOCUMENT_BYTES,
    BatchSaveRequest,
    CheckedDocument,
    check_batch,
    check_document,
)
from annostack.domain.errors import Conflict, TooLarge
from annostack.domain.models import CamelModel
from annostack.services import annotations as service

router = APIRouter(prefix="/v1", tags=["annotations"])

EXAMPLE_DOCUMENT: dict[str, Any] = {
    "objects": [
        {
            "id": "car-1",
            "type": "3D_BOX",
            "classId": "car",
            "trackId": 17,
            "contour": {
                "center": [1.2, 3.4, 0.9],
                "size": [4.5, 1.9, 1.6],
                "rotation": [0, 0, 1.57],
            },
        }
    ]
}


BATCH_LOAD_RESPONSE = {
    "source": "lidar",
    "results": [
        {"itemId": 42, "status": 200, "etag": "8c1f0b", "document": EXAMPLE_DOCUMENT},
        {"itemId": 43, "status": 404, "error": "no lidar annotations for item 43"},
    ],
}
BATCH_SAVE_RESPONSE = {
    "source": "lidar",
    "results": [
        {"itemId": 42, "status": 200, "etag": "d41d8c", "objectCount": 1, "version": 4},
        {"itemId": 43, "status": 412, "error": "the document changed since it was loaded"},
    ],
}
REVISION = "5f0c2a9be41d7786aa0c13f2"
PRESIGN_RESPONSE = {
    "source": "lidar",
    "urls": [
        {
            "itemId": 42,
            "get": "https://s3.example.com/annostack-demo/annotations/42/lidar/"
            "0b9e6c1d2f3a4b5c6d7e8f90.json?X-Amz-...",
            "put": f"https://s3.example.com/annostack-demo/annotations/42/lidar/{REVISION}.json"
            "?X-Amz-...",
            "revision": REVISION,
        }
    ],
}
COMMIT_RESPONSE = {
    "source": "lidar",
    "results": [
        {"itemId": 42, "status": 200, "etag": "d41d8c", "objectCount": None, "version": 5},
        {"itemId": 43, "status": 412, "error": "the document changed since it was loaded"},
    ],
}


def _json_example(example: object) -> dict[int | str, dict[str, object]]:
    return {200: {"content": {"application/json": {"example": example}}}}


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema with its `$defs` inlined (OpenAPI resolves `#/` in its own root)."""
    schema = model.model_json_schema(by_alias=True)
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: resolve(value) for key, value in node.items()}
        return [resolve(value) for value in node] if isinstance(node, list) else node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def _etag_header(etag: str) -> str:
    return f'"{etag}"'


def _unquote(value: str | None) -> str | None:
    return value.strip().strip('"') if value else None


@router.get(
    "/items/{item_id}/annotations/{source}",
    summary="Load one annotation document (ETag in the response header).",
    responses={200: {"content": {"application/json": {"example": EXAMPLE_DOCUMENT}}}},
)
async def load(ctx: TenantDep, io: ObjectsDep, item_id: int, source: str) -> Response:
    stored = await service.load(ctx, io, item_id, source)
    return Response(
        stored.body, media_type="application/json", headers={"ETag": _etag_header(stored.etag)}
    )


@router.put(
    "/items/{item_id}/annotations/{source}",
    summary="Save one annotation document (If-Match, or If-None-Match: * for the first save).",
    max_body_size=MAX_DOCUMENT_BYTES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "object"}, "example": EXAMPLE_DOCUMENT}
            },
        }
    },
    responses=_json_example({"version": 4, "objectCount": 1}),
)
async def save(
    ctx: TenantDep,
    io: ObjectsDep,
    state: StateDep,
    who: CallerDep,
    request: Request,
    item_id: int,
    source: str,
    if_match: Annotated[str | None, Header()] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    holder = await state.coordination.holder(ctx.names.tenant, item_id)
    if holder is not None and holder != who:
        raise Conflict(f"item {item_id} is being edited by {holder}")
    # Read within the route's limit, then checked off the event loop when it is large.
    document = await state.offload.parse(await request.body(), check_document)
    condition = service.Condition(_unquote(if_match), if_none_match == "*")
    saved = await service.save(ctx, io, item_id, source, document, condition)
    return Response(
        content=orjson.dumps({"version": saved.version, "objectCount": saved.object_count}),
        media_type="application/json",
        headers={"ETag": _etag_header(saved.etag)},
    )


class BatchLoad(CamelModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"source": "lidar", "itemIds": [41, 42, 43]}]}
    )

    source: str
    item_ids: list[int] = Field(min_length=1, max_length=BATCH_LIMIT)


@router.post(
    "/annotations/batch-load",
    summary="Load up to 1,000 documents of one source; streamed, per-item status.",
    responses=_json_example(BATCH_LOAD_RESPONSE),
)
async def batch_load(ctx: TenantDep, io: ObjectsDep, body: BatchLoad) -> StreamingResponse:
    stream = service.load_batch(ctx, io, body.item_ids, body.source)
    first = await anext(stream)  # validation errors surface as 4xx, before streaming starts
    return StreamingResponse(_prepend(first, stream), media_type="application/json")


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk


@router.post(
    "/annotations/batch-save",
    summary="Save up to 1,000 documents of one source; each one conditional, each reported.",
    max_body_size=MAX_BATCH_BYTES,
    # The body is read and parsed by the route itself (in a worker process when large), so
    # its schema is declared here rather than by a parameter FastAPI would parse on the loop.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": _inline_schema(BatchSaveRequest),
                    "example": {
                        "source": "lidar",
                        "documents": [
                            {"itemId": 42, "ifMatch": '"8c1f0b"', "document": EXAMPLE_DOCUMENT},
                            {"itemId": 43, "ifNoneMatch": True, "document": EXAMPLE_DOCUMENT},
                        ],
                    },
                }
            },
        }
    },
    responses=_json_example(BATCH_SAVE_RESPONSE),
)
async def batch_save(
    ctx: TenantDep, io: ObjectsDep, state: StateDep, who: CallerDep, request: Request
) -> dict[str, object]:
    source, entries = await state.offload.parse(await request.body(), check_batch)
    holders = await state.coordination.holders(ctx.names.tenant, [e.item_id for e in entries])
    locked = {item: holder for item, holder in holders.items() if holder != who}
    results = await service.save_batch(ctx, io, source, entries, locked)
    return {"source": source, "results": results}


class PresignRequest(CamelModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"source": "lidar", "itemIds": [41, 42, 43]}]}
    )

    source: str
    item_ids: list[int] = Field(min_length=1, max_length=BATCH_LIMIT)


@router.post(
    "/annotations/presign",
    summary="Pre-signed URLs for a whole sequence, for browsers: GET the current document, "
    "PUT a new revision (with If-None-Match: *), then commit it.",
    responses=_json_example(PRESIGN_RESPONSE),
)
async def presign(ctx: TenantDep, io: ObjectsDep, body: PresignRequest) -> dict[str, object]:
    if len(body.item_ids) > BATCH_LIMIT:
        raise TooLarge(f"at most {BATCH_LIMIT} items per request")
    urls = await asyncio.to_thread(
        service.presign_sequence, ctx, io.presigner, body.item_ids, body.source
    )
    return {"source": body.source, "urls": urls}


class Upload(CamelModel):
    item_id: int
    revision: str = Field(description="The revision whose pre-signed PUT URL was used.")
    if_match: str | None = Field(default=None, description="The ETag of the document loaded.")
    if_none_match: bool = Field(default=False, description="A first save: no document yet.")


class CommitRequest(CamelModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "source": "lidar",
                    "uploads": [
                        {"itemId": 42, "revision": REVISION, "ifMatch": '"8c1f0b"'},
                        {"itemId": 43, "revision": REVISION, "ifNoneMatch": True},
                    ],
                }
            ]
        }
    )

    source: str
    uploads: list[Upload] = Field(min_length=1, max_length=BATCH_LIMIT)


@router.post(
    "/annotations/commit",
    summary="Make documents uploaded through pre-signed PUT URLs current, each on its "
    "condition (If-Match or If-None-Match, as a save); each reported.",
    responses=_json_example(COMMIT_RESPONSE),
)
async def commit(
    ctx: TenantDep, io: ObjectsDep, state: StateDep, who: CallerDep, body: CommitRequest
) -> dict[str, object]:
    holders = await state.coordination.holders(ctx.names.tenant, [u.item_id for u in body.uploads])
    locked = {item: holder for item, holder in holders.items() if holder != who}
    uploads = [
        service.Upload(
            u.item_id, u.revision, service.Condition(_unquote(u.if_match), u.if_none_match)
        )
        for u in body.uploads
    ]

    async def check(uploaded: bytes) -> CheckedDocument:
        return await state.offload.parse(uploaded, check_document)

    results = await service.commit_uploads(ctx, io, body.source, uploads, locked, check)
    return {"source": body.source, "results": results}
