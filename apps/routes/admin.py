"""The admin gateway: platform operators issue tokens for tenants."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, status
from pydantic import ConfigDict, Field

from annostack.apps.deps import AdminDep, StateDep
from annostack.domain.errors import NotFound
from annostack.domain.models import CamelModel
from annostack.services.tenancy import TenantContext, UnknownTenant, create_api_token

router = APIRouter(prefix="/admin/v1", tags=["admin"])


class TokenRequest(CamelModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "labelling-pipeline"}]})

    name: str = Field(min_length=1, max_length=128, description="What the token is for.")


class SessionRequest(CamelModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"user": "alice"}]})

    user: str = Field(min_length=1, max_length=128, description="The signed-in user's id.")
    teams: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="The user's teams, as the sign-in service knows them (push team topics).",
    )


class IssuedToken(CamelModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"token": "ast_demo_Xq3v0Jd8kP6rB1yNw2s9TfLmH4cZa7Ue"}]}
    )

    token: str = Field(description="Shown once; store it now.")


async def _context(state: StateDep, tenant: str) -> TenantContext:
    try:
        return await asyncio.to_thread(state.directory.get, tenant)
    except UnknownTenant as error:
        raise NotFound(f"tenant {tenant} not found") from error


@router.post(
    "/tenants/{tenant}/tokens",
    status_code=status.HTTP_201_CREATED,
    summary="Create an API token for the developer gateway.",
)
async def create_token(
    _: AdminDep, state: StateDep, tenant: str, body: TokenRequest
) -> IssuedToken:
    context = await _context(state, tenant)
    return IssuedToken(token=await asyncio.to_thread(create_api_token, context, body.name))


@router.post(
    "/tenants/{tenant}/sessions",
    status_code=status.HTTP_201_CREATED,
    summary="Issue a browser session token for a user (called by the sign-in service).",
)
async def create_session(
    _: AdminDep, state: StateDep, tenant: str, body: SessionRequest
) -> IssuedToken:
    await _context(state, tenant)
    return IssuedToken(token=state.sessions.issue(tenant, body.user, body.teams))
