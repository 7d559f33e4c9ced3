"""ProcessingJob: fan a dataset's items out to the workers and fold their progress back.

The job is driven in small steps so that any step may be interrupted (operator restart,
cancellation) and picked up again from `status`:

1. `start` fixes the job's scope: the dataset, the highest item id at that moment (items added
   later are not part of this job) and the number of items to process.
2. `fan_out` publishes the next batch of items after the cursor (`status.lastItemId`). Each item
   is recorded as *expected* in Redis before its message is sent; a batch published twice (a
   restart between sending and saving the cursor) changes no count, and the workers' outputs
   are idempotent.
3. `fold` turns the Redis counts into the job's status: Complete when every expected item has
   finished, Failed with a reason otherwise.

An archive job publishes one import message instead; the worker that unpacks the archive
records each entry as expected before publishing it, and marks the import done or failed.
An export job (`operations: [export]`) publishes one export message; its worker records the
frames written and, at the end, the export's report (services.exports, workers.export).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import redis
import sqlalchemy as sa

from annostack.adapters.job_progress import (
    ExportCounts,
    ExportState,
    ImportState,
    JobCounts,
    JobProgress,
)
from annostack.adapters.queue import Publisher
from annostack.adapters.tenant_tables import data_items, datasets
from annostack.domain.errors import Invalid, NotFound
from annostack.domain.exports.report import ExportReport
from annostack.domain.items import (
    PROCESSABLE_STATUSES,
    ExportMessage,
    FileClass,
    FileKind,
    ProcessingMessage,
    SkipReason,
    classify,
    describe_skipped,
    skip_reason,
)
from annostack.domain.processing import (
    ExportSpec,
    ExportStatus,
    JobPhase,
    Operation,
    ProcessingJobSpec,
    per_item,
    wanted_on,
)
from annostack.services.exports import count_units, export_key
from annostack.services.tenancy import TenantContext
from annostack.settings import Settings

Candidate = sa.Row[tuple[int, str, str, str, str | None]]
Skips = defaultdict[SkipReason, list[str]]
FAN_OUT_BATCH = 500  # default; the operator passes its own setting
EXPORTS_TOPIC = "exports"


@dataclass(frozen=True)
class JobRef:
    """Which job a message belongs to: its tenant and uid (not its name, which can be reused).

    The name is where an export is written and what its push events say."""

    tenant: str
    uid: str
    name: str = ""


@dataclass(frozen=True)
class JobScope:
    dataset_id: int
    total: int
    snapshot_item_id: int | None  # None: nothing to fan out from the database


@dataclass(frozen=True)
class FanOutStep:
    last_item_id: int | None
    published: int
    finished: bool


@dataclass(frozen=True)
class Route:
    """One message of the fan-out: an item, the topic for its kind, what to do with it."""

    item_id: int
    key: str
    kind: FileKind
    topic: str
    operations: list[Operation]


@dataclass(frozen=True)
class Outcome:
    """What the job's status should say after a fold."""

    phase: JobPhase
    total: int
    succeeded: int
    failed: int
    reason: str = ""
    message: str = ""
    skipped: int = 0
    export: ExportStatus | None = None

    @property
    def terminal(self) -> bool:
        return self.phase.terminal


def dataset_id_by_name(ctx: TenantContext, name: str) -> int:
    with ctx.engine.connect() as conn:
        found = conn.execute(sa.select(datasets.c.id).where(datasets.c.name == name)).scalar()
    if found is None:
        raise NotFound(f"dataset {name!r} does not exist (yet) in tenant {ctx.names.tenant}")
    return int(found)


def _candidates(
    ctx: TenantContext, dataset_id: int, spec: ProcessingJobSpec, after: int, upto: int, limit: int
) -> list[Candidate]:
    query = (
        sa.select(
            data_items.c.id,
            data_items.c.name,
            data_items.c.content_type,
            data_items.c.object_key,
            data_items.c.kind,
        )
        .where(
            data_items.c.dataset_id == dataset_id,
            data_items.c.id > after,
            data_items.c.id <= upto,
            data_items.c.status.in_(PROCESSABLE_STATUSES),
        )
        .order_by(data_items.c.id)
        .limit(limit)
    )
    if spec.item_prefix:
        query = query.where(data_items.c.name.startswith(spec.item_prefix, autoescape=True))
    with ctx.engine.connect() as conn:
        return list(conn.execute(query).all())  # type: ignore[arg-type]


def _batches(
    ctx: TenantContext, dataset_id: int, spec: ProcessingJobSpec, after: int, upto: int
) -> Iterator[list[Candidate]]:
    while rows := _candidates(ctx, dataset_id, spec, after, upto, FAN_OUT_BATCH):
        yield rows
        after = rows[-1].id


def _verdict(row: Candidate) -> FileClass:
    """The kind recorded at registration; items registered before kinds are classified now."""
    if row.kind:
        return FileClass(FileKind(row.kind))
    return classify(row.name, None, row.content_type)


