"""What one tenant's credentials reach: everything of another tenant's (denied) and its own.

`attack(secret, victim)` takes the values of a tenant's Secret — exactly the
`ANNOSTACK_TENANT__*` environment its worker pods get — and the name of another tenant, tries
that tenant's bucket, topics, Redis keys and channels and database schema with nothing else,
and returns one `Attempt` per try. `own_access(secret)` does the same on the tenant's own
backends, where everything must work (so a denial above is a real fence, not a broken key).

Nothing here needs pytest, the tests package or the local stack — only annostack itself and
its dependencies, which the worker image has — so the same probe runs inside a worker pod,
copied in as a file (the environment being the tenant's Secret, as `envFrom` gives it):

    ANNOSTACK_PROBE_PULSAR_ADMIN_URL=http://pulsar:8080 python probe.py <victim-tenant>

It prints the attempts as JSON lines (`kind` attack or own) and exits 1 if any attack was
allowed or any own access failed. (Run it as a file or `python -c`, not with `-m` from a
checkout: the checkout's `operator/` package would shadow the standard library's `operator`.)
"""

from __future__ import annotations

import io
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import pulsar
import pymysql
import redis
import urllib3
from minio import Minio
from minio.error import S3Error

from annostack.adapters.identities import IamIdentities
from annostack.adapters.objects import Presigner
from annostack.adapters.pulsar_tokens import client_authentication
from annostack.domain import keyspace
from annostack.domain.errors import BackendRejected
from annostack.domain.keyspace import Family
from annostack.domain.push import Destination
from annostack.domain.tenant_stack import TenantConnection
from annostack.domain.tenants import DEAD_LETTER_TOPIC, PROCESSING_TOPICS, TenantNames
from annostack.settings import ObjectStoreSettings

TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Attempt:
    backend: str
    action: str
    allowed: bool
    detail: str


Try = Callable[[], object]


class Denied(Exception):
    """The backend refused (the outcome every attack must have)."""


def _attempt(
    backend: str, action: str, call: Try, refusals: tuple[type[Exception], ...] = ()
) -> Attempt:
    """Run one try. Only a refusal the backend states (`refusals`, or `Denied`) counts as
    denied; any other outcome — success, NoSuchKey, a timeout — counts as allowed, so a probe
    that could not tell never passes for a fence."""
    try:
        result = call()
    except (Denied, *refusals) as error:
        return Attempt(backend, action, False, f"{type(error).__name__}: {error}"[:200])
    except Exception as error:
        return Attempt(backend, action, True, f"not refused: {type(error).__name__}: {error}"[:200])
    return Attempt(backend, action, True, repr(result)[:200])


def _works(backend: str, action: str, call: Try) -> Attempt:
    """Own access: allowed only if it ran without an error."""
    try:
        result = call()
    except Exception as error:
        return Attempt(backend, action, False, f"{type(error).__name__}: {error}"[:200])
    return Attempt(backend, action, True, repr(result)[:200])


PULSAR_REFUSALS = (pulsar.AuthorizationError, pulsar.AuthenticationError)
REDIS_REFUSALS = (redis.exceptions.NoPermissionError,)
# ER_DBACCESS_DENIED, ER_ACCESS_DENIED, ER_TABLEACCESS_DENIED, ER_COLUMNACCESS_DENIED,
# ER_SPECIFIC_ACCESS_DENIED
MYSQL_DENIED = {1044, 1045, 1142, 1143, 1227}


# -- object storage ------------------------------------------------------------------------


def _s3_client(c: TenantConnection, pool: urllib3.PoolManager) -> Minio:
    endpoint = urlsplit(c.s3_endpoint)
    return Minio(
        endpoint.netloc,
        access_key=c.s3_access_key.get_secret_value(),
        secret_key=c.s3_secret_key.get_secret_value(),
        secure=endpoint.scheme == "https",
        region=c.s3_region,
        http_client=pool,
    )


def _s3_settings(c: TenantConnection) -> ObjectStoreSettings:
    return ObjectStoreSettings(
        endpoint=c.s3_endpoint,
        region=c.s3_region,
        access_key=c.s3_access_key,
        secret_key=c.s3_secret_key,
    )


