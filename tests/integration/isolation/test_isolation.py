"""With nothing but tenant A's Secret, nothing of tenant B's is reachable; A's own is.

The attacks themselves live in `probe.py`, which the in-pod variant runs unchanged.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator

import pytest
import redis

from annostack.adapters.kube import Kube
from annostack.adapters.object_store import ObjectStoreAdmin
from annostack.adapters.pulsar_tokens import role_of
from annostack.domain import keyspace
from annostack.domain.tenants import DeletionPolicy, TenantNames, TenantSpec
from annostack.services.tenants import TenantProvisioner
from annostack.settings import Settings
from tests.integration.conftest import provision
from tests.integration.isolation.probe import attack, connection_of, own_access

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def victim(provisioner: TenantProvisioner, stack_settings: Settings) -> Iterator[TenantNames]:
    """Tenant B, with something worth stealing in its bucket and its Redis keys."""
    names = TenantNames(tenant=f"vic{uuid.uuid4().hex[:8]}")
    provision(provisioner, names.tenant, TenantSpec(display_name="victim"))
    body = b'{"objects": ["secret"]}'
    store = ObjectStoreAdmin(stack_settings.s3)
    store.client.put_object(names.bucket, "annotations/1/probe.json", io.BytesIO(body), len(body))
    operator = redis.Redis.from_url(stack_settings.redis.url.get_secret_value())
    operator.sadd(keyspace.key(keyspace.Family.JOB, names.tenant, "probe", "expected"), "1")
    operator.close()
    yield names
    provisioner.teardown(names.tenant, DeletionPolicy.DELETE)


@pytest.fixture(scope="module")
def attacker(provisioner: TenantProvisioner, admin_kube: Kube) -> Iterator[dict[str, str]]:
    """Tenant A's Secret: every value its worker pods get, and nothing else."""
    names = TenantNames(tenant=f"att{uuid.uuid4().hex[:8]}")
    provision(provisioner, names.tenant, TenantSpec(display_name="attacker"))
    secret = admin_kube.secret_data(names.namespace, names.secret)
    assert secret
    yield secret
    provisioner.teardown(names.tenant, DeletionPolicy.DELETE)


def test_the_secret_holds_the_tenants_own_identities_only(
    attacker: dict[str, str], stack_settings: Settings
) -> None:
    connection = connection_of(attacker)
    names = TenantNames(tenant=connection.tenant)
    assert (
        connection.s3_access_key.get_secret_value()
        != stack_settings.s3.access_key.get_secret_value()
    )
    platform_secrets = {
        stack_settings.s3.secret_key.get_secret_value(),
        stack_settings.redis.url.get_secret_value(),
        stack_settings.pulsar.token.get_secret_value(),
        stack_settings.pulsar.token_signing_key.get_secret_value(),
        stack_settings.db.admin_password.get_secret_value(),
    }
    assert not platform_secrets & set(attacker.values())
    assert connection.redis_url.get_secret_value().startswith(f"redis://{names.identity}:")
    assert role_of(connection.pulsar_token.get_secret_value()) == names.pulsar_role(1)


def test_a_tenants_secret_reaches_nothing_of_another_tenant(
    attacker: dict[str, str], victim: TenantNames, stack_settings: Settings
) -> None:
    attempts = attack(attacker, victim.tenant, stack_settings.pulsar.admin_url)
    assert {a.backend for a in attempts} == {"s3", "pulsar", "redis", "database"}
    allowed = [f"{a.backend}: {a.action} -> {a.detail}" for a in attempts if a.allowed]
    assert not allowed, "\n".join(allowed)


def test_the_same_secret_reaches_everything_of_its_own(
    attacker: dict[str, str], stack_settings: Settings
) -> None:
    attempts = own_access(attacker, stack_settings.pulsar.admin_url)
    refused = [f"{a.backend}: {a.action} -> {a.detail}" for a in attempts if not a.allowed]
    assert not refused, "\n".join(refused)


def test_the_victims_data_is_untouched(victim: TenantNames, stack_settings: Settings) -> None:
    store = ObjectStoreAdmin(stack_settings.s3)
    stored = store.client.get_object(victim.bucket, "annotations/1/probe.json").read()
    assert stored == b'{"objects": ["secret"]}'
    operator = redis.Redis.from_url(stack_settings.redis.url.get_secret_value())
    assert operator.get(keyspace.key(keyspace.Family.LOCK, victim.tenant, 1)) is None
    operator.close()
