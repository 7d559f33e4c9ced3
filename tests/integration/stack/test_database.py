"""The MySQL-protocol server, through SQLAlchemy + PyMySQL as the product uses it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

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
