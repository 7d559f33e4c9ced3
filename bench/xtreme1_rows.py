"""The peer: Xtreme1's row-per-object design, on its own MariaDB/InnoDB server.

The table is Xtreme1's `data_annotation_object` as its migration creates it
(deploy/mysql/migration/V1__Create_tables.sql, github.com/xtreme1-io/xtreme1): columns, types
and defaults verbatim. One deviation, in the peer's favour: Xtreme1's DDL has no index but the
primary key, so its `WHERE data_id IN (…)` scans the whole table; we add the secondary index
on `data_id` the issue describes, which turns a 3 GB scan into index lookups.

The server is our own `mariadbd` (Debian's), not the stack's database: its data directory is
kept under the bench cache between runs (building the history takes a long while), it listens
on 127.0.0.1 only, and its buffer pool is much smaller than the table, with O_DIRECT, as on a
database all tenants share. Choices that favour the peer are said where they are made.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pymysql

from bench.annotation_history import (
    CLASS_IDS,
    EDITORS,
    FRAMES,
    OBJECTS,
    Layout,
    Progress,
    SideState,
    frame_objects,
    in_batches,
    niced,
    re_age_saves,
)

MARIADBD = Path("/usr/sbin/mariadbd")
INSTALL_DB = Path("/usr/bin/mariadb-install-db")
START_TIMEOUT_SECONDS = 120.0
DATABASE = "xtreme1"

# Verbatim from Xtreme1's V1__Create_tables.sql, but for `idx_data_id` (see the docstring).
# MariaDB keeps `json` as LONGTEXT with a JSON_VALID check; MySQL 8 (Xtreme1's default)
# stores it binary and converts it to text for every read.
DATA_ANNOTATION_OBJECT = """
CREATE TABLE IF NOT EXISTS `data_annotation_object`
(
    `id`               bigint(20) NOT NULL AUTO_INCREMENT,
    `dataset_id`       bigint(20)                            DEFAULT NULL COMMENT 'Dataset ID',
    `data_id`          bigint(20)                            DEFAULT NULL COMMENT 'Data ID',
    `class_id`         bigint(20)                            DEFAULT NULL COMMENT 'Class ID',
    `class_attributes` json                                  DEFAULT NULL COMMENT 'Class Attributes',
    `source_type`      enum ('DATA_FLOW','IMPORTED','MODEL') DEFAULT 'DATA_FLOW' COMMENT 'Source type',
    `source_id`        bigint(20)                            DEFAULT '-1' COMMENT 'Source ID',
    `created_at`       datetime                              DEFAULT CURRENT_TIMESTAMP COMMENT 'Create time',
    `created_by`       bigint(20)                            DEFAULT NULL COMMENT 'Creator id',
    `updated_at`       datetime                              DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
    `updated_by`       bigint(20)                            DEFAULT NULL,
    PRIMARY KEY (`id`) USING BTREE,
    KEY `idx_data_id` (`data_id`) USING BTREE
) ENGINE = InnoDB
  AUTO_INCREMENT = 1
  DEFAULT CHARSET = utf8mb4
