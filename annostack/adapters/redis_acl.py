"""Tenant ACL users in Redis (ACL SETUSER / GETUSER / DELUSER), for the operator.

A tenant user may run `keyspace.TENANT_COMMANDS` on `keyspace.tenant_key_patterns` and publish
on `keyspace.tenant_channel_patterns`; nothing else. Passwords are sent as SHA-256 (`#<hex>`),
so they never appear in Redis' ACL file or in `ACL LIST`.

A user may hold two passwords for a while: during a credential rotation the new one is added
first, and the old one removed once every worker runs with the new Secret. Redis keeps
connections that authenticated with a removed password open; the rotation relies on the
rollout replacing the pods that hold them.

Users created at run time live in memory: with an `aclfile` the operator persists them with
ACL SAVE after every change; without one (a Redis configured by `user` lines) the drift pass
re-creates them after a Redis restart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis

from annostack.domain import keyspace
from annostack.domain.errors import Backend, BackendRejected, BackendUnavailable

NO_ACL_FILE = "not configured to use an ACL file"


def password_hash(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


@dataclass(frozen=True)
class TenantAcl:
    """What one tenant's Redis user is allowed."""

    keys: frozenset[str]
    channels: frozenset[str]
    commands: frozenset[str]

    @classmethod
    def of(cls, tenant: str) -> TenantAcl:
        return cls(
            keys=frozenset(keyspace.tenant_key_patterns(tenant)),
            channels=frozenset(keyspace.tenant_channel_patterns(tenant)),
            commands=frozenset(keyspace.TENANT_COMMANDS),
        )

    def set_user(self, client: redis.Redis, name: str, password_hashes: Iterable[str]) -> None:
        """ACL SETUSER <name> reset on #<hash>... ~<key>... &<channel>... -@all +<cmd>..."""
        client.acl_setuser(
            name,
            enabled=True,
            reset=True,
            hashed_passwords=[f"+{digest}" for digest in sorted(password_hashes)],
            keys=sorted(self.keys),
            channels=sorted(self.channels),
            categories=["-@all"],
            commands=[f"+{command}" for command in sorted(self.commands)],
        )


class RedisAcl:
    def __init__(self, url: str) -> None:
        self.redis = redis.Redis.from_url(url, socket_timeout=5, decode_responses=True)

    def close(self) -> None:
        self.redis.close()

    @contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        try:
            yield
        except redis.ResponseError as error:
            raise BackendRejected(Backend.REDIS, f"{what}: {error}") from error
        except redis.RedisError as error:
            raise BackendUnavailable(Backend.REDIS, f"{what}: {type(error).__name__}") from error

    def user(self, name: str) -> dict[str, object] | None:
        """ACL GETUSER as redis-py parses it, or None."""
        with self._translated("ACL GETUSER"):
            found = self.redis.acl_getuser(name)
        return dict(found) if found else None

    def ensure_user(
        self, name: str, acl: TenantAcl, password: str, keep_other_passwords: bool = False
    ) -> bool:
        """The user has these permissions and `password` — and no other password, unless
        `keep_other_passwords` (a rotation rolling out). True if it had to change."""
        current = self.user(name)
        hashes = {password_hash(password)}
        if keep_other_passwords and current is not None:
            hashes |= _values(current, "passwords", "")
        if self._matches(current, acl, hashes):
            return False
        with self._translated("ACL SETUSER"):
            acl.set_user(self.redis, name, hashes)
        self._save()
        return True

    @staticmethod
    def _matches(current: dict[str, object] | None, acl: TenantAcl, hashes: set[str]) -> bool:
        if current is None:
            return False
        return (
            bool(current.get("enabled"))
            and _values(current, "passwords", "") == hashes
            and _values(current, "keys", "~") == acl.keys
            and _values(current, "channels", "&") == acl.channels
            and _values(current, "commands", "+") == acl.commands
            and _values(current, "categories", "") == {"-@all"}
        )

    def delete_user(self, name: str) -> bool:
        with self._translated("ACL DELUSER"):
            deleted = bool(self.redis.acl_deluser(name))
        if deleted:
            self._save()
        return deleted

    def _save(self) -> None:
        try:
            with self._translated("ACL SAVE"):
                self.redis.acl_save()
        except BackendRejected as error:
            if NO_ACL_FILE not in str(error):
                raise


def _values(user: dict[str, object], field: str, prefix: str) -> set[str]:
    """One field of ACL GETUSER as a set, without its `~`/`&`/`+` prefix."""
    raw = user.get(field) or []
    items = raw.split() if isinstance(raw, str) else list(raw)  # type: ignore[call-overload]
    return {str(item).removeprefix(prefix) for item in items}
