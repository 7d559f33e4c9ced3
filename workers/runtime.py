"""The worker process: consume a tenant's processing topics, write outputs, then acknowledge.

* Shared subscription `workers` on the tenant's topics: replicas split the work.
* A message is acknowledged only after every output is durably stored.
* Bad data (a corrupt cloud, not an image, a malformed message) is permanent: the message goes
  to the tenant's dead-letter topic with the reason in its properties, then is acknowledged.
* A backend that is down (S3, the tenant database, Redis) is never the message's fault: the
  message is negatively acknowledged and redelivered after a delay, as often as it takes, and
  the worker waits `backend_pause_ms` before the next message instead of spinning through
  the queue. Every write is idempotent (outputs with If-None-Match, statuses, job sets), so a
  message retried after some of its bookkeeping succeeded ends the same as one that went
  through at once. A backend that answers with a refusal is not down: Redis' NOPERM (a key
  outside the tenant's ACL user) or WRONGTYPE is handled as an unexpected error, below.
  A message naming another tenant is invalid input, refused before any of its keys is read.
* Anything else unexpected is retried the same way, but after `max_attempts` it goes to the
  dead-letter topic, with the last error.
* The whole of one message — processing, recording the result, dead-lettering — is guarded:
  whatever fails, the message is negatively acknowledged and the loop goes on.
* Progress and failures are counted in Redis (`annostack:processing:<tenant>`), failures kept
  in a capped list; Prometheus metrics and /healthz, /readyz on one small HTTP server.
* A message from a ProcessingJob also counts towards that job (by item id, so a redelivery
  is not counted twice); the job's messages still queued when it is cancelled are skipped.
* Each processed or dead-lettered item, and archive import progress, is pushed to the
  tenant's global push destination (best effort, see adapters.push).
* The `exports` topic carries `ExportMessage`s, one per export job (workers.export), handled
  with the same retry and dead-letter rules; a failed export marks its job failed.
* SIGTERM: stop receiving, finish the message in hand, close; well inside a pod's grace period.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import Literal

import httpx
import orjson
import pulsar
import redis
from prometheus_client import Counter, Histogram

from annostack.adapters.database import engine_for
from annostack.adapters.job_progress import ImportState, JobProgress, refused
from annostack.adapters.objects import Presigner
from annostack.adapters.pulsar_tokens import client_authentication
from annostack.adapters.push import PushPublisher
from annostack.domain import keyspace
from annostack.domain.errors import Backend, BackendUnavailable, Invalid
from annostack.domain.images import ImageError
from annostack.domain.items import ExportMessage, ItemStatus, ProcessingMessage
from annostack.domain.keyspace import Family
from annostack.domain.media import MediaError
from annostack.domain.pointclouds import PointCloudError
from annostack.domain.push import Destination, Event, ProcessingProgress
from annostack.domain.tenant_stack import TenantConnection
from annostack.domain.tenants import DEAD_LETTER_TOPIC, WORKER_SUBSCRIPTION, TenantNames
from annostack.domain.texts import TextError
from annostack.services.archives import Limits, UnsafeArchive
from annostack.services.item_states import record_outcome
from annostack.services.jobs import EXPORTS_TOPIC
from annostack.services.processing import (
    InvalidTask,
    Options,
    Outcome,
    Output,
    Task,
    kept_as_is,
    process,
)
from annostack.services.tenancy import TenantContext, object_store_of
from annostack.settings import DatabaseSettings
from annostack.workers.archive_import import ArchiveImporter
from annostack.workers.export import ExportCancelled, Exporter, parse_export
from annostack.workers.settings import WorkerSettings

log = logging.getLogger("annostack.worker")
PERMANENT = (PointCloudError, ImageError, MediaError, TextError, InvalidTask, UnsafeArchive)
FAILURES_KEPT = 1000

PROCESSED = Counter("annostack_worker_messages_total", "Messages handled, by result.", ["result"])
SECONDS = Histogram(
    "annostack_worker_message_seconds",
    "Time to process one message, by topic.",
    ["topic"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)


def backend_down(error: BaseException) -> bool:
    """Not the message's fault: a backend is away (S3 failures are Transient, below). Redis
    refusing a call (NOPERM from the tenant's ACL user, WRONGTYPE) is no outage: retried
    forever it would never pass, so it goes the way of any unexpected error."""
    if isinstance(error, redis.RedisError):
        return not refused(error)
    return isinstance(error, BackendUnavailable)


class Transient(BackendUnavailable):
    """The object store failed; the message will be retried."""

    def __init__(self, message: str) -> None:
        super().__init__(Backend.OBJECT_STORE, message)


@dataclass
class Worker:
    connection: TenantConnection
    settings: WorkerSettings

    def __post_init__(self) -> None:
        self.names = TenantNames(tenant=self.connection.tenant)
        self.signer = Presigner(object_store_of(self.connection))
        self.http = httpx.Client(timeout=60)
        self.redis = redis.Redis.from_url(self.connection.redis_url.get_secret_value())
        self.jobs = JobProgress(self.redis)
        self.push = PushPublisher(self.redis)
        self.stopping = threading.Event()
        self.ready = threading.Event()
        db = DatabaseSettings(
            host=self.connection.db_host, port=self.connection.db_port, tls=self.connection.db_tls
        )
        engine = engine_for(
            db,
            self.connection.db_user,
            self.connection.db_password.get_secret_value(),
            self.connection.database,
        )
        self.tenant = TenantContext(self.names, self.connection, engine, time.monotonic())
        self.producers: dict[str, pulsar.Producer] = {}
        self.options = Options(
            split_above_points=self.settings.split_above_points,
            bev_range_metres=self.settings.bev_range_metres,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> None:
        client = pulsar.Client(
            self.connection.pulsar_service_url,
            operation_timeout_seconds=30,
            authentication=client_authentication(self.connection.pulsar_token.get_secret_value()),
        )
        topics = [self.names.topic(t) for t in self.settings.topics]
        consumer = client.subscribe(
            topics,
            WORKER_SUBSCRIPTION,
            consumer_type=pulsar.ConsumerType.Shared,
            # One message at a time per worker: the rest stay with the broker for the
            # other replicas (and are not stuck in a dying worker's buffer).
            receiver_queue_size=1,
            negative_ack_redelivery_delay_ms=self.settings.retry_delay_ms,
        )
        dead_letters = client.create_producer(self.names.topic(DEAD_LETTER_TOPIC))
        self.client = client
        self.ready.set()
        log.info("consuming %s", ", ".join(topics))
        try:
            while not self.stopping.is_set():
                try:
                    message = consumer.receive(timeout_millis=500)
                except pulsar.Timeout:
                    continue
                self._handle(message, consumer, dead_letters)
        finally:
            self.ready.clear()
            consumer.close()
            dead_letters.close()
            for producer in self.producers.values():
                producer.close()
            client.close()
            self.tenant.engine.dispose()
            self.http.close()

    def stop(self, *_: object) -> None:
        self.stopping.set()

    # -- one message -------------------------------------------------------------------------

    def _handle(
        self, message: pulsar.Message, consumer: pulsar.Consumer, dead_letters: pulsar.Producer
    ) -> None:
        topic = message.topic_name()
        started = time.monotonic()
        try:
            if topic.endswith(f"/{EXPORTS_TOPIC}"):
                self._handle_export(message, consumer, dead_letters)
            else:
                self._handle_one(message, consumer, dead_letters)
        except Exception as error:  # bookkeeping or dead-lettering failed: never end the loop
            if backend_down(error):
                self._retry_later(message, consumer, f"a backend is unavailable: {error}")
                self.stopping.wait(self.settings.backend_pause_ms / 1000)
            else:
                self._retry_later(message, consumer, f"{type(error).__name__}: {error}")
        finally:
            SECONDS.labels(topic.rsplit("/", 1)[-1]).observe(time.monotonic() - started)

    def _retry_later(self, message: pulsar.Message, consumer: pulsar.Consumer, why: str) -> None:
        log.warning("will retry: %s", why)
        consumer.negative_acknowledge(message)
        PROCESSED.labels("retried").inc()

    def _handle_one(
        self, message: pulsar.Message, consumer: pulsar.Consumer, dead_letters: pulsar.Producer
    ) -> None:
        task: Task | None = None
        try:
            task = Task.parse(message.data(), message.topic_name())
            if task.tenant != self.connection.tenant:  # before any key named after it is read
                raise InvalidTask(
                    f"message for tenant {task.tenant} on {self.connection.tenant}'s topic"
                )
            if task.job and self.jobs.is_cancelled(task.tenant, task.job):
                consumer.acknowledge(message)
                PROCESSED.labels("cancelled").inc()
                return
            self._succeeded(task, self._process(task))
            processed = self._count("processed")
        except Exception as error:
            kind, reason = self._verdict(message, error, PERMANENT)
            self._give_up(message, task, dead_letters, kind, reason)
            consumer.acknowledge(message)
            self._announce(task, "failed")
            return
        consumer.acknowledge(message)
        PROCESSED.labels("ok").inc()
        self._announce(task, "ok", processed)

    def _verdict(
        self, message: pulsar.Message, error: Exception, permanent: tuple[type[Exception], ...]
    ) -> tuple[str, str]:
        """How a failed message is dead-lettered (kind, reason); raises the error again when
        the message is to be retried instead."""
        if isinstance(error, permanent):
            return "invalid-input", str(error)
        if backend_down(error):
            raise error  # not the message's fault: retried however long the outage lasts
        attempts = message.redelivery_count() + 1
        if attempts < self.settings.max_attempts:
            raise error
        return "retries-exhausted", f"gave up after {attempts} attempts: {error}"

    def _handle_export(
        self, message: pulsar.Message, consumer: pulsar.Consumer, dead_letters: pulsar.Producer
    ) -> None:
        """One export (workers.export): written whole, or dead-lettered with the job failed."""
        export: ExportMessage | None = None
        exporter = Exporter(self.tenant, self.signer, self.http, self.redis, self._push)
        try:
            export = parse_export(message.data(), self.connection.tenant)
            if not self.jobs.is_cancelled(export.tenant, export.job):
                exporter.run(export)
        except ExportCancelled:
            log.info("export %s cancelled; its upload was aborted", export and export.job_name)
        except Exception as error:
            kind, reason = self._verdict(message, error, (*PERMANENT, Invalid))
            if export is not None:
                exporter.failed(export, reason)
            self._dead_letter(message, dead_letters, kind, reason)
            PROCESSED.labels("dead-lettered").inc()
            consumer.acknowledge(message)
            return
        consumer.acknowledge(message)
        PROCESSED.labels("ok").inc()

    def _succeeded(self, task: Task, outcome: Outcome) -> None:
        """Record the result before acknowledging: a crash in between only repeats a record."""
        if task.topic.endswith("/archives"):
            if task.job:
                self.jobs.import_finished(task.tenant, task.job, ImportState.DONE)
            return
        self._set_status(task, outcome)
        if task.job:
            self.jobs.succeeded(task.tenant, task.job, task.item_id)

    def _give_up(
        self,
        message: pulsar.Message,
        task: Task | None,
        dead_letters: pulsar.Producer,
        kind: str,
        reason: str,
    ) -> None:
        """Record the failure, then dead-letter: the records are idempotent, so if a backend
        fails half-way the retried message records again and is dead-lettered once."""
        if task is not None and task.tenant == self.connection.tenant:
            self._record_failure(task, reason)
        self._dead_letter(message, dead_letters, kind, reason)
        PROCESSED.labels("dead-lettered").inc()

    def _record_failure(self, task: Task, reason: str) -> None:
        if not task.topic.endswith("/archives"):
            self._set_status(task, Outcome(ItemStatus.FAILED, reason[:512]))
        if not task.job:
            return
        if task.topic.endswith("/archives"):
            self.jobs.import_finished(task.tenant, task.job, ImportState.FAILED, reason)
        else:
            self.jobs.failed(task.tenant, task.job, task.item_id)

    def _set_status(self, task: Task, outcome: Outcome) -> None:
        with self.tenant.engine.begin() as conn:
            record_outcome(conn, task.item_id, outcome.status, outcome.reason, outcome.pixel_size)

    def _process(self, task: Task) -> Outcome:
        if task.topic.endswith("/archives"):
            importer = ArchiveImporter(
                self.tenant, self.signer, self.http, self.redis, self._publish, self._push,
                Limits(total_bytes=self.settings.archive_budget_bytes),
            )  # fmt: skip
            importer.run(task)
            return Outcome(ItemStatus.IMPORTED)
        kept = kept_as_is(task)
        if kept is not None:
            return kept  # nothing to process in it, and nothing is read
        processed = process(task, self._get(task.key), self.options)
        for output in processed.outputs:
            self._put_once(output)
        return Outcome(ItemStatus.PROCESSED, pixel_size=processed.pixel_size)

    def _publish(self, topic: str, message: ProcessingMessage) -> None:
        """Queue an imported item for processing (acknowledged by the broker before return)."""
        producer = self.producers.get(topic)
        if producer is None:
            producer = self.client.create_producer(self.names.topic(topic))
            self.producers[topic] = producer
        producer.send(orjson.dumps(message.wire()), partition_key=str(message.item_id))

    def _get(self, key: str) -> bytes:
        try:
            response = self.http.get(self.signer.presign_get(self.connection.bucket, key))
        except httpx.HTTPError as error:
            raise Transient(f"S3 GET {key}: {type(error).__name__}") from error
        if response.status_code == 404:
            raise InvalidTask(f"{key} does not exist")
        if response.status_code != 200:
            raise Transient(f"S3 GET {key}: {response.status_code}")
        return response.content

    def _put_once(self, output: Output) -> None:
        """Store an output unless it is already there (a redelivered message)."""
        url = self.signer.presign_put(self.connection.bucket, output.key)
        headers = {"If-None-Match": "*", "Content-Type": output.content_type}
        try:
            response = self.http.put(url, content=output.body, headers=headers)
        except httpx.HTTPError as error:
            raise Transient(f"S3 PUT {output.key}: {type(error).__name__}") from error
        if response.status_code not in (200, 412):
            raise Transient(f"S3 PUT {output.key}: {response.status_code}")

    def _dead_letter(
        self, message: pulsar.Message, producer: pulsar.Producer, kind: str, reason: str
    ) -> None:
        properties = {
            "reason": reason[:1000],
            "kind": kind,
            "original-topic": message.topic_name(),
            "redeliveries": str(message.redelivery_count()),
        }
        producer.send(message.data(), properties=properties)
        log.error("dead-lettered (%s): %s", kind, reason)
        failure = orjson.dumps({"topic": message.topic_name(), "reason": reason[:1000]})
        key = keyspace.key(Family.PROCESSING, self.connection.tenant, "failures")
        try:  # after the send, only statistics are left: never dead-letter twice for them
            self._count("failed")
            self.redis.lpush(key, failure)
            self.redis.ltrim(key, 0, FAILURES_KEPT - 1)
        except redis.RedisError as error:
            log.warning("failure statistics not recorded: %s", type(error).__name__)

    def _count(self, field: str) -> int:
        counters = keyspace.key(Family.PROCESSING, self.connection.tenant)
        return int(self.redis.hincrby(counters, field, 1))

    def _announce(
        self, task: Task | None, result: Literal["ok", "failed"], processed: int | None = None
    ) -> None:
        if task is None:  # the message did not parse: no item to tell anyone about
            return
        topic = task.topic.rsplit("/", 1)[-1]
        event = ProcessingProgress(
            item_id=task.item_id, topic=topic, result=result, processed=processed
        )
        self._push(event)

    def _push(self, event: Event) -> None:
        self.push.publish(Destination.everyone(self.connection.tenant), event)


def install_signal_handlers(worker: Worker) -> None:
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
