"""What the API process holds for its lifetime: clients and caches, built at start-up."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from annostack.adapters.coordination import Coordination
from annostack.adapters.kube import Kube
from annostack.adapters.objects import ObjectIO, Presigner
from annostack.adapters.push import AsyncPushPublisher, PushRelay
from annostack.adapters.queue import Publisher
from annostack.apps.logins import FailedLogins
from annostack.apps.offload import Offload
from annostack.apps.push.hub import Hub
from annostack.apps.settings import ApiSettings
from annostack.services.tenancy import NEGATIVE_TTL_SECONDS, SessionTokens, TenantDirectory
from annostack.settings import Settings

# Many tenants' documents in flight at once; the object store is the limit, not the client.
MAX_CONNECTIONS = 256


@dataclass
class AppState:
    settings: Settings
    api: ApiSettings
    directory: TenantDirectory
    objects: ObjectIO
    publisher: Publisher
    sessions: SessionTokens
    http: aiohttp.ClientSession
    coordination: Coordination
    hub: Hub
    relay: PushRelay
    push: AsyncPushPublisher
    offload: Offload
    failed_logins: FailedLogins

    @classmethod
    def build(cls, settings: Settings, api: ApiSettings) -> AppState:
        http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
            # `sock_connect`, not `connect`: aiohttp's `connect` counts the wait for a pooled
            # connection too, and 64 batch loads queue thousands of requests for the 256
            # connections; those waiting 5 s failed (issue 16). Only the TCP connect is bounded.
            timeout=aiohttp.ClientTimeout(total=60, sock_connect=5),
            auto_decompress=False,
        )
        coordination = Coordination(settings.redis.url.get_secret_value())
        hub = Hub()
        hub.relay = relay = PushRelay(settings.redis.url.get_secret_value(), hub.deliver)
        return cls(
            settings=settings,
            api=api,
            directory=TenantDirectory(
                Kube(settings.kubernetes), settings.db, remember_missing=NEGATIVE_TTL_SECONDS
            ),
            objects=ObjectIO(Presigner(settings.s3), http),
            publisher=Publisher(
                settings.pulsar.service_url, settings.pulsar.token.get_secret_value()
            ),
            sessions=SessionTokens(api.session_key.get_secret_value(), api.session_max_age_seconds),
            http=http,
            coordination=coordination,
            hub=hub,
            relay=relay,
            push=AsyncPushPublisher(coordination.redis),
            offload=Offload(api.parse_workers, api.parse_memory_bytes),
            failed_logins=FailedLogins(
                coordination, api.auth_failures_allowed, api.auth_failure_window_seconds
            ),
        )

    async def close(self) -> None:
        self.offload.close()  # first: nothing below may keep the worker processes alive
        await self.http.close()
        await self.coordination.close()
        self.publisher.close()
        self.directory.close()
