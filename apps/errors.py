"""Errors to HTTP responses, in one place. Bodies are `{"detail": ...}` like FastAPI's.

Field errors (FastAPI's request validation, and InvalidFields from the parse workers) list at
most MAX_REPORTED_ERRORS problems with where and what, never the input, and say how many more
there were (`moreErrors`): a malformed 50 MB request gets a few hundred bytes back, not an
echo of itself.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY

from annostack.domain.annotations import MAX_REPORTED_ERRORS
from annostack.domain.errors import AnnostackError, InvalidFields, RateLimited, http_status
from annostack.services.tenancy import Unauthenticated

RETRY_AFTER_SECONDS = "5"
log = logging.getLogger("annostack.api")


def _field_errors(errors: list[dict[str, Any]], total: int) -> JSONResponse:
    body: dict[str, object] = {"detail": errors}
    if total > len(errors):
        body["moreErrors"] = total - len(errors)
    return JSONResponse(body, status_code=422)


async def _annostack_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, AnnostackError)
    if isinstance(error, Unauthenticated):
        return JSONResponse(
            {"detail": str(error)}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )
    if isinstance(error, InvalidFields):
        return _field_errors(error.errors, error.total)
    status = http_status(error)
    headers = {"Retry-After": RETRY_AFTER_SECONDS} if status == 503 else None
    if status == 503:
        _log_unavailable(request, error)
    if isinstance(error, RateLimited):
        headers = {"Retry-After": str(max(1, math.ceil(error.retry_after)))}
    return JSONResponse({"detail": str(error)}, status_code=status, headers=headers)


def _log_unavailable(request: Request, error: AnnostackError) -> None:
    """A backend was away: the client gets "Redis: ConnectionError", the log says what the
    client library said (its first line only: a database error's later lines quote the SQL)."""
    cause = error.__cause__
    said = str(cause).splitlines()[0][:300] if cause is not None and str(cause) else ""
    log.warning("%s %s answered 503 (%s): %s", request.method, request.url.path, error, said or "-")


async def _invalid_request(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    problems = list(error.errors())
    shown = [
        {"type": p["type"], "loc": list(p["loc"]), "msg": p["msg"]}
        for p in problems[:MAX_REPORTED_ERRORS]
    ]
    return _field_errors(shown, len(problems))


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    if error.status_code != 413:
        return await http_exception_handler(request, error)
    # Starlette's body limit, counted while reading (chunked bodies too): say which limit.
    limit = request.scope.get(MAX_BODY_SIZE_SCOPE_KEY)
    detail = f"request body over {limit} bytes, this route's limit; files go through /uploads"
    return JSONResponse({"detail": detail}, status_code=413)


def install(app: FastAPI) -> None:
    app.add_exception_handler(AnnostackError, _annostack_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
