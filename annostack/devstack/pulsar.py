"""Pulsar 4.0 standalone (broker + one bookie + RocksDB metadata) from Maven Central jars.

No tarball: `recipes/pulsar/pom.xml` resolves the broker's classpath once, and the JVM runs
`PulsarStandaloneStarter` with the functions worker and stream storage off. The recipe's
`standalone.conf` is copied into the data directory with this stack's ports written in.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from annostack.adapters.pulsar_tokens import SecretKeyIssuer
from annostack.devstack import builds
from annostack.devstack.components import Component, http_get, port_open

# Roles of the local stack's tokens. The broker's own internal client and the operator are
# superusers; the API's role gets `produce` on each tenant namespace from the operator.
BROKER_ROLE = "annostack-broker"
OPERATOR_ROLE = "annostack-operator"
API_ROLE = "annostack-api"

JAVA_HOMES = (
    Path("/usr/lib/jvm/java-17-openjdk-amd64"),
    Path("/usr/lib/jvm/temurin-25-jdk-amd64"),
)

# Java 17 opens needed by Netty, BookKeeper and the broker (from Pulsar's bin/pulsar).
JVM_OPENS = [
    f"--add-opens={module}=ALL-UNNAMED"
    for module in (
        "java.base/java.io",
        "java.base/java.util.zip",
        "java.base/java.nio",
        "java.base/jdk.internal.misc",
        "java.base/sun.net",
        "java.management/sun.management",
        "jdk.management/com.sun.management.internal",
    )
]


def render_properties(template: str, overrides: dict[str, str]) -> str:
    """Replace `key=value` lines of a properties file; append keys it did not have."""
    remaining = dict(overrides)
    lines = []
    for line in template.splitlines():
        key = line.split("=", 1)[0].strip()
        if "=" in line and not line.lstrip().startswith("#") and key in remaining:
            line = f"{key}={remaining.pop(key)}"
        lines.append(line)
    lines += [f"{key}={value}" for key, value in remaining.items()]
    return "\n".join(lines) + "\n"


class Pulsar(Component):
    name = "pulsar"

    def prepare(self) -> None:
        self.classpath = builds.ensure_pulsar_classpath(self.ctx.settings)
        java_home = next((home for home in JAVA_HOMES if (home / "bin" / "java").exists()), None)
        if java_home is None:
            raise builds.MissingPrerequisite(
                "no JDK 17+ found; install Debian `openjdk-17-jdk-headless`"
            )
        self.java = java_home / "bin" / "java"

    def initialize(self) -> None:
        (self.data / "tmp").mkdir()

    def token(self, role: str) -> str:
        return SecretKeyIssuer(self.ctx.credentials.pulsar_token_key).issue(role)

    def before_start(self) -> None:
        """standalone.conf with this stack's ports and keys, rewritten at every start (so a
        stack made before authentication existed gets it)."""
        template = (builds.RECIPES / "pulsar" / "standalone.conf").read_text()
        ports = self.ports
        conf = render_properties(
            template,
            {
                # One bind address only: the node's, which the host reaches as pods do; the
                # broker hands it out in lookups, so it must be the one pods can dial.
                "advertisedAddress": self.ctx.node_address,
                "bindAddress": self.ctx.node_address,
                "brokerServicePort": str(ports.pulsar_broker),
                "webServicePort": str(ports.pulsar_web),
                "bookiePort": str(ports.pulsar_bookie),
                "tokenSecretKey": f"data:;base64,{self.ctx.credentials.pulsar_token_key}",
                "superUserRoles": f"{BROKER_ROLE},{OPERATOR_ROLE}",
                "brokerClientAuthenticationParameters": f"token:{self.token(BROKER_ROLE)}",
            },
        )
        path = self.data / "standalone.conf"
        path.touch(mode=0o600)
        path.write_text(conf)

    def command(self) -> list[str]:
        recipe = builds.RECIPES / "pulsar"
        return [
            str(self.java),
            "-cp",
            self.classpath,
            "-Xms256m",
            "-Xmx1g",
            "-XX:MaxDirectMemorySize=1g",
            "-XX:+UseG1GC",
            f"-Djava.io.tmpdir={self.data / 'tmp'}",
            "-Djava.net.preferIPv4Stack=true",
            "-Dio.netty.tryReflectionSetAccessible=true",
            *JVM_OPENS,
            "-Dbookkeeper.metadata.bookie.drivers="
            "org.apache.pulsar.metadata.bookkeeper.PulsarMetadataBookieDriver",
            "-Dbookkeeper.metadata.client.drivers="
            "org.apache.pulsar.metadata.bookkeeper.PulsarMetadataClientDriver",
            f"-Dlog4j.configurationFile={recipe / 'log4j2.xml'}",
            "-Dlog4j2.is.webapp=false",
            "-Dpulsar.allocator.exit_on_oom=true",
            "org.apache.pulsar.PulsarStandaloneStarter",
            # JCommander options: name and value as separate arguments.
            "--config",
            str(self.data / "standalone.conf"),
            "--no-functions-worker",
            "--no-stream-storage",
            "--advertised-address",
            self.ctx.node_address,
            "--bookkeeper-port",
            str(self.ports.pulsar_bookie),
            "--metadata-dir",
            str(self.data / "metadata"),
            "--bookkeeper-dir",
            str(self.data / "bookkeeper"),
        ]

    def probe(self) -> bool:
        # `clusters` answers a moment before the starter has created public/default; wait for
        # the namespace too, so the first client never races the broker's own set-up.
        auth = {"Authorization": f"Bearer {self.token(OPERATOR_ROLE)}"}
        try:
            clusters = http_get(f"{self.admin_url}/admin/v2/clusters", headers=auth)
            namespaces = http_get(f"{self.admin_url}/admin/v2/namespaces/public", headers=auth)
        except httpx.HTTPError:
            return False
        return (
            clusters.status_code == httpx.codes.OK
            and "standalone" in clusters.json()
            and namespaces.status_code == httpx.codes.OK
            and "public/default" in namespaces.json()
            and port_open(self.ports.pulsar_broker, self.ctx.node_address)
        )

    @property
    def admin_url(self) -> str:
        return f"http://{self.ctx.node_address}:{self.ports.pulsar_web}"

    @property
    def service_url(self) -> str:
        return f"pulsar://{self.ctx.node_address}:{self.ports.pulsar_broker}"

    @property
    def endpoint(self) -> str:
        return f"{self.service_url} (admin {self.admin_url})"

    def client_env(self) -> dict[str, str]:
        return {
            "ANNOSTACK_PULSAR__SERVICE_URL": self.service_url,
            "ANNOSTACK_PULSAR__ADMIN_URL": self.admin_url,
            "ANNOSTACK_PULSAR__CLUSTER": "standalone",
            "ANNOSTACK_PULSAR__TOKEN": self.token(OPERATOR_ROLE),
            "ANNOSTACK_PULSAR__TOKEN_SIGNING_KEY": self.ctx.credentials.pulsar_token_key,
            "ANNOSTACK_PULSAR__API_ROLE": API_ROLE,
        }

    def api_env(self) -> dict[str, str]:
        # The API signs nothing: it gets its own token, and no signing key.
        return {
            "ANNOSTACK_PULSAR__TOKEN": self.token(API_ROLE),
            "ANNOSTACK_PULSAR__TOKEN_SIGNING_KEY": "",
        }
