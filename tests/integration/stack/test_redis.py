"""Redis pub/sub, the relay the push layer builds on."""

from __future__ import annotations

import uuid

import pytest
import redis

from annostack.settings import Settings
from tests.support import wait_for

pytestmark = pytest.mark.integration


def test_pubsub_delivers_a_message(stack_settings: Settings) -> None:
    client = redis.Redis.from_url(stack_settings.redis.url.get_secret_value())
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


def test_password_is_required(stack_settings: Settings) -> None:
    url = stack_settings.redis.url.get_secret_value()
    anonymous = redis.Redis.from_url("redis://" + url.split("@", 1)[1])
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    anonymous.close()
