"""The local stack's Kubernetes node: containerd, kubelet, kube-scheduler, kube-proxy, CoreDNS,
and a NetworkPolicy engine.

One node, registered with the stack's apiserver, on which the platform's pods run as they do
in a cluster. Decisions, most of them forced by this kind of machine (cgroup v1, no
CAP_SYS_RESOURCE, no Docker, no registry), see docs/local-stack.md:

- **Runtime**: Debian's containerd 1.6 with runc (crun refuses the hybrid cgroup layout) and
  the cgroupfs driver, all state under the stack's cache, its own socket. Images never come
  from a registry: the sandbox (pause) image and the platform's images are built here and
  imported (`images.py`), and kubelet never garbage-collects them.
- **Identity**: kubelet logs in with its own client certificate (``system:node:<name>``), so
  the Node authorizer and NodeRestriction apply; it serves with a certificate for the node's
  address and accepts only webhook-authorised clients, among them the apiserver (logs, exec,
  port-forward). The scheduler and kube-proxy log in as their built-in users.
- **Network**: a bridge of the stack's own (`hoststate.PodNetwork`) with CNI bridge +
  host-local IPAM; the bridge's address is the node's address, where kubelet and CoreDNS
  listen and the stack's servers answer pods. kube-proxy (nftables) makes Services work;
  CoreDNS resolves `*.svc.cluster.local` and nothing else, so no query leaves the machine.
- **NetworkPolicy**: kube-network-policies (the engine kind's own CNI embeds) decides the
  first packet of each pod connection in userspace against the policies; an iptables NFQUEUE
  rule of ours hands it the packets (this kernel has no nftables `queue`, which it would use).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import yaml

from annostack.devstack import builds, hoststate, images
from annostack.devstack.components import HOST, Component, http_get, http_ok
from annostack.devstack.pki import CertRequest, ClusterCA, KeyPair
from annostack.devstack.settings import NodeSettings

CONTAINERD = Path("/usr/bin/containerd")
CTR = Path("/usr/bin/ctr")
RUNC = Path("/usr/sbin/runc")
CNI_BIN_DIR = Path("/usr/lib/cni")
NODE_PACKAGES = {
    str(CONTAINERD): "containerd",
    str(CTR): "containerd",
    str(RUNC): "runc",
    str(CNI_BIN_DIR / "bridge"): "containernetworking-plugins",
    "/usr/sbin/nft": "nftables",  # kube-proxy's nftables mode drives the `nft` command
}
CNI_NETWORK = "annostack"
CNI_CACHE = Path("/var/lib/cni")  # libcni's cache directory; containerd 1.6 cannot move it


def client_kubeconfig(server: str, ca: Path, identity: KeyPair, user: str) -> dict[str, Any]:
    """A kubeconfig that logs in with a client certificate."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate": str(identity.cert), "client-key": str(identity.key)},
            }
        ],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
        "current-context": "local",
    }


def write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(text)


class NodeComponent(Component):
    """A node process: knows the node's settings, the CA and the apiserver's address."""

    @property
    def node(self) -> NodeSettings:
        return self.ctx.settings.node

    @property
    def ca(self) -> ClusterCA:
        return self.ctx.ca()

    @property
    def apiserver(self) -> str:
        return f"https://{self.node.address}:{self.ports.kube_apiserver}"

    def kubeconfig_for(self, cn: str, organizations: tuple[str, ...] = ()) -> Path:
        identity = self.ca.issue(self.name, CertRequest(cn, organizations))
        path = self.data / f"{self.name}.kubeconfig"
        config = client_kubeconfig(self.apiserver, self.ca.pair.cert, identity, cn)
        write_private(path, yaml.safe_dump(config, sort_keys=False))
        return path


