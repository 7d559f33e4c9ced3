"""Archive import inside the worker: entries become data items, streamed bucket to bucket.

Nothing is held whole in memory or on disk: zip entries are read through range requests,
tar entries from the response stream, and each is PUT back with its known length while it is
read. Items are registered idempotently (dataset + entry name is unique), objects written with
If-None-Match: *, so a redelivered import message finishes the job without duplicating it.
"""

from __future__ import annotations

import io
import logging
import mimetypes
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO

import httpx
import redis
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from annostack.adapters.job_progress import JobProgress
from annostack.adapters.objects import Presigner
from annostack.adapters.tenant_tables import data_items
from annostack.domain import keyspace
from annostack.domain.items import (
    FileClass,
    ItemStatus,
    ProcessingMessage,
    SkipReason,
    classify,
    skip_reason,
)
from annostack.domain.keyspace import Family
from annostack.domain.processing import DataType, wanted_on
from annostack.domain.push import Event, UploadProgress
from annostack.domain.scenes import plan_scenes
from annostack.services.archives import (
    CHUNK,
    Entry,
    Limits,
    RangeReader,
    UnsafeArchive,
    check_tar,
    is_zip,
    iter_tar,
    iter_zip,
)
from annostack.services.datasets import get_dataset, get_item
from annostack.services.item_states import mark_arrived
from annostack.services.processing import InvalidTask, Task
from annostack.services.scenes import SceneImport, import_scenes
from annostack.services.tenancy import TenantContext
from annostack.services.uploads import object_key

PROGRESS_EVERY = 50
log = logging.getLogger("annostack.worker")


class _ResponseStream(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks, self.pending = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self.pending:
            try:
                self.pending = next(self.chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self.pending))
        buffer[:size], self.pending = self.pending[:size], self.pending[size:]
        return size


