"""A ProcessingJob's progress in Redis, written by workers and read by the operator.

Counting is by set membership, not by increments: a job's messages are identified by item id,
and a redelivered message (a worker crashed after writing outputs, before acknowledging) or a
batch published twice (the operator restarted mid-fan-out) adds a member that is already there.
So the counts in `status` are exact even though delivery is at-least-once.

Keys, per job (the job's uid, so a re-created job of the same name starts from zero):

* ``annostack:job:<tenant>:<uid>:expected``  item ids published (added *before* sending)
* ``...:succeeded`` and ``...:failed``       item ids finished either way
* ``...:state``                              hash: ``cancelled``, ``import`` (pending, done,
                                             failed) and ``import-reason``; for an export
                                             ``export`` (pending, running, done, failed),
                                             ``export-done``, ``export-total``,
                                             ``export-reason`` and ``export-report`` (JSON)
* ``...:skipped:<reason>``                   names of files the job left out, per SkipReason
                                             (names, so a redelivered import adds nothing)

Keys expire after `RETENTION_SECONDS` without writes, so a job deleted while the operator was
down leaves nothing behind for long. A deleted job keeps only its cancelled mark, for a week.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

import redis

from annostack.domain import keyspace
from annostack.domain.errors import Backend, BackendError, BackendRejected, BackendUnavailable
from annostack.domain.items import SkipReason

RETENTION_SECONDS = 30 * 86400
RETIRED_SECONDS = 7 * 86400
SKIP_EXAMPLES = 3  # names shown per reason in the job's status


class ImportState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class ExportState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class ExportCounts:
    """An export's progress as its worker last wrote it."""

    state: ExportState | None
    done: int = 0
    total: int = 0
    reason: str = ""
    report: str = ""  # the ExportReport as JSON, once done


@dataclass(frozen=True)
class JobCounts:
    expected: int
    succeeded: int
    failed: int
    cancelled: bool
    import_state: ImportState | None
    import_reason: str
    skipped: dict[str, int] = field(default_factory=dict)  # per SkipReason
    skipped_examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed


