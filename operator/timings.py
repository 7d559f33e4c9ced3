"""Operator timings (`ANNOSTACK_OPERATOR_*`): how often drift is checked, how errors back off."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorTimings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ANNOSTACK_OPERATOR_", extra="ignore")

    drift_interval_seconds: float = Field(
        default=60.0, gt=0, description="How often every backend of every tenant is re-checked."
    )
    retry_delay_seconds: float = Field(
        default=15.0, gt=0, description="Back-off after a backend was unavailable."
    )
    delete_retries_before_stalled: int = Field(
        default=5, ge=1, description="Failed deletion attempts before the Tenant is Stalled."
    )
    scale_interval_seconds: float = Field(
        default=5.0, gt=0, description="How often each tenant's queue backlog is read."
    )
    dead_letter_interval_seconds: float = Field(
        default=60.0, gt=0, description="How often each tenant's dead-letter backlog is read."
    )
    stalled_retry_delay_seconds: float = Field(
        default=300.0, gt=0, description="Retry interval of a deletion that is Stalled."
    )
    job_interval_seconds: float = Field(
        default=2.0, gt=0, description="How often a running ProcessingJob fans out and folds."
    )
    job_fan_out_seconds: float = Field(
        default=1.0, gt=0, description="Publishing time per job step before progress is saved."
    )
    job_fan_out_batch: int = Field(
        default=500, ge=1, le=10_000, description="Items read and published per fan-out batch."
    )
    rotation_grace_seconds: float = Field(
        default=60.0,
        ge=0,
        description=(
            "After a credential rotation, the old credentials keep working at least this long "
            "(and until the workers rolled over to the new Secret)."
        ),
    )
    dataset_interval_seconds: float = Field(
        default=15.0, gt=0, description="How often a Dataset's item counts are refreshed."
    )
