"""Object I/O for the data plane: pre-signed URLs, and async GET/PUT with conditions.

The API reads and writes annotation documents through the same pre-signed URLs it hands to
browsers, with an async HTTP client: one code path for both, many requests in flight on one
event loop. Conditional writes (If-Match / If-None-Match) are the object store's own; URLs are
signed locally (no request).

aiohttp rather than httpx here: fetching 300 documents of 25 KB took 550-1,300 ms with httpx's
async client and 120-180 ms with aiohttp on the same machine (docs/benchmarks.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import aiohttp
from yarl import URL

from annostack.domain.errors import (
    Backend,
    BackendRejected,
    BackendUnavailable,
    Invalid,
    PreconditionFailed,
)
from annostack.settings import ObjectStoreSettings

URL_LIFETIME = timedelta(minutes=15)
DELETE_BATCH = 1000  # keys per DeleteObjects request, S3's limit
# The Smart Object Storage API's capacity document (SeaweedFS and MinIO serve it for every
# bucket, from the same numbers their quota enforcement uses; AWS S3 answers 404).
CAPACITY_KEY = ".system-d26a9498-cb7c-4a87-a44a-8ae204f5ba6c/capacity.xml"


class ObjectMissing(Exception):
    """No object at that key."""


@dataclass(frozen=True)
class StoredObject:
    body: bytes
    etag: str


@dataclass(frozen=True)
class WriteResult:
    etag: str


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def etag(self) -> str:
        return self.headers.get("etag", "").strip('"')


class Presigner:
    """AWS Signature V4 pre-signed URLs (path style), computed locally.

    The same algorithm as the MinIO SDK's `presign_v4` (a unit test compares the two for the
    same instant), without its per-URL overhead: the signing key is derived once per day and
    the query prefix once per call, so issuing the 300 URLs of a sequence costs a few
    milliseconds instead of ~17 (docs/benchmarks.md). Only `host` is signed, as browsers need.
    """

    def __init__(self, settings: ObjectStoreSettings) -> None:
        endpoint = urlsplit(settings.public_endpoint or settings.endpoint)
        self.base = f"{endpoint.scheme}://{endpoint.netloc}"
        self.host = endpoint.netloc
        self.region = settings.region
        self.access_key = settings.access_key.get_secret_value()
        self._secret = settings.secret_key.get_secret_value()
        self._keys: dict[str, bytes] = {}

    def _signing_key(self, day: str) -> bytes:
        key = self._keys.get(day)
        if key is None:
            key = ("AWS4" + self._secret).encode()
            for part in (day, self.region, "s3", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._keys = {day: key}  # yesterday's key is never needed again
        return key

    def presign(
        self,
        method: str,
        bucket: str,
        key: str,
        lifetime: timedelta = URL_LIFETIME,
        now: datetime | None = None,
        params: dict[str, str] | None = None,
    ) -> str:
        """A pre-signed URL; `params` are extra query parameters (uploadId, partNumber...)."""
        (url,) = self.presign_all(method, bucket, [key], lifetime, now, params)
        return url

    def presign_all(
        self,
        method: str,
        bucket: str,
        keys: list[str],
        lifetime: timedelta = URL_LIFETIME,
        now: datetime | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> list[str]:
        """URLs for many keys signed at one instant: the query is built once for all of them.

        Per key only the path, one SHA-256 and one HMAC remain, which is what keeps issuing a
        300-frame sequence's GET and PUT URLs within the API's budget. `headers` are signed
        too, so a request with the URL must send them as given (e.g. `If-None-Match: *`).
        """
        signed = {name.lower(): value.strip() for name, value in (headers or {}).items()}
        moment = (now or datetime.now(UTC)).astimezone(UTC)
        amz_date, day = moment.strftime("%Y%m%dT%H%M%SZ"), moment.strftime("%Y%m%d")
        scope = f"{day}/{self.region}/s3/aws4_request"
        signing = {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": f"{self.access_key}/{scope}",
            "X-Amz-Date": amz_date,
            "X-Amz-Expires": str(int(lifetime.total_seconds())),
            "X-Amz-SignedHeaders": ";".join(sorted({"host", *signed})),
        }
        # SigV4's canonical query: every parameter, URI-encoded, sorted by name.
        query = "&".join(
            f"{quote(name, safe='~')}={quote(value, safe='~')}"
            for name, value in sorted({**(params or {}), **signing}.items())
        )
        before_path = f"{method}\n"
        canonical_headers = "".join(
            f"{name}:{value}\n" for name, value in sorted({**signed, "host": self.host}.items())
        )
        signed_names = ";".join(sorted({"host", *signed}))
        after_path = f"\n{query}\n{canonical_headers}\n{signed_names}\nUNSIGNED-PAYLOAD"
        string_prefix = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n"
        signer = hmac.new(self._signing_key(day), digestmod=hashlib.sha256)
        bucket_path = "/" + quote(bucket, safe="") + "/"
        urls = []
        for key in keys:
            # The bucket's own path for a bucket request (key ""), e.g. DeleteObjects.
            path = bucket_path + quote(key, safe="/~") if key else bucket_path[:-1]
            canonical = hashlib.sha256(f"{before_path}{path}{after_path}".encode()).hexdigest()
            mac = signer.copy()
            mac.update((string_prefix + canonical).encode())
            urls.append(f"{self.base}{path}?{query}&X-Amz-Signature={mac.hexdigest()}")
        return urls

    def presign_get(self, bucket: str, key: str, lifetime: timedelta = URL_LIFETIME) -> str:
        return self.presign("GET", bucket, key, lifetime)

    def presign_put(self, bucket: str, key: str, lifetime: timedelta = URL_LIFETIME) -> str:
        return self.presign("PUT", bucket, key, lifetime)

    def presign_put_once(self, bucket: str, keys: list[str]) -> list[str]:
        """PUT URLs that write a key only if it does not exist yet (`If-None-Match: *` is
        signed, so the browser must send it): a URL cannot replace what it wrote."""
        return self.presign_all("PUT", bucket, keys, headers={"If-None-Match": "*"})

    def presign_head(self, bucket: str, key: str) -> str:
        return self.presign("HEAD", bucket, key)

    def presign_part(self, bucket: str, key: str, upload_id: str, part: int) -> str:
        params = {"partNumber": str(part), "uploadId": upload_id}
        return self.presign("PUT", bucket, key, params=params)


class ObjectIO:
    def __init__(self, presigner: Presigner, http: aiohttp.ClientSession) -> None:
        self.presigner = presigner
        self.http = http

    async def get(self, bucket: str, key: str) -> StoredObject:
        reply = await self._send("GET", self.presigner.presign_get(bucket, key))
        if reply.status == 404:
            raise ObjectMissing(key)
        self._expect(reply, 200)
        return StoredObject(reply.body, reply.etag)

    async def head(self, bucket: str, key: str) -> tuple[int, str] | None:
        """Size and ETag, or None if missing."""
        reply = await self._send("HEAD", self.presigner.presign_head(bucket, key))
        if reply.status == 404:
            return None
        self._expect(reply, 200)
        return int(reply.headers.get("content-length", "0")), reply.etag

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
        reply = await self._send("PUT", self.presigner.presign_put(bucket, key), body, headers)
        if reply.status == 412:
            raise PreconditionFailed(key)
        if reply.status == 404 and if_match is not None:
            raise PreconditionFailed(key)  # the version the writer had no longer exists
        self._expect(reply, 200)
        return WriteResult(reply.etag)

    async def used_bytes(self, bucket: str) -> int | None:
        """The bucket's size as the store counts it against its quota (SOSAPI capacity.xml),
        or None where the store does not say."""
        reply = await self._send("GET", self.presigner.presign_get(bucket, CAPACITY_KEY))
        if reply.status != 200 or b"<CapacityInfo" not in reply.body:
            return None
        return int(_xml_text(reply.body, "Used") or 0)

    async def remove(self, bucket: str, key: str) -> None:
        """Delete the object's current version outright (not a delete marker on a versioned
        bucket, which would leave the bytes counted against the quota)."""
        reply = await self._send("HEAD", self.presigner.presign_head(bucket, key))
        if reply.status == 404:
            return
        self._expect(reply, 200)
        version = reply.headers.get("x-amz-version-id", "")
        params = {"versionId": version} if version and version != "null" else None
        url = self.presigner.presign("DELETE", bucket, key, params=params)
        self._expect(await self._send("DELETE", url), 204)

    async def discard(self, bucket: str, keys: list[str]) -> None:
        """Delete the keys' current versions with one request per 1,000 (S3 DeleteObjects).

        On a versioned bucket each becomes a delete marker: the bytes stay recoverable until
        the lifecycle rule expires non-current versions, as an overwritten object's do.
        """
        for start in range(0, len(keys), DELETE_BATCH):
            body = discard_body(keys[start : start + DELETE_BATCH])
            url = self.presigner.presign("POST", bucket, "", params={"delete": ""})
            digest = base64.b64encode(hashlib.md5(body).digest()).decode()  # noqa: S324
            headers = {"Content-Type": "application/xml", "Content-MD5": digest}
            reply = await self._send("POST", url, body, headers)
            self._expect(reply, 200)
            if b"<Error>" in reply.body:
                raise BackendRejected(Backend.OBJECT_STORE, _xml_text(reply.body, "Message"))

    async def create_multipart(self, bucket: str, key: str, content_type: str) -> str:
        """Start a multipart upload; its id."""
        url = self.presigner.presign("POST", bucket, key, params={"uploads": ""})
        reply = await self._send("POST", url, b"", {"Content-Type": content_type})
        self._expect(reply, 200)
        upload_id = _xml_text(reply.body, "UploadId")
        if not upload_id:
            raise BackendRejected(Backend.OBJECT_STORE, "no UploadId in CreateMultipartUpload")
        return upload_id

    async def complete_multipart(
        self, bucket: str, key: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> str:
        """Assemble the parts (number, ETag) in order; the object's ETag."""
        url = self.presigner.presign("POST", bucket, key, params={"uploadId": upload_id})
        body = complete_multipart_body(parts)
        reply = await self._send("POST", url, body, {"Content-Type": "application/xml"})
        if reply.status == 400:
            raise Invalid(f"cannot assemble the parts: {_xml_text(reply.body, 'Message')}")
        self._expect(reply, 200)
        # S3 may answer 200 with an error document when assembling fails late.
        if b"<Error>" in reply.body:
            raise Invalid(f"cannot assemble the parts: {_xml_text(reply.body, 'Message')}")
        return _xml_text(reply.body, "ETag").strip('"')

    async def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        url = self.presigner.presign("DELETE", bucket, key, params={"uploadId": upload_id})
        reply = await self._send("DELETE", url)
        if reply.status not in (204, 404):
            self._expect(reply, 204)

    async def _send(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        # `encoded=True`: the signature covers the URL exactly as signed; never re-quote it.
        try:
            async with self.http.request(
                method, URL(url, encoded=True), data=body, headers=headers
            ) as response:
                payload = await response.read()
                lowered = {k.lower(): v for k, v in response.headers.items()}
                return Reply(response.status, lowered, payload)
        except (aiohttp.ClientError, TimeoutError) as error:
            raise BackendUnavailable(Backend.OBJECT_STORE, type(error).__name__) from error

    @staticmethod
    def _expect(reply: Reply, status: int) -> None:
        if reply.status >= 500:
            raise BackendUnavailable(Backend.OBJECT_STORE, f"{reply.status}")
        if reply.status != status:
            raise BackendRejected(
                Backend.OBJECT_STORE, f"{reply.status} {reply.body[:200].decode(errors='replace')}"
            )


def complete_multipart_body(parts: list[tuple[int, str]]) -> bytes:
    """The CompleteMultipartUpload document for parts (number, ETag), in part order."""
    listed = "".join(
        f"<Part><PartNumber>{number}</PartNumber><ETag>&quot;{escape(etag)}&quot;</ETag></Part>"
        for number, etag in sorted(parts)
    )
    return f"<CompleteMultipartUpload>{listed}</CompleteMultipartUpload>".encode()


def discard_body(keys: list[str]) -> bytes:
    """The DeleteObjects document for `keys`, quiet (the reply lists only failures)."""
    listed = "".join(f"<Object><Key>{escape(key)}</Key></Object>" for key in keys)
    return f"<Delete><Quiet>true</Quiet>{listed}</Delete>".encode()


def xml_text(document: bytes, tag: str) -> str:
    """Text of the first element named `tag` in an S3 XML reply (namespace-agnostic)."""
    return _xml_text(document, tag)


def _xml_text(document: bytes, tag: str) -> str:
    """Text of the first element named `tag` in an S3 XML reply (namespace-agnostic)."""
    # The reply comes from our own configured object store, not from a user.
    root = ElementTree.fromstring(document)  # noqa: S314
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == tag:
            return element.text or ""
    return ""
