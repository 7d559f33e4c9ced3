"""annostack's error hierarchy. Backend errors are translated into these once, in the adapters.

    AnnostackError
    ├── InvalidSpec            a resource's spec cannot be acted on (permanent; user fixes it)
    └── BackendError           a backend call failed; `backend` names which
        ├── BackendUnavailable     cannot reach it, or it answered 5xx/timeout (temporary: retry)
        └── BackendRejected        it refused the request (permanent until something changes)

Temporary versus permanent is a type, not a string: the operator turns BackendUnavailable into
a retry with backoff and a condition naming the backend; the API into 503; a worker into a
redelivery. Messages never carry credentials.
"""

from __future__ import annotations

from enum import StrEnum


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


class BackendError(AnnostackError):
    def __init__(self, backend: Backend, message: str) -> None:
        super().__init__(f"{backend}: {message}")
        self.backend = backend
        self.detail = message


class BackendUnavailable(BackendError):
    """The backend could not be reached or failed transiently; retrying may succeed."""


class BackendRejected(BackendError):
    """The backend refused the request; retrying the same request will not help."""
