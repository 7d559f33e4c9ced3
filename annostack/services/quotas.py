"""The tenant's storage quota (`plan.storage`) as the API checks it before writing."""

from __future__ import annotations

from annostack.adapters.objects import ObjectIO
from annostack.domain.errors import InsufficientStorage
from annostack.domain.models import quantity_bytes
from annostack.services.tenancy import TenantContext


async def ensure_room(ctx: TenantContext, io: ObjectIO, size: int) -> None:
    """Refuse an upload that would take the bucket over `plan.storage`, before anything is
    registered or signed. The store enforces the quota too (SeaweedFS makes a full bucket
    read-only), but only about once a minute and with a 5xx; this answer is immediate and says
    why. Stores that do not report usage (AWS S3) are not checked here."""
    used = await io.used_bytes(ctx.names.bucket)
    if used is None:
        return
    quota = quantity_bytes(ctx.plan.storage)
    if used + size > quota:
        raise InsufficientStorage(
            f"tenant {ctx.names.tenant} has used {used} of its {ctx.plan.storage} storage "
            f"(plan.storage); this upload needs {size} bytes more; nothing was stored"
        )
