"""Pure parts of tenant isolation: key patterns, credential rotation, request signing."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from unittest.mock import MagicMock
from urllib.parse import urlsplit

import pytest
import redis
from minio.credentials import Credentials
from minio.error import S3Error
from minio.signer import sign_v4_s3

from annostack.adapters.identities import AccessKey, bucket_policy, sign_v4
from annostack.adapters.job_progress import JobProgress
from annostack.adapters.object_store import ObjectStoreAdmin
from annostack.domain import keyspace
from annostack.domain.errors import Backend, BackendRejected, BackendUnavailable
from annostack.domain.items import SkipReason
from annostack.domain.keyspace import Family
from annostack.domain.push import Destination
from annostack.domain.tenant_stack import TenantConnection
from annostack.services.tenancy import TenantDirectory, UnknownTenant
from annostack.services.tenant_credentials import (
    HANDLED_ANNOTATION,
    RETIRE_AFTER_ANNOTATION,
    S3_ACCESS_KEY,
    S3_SECRET_KEY,
    StoredSecret,
    plan,
)
from annostack.services.tenants import rollout_finished
from annostack.settings import DatabaseSettings
from annostack.workers.runtime import Transient, backend_down


def _reaches(tenant: str, key: str) -> bool:
    # Redis ACL globs and fnmatch agree on `*` for names without `[`, `?` or `\\`.
    return any(fnmatchcase(key, p) for p in keyspace.tenant_key_patterns(tenant))


def test_a_tenants_patterns_cover_its_worker_keys_and_nothing_of_a_neighbours() -> None:
    own = [
        keyspace.key(Family.JOB, "a", "uid", "expected"),
        keyspace.key(Family.PROCESSING, "a"),
        keyspace.key(Family.PROCESSING, "a", "failures"),
        keyspace.key(Family.ARCHIVE, "a", 7),
    ]
    assert all(_reaches("a", key) for key in own)
    neighbours = [keyspace.key(family, "a-b", 1) for family in Family]
    neighbours += [keyspace.key(family, "ab", 1) for family in Family]
    assert not any(_reaches("a", key) for key in neighbours)
    api_only = [keyspace.key(Family.LOCK, "a", 1), keyspace.key(Family.RATE, "a", 1)]
    assert not any(_reaches("a", key) for key in api_only), "locks and rates are the API's"


def test_every_job_progress_key_a_worker_writes_is_inside_its_tenants_acl() -> None:
    parts = ["expected", "succeeded", "failed", "state", *(f"skipped:{r}" for r in SkipReason)]
    keys = [JobProgress._key("a", "uid", part) for part in parts]
    assert all(_reaches("a", key) for key in keys), "NOPERM at run time otherwise"
    assert not any(_reaches("a-b", key) for key in keys)


def test_a_refusal_by_redis_is_not_an_outage_the_worker_waits_out() -> None:
    """NOPERM retried as an outage would block the message forever."""
    assert backend_down(redis.ConnectionError("Connection refused"))
    assert backend_down(redis.TimeoutError("Timeout reading from socket"))
    assert backend_down(redis.exceptions.ReadOnlyError("READONLY replica"))
    assert backend_down(BackendUnavailable(Backend.DATABASE, "lost connection"))
    assert backend_down(Transient("S3 GET data/1/2.pcd: 503"))
    assert not backend_down(redis.exceptions.NoPermissionError("NOPERM no permissions"))
    assert not backend_down(redis.ResponseError("WRONGTYPE Operation against a key"))
    assert not backend_down(BackendRejected(Backend.REDIS, "job progress: NOPERM"))
    assert not backend_down(ValueError("a bug"))


def test_a_tenants_channel_pattern_is_its_own_destinations_only() -> None:
    (pattern,) = keyspace.tenant_channel_patterns("a")
    own = keyspace.push_channel(str(Destination.user("a", "alice.smith")))
    other = keyspace.push_channel(str(Destination.everyone("a-b")))
    assert fnmatchcase(own, pattern) and not fnmatchcase(other, pattern)


def test_the_bucket_policy_names_the_bucket_and_nothing_wider() -> None:
    policy = bucket_policy("annostack-a")
    assert "annostack-a" in policy and '"*"' not in policy and "iam:" not in policy


def test_iam_requests_are_signed_as_the_minio_sdk_signs_s3_requests() -> None:
    # Same algorithm; only the service in the scope differs, so compare with service "s3".
    moment = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    url, body = "http://127.0.0.1:8333/", b"Action=ListUsers&Version=2010-05-08"
    digest = hashlib.sha256(body).hexdigest()
    ours = sign_v4("POST", url, body, {}, ("AK", "SK"), "us-east-1", "s3", moment)
    theirs = sign_v4_s3(
        method="POST",
        url=urlsplit(url),
        region="us-east-1",
        headers={"Host": "127.0.0.1:8333", "x-amz-date": "20261201T120000Z",
                 "x-amz-content-sha256": digest},
        credentials=Credentials("AK", "SK"),
        content_sha256=digest,
        date=moment,
    )  # fmt: skip
    assert ours["authorization"] == theirs["Authorization"]


def _stored(**annotations: str) -> StoredSecret:
    data = {S3_ACCESS_KEY: "AK1", S3_SECRET_KEY: "SK1"}
    return StoredSecret(data=data, annotations={HANDLED_ANNOTATION: "", **annotations})


def test_a_new_rotation_request_makes_new_credentials_and_keeps_the_old_for_a_while() -> None:
    kept = plan(_stored(), "tenant-a", "", now=100, grace_seconds=60, rollout_finished=True)
    assert kept.s3 == AccessKey("AK1", "SK1") and not kept.additive and kept.generation == 1
    rotated = plan(_stored(), "tenant-a", "r1", now=100, grace_seconds=60, rollout_finished=True)
    assert rotated.s3 is None and rotated.generation == 2 and rotated.rotating
    assert rotated.additive and rotated.annotations()[RETIRE_AFTER_ANNOTATION] == "160"


def test_old_credentials_go_only_after_the_grace_and_the_rollout() -> None:
    rolling = _stored(**{HANDLED_ANNOTATION: "r1", RETIRE_AFTER_ANNOTATION: "160"})
    early = plan(rolling, "tenant-a", "r1", now=150, grace_seconds=60, rollout_finished=True)
    assert early.additive
    waiting = plan(rolling, "tenant-a", "r1", now=200, grace_seconds=60, rollout_finished=False)
    assert waiting.additive
    done = plan(rolling, "tenant-a", "r1", now=200, grace_seconds=60, rollout_finished=True)
    assert not done.additive and RETIRE_AFTER_ANNOTATION not in done.annotations()


def test_a_fresh_tenant_does_not_rotate_on_a_preset_annotation() -> None:
    fresh = plan(None, "tenant-a", "r1", now=0, grace_seconds=60, rollout_finished=True)
    assert not fresh.rotating and fresh.handled == "r1" and fresh.s3 is None


def test_a_rollout_is_finished_when_every_replica_runs_the_new_template() -> None:
    def deployment(wanted: int, **status: int) -> dict[str, object]:
        return {"metadata": {"generation": 2}, "spec": {"replicas": wanted},
                "status": {"observedGeneration": 2, **status}}  # fmt: skip

    assert rollout_finished(None)
    assert rollout_finished(deployment(0))
    assert not rollout_finished(deployment(0, replicas=1)), "an old pod still terminating"
    assert rollout_finished(deployment(2, replicas=2, updatedReplicas=2, availableReplicas=2))
    assert not rollout_finished(deployment(2, replicas=3, updatedReplicas=2, availableReplicas=2))
    assert not rollout_finished({**deployment(0), "status": {"observedGeneration": 1}})


def test_a_store_without_bucket_cors_leaves_the_bucket_usable_and_says_so() -> None:
    store = ObjectStoreAdmin.__new__(ObjectStoreAdmin)
    refused = S3Error(
        MagicMock(), "NotImplemented", "A header you provided implies functionality that is "
        "not implemented", "/annostack-a", "req", "host",
    )  # fmt: skip
    store.client = MagicMock(
        **{"bucket_exists.return_value": True, "_execute.side_effect": refused}
    )
    store.client.get_bucket_versioning.return_value.status = "Enabled"
    ensured = store.ensure_bucket("annostack-a")
    assert ensured.unsupported == ["bucket CORS"]


def test_the_directory_refuses_a_secret_that_names_another_tenants_bucket() -> None:
    connection = TenantConnection(
        tenant="a", db_host="h", db_port=1, db_user="u_a", db_password="p", db_tls="disabled",
        database="t_a", s3_endpoint="http://s3", s3_region="r", s3_access_key="k",
        s3_secret_key="s", bucket="annostack-b", pulsar_service_url="pulsar://p",
        pulsar_namespace="annostack-a/processing", redis_url="redis://r",
    )  # fmt: skip
    secrets = {"annostack-connection": connection.to_env(), "annostack-api-connection": {}}
    secrets["annostack-api-connection"] = {"ANNOSTACK_TENANT__DB_USER": "a_a"}
    kube = MagicMock(**{"secret_data.side_effect": lambda _ns, name: secrets[name]})
    with pytest.raises(UnknownTenant):
        TenantDirectory(kube, DatabaseSettings()).get("a")
