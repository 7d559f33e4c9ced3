"""kopf handlers for ProcessingJob: start, advance on a timer, expire after the TTL.

A job is started once (its scope fixed in `status`), then a timer advances it every few
seconds while it is Running: publish the next messages for up to `job_fan_out_seconds`, save
the cursor, fold the workers' counts. Everything the next step needs is in `status` and Redis,
so an operator restarted mid-job resumes where the last saved step ended.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import Any

import kopf

from annostack.adapters.push import PushPublisher
from annostack.domain.conditions import ConditionType, now, set_condition
from annostack.domain.errors import BackendUnavailable, Invalid, NotFound
from annostack.domain.processing import JobPhase, ProcessingJobSpec, ProcessingJobStatus
from annostack.domain.push import Destination
from annostack.domain.push import JobProgress as PushedJobProgress
from annostack.domain.tenants import API_GROUP, API_VERSION, TenantNames
from annostack.operator import metrics
from annostack.operator.specs import parse_spec
from annostack.operator.tenancy import tenant_context
from annostack.operator.tenants import TIMINGS
from annostack.services.jobs import JobRef, JobRunner, JobScope, Outcome, dataset_id_by_name
from annostack.services.tenancy import TenantContext, UnknownTenant

PLURAL = "processingjobs"
KIND = "ProcessingJob"
TERMINAL = frozenset(phase for phase in JobPhase if phase.terminal)
WAIT_FOR_DATASET_SECONDS = 10.0


def _runner(memo: kopf.Memo) -> JobRunner:
    runner: JobRunner = memo["jobs"]
    return runner


def _running(status: kopf.Status, **_: Any) -> bool:
    return status.get("phase") == JobPhase.RUNNING


def _finished_with_ttl(spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
    return status.get("phase") in TERMINAL and spec.get("ttlSecondsAfterFinished") is not None


def _dump(status: ProcessingJobStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


@kopf.on.resume(API_GROUP, API_VERSION, PLURAL)
@kopf.on.create(API_GROUP, API_VERSION, PLURAL)
def start_job(
    namespace: str | None,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    current = ProcessingJobStatus.model_validate(dict(status))
    if current.phase not in (None, JobPhase.PENDING):
        return  # started before this operator (re)started; the timer carries it on
    job_spec = parse_spec(ProcessingJobSpec, spec, "ProcessingJob")
    generation = int(meta.get("generation", 0))
    try:
        ctx = tenant_context(memo, namespace)
        scope = _runner(memo).start(ctx, job_spec)
    except (NotFound, UnknownTenant) as error:
        # GitOps applies a job and its dataset together, in any order: wait, do not fail.
        waiting = set_condition(
            current.conditions, ConditionType.RECONCILING, True, "WaitingForDataset", str(error)
        )
        pending = current.model_copy(
            update={
                "phase": JobPhase.PENDING,
                "observed_generation": generation,
                "conditions": waiting,
            }
        )
        patch.status.update(_dump(pending))
        raise kopf.TemporaryError(str(error), delay=WAIT_FOR_DATASET_SECONDS) from error
    except Invalid as error:
        failed = _terminal(current, JobPhase.FAILED, "InvalidJob", str(error), generation)
        patch.status.update(_dump(failed))
        return
    except BackendUnavailable as error:
        raise kopf.TemporaryError(str(error), delay=TIMINGS.retry_delay_seconds) from error
    started = current.model_copy(
        update={
            "phase": JobPhase.RUNNING,
            "observed_generation": generation,
            "total": scope.total,
            "snapshot_item_id": scope.snapshot_item_id,
            "start_time": now(),
            "conditions": set_condition(
                current.conditions, ConditionType.RECONCILING, True, "Processing", "fanning out"
            ),
        }
    )
    patch.status.update(_dump(started))
    logger.info(f"started: {scope.total} items of dataset {job_spec.dataset}")


@kopf.timer(API_GROUP, API_VERSION, PLURAL, interval=TIMINGS.job_interval_seconds, when=_running)
def advance_job(
    name: str,
    namespace: str | None,
    uid: str,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    if meta.get("deletionTimestamp"):
        return
    job_spec = parse_spec(ProcessingJobSpec, spec, "ProcessingJob")
    current = ProcessingJobStatus.model_validate(dict(status))
    runner = _runner(memo)
    try:
        ctx = tenant_context(memo, namespace)
        job = JobRef(tenant=ctx.names.tenant, uid=uid, name=name)
        if job_spec.cancelled:
            runner.cancel(job)
        elif not current.fanned_out:
            current = _fan_out(runner, ctx, job, job_spec, current, logger)
        outcome = runner.fold(job, job_spec, current.total, current.fanned_out)
    except (BackendUnavailable, UnknownTenant, NotFound) as error:
        logger.warning(f"cannot advance the job now, will retry: {error}")
        patch.status.update(_progress_fields(current))
        return
    patch.status.update(_dump(_with_outcome(current, outcome, int(meta.get("generation", 0)))))
    _announce(memo, ctx.names.tenant, name, job_spec, current, outcome)
    if outcome.terminal:
        metrics.JOBS_FINISHED.labels(outcome.phase).inc()
        logger.info(f"{outcome.phase}: {outcome.succeeded} ok, {outcome.failed} failed")


def _announce(
    memo: kopf.Memo,
    tenant: str,
    name: str,
    spec: ProcessingJobSpec,
    before: ProcessingJobStatus,
    outcome: Outcome,
) -> None:
    """Push the new counts to the tenant's browsers when they changed (best effort)."""
    counts = (outcome.phase, outcome.total, outcome.succeeded, outcome.failed)
    if counts == (before.phase, before.total, before.succeeded, before.failed):
        return
    event = PushedJobProgress(
        job=name,
        dataset=spec.dataset,
        phase=outcome.phase,
        total=outcome.total,
        succeeded=outcome.succeeded,
        failed=outcome.failed,
    )
    push: PushPublisher = memo["push"]
    push.publish(Destination.everyone(tenant), event)


