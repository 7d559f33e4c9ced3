"""Redis pub/sub, the relay the push layer builds on."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis

from annostack.adapters.coordination import Coordination
from annostack.devstack import processes
from annostack.devstack.stack import Stack
from annostack.settings import Settings
from tests.support import wait_for

pytestmark = pytest.mark.integration


def test_pubsub_delivers_a_message(redis_admin_url: str) -> None:
    client = redis.Redis.from_url(redis_admin_url)
    channel = f"smoke:{uuid.uuid4().hex}"
    with client.pubsub() as pubsub:
        pubsub.subscribe(channel)
        wait_for(lambda: client.pubsub_numsub(channel)[0][1] == 1, what="subscription")
        assert client.publish(channel, b"hello") == 1
        received: list[bytes] = []

        def got_message() -> bool:
            message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is not None:
                received.append(message["data"])
            return bool(received)

        wait_for(got_message, timeout=5, what="message delivery")
    assert received == [b"hello"]
    client.close()


def test_the_default_user_is_off(stack_settings: Settings) -> None:
    url = stack_settings.redis.url.get_secret_value()
    anonymous = redis.Redis.from_url("redis://" + url.split("@", 1)[1])
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    anonymous.close()
    password = url.split("@", 1)[0].rsplit(":", 1)[1]
    as_default = redis.Redis.from_url(f"redis://default:{password}@" + url.split("@", 1)[1])
    with pytest.raises(redis.AuthenticationError):
        as_default.ping()
    as_default.close()


def test_the_platform_users_cannot_run_dangerous_commands(
    local_stack: Stack, stack_settings: Settings
) -> None:
    """The operator's and the API's users reach annostack's keys and channels, not FLUSHALL,
    CONFIG or KEYS, and not keys outside `annostack:`."""
    operator = stack_settings.redis.url.get_secret_value()
    for url in (operator, local_stack.api_env()["ANNOSTACK_REDIS__URL"]):
        client = redis.Redis.from_url(url)
        assert client.set("annostack:rate:smoke:1", b"1", ex=5)
        for command in (("FLUSHALL",), ("CONFIG", "GET", "*"), ("KEYS", "*"), ("GET", "other:key")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.execute_command(*command)
        client.close()


def test_the_api_s_coordination_survives_a_redis_restart(
    stack_settings: Settings, local_stack: Stack
) -> None:
    """Its pooled connections die with the server; the next rate check must still answer
    (it answered 503 "Redis: ConnectionError" once per dead connection before)."""
    coordination = Coordination(stack_settings.redis.url.get_secret_value())
    tenant = f"rs{uuid.uuid4().hex[:8]}"

    async def checks() -> list[float | None]:
        before = await coordination.within_rate(tenant, 1000)
        processes.stop(local_stack.settings.state_dir / "redis.pid")
        local_stack.up()
        after = [await coordination.within_rate(tenant, 1000) for _ in range(3)]
        await coordination.close()
        return [before, *after]

    assert asyncio.run(checks()) == [None, None, None, None]
