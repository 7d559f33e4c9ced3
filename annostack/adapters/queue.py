"""Publishing processing messages to a tenant's Pulsar topics (pulsar-client).

Messages are `ProcessingMessage`s, keyed by item id (a redelivery or a re-publish of the same
item lands on the same key), and `ExportMessage`s, one per export job, keyed by the job.
"""

from __future__ import annotations

import threading

import orjson
import pulsar

from annostack.adapters.pulsar_tokens import client_authentication
from annostack.domain.errors import Backend, BackendUnavailable
from annostack.domain.items import ExportMessage, ProcessingMessage

SEND_TIMEOUT_MS = 10_000


class Publisher:
    """One client per process; one producer per topic, created on first use."""

    def __init__(self, service_url: str, token: str = "") -> None:
        self.client = pulsar.Client(
            service_url,
            operation_timeout_seconds=10,
            authentication=client_authentication(token),
        )
        self._producers: dict[str, pulsar.Producer] = {}
        self._lock = threading.Lock()

    def _producer(self, topic: str) -> pulsar.Producer:
        with self._lock:
            producer = self._producers.get(topic)
            if producer is None:
                producer = self.client.create_producer(
                    topic, send_timeout_millis=SEND_TIMEOUT_MS, block_if_queue_full=True
                )
                self._producers[topic] = producer
            return producer

    def publish(self, topic: str, message: ProcessingMessage) -> None:
        """Send and wait for the broker's acknowledgement (the message is then durable)."""
        try:
            self._producer(topic).send(_body(message), partition_key=str(message.item_id))
        except pulsar.PulsarException as error:
            raise BackendUnavailable(Backend.PULSAR, f"publish to {topic}: {error}") from error

    def publish_export(self, topic: str, message: ExportMessage) -> None:
        """Send one export and wait for the broker's acknowledgement."""
        try:
            self._producer(topic).send(orjson.dumps(message.wire()), partition_key=message.job)
        except pulsar.PulsarException as error:
            raise BackendUnavailable(Backend.PULSAR, f"publish to {topic}: {error}") from error

    def publish_many(self, topic: str, messages: list[ProcessingMessage]) -> None:
        """Send a batch asynchronously, then wait until the broker has acknowledged every one.

        One round trip per batch instead of per message; the producer stays unbatched, so the
        subscription backlog the autoscaler reads still counts messages, not batches.
        """
        producer = self._producer(topic)
        failures: list[str] = []

        def sent(result: pulsar.Result, _: object) -> None:
            if result != pulsar.Result.Ok:
                failures.append(str(result))

        try:
            for message in messages:
                producer.send_async(_body(message), sent, partition_key=str(message.item_id))
            producer.flush()
        except pulsar.PulsarException as error:
            raise BackendUnavailable(Backend.PULSAR, f"publish to {topic}: {error}") from error
        if failures:
            detail = f"{len(failures)} of {len(messages)} not acknowledged ({failures[0]})"
            raise BackendUnavailable(Backend.PULSAR, f"publish to {topic}: {detail}")

    def close(self) -> None:
        self.client.close()


def _body(message: ProcessingMessage) -> bytes:
    return orjson.dumps(message.wire())
