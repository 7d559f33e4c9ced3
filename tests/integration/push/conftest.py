"""Two API replicas sharing the real Redis, a provisioned tenant, session tokens, the JS client.

The replicas are two apps served by real uvicorn servers (as two pods would be), each with its
own relay subscription; nothing but Redis connects them.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from annostack.adapters.push import PushPublisher, PushRelay
from annostack.apps.main import create_app
from annostack.apps.settings import ApiSettings
from annostack.apps.testing import serve
from annostack.domain.tenants import DeletionPolicy, TenantSpec
from annostack.services.tenancy import SessionTokens
from annostack.services.tenants import TenantProvisioner
from annostack.settings import Settings
from tests.integration.conftest import provision

JS_CLIENT = Path(__file__).parent / "js"
NODE_CACHE = Path.home() / ".cache" / "annostack" / "node"
# Short, so that the silent-client test takes about a second, not the production 20 s.
HEARTBEAT_MS = 500


@dataclass(frozen=True)
class Replica:
    http: httpx.Client
    app: FastAPI

    @property
    def relay(self) -> PushRelay:
        relay: PushRelay = self.app.state.annostack.relay
        return relay

    @property
    def ws_url(self) -> str:
        return str(self.http.base_url).replace("http://", "ws://").rstrip("/") + "/v1/push"


@pytest.fixture(scope="session")
def push_settings() -> ApiSettings:
    return ApiSettings(gateway="user", push_heartbeat_ms=HEARTBEAT_MS, push_heartbeat_grace=2.0)


@pytest.fixture(scope="session")
def replicas(stack_settings: Settings, push_settings: ApiSettings) -> Iterator[list[Replica]]:
    apps = [create_app(stack_settings, push_settings) for _ in range(2)]
    with serve(apps[0]) as a, serve(apps[1]) as b:
        yield [Replica(a, apps[0]), Replica(b, apps[1])]


@pytest.fixture(scope="session")
def tenant(provisioner: TenantProvisioner) -> Iterator[str]:
    name = f"push{uuid.uuid4().hex[:8]}"
    provision(provisioner, name, TenantSpec(display_name=name))
    yield name
    provisioner.teardown(name, DeletionPolicy.DELETE)


@pytest.fixture(scope="session")
def sessions(push_settings: ApiSettings) -> SessionTokens:
    key = push_settings.session_key.get_secret_value()
    return SessionTokens(key, push_settings.session_max_age_seconds)


@pytest.fixture
def alice(sessions: SessionTokens, tenant: str) -> str:
    return sessions.issue(tenant, "alice", teams=["red"])


@pytest.fixture(scope="session")
def publisher(stack_settings: Settings) -> Iterator[PushPublisher]:
    """What a worker or the operator holds (the synchronous one)."""
    publisher = PushPublisher.from_url(stack_settings.redis.url.get_secret_value())
    yield publisher
    publisher.redis.close()


@pytest.fixture(scope="session")
def js_client() -> Path:
    """client.mjs beside @stomp/stompjs and ws, installed by `npm ci` from the committed
    lockfile into a cache keyed by it (never into the repository; ES modules resolve packages
    from the script's own directory, hence the copy). No node or npm is a failure."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are needed for the @stomp/stompjs tests"
    lock = (JS_CLIENT / "package-lock.json").read_bytes()
    target = NODE_CACHE / hashlib.sha256(lock).hexdigest()[:16]
    if not (target / "node_modules" / "@stomp" / "stompjs").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(JS_CLIENT / name, target / name)
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=target, check=True)
    shutil.copy(JS_CLIENT / "client.mjs", target / "client.mjs")
    return target / "client.mjs"
