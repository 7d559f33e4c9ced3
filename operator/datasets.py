"""kopf handlers for Dataset: its row in the tenant database, its import, its counts.

On create and on every spec change the Dataset's row is created or adopted; a source not
imported yet is registered item by item and handed to a ProcessingJob owned by the Dataset
(named after the source, so changing the source starts a new job and re-applying the same
one does nothing). A timer keeps `items`, `processed` and the phase current.
"""

from __future__ import annotations

from typing import Any

import kopf

from annostack.adapters.kube import Kube
from annostack.domain.conditions import ConditionType, set_condition
from annostack.domain.errors import BackendUnavailable, Invalid, QuotaExceeded
from annostack.domain.processing import (
    DatasetPhase,
    DatasetSpec,
    DatasetStatus,
    JobPhase,
    ProcessingJobSpec,
    processing_job_manifest,
)
from annostack.domain.tenants import API_GROUP, API_VERSION
from annostack.operator.specs import parse_spec
from annostack.operator.tenancy import tenant_context
from annostack.operator.tenants import TIMINGS
from annostack.services.dataset_imports import (
    ensure_dataset,
    import_source,
    item_counts,
    source_fingerprint,
)
from annostack.services.tenancy import TenantContext, UnknownTenant

PLURAL = "datasets"
GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"
JOB_PHASE_TO_DATASET = {
    JobPhase.COMPLETE: DatasetPhase.READY,
    JobPhase.FAILED: DatasetPhase.FAILED,
    JobPhase.CANCELLED: DatasetPhase.READY,
}
MAX_NAME_PREFIX = 240  # job names are `<dataset>-import-<8 hex>`, within Kubernetes' 253


def _kube(memo: kopf.Memo) -> Kube:
    kube: Kube = memo["provisioner"].b.kube
    return kube


def _dump(status: DatasetStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


@kopf.on.resume(API_GROUP, API_VERSION, PLURAL)
@kopf.on.create(API_GROUP, API_VERSION, PLURAL)
@kopf.on.update(API_GROUP, API_VERSION, PLURAL, field="spec")
def reconcile_dataset(
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
    dataset = parse_spec(DatasetSpec, spec, "Dataset")
    current = DatasetStatus.model_validate(dict(status)).model_copy(
        update={"observed_generation": int(meta.get("generation", 0))}
    )
    try:
        ctx = tenant_context(memo, namespace)
        dataset_id = ensure_dataset(ctx, name, dataset)
        current = current.model_copy(update={"dataset_id": dataset_id})
        if dataset.source is not None:
            current = _import(ctx, memo, name, namespace, uid, dataset, current, logger)
        current = _counted(ctx, current)
    except Invalid as error:
        patch.status.update(_dump(_failed(current, "InvalidSource", str(error))))
        return
    except QuotaExceeded as error:
        patch.status.update(_dump(_failed(current, "DatasetLimitReached", str(error))))
        return
    except (BackendUnavailable, UnknownTenant) as error:
        raise kopf.TemporaryError(str(error), delay=TIMINGS.retry_delay_seconds) from error
    patch.status.update(_dump(_phased(current, _job_phase(memo, namespace, current))))


def _import(
    ctx: TenantContext,
    memo: kopf.Memo,
    name: str,
    namespace: str | None,
    uid: str,
    dataset: DatasetSpec,
    current: DatasetStatus,
    logger: kopf.Logger,
) -> DatasetStatus:
    assert dataset.source is not None and current.dataset_id is not None
    job_name = f"{name[:MAX_NAME_PREFIX]}-import-{source_fingerprint(dataset.source)}"
    if current.import_job == job_name:
        return current  # this source was imported; its job carries on
    result = import_source(ctx, current.dataset_id, dataset.data_type, dataset.source)
    job = ProcessingJobSpec(
        dataset=name,
        operations=dataset.operations,
        archive_item_id=result.archive_item_id,
    )
    owner = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "Dataset",
        "name": name,
        "uid": uid,
    }
    manifest = processing_job_manifest(
        ctx.names.namespace, job_name, job, "annostack-operator", owner
    )
    _kube(memo).apply(manifest)
    scenes = f"; scenes: {result.scenes.describe()}" if result.scenes else ""
    logger.info(
        f"imported {result.registered} items ({result.describe_skipped()}{scenes}); "
        f"processing them in ProcessingJob {job_name}"
    )
    return current.model_copy(update={"import_job": job_name})


def _counted(ctx: TenantContext, current: DatasetStatus) -> DatasetStatus:
    assert current.dataset_id is not None
    items, processed = item_counts(ctx, current.dataset_id)
    return current.model_copy(update={"items": items, "processed": processed})


def _job_phase(memo: kopf.Memo, namespace: str | None, current: DatasetStatus) -> JobPhase | None:
    if current.import_job is None:
        return None
    job = _kube(memo).get(
        f"{API_GROUP}/{API_VERSION}", "ProcessingJob", current.import_job, namespace
    )
    if job is None:
        return None  # finished and expired (TTL), or removed by hand: the import is over
    return JobPhase((job.to_dict().get("status") or {}).get("phase") or JobPhase.PENDING)


def _phased(current: DatasetStatus, job_phase: JobPhase | None) -> DatasetStatus:
    phase = JOB_PHASE_TO_DATASET.get(job_phase or JobPhase.COMPLETE, DatasetPhase.IMPORTING)
    conditions = current.conditions
    if phase is DatasetPhase.IMPORTING:
        message = f"ProcessingJob {current.import_job} is {job_phase}"
        conditions = set_condition(
            conditions, ConditionType.RECONCILING, True, "Importing", message
        )
        conditions = set_condition(conditions, ConditionType.READY, False, "Importing", message)
    elif phase is DatasetPhase.FAILED:
        message = f"ProcessingJob {current.import_job} failed; see its conditions"
        conditions = set_condition(conditions, ConditionType.RECONCILING, False, "", "")
        conditions = set_condition(conditions, ConditionType.READY, False, "ImportFailed", message)
    else:
        conditions = set_condition(conditions, ConditionType.RECONCILING, False, "", "")
        conditions = set_condition(
            conditions, ConditionType.READY, True, "Available", f"{current.items} items"
        )
    return current.model_copy(update={"phase": phase, "conditions": conditions})


def _failed(current: DatasetStatus, reason: str, message: str) -> DatasetStatus:
    conditions = set_condition(current.conditions, ConditionType.RECONCILING, False, "", "")
    conditions = set_condition(conditions, ConditionType.READY, False, reason, message)
    stalled = set_condition(conditions, ConditionType.STALLED, True, reason, message)
    return current.model_copy(update={"phase": DatasetPhase.FAILED, "conditions": stalled})


@kopf.timer(
    API_GROUP,
    API_VERSION,
    PLURAL,
    interval=TIMINGS.dataset_interval_seconds,
    idle=0,
    when=lambda status, **_: status.get("datasetId") is not None,
)
def refresh_dataset(
    namespace: str | None,
    status: kopf.Status,
    meta: kopf.Meta,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    if meta.get("deletionTimestamp"):
        return
    current = DatasetStatus.model_validate(dict(status))
    if current.phase is DatasetPhase.FAILED and current.import_job is None:
        return  # a spec error: only a spec change helps
    try:
        ctx = tenant_context(memo, namespace)
        refreshed = _phased(_counted(ctx, current), _job_phase(memo, namespace, current))
    except (BackendUnavailable, UnknownTenant) as error:
        logger.warning(f"cannot refresh counts now: {error}")
        return
    if _dump(refreshed) != _dump(current):
        patch.status.update(_dump(refreshed))
