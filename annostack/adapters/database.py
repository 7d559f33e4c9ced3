"""TiDB (or any MySQL-protocol server): engines, and administration of tenant schemas and users.

Every engine made here translates the driver's "the server is not there right now" errors
(cannot connect, connection lost, server shutting down, too many connections, lock wait
timeout, deadlock) into `BackendUnavailable(DATABASE)` in one place, a SQLAlchemy
`handle_error` hook: services and workers see a temporary error they may retry, the API
answers 503 with Retry-After instead of 500. Other errors (a refused login, a bad statement,
a constraint) stay SQLAlchemy's, because retrying would not help.

Identifiers cannot be bound as query parameters, so every schema/user name is checked against
a strict pattern before it is quoted into a statement; passwords are always bound parameters.
On TiDB a RESOURCE GROUP caps each tenant's request units; other servers lack the feature and
`supports_resource_groups()` says so, so callers can report it instead of failing.
"""

from __future__ import annotations

import functools
import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pymysql
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, ExceptionContext
from sqlalchemy.exc import DBAPIError, OperationalError

from annostack.domain.errors import Backend, BackendRejected, BackendUnavailable
from annostack.settings import DatabaseSettings

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# CR_CONN_HOST_ERROR, CR_CONNECTION_ERROR, CR_SERVER_GONE_ERROR, CR_SERVER_LOST, CR_SERVER_LOST
# _EXTENDED, ER_CON_COUNT_ERROR, ER_SERVER_SHUTDOWN, ER_LOCK_WAIT_TIMEOUT, ER_LOCK_DEADLOCK.
UNAVAILABLE_CODES = {2003, 2002, 2006, 2013, 2055, 1040, 1053, 1205, 1213}
# ER_ACCESS_DENIED_ERROR, ER_DBACCESS_DENIED_ERROR, ER_BAD_DB_ERROR: the login itself failed.
ACCESS_DENIED_CODES = {1045, 1044, 1049}
CONNECT_TIMEOUT_SECONDS = 5


PRIVILEGES = {"SELECT", "INSERT", "UPDATE", "DELETE"}


def _privilege(name: str) -> str:
    if name not in PRIVILEGES:
        raise BackendRejected(Backend.DATABASE, f"refusing unknown privilege {name!r}")
    return name


def _identifier(name: str) -> str:
    if not IDENTIFIER.fullmatch(name):  # `match` would let a trailing newline in
        raise BackendRejected(Backend.DATABASE, f"refusing unsafe identifier {name!r}")
    return name


def engine_for(
    settings: DatabaseSettings, user: str, password: str, database: str | None = None
) -> Engine:
    url = URL.create(
        "mysql+pymysql",
        username=user,
        password=password,
        host=settings.host,
        port=settings.port,
        database=database,
        query={"charset": "utf8mb4"},
    )
    engine = sa.create_engine(
        url,
        pool_pre_ping=True,
        pool_recycle=3600,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS, **tls_arguments(settings)},
    )
    sa.event.listen(engine, "handle_error", _unavailable_is_temporary)
    return engine


def _unavailable_is_temporary(context: ExceptionContext) -> None:
    """Raise BackendUnavailable instead of the driver's error when the server is away."""
    if context.is_pre_ping:
        return  # the pool's own liveness check: it reconnects by itself, leave it alone
    original = context.original_exception
    code = original.args[0] if isinstance(original, pymysql.err.MySQLError) else None
    if context.is_disconnect or code in UNAVAILABLE_CODES:
        detail = _describe(context.sqlalchemy_exception) if isinstance(
            context.sqlalchemy_exception, DBAPIError
        ) else type(original).__name__  # fmt: skip
        raise BackendUnavailable(Backend.DATABASE, detail) from context.sqlalchemy_exception


