"""Pulsar standalone: the binary protocol through `pulsar-client`, admin through REST."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pulsar
import pytest

from annostack.settings import Settings
from tests.integration.conftest import pulsar_client

pytestmark = pytest.mark.integration


@pytest.fixture
def admin(stack_settings: Settings) -> Iterator[httpx.Client]:
    token = stack_settings.pulsar.token.get_secret_value()
    headers = {"Authorization": f"Bearer {token}"}
    url = stack_settings.pulsar.admin_url
    with httpx.Client(base_url=url, timeout=30, headers=headers) as http:
        yield http


@pytest.fixture
def namespace(stack_settings: Settings, admin: httpx.Client) -> Iterator[str]:
    tenant = f"smoke-{uuid.uuid4().hex[:8]}"
    created = admin.put(
        f"/admin/v2/tenants/{tenant}",
        json={"allowedClusters": [stack_settings.pulsar.cluster], "adminRoles": []},
    )
    assert created.status_code == 204, created.text
    assert admin.put(f"/admin/v2/namespaces/{tenant}/jobs").status_code == 204
    assert f"{tenant}/jobs" in admin.get(f"/admin/v2/namespaces/{tenant}").json()
    yield f"{tenant}/jobs"
    admin.delete(f"/admin/v2/namespaces/{tenant}/jobs", params={"force": "true"})
    assert admin.delete(f"/admin/v2/tenants/{tenant}").status_code == 204


def test_shared_subscription_splits_messages_between_consumers(
    stack_settings: Settings, namespace: str
) -> None:
    topic = f"persistent://{namespace}/thumbnails"
    client = pulsar_client(stack_settings, operation_timeout_seconds=30)
    try:
        consumers = [
            client.subscribe(topic, "workers", consumer_type=pulsar.ConsumerType.Shared)
            for _ in range(2)
        ]
        producer = client.create_producer(topic, batching_enabled=False)
        sent = {f"item-{i}".encode() for i in range(20)}
        for payload in sorted(sent):
            producer.send(payload)

        received: dict[int, set[bytes]] = {0: set(), 1: set()}
        deadline = time.monotonic() + 30
        while sum(len(got) for got in received.values()) < len(sent):
            assert time.monotonic() < deadline, f"only {received} arrived"
            for index, consumer in enumerate(consumers):
                try:
                    message = consumer.receive(timeout_millis=200)
                except pulsar.Timeout:
                    continue
                received[index].add(message.data())
                consumer.acknowledge(message)
        assert received[0] | received[1] == sent
        assert received[0] and received[1], "a shared subscription spreads work over consumers"
        assert not received[0] & received[1], "each message goes to exactly one consumer"
    finally:
        client.close()
