"""The operator survives being killed and backends going away, and repairs without help."""

from __future__ import annotations

import random  # test choreography, not cryptography
import time

import pytest
import sqlalchemy as sa
from kubernetes import client

from annostack.adapters.database import DatabaseAdmin
from annostack.adapters.kube import Kube
from annostack.adapters.object_store import ObjectStoreAdmin
from annostack.devstack import processes
from annostack.devstack.host_operator import OperatorProcess
from annostack.devstack.stack import Stack
from annostack.domain.tenants import TenantNames
from annostack.settings import Settings
from tests.integration.operator.conftest import Tenants
from tests.support import wait_for

pytestmark = pytest.mark.integration

TENANT_COUNT = 20
KILLS = 3


def test_sigkilled_operator_converges_without_duplicates_or_orphans(
    tenants: Tenants, operator: OperatorProcess, admin_kube: Kube, stack_settings: Settings
) -> None:
    names = [f"chaos{i:02d}-{random.randrange(16**4):04x}" for i in range(TENANT_COUNT)]
    for index, name in enumerate(names):
        tenants.create({"displayName": f"Chaos {index}"}, name=name)
        if index % (TENANT_COUNT // KILLS) == 3:
            # Mid-reconcile of some tenant, somewhere between two backends.
            time.sleep(random.uniform(0.1, 1.5))
            operator.kill()
            operator.start()
    for name in names:
        tenants.wait_ready(name, timeout=180)

    db = DatabaseAdmin(stack_settings.db)
    with db.engine.connect() as conn:
        schemas = set(conn.execute(sa.text("SHOW DATABASES")).scalars())
        query = sa.text("SELECT User FROM mysql.user WHERE User LIKE 'u_chaos%'")
        users = list(conn.execute(query).scalars())
    db.close()
    expected = [TenantNames(tenant=name) for name in names]
    assert {n.database for n in expected} <= schemas
    assert sorted(users) == sorted(n.db_user for n in expected), "one user per tenant, no dupes"
    apps = client.AppsV1Api(admin_kube.api)
    for n in expected:
        deployments = apps.list_namespaced_deployment(n.namespace).items
        assert [d.metadata.name for d in deployments] == ["workers"]
    store = ObjectStoreAdmin(stack_settings.s3)
    assert all(store.bucket_exists(n.bucket) for n in expected)


def test_backend_outage_is_named_and_recovers_by_itself(
    tenants: Tenants, local_stack: Stack, operator: OperatorProcess
) -> None:
    pulsar = next(c for c in local_stack.components if c.name == "pulsar")
    processes.stop(local_stack.settings.state_dir / f"{pulsar.name}.pid")
    try:
        name = tenants.create({"displayName": "Outage"})

        def messaging_down() -> bool:
            condition = tenants.condition(name, "MessagingReady")
            return condition is not None and condition["status"] == "False"

        wait_for(messaging_down, timeout=90, what="MessagingReady=False")
        condition = tenants.condition(name, "MessagingReady")
        assert condition is not None
        assert condition["reason"] == "BackendUnavailable"
        assert "Pulsar" in condition["message"]
        ready = tenants.condition(name, "Ready")
        assert ready is not None and ready["status"] == "False"
        assert tenants.condition(name, "Reconciling") is not None
        assert tenants.condition(name, "DatabaseReady")["status"] == "True"  # type: ignore[index]
    finally:
        local_stack.up()
    tenants.wait_ready(name, timeout=120)
    assert tenants.condition(name, "Reconciling") is None


def test_deletion_with_a_backend_gone_stalls_with_advice_then_finishes(
    tenants: Tenants, local_stack: Stack, operator: OperatorProcess, admin_kube: Kube
) -> None:
    name = tenants.create({"displayName": "Stuck", "deletionPolicy": "Delete"})
    tenants.wait_ready(name)
    pulsar = next(c for c in local_stack.components if c.name == "pulsar")
    processes.stop(local_stack.settings.state_dir / f"{pulsar.name}.pid")
    try:
        tenants.delete(name)

        def stalled() -> bool:
            condition = tenants.condition(name, "Stalled")
            return condition is not None and condition["reason"] == "DeletionBlocked"

        wait_for(stalled, timeout=90, what="Stalled=DeletionBlocked")
        advice = tenants.condition(name, "Stalled")
        assert advice is not None
        assert "Pulsar" in advice["message"] and "abandon-cleanup" in advice["message"]
        events = client.CoreV1Api(admin_kube.api).list_event_for_all_namespaces(
            field_selector=f"involvedObject.name={name},reason=DeletionBlocked"
        )
        assert events.items, "the advice is also an event"
    finally:
        local_stack.up()
    tenants.wait_gone(name, timeout=120)