class Containerd(NodeComponent):
    name = "containerd"
    _images: images.ImageSet | None = None

    def prepare(self) -> None:
        hoststate.require_root()
        builds.ensure_debian_packages(NODE_PACKAGES, self.ctx.settings)
        # Built before any server starts, like every other build (cached by their inputs).
        self._images = images.ensure_images(self.ctx.settings)

    @property
    def images(self) -> images.ImageSet:
        if self._images is None:  # `dev env` without `up`: the cache answers, or it builds
            self._images = images.ensure_images(self.ctx.settings)
        return self._images

    @property
    def socket(self) -> Path:
        return self.data / "containerd.sock"

    def before_start(self) -> None:
        (self.data / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
        (self.data / "cni" / "net.d" / "10-annostack.conflist").write_text(
            json.dumps(self._cni_config(), indent=2)
        )
        (self.data / "containerd.toml").write_text(self._config())

    def _cni_config(self) -> dict[str, Any]:
        node = self.node
        bridge = {
            "type": "bridge",
            "bridge": node.bridge,
            "isGateway": True,
            "ipMasq": False,  # nothing leaves the machine, so there is nothing to masquerade
            "hairpinMode": True,  # a pod reaching its own Service
            "ipam": {
                "type": "host-local",
                "dataDir": str(self.data / "cni" / "ipam"),
                "ranges": [[{"subnet": node.pod_cidr, "gateway": node.address}]],
                "routes": [{"dst": "0.0.0.0/0"}],
            },
        }
        portmap = {"type": "portmap", "capabilities": {"portMappings": True}}
        return {"cniVersion": "1.0.0", "name": CNI_NETWORK, "plugins": [bridge, portmap]}

    def _config(self) -> str:
        cri = '[plugins."io.containerd.grpc.v1.cri"]'
        return f"""\
# Rendered by annostack on every start (annostack/devstack/node.py).
version = 2
root = "{self.data / "root"}"
state = "{self.data / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.opt"]

[grpc]
  address = "{self.socket}"
[ttrpc]
  address = ""
[debug]
  address = ""
[metrics]
  address = ""

{cri}
  sandbox_image = "{self.images.pause.ref}"
  stream_server_address = "{HOST}"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  # Lowering a process' oom_score_adj below 0 needs CAP_SYS_RESOURCE, which this host lacks.
  restrict_oom_score_adj = true
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{self.data / "cni" / "net.d"}"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{RUNC}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
"""

    def command(self) -> list[str]:
        return [str(CONTAINERD), "--config", str(self.data / "containerd.toml")]

    def client_env(self) -> dict[str, str]:
        # Tenants that name no worker image get the one built from this tree.
        return {"ANNOSTACK_DEFAULT_WORKER_IMAGE": self.images.worker.ref}

    def probe(self) -> bool:
        if not self.socket.exists():
            return False
        version = hoststate.run([str(CTR), "-a", str(self.socket), "version"], check=False)
        return version.returncode == 0

    def configure(self) -> None:
        self.images.load_into_containerd(self.socket)

    def after_stop(self) -> None:
        """Containers outlive containerd (their shims are separate processes): end them,
        then everything they left mounted and the cgroups kubelet made for them."""
        kill_pod_processes()
        for pid in self._shim_pids():
            os.kill(pid, signal.SIGKILL)
        hoststate.unmount_below([self.data])
        hoststate.remove_pod_cgroups()
        _remove_pod_netns()

    def _shim_pids(self) -> list[int]:
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"containerd-shim" in argv[0] and str(self.socket).encode() in argv:
                pids.append(int(proc.name))
        return pids

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"


def kill_pod_processes() -> None:
    """SIGKILL every process in kubelet's pod cgroups (the pids hierarchy lists them all)."""
    root = hoststate.CGROUP_ROOT / "pids" / "kubepods"
    if not root.is_dir():
        return
    for procs in root.rglob("cgroup.procs"):
        for line in procs.read_text().split():
            try:
                os.kill(int(line), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                continue


def _remove_pod_netns() -> None:
    """Network namespaces containerd made for pods, and libcni's cache of their results."""
    netns = Path("/run/netns")
    for path in netns.glob("cni-*") if netns.is_dir() else ():
        hoststate.run(["umount", "-l", str(path)], check=False)
        path.unlink(missing_ok=True)
    results = CNI_CACHE / "results"
    for pattern in (f"{CNI_NETWORK}-*", "cni-loopback-*"):
        for path in results.glob(pattern) if results.is_dir() else ():
            path.unlink(missing_ok=True)


class KubeScheduler(NodeComponent):
    name = "kube-scheduler"
    requires = ("kube-apiserver",)

    def prepare(self) -> None:
        self.binary = builds.ensure_go_binaries(builds.KUBERNETES, self.ctx.settings)[self.name]

    def before_start(self) -> None:
        self.kubeconfig = self.kubeconfig_for("system:kube-scheduler")

    def command(self) -> list[str]:
        kubeconfig = str(self.kubeconfig)
        return [
            str(self.binary),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--bind-address={HOST}",
            f"--secure-port={self.ports.kube_scheduler}",
            f"--cert-dir={self.data / 'serving'}",
            "--leader-elect=false",
            "--v=1",
        ]

    def probe(self) -> bool:
        return http_ok(f"{self.endpoint}/healthz")  # always-allowed path, no credentials

    @property
    def endpoint(self) -> str:
        return f"https://{HOST}:{self.ports.kube_scheduler}"


class Kubelet(NodeComponent):
    name = "kubelet"
    requires = ("kube-apiserver", "containerd")

    def prepare(self) -> None:
        self.binary = builds.ensure_go_binaries(builds.KUBERNETES, self.ctx.settings)[self.name]

    @property
    def root_dir(self) -> Path:
        return self.data / "root"

    def before_start(self) -> None:
        node = self.node
        self.kubeconfig = self.kubeconfig_for(f"system:node:{node.name}", ("system:nodes",))
        serving = self.ca.issue(
            "kubelet-serving",
            CertRequest(
                f"system:node:{node.name}", ("system:nodes",),
                ip_addresses=(node.address,), dns_names=(node.name,), client=False, server=True,
            ),
        )  # fmt: skip
        config = self._config(serving)
        (self.data / "kubelet-config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    def _config(self, serving: KeyPair) -> dict[str, Any]:
        containerd = self.ctx.data_dir(Containerd.name) / "containerd.sock"
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "containerRuntimeEndpoint": f"unix://{containerd}",
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,  # this host has cgroup v1 only
            "failSwapOn": False,
            "address": self.node.address,
            "port": self.ports.kubelet,
            "readOnlyPort": 0,
            "healthzBindAddress": HOST,
            "healthzPort": self.ports.kubelet_healthz,
            "tlsCertFile": str(serving.cert),
            "tlsPrivateKeyFile": str(serving.key),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.ca.pair.cert)},
            },
            "authorization": {"mode": "Webhook"},
            "clusterDNS": [self.node.address],
            "clusterDomain": self.node.cluster_domain,
            # The host's resolvers are unreachable from pods (and from this machine's network):
            # pods get the cluster DNS only.
            "resolvConf": "",
            "podLogsDir": str(self.data / "pod-logs"),
            "staticPodPath": "",
            "maxPods": 110,
            "serializeImagePulls": False,
            # Images are imported, never pulled: garbage-collecting one would lose it for good.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "200Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "protectKernelDefaults": False,
            "registerNode": True,
            "rotateCertificates": False,
            "shutdownGracePeriod": "0s",
        }

    def command(self) -> list[str]:
        return [
            str(self.binary),
            f"--config={self.data / 'kubelet-config.yaml'}",
            f"--kubeconfig={self.kubeconfig}",
            f"--hostname-override={self.node.name}",
            f"--node-ip={self.node.address}",
            f"--root-dir={self.root_dir}",
            f"--cert-dir={self.data / 'pki'}",
            "--v=1",
        ]

    def probe(self) -> bool:
        if not http_ok(f"http://{HOST}:{self.ports.kubelet_healthz}/healthz"):
            return False
        return node_ready(self.ctx.kubeconfig, self.node.name)

    def after_stop(self) -> None:
        hoststate.remove_kubelet_chains()
        hoststate.unmount_below([self.root_dir])

    @property
    def endpoint(self) -> str:
        return f"https://{self.node.address}:{self.ports.kubelet} (node {self.node.name})"


