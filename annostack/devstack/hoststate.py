"""Host state the node needs or changes, and how `dev down` puts it back.

A node is not only processes: pods need a bridge with the node's address, IP forwarding, and a
firewall that keeps their traffic on the machine; kubelet and kube-proxy tune kernel settings,
add iptables chains and nftables tables, leave cgroups and mounts behind. Everything here is
idempotent, and everything the stack changes is recorded first (`Sysctls`) or identified by a
name of the stack's own, so `down` removes exactly what `up` added and nothing else.

All of it needs root, as a node does; the commands are Debian's iproute2, iptables and nftables.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from annostack.devstack.builds import MissingPrerequisite
from annostack.devstack.settings import NodeSettings

# Kernel settings kubelet sets on start (its "kernel tunables") and the one the pod network
# needs. kube-proxy's conntrack timeouts are not here: its config tells it to leave them.
TOUCHED_SYSCTLS = (
    "net.ipv4.ip_forward",
    "vm.overcommit_memory",
    "kernel.panic",
    "kernel.panic_on_oops",
)
KUBELET_IPTABLES_CHAINS = {
    "filter": ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY"),
    "nat": ("KUBE-KUBELET-CANARY",),
    "mangle": ("KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT"),
}
KUBE_PROXY_NFT_TABLES = (("ip", "kube-proxy"), ("ip6", "kube-proxy"))
CGROUP_ROOT = Path("/sys/fs/cgroup")


def require_root() -> None:
    if os.geteuid() != 0:
        raise MissingPrerequisite(
            "the local node (kubelet, containerd, the pod bridge) needs root; run as root"
        )


def run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=check, capture_output=True, text=True)


class Sysctls:
    """Kernel settings saved once before the stack first changes them, restored by `down`."""

    def __init__(self, saved: Path) -> None:
        self.saved = saved

    def remember(self) -> None:
        if self.saved.exists():
            return  # saved by an earlier `up` whose `down` has not run: keep the originals
        values = {name: _read_sysctl(name) for name in TOUCHED_SYSCTLS}
        self.saved.write_text(json.dumps(values, indent=2))

    def restore(self) -> None:
        if not self.saved.exists():
            return
        for name, value in json.loads(self.saved.read_text()).items():
            _write_sysctl(name, value)
        self.saved.unlink()


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def _read_sysctl(name: str) -> str:
    return _sysctl_path(name).read_text().strip()


def _write_sysctl(name: str, value: str) -> None:
    _sysctl_path(name).write_text(value)


class PodNetwork:
    """The pods' bridge (its address is the node's) and a firewall that keeps them local.

    Pods reach each other across the bridge and the node at its address; anything routed off
    the bridge towards another interface is dropped, both ways, so no pod reaches beyond the
    machine and nothing outside reaches a pod.
    """

    def __init__(self, node: NodeSettings, sysctls: Sysctls) -> None:
        self.node = node
        self.sysctls = sysctls

    def ensure(self) -> None:
        require_root()
        for tool in ("ip", "iptables"):
            if shutil.which(tool) is None:
                raise MissingPrerequisite(
                    f"`{tool}` not found; run: apt-get install iproute2 iptables"
                )
        self.sysctls.remember()
        if run(["ip", "link", "show", self.node.bridge], check=False).returncode != 0:
            run(["ip", "link", "add", self.node.bridge, "type", "bridge"])
        address = f"{self.node.address}/{self.node.prefix_length}"
        if address not in run(["ip", "-4", "addr", "show", "dev", self.node.bridge]).stdout:
            run(["ip", "addr", "add", address, "dev", self.node.bridge])
        run(["ip", "link", "set", self.node.bridge, "up"])
        _write_sysctl("net.ipv4.ip_forward", "1")  # ClusterIP DNAT to a pod is forwarding
        for rule in self._firewall_rules():
            if run(["iptables", "-C", "FORWARD", *rule], check=False).returncode != 0:
                run(["iptables", "-I", "FORWARD", "1", *rule])

    def _firewall_rules(self) -> list[list[str]]:
        bridge = self.node.bridge
        comment = ["-m", "comment", "--comment", "annostack: pod traffic stays on the machine"]
        return [
            ["-i", bridge, "!", "-o", bridge, *comment, "-j", "DROP"],
            ["-o", bridge, "!", "-i", bridge, *comment, "-j", "DROP"],
        ]

    def remove(self) -> None:
        for rule in self._firewall_rules():
            while run(["iptables", "-D", "FORWARD", *rule], check=False).returncode == 0:
                pass
        run(["ip", "link", "del", self.node.bridge], check=False)
        self.sysctls.restore()


def remove_kubelet_chains() -> None:
    """The iptables chains kubelet adds (and re-adds while it runs) in every table."""
    for binary in ("iptables", "ip6tables"):
        if shutil.which(binary) is None:
            continue
        for table, chains in KUBELET_IPTABLES_CHAINS.items():
            for chain in chains:
                for parent in ("INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"):
                    run([binary, "-t", table, "-D", parent, "-j", chain], check=False)
                run([binary, "-t", table, "-F", chain], check=False)
                run([binary, "-t", table, "-X", chain], check=False)


def remove_kube_proxy_tables() -> None:
    if shutil.which("nft") is None:
        return
    for family, table in KUBE_PROXY_NFT_TABLES:
        run(["nft", "delete", "table", family, table], check=False)


class PolicyQueue:
    """The rules that hand the NetworkPolicy engine the first packet of each new pod
    connection (NFQUEUE), in a chain of ours in mangle POSTROUTING.

    kube-network-policies writes these as nftables `queue` rules, but this kind of machine's
    kernel has no nft_queue (CONFIG_NFT_QUEUE is off; the xtables NFQUEUE target is built
    in), so its own table fails to load and the stack steers packets the iptables way. The
    rules mirror the engine's: the node's root processes pass (kubelet's probes, exec), as
    do packets of connections already decided; every other packet from or to the pod network
    waits for a verdict. `--queue-bypass`: with no engine listening, packets pass (fail-open,
    as the engine's own default), so a stopped engine never cuts the stack off.
    """

    CHAIN = "ANNOSTACK-NETPOL"

    def __init__(self, node: NodeSettings, queue: int) -> None:
        self.node = node
        self.queue = queue

    def _rules(self) -> list[list[str]]:
        verdict = ["-j", "NFQUEUE", "--queue-num", str(self.queue), "--queue-bypass"]
        return [
            ["-m", "owner", "--uid-owner", "0", "-j", "RETURN"],
            ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"],
            ["-s", self.node.pod_cidr, *verdict],
            ["-d", self.node.pod_cidr, *verdict],
        ]

    def ensure(self) -> None:
        mangle = ["iptables", "-t", "mangle"]
        if run([*mangle, "-N", self.CHAIN], check=False).returncode != 0:
            run([*mangle, "-F", self.CHAIN])  # left by an earlier run: rewritten
        for rule in self._rules():
            run([*mangle, "-A", self.CHAIN, *rule])
        if run([*mangle, "-C", "POSTROUTING", "-j", self.CHAIN], check=False).returncode != 0:
            run([*mangle, "-A", "POSTROUTING", "-j", self.CHAIN])

    def installed(self) -> bool:
        listed = run(["iptables", "-t", "mangle", "-S", self.CHAIN], check=False)
        return listed.returncode == 0 and listed.stdout.count("NFQUEUE") == 2

    def remove(self) -> None:
        mangle = ["iptables", "-t", "mangle"]
        while run([*mangle, "-D", "POSTROUTING", "-j", self.CHAIN], check=False).returncode == 0:
            pass
        run([*mangle, "-F", self.CHAIN], check=False)
        run([*mangle, "-X", self.CHAIN], check=False)


def remove_pod_cgroups() -> None:
    """kubelet's `kubepods` cgroup trees in every v1 hierarchy, deepest first."""
    for hierarchy in CGROUP_ROOT.iterdir() if CGROUP_ROOT.exists() else ():
        top = hierarchy / "kubepods"
        if not top.is_dir():
            continue
        for directory in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if directory.is_dir():
                with contextlib.suppress(OSError):
                    directory.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def unmount_below(roots: Iterable[Path]) -> None:
    """Unmount everything mounted at or below `roots` (deepest first): kubelet's bind mount
    of its root dir, containerd's snapshots and pod volumes, network namespace files."""
    prefixes = [str(root.resolve()) for root in roots]
    mounts = [
        line.split()[1]
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if len(line.split()) > 1
    ]
    targets = [m for m in mounts if any(m == p or m.startswith(p + "/") for p in prefixes)]
    for target in sorted(set(targets), key=len, reverse=True):
        run(["umount", "-l", target], check=False)