def _fan_out(
    runner: JobRunner,
    ctx: TenantContext,
    job: JobRef,
    spec: ProcessingJobSpec,
    current: ProcessingJobStatus,
    logger: kopf.Logger,
) -> ProcessingJobStatus:
    """Publish for up to the step's time budget; return the status with the new cursor.

    A backend failure ends the step early but keeps the batches already published, so the
    cursor saved in `status` never falls behind what the workers have been sent.
    """
    scope = JobScope(dataset_id_by_name(ctx, spec.dataset), current.total, current.snapshot_item_id)
    deadline = time.monotonic() + TIMINGS.job_fan_out_seconds
    while not current.fanned_out and time.monotonic() < deadline:
        try:
            step = runner.fan_out(
                ctx, job, spec, scope, current.last_item_id, TIMINGS.job_fan_out_batch
            )
        except BackendUnavailable as error:
            logger.warning(f"fan-out paused, will resume: {error}")
            break
        metrics.JOB_MESSAGES.inc(step.published)
        current = current.model_copy(
            update={
                "last_item_id": step.last_item_id,
                "published": current.published + step.published,
                "fanned_out": step.finished,
            }
        )
    return current


def _progress_fields(current: ProcessingJobStatus) -> dict[str, Any]:
    fields = _dump(current)
    return {key: fields[key] for key in ("published", "lastItemId", "fannedOut") if key in fields}


def _with_outcome(
    current: ProcessingJobStatus, outcome: Outcome, generation: int
) -> ProcessingJobStatus:
    counted = current.model_copy(
        update={
            "total": outcome.total,
            "succeeded": outcome.succeeded,
            "failed": outcome.failed,
            "skipped": outcome.skipped,
            "observed_generation": generation,
            "export": outcome.export or current.export,
        }
    )
    if outcome.terminal:
        return _terminal(counted, outcome.phase, outcome.reason, outcome.message, generation)
    what = "written" if outcome.export is not None else "finished"
    progress = f"{outcome.succeeded + outcome.failed} of {outcome.total} items {what}"
    conditions = set_condition(
        counted.conditions, ConditionType.RECONCILING, True, "Processing", progress
    )
    return counted.model_copy(update={"conditions": conditions})


def _terminal(
    current: ProcessingJobStatus, phase: JobPhase, reason: str, message: str, generation: int
) -> ProcessingJobStatus:
    conditions = set_condition(current.conditions, ConditionType.RECONCILING, False, "", "")
    condition = ConditionType.COMPLETE if phase is JobPhase.COMPLETE else ConditionType.FAILED
    conditions = set_condition(conditions, condition, True, reason, message, generation)
    return current.model_copy(
        update={
            "phase": phase,
            "completion_time": now(),
            "observed_generation": generation,
            "conditions": conditions,
        }
    )


@kopf.daemon(API_GROUP, API_VERSION, PLURAL, when=_finished_with_ttl, cancellation_timeout=1.0)
async def expire_job(
    name: str,
    namespace: str | None,
    uid: str,
    spec: kopf.Spec,
    status: kopf.Status,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Delete a finished job once its TTL has passed, as Kubernetes does for Jobs."""
    finished = datetime.fromisoformat(str(status.get("completionTime")))
    deadline = finished + timedelta(seconds=int(spec["ttlSecondsAfterFinished"]))
    remaining = (deadline - now()).total_seconds()
    if remaining > 0:
        await stopped.wait(remaining)
    if stopped:
        return
    kube = memo["provisioner"].b.kube
    await asyncio.to_thread(kube.delete, f"{API_GROUP}/{API_VERSION}", KIND, name, namespace)
    logger.info("deleted: its time to live after finishing has passed")


@kopf.on.event(API_GROUP, API_VERSION, PLURAL)
def retire_deleted_job(
    event: kopf.RawEvent,
    namespace: str | None,
    uid: str,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """A deleted job stops, as deleting a Kubernetes Job stops its pods.

    No finalizer: deletion is never blocked on Redis. If the operator is down at that moment,
    the job's Redis keys expire on their own and its queued messages are processed.
    """
    names = TenantNames.of_namespace(namespace or "")
    if event["type"] != "DELETED" or names is None:
        return
    try:
        _runner(memo).retire(JobRef(tenant=names.tenant, uid=uid))
    except BackendUnavailable as error:
        logger.warning(f"deleted, but its queued messages will still run: {error}")
