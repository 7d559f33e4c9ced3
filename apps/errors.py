"""Domain errors to HTTP responses, in one place. Bodies are `{"detail": "..."}` like FastAPI's."""

from __future__ import annotations

import math

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from annostack.domain.errors import AnnostackError, RateLimited, http_status
from annostack.services.tenancy import Unauthenticated

RETRY_AFTER_SECONDS = "5"


async def _annostack_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, AnnostackError)
    if isinstance(error, Unauthenticated):
        return JSONResponse(
            {"detail": str(error)}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )
    status = http_status(error)
    headers = {"Retry-After": RETRY_AFTER_SECONDS} if status == 503 else None
    if isinstance(error, RateLimited):
        headers = {"Retry-After": str(max(1, math.ceil(error.retry_after)))}
    return JSONResponse({"detail": str(error)}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    app.add_exception_handler(AnnostackError, _annostack_error)
