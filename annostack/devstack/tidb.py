"""TiDB itself, selectable with ``ANNOSTACK_DEV_DATABASE=tidb`` instead of MariaDB.

`tidb-server` is built from a pinned master commit of github.com/pingcap/tidb (TiDB's module
path has no /v8, so releases are not valid module versions, and only commits from 2026-02 on
support the Go 1.26 toolchain installed here). It runs on unistore, TiDB's embedded store, which
also mocks the PD resource manager, so ``CREATE RESOURCE GROUP`` works as on a real cluster.
"""

from __future__ import annotations

import pymysql

from annostack.devstack import builds
from annostack.devstack.components import HOST, MySQLServer, http_ok

TIDB = builds.GoRecipe(
    name="tidb",
    binaries={"tidb-server": "github.com/pingcap/tidb/cmd/tidb-server"},
    ldflags=(
        "-s -w -X github.com/pingcap/tidb/pkg/parser/mysql.TiDBReleaseVersion=v9.0.0-annostack"
        " -X github.com/pingcap/tidb/pkg/util/versioninfo.TiDBEdition=Community"
    ),
    cgo=True,
    tags=("codes",),
)


class TiDB(MySQLServer):
    name = "tidb"

    def prepare(self) -> None:
        self.binary = builds.ensure_go_binaries(TIDB, self.ctx.settings)["tidb-server"]

    def initialize(self) -> None:
        (self.data / "tmp").mkdir()

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "-store=unistore",
            f"-path={self.data / 'store'}",
            f"-host={self.ctx.node_address}",  # one bind address: the node's (pods use it)
            f"-P={self.ports.mysql}",
            f"-status-host={HOST}",
            f"-status={self.ports.tidb_status}",
            f"-temp-dir={self.data / 'tmp'}",
            "-socket=",
            f"-log-file={self.data / 'tidb.log'}",
        ]

    def probe(self) -> bool:
        return http_ok(f"http://{HOST}:{self.ports.tidb_status}/status")

    def setup_connection(self) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
        # `--initialize-insecure` (the default) leaves root without a password, on loopback
        # only; the operator gets its own account, as against a production cluster.
        return pymysql.connect(
            host=self.ctx.node_address,
            port=self.ports.mysql,
            user="root",
            connect_timeout=5,
            ssl_disabled=True,
        )
