"""Tenant lifecycle against the real stack: every backend checked through its own client."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity
from sqlalchemy.exc import DBAPIError

from annostack.adapters.bucket_quota import SeaweedShellQuotas
from annostack.adapters.database import DatabaseAdmin, engine_for
from annostack.adapters.identities import IamIdentities
from annostack.adapters.kube import Kube
from annostack.adapters.object_store import ObjectStoreAdmin
from annostack.adapters.redis_acl import RedisAcl
from annostack.devstack.host_operator import OperatorProcess
from annostack.domain.tenant_stack import TenantConnection
from annostack.domain.tenants import API_GROUP, API_VERSION, Plan, TenantNames
from annostack.settings import Settings
from tests.integration.conftest import ROOT, load_documents, pulsar_admin
from tests.integration.operator.conftest import Tenants
from tests.support import wait_for

pytestmark = pytest.mark.integration

HEALTHY = {
    "Ready",
    "NamespaceReady",
    "DatabaseReady",
    "BucketReady",
    "MessagingReady",
    "WorkersReady",
}


def connection_of(kube: Kube, names: TenantNames) -> TenantConnection:
    data = kube.secret_data(names.namespace, names.secret)
    assert data is not None, "connection Secret missing"
    return TenantConnection.from_env(data)


def test_create_provisions_every_backend(
    tenants: Tenants, admin_kube: Kube, stack_settings: Settings
) -> None:
    name = tenants.create(
        {"displayName": "Acme", "plan": {"backlogQuota": "64Mi"}, "workers": {"maxReplicas": 3}}
    )
    tenant = tenants.wait_ready(name)
    names = TenantNames(tenant=name)
    conditions = {c["type"]: c["status"] for c in tenant["status"]["conditions"]}
    assert conditions == dict.fromkeys(HEALTHY, "True"), "no condition is False when healthy"
    messages = {c["type"]: c["message"] for c in tenant["status"]["conditions"]}
    assert messages["BucketReady"] == "", "SeaweedFS takes the quota: nothing to report"
    db = DatabaseAdmin(stack_settings.db)
    connection = connection_of(admin_kube, names)
    password = connection.db_password.get_secret_value()
    if db.supports_resource_groups():  # TiDB: the plan's RU limit, on the workers' user
        assert messages["DatabaseReady"] == ""
        units = Plan().request_units_per_second  # the default plan
        assert db.resource_group_units(names.db_user) == units
        assert _current_resource_group(stack_settings, names, password) == names.db_user
    else:  # MariaDB says what it cannot enforce
        assert "no resource groups" in messages["DatabaseReady"]
    db.close()
    # kopf writes its bookkeeping after the handler that wrote Ready has returned.
    wait_for(
        lambda: (
            (tenants.get(name) or {})["metadata"]
            .get("annotations", {})
            .get(f"{API_GROUP}/kopf-managed")
            == "yes"
        ),
        timeout=15,
        what="kopf's bookkeeping in annotations",
    )
    assert "kopf" not in tenant["status"], "kopf's bookkeeping stays out of status"

    core, apps = client.CoreV1Api(admin_kube.api), client.AppsV1Api(admin_kube.api)
    namespace = core.read_namespace(names.namespace)
    assert namespace.metadata.labels["annostack.io/tenant"] == name
    assert (
        core.read_namespaced_resource_quota("tenant-quota", names.namespace).spec.hard["pods"]
        == "4"
    )
    assert core.read_namespaced_limit_range("tenant-limits", names.namespace)
    assert core.read_namespaced_service_account("workers", names.namespace)
    policy = client.NetworkingV1Api(admin_kube.api).read_namespaced_network_policy(
        "default-deny-with-backends", names.namespace
    )
    assert set(policy.spec.policy_types) == {"Ingress", "Egress"}
    deployment = apps.read_namespaced_deployment("workers", names.namespace)
    container = deployment.spec.template.spec.containers[0]
    assert container.env_from[0].secret_ref.name == names.secret
    assert container.liveness_probe.http_get.path == "/healthz"

    _assert_database_isolated(stack_settings, names, password)
    _assert_bucket(stack_settings, names)
    _assert_messaging(stack_settings, names, backlog_bytes=64 * 2**20)
    _assert_no_secret_leaks(admin_kube, tenant, password)


def _assert_database_isolated(settings: Settings, names: TenantNames, password: str) -> None:
    admin = DatabaseAdmin(settings.db)
    other = f"other_{uuid.uuid4().hex[:8]}"
    with admin.engine.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {other}"))
    engine = engine_for(settings.db, names.db_user, password, names.database)
    try:
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            assert {"datasets", "data_items", "annotation_results"} <= tables
            with pytest.raises(DBAPIError, match="denied"):
                conn.execute(sa.text(f"CREATE TABLE {other}.stolen (id INT)"))
            visible = conn.execute(sa.text("SHOW DATABASES")).scalars().all()
            assert other not in visible and names.database in visible
    finally:
        engine.dispose()
        with admin.engine.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE {other}"))
        admin.close()


def _current_resource_group(settings: Settings, names: TenantNames, password: str) -> str:
    """The group TiDB charges the tenant's own sessions to."""
    engine = engine_for(settings.db, names.db_user, password, names.database)
    try:
        with engine.connect() as conn:
            return str(conn.execute(sa.text("SELECT CURRENT_RESOURCE_GROUP()")).scalar_one())
    finally:
        engine.dispose()


