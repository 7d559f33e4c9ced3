"""Status conditions in the standard Kubernetes shape, as Rancher, Fleet and Argo CD read them.

Every condition type is phrased so that ``True`` is the healthy state (``Ready``,
``DatabaseReady``...), except the two abnormal-true ones kstatus defines: ``Reconciling`` (work
in progress) and ``Stalled`` (needs a person). Those are removed rather than set to False when
they no longer apply, so a healthy object never shows a False condition.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from annostack.domain.models import CamelModel


class ConditionType(StrEnum):
    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    DATABASE_READY = "DatabaseReady"
    BUCKET_READY = "BucketReady"
    MESSAGING_READY = "MessagingReady"
    WORKERS_READY = "WorkersReady"
    NAMESPACE_READY = "NamespaceReady"
    COMPLETE = "Complete"
    FAILED = "Failed"


# Conditions that are only present while true (kstatus' "abnormal-true" polarity).
ABNORMAL_TRUE = frozenset({ConditionType.RECONCILING, ConditionType.STALLED})


class Condition(CamelModel):
    """One observation about the object's state."""

    type: str = Field(description="Condition type, e.g. Ready or DatabaseReady.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason code for machines.")
    message: str = Field(default="", description="Human-readable detail; never holds secrets.")
    last_transition_time: datetime = Field(
        description="When the status last changed (not when it was last checked)."
    )
    observed_generation: int | None = Field(
        default=None, description="metadata.generation this condition was computed for."
    )


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def set_condition(
    conditions: list[Condition],
    type_: ConditionType,
    healthy: bool,
    reason: str,
    message: str = "",
    generation: int | None = None,
) -> list[Condition]:
    """Return the list with one condition updated; keep lastTransitionTime if status is same."""
    if type_ in ABNORMAL_TRUE and not healthy:
        return [c for c in conditions if c.type != type_]
    status: Literal["True", "False"] = "True" if healthy else "False"
    previous = next((c for c in conditions if c.type == type_), None)
    changed_at = previous.last_transition_time if previous and previous.status == status else now()
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=changed_at,
        observed_generation=generation,
    )
    return (
        [updated if c.type == type_ else c for c in conditions]
        if previous
        else [
            *conditions,
            updated,
        ]
    )


# Conditions are a map keyed by type: server-side apply and strategic merges treat them so.
Conditions = Annotated[
    list[Condition],
    Field(
        description="Ready, Reconciling, Stalled and one condition per backend.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    ),
]
