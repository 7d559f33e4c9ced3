"""FastAPI dependencies: the caller's tenant, resolved from its token (see services.tenancy),
and the query parameters several routes share."""

from __future__ import annotations

import asyncio
import hmac
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from annostack.adapters.objects import ObjectIO
from annostack.apps.state import AppState
from annostack.domain.errors import RateLimited
from annostack.services.tenancy import (
    SESSION_TOKEN_PREFIX,
    Principal,
    TenantContext,
    Unauthenticated,
    UnknownTenant,
    split_api_token,
    verify_api_token,
)

# `after` of every keyset-paged listing (items, scenes, frames): the opaque cursor the page
# before answered as `next`. 64 characters hold any cursor issued (services.browsing).
AfterQuery = Annotated[str | None, Query(max_length=64, description="`next` of the previous page.")]

bearer = HTTPBearer(auto_error=False, description="An API token (ast_…) or session token (ass_…).")


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.annostack
    return state


StateDep = Annotated[AppState, Depends(app_state)]


async def authenticate(
    state: AppState, token: str, address: str
) -> tuple[TenantContext, Principal]:
    """The tenant and principal a token stands for, or Unauthenticated (REST and push alike).

    An address that failed too often recently gets RateLimited before anything is looked up.
    """
    state.failed_logins.check(address)
    try:
        return await _verify(state, token)
    except Unauthenticated:
        await state.failed_logins.failed(address)
        raise


def client_address(connection: HTTPConnection) -> str:
    # uvicorn puts the forwarded client here when the proxy is trusted (FORWARDED_ALLOW_IPS).
    return connection.client.host if connection.client else "unknown"


async def _verify(state: AppState, token: str) -> tuple[TenantContext, Principal]:
    # Each gateway takes one kind of credential: a leaked API token cannot drive the browser
    # gateway, and a stolen browser session cannot script the developer API.
    if token.startswith(SESSION_TOKEN_PREFIX) != (state.api.gateway == "user"):
        raise Unauthenticated(f"this is the {state.api.gateway} gateway; use its kind of token")
    try:
        if token.startswith(SESSION_TOKEN_PREFIX):
            principal = state.sessions.verify(token)
            context = await asyncio.to_thread(state.directory.get, principal.tenant)
        else:
            tenant, secret = split_api_token(token)
            context = await asyncio.to_thread(state.directory.get, tenant)
            name = await asyncio.to_thread(verify_api_token, context, secret)
            principal = Principal(tenant=tenant, subject=name, kind="api-token")
    except UnknownTenant as error:
        # Same answer as a wrong secret: a token must not reveal which tenants exist.
        raise Unauthenticated("invalid token") from error
    return context, principal


async def current_tenant(
    request: Request,
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> TenantContext:
    if credentials is None:
        raise Unauthenticated("missing bearer token")
    context, principal = await authenticate(state, credentials.credentials, client_address(request))
    request.state.tenant = context.names.tenant
    request.state.principal = (
        f"user:{principal.subject}" if principal.kind == "session" else f"token:{principal.subject}"
    )
    delay = await state.coordination.within_rate(
        context.names.tenant, state.api.rate_limit_per_second
    )
    if delay is not None:
        raise RateLimited(delay)
    return context


TenantDep = Annotated[TenantContext, Depends(current_tenant)]


def object_io(state: StateDep) -> ObjectIO:
    return state.objects


ObjectsDep = Annotated[ObjectIO, Depends(object_io)]


def caller(request: Request, ctx: TenantDep) -> str:
    """Who is calling, for edit locks: `token:<name>` or `user:<id>`."""
    subject: str = request.state.principal
    return subject


CallerDep = Annotated[str, Depends(caller)]


def platform_admin(
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    expected = state.api.admin_token.get_secret_value()
    given = credentials.credentials if credentials else ""
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthenticated("admin token required")


AdminDep = Annotated[None, Depends(platform_admin)]