def _routed(
    rows: list[Candidate], spec: ProcessingJobSpec, skipped: Skips | None = None
) -> list[Route]:
    """The rows' messages; what is left out is added to `skipped` by reason."""
    routes = []
    for row in rows:
        verdict = _verdict(row)
        if verdict.kind is FileKind.ARCHIVE:
            continue  # unpacked when it arrived; its entries are items of their own
        reason = skip_reason(verdict)
        operations = wanted_on(verdict.topic, spec.operations) if verdict.topic else []
        if reason is None and not operations:
            reason = SkipReason.NOT_REQUESTED
        if reason is not None:
            if skipped is not None:
                skipped[reason].append(row.name)
            continue
        if verdict.topic is not None:
            routes.append(
                Route(int(row.id), row.object_key, verdict.kind, verdict.topic, operations)
            )
    return routes


class JobRunner:
    def __init__(self, publisher: Publisher, progress: JobProgress) -> None:
        self.publisher = publisher
        self.progress = progress

    @classmethod
    def for_settings(cls, settings: Settings) -> JobRunner:
        client = redis.Redis.from_url(settings.redis.url.get_secret_value())
        publisher = Publisher(settings.pulsar.service_url, settings.pulsar.token.get_secret_value())
        return cls(publisher, JobProgress(client))

    def start(self, ctx: TenantContext, spec: ProcessingJobSpec) -> JobScope:
        dataset_id = dataset_id_by_name(ctx, spec.dataset)
        if spec.export is not None:
            return JobScope(dataset_id, count_units(ctx, dataset_id, spec.export), None)
        if spec.archive_item_id is not None:
            return self._archive_scope(ctx, dataset_id, spec.archive_item_id)
        with ctx.engine.connect() as conn:
            highest = conn.execute(
                sa.select(sa.func.max(data_items.c.id)).where(data_items.c.dataset_id == dataset_id)
            ).scalar()
        if highest is None:
            return JobScope(dataset_id, total=0, snapshot_item_id=None)
        total = sum(
            len(_routed(rows, spec)) for rows in _batches(ctx, dataset_id, spec, 0, int(highest))
        )
        return JobScope(dataset_id, total=total, snapshot_item_id=int(highest))

    @staticmethod
    def _archive_scope(ctx: TenantContext, dataset_id: int, item_id: int) -> JobScope:
        with ctx.engine.connect() as conn:
            owner = conn.execute(
                sa.select(data_items.c.dataset_id).where(data_items.c.id == item_id)
            ).scalar()
        if owner != dataset_id:
            raise Invalid(f"archive item {item_id} is not an item of this dataset")
        return JobScope(dataset_id, total=0, snapshot_item_id=None)

    def fan_out(
        self,
        ctx: TenantContext,
        job: JobRef,
        spec: ProcessingJobSpec,
        scope: JobScope,
        after: int | None,
        batch: int = FAN_OUT_BATCH,
    ) -> FanOutStep:
        """Publish the next batch after `after`; `finished` once the snapshot is covered."""
        if spec.export is not None:
            return self._fan_out_export(ctx, job, spec.export, scope)
        if spec.archive_item_id is not None:
            return self._fan_out_archive(ctx, job, spec)
        if scope.snapshot_item_id is None:
            return FanOutStep(last_item_id=None, published=0, finished=True)
        rows = _candidates(ctx, scope.dataset_id, spec, after or 0, scope.snapshot_item_id, batch)
        skipped: Skips = defaultdict(list)
        routes = _routed(rows, spec, skipped)
        for reason, names in skipped.items():
            self.progress.skipped(job.tenant, job.uid, reason, names)
        self._publish(ctx, job, routes)
        finished = len(rows) < batch
        last = scope.snapshot_item_id if finished else int(rows[-1].id)
        return FanOutStep(last_item_id=last, published=len(routes), finished=finished)

    def _fan_out_archive(
        self, ctx: TenantContext, job: JobRef, spec: ProcessingJobSpec
    ) -> FanOutStep:
        assert spec.archive_item_id is not None
        with ctx.engine.connect() as conn:
            key = conn.execute(
                sa.select(data_items.c.object_key).where(data_items.c.id == spec.archive_item_id)
            ).scalar()
        if key is None:
            raise NotFound(f"archive item {spec.archive_item_id} no longer exists")
        self.progress.import_finished(job.tenant, job.uid, ImportState.PENDING)
        message = self._message(
            job, spec.archive_item_id, str(key), FileKind.ARCHIVE, per_item(spec.operations)
        )
        self.publisher.publish(ctx.names.topic("archives"), message)
        return FanOutStep(last_item_id=spec.archive_item_id, published=1, finished=True)

    def _fan_out_export(
        self, ctx: TenantContext, job: JobRef, spec: ExportSpec, scope: JobScope
    ) -> FanOutStep:
        self.progress.export_progress(job.tenant, job.uid, ExportState.PENDING, 0, scope.total)
        message = ExportMessage(
            tenant=job.tenant,
            job=job.uid,
            job_name=job.name,
            dataset_id=scope.dataset_id,
            key=export_key(job.name, spec),
            export=spec,
        )
        self.publisher.publish_export(ctx.names.topic(EXPORTS_TOPIC), message)
        return FanOutStep(last_item_id=None, published=1, finished=True)

    def _publish(self, ctx: TenantContext, job: JobRef, routes: list[Route]) -> None:
        # Recorded before sending: a message whose item is not expected yet would be counted
        # as finished before it was ever part of the total.
        self.progress.expect(job.tenant, job.uid, (route.item_id for route in routes))
        by_topic: defaultdict[str, list[ProcessingMessage]] = defaultdict(list)
        for route in routes:
            message = self._message(job, route.item_id, route.key, route.kind, route.operations)
            by_topic[route.topic].append(message)
        for topic, messages in by_topic.items():
            self.publisher.publish_many(ctx.names.topic(topic), messages)

    @staticmethod
    def _message(
        job: JobRef, item_id: int, key: str, kind: FileKind, operations: list[Operation]
    ) -> ProcessingMessage:
        return ProcessingMessage(
            tenant=job.tenant,
            item_id=item_id,
            key=key,
            kind=kind,
            job=job.uid,
            operations=operations,
        )

    def cancel(self, job: JobRef) -> None:
        """Workers skip this job's messages still queued; the fan-out stops at its next step."""
        self.progress.cancel(job.tenant, job.uid)

    def fold(self, job: JobRef, spec: ProcessingJobSpec, total: int, fanned_out: bool) -> Outcome:
        if spec.export is not None:
            return self._fold_export(job, spec, total)
        counts = self.progress.counts(job.tenant, job.uid)
        total = max(total, counts.expected)
        if spec.cancelled:
            message = f"cancelled after {counts.finished} of {total} items"
            return self._outcome(JobPhase.CANCELLED, total, counts, "Cancelled", message)
        if counts.import_state is ImportState.FAILED:
            return self._outcome(
                JobPhase.FAILED, total, counts, "ImportFailed", counts.import_reason
            )
        importing = spec.archive_item_id is not None and counts.import_state is not ImportState.DONE
        if not fanned_out or importing or counts.finished < total:
            return self._outcome(JobPhase.RUNNING, total, counts)
        skipped = describe_skipped(counts.skipped, counts.skipped_examples)
        if counts.failed:
            message = (
                f"{counts.failed} of {total} items failed; their messages and reasons are in "
                "the tenant's dead-letter topic"
            )
            return self._outcome(JobPhase.FAILED, total, counts, "ItemsFailed", message, skipped)
        if total == 0 and skipped:  # not "Complete, 0 items": nothing it was given was done
            message = f"nothing to process: {skipped}"
            return self._outcome(JobPhase.FAILED, total, counts, "NothingToProcess", message)
        done = f"{total} items processed"
        return self._outcome(JobPhase.COMPLETE, total, counts, "AllSucceeded", done, skipped)

    def _fold_export(self, job: JobRef, spec: ProcessingJobSpec, total: int) -> Outcome:
        assert spec.export is not None
        counts = self.progress.export_counts(job.tenant, job.uid)
        status = export_status(job, spec.export, counts, total)
        done = (status.total, status.done, 0)
        if spec.cancelled:
            message = f"cancelled after {status.done} of {status.total} written; nothing kept"
            return Outcome(JobPhase.CANCELLED, *done, "Cancelled", message, export=status)
        if counts.state is ExportState.FAILED:
            return Outcome(JobPhase.FAILED, *done, "ExportFailed", counts.reason, export=status)
        if counts.state is not ExportState.DONE:
            return Outcome(JobPhase.RUNNING, *done, export=status)
        summary = status.report.summary() if status.report else "nothing exported"
        message = f"{summary}; written to {status.key}"
        return Outcome(JobPhase.COMPLETE, *done, "Exported", message, export=status)

    @staticmethod
    def _outcome(
        phase: JobPhase,
        total: int,
        counts: JobCounts,
        reason: str = "",
        message: str = "",
        skipped: str = "",
    ) -> Outcome:
        """The verdict; what was skipped, if anything, is appended to the message."""
        if skipped and message:
            message = f"{message}; {skipped}"
        return Outcome(
            phase,
            total,
            counts.succeeded,
            counts.failed,
            reason,
            message,
            skipped=sum(counts.skipped.values()),
        )

    def retire(self, job: JobRef) -> None:
        """The job was deleted: its counts go, and its messages still queued are skipped."""
        self.progress.retire(job.tenant, job.uid)


def export_status(job: JobRef, spec: ExportSpec, counts: ExportCounts, total: int) -> ExportStatus:
    """The export's part of the job's status, from what its worker last recorded."""
    done = counts.state is ExportState.DONE
    report = ExportReport.model_validate_json(counts.report) if counts.report else None
    return ExportStatus(
        format=spec.format,
        key=export_key(job.name, spec) if done else None,
        done=counts.done,
        total=counts.total or total,
        report=report,
    )
