"""S3 administration for tenant buckets (MinIO SDK; SeaweedFS, MinIO and AWS S3 alike).

A tenant bucket gets versioning (an overwritten annotation can be recovered), lifecycle rules
(old versions and abandoned multipart uploads expire) and CORS so browsers can PUT and GET
through pre-signed URLs and read the ETag for conditional saves.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit
from xml.etree import ElementTree

import urllib3
from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error
from minio.lifecycleconfig import (
    AbortIncompleteMultipartUpload,
    Expiration,
    LifecycleConfig,
    NoncurrentVersionExpiration,
    Rule,
)
from minio.versioningconfig import VersioningConfig

from annostack.domain.errors import Backend, BackendRejected, BackendUnavailable
from annostack.settings import ObjectStoreSettings

NONCURRENT_VERSION_DAYS = 30
EXPORT_DAYS = 7  # how long an export's archive stays in the bucket
EXPORTS_PREFIX = "exports/"  # where exports write their archives (services.exports)
ABANDONED_UPLOAD_DAYS = 2
CORS_RULES = """<CORSConfiguration><CORSRule>
<AllowedOrigin>*</AllowedOrigin>
<AllowedMethod>GET</AllowedMethod><AllowedMethod>PUT</AllowedMethod><AllowedMethod>HEAD</AllowedMethod>
<AllowedHeader>*</AllowedHeader>
<ExposeHeader>ETag</ExposeHeader><ExposeHeader>x-amz-version-id</ExposeHeader>
<MaxAgeSeconds>3600</MaxAgeSeconds>
</CORSRule></CORSConfiguration>"""


def minio_client(settings: ObjectStoreSettings) -> Minio:
    endpoint = urlsplit(settings.endpoint)
    return Minio(
        endpoint.netloc,
        access_key=settings.access_key.get_secret_value(),
        secret_key=settings.secret_key.get_secret_value(),
        secure=endpoint.scheme == "https",
        region=settings.region,
        # Fail fast: the operator retries with backoff rather than hanging on one request.
        http_client=urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=3, read=30),
            retries=urllib3.Retry(total=2, backoff_factor=0.2),
        ),
    )


@contextmanager
def translated_errors() -> Iterator[None]:
    try:
        yield
    except S3Error as error:
        raise BackendRejected(Backend.OBJECT_STORE, f"{error.code}: {error.message}") from error
    except (MinioException, urllib3.exceptions.HTTPError, OSError) as error:
        raise BackendUnavailable(Backend.OBJECT_STORE, type(error).__name__) from error


@dataclass(frozen=True)
class EnsuredBucket:
    changed: bool
    unsupported: list[str]  # bucket features this store answered NotImplemented to


class ObjectStoreAdmin:
    def __init__(self, settings: ObjectStoreSettings) -> None:
        self.client = minio_client(settings)

    def bucket_exists(self, bucket: str) -> bool:
        with translated_errors():
            return self.client.bucket_exists(bucket)

    def ensure_bucket(self, bucket: str) -> EnsuredBucket:
        """Bucket with versioning, lifecycle and CORS.

        A store that answers NotImplemented to the lifecycle or CORS call (MinIO does for
        bucket CORS: it has one server-wide setting) leaves the bucket usable; what it lacks
        is reported, for the tenant's condition, instead of failing the tenant.
        """
        unsupported = []
        with translated_errors():
            created = not self.client.bucket_exists(bucket)
            if created:
                self.client.make_bucket(bucket)
            changed = self._ensure_versioning(bucket)
            for what, call in (
                ("lifecycle rules", lambda: self.client.set_bucket_lifecycle(bucket, _lifecycle())),
                ("bucket CORS", lambda: self._put_cors(bucket)),
            ):
                try:
                    call()
                except S3Error as error:
                    if error.code != "NotImplemented":
                        raise
                    unsupported.append(what)
        return EnsuredBucket(created or changed, unsupported)

    def _ensure_versioning(self, bucket: str) -> bool:
        if self.client.get_bucket_versioning(bucket).status == ENABLED:
            return False
        self.client.set_bucket_versioning(bucket, VersioningConfig(ENABLED))
        return True

    def _put_cors(self, bucket: str) -> None:
        # The MinIO SDK has no bucket-CORS call; this is the plain S3 PutBucketCors request,
        # signed by the SDK's own request path.
        body = CORS_RULES.encode()
        digest = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
        self.client._execute(
            "PUT", bucket, body=body, headers={"Content-MD5": digest}, query_params={"cors": ""}
        )

    def cors_origins(self, bucket: str) -> list[str]:
        with translated_errors():
            response = self.client._execute("GET", bucket, query_params={"cors": ""})
        # The document comes from our own configured S3 endpoint, not from a user.
        root = ElementTree.fromstring(response.data)  # noqa: S314
        return [e.text or "" for e in root.iter() if e.tag.endswith("AllowedOrigin")]

    def delete_bucket(self, bucket: str) -> bool:
        """Remove every object version, then the bucket; False if it did not exist."""
        with translated_errors():
            if not self.client.bucket_exists(bucket):
                return False
            doomed = (
                DeleteObject(obj.object_name, obj.version_id)
                for obj in self.client.list_objects(bucket, recursive=True, include_version=True)
                if obj.object_name is not None
            )
            for failure in self.client.remove_objects(bucket, doomed):
                raise BackendRejected(Backend.OBJECT_STORE, f"cannot delete {failure.name}")
            self.client.remove_bucket(bucket)
            return True


def _lifecycle() -> LifecycleConfig:
    return LifecycleConfig(
        [
            Rule(
                ENABLED,
                rule_filter=Filter(prefix=""),
                rule_id="expire-old-versions-and-abandoned-uploads",
                noncurrent_version_expiration=NoncurrentVersionExpiration(
                    noncurrent_days=NONCURRENT_VERSION_DAYS
                ),
                abort_incomplete_multipart_upload=AbortIncompleteMultipartUpload(
                    days_after_initiation=ABANDONED_UPLOAD_DAYS
                ),
            ),
            # An export is a download, not a copy of the data: archives (1 GiB for 100,000
            # frames) go after EXPORT_DAYS; the data stays and exports again.
            Rule(
                ENABLED,
                rule_filter=Filter(prefix=EXPORTS_PREFIX),
                rule_id="expire-exports",
                expiration=Expiration(days=EXPORT_DAYS),
            ),
        ]
    )


@dataclass(frozen=True)
class ListedObject:
    key: str
    size: int
    etag: str


def list_objects(settings: ObjectStoreSettings, bucket: str, prefix: str) -> Iterator[ListedObject]:
    """Every object under `prefix` (paged by the SDK), as the tenant's own credentials see it."""
    client = minio_client(settings)
    with translated_errors():
        for found in client.list_objects(bucket, prefix=prefix, recursive=True):
            if found.is_dir or found.object_name is None:
                continue
            etag = (found.etag or "").strip('"')
            yield ListedObject(key=found.object_name, size=int(found.size or 0), etag=etag)


def read_object(settings: ObjectStoreSettings, bucket: str, key: str) -> bytes:
    """One (small) object's bytes: a calibration file, a result of a prefix import."""
    client = minio_client(settings)
    with translated_errors():
        response = client.get_object(bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()


def put_object_once(settings: ObjectStoreSettings, bucket: str, key: str, body: bytes) -> str:
    """Write `body` unless an object is already at `key`; the ETag of what is there.

    Checked with a HEAD, not If-None-Match (the SDK's PUT sends no conditions): a prefix import
    is one operator pass per source, so there is no concurrent writer to race with here.
    """
    client = minio_client(settings)
    with translated_errors():
        try:
            return (client.stat_object(bucket, key).etag or "").strip('"')
        except S3Error as error:
            if error.code not in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                raise
        written = client.put_object(
            bucket, key, io.BytesIO(body), len(body), content_type="application/json"
        )
        return (written.etag or "").strip('"')
