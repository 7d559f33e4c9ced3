"""Credential rotation on demand: new credentials first, the old ones removed after the
worker pods rolled over, and processing goes on throughout (on the local node)."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import orjson
import pulsar
import pytest
import redis
from kubernetes import client
from minio import Minio
from minio.error import S3Error

from annostack.adapters.kube import Kube
from annostack.adapters.object_store import ObjectStoreAdmin
from annostack.adapters.pulsar_tokens import client_authentication
from annostack.domain.tenant_stack import TenantConnection
from annostack.domain.tenants import API_GROUP, API_VERSION, WORKER_SUBSCRIPTION, TenantNames
from annostack.services.tenant_credentials import ROTATE_ANNOTATION
from annostack.settings import Settings
from tests.integration.operator.conftest import Tenants
from tests.integration.workloads import jpeg
from tests.support import wait_for

pytestmark = pytest.mark.integration


def connection_of(kube: Kube, names: TenantNames) -> TenantConnection:
    data = kube.secret_data(names.namespace, names.secret)
    assert data is not None
    return TenantConnection.from_env(data)


def s3_of(connection: TenantConnection) -> Minio:
    return Minio(
        connection.s3_endpoint.removeprefix("http://"),
        connection.s3_access_key.get_secret_value(),
        connection.s3_secret_key.get_secret_value(),
        secure=False,
        region=connection.s3_region,
    )


def publish(connection: TenantConnection, item: int, key: str) -> None:
    token = connection.pulsar_token.get_secret_value()
    with_token = pulsar.Client(
        connection.pulsar_service_url, authentication=client_authentication(token)
    )
    try:
        producer = with_token.create_producer(
            f"persistent://{connection.pulsar_namespace}/thumbnails"
        )
        producer.send(orjson.dumps({"tenant": connection.tenant, "itemId": item, "key": key}))
    finally:
        with_token.close()


def thumbnail_made(settings: Settings, connection: TenantConnection, item: int, tmp: Path) -> None:
    store = ObjectStoreAdmin(settings.s3).client
    body = jpeg()
    store.put_object(connection.bucket, f"data/1/{item}.jpg", io.BytesIO(body), len(body))
    publish(connection, item, f"data/1/{item}.jpg")
    wait_for(
        lambda: any(True for _ in store.list_objects(connection.bucket, prefix=f"derived/{item}/")),
        timeout=60,
        what=f"thumbnails of item {item}",
    )


def refused_everywhere(old: TenantConnection) -> bool:
    """Every old credential is refused (new logins; the DB password does not rotate)."""
    try:
        list(s3_of(old).list_objects(old.bucket))
        return False
    except S3Error as error:
        if error.code != "InvalidAccessKeyId":
            raise
    try:
        redis.Redis.from_url(old.redis_url.get_secret_value()).ping()
        return False
    except redis.AuthenticationError:
        pass
    token = old.pulsar_token.get_secret_value()
    old_client = pulsar.Client(old.pulsar_service_url, authentication=client_authentication(token))
    try:
        old_client.subscribe(
            f"persistent://{old.pulsar_namespace}/thumbnails",
            WORKER_SUBSCRIPTION,
            consumer_type=pulsar.ConsumerType.Shared,
        ).close()
        return False
    except pulsar.AuthorizationError:
        return True
    finally:
        old_client.close()


def worker_pods(admin_kube: Kube, names: TenantNames) -> list[client.V1Pod]:
    found = client.CoreV1Api(admin_kube.api).list_namespaced_pod(
        names.namespace, label_selector="app.kubernetes.io/name=annostack-worker"
    )
    return [p for p in found.items if not p.metadata.deletion_timestamp]


def test_rotation_replaces_every_credential_while_worker_pods_keep_processing(
    tenants: Tenants, admin_kube: Kube, stack_settings: Settings, tmp_path: Path
) -> None:
    # One worker pod throughout, small enough for the node beside the platform's pods.
    name = tenants.create(
        {
            "displayName": "Rotate",
            "plan": {"workerCpu": "250m", "workerMemory": "512Mi"},
            "workers": {"minReplicas": 1, "maxReplicas": 1},
        }
    )
    tenants.wait_ready(name, timeout=180)  # WorkersReady: the pod is available
    names = TenantNames(tenant=name)
    old = connection_of(admin_kube, names)
    (old_pod,) = worker_pods(admin_kube, names)
    thumbnail_made(stack_settings, old, 1, tmp_path)

    client.CustomObjectsApi(admin_kube.api).patch_cluster_custom_object(
        API_GROUP, API_VERSION, "tenants", name,
        {"metadata": {"annotations": {ROTATE_ANNOTATION: uuid.uuid4().hex}}},
    )  # fmt: skip

    def rotated() -> bool:
        return connection_of(admin_kube, names).s3_access_key != old.s3_access_key

    wait_for(rotated, timeout=30, what="new credentials in the Secret")
    new = connection_of(admin_kube, names)
    assert new.redis_url != old.redis_url and new.pulsar_token != old.pulsar_token

    # The Secret's hash is in the pod template: the Deployment replaces the pod, and only once
    # that rollout finished (and the grace passed) are the old credentials removed.
    def rolled_over() -> bool:
        pods = worker_pods(admin_kube, names)
        return bool(pods) and all(p.metadata.uid != old_pod.metadata.uid for p in pods)

    wait_for(rolled_over, timeout=180, what="the worker pod replaced")
    wait_for(lambda: refused_everywhere(old), timeout=120, what="the old credentials refused")
    thumbnail_made(stack_settings, new, 2, tmp_path)  # by the new pod, with the new Secret
    assert list(s3_of(new).list_objects(new.bucket, prefix="derived/1/")), "new key reads old data"
    tenants.wait_ready(name, timeout=180)