def _assert_bucket(settings: Settings, names: TenantNames) -> None:
    store = ObjectStoreAdmin(settings.s3)
    assert store.bucket_exists(names.bucket)
    s3 = settings.s3
    assert s3.seaweedfs_master and s3.seaweedfs_filer
    quotas = SeaweedShellQuotas(s3.weed_binary, s3.seaweedfs_master, s3.seaweedfs_filer)
    assert not quotas.ensure(names.bucket, 100 * 2**30), "plan.storage (100Gi) is the quota"
    identities = IamIdentities(s3)
    assert len(identities.access_keys(names.identity)) == 1, "one key: the Secret's"
    identities.close()
    assert store.client.get_bucket_versioning(names.bucket).status == "Enabled"
    assert store.cors_origins(names.bucket) == ["*"]
    rules = {rule.rule_id: rule for rule in store.client.get_bucket_lifecycle(names.bucket).rules}
    assert rules["expire-exports"].rule_filter.prefix == "exports/"
    assert rules["expire-exports"].expiration.days == 7, "export archives go after a week"
    assert "expire-old-versions-and-abandoned-uploads" in rules


def _assert_messaging(settings: Settings, names: TenantNames, backlog_bytes: int) -> None:
    with pulsar_admin(settings) as http:
        assert names.pulsar_namespace in http.get(f"/namespaces/{names.pulsar_tenant}").json()
        permissions = http.get(f"/namespaces/{names.pulsar_namespace}/permissions").json()
        assert {role: sorted(actions) for role, actions in permissions.items()} == {
            names.pulsar_role(1): ["consume", "produce"],
            settings.pulsar.api_role: ["produce"],
        }, "the tenant's role and the API's, nobody else"
        quota = http.get(f"/namespaces/{names.pulsar_namespace}/backlogQuotaMap").json()
        assert quota["destination_storage"]["limitSize"] == backlog_bytes
        for topic in ("thumbnails", "pointclouds", "media", "archives", "dead-letter"):
            path = f"/persistent/{names.pulsar_namespace}/{topic}/subscriptions"
            assert http.get(path).json() == ["workers"]


def _assert_no_secret_leaks(kube: Kube, tenant: dict[str, Any], password: str) -> None:
    assert password not in json.dumps(tenant)
    events = client.CoreV1Api(kube.api).list_event_for_all_namespaces(
        field_selector=f"involvedObject.name={tenant['metadata']['name']}"
    )
    assert all(password not in (event.message or "") for event in events.items)