def node_ready(admin_kubeconfig: Path, name: str) -> bool:
    """The Node object exists and its Ready condition is True."""
    config = yaml.safe_load(admin_kubeconfig.read_text())
    server = config["clusters"][0]["cluster"]["server"]
    token = config["users"][0]["user"]["token"]
    try:
        reply = http_get(
            f"{server}/api/v1/nodes/{name}", headers={"Authorization": f"Bearer {token}"}
        )
    except Exception:
        return False
    if reply.status_code != 200:
        return False
    conditions = reply.json().get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


class KubeProxy(NodeComponent):
    name = "kube-proxy"
    requires = ("kube-apiserver", "kubelet")

    def prepare(self) -> None:
        self.binary = builds.ensure_go_binaries(builds.KUBERNETES, self.ctx.settings)[self.name]

    def before_start(self) -> None:
        kubeconfig = self.kubeconfig_for("system:kube-proxy")
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "hostnameOverride": self.node.name,
            "mode": "nftables",
            "clusterCIDR": self.node.pod_cidr,
            "healthzBindAddress": f"{HOST}:{self.ports.kube_proxy_healthz}",
            "metricsBindAddress": f"{HOST}:{self.ports.kube_proxy_metrics}",
            # NodePorts on the node's address only (nftables mode refuses loopback).
            "nodePortAddresses": [f"{self.node.address}/32"],
            # Zero: leave the host's conntrack table size and timeouts as they are.
            "conntrack": {
                "maxPerCore": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
        }
        (self.data / "kube-proxy.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    def command(self) -> list[str]:
        return [str(self.binary), f"--config={self.data / 'kube-proxy.yaml'}", "--v=1"]

    def probe(self) -> bool:
        return http_ok(f"http://{HOST}:{self.ports.kube_proxy_healthz}/healthz")

    def after_stop(self) -> None:
        hoststate.remove_kube_proxy_tables()

    @property
    def endpoint(self) -> str:
        return f"nftables (healthz http://{HOST}:{self.ports.kube_proxy_healthz})"


class CoreDNS(NodeComponent):
    """Cluster DNS on the node's address: Service and pod names, nothing upstream."""

    name = "coredns"
    requires = ("kube-apiserver",)

    def prepare(self) -> None:
        self.binary = builds.ensure_go_binaries(builds.COREDNS, self.ctx.settings)["coredns"]

    def before_start(self) -> None:
        (self.data / "Corefile").write_text(self._corefile())

    def _corefile(self) -> str:
        node = self.node
        domain = node.cluster_domain
        # A dev-stack server like the controller manager: it reads with the admin kubeconfig.
        return f"""\
{domain}:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {node.address}
    errors
    ready {HOST}:{self.ports.coredns_ready}
    kubernetes {domain} in-addr.arpa ip6.arpa {{
        kubeconfig {self.ctx.kubeconfig}
        pods insecure
    }}
    cache 30
    loadbalance
}}
.:53 {{
    bind {node.address}
    errors
    # No upstream resolver: traffic never leaves the machine.
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
"""

    def command(self) -> list[str]:
        return [str(self.binary), "-conf", str(self.data / "Corefile")]

    def probe(self) -> bool:
        return http_ok(f"http://{HOST}:{self.ports.coredns_ready}/ready")

    @property
    def endpoint(self) -> str:
        return f"dns://{self.node.address}:53"


class NetworkPolicies(NodeComponent):
    """NetworkPolicy enforcement for the node's pods: kube-network-policies' verdicts.

    The engine answers, in userspace and against the policies, for the first packet of each
    new connection to or from a pod, which `hoststate.PolicyQueue` hands it through an NFQUEUE
    at POSTROUTING (before SNAT; bridged pod-to-pod packets pass there as br_netfilter is on).
    As upstream, what the node's root processes send passes without a verdict, and what a pod
    sends to the node itself never reaches POSTROUTING (it is INPUT): pods reach the stack's
    servers on the node's address whatever their egress policy says, as a cluster's pods
    reach out-of-cluster backends through their routes; their credentials fence them there.
    """

    name = "network-policies"
    requires = ("kube-apiserver", "kubelet")
    QUEUE = 100

    def prepare(self) -> None:
        binaries = builds.ensure_go_binaries(builds.NETWORK_POLICIES, self.ctx.settings)
        self.binary = binaries["kube-network-policies"]

    @property
    def queue(self) -> hoststate.PolicyQueue:
        return hoststate.PolicyQueue(self.node, self.QUEUE)

    def before_start(self) -> None:
        self.queue.ensure()

    def command(self) -> list[str]:
        # A dev-stack server like CoreDNS and the controller manager: the admin kubeconfig.
        return [
            str(self.binary),
            f"--kubeconfig={self.ctx.kubeconfig}",
            f"--hostname-override={self.node.name}",
            f"--metrics-bind-address={HOST}:{self.ports.network_policies_metrics}",
            f"--nfqueue-id={self.QUEUE}",
            "--v=1",
        ]

    def probe(self) -> bool:
        # Its queue metrics are registered once its informers have synced: it decides.
        try:
            metrics = http_get(f"http://{HOST}:{self.ports.network_policies_metrics}/metrics")
        except httpx.HTTPError:
            return False
        registered = metrics.status_code == 200 and "kube_network_policies_" in metrics.text
        return registered and self.queue.installed()

    def after_stop(self) -> None:
        self.queue.remove()

    @property
    def endpoint(self) -> str:
        metrics = f"http://{HOST}:{self.ports.network_policies_metrics}/metrics"
        return f"NFQUEUE {self.QUEUE} from mangle {hoststate.PolicyQueue.CHAIN} ({metrics})"
