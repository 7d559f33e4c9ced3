"""Settings of the API process (`ANNOSTACK_API_*`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

Gateway = Literal["user", "open", "admin"]


class ApiSettings(BaseSettings):
    """The seed's three gateways are one app, configured per deployment:

    * `user` — the annotation tool in browsers: session tokens only, a lower rate limit;
    * `open` — the developer API: API tokens only;
    * `admin` — platform operators: the admin token; issues API and session tokens.
    """

    model_config = SettingsConfigDict(env_prefix="ANNOSTACK_API_", extra="ignore")

    gateway: Gateway = Field(default="open", description="Which gateway this process serves.")
    admin_token: SecretStr = Field(
        default=SecretStr(""),
        description="Bearer token of the admin gateway; the gateway refuses to start without.",
    )

    session_key: SecretStr = Field(
        default=SecretStr("dev-only-session-key"),
        description="Signs browser session tokens; set a long random value outside dev.",
    )
    session_max_age_seconds: int = Field(default=3600, ge=60, description="Session lifetime.")
    max_body_bytes: int = Field(
        default=64 * 2**20, description="Largest request body accepted (413 above)."
    )
    rate_limit_per_second: int = Field(
        default=200, ge=1, description="Requests per second per tenant (429 above)."
    )
    multipart_threshold_bytes: int = Field(
        default=64 * 2**20,
        ge=5 * 2**20,
        description="Uploads above this size are multipart, with a pre-signed URL per part.",
    )
    lock_ttl_seconds: int = Field(
        default=60, ge=5, description="An edit lock expires this long after its last heartbeat."
    )

    push_max_frame_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Largest STOMP frame a push client may send (ERROR and close above).",
    )
    push_queue_frames: int = Field(
        default=256,
        ge=1,
        description=(
            "Frames waiting for one slow push client; when full, new messages for it are "
            "dropped (it sees a gap in message-id) — others are never held up."
        ),
    )
    push_heartbeat_ms: int = Field(
        default=10_000,
        ge=100,
        description="Heart-beat interval the server offers and asks for, both directions.",
    )
    push_heartbeat_grace: float = Field(
        default=2.0,
        ge=1.0,
        description="A client silent for this many agreed intervals is dropped.",
    )
    push_max_subscriptions: int = Field(
        default=64, ge=1, description="Subscriptions one push connection may hold."
    )
    push_token_recheck_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How often a push connection made with an API token re-checks it (revocation).",
    )
