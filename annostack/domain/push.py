"""Push: destinations, who may subscribe to them, and the events sent there.

Destinations are tenant-scoped STOMP topics (a tenant name is a DNS label, so it has no dots):

* ``/topic/tenant.<tenant>.user.<user-id>`` — one user (the id may itself contain dots);
* ``/topic/tenant.<tenant>.team.<team-id>`` — the members of one team;
* ``/topic/tenant.<tenant>.global`` — everyone connected for that tenant.

A browser session (a user, with the teams its session token lists) may subscribe to its own
user destination, its teams' and its tenant's global one; an API token (a service account)
only to the global one. Nothing is ever shared across tenants.

Events are JSON objects with a ``type``; the body of every MESSAGE frame is one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from pydantic import Field

from annostack.domain.errors import AnnostackError
from annostack.domain.models import CamelModel

TOPIC_PREFIX = "/topic/tenant."


class Forbidden(AnnostackError):
    """The principal may not subscribe to that destination."""


class Scope(StrEnum):
    USER = "user"
    TEAM = "team"
    GLOBAL = "global"


@dataclass(frozen=True)
class Destination:
    tenant: str
    scope: Scope
    id: str = ""  # user or team id; empty for the global destination

    @classmethod
    def user(cls, tenant: str, user_id: str) -> Destination:
        return cls(tenant, Scope.USER, user_id)

    @classmethod
    def team(cls, tenant: str, team_id: str) -> Destination:
        return cls(tenant, Scope.TEAM, team_id)

    @classmethod
    def everyone(cls, tenant: str) -> Destination:
        return cls(tenant, Scope.GLOBAL)

    @classmethod
    def parse(cls, text: str) -> Destination:
        """``/topic/tenant.<t>.<scope>[.<id>]`` -> Destination; Forbidden for anything else."""
        if not text.startswith(TOPIC_PREFIX):
            raise Forbidden(f"unknown destination {text[:80]!r}")
        tenant, _, rest = text.removeprefix(TOPIC_PREFIX).partition(".")
        scope, _, ident = rest.partition(".")
        if not tenant or scope not in Scope.__members__.values():
            raise Forbidden(f"unknown destination {text[:80]!r}")
        if (scope == Scope.GLOBAL) != (ident == ""):
            raise Forbidden(f"unknown destination {text[:80]!r}")
        return cls(tenant, Scope(scope), ident)

    def __str__(self) -> str:
        suffix = f".{self.id}" if self.id else ""
        return f"{TOPIC_PREFIX}{self.tenant}.{self.scope.value}{suffix}"


@dataclass(frozen=True)
class Subscriber:
    """What the push endpoint knows of an authenticated client."""

    tenant: str
    user: str | None  # None for an API token (service account)
    teams: frozenset[str] = frozenset()
    expires_at: float | None = None  # Unix time its credentials expire (session tokens)


def check_may_subscribe(subscriber: Subscriber, destination: Destination) -> None:
    """Raise Forbidden unless the subscriber may receive what is sent to `destination`."""
    allowed = destination.tenant == subscriber.tenant and (
        destination.scope == Scope.GLOBAL
        or (destination.scope == Scope.USER and destination.id == subscriber.user)
        or (destination.scope == Scope.TEAM and destination.id in subscriber.teams)
    )
    if not allowed:
        raise Forbidden(f"not allowed to subscribe to {destination}")


# -- events -----------------------------------------------------------------------------------


class Event(CamelModel):
    """Base of every pushed event; `at` is the publisher's wall clock (Unix seconds)."""

    type: str
    at: float = Field(default=0.0, description="When it was published (Unix time, seconds).")


class UploadProgress(Event):
    type: Literal["upload.progress"] = "upload.progress"
    item_id: int
    state: Literal["uploaded", "importing", "imported"]
    done: int | None = None
    total: int | None = None


class ProcessingProgress(Event):
    type: Literal["processing.progress"] = "processing.progress"
    item_id: int
    topic: str
    result: Literal["ok", "failed"]
    processed: int | None = Field(default=None, description="The tenant's running count.")


class JobProgress(Event):
    """A ProcessingJob's counts changed (published by the operator as it folds them)."""

    type: Literal["job.progress"] = "job.progress"
    job: str = Field(description="The ProcessingJob's name in the tenant's namespace.")
    dataset: str
    phase: str
    total: int
    succeeded: int
    failed: int


class ExportProgress(Event):
    """An export job's worker wrote more of the export, or finished (best effort)."""

    type: Literal["export.progress"] = "export.progress"
    job: str = Field(description="The ProcessingJob's name in the tenant's namespace.")
    format: str
    state: Literal["exporting", "exported", "failed"]
    done: int
    total: int


class LockChanged(Event):
    type: Literal["lock.acquired", "lock.released"]
    item_id: int
    holder: str


class TeamMembershipChanged(Event):
    type: Literal["team.membership"] = "team.membership"
    team_id: str
    user_id: str
    change: Literal["added", "removed"]


class TaskAssignmentChanged(Event):
    type: Literal["task.assignment"] = "task.assignment"
    task_id: str
    assignee: str | None
    previous_assignee: str | None = None
