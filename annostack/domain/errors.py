"""annostack's error hierarchy. Backend errors are translated into these once, in the adapters.

    AnnostackError
    ├── InvalidSpec            a resource's spec cannot be acted on (permanent; user fixes it)
    ├── NotFound               404: no such object for this tenant (no existence leak)
    ├── Conflict               409: duplicate name, lock held by someone else
    ├── PreconditionFailed     412: stale ETag, nothing was written
    ├── PreconditionRequired   428: a write without If-Match / If-None-Match
    ├── TooLarge               413: over a documented size limit
    ├── Invalid                422: well-formed but not acceptable
    │   └── InvalidFields          422 listing each field's problem (FastAPI's shape), capped
    ├── RateLimited            429: over the tenant's request rate (Retry-After)
    ├── Overloaded             503: this replica cannot take the work right now (Retry-After)
    ├── WorkloadNotReady       pods that should run do not (yet); `reason` says why
    ├── QuotaExceeded          403: the tenant's plan does not allow more (maxDatasets)
    │   └── InsufficientStorage    403: the tenant's storage quota (plan.storage) is used up
    └── BackendError           a backend call failed; `backend` names which
        ├── BackendUnavailable     cannot reach it, or it answered 5xx/timeout (temporary: retry)
        └── BackendRejected        it refused the request (permanent until something changes)

Temporary versus permanent is a type, not a string: the operator turns BackendUnavailable into
a retry with backoff and a condition naming the backend; the API into 503; a worker into a
redelivery. Messages never carry credentials.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Backend(StrEnum):
    KUBERNETES = "Kubernetes"
    DATABASE = "TiDB"
    OBJECT_STORE = "S3"
    PULSAR = "Pulsar"
    REDIS = "Redis"


class AnnostackError(Exception):
    """Base of every error annostack raises on purpose."""


class InvalidSpec(AnnostackError):
    """A resource's spec is invalid in a way the schema could not catch."""


class WorkloadNotReady(AnnostackError):
    """A Deployment's pods are not available; the operator keeps checking (temporary)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class BackendError(AnnostackError):
    def __init__(self, backend: Backend, message: str) -> None:
        super().__init__(f"{backend}: {message}")
        self.backend = backend
        self.detail = message


class BackendUnavailable(BackendError):
    """The backend could not be reached or failed transiently; retrying may succeed."""


class BackendRejected(BackendError):
    """The backend refused the request; retrying the same request will not help."""


class NotFound(AnnostackError):
    """No such object for this tenant (also said when it belongs to another tenant)."""


class Conflict(AnnostackError):
    """The request conflicts with existing state (a duplicate name, a held lock)."""


class PreconditionFailed(AnnostackError):
    """The client's version (ETag) is stale, or the object exists when it must not."""


class PreconditionRequired(AnnostackError):
    """A write that could overwrite someone else's work came without If-Match/If-None-Match."""


class TooLarge(AnnostackError):
    """The payload exceeds a documented limit."""


class Invalid(AnnostackError):
    """The payload is well-formed but not acceptable (schema, values)."""


class InvalidFields(Invalid):
    """A request's fields are wrong: `errors` are the first few problems of `total`."""

    def __init__(self, errors: list[dict[str, Any]], total: int) -> None:
        super().__init__(errors, total)  # both in args: it crosses process boundaries pickled
        self.errors = errors
        self.total = total

    def __str__(self) -> str:
        listed = "; ".join(".".join(map(str, e["loc"])) + f": {e['msg']}" for e in self.errors)
        more = self.total - len(self.errors)
        return listed + (f" (and {more} more)" if more else "")


class RateLimited(AnnostackError):
    """Over the tenant's request rate; `retry_after` says when to come back."""

    def __init__(self, retry_after: float, reason: str = "rate limit exceeded") -> None:
        super().__init__(f"{reason}; retry after {retry_after:.1f}s")
        self.retry_after = retry_after


class Overloaded(AnnostackError):
    """This API replica cannot do the work now (its parser restarted); retrying may succeed."""


class QuotaExceeded(AnnostackError):
    """The tenant's plan allows no more of this; the message names the limit."""


class InsufficientStorage(QuotaExceeded):
    """The tenant's storage quota is used up; nothing was written.

    403, not 507: the client (its tenant's usage) caused it and can act on it (delete data,
    raise the plan), and 5xx stays reserved for the platform failing.
    """


_HTTP_STATUS: tuple[tuple[type[AnnostackError], int], ...] = (
    (QuotaExceeded, 403),
    (NotFound, 404),
    (Conflict, 409),
    (PreconditionFailed, 412),
    (PreconditionRequired, 428),
    (TooLarge, 413),
    (Invalid, 422),
    (RateLimited, 429),
    (Overloaded, 503),
    (InvalidSpec, 422),
    (BackendUnavailable, 503),
    (BackendRejected, 502),
)


def http_status(error: AnnostackError) -> int:
    """The HTTP status that reports `error` (the API and per-document batch results)."""
    return next((code for kind, code in _HTTP_STATUS if isinstance(error, kind)), 500)
