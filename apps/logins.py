"""Failed authentications per client address: guessing tokens gets 429, not more guesses.

Failures are counted in Redis, so all replicas see them. An address over the limit is also
remembered here until its window ends, and refused without asking Redis, the database or the
Kubernetes API again; successful requests cost nothing extra (a dictionary lookup).
"""

from __future__ import annotations

import time

from annostack.adapters.coordination import Coordination
from annostack.domain.errors import RateLimited

MAX_BLOCKED_ADDRESSES = 10_000  # past this the oldest are forgotten (Redis still counts them)


class FailedLogins:
    def __init__(self, coordination: Coordination, allowed: int, window_seconds: int) -> None:
        self.coordination = coordination
        self.allowed = allowed
        self.window_seconds = window_seconds
        self.blocked: dict[str, float] = {}  # address -> monotonic time its block ends

    def check(self, address: str) -> None:
        """RateLimited if `address` failed too often in its current window."""
        until = self.blocked.get(address)
        if until is None:
            return
        remaining = until - time.monotonic()
        if remaining <= 0:
            del self.blocked[address]
            return
        raise RateLimited(remaining, "too many failed authentications from this address")

    async def failed(self, address: str) -> None:
        count, remaining = await self.coordination.count_auth_failure(address, self.window_seconds)
        if count <= self.allowed:
            return
        self.blocked.pop(address, None)
        self.blocked[address] = time.monotonic() + remaining
        while len(self.blocked) > MAX_BLOCKED_ADDRESSES:
            del self.blocked[next(iter(self.blocked))]