@functools.cache
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def tls_arguments(settings: DatabaseSettings) -> dict[str, Any]:
    """PyMySQL's TLS arguments, with one shared context.

    Left alone, PyMySQL builds a fresh SSL context (and reloads the system CA store, ~28 ms of
    CPU) for every connection; the operator's drift pass opens several per tenant.
    """
    if settings.tls == "disabled":
        return {"ssl_disabled": True}
    return {"ssl": _tls_context()}


class DatabaseAdmin:
    def __init__(self, settings: DatabaseSettings) -> None:
        self.settings = settings
        self.engine = engine_for(
            settings, settings.admin_user, settings.admin_password.get_secret_value()
        )
        self._is_tidb: bool | None = None

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except OperationalError as error:
            raise BackendUnavailable(Backend.DATABASE, _describe(error)) from error
        except DBAPIError as error:
            raise BackendRejected(Backend.DATABASE, _describe(error)) from error

    def ensure_schema(self, schema: str) -> bool:
        with self._transaction() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :s"),
                {"s": schema},
            ).first()
            if exists:
                return False
            conn.execute(
                sa.text(
                    f"CREATE DATABASE IF NOT EXISTS `{_identifier(schema)}` "
                    "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
                )
            )
            return True

    def user_exists(self, user: str) -> bool:
        with self._transaction() as conn:
            return self._exists_in(conn, user)

    def can_log_in(self, user: str, password: str, schema: str) -> bool:
        """One plain login (no engine or pool to build): does this password still work?"""
        try:
            connection = pymysql.connect(
                host=self.settings.host,
                port=self.settings.port,
                user=user,
                password=password,
                database=schema,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                **tls_arguments(self.settings),
            )
        except pymysql.err.OperationalError as error:
            if error.args and error.args[0] in ACCESS_DENIED_CODES:
                return False
            raise BackendUnavailable(Backend.DATABASE, f"login check: {error.args}") from error
        connection.close()
        return True

    def ensure_user(self, user: str, password: str, schema: str) -> bool:
        """The user exists and has this password (its privileges: `ensure_privileges`)."""
        if self.user_exists(user) and self.can_log_in(user, password, schema):
            return False
        account = f"'{_identifier(user)}'@'%'"
        with self._transaction() as conn:
            secret = {"pw": password}
            conn.execute(sa.text(f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY :pw"), secret)
            conn.execute(sa.text(f"ALTER USER {account} IDENTIFIED BY :pw"), secret)
        return True

    def privileges(self, user: str, schema: str) -> dict[str, frozenset[str]]:
        """What `user` holds in `schema`: table name -> privileges; `*` for the whole schema."""
        grantee = {"g": f"'{_identifier(user)}'@'%'", "s": schema}
        held: dict[str, set[str]] = {}
        with self._transaction() as conn:
            for row in conn.execute(
                sa.text(
                    "SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES "
                    "WHERE GRANTEE = :g AND TABLE_SCHEMA = :s"
                ),
                grantee,
            ):
                held.setdefault("*", set()).add(str(row[0]))
            for row in conn.execute(
                sa.text(
                    "SELECT TABLE_NAME, PRIVILEGE_TYPE FROM information_schema.TABLE_PRIVILEGES "
                    "WHERE GRANTEE = :g AND TABLE_SCHEMA = :s"
                ),
                grantee,
            ):
                held.setdefault(str(row[0]), set()).add(str(row[1]))
        return {table: frozenset(privileges) for table, privileges in held.items()}

    def ensure_privileges(self, user: str, schema: str, wanted: dict[str, frozenset[str]]) -> bool:
        """Exactly these table privileges, nothing schema-wide; True if anything changed.

        Table-level grants need the tables: call after the migrations.
        """
        held = self.privileges(user, schema)
        if held == wanted:
            return False
        to, db = f"'{_identifier(user)}'@'%'", f"`{_identifier(schema)}`"
        with self._transaction() as conn:
            if "*" in held:
                conn.execute(sa.text(f"REVOKE ALL PRIVILEGES ON {db}.* FROM {to}"))
            for table in set(held) - {"*"}:
                if held[table] != wanted.get(table):
                    conn.execute(
                        sa.text(f"REVOKE ALL PRIVILEGES ON {db}.`{_identifier(table)}` FROM {to}")
                    )
            for table, privileges in wanted.items():
                if held.get(table) != privileges:
                    granted = ", ".join(sorted(_privilege(p) for p in privileges))
                    conn.execute(sa.text(f"GRANT {granted} ON {db}.`{_identifier(table)}` TO {to}"))
        return True

    def supports_resource_groups(self) -> bool:
        """TiDB only; asked once per process (a server does not change kind under us)."""
        if self._is_tidb is None:
            with self._transaction() as conn:
                version = str(conn.execute(sa.text("SELECT VERSION()")).scalar_one())
            self._is_tidb = "TiDB" in version
        return self._is_tidb

    def ensure_resource_group(self, group: str, request_units: int, user: str) -> bool:
        """TiDB only: a resource group with RU_PER_SEC, bound to the tenant's user."""
        name = _identifier(group)
        current = self.resource_group_units(name)
        if current == request_units:
            return False
        ru = int(request_units)
        with self._transaction() as conn:
            if current is None:
                # CREATE ... IF NOT EXISTS, then ALTER: information_schema can miss a group that
                # exists (seen on tidb-server's mocked resource manager after a restart, which
                # then refused CREATE with error 8248 on every reconcile).
                conn.execute(
                    sa.text(f"CREATE RESOURCE GROUP IF NOT EXISTS `{name}` RU_PER_SEC = {ru}")
                )
            conn.execute(sa.text(f"ALTER RESOURCE GROUP `{name}` RU_PER_SEC = {ru}"))
            conn.execute(sa.text(f"ALTER USER '{_identifier(user)}'@'%' RESOURCE GROUP `{name}`"))
            return True

    def drop_user(self, user: str) -> bool:
        with self._transaction() as conn:
            existed = self._exists_in(conn, user)
            conn.execute(sa.text(f"DROP USER IF EXISTS '{_identifier(user)}'@'%'"))
            return existed

    def drop_schema(self, schema: str) -> bool:
        with self._transaction() as conn:
            result = conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{_identifier(schema)}`"))
            return bool(result.rowcount)

    def resource_group_units(self, group: str) -> int | None:
        """TiDB only: the group's RU_PER_SEC, None if there is no such group."""
        with self._transaction() as conn:
            row = conn.execute(
                sa.text(
                    "SELECT ru_per_sec FROM information_schema.resource_groups WHERE name = :g"
                ),
                {"g": _identifier(group)},
            ).first()
        if row is None:
            return None
        value = str(row[0])  # a number, or UNLIMITED (the default group, or one set by hand)
        return int(value) if value.isdigit() else None

    def drop_resource_group(self, group: str) -> bool:
        """Drop the tenant's group (after its user: TiDB refuses to drop a group in use).
        False where there is none, as on servers without resource groups."""
        if not self.supports_resource_groups():
            return False
        existed = self.resource_group_units(group) is not None
        with self._transaction() as conn:  # even if not listed (see ensure_resource_group)
            conn.execute(sa.text(f"DROP RESOURCE GROUP IF EXISTS `{_identifier(group)}`"))
        return existed

    @staticmethod
    def _exists_in(conn: Connection, user: str) -> bool:
        row = conn.execute(
            sa.text("SELECT 1 FROM mysql.user WHERE User = :u AND Host = '%'"), {"u": user}
        ).first()
        return row is not None


def _describe(error: DBAPIError) -> str:
    """The server's message without the statement (which may carry a password)."""
    original = error.orig
    args: tuple[object, ...] = getattr(original, "args", ())
    if len(args) >= 2:
        return f"error {args[0]}: {args[1]}"
    return type(original).__name__