"""  # noqa: E501  (kept as Xtreme1 lays it out)

# What Xtreme1's mapper selects (Base_Column_List) and what one save inserts per object.
COLUMNS = (
    "id, dataset_id, data_id, class_id, class_attributes, source_id, source_type, "
    "created_at, created_by, updated_at, updated_by"
)
INSERTED = "dataset_id, data_id, class_id, class_attributes, created_by, source_type, source_id"
SELECT_BY_DATA_IDS = f"SELECT {COLUMNS} FROM data_annotation_object WHERE data_id IN %s"  # noqa: S608
DELETE_BY_DATA_IDS = "DELETE FROM data_annotation_object WHERE data_id IN %s"
INSERT_ROWS = (
    f"INSERT INTO data_annotation_object ({INSERTED}) "  # noqa: S608
    "VALUES (%s, %s, %s, %s, %s, %s, %s)"  # placeholders only: PyMySQL then sends multi-row
)
HUMAN = ("DATA_FLOW", -1)  # source_type and source_id of an editor's objects


@dataclass(frozen=True)
class ServerConfig:
    """How the row server runs.

    `buffer_pool`: InnoDB's cache, well below the table (the issue: a database all tenants
    share, whose working set is not one tenant's sequence). `flush_at_commit=2`: the redo log
    is written at each commit and synced once a second, because SeaweedFS does not fsync its
    writes either (MariaDB's default, 1, would add an fsync to every row-design save).
    `nice`: for building the history, so other engineers' tests are not starved.
    """

    buffer_pool: str = "256M"
    flush_at_commit: int = 2
    nice: bool = False


class RowServer:
    """Our own mariadbd with a data directory kept under `home`."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.datadir = home / "data"
        self.socket = home / "mysqld.sock"
        self.loads = home / "load"  # the only directory LOAD DATA INFILE may read
        self.log = home / "mariadbd.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def pid(self) -> int:
        assert self.process is not None, "the row server is not running"
        return self.process.pid

    def initialize(self) -> None:
        """A fresh data directory with the database and the table (nothing in it)."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.loads.mkdir(exist_ok=True)
        root = ["--user=root"] if os.geteuid() == 0 else []
        subprocess.run(
            [
                str(INSTALL_DB),
                "--no-defaults",
                *root,
                f"--datadir={self.datadir}",
                "--skip-test-db",
                "--auth-root-authentication-method=normal",
            ],
            check=True,
            capture_output=True,
        )

    def command(self, config: ServerConfig) -> list[str]:
        root = ["--user=root"] if os.geteuid() == 0 else []
        nice = ["nice", "-n", "19"] if config.nice else []
        return [
            *nice,
            str(MARIADBD),
            "--no-defaults",
            *root,
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--pid-file={self.home / 'mariadbd.pid'}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
            # No binary log: MySQL 8 writes one by default (Xtreme1's setup); the peer's
            # saves are spared it.
            "--skip-log-bin",
            "--character-set-server=utf8mb4",
            f"--innodb-buffer-pool-size={config.buffer_pool}",
            # Data pages bypass the page cache: every read the buffer pool misses is a disk
            # read, as on a database server whose memory is the buffer pool.
            "--innodb-flush-method=O_DIRECT",
            f"--innodb-flush-log-at-trx-commit={config.flush_at_commit}",
            "--innodb-log-file-size=512M",
            # A restart starts cold: no buffer-pool dump is written or loaded.
            "--innodb-buffer-pool-dump-at-shutdown=OFF",
            "--innodb-buffer-pool-load-at-startup=OFF",
            f"--secure-file-priv={self.loads}",
            "--max-connections=500",
            "--max-allowed-packet=64M",
        ]

    def start(self, config: ServerConfig) -> None:
        self.port = _free_port()
        self.socket.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(config), stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mariadbd did not start; see {self.log}")
            time.sleep(0.2)
        with contextlib.closing(self.connect(database=None)) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
            cur.execute(f"USE {DATABASE}")
            cur.execute(DATA_ANNOTATION_OBJECT)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()  # SIGTERM: a clean InnoDB shutdown
        self.process.wait(timeout=300)
        self.process = None

    @contextlib.contextmanager
    def running(self, config: ServerConfig) -> Iterator[RowServer]:
        self.start(config)
        try:
            yield self
        finally:
            self.stop()

    def _answers(self) -> bool:
        try:
            self.connect(database=None).close()
        except pymysql.MySQLError:
            return False
        return True

    def connect(
        self, database: str | None = DATABASE
    ) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
        return pymysql.connect(
            host="127.0.0.1",
            port=self.port,
            user="root",
            database=database,
            charset="utf8mb4",
            connect_timeout=2,
        )

    @property
    def url(self) -> str:
        """For SQLAlchemy (the API process's pool)."""
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{DATABASE}?charset=utf8mb4"

    def table_bytes(self) -> dict[str, int]:
        """The table's size (InnoDB's own figures, after ANALYZE) and its rows, estimated."""
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cur:
            cur.execute("ANALYZE TABLE data_annotation_object")
            cur.fetchall()
            cur.execute(
                "SELECT data_length, index_length, table_rows FROM information_schema.tables "
                "WHERE table_schema = %s AND table_name = 'data_annotation_object'",
                (DATABASE,),
            )
            data, index, rows = cur.fetchone() or (0, 0, 0)
        file = self.datadir / DATABASE / "data_annotation_object.ibd"
        return {
            "data_bytes": int(data),
            "index_bytes": int(index),
            "rows_estimate": int(rows),
            "ibd_file_bytes": file.stat().st_size if file.exists() else 0,
        }

    def history_length(self) -> int:
        """Undo records the purge has yet to remove (deleted rows not yet gone)."""
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT count FROM information_schema.innodb_metrics "
                "WHERE name = 'trx_rseg_history_len'"
            )
            row = cur.fetchone()
        return int(row[0]) if row else 0

    def status(self, *names: str) -> dict[str, int]:
        """Global status counters (e.g. Innodb_buffer_pool_reads: pages read from disk)."""
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN %s", (names,))
            return {str(name): int(value) for name, value in cur.fetchall()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the history ------------------------------------------------------------------------------


def data_id(sequence: int, frame: int) -> int:
    """The row side's data ids: sequence s is dataset s + 1, its frames consecutive ids."""
    return sequence * FRAMES + frame + 1


def sequence_data_ids(sequence: int) -> list[int]:
    return [data_id(sequence, frame) for frame in range(FRAMES)]


def window_rows(sequence: int, first: int, count: int, editor: int) -> list[tuple[Any, ...]]:
    """The rows one save of the history writes: (dataset, data, class, JSON, created_by)."""
    rows = []
    for frame in range(first, first + count):
        for obj in frame_objects(frame):
            payload = orjson.dumps(obj).decode()
            row = (
                sequence + 1,
                data_id(sequence, frame),
                CLASS_IDS[obj["classId"]],
                payload,
                editor,
            )
            rows.append(row)
    return rows


def _tsv(rows: list[tuple[Any, ...]]) -> str:
    # LOAD DATA's defaults: tab-separated, backslash escapes; orjson writes no raw tab or newline.
    return "".join(
        "\t".join(str(value).replace("\\", "\\\\") for value in row) + "\n" for row in rows
    )


def write_saves(
    server: RowServer, layout: Layout, saves: list[tuple[int, int]], what: str
) -> float:
    """Apply history saves in order, in bulk; seconds.

    200 saves at a time, in one transaction: DELETE of their windows' rows, then LOAD DATA of
    the new rows in save order (so ids follow the history). Row by row, as Xtreme1 saves,
    this took 15 times longer on a busy machine; the table comes out the same — old rows gone,
    new ones appended in the same order. Within `saves` a window may appear only once.
    """
    progress = Progress(what, len(saves) * layout.window * OBJECTS)
    chunk = server.loads / "rows.tsv"
    with contextlib.closing(server.connect()) as conn, conn.cursor() as cur:
        for number, batch in enumerate(in_batches(saves, 200)):
            ids = [data_id(s, f) for s, first in batch for f in range(first, first + layout.window)]
            rows = [
                row
                for index, (sequence, first) in enumerate(batch)
                for row in window_rows(
                    sequence, first, layout.window, 1 + (number + index) % EDITORS
                )
            ]
            chunk.write_text(_tsv(rows))
            cur.execute(DELETE_BY_DATA_IDS, (ids,))
            cur.execute(
                f"LOAD DATA INFILE '{chunk}' INTO TABLE data_annotation_object "
                "(dataset_id, data_id, class_id, class_attributes, created_by)"
            )
            conn.commit()
            progress.add(len(rows))
    chunk.unlink(missing_ok=True)
    return progress.finish()


BUILD = ServerConfig(buffer_pool="6G", nice=True)  # building: memory is free, CPU is not


def ensure_history(home: Path, layout: Layout) -> SideState:
    """The row history of `layout` in `home`: reused when built, else built (minutes)."""
    state_path = home / "state.json"
    state = SideState.read(state_path)
    server = RowServer(home)
    if state is None or state.layout != layout or not state.built:
        shutil.rmtree(home, ignore_errors=True)
        server.initialize()
        state = SideState(layout)
        saves = layout.saves()
        per_pass = len(saves) // layout.passes
        with server.running(BUILD), niced():
            seconds = 0.0
            for number in range(layout.passes):
                part = saves[number * per_pass : (number + 1) * per_pass]
                seconds += write_saves(server, layout, part, f"rows, pass {number + 1}")
            state.built = {"seconds": round(seconds, 1), **server.table_bytes()}
        state.write(state_path)
    if state.rewritten:
        with server.running(BUILD), niced():
            saves = re_age_saves(layout, state.rewritten)
            write_saves(server, layout, saves, f"rows, re-ageing {len(state.rewritten)} sequences")
        state.rewritten = []
        state.write(state_path)
    return state
