"""The push relay over Redis pub/sub: publish from anywhere, receive on the replicas that care.

Every publisher (an API replica, a worker, the operator) PUBLISHes an event's JSON to the
channel of its destination, ``annostack:push:<destination>``. Each API replica holds ONE
Redis subscription connection, subscribed to the channels of exactly the destinations its own
clients subscribe to (plus a control channel that keeps it open), and fans out in-process.
So a replica only receives what it will deliver: with R replicas, relay work per replica is
its own deliveries, not everything published.

A client's SUBSCRIBE is answered (RECEIPT) only once Redis has confirmed the replica's channel
subscription (`watch`), so nothing published after the receipt is missed.

Redis pub/sub keeps nothing: a replica that is not subscribed at that moment (restarting,
reconnecting) misses the message — push is at-most-once by design, and clients resync over
REST after reconnecting. Publishing is best effort on purpose: a notification must never fail
the action it reports. A failed publish is logged and `publish` returns False; it never raises
for a backend error.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

import redis
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub

from annostack.domain import keyspace
from annostack.domain.push import Destination, Event

CHANNEL_PREFIX = keyspace.PUSH_CHANNEL_PREFIX
CONTROL_CHANNEL = CHANNEL_PREFIX + "~relay"  # never published to; keeps the subscription open
RECONNECT_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)  # back-off after losing the subscription
WATCH_TIMEOUT_SECONDS = 5.0  # then the client is answered anyway (at-most-once)
log = logging.getLogger("annostack.push")

Deliver = Callable[[str, bytes], None]


def channel_for(destination: str) -> str:
    return keyspace.push_channel(destination)


def _body(event: Event) -> bytes:
    stamped = event if event.at else event.model_copy(update={"at": time.time()})
    return stamped.model_dump_json(by_alias=True).encode()


class PushPublisher:
    """Blocking publisher, for workers and the operator (their Redis client is synchronous)."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    @classmethod
    def from_url(cls, url: str) -> PushPublisher:
        return cls(redis.Redis.from_url(url))

    def publish(self, destination: Destination, event: Event) -> bool:
        try:
            self.redis.publish(channel_for(str(destination)), _body(event))
        except redis.RedisError as error:
            log.warning("push to %s lost: %s", destination, type(error).__name__)
            return False
        return True


class AsyncPushPublisher:
    """The same for asyncio code (the API)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client

    async def publish(self, destination: Destination, event: Event) -> bool:
        try:
            await self.redis.publish(channel_for(str(destination)), _body(event))
        except aioredis.RedisError as error:
            log.warning("push to %s lost: %s", destination, type(error).__name__)
            return False
        return True


class PushRelay:
    """One replica's subscription: calls `deliver(destination, body)` for every message.

    `run()` keeps it connected and resubscribes every watched destination after a lost
    connection (messages sent meanwhile are lost, as documented); `subscribed` is set while
    the connection is live, so a replica can wait for it at start instead of sleeping.
    """

    def __init__(self, url: str, deliver: Deliver) -> None:
        self.url = url
        self.deliver = deliver
        # Named, so that an operator (or a test) can tell the replicas' relays in CLIENT LIST.
        self.client_name = f"annostack-push-relay-{uuid.uuid4().hex[:8]}"
        self.subscribed = asyncio.Event()
        self.watched: set[str] = set()
        self.confirmed: set[str] = set()
        self.pending: dict[str, asyncio.Future[None]] = {}
        self.pubsub: PubSub | None = None

    async def watch(self, destination: str) -> None:
        """Receive `destination` on this replica; return once Redis confirms it."""
        self.watched.add(destination)
        if destination in self.confirmed:
            return
        waiting = self.pending.get(destination)
        if waiting is None:
            waiting = self.pending[destination] = asyncio.get_running_loop().create_future()
            await self._send("subscribe", destination)
        try:
            await asyncio.wait_for(asyncio.shield(waiting), WATCH_TIMEOUT_SECONDS)
        except TimeoutError:
            log.warning("push relay: Redis did not confirm %s in time", destination)

    async def unwatch(self, destination: str) -> None:
        """No local subscriber is left for `destination`."""
        self.watched.discard(destination)
        self.confirmed.discard(destination)
        await self._send("unsubscribe", destination)

    async def _send(self, command: str, destination: str) -> None:
        if self.pubsub is None:
            return  # not connected: `run` subscribes every watched destination on connect
        try:
            await getattr(self.pubsub, command)(channel_for(destination))
        except (aioredis.RedisError, OSError) as error:
            log.warning("push relay: %s %s failed: %s", command, destination, error)

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                await self._listen()
            except (aioredis.RedisError, OSError) as error:
                delay = RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)]
                log.warning("push relay lost Redis (%s); again in %.1fs", error, delay)
                failures += 1
                await asyncio.sleep(delay)

    async def _listen(self) -> None:
        client = aioredis.Redis.from_url(self.url, client_name=self.client_name)
        try:
            async with client.pubsub() as pubsub:
                channels = [CONTROL_CHANNEL, *map(channel_for, self.watched)]
                await pubsub.subscribe(*channels)
                self.pubsub = pubsub
                async for message in pubsub.listen():
                    self._handle(message)
        finally:
            self.pubsub = None
            self.subscribed.clear()
            self.confirmed.clear()
            await client.aclose()

    def _handle(self, message: dict[str, object]) -> None:
        kind, channel = message["type"], message["channel"]
        assert isinstance(channel, bytes)
        destination = channel.decode().removeprefix(CHANNEL_PREFIX)
        if kind == "message":
            data = message["data"]
            assert isinstance(data, bytes)
            self.deliver(destination, data)
        elif kind == "subscribe":
            self._confirmed(channel.decode(), destination)

    def _confirmed(self, channel: str, destination: str) -> None:
        if channel == CONTROL_CHANNEL:
            self.subscribed.set()
            return
        if destination in self.watched:
            self.confirmed.add(destination)
        waiting = self.pending.pop(destination, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(None)
