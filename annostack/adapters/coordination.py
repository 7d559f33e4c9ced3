"""Redis-backed coordination for the API: rate limits and per-item edit locks.

Rate limit: a fixed one-second window per tenant (INCR + EXPIRE in one pipeline) — cheap, and
good enough to stop a runaway client; Retry-After tells it when the window ends.
Failed authentications: a counter per client address whose window starts at its first
failure (SET NX EX, INCR, PTTL in one transaction), shared by every replica.
Locks: `SET key holder NX PX ttl`; heartbeat and release only by the holder (checked and
changed atomically in Lua), so a stale client can neither extend nor drop a lock it lost.
"""

from __future__ import annotations

import time

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from annostack.domain import keyspace
from annostack.domain.errors import Backend, BackendUnavailable

RELEASE_IF_HOLDER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
EXTEND_IF_HOLDER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class Coordination:
    def __init__(self, url: str) -> None:
        # A pooled connection can be dead (Redis restarted, a connection cut): ping one idle
        # for 10 s before use, and retry a command that lost its connection on a new one.
        # Without both, every request that drew a dead connection answered 503 "Redis:
        # ConnectionError" ("Error UNKNOWN while writing to socket"), once per pooled
        # connection. A retried INCR of the rate counter can count a request twice: harmless.
        self.redis = redis.Redis.from_url(
            url,
            decode_responses=True,
            health_check_interval=10,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        )

    async def close(self) -> None:
        await self.redis.aclose()

    async def within_rate(self, tenant: str, per_second: int) -> float | None:
        """None if the request may go on, else seconds until the window resets."""
        window = int(time.time())
        key = keyspace.key(keyspace.Family.RATE, tenant, window)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, 2)
                count, _ = await pipe.execute()
        except redis.RedisError as error:
            raise BackendUnavailable(Backend.REDIS, type(error).__name__) from error
        return None if count <= per_second else window + 1 - time.time()

    async def count_auth_failure(self, address: str, window_seconds: int) -> tuple[int, float]:
        """Count one failed authentication from `address`: failures so far, seconds left."""
        key = f"annostack:authfail:{address}"
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.set(key, 0, nx=True, ex=window_seconds)
                pipe.incr(key)
                pipe.pttl(key)
                _, count, ttl_ms = await pipe.execute()
        except redis.RedisError as error:
            raise BackendUnavailable(Backend.REDIS, type(error).__name__) from error
        return int(count), max(int(ttl_ms), 0) / 1000

    @staticmethod
    def _lock_key(tenant: str, item_id: int) -> str:
        return keyspace.key(keyspace.Family.LOCK, tenant, int(item_id))

    async def acquire(
        self, tenant: str, item_id: int, holder: str, ttl_ms: int
    ) -> tuple[str | None, bool]:
        """Take the lock, or renew it if `holder` has it: (who holds it now, newly taken?)."""
        key = self._lock_key(tenant, item_id)
        try:
            if await self.redis.set(key, holder, nx=True, px=ttl_ms):
                return holder, True
            if await self.redis.eval(EXTEND_IF_HOLDER, 1, key, holder, ttl_ms):
                return holder, False
            return _text(await self.redis.get(key)), False
        except redis.RedisError as error:
            raise BackendUnavailable(Backend.REDIS, type(error).__name__) from error

    async def release(self, tenant: str, item_id: int, holder: str) -> bool:
        key = self._lock_key(tenant, item_id)
        try:
            return bool(await self.redis.eval(RELEASE_IF_HOLDER, 1, key, holder))
        except redis.RedisError as error:
            raise BackendUnavailable(Backend.REDIS, type(error).__name__) from error

    async def holders(self, tenant: str, item_ids: list[int]) -> dict[int, str]:
        """Current lock holders of these items (one MGET); unlocked items are absent."""
        if not item_ids:
            return {}
        keys = [self._lock_key(tenant, item_id) for item_id in item_ids]
        try:
            values = await self.redis.mget(keys)
        except redis.RedisError as error:
            raise BackendUnavailable(Backend.REDIS, type(error).__name__) from error
        return {
            item_id: text
            for item_id, value in zip(item_ids, values, strict=True)
            if (text := _text(value)) is not None
        }

    async def holder(self, tenant: str, item_id: int) -> str | None:
        try:
            return _text(await self.redis.get(self._lock_key(tenant, item_id)))
        except redis.RedisError as error:
            raise BackendUnavailable(Backend.REDIS, type(error).__name__) from error


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
