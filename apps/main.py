"""The tenant API (`annostack api run`): one FastAPI app over the shared service layer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from annostack import __version__
from annostack.apps import errors, observability
from annostack.apps.push import endpoint as push
from annostack.apps.routes import (
    admin,
    console,
    datasets,
    exports,
    health,
    locks,
    scenes,
    uploads,
)
from annostack.apps.routes import annotations as annotation_routes
from annostack.apps.settings import ApiSettings
from annostack.apps.state import AppState
from annostack.settings import Settings

# Long enough for a Redis that is starting too; the API serves REST meanwhile either way.
RELAY_START_SECONDS = 10.0
log = logging.getLogger("annostack.api")


async def _wait_for_relay(state: AppState) -> None:
    """Start serving once this replica receives pushes, so none published after start is lost."""
    try:
        await asyncio.wait_for(state.relay.subscribed.wait(), RELAY_START_SECONDS)
    except TimeoutError:
        log.warning("push relay not subscribed yet; push starts when Redis answers")


def create_app(settings: Settings | None = None, api: ApiSettings | None = None) -> FastAPI:
    # Both read now, not at the first request: a default secret outside dev stops start-up.
    api = api or ApiSettings()
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = AppState.build(settings, api)
        app.state.annostack = state
        state.offload.warm_up()
        relay = asyncio.create_task(state.relay.run(), name="push-relay")
        await _wait_for_relay(state)
        yield
        relay.cancel()
        await state.close()

    app = FastAPI(
        title=f"annostack API ({api.gateway} gateway)",
        version=__version__,
        description=(
            "Datasets, uploads through pre-signed URLs, and annotation results stored as JSON "
            "documents in the tenant's bucket. Authenticate with `Authorization: Bearer <token>`."
        ),
        lifespan=lifespan,
        # Counted while the body is read, chunked or not; routes that take more say so.
        max_body_size=api.max_body_bytes,
    )
    app.state.api_settings = api  # what the server needs before start-up (apps.testing)
    errors.install(app)
    observability.install(app)
    app.include_router(health.router)
    if api.gateway == "admin":
        app.include_router(admin.router)
    else:
        routers = (
            datasets.router,
            scenes.router,
            exports.router,
            uploads.router,
            annotation_routes.router,
            locks.router,
        )
        for router in (*routers, push.router, console.router):
            app.include_router(router)
    return app
