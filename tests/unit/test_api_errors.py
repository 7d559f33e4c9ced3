"""A backend that is away: the client gets 503 with Retry-After and the backend's name, the log
gets what the client library said (which the response does not carry)."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from fastapi import FastAPI

from annostack.apps.errors import install
from annostack.domain.errors import Backend, BackendUnavailable


class LibraryError(Exception):
    """Stands for redis.ConnectionError and its kin."""


def app() -> FastAPI:
    app = FastAPI()
    install(app)

    @app.get("/rate")
    async def rate() -> None:
        try:
            raise LibraryError("Error 104 while writing to socket. Connection reset by peer.")
        except LibraryError as error:
            raise BackendUnavailable(Backend.REDIS, "ConnectionError") from error

    return app


async def get(path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get(path)


def test_a_503_logs_the_library_s_own_words(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="annostack.api"):
        answer = asyncio.run(get("/rate"))
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
    assert answer.json() == {"detail": "Redis: ConnectionError"}
    [record] = [r for r in caplog.records if "answered 503" in r.getMessage()]
    assert "GET /rate" in record.getMessage()
    assert "Connection reset by peer" in record.getMessage()