def _s3_refused(call: Try) -> Try:
    """Only AccessDenied (and its kin) is a refusal: NoSuchKey means the request was allowed."""

    def run() -> object:
        try:
            return call()
        except S3Error as error:
            if error.code in {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
                raise Denied(error.code) from error
            raise

    return run


def _http_refused(response: httpx.Response) -> int:
    if response.status_code in (401, 403):
        raise Denied(f"HTTP {response.status_code}")
    return response.status_code


def _iam_refused(call: Try) -> object:
    try:
        return call()
    except BackendRejected as error:
        if "AccessDenied" in str(error) or " 403 " in str(error):
            raise Denied(str(error)) from error
        raise


def _listed_buckets(s3: Minio, bucket: str) -> list[str]:
    names = [found.name for found in s3.list_buckets()]
    if bucket not in names:
        raise Denied(f"not among the {len(names)} buckets listed")
    return names


def _s3_attacks(c: TenantConnection, victim: TenantNames) -> Iterator[Attempt]:
    with _closing_s3(c) as s3:
        yield from _s3_attacks_with(s3, c, victim)


@contextmanager
def _closing_s3(c: TenantConnection) -> Iterator[Minio]:
    pool = urllib3.PoolManager(timeout=TIMEOUT_SECONDS, retries=False)
    try:
        yield _s3_client(c, pool)
    finally:
        pool.clear()


def _s3_attacks_with(s3: Minio, c: TenantConnection, victim: TenantNames) -> Iterator[Attempt]:
    bucket, key = victim.bucket, "annotations/1/probe.json"
    calls: list[tuple[str, Try]] = [
        ("list buckets shows the victim's", lambda: _listed_buckets(s3, bucket)),
        ("list the victim's objects", lambda: list(s3.list_objects(bucket, recursive=True))),
        ("GET a victim object", lambda: s3.get_object(bucket, key).read()),
        ("PUT a victim object", lambda: s3.put_object(bucket, key, io.BytesIO(b"{}"), 2)),
        ("DELETE a victim object", lambda: s3.remove_object(bucket, key)),
        ("read the victim's bucket versioning", lambda: s3.get_bucket_versioning(bucket)),
        ("create a bucket", lambda: s3.make_bucket(f"annostack-probe-{uuid.uuid4().hex[:8]}")),
    ]
    for action, call in calls:
        yield _attempt("s3", action, _s3_refused(call))
    signed = Presigner(_s3_settings(c)).presign_get(bucket, key)
    yield _attempt(
        "s3",
        "pre-sign a GET of a victim object with own key",
        lambda: _http_refused(httpx.get(signed, timeout=TIMEOUT_SECONDS)),
    )
    iam = IamIdentities(_s3_settings(c))
    yield _attempt(
        "s3",
        "mint an access key for the victim's identity (IAM)",
        lambda: _iam_refused(lambda: iam.create_key(victim.identity)),
    )
    iam.close()


def _s3_own(c: TenantConnection) -> Iterator[Attempt]:
    with _closing_s3(c) as s3:
        yield from _s3_own_with(s3, c)


def _s3_own_with(s3: Minio, c: TenantConnection) -> Iterator[Attempt]:
    key = f"probe/{uuid.uuid4().hex}.json"
    calls: list[tuple[str, Try]] = [
        ("PUT an own object", lambda: s3.put_object(c.bucket, key, io.BytesIO(b"{}"), 2).etag),
        ("GET an own object", lambda: s3.get_object(c.bucket, key).read()),
        ("list own objects", lambda: [o.object_name for o in s3.list_objects(c.bucket, "probe/")]),
        (
            "pre-signed GET of an own object",
            lambda: httpx.get(
                Presigner(_s3_settings(c)).presign_get(c.bucket, key, timedelta(minutes=1)),
                timeout=TIMEOUT_SECONDS,
            ).raise_for_status(),
        ),
        ("DELETE an own object", lambda: s3.remove_object(c.bucket, key)),
    ]
    for action, call in calls:
        yield _works("s3", action, call)


# -- Pulsar ----------------------------------------------------------------------------------


def _pulsar_client(c: TenantConnection) -> pulsar.Client:
    token = c.pulsar_token.get_secret_value()
    return pulsar.Client(
        c.pulsar_service_url,
        authentication=client_authentication(token),
        operation_timeout_seconds=TIMEOUT_SECONDS,
    )


def _admin(c: TenantConnection, admin_url: str, anonymous: bool = False) -> httpx.Client:
    token = c.pulsar_token.get_secret_value()
    headers = {} if anonymous else {"Authorization": f"Bearer {token}"}
    return httpx.Client(base_url=f"{admin_url}/admin/v2", headers=headers, timeout=TIMEOUT_SECONDS)


def _pulsar_attacks(c: TenantConnection, victim: TenantNames, admin_url: str) -> Iterator[Attempt]:
    topic, namespace = victim.topic(PROCESSING_TOPICS[0]), victim.pulsar_namespace
    with closing(_pulsar_client(c)) as client:
        calls: list[tuple[str, Try]] = [
            ("produce to a victim topic", lambda: client.create_producer(topic).send(b"{}")),
            (
                "consume a victim topic (the workers' subscription)",
                lambda: client.subscribe(
                    topic, "workers", consumer_type=pulsar.ConsumerType.Shared
                ),
            ),
            (
                "create a durable subscription on the victim's dead-letter topic",
                lambda: client.subscribe(
                    victim.topic(DEAD_LETTER_TOPIC), f"probe-{uuid.uuid4().hex[:6]}"
                ),
            ),
            ("read a victim topic", lambda: client.create_reader(topic, pulsar.MessageId.earliest)),
        ]
        for action, call in calls:
            yield _attempt("pulsar", action, call, PULSAR_REFUSALS)
    with _admin(c, admin_url) as admin, _admin(c, admin_url, anonymous=True) as anonymous:
        requests: list[tuple[str, Try]] = [
            ("admin: list tenants", lambda: _http_refused(admin.get("/tenants"))),
            (
                "admin: the victim namespace's permissions",
                lambda: _http_refused(admin.get(f"/namespaces/{namespace}/permissions")),
            ),
            (
                "admin: a victim topic's stats",
                lambda: _http_refused(
                    admin.get(f"/persistent/{namespace}/{PROCESSING_TOPICS[0]}/stats")
                ),
            ),
            (
                "admin: grant itself on the victim namespace",
                lambda: _http_refused(
                    admin.post(f"/namespaces/{namespace}/permissions/{c.tenant}", json=["consume"])
                ),
            ),
            (
                "admin: skip the victim's backlog",
                lambda: _http_refused(
                    admin.post(
                        f"/persistent/{namespace}/{PROCESSING_TOPICS[0]}/subscription/workers/skip_all"
                    )
                ),
            ),
            (
                "admin without a token: list clusters",
                lambda: _http_refused(anonymous.get("/clusters")),
            ),
        ]
        for action, call in requests:
            yield _attempt("pulsar", action, call)


def _pulsar_own(c: TenantConnection, admin_url: str) -> Iterator[Attempt]:
    names = TenantNames(tenant=c.tenant)
    topic, subscription = names.topic("probe"), f"probe-{uuid.uuid4().hex[:6]}"
    with closing(_pulsar_client(c)) as client:

        def round_trip() -> bytes:
            consumer = client.subscribe(topic, subscription)
            client.create_producer(topic).send(b"probe")
            message = consumer.receive(timeout_millis=TIMEOUT_SECONDS * 1000)
            consumer.acknowledge(message)
            consumer.unsubscribe()
            return bytes(message.data())

        yield _works("pulsar", "produce and consume on an own topic", round_trip)
    with _admin(c, admin_url) as admin:
        path = f"/persistent/{names.pulsar_namespace}/{PROCESSING_TOPICS[0]}/stats"
        yield _works(
            "pulsar", "admin: an own topic's stats", lambda: admin.get(path).raise_for_status()
        )


# -- Redis -----------------------------------------------------------------------------------


def _victim_keys(victim: str) -> dict[str, str]:
    return {
        "job progress": keyspace.key(Family.JOB, victim, "probe", "expected"),
        "processing counters": keyspace.key(Family.PROCESSING, victim),
        "archive progress": keyspace.key(Family.ARCHIVE, victim, 1),
        "edit lock": keyspace.key(Family.LOCK, victim, 1),
        "rate window": keyspace.key(Family.RATE, victim, 1),
    }


def _redis_attacks(c: TenantConnection, victim: TenantNames) -> Iterator[Attempt]:
    client = redis.Redis.from_url(c.redis_url.get_secret_value(), socket_timeout=TIMEOUT_SECONDS)
    channel = keyspace.push_channel(str(Destination.everyone(victim.tenant)))
    calls: list[tuple[str, Try]] = []
    for what, key in _victim_keys(victim.tenant).items():
        calls += [
            (f"GET the victim's {what}", lambda key=key: client.get(key)),
            (f"HGETALL the victim's {what}", lambda key=key: client.hgetall(key)),
            (f"SET the victim's {what}", lambda key=key: client.set(key, "probe", ex=5)),
            # Commands the tenant may run, on keys it may not touch: the key rule refuses.
            (f"HSET the victim's {what}", lambda key=key: client.hset(key, "probe", "1")),
            (f"SADD to the victim's {what}", lambda key=key: client.sadd(key, "probe")),
        ]
    calls += [
        ("PUBLISH to the victim's browsers", lambda: client.publish(channel, b"{}")),
        ("SCAN every key name", lambda: client.scan(0, count=100)),
        ("KEYS *", lambda: client.keys("*")),
        ("PUBSUB CHANNELS (who is connected)", lambda: client.pubsub_channels()),
        ("CLIENT LIST", lambda: client.client_list()),
        ("ACL LIST", lambda: client.acl_list()),
        (
            "ACL SETUSER itself wider",
            lambda: client.acl_setuser(TenantNames(tenant=c.tenant).identity, keys=["*"]),
        ),
        (
            "EVAL on a victim key",
            lambda: client.eval(
                "return redis.call('GET', KEYS[1])", 1, _victim_keys(victim.tenant)["edit lock"]
            ),
        ),
        ("FLUSHALL", lambda: client.flushall()),
        ("CONFIG GET", lambda: client.config_get("*")),
    ]
    for action, call in calls:
        yield _attempt("redis", action, call, REDIS_REFUSALS)
    for action, pattern in (
        ("PSUBSCRIBE every push channel", keyspace.push_channel("*")),
        (
            "PSUBSCRIBE the victim's push channels",
            keyspace.push_channel(f"/topic/tenant.{victim.tenant}.*"),
        ),
    ):
        yield _attempt(
            "redis", action, lambda pattern=pattern: _psubscribe(client, pattern), REDIS_REFUSALS
        )
    yield _attempt(
        "redis",
        "SUBSCRIBE the victim's global channel",
        lambda: _subscribe(client, channel),
        REDIS_REFUSALS,
    )
    client.close()


def _psubscribe(client: redis.Redis, pattern: str) -> object:
    pubsub = client.pubsub()
    try:
        pubsub.psubscribe(pattern)
        return pubsub.get_message(timeout=2)
    finally:
        pubsub.close()


def _subscribe(client: redis.Redis, channel: str) -> object:
    pubsub = client.pubsub()
    try:
        pubsub.subscribe(channel)
        return pubsub.get_message(timeout=2)
    finally:
        pubsub.close()


def _redis_own(c: TenantConnection) -> Iterator[Attempt]:
    client = redis.Redis.from_url(c.redis_url.get_secret_value(), socket_timeout=TIMEOUT_SECONDS)
    key = keyspace.key(Family.JOB, c.tenant, "probe", "expected")
    channel = keyspace.push_channel(str(Destination.user(c.tenant, "~probe")))
    calls: list[tuple[str, Try]] = [
        (
            "SADD and EXPIRE own job progress",
            lambda: (client.sadd(key, "1"), client.expire(key, 30)),
        ),
        (
            "HINCRBY own counters",
            lambda: client.hincrby(keyspace.key(Family.PROCESSING, c.tenant), "probe", 0),
        ),
        ("PUBLISH to own push channel", lambda: client.publish(channel, b"{}")),
    ]
    for action, call in calls:
        yield _works("redis", action, call)
    client.close()


# -- database --------------------------------------------------------------------------------


def _db(
    c: TenantConnection, database: str | None
) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
    tls = {"ssl_disabled": True} if c.db_tls == "disabled" else {"ssl": {}}
    return pymysql.connect(
        host=c.db_host,
        port=c.db_port,
        user=c.db_user,
        password=c.db_password.get_secret_value(),
        database=database,
        connect_timeout=TIMEOUT_SECONDS,
        **tls,  # type: ignore[arg-type]
    )


def _query(c: TenantConnection, sql: str, database: str | None = None) -> tuple[object, ...]:
    try:
        with closing(_db(c, database)) as conn, conn.cursor() as cursor:
            cursor.execute(sql)
            conn.commit()
            return tuple(cursor.fetchall())
    except pymysql.MySQLError as error:
        if error.args and error.args[0] in MYSQL_DENIED:
            raise Denied(f"MySQL error {error.args[0]}") from error
        raise


def _hidden(c: TenantConnection, schema: str) -> object:
    schemas = [row[0] for row in _query(c, "SHOW DATABASES")]  # type: ignore[index]
    if schema in schemas:
        return schemas
    raise Denied(f"not among {schemas}")


MINT_TOKEN = "INSERT INTO api_tokens (name, token_hash) VALUES ('probe', REPEAT('0', 64))"
READ_TOKENS = "SELECT token_hash FROM api_tokens"
CREATE_TABLE = "CREATE TABLE probe (id INT)"


def _db_attacks(c: TenantConnection, victim: TenantNames) -> Iterator[Attempt]:
    schema = victim.database
    calls: list[tuple[str, Try]] = [
        ("connect to the victim's schema", lambda: _query(c, "SELECT 1", schema)),
        ("read the victim's tables", lambda: _query(c, f"SELECT * FROM `{schema}`.datasets")),
        ("read the victim's API tokens", lambda: _query(c, f"SELECT * FROM `{schema}`.api_tokens")),
        ("SHOW DATABASES lists the victim's", lambda: _hidden(c, schema)),
        # In its own schema the workers' user has the data tables only.
        ("mint an API token in its own schema", lambda: _query(c, MINT_TOKEN, c.database)),
        ("read its own schema's API tokens", lambda: _query(c, READ_TOKENS, c.database)),
        ("create a table in its own schema", lambda: _query(c, CREATE_TABLE, c.database)),
    ]
    for action, call in calls:
        yield _attempt("database", action, call)


def _db_own(c: TenantConnection) -> Iterator[Attempt]:
    count = "SELECT COUNT(*) FROM datasets"
    yield _works("database", "read own datasets", lambda: _query(c, count, c.database))


# -- entry points ----------------------------------------------------------------------------


def connection_of(secret: Mapping[str, str]) -> TenantConnection:
    return TenantConnection.from_env(dict(secret))


def attack(secret: Mapping[str, str], victim: str, pulsar_admin_url: str) -> list[Attempt]:
    """Every attempt on `victim`'s backends with the Secret's values alone."""
    c, names = connection_of(secret), TenantNames(tenant=victim)
    return [
        *_s3_attacks(c, names),
        *_pulsar_attacks(c, names, pulsar_admin_url),
        *_redis_attacks(c, names),
        *_db_attacks(c, names),
    ]


def own_access(secret: Mapping[str, str], pulsar_admin_url: str) -> list[Attempt]:
    """The same credentials on the tenant's own backends: all of it must work."""
    c = connection_of(secret)
    return [*_s3_own(c), *_pulsar_own(c, pulsar_admin_url), *_redis_own(c), *_db_own(c)]


def main(argv: list[str]) -> int:
    victim = argv[1]
    admin_url = os.environ.get("ANNOSTACK_PROBE_PULSAR_ADMIN_URL", "http://127.0.0.1:8080")
    attacks, own = attack(os.environ, victim, admin_url), own_access(os.environ, admin_url)
    for kind, attempts in (("attack", attacks), ("own", own)):
        for attempt in attempts:
            print(json.dumps({"kind": kind, **asdict(attempt)}))
    failed = [a for a in attacks if a.allowed] + [a for a in own if not a.allowed]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