@dataclass
class ArchiveImporter:
    ctx: TenantContext
    signer: Presigner
    http: httpx.Client
    redis: redis.Redis
    publish: Callable[[str, ProcessingMessage], None]
    push: Callable[[Event], None] = lambda _: None  # progress for browsers (best effort)
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        self.jobs = JobProgress(self.redis)

    def run(self, task: Task) -> int:
        archive_item = get_item(self.ctx, task.item_id)
        self.data_type: DataType = get_dataset(self.ctx, archive_item.dataset_id).data_type
        bucket = self.ctx.connection.bucket
        head = self.http.head(self.signer.presign_head(bucket, task.key))
        if head.status_code == 404:
            raise InvalidTask(f"{task.key} does not exist")
        size = int(head.headers["content-length"])
        if is_zip(self._range(task.key, 0, 3)):
            reader = RangeReader(size, lambda a, b: self._range(task.key, a, b))
            entries = iter_zip(reader, self.limits)
            total = None
        else:
            with self._stream(task.key) as stream:
                # The whole archive is checked before any write.
                total = check_tar(stream, self.limits, size)
            entries = None
        if entries is None:
            with self._stream(task.key) as stream:
                return self._store(task, archive_item.dataset_id, iter_tar(stream), total)
        return self._store(task, archive_item.dataset_id, entries, total)

    def _store(
        self,
        task: Task,
        dataset_id: int,
        entries: Iterator[tuple[Entry, IO[bytes]]],
        total: int | None,
    ) -> int:
        done = 0
        progress = keyspace.key(Family.ARCHIVE, self.ctx.names.tenant, task.item_id)
        stored: dict[str, str] = {}  # entry name -> object key, for the scenes it makes up
        names: list[str] = []
        for entry, data in entries:
            names.append(entry.name)
            if not _utf8(entry.name):
                continue  # no item can be named so; the scene plan reports it
            verdict = classify(entry.name, self.data_type, _content_type(entry.name), True)
            item_id = self._register(dataset_id, entry, verdict)
            key = object_key(dataset_id, item_id, entry.name)
            self._put_stream(key, data, entry.size)
            stored[entry.name] = key
            self._mark_arrived(item_id, verdict)
            self._enqueue(task, entry.name, verdict, item_id, key)
            done += 1
            if done % PROGRESS_EVERY == 0:
                self.redis.hset(progress, mapping={"done": done, "total": total or ""})
                self.push(
                    UploadProgress(item_id=task.item_id, state="importing", done=done, total=total)
                )
        made = self._scenes(dataset_id, names, stored)
        self.redis.hset(progress, mapping={"done": done, "total": done, "state": "imported"})
        self.push(UploadProgress(item_id=task.item_id, state="imported", done=done, total=done))
        reason = made.describe() if made.scenes or made.problems else None
        with self.ctx.engine.begin() as conn:
            conn.execute(
                data_items.update()
                .where(data_items.c.id == task.item_id)
                .values(status=ItemStatus.IMPORTED, status_reason=reason)
            )
        return done

    def _scenes(self, dataset_id: int, names: list[str], stored: dict[str, str]) -> SceneImport:
        """The scenes the entries make up (Xtreme1, KITTI), once every entry is an item."""
        made = import_scenes(self.ctx, dataset_id, plan_scenes(names), _StoredFiles(self, stored))
        for problem in made.problems:
            log.warning("archive entry %r: %s", problem.name, problem.reason)
        return made

    def _enqueue(self, task: Task, name: str, verdict: FileClass, item_id: int, key: str) -> None:
        """Queue an entry's processing; as part of the task's ProcessingJob, if it has one
        (which then counts what it skipped, and why)."""
        topic, skipped = verdict.topic, skip_reason(verdict)
        if topic is None or skipped is not None:
            if task.job and skipped is not None:
                self.jobs.skipped(self.ctx.names.tenant, task.job, skipped, [name])
            return  # kept as it is: a sidecar, or unsupported (with its reason)
        message = ProcessingMessage(
            tenant=self.ctx.names.tenant, item_id=item_id, key=key, kind=verdict.kind
        )
        if task.job:
            operations = wanted_on(topic, task.operations if task.operations is not None else [])
            if not operations:  # nothing the job asked for applies to this kind of file
                self.jobs.skipped(self.ctx.names.tenant, task.job, SkipReason.NOT_REQUESTED, [name])
                return
            message = message.model_copy(update={"job": task.job, "operations": operations})
            self.jobs.expect(self.ctx.names.tenant, task.job, [item_id])
        self.publish(topic, message)

    def _register(self, dataset_id: int, entry: Entry, verdict: FileClass) -> int:
        values = {
            "dataset_id": dataset_id,
            "name": entry.name,
            "object_key": "",
            "content_type": _content_type(entry.name),
            "size": entry.size,
            "kind": verdict.kind,
            "status": ItemStatus.UPLOADING,
        }
        try:
            with self.ctx.engine.begin() as conn:
                result = conn.execute(data_items.insert().values(**values))
                return int(result.inserted_primary_key[0])  # type: ignore[index]
        except IntegrityError:  # imported before, by an earlier delivery of this message
            with self.ctx.engine.connect() as conn:
                query = sa.select(data_items.c.id).where(
                    data_items.c.dataset_id == dataset_id, data_items.c.name == entry.name
                )
                return int(conn.execute(query).scalar_one())

    def _mark_arrived(self, item_id: int, verdict: FileClass) -> None:
        with self.ctx.engine.begin() as conn:
            item = conn.execute(sa.select(data_items).where(data_items.c.id == item_id)).one()
            key = object_key(item.dataset_id, item_id, item.name)
            mark_arrived(conn, item_id, verdict, object_key=key)

    def _range(self, key: str, first: int, last: int) -> bytes:
        url = self.signer.presign_get(self.ctx.connection.bucket, key)
        response = self.http.get(url, headers={"Range": f"bytes={first}-{last}"})
        if response.status_code not in (200, 206):
            raise UnsafeArchive(f"cannot read {key}: {response.status_code}")
        return response.content

    @contextmanager
    def _stream(self, key: str) -> Iterator[IO[bytes]]:
        url = self.signer.presign_get(self.ctx.connection.bucket, key)
        with self.http.stream("GET", url) as response:
            yield io.BufferedReader(_ResponseStream(response.iter_raw(CHUNK)), CHUNK)

    def _put_stream(self, key: str, data: IO[bytes], size: int) -> None:
        def chunks() -> Iterator[bytes]:
            while block := data.read(CHUNK):
                yield block

        url = self.signer.presign_put(self.ctx.connection.bucket, key)
        headers = {"If-None-Match": "*", "Content-Length": str(size)}
        response = self.http.put(url, content=chunks(), headers=headers)
        if response.status_code not in (200, 412):
            raise RuntimeError(f"S3 PUT {key}: {response.status_code}")


@dataclass
class _StoredFiles:
    """The import's entries in the bucket, as the scene import reads and writes them."""

    importer: ArchiveImporter
    keys: dict[str, str]

    def read(self, name: str) -> bytes:
        url = self.importer.signer.presign_get(self.importer.ctx.connection.bucket, self.keys[name])
        response = self.importer.http.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"S3 GET {self.keys[name]}: {response.status_code}")
        return response.content

    def put_new(self, key: str, body: bytes) -> str:
        bucket, signer, http = (
            self.importer.ctx.connection.bucket,
            self.importer.signer,
            self.importer.http,
        )
        headers = {"If-None-Match": "*", "Content-Type": "application/json"}
        response = http.put(signer.presign_put(bucket, key), content=body, headers=headers)
        if response.status_code == 412:  # written by an earlier delivery (or by hand): kept
            response = http.head(signer.presign_head(bucket, key))
        if response.status_code != 200:
            raise RuntimeError(f"S3 PUT {key}: {response.status_code}")
        return str(response.headers.get("etag", "")).strip('"')


def _utf8(name: str) -> bool:
    try:
        name.encode()
    except UnicodeEncodeError:  # a tar keeps bytes that are not UTF-8 as surrogates
        return False
    return True


def _content_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def progress_of(client: redis.Redis, tenant: str, item_id: int) -> dict[str, str]:
    raw = client.hgetall(keyspace.key(Family.ARCHIVE, tenant, item_id))
    return {k.decode(): v.decode() for k, v in raw.items()}  # type: ignore[union-attr]
