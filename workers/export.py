"""Export inside the worker: a dataset's annotations streamed into an archive in its bucket.

One message per export job (services.jobs publishes it). The worker pages through the frames
or images (services.exports), reads each page's documents through pre-signed GETs, a few in
flight at a time, and writes the converted entries into a multipart upload to the message's
key: nothing is held but one page of documents and one upload part. Progress goes to the job's
Redis state (which the operator folds into the job's status) and to the tenant's browsers.

A redelivered message writes the export again from the start; the output is deterministic
(domain.exports), so the object ends the same. A cancelled job stops at the next page and its
upload is aborted.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import httpx
import redis
from pydantic import ValidationError

from annostack.adapters.job_progress import ExportState, JobProgress
from annostack.adapters.multipart import multipart_upload
from annostack.adapters.object_store import EXPORTS_PREFIX
from annostack.adapters.objects import Presigner
from annostack.domain.errors import Backend, BackendUnavailable
from annostack.domain.exports.report import ExportReport
from annostack.domain.items import ExportMessage
from annostack.domain.push import Event, ExportProgress
from annostack.services.exports import (
    FollowingSaves,
    content_type,
    count_units,
    units_of,
    write_export,
)
from annostack.services.processing import InvalidTask
from annostack.services.tenancy import TenantContext

READERS = 8  # documents fetched at once: a page of 100 in ~13 round trips
PROGRESS_EVERY = 200  # frames between progress records (and push events)
PushedState = Literal["exporting", "exported", "failed"]


class ExportCancelled(Exception):
    """The job was cancelled (or deleted) while its export was being written."""


def parse_export(payload: bytes, tenant: str) -> ExportMessage:
    """The message, if it is one and for this worker's tenant (before any key is touched)."""
    try:
        message = ExportMessage.model_validate_json(payload)
    except ValidationError as error:
        raise InvalidTask(f"malformed export message: {error}") from error
    if message.tenant != tenant:
        raise InvalidTask(f"export for tenant {message.tenant} on {tenant}'s topic")
    if not message.key.startswith(EXPORTS_PREFIX):
        raise InvalidTask(f"refusing to write an export to {message.key!r}")
    return message


@dataclass
class BucketDocuments:
    """Annotation documents read from the tenant's bucket, a page at a time."""

    signer: Presigner
    http: httpx.Client
    bucket: str

    def read(self, keys: list[str]) -> dict[str, bytes]:
        with ThreadPoolExecutor(max_workers=READERS) as pool:
            bodies = list(pool.map(self._get, keys))
        return {key: body for key, body in zip(keys, bodies, strict=True) if body is not None}

    def _get(self, key: str) -> bytes | None:
        try:
            response = self.http.get(self.signer.presign_get(self.bucket, key))
        except httpx.HTTPError as error:
            raise BackendUnavailable(Backend.OBJECT_STORE, f"GET {key}: {error}") from error
        if response.status_code == 404:
            return None  # removed since the page was read: nothing to export for it
        if response.status_code != 200:
            raise BackendUnavailable(Backend.OBJECT_STORE, f"GET {key}: {response.status_code}")
        return response.content


@dataclass
class Exporter:
    ctx: TenantContext
    signer: Presigner
    http: httpx.Client
    redis: redis.Redis
    push: Callable[[Event], None] = lambda _: None  # progress for browsers (best effort)

    def __post_init__(self) -> None:
        self.jobs = JobProgress(self.redis)

    def run(self, message: ExportMessage) -> ExportReport:
        total = count_units(self.ctx, message.dataset_id, message.export)
        self._progress(message, ExportState.RUNNING, 0, total)
        bucket = self.ctx.connection.bucket
        documents = FollowingSaves(BucketDocuments(self.signer, self.http, bucket), self.ctx)
        pages = units_of(self.ctx, message.dataset_id, message.export)
        kind = content_type(message.export)
        with multipart_upload(self.signer, self.http, bucket, message.key, kind) as upload:
            report = write_export(
                message.export, pages, documents, upload, self._on_page(message, total)
            )
        summary = report.model_dump_json(by_alias=True)
        self.jobs.export_finished(
            message.tenant, message.job, ExportState.DONE, report=summary, done=total
        )
        self._push(message, "exported", total, total)
        return report

    def failed(self, message: ExportMessage, reason: str) -> None:
        """Record that the export gave up (the runtime calls this before dead-lettering)."""
        self.jobs.export_finished(message.tenant, message.job, ExportState.FAILED, reason)
        self._push(message, "failed", 0, 0)

    def _on_page(self, message: ExportMessage, total: int) -> Callable[[int], None]:
        last = [0]

        def written(done: int) -> None:
            if self.jobs.is_cancelled(message.tenant, message.job):
                raise ExportCancelled(message.job_name)
            if done - last[0] >= PROGRESS_EVERY:
                last[0] = done
                self._progress(message, ExportState.RUNNING, done, total)

        return written

    def _progress(self, message: ExportMessage, state: ExportState, done: int, total: int) -> None:
        self.jobs.export_progress(message.tenant, message.job, state, done, total)
        self._push(message, "exporting", done, total)

    def _push(self, message: ExportMessage, state: PushedState, done: int, total: int) -> None:
        event = ExportProgress(
            job=message.job_name, format=message.export.format, state=state, done=done, total=total
        )
        self.push(event)
