"""Every Redis key and push channel annostack uses, and which of them a tenant may touch.

All keys are ``annostack:<family>:<tenant>[:<rest>]`` and all push channels
``annostack:push:/topic/tenant.<tenant>.<scope>[.<id>]``: the tenant sits at a fixed place, and
a tenant name is a DNS label (no ``:``, ``.`` or glob characters), so one glob per family
matches exactly one tenant's keys — ``annostack:job:a:*`` never matches tenant ``a-b``'s.
That is what makes a Redis ACL user per tenant possible (`tenant_key_patterns`): its workers
reach only their own job progress, counters and archive state, and publish only to their own
browsers. Rate-limit and edit-lock keys belong to the API alone; no tenant user gets them, so
nothing holding a tenant's Secret can make another tenant's saves fail (409) or throttle it.
"""

from __future__ import annotations

from enum import StrEnum

from annostack.domain.push import TOPIC_PREFIX

PREFIX = "annostack"
PUSH_CHANNEL_PREFIX = f"{PREFIX}:push:"


class Family(StrEnum):
    RATE = "rate"  # API: requests per tenant per second
    LOCK = "lock"  # API: edit locks per item
    JOB = "job"  # workers and operator: ProcessingJob progress
    PROCESSING = "processing"  # workers: processed/failed counters, recent failures
    ARCHIVE = "archive"  # workers: archive import progress (read by the API)


# Families a tenant's own workers write; the others are the API's.
TENANT_FAMILIES = (Family.JOB, Family.PROCESSING, Family.ARCHIVE)

# What a tenant's worker runs, and nothing else: no SCAN/KEYS/RANDOMKEY (they would list other
# tenants' key names), no PUBSUB CHANNELS (other tenants' destinations), no SUBSCRIBE, no
# scripts or functions, no administration. Pipelines only, no MULTI (the workers need none).
TENANT_COMMANDS = (
    # connection set-up by redis-py
    "auth", "hello", "ping", "select", "quit", "reset",
    "client|setname", "client|getname", "client|id",  # (CLIENT SETINFO is 7.2+)
    # job progress, counters, failures, archive progress
    "sadd", "scard", "sismember", "smembers",
    "hset", "hget", "hgetall", "hexists", "hincrby",
    "lpush", "ltrim", "lrange",
    "expire", "pexpire", "ttl", "exists", "get",
    # progress to the tenant's own browsers
    "publish",
)  # fmt: skip


def key(family: Family, tenant: str, *rest: str | int) -> str:
    return ":".join([PREFIX, family.value, tenant, *map(str, rest)])


def push_channel(destination: str) -> str:
    """The pub/sub channel of a push destination (``/topic/tenant.<t>.<scope>[.<id>]``)."""
    return PUSH_CHANNEL_PREFIX + destination


def tenant_key_patterns(tenant: str) -> list[str]:
    """Redis ACL key globs (without `~`) covering exactly `tenant`'s worker keys."""
    patterns = []
    for family in TENANT_FAMILIES:
        base = key(family, tenant)
        patterns += [base, base + ":*"]
    return patterns


def tenant_channel_patterns(tenant: str) -> list[str]:
    """Redis ACL channel globs (without `&`): the tenant's own push destinations."""
    return [push_channel(f"{TOPIC_PREFIX}{tenant}.*")]