def test_spec_update_reaches_every_backend(
    tenants: Tenants, admin_kube: Kube, stack_settings: Settings
) -> None:
    name = tenants.create({"displayName": "Grow", "workers": {"maxReplicas": 2}})
    tenants.wait_ready(name)
    tenants.patch_spec(
        name,
        {
            "plan": {"backlogQuota": "128Mi", "workerCpu": "500m"},
            "workers": {"maxReplicas": 5, "minReplicas": 1},
        },
    )
    tenants.wait_ready(name)
    names = TenantNames(tenant=name)
    core, apps = client.CoreV1Api(admin_kube.api), client.AppsV1Api(admin_kube.api)
    hard = core.read_namespaced_resource_quota("tenant-quota", names.namespace).spec.hard
    assert hard["pods"] == "6"
    # Five workers and a surge pod of 500m (the apiserver normalises 3000m to 3).
    assert parse_quantity(hard["requests.cpu"]) == 3
    deployment = apps.read_namespaced_deployment("workers", names.namespace)
    assert deployment.spec.replicas == 1, "raised minReplicas lifts the replica count"
    assert deployment.spec.template.spec.containers[0].resources.limits["cpu"] == "500m"
    _assert_messaging(stack_settings, names, backlog_bytes=128 * 2**20)


def test_drift_is_repaired_and_reported(
    tenants: Tenants, admin_kube: Kube, stack_settings: Settings, operator: OperatorProcess
) -> None:
    name = tenants.create({"displayName": "Drift"})
    tenants.wait_ready(name)
    names = TenantNames(tenant=name)
    store, db = ObjectStoreAdmin(stack_settings.s3), DatabaseAdmin(stack_settings.db)
    apps = client.AppsV1Api(admin_kube.api)

    store.delete_bucket(names.bucket)
    db.drop_user(names.db_user)
    apps.patch_namespaced_deployment(
        "workers",
        names.namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "worker", "image": "evil:1"}]}}}},
    )

    def repaired() -> bool:
        image = apps.read_namespaced_deployment("workers", names.namespace).spec.template.spec
        return (
            store.bucket_exists(names.bucket)
            and db.user_exists(names.db_user)
            and image.containers[0].image != "evil:1"
        )

    wait_for(repaired, timeout=60, what="drift repaired")
    password = connection_of(admin_kube, names).db_password.get_secret_value()
    assert db.can_log_in(names.db_user, password, names.database)
    events = client.CoreV1Api(admin_kube.api).list_event_for_all_namespaces(
        field_selector=f"involvedObject.name={name},reason=DriftRepaired"
    )
    assert events.items, "a repair is announced with an event"
    assert "annostack_operator_drift_repairs_total" in operator.metrics()
    db.close()


def test_pause_freezes_every_backend(
    tenants: Tenants, admin_kube: Kube, stack_settings: Settings
) -> None:
    name = tenants.create({"displayName": "Paused"})
    tenants.wait_ready(name)
    names = TenantNames(tenant=name)
    store = ObjectStoreAdmin(stack_settings.s3)
    tenants.patch_spec(name, {"paused": True})
    wait_for(lambda: (tenants.get(name) or {}).get("status", {}).get("phase") == "Paused")
    store.delete_bucket(names.bucket)
    tenants.patch_spec(name, {"workers": {"maxReplicas": 7}})
    # Several drift intervals pass without the operator touching anything.
    with pytest.raises(AssertionError):
        wait_for(lambda: store.bucket_exists(names.bucket), timeout=10, what="repair")
    quota = client.CoreV1Api(admin_kube.api).read_namespaced_resource_quota(
        "tenant-quota", names.namespace
    )
    assert quota.spec.hard["pods"] == "5", "no change while paused"

    tenants.patch_spec(name, {"paused": False})
    tenants.wait_ready(name)
    assert store.bucket_exists(names.bucket)


