"""Worker settings (`ANNOSTACK_WORKER_*`); the tenant's connection comes from its Secret."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ANNOSTACK_WORKER_", extra="ignore")

    topics: Annotated[list[str], NoDecode] = Field(
        default=["thumbnails", "pointclouds", "media", "archives", "exports"],
        description="Processing topics to consume.",
    )
    max_attempts: int = Field(default=5, ge=1, description="Tries before the dead-letter topic.")
    retry_delay_ms: int = Field(default=10_000, ge=100, description="Redelivery delay.")
    backend_pause_ms: int = Field(
        default=1_000,
        ge=0,
        description="After a message failed because a backend is down, wait this long before "
        "the next one (the queue is not run through while the outage lasts).",
    )
    split_above_points: int = Field(
        default=2_000_000, ge=1, description="Clouds larger than this are also split in tiles."
    )
    bev_range_metres: float = Field(
        default=50.0,
        ge=1.0,
        le=100_000.0,
        description="BEV previews show this many metres from the sensor (or cloud centre) "
        "to each edge; the scale is written into every PNG.",
    )
    archive_budget_bytes: int = Field(
        default=2 * 2**40,
        ge=1,
        description="An archive may unpack to at most this many bytes; the tenant's worker "
        "Deployment sets it to the plan's storage quota.",
    )
    port: int = Field(default=8080, description="/healthz, /readyz and /metrics.")
    bind_address: str = Field(default="0.0.0.0", description="Address of that port.")  # noqa: S104

    @field_validator("topics", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return (
            [t.strip() for t in value.split(",") if t.strip()] if isinstance(value, str) else value
        )
