"""In-process fan-out: the relay's messages to this replica's subscriptions.

Each connection has an `Outbox`: a bounded queue drained by that connection's own writer task,
so a slow client only ever fills its own queue. Drop policy, when it is full: the NEW message
is dropped for that connection (older ones still go out in order) and counted. Every message
meant for a connection takes the next `message-id` whether it is delivered or dropped, so a
client sees the gap and knows to resync over REST. Control frames (RECEIPT, ERROR) are never
dropped: they are few, and the client waits for them.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol

from annostack.apps.push import metrics
from annostack.domain.stomp import MessageTemplate

CONTENT_TYPE = "application/json"


class Outbox:
    """Frames waiting for one connection's writer; `None` in the queue means: close now."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.last_message_id = 0
        self.closed = False

    def next_message_id(self) -> int:
        self.last_message_id += 1
        return self.last_message_id

    def offer(self, frame: bytes) -> bool:
        """Queue a MESSAGE unless the client is already `capacity` frames behind."""
        if self.closed:
            return False
        if self.queue.qsize() >= self.capacity:
            metrics.QUEUE_FULL.inc()
            return False
        self.queue.put_nowait(frame.decode())
        return True

    def control(self, frame: bytes) -> None:
        if not self.closed:
            self.queue.put_nowait(frame.decode())

    def close(self, last_frame: bytes | None = None) -> None:
        """Drop what is still queued, send `last_frame` (an ERROR, a RECEIPT), then close."""
        self.closed = True
        while not self.queue.empty():
            self.queue.get_nowait()
        if last_frame is not None:
            self.queue.put_nowait(last_frame.decode())
        self.queue.put_nowait(None)


@dataclass(eq=False)  # identity: two subscriptions are never "equal"
class Subscription:
    outbox: Outbox
    destination: str
    template: MessageTemplate

    def deliver(self, body: bytes) -> None:
        frame = self.template.render(self.outbox.next_message_id(), body)
        if self.outbox.offer(frame):
            metrics.MESSAGES_SENT.inc()


class Relay(Protocol):
    async def watch(self, destination: str) -> None: ...
    async def unwatch(self, destination: str) -> None: ...


@dataclass
class Hub:
    """Local subscriptions by destination; tells the relay which destinations to receive."""

    relay: Relay | None = None  # None in unit tests: nothing to receive from
    routes: dict[str, set[Subscription]] = field(default_factory=lambda: defaultdict(set))
    unwatching: set[asyncio.Task[None]] = field(default_factory=set)

    async def subscribe(
        self, outbox: Outbox, destination: str, subscription_id: str
    ) -> Subscription:
        """Subscribe; return once this replica receives `destination` (so a RECEIPT is true)."""
        template = MessageTemplate(destination, subscription_id, CONTENT_TYPE)
        subscription = Subscription(outbox, destination, template)
        self.routes[destination].add(subscription)
        metrics.SUBSCRIPTIONS.inc()
        if self.relay is not None:
            await self.relay.watch(destination)  # at once if another client already did
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self.routes.get(subscription.destination)
        if subscribers is None or subscription not in subscribers:
            return
        subscribers.discard(subscription)
        metrics.SUBSCRIPTIONS.dec()
        if not subscribers:
            del self.routes[subscription.destination]
            self._unwatch_later(subscription.destination)

    def _unwatch_later(self, destination: str) -> None:
        if self.relay is None:
            return
        # A task, so that closing a connection never waits on Redis; kept referenced until done.
        task = asyncio.get_running_loop().create_task(self.relay.unwatch(destination))
        self.unwatching.add(task)
        task.add_done_callback(self.unwatching.discard)

    def deliver(self, destination: str, body: bytes) -> None:
        """Called by the relay for each message: hand it to every local subscriber."""
        metrics.RELAYED.inc()
        for subscription in self.routes.get(destination, ()):
            subscription.deliver(body)