@pytest.mark.parametrize("policy", ["Retain", "Delete"])
def test_deletion_honours_the_policy(
    policy: str, tenants: Tenants, admin_kube: Kube, stack_settings: Settings
) -> None:
    name = tenants.create({"displayName": "Bye", "deletionPolicy": policy})
    tenants.wait_ready(name)
    names = TenantNames(tenant=name)
    store, db = ObjectStoreAdmin(stack_settings.s3), DatabaseAdmin(stack_settings.db)
    store.client.put_object(names.bucket, "keep.json", io.BytesIO(b"{}"), 2)
    tenants.delete(name)
    tenants.wait_gone(name)
    core = client.CoreV1Api(admin_kube.api)
    wait_for(lambda: not _namespace_exists(core, names.namespace), timeout=90, what="ns gone")
    with pulsar_admin(stack_settings) as http:
        pulsar_kept = http.get(f"/tenants/{names.pulsar_tenant}").status_code == 200
    identities = IamIdentities(stack_settings.s3)
    redis_acl = RedisAcl(stack_settings.redis.url.get_secret_value())
    kept = {
        "bucket": store.bucket_exists(names.bucket),
        "user": db.user_exists(names.db_user),
        "api user": db.user_exists(names.api_db_user),
        "schema": _schema_exists(db, names.database),
        "pulsar": pulsar_kept,
        "s3 identity": identities.user_exists(names.identity),
        "redis user": redis_acl.user(names.identity) is not None,
    }
    if db.supports_resource_groups():  # TiDB: the RU limit's group goes with the tenant
        kept["resource group"] = db.resource_group_units(names.db_user) is not None
    expected = policy == "Retain"
    assert kept == dict.fromkeys(kept, expected)
    if expected:  # clean up what Retain left behind
        store.delete_bucket(names.bucket)
        identities.delete_user(names.identity)
        redis_acl.delete_user(names.identity)
        db.drop_user(names.api_db_user)
        db.drop_user(names.db_user)
        db.drop_resource_group(names.db_user)
        db.drop_schema(names.database)
        with pulsar_admin(stack_settings) as http:
            http.delete(f"/tenants/{names.pulsar_tenant}", params={"force": "true"})
    db.close()
    identities.close()
    redis_acl.close()


def _namespace_exists(core: client.CoreV1Api, namespace: str) -> bool:
    try:
        core.read_namespace(namespace)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def _schema_exists(db: DatabaseAdmin, schema: str) -> bool:
    with db.engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :s"),
            {"s": schema},
        ).first()
    return row is not None


@pytest.mark.parametrize(
    ("name", "spec", "message"),
    [
        ("a" * 25, {"displayName": "x"}, "at most 24 characters"),
        ("Upper", {"displayName": "x"}, "lowercase"),
        ("ok", {"displayName": "x", "workers": {"minReplicas": 5, "maxReplicas": 2}}, "must not"),
        ("ok", {"displayName": "x", "plan": {"storage": "lots"}}, "spec.plan.storage"),
        ("ok", {"displayName": "x", "deletionPolicy": "Shred"}, "Unsupported value"),
        ("ok", {}, "displayName: Required value"),
    ],
)
def test_invalid_specs_are_rejected_with_a_reason(
    admin_kube: Kube, installed_crds: None, name: str, spec: dict[str, Any], message: str
) -> None:
    body = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "Tenant",
        "metadata": {"name": name},
        "spec": spec,
    }
    with pytest.raises(ApiException) as rejected:
        client.CustomObjectsApi(admin_kube.api).create_cluster_custom_object(
            API_GROUP, API_VERSION, "tenants", body, dry_run="All"
        )
    assert rejected.value.status == 422
    assert message in json.loads(rejected.value.body)["message"]


def test_the_documented_example_becomes_ready(tenants: Tenants) -> None:
    (example,) = load_documents(ROOT / "examples" / "tenant.yaml")
    # Under a fresh name: `annostack dev platform` applies the example itself as "demo".
    name = tenants.create(example["spec"])
    tenant = tenants.wait_ready(name)
    assert tenant["spec"]["plan"]["storage"] == example["spec"]["plan"]["storage"]
