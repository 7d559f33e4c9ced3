"""Per-item edit locks: take/renew (heartbeat), release, look."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, status
from pydantic import ConfigDict, Field

from annostack.apps.deps import CallerDep, StateDep, TenantDep
from annostack.apps.state import AppState
from annostack.domain.errors import Conflict, NotFound
from annostack.domain.models import CamelModel
from annostack.domain.push import Destination, LockChanged
from annostack.services.datasets import get_item
from annostack.services.tenancy import TenantContext

LockChange = Literal["lock.acquired", "lock.released"]

router = APIRouter(prefix="/v1", tags=["locks"])


class Lock(CamelModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"itemId": 42, "holder": "user:alice", "expiresInSeconds": 60}]
        }
    )

    item_id: int
    holder: str = Field(description="`token:<name>` or `user:<id>` of whoever holds it.")
    expires_in_seconds: int | None = None


async def _announce(
    state: AppState, ctx: TenantContext, change: LockChange, item_id: int, holder: str
) -> None:
    """Tell the tenant's open sessions (push, best effort: never fails the request)."""
    event = LockChanged(type=change, item_id=item_id, holder=holder)
    await state.push.publish(Destination.everyone(ctx.names.tenant), event)


@router.post(
    "/items/{item_id}/lock",
    summary="Take the edit lock, or renew it (heartbeat) if you hold it; 409 if someone else does.",
)
async def acquire(ctx: TenantDep, state: StateDep, who: CallerDep, item_id: int) -> Lock:
    await asyncio.to_thread(get_item, ctx, item_id)
    ttl = state.api.lock_ttl_seconds
    holder, fresh = await state.coordination.acquire(ctx.names.tenant, item_id, who, ttl * 1000)
    if holder != who:
        raise Conflict(f"item {item_id} is being edited by {holder}")
    if fresh:  # a heartbeat renews silently; only a change is news
        await _announce(state, ctx, "lock.acquired", item_id, who)
    return Lock(item_id=item_id, holder=who, expires_in_seconds=ttl)


@router.delete(
    "/items/{item_id}/lock", status_code=status.HTTP_204_NO_CONTENT, summary="Release your lock."
)
async def release(ctx: TenantDep, state: StateDep, who: CallerDep, item_id: int) -> None:
    if not await state.coordination.release(ctx.names.tenant, item_id, who):
        holder = await state.coordination.holder(ctx.names.tenant, item_id)
        if holder is None:
            raise NotFound(f"item {item_id} is not locked")
        raise Conflict(f"item {item_id} is locked by {holder}, not by you")
    await _announce(state, ctx, "lock.released", item_id, who)


@router.get("/items/{item_id}/lock", summary="Who holds the edit lock, if anyone.")
async def look(ctx: TenantDep, state: StateDep, item_id: int) -> Lock:
    await asyncio.to_thread(get_item, ctx, item_id)
    holder = await state.coordination.holder(ctx.names.tenant, item_id)
    if holder is None:
        raise NotFound(f"item {item_id} is not locked")
    return Lock(item_id=item_id, holder=holder)