class JobProgress:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    @staticmethod
    def _key(tenant: str, job: str, part: str) -> str:
        return keyspace.key(keyspace.Family.JOB, tenant, job, part)

    def _add(self, tenant: str, job: str, part: str, item_ids: Iterable[int]) -> None:
        self._add_members(tenant, job, part, [str(int(item)) for item in item_ids])

    def _add_members(self, tenant: str, job: str, part: str, members: list[str]) -> None:
        if not members:
            return
        key = self._key(tenant, job, part)
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.sadd(key, *members)
                pipe.expire(key, RETENTION_SECONDS)
                pipe.execute()
        except redis.RedisError as error:
            raise _translated(error) from error

    def expect(self, tenant: str, job: str, item_ids: Iterable[int]) -> None:
        self._add(tenant, job, "expected", item_ids)

    def succeeded(self, tenant: str, job: str, item_id: int) -> None:
        self._add(tenant, job, "succeeded", [item_id])

    def failed(self, tenant: str, job: str, item_id: int) -> None:
        self._add(tenant, job, "failed", [item_id])

    def skipped(self, tenant: str, job: str, reason: SkipReason, names: Iterable[str]) -> None:
        self._add_members(tenant, job, f"skipped:{reason}", list(names))

    def _set_state(self, tenant: str, job: str, values: dict[str, str]) -> None:
        key = self._key(tenant, job, "state")
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.hset(key, mapping=values)  # type: ignore[arg-type]
                pipe.expire(key, RETENTION_SECONDS)
                pipe.execute()
        except redis.RedisError as error:
            raise _translated(error) from error

    def cancel(self, tenant: str, job: str) -> None:
        self._set_state(tenant, job, {"cancelled": "1"})

    def import_finished(self, tenant: str, job: str, state: ImportState, reason: str = "") -> None:
        self._set_state(tenant, job, {"import": state.value, "import-reason": reason[:500]})

    def export_progress(
        self, tenant: str, job: str, state: ExportState, done: int = 0, total: int = 0
    ) -> None:
        values = {"export": state.value, "export-done": str(done), "export-total": str(total)}
        self._set_state(tenant, job, values)

    def export_finished(
        self, tenant: str, job: str, state: ExportState, reason: str = "", report: str = "",
        done: int | None = None,
    ) -> None:  # fmt: skip
        """The export's end, in one write: its state, why it failed or its report (JSON)."""
        values = {"export": state.value, "export-reason": reason[:500], "export-report": report}
        if done is not None:
            values["export-done"] = str(done)
        self._set_state(tenant, job, values)

    def export_counts(self, tenant: str, job: str) -> ExportCounts:
        try:
            raw = self.redis.hgetall(self._key(tenant, job, "state"))
        except redis.RedisError as error:
            raise _translated(error) from error
        state = {_text(k): _text(v) for k, v in raw.items()}
        found = state.get("export")
        return ExportCounts(
            state=ExportState(found) if found else None,
            done=int(state.get("export-done") or 0),
            total=int(state.get("export-total") or 0),
            reason=state.get("export-reason", ""),
            report=state.get("export-report", ""),
        )

    def is_cancelled(self, tenant: str, job: str) -> bool:
        try:
            return bool(self.redis.hexists(self._key(tenant, job, "state"), "cancelled"))
        except redis.RedisError as error:
            raise _translated(error) from error

    def counts(self, tenant: str, job: str) -> JobCounts:
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                for part in ("expected", "succeeded", "failed"):
                    pipe.scard(self._key(tenant, job, part))
                pipe.hgetall(self._key(tenant, job, "state"))
                for reason in SkipReason:
                    pipe.scard(self._key(tenant, job, f"skipped:{reason}"))
                    pipe.srandmember(self._key(tenant, job, f"skipped:{reason}"), SKIP_EXAMPLES)
                expected, succeeded, failed, state, *skips = pipe.execute()
        except redis.RedisError as error:
            raise _translated(error) from error
        state = {_text(k): _text(v) for k, v in state.items()}
        imported = state.get("import")
        return JobCounts(
            expected=int(expected),
            succeeded=int(succeeded),
            failed=int(failed),
            cancelled="cancelled" in state,
            import_state=ImportState(imported) if imported else None,
            import_reason=state.get("import-reason", ""),
            skipped={
                reason: int(count) for reason, count in zip(SkipReason, skips[::2], strict=True)
            },
            skipped_examples={
                reason: sorted(_text(name) for name in names)
                for reason, names in zip(SkipReason, skips[1::2], strict=True)
            },
        )

    def retire(self, tenant: str, job: str) -> None:
        """The job is gone: drop its counts, but keep it marked cancelled for a while.

        Messages of a deleted job may still be queued (it was deleted while running, or its
        archive import is still publishing); the mark makes the workers skip them.
        """
        parts = ("expected", "succeeded", "failed", *(f"skipped:{r}" for r in SkipReason))
        state = self._key(tenant, job, "state")
        try:
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(*(self._key(tenant, job, part) for part in parts))
                pipe.hset(state, "cancelled", "1")
                pipe.expire(state, RETIRED_SECONDS)
                pipe.execute()
        except redis.RedisError as error:
            raise _translated(error) from error


def refused(error: redis.RedisError) -> bool:
    """Redis answered and said no (NOPERM: a key outside the tenant's ACL user, WRONGTYPE, a
    bad command): a bug or a permission, not an outage, so retrying the same call will not
    help. READONLY (a replica mid-failover) is the exception: it passes."""
    return isinstance(error, redis.ResponseError) and not isinstance(
        error, redis.exceptions.ReadOnlyError
    )


def _translated(error: redis.RedisError) -> BackendError:
    if refused(error):
        return BackendRejected(Backend.REDIS, f"job progress: {error}")
    return BackendUnavailable(Backend.REDIS, f"job progress: {error}")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
