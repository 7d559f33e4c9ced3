"""Settings of the API process (`ANNOSTACK_API_*`)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from annostack.settings import DEV_ONLY_PREFIX, Environment, refuse_default_secrets

Gateway = Literal["user", "open", "admin"]
# itsdangerous signs with HMAC-SHA1 over the key: a short key is a guessable one.
MIN_SESSION_KEY_LENGTH = 32


class ApiSettings(BaseSettings):
    """The seed's three gateways are one app, configured per deployment:

    * `user` — the annotation tool in browsers: session tokens only, a lower rate limit;
    * `open` — the developer API: API tokens only;
    * `admin` — platform operators: the admin token; issues API and session tokens.
    """

    model_config = SettingsConfigDict(
        env_prefix="ANNOSTACK_API_",
        extra="ignore",
        populate_by_name=True,
        hide_input_in_errors=True,  # the input holds the secrets themselves
    )

    environment: Environment = Field(
        default="dev",
        validation_alias="ANNOSTACK_ENVIRONMENT",  # shared with every process, no API_ prefix
        description="Outside dev, the session key must be set to a long random value.",
    )
    gateway: Gateway = Field(default="open", description="Which gateway this process serves.")
    admin_token: SecretStr = Field(
        default=SecretStr(""),
        description="Bearer token of the admin gateway; the gateway refuses to start without.",
    )

    session_key: SecretStr = Field(
        default=SecretStr(f"{DEV_ONLY_PREFIX}session-key"),
        description=(
            "Signs browser session tokens; outside dev a random value of at least "
            f"{MIN_SESSION_KEY_LENGTH} characters is required."
        ),
    )
    session_max_age_seconds: int = Field(default=3600, ge=60, description="Session lifetime.")
    max_body_bytes: int = Field(
        default=2**20,
        ge=0,
        description=(
            "Largest request body of a route without a limit of its own (413 above, counted "
            "while reading). Annotation saves have theirs: 8 MiB for one document, 64 MiB for "
            "a batch."
        ),
    )
    parse_workers: int = Field(
        default=1,
        ge=1,
        description="Processes that parse large annotation bodies, off the event loop.",
    )
    parse_memory_bytes: int = Field(
        default=512 * 2**20,
        ge=64 * 2**20,
        description="Memory one parse process may use (RLIMIT_DATA); a body needing more: 413.",
    )
    rate_limit_per_second: int = Field(
        default=200, ge=1, description="Requests per second per tenant (429 above)."
    )
    auth_failures_allowed: int = Field(
        default=60,
        ge=1,
        description=(
            "Failed authentications one client address may make per window; beyond, it gets "
            "429 until the window ends (behind a proxy, set uvicorn's FORWARDED_ALLOW_IPS so "
            "the address is the client's)."
        ),
    )
    auth_failure_window_seconds: int = Field(
        default=60, ge=1, description="Starts at an address's first failed authentication."
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
    push_max_connect_bytes: int = Field(
        default=8 * 1024,
        ge=1024,
        description=(
            "Largest frame before CONNECT has authenticated the client: anyone can open a "
            "socket, so until then a client may make the server hold only this much."
        ),
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

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> Self:
        if self.gateway == "admin" and not self.admin_token.get_secret_value():
            raise ValueError("the admin gateway needs ANNOSTACK_API_ADMIN_TOKEN")
        secrets = {"ANNOSTACK_API_SESSION_KEY": self.session_key}
        if self.gateway == "admin":
            secrets["ANNOSTACK_API_ADMIN_TOKEN"] = self.admin_token
        minimum = {"ANNOSTACK_API_SESSION_KEY": MIN_SESSION_KEY_LENGTH}
        refuse_default_secrets(self.environment, secrets, minimum)
        return self

    @property
    def ws_max_size(self) -> int:
        """uvicorn's `ws_max_size`: the largest WebSocket message it assembles for the app.

        uvicorn buffers a whole message before the app sees it; at its default (16 MiB) every
        unauthenticated push connection could park that much in the server. No client message
        needs more than one STOMP frame. Twice that: a frame a little over the limit still
        reaches the app and gets a STOMP ERROR saying why; a larger message is refused by
        uvicorn (close 1009) as its header arrives, before its payload is buffered.
        """
        return 2 * self.push_max_frame_bytes
