"""The MySQL-protocol server, through SQLAlchemy + PyMySQL as the product uses it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

from annostack.adapters.database import DatabaseAdmin
from annostack.devstack import processes
from annostack.devstack.stack import Stack
from annostack.settings import Settings

pytestmark = pytest.mark.integration


def engine_for(settings: Settings, user: str, password: str, database: str | None = None) -> Engine:
    url = URL.create(
        "mysql+pymysql",
        username=user,
        password=password,
        host=settings.db.host,
        port=settings.db.port,
        database=database,
    )
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


@pytest.fixture
def admin(stack_settings: Settings) -> Iterator[Engine]:
    db = stack_settings.db
    engine = engine_for(stack_settings, db.admin_user, db.admin_password.get_secret_value())
    yield engine
    engine.dispose()


def test_server_is_configured_like_tidb(admin: Engine) -> None:
    with admin.connect() as conn:
        collation = conn.execute(sa.text("SELECT @@collation_server")).scalar_one()
        sql_mode = conn.execute(sa.text("SELECT @@sql_mode")).scalar_one()
    assert collation == "utf8mb4_bin"
    assert "STRICT_TRANS_TABLES" in sql_mode
    assert "ONLY_FULL_GROUP_BY" in sql_mode


def test_tenant_user_reads_only_its_own_schema(stack_settings: Settings, admin: Engine) -> None:
    suffix = uuid.uuid4().hex[:8]
    mine, theirs, user, password = f"t_{suffix}_a", f"t_{suffix}_b", f"u_{suffix}", uuid.uuid4().hex
    with admin.begin() as conn:
        for schema in (mine, theirs):
            conn.execute(sa.text(f"CREATE DATABASE `{schema}`"))
            conn.execute(sa.text(f"CREATE TABLE `{schema}`.items (id INT PRIMARY KEY)"))
            conn.execute(sa.text(f"INSERT INTO `{schema}`.items VALUES (1)"))
        conn.execute(sa.text(f"CREATE USER '{user}'@'%' IDENTIFIED BY :pw"), {"pw": password})
        conn.execute(sa.text(f"GRANT ALL PRIVILEGES ON `{mine}`.* TO '{user}'@'%'"))
    tenant = engine_for(stack_settings, user, password, database=mine)
    try:
        with tenant.connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM items")).scalar_one() == 1
            with pytest.raises((OperationalError, ProgrammingError), match="denied"):
                conn.execute(sa.text(f"SELECT * FROM `{theirs}`.items"))
        with pytest.raises(OperationalError, match="denied"):
            engine_for(stack_settings, user, "wrong-password").connect()
    finally:
        tenant.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP USER '{user}'@'%'"))
            for schema in (mine, theirs):
                conn.execute(sa.text(f"DROP DATABASE `{schema}`"))


def test_a_resource_group_survives_a_database_restart(
    stack_settings: Settings, local_stack: Stack
) -> None:
    """tidb-server's mocked resource manager forgets its groups when the server restarts while
    TiDB's own metadata keeps them: information_schema lists none and CREATE says "already
    exists" (error 8248) — every reconcile of every tenant failed so until `ensure` coped."""
    db = DatabaseAdmin(stack_settings.db)
    group, user = f"u_rg{uuid.uuid4().hex[:8]}", f"u_rg{uuid.uuid4().hex[:8]}"
    try:
        assert db.ensure_user(user, uuid.uuid4().hex, "mysql")
        if not db.supports_resource_groups():  # MariaDB: the operator reports it instead
            assert local_stack.settings.database == "mariadb"
            return
        assert db.ensure_resource_group(group, 500, user)
        assert not db.ensure_resource_group(group, 500, user), "unchanged: nothing to do"
        processes.stop(local_stack.settings.state_dir / "tidb.pid")
        local_stack.up()
        db.engine.dispose()  # its pooled connections went with the server
        db.ensure_resource_group(group, 600, user)
        assert db.resource_group_units(group) == 600
    finally:
        db.drop_user(user)
        assert db.drop_resource_group(group) or not db.supports_resource_groups()
        assert db.resource_group_units(group) is None
        db.close()
