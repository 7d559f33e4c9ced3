"""Object I/O for the data plane: pre-signed URLs, and async GET/PUT with conditions.

The API reads and writes annotation documents through the same pre-signed URLs it hands to
browsers, with an async HTTP client: one code path for both, many requests in flight on one
event loop, and the object store's own conditional writes (If-Match / If-None-Match) enforce
optimistic concurrency, so a save through the API and a save straight from a browser are
protected alike. The MinIO SDK only signs (locally, no request).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import httpx
from minio import Minio

from annostack.adapters.object_store import minio_client
from annostack.domain.errors import (
    Backend,
    BackendRejected,
    BackendUnavailable,
    PreconditionFailed,
)
from annostack.settings import ObjectStoreSettings

URL_LIFETIME = timedelta(minutes=15)


class ObjectMissing(Exception):
    """No object at that key."""


@dataclass(frozen=True)
class StoredObject:
    body: bytes
    etag: str


@dataclass(frozen=True)
class WriteResult:
    etag: str


def _etag(response: httpx.Response) -> str:
    return str(response.headers.get("etag", "")).strip('"')


class ObjectIO:
    def __init__(self, settings: ObjectStoreSettings, http: httpx.AsyncClient) -> None:
        self.signer: Minio = minio_client(settings)
        self.http = http

    def presign_get(self, bucket: str, key: str, lifetime: timedelta = URL_LIFETIME) -> str:
        return str(self.signer.presigned_get_object(bucket, key, expires=lifetime))

    def presign_put(self, bucket: str, key: str, lifetime: timedelta = URL_LIFETIME) -> str:
        return str(self.signer.presigned_put_object(bucket, key, expires=lifetime))

    async def get(self, bucket: str, key: str) -> StoredObject:
        response = await self._send("GET", self.presign_get(bucket, key))
        if response.status_code == 404:
            raise ObjectMissing(key)
        self._expect(response, 200)
        return StoredObject(response.content, _etag(response))

    async def head(self, bucket: str, key: str) -> tuple[int, str] | None:
        """Size and ETag, or None if missing."""
        url = self.signer.get_presigned_url("HEAD", bucket, key, expires=URL_LIFETIME)
        response = await self._send("HEAD", url)
        if response.status_code == 404:
            return None
        self._expect(response, 200)
        return int(response.headers.get("content-length", 0)), _etag(response)

    async def put(
        self,
        bucket: str,
        key: str,
        body: bytes,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
        content_type: str = "application/json",
    ) -> WriteResult:
        """Write atomically; with a condition, refuse (PreconditionFailed) if it does not hold."""
        headers = {"Content-Type": content_type}
        if if_match is not None:
            headers["If-Match"] = f'"{if_match}"'
        if if_none_match:
            headers["If-None-Match"] = "*"
        response = await self._send("PUT", self.presign_put(bucket, key), body, headers)
        if response.status_code == 412:
            raise PreconditionFailed(key)
        if response.status_code == 404 and if_match is not None:
            raise PreconditionFailed(key)  # the version the writer had no longer exists
        self._expect(response, 200)
        return WriteResult(_etag(response))

    async def _send(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        try:
            return await self.http.request(method, url, content=body, headers=headers)
        except httpx.HTTPError as error:
            raise BackendUnavailable(Backend.OBJECT_STORE, type(error).__name__) from error

    @staticmethod
    def _expect(response: httpx.Response, status: int) -> None:
        if response.status_code >= 500:
            raise BackendUnavailable(Backend.OBJECT_STORE, f"{response.status_code}")
        if response.status_code != status:
            raise BackendRejected(
                Backend.OBJECT_STORE, f"{response.status_code} {response.text[:200]}"
            )
