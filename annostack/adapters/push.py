"""The push relay over Redis pub/sub: publish from anywhere, receive once per API replica.

Every publisher (an API replica, a worker, the operator) PUBLISHes an envelope (see
`domain.push`) to one channel; every API replica holds ONE subscription to that channel and
fans out in-process to its own WebSocket clients. Redis pub/sub keeps nothing: a replica that is
not subscribed at that moment misses the message — push is at-most-once by design, and clients
resync over REST after reconnecting.

Publishing is best effort on purpose: a notification must never fail the action it reports
(a lock taken, an item processed). A failed publish is logged and counted, and `publish`
returns False; it never raises for a backend error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import redis
import redis.asyncio as aioredis

from annostack.domain.push import Destination, Event, envelope, open_envelope

CHANNEL = "annostack:push"
RECONNECT_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)  # back-off after losing the subscription
log = logging.getLogger("annostack.push")

Deliver = Callable[[str, bytes], None]


def _payload(destination: Destination, event: Event) -> bytes:
    stamped = event if event.at else event.model_copy(update={"at": time.time()})
    return envelope(destination, stamped.model_dump_json(by_alias=True).encode())


class PushPublisher:
    """Blocking publisher, for workers and the operator (their Redis client is synchronous)."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    @classmethod
    def from_url(cls, url: str) -> PushPublisher:
        return cls(redis.Redis.from_url(url))

    def publish(self, destination: Destination, event: Event) -> bool:
        try:
            self.redis.publish(CHANNEL, _payload(destination, event))
        except redis.RedisError as error:
            log.warning("push to %s lost: %s", destination, type(error).__name__)
            return False
        return True


class AsyncPushPublisher:
    """The same for asyncio code (the API)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client

    async def publish(self, destination: Destination, event: Event) -> bool:
        return await self.publish_raw(_payload(destination, event))

    async def publish_raw(self, payload: bytes) -> bool:
        """Publish an already built envelope (benchmarks build theirs once)."""
        try:
            await self.redis.publish(CHANNEL, payload)
        except aioredis.RedisError as error:
            log.warning("push lost: %s", type(error).__name__)
            return False
        return True


class PushRelay:
    """One replica's subscription: calls `deliver(destination, body)` for every message.

    `run()` resubscribes after a lost connection (messages sent meanwhile are lost, as
    documented); `subscribed` is set while the subscription is live, so a replica can report
    readiness and tests can wait for it instead of sleeping.
    """

    def __init__(self, url: str, deliver: Deliver) -> None:
        self.url = url
        self.deliver = deliver
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                await self._listen()
            except (aioredis.RedisError, OSError) as error:
                self.subscribed.clear()
                delay = RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)]
                log.warning("push relay lost Redis (%s); again in %.1fs", error, delay)
                failures += 1
                await asyncio.sleep(delay)

    async def _listen(self) -> None:
        client = aioredis.Redis.from_url(self.url)
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(CHANNEL)
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        self.deliver(*open_envelope(message["data"]))
                    elif message["type"] == "subscribe":
                        # Redis confirmed: from now on every PUBLISH reaches this replica.
                        self.subscribed.set()
        finally:
            self.subscribed.clear()
            await client.aclose()
