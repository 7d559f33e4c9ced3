"""S3 (SeaweedFS), through the `minio` SDK, and pre-signed URLs used as a browser would."""

from __future__ import annotations

import uuid
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import pytest
from minio import Minio
from minio.error import S3Error

from annostack.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def s3(stack_settings: Settings) -> Minio:
    endpoint = urlsplit(stack_settings.s3.endpoint)
    return Minio(
        endpoint.netloc,
        access_key=stack_settings.s3.access_key.get_secret_value(),
        secret_key=stack_settings.s3.secret_key.get_secret_value(),
        secure=endpoint.scheme == "https",
        region=stack_settings.s3.region,
    )


def test_presigned_put_and_get_work_from_a_plain_http_client(s3: Minio) -> None:
    bucket = f"smoke-{uuid.uuid4().hex[:12]}"
    s3.make_bucket(bucket)
    payload = uuid.uuid4().bytes * 1000
    try:
        put_url = s3.presigned_put_object(bucket, "frames/0001.json", expires=timedelta(minutes=5))
        assert httpx.put(put_url, content=payload).status_code == 200

        get_url = s3.presigned_get_object(bucket, "frames/0001.json", expires=timedelta(minutes=5))
        downloaded = httpx.get(get_url)
        assert downloaded.status_code == 200
        assert downloaded.content == payload

        # The signature covers the key: a URL edited to point elsewhere is refused.
        assert httpx.get(get_url.replace("0001.json", "0002.json")).status_code == 403
    finally:
        for obj in s3.list_objects(bucket, recursive=True):
            assert obj.object_name is not None
            s3.remove_object(bucket, obj.object_name)
        s3.remove_bucket(bucket)


def test_wrong_credentials_are_refused(stack_settings: Settings) -> None:
    endpoint = urlsplit(stack_settings.s3.endpoint)
    intruder = Minio(endpoint.netloc, access_key="nobody", secret_key="x" * 20, secure=False)
    with pytest.raises(S3Error) as refused:
        intruder.list_buckets()
    assert refused.value.code in {"InvalidAccessKeyId", "AccessDenied", "SignatureDoesNotMatch"}
