"""The container tools the image builds drive: buildah, podman and containerd's `ctr`.

buildah and podman get their own storage and configuration under the cache through the
``CONTAINERS_*`` variables, so nothing in /etc changes and no other podman user on the machine
sees these images. Left outside, because these versions (buildah 1.28, podman 4.3) offer no
setting for them: the blob-info cache they keep as root in /var/lib/containers/cache (a cache
of digests, safe to delete) and runc's per-container state in /run/runc while a build step runs.
Two host constraints shape every call:

* runc, not crun: crun refuses hosts whose cgroups are in hybrid (v1) mode.
* No CAP_SYS_RESOURCE: a container may not ask for an rlimit above the caller's hard limit.
  buildah ignores containers.conf's ``default_ulimits`` and asks for 1048576 open files, so
  every build and run passes explicit ``--ulimit`` values below the hard limits.

Containers run with the host's network namespace (``netns = "host"``) or none: podman's
default bridge would add iptables rules and a bridge to the host.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tarfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from annostack.devstack.builds import MissingPrerequisite, ensure_debian_packages
from annostack.devstack.console import CommandFailed, run_logged
from annostack.devstack.settings import DevStackSettings

# binary -> Debian package; runc listed so apt picks it over crun for podman's "crun | runc".
TOOL_PACKAGES = {
    "buildah": "buildah",
    "podman": "podman",
    "runc": "runc",
    "debootstrap": "debootstrap",
    "ctr": "containerd",
}
RUNC = "/usr/sbin/runc"
REPOSITORY = "localhost/annostack"  # every image built here is named below it
CONTAINERD_NAMESPACE = "k8s.io"  # the namespace kubelet's CRI plugin reads images from
# buildah's process tree runs with a lower NPROC hard limit than the shell reports: 65536
# fails with "error setting rlimit type 6", 4096 works everywhere we tried.
NPROC_LIMIT = 4096
NOFILE_CEILING = 1048576
BIND_OPTIONS = ("ro", "rw")
STATE_FORMAT = "{{.State.Status}} {{.State.ExitCode}}"
STOPPED = frozenset({"stopped", "exited"})
POLL_SECONDS = 0.2


def build_ulimits() -> dict[str, int]:
    """rlimits for build and run containers: as high as allowed, never above the hard limits."""
    nofile_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc_hard = resource.getrlimit(resource.RLIMIT_NPROC)[1]

    def capped(hard: int, ceiling: int) -> int:
        return ceiling if hard == resource.RLIM_INFINITY else min(hard, ceiling)

    return {"nofile": capped(nofile_hard, NOFILE_CEILING), "nproc": capped(nproc_hard, NPROC_LIMIT)}


@dataclass(frozen=True)
class BuildMount:
    """A host path bind-mounted into every RUN step of a build (never committed to a layer)."""

    source: Path
    target: str
    mode: str = "ro"

    def flag(self) -> str:
        assert self.mode in BIND_OPTIONS, self.mode
        return f"{self.source}:{self.target}:{self.mode}"


def bud_argv(
    containerfile: Path,
    context: Path,
    ref: str,
    *,
    build_args: Mapping[str, str] | None = None,
    mounts: Sequence[BuildMount] = (),
    ulimits: Mapping[str, int] | None = None,
    target: str | None = None,
    timestamp: int | None = None,
) -> list[str]:
    """The `buildah bud` command line for one image.

    ``--layers`` caches every step, so the builder stage the three Dockerfiles share is built
    once; ``--pull=never`` because every base is built here (nothing may reach a registry);
    ``--force-rm`` so a failed step leaves no working container behind; ``--timestamp``
    (optional) fixes the creation dates for a reproducible image.
    """
    argv = [
        "buildah", "bud", "--layers", "--force-rm", "--pull=never", "--network", "host",
        "--format", "oci", "--file", str(containerfile), "--tag", ref,
    ]  # fmt: skip
    for limit, value in (ulimits if ulimits is not None else build_ulimits()).items():
        argv += ["--ulimit", f"{limit}={value}:{value}"]
    for name, arg in (build_args or {}).items():
        argv += ["--build-arg", f"{name}={arg}"]
    for mount in mounts:
        argv += ["--volume", mount.flag()]
    if target is not None:
        argv += ["--target", target]
    if timestamp is not None:
        argv += ["--timestamp", str(timestamp)]
    return [*argv, str(context)]


class ContainerTools:
    """buildah and podman configured to keep everything under ``<home>/images/containers``."""

    def __init__(self, settings: DevStackSettings) -> None:
        self.home = settings.home / "images"
        self.config_dir = self.home / "containers"
        self.log_dir = self.home / "logs"
        self.tmp_dir = self.home / "tmp"
        self._settings = settings

    def prepare(self) -> None:
        """Check the prerequisites, install missing tools, write the configuration."""
        if os.geteuid() != 0:
            raise MissingPrerequisite(
                "building images needs root (debootstrap, and buildah with runc and no user "
                "namespaces); run `annostack dev images` as root"
            )
        ensure_debian_packages(TOOL_PACKAGES, self._settings)
        for directory in (self.config_dir, self.log_dir, self.tmp_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self._write_config()

    def _write_config(self) -> None:
        storage = self.config_dir / "storage"
        (self.config_dir / "storage.conf").write_text(
            "[storage]\n"
            'driver = "overlay"\n'
            f'graphroot = "{storage}"\n'
            f'runroot = "{self.config_dir / "run"}"\n'
        )
        (self.config_dir / "containers.conf").write_text(
            "[containers]\n"
            'netns = "host"\n'
            "[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'image_copy_tmp_dir = "{self.tmp_dir}"\n'
            f'tmp_dir = "{self.config_dir / "libpod"}"\n'
            "[engine.runtimes]\n"
            f'runc = ["{RUNC}"]\n'
            "[network]\n"
            f'network_config_dir = "{self.config_dir / "networks"}"\n'
        )
        # Fully qualified names only: an unqualified FROM fails instead of trying docker.io.
        (self.config_dir / "registries.conf").write_text(
            'unqualified-search-registries = []\nshort-name-mode = "enforcing"\n'
        )

    def env(self) -> dict[str, str]:
        """The environment every buildah/podman call runs with."""
        return {
            **os.environ,
            "CONTAINERS_STORAGE_CONF": str(self.config_dir / "storage.conf"),
            "CONTAINERS_CONF": str(self.config_dir / "containers.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(self.config_dir / "registries.conf"),
            "TMPDIR": str(self.tmp_dir),
        }

    def run_logged(self, argv: Sequence[str], *, label: str, log_name: str) -> None:
        run_logged(argv, label=label, log_path=self.log_dir / log_name, env=self.env())

    def output(self, argv: Sequence[str]) -> str:
        """A quick command's stdout; its stderr in the error if it fails."""
        result = subprocess.run(list(argv), capture_output=True, text=True, env=self.env())
        if result.returncode != 0:
            raise CommandFailed(f"{' '.join(argv)} failed: {result.stderr.strip()}")
        return result.stdout

    def image_exists(self, ref: str) -> bool:
        probe = ["podman", "image", "exists", ref]
        return subprocess.run(probe, env=self.env(), capture_output=True).returncode == 0

    def image_size(self, ref: str) -> int:
        """Bytes of the image's layers, uncompressed (what `podman images` shows)."""
        return int(self.output(["podman", "image", "inspect", "--format", "{{.Size}}", ref]))

    def refs(self, prefix: str) -> list[str]:
        """The tagged images whose names start with ``prefix``, as repository:tag."""
        listing = self.output(["podman", "images", "--format", "{{.Repository}}:{{.Tag}}"])
        return sorted({line for line in listing.split() if line.startswith(prefix)})

    def remove(self, refs: Sequence[str]) -> None:
        if refs:
            self.output(["podman", "rmi", "--force", *refs])

    def prune(self) -> None:
        """Drop untagged images nothing builds on (the layers of replaced tags)."""
        self.output(["podman", "image", "prune", "--force"])

    def export(self, ref: str, archive: Path, *, label: str, log_name: str) -> None:
        """Write the image to an OCI archive (atomically: a partial archive never counts)."""
        archive.parent.mkdir(parents=True, exist_ok=True)
        partial = archive.with_name(archive.name + ".partial")
        partial.unlink(missing_ok=True)
        # zstd: a quarter smaller than gzip and quicker to write and to unpack (containerd
        # reads it since 1.5).
        self.run_logged(
            [
                "buildah",
                "push",
                "--compression-format",
                "zstd",
                ref,
                f"oci-archive:{partial}:{ref}",
            ],
            label=label,
            log_name=log_name,
        )
        partial.rename(archive)

    def run_argv(
        self,
        ref: str,
        args: Sequence[str],
        *,
        name: str,
        entrypoint: str | None = None,
    ) -> list[str]:
        """`podman run --detach` argv for one throwaway container without network."""
        argv = ["podman", "run", "--detach", "--name", name, "--network", "none"]
        for limit, value in build_ulimits().items():
            argv += ["--ulimit", f"{limit}={value}:{value}"]
        if entrypoint is not None:
            argv += ["--entrypoint", entrypoint]
        return [*argv, ref, *args]

    def state(self, name: str) -> tuple[str, int]:
        """A container's status (running, stopped, exited, ...) and exit code."""
        inspect = ["podman", "container", "inspect", "--format", STATE_FORMAT, name]
        status, code = self.output(inspect).split()
        return status, int(code)

    def wait(self, name: str, timeout: float) -> int:
        """Poll until the container has stopped; its exit code.

        Not `podman wait` or an attached `podman run`: where PID 1 reaps orphans late (as
        on the sandboxed VMs we develop on) they wait 20 s for conmon to vanish after every
        container; the state podman inspects is right at once.
        """
        deadline = time.monotonic() + timeout
        while (state := self.state(name))[0] not in STOPPED:
            if time.monotonic() > deadline:
                raise CommandFailed(f"container {name} still {state[0]} after {timeout:.0f}s")
            time.sleep(POLL_SECONDS)
        return state[1]

    def run(
        self,
        ref: str,
        args: Sequence[str],
        *,
        entrypoint: str | None = None,
        timeout: float = 120.0,
    ) -> RunResult:
        """Run one throwaway container (no network) to completion: exit code and output."""
        name = f"annostack-run-{uuid.uuid4().hex[:12]}"
        self.output(self.run_argv(ref, args, name=name, entrypoint=entrypoint))
        try:
            code = self.wait(name, timeout)
            logs = subprocess.run(
                ["podman", "logs", name], capture_output=True, text=True, env=self.env()
            )
            return RunResult(code, logs.stdout, logs.stderr)
        finally:
            self.remove_container(name)

    def remove_container(self, name: str) -> None:
        remove = ["podman", "rm", "--force", "--ignore", name]
        subprocess.run(remove, capture_output=True, env=self.env())


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class ArchivedImage:
    """What an OCI archive holds: its image name and manifest digest."""

    ref: str
    digest: str


def read_archive(archive: Path) -> ArchivedImage:
    """The single image an OCI archive written by `ContainerTools.export` holds."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        if member is None:
            raise CommandFailed(f"{archive} is not an OCI archive (no index.json)")
        index = json.load(member)
    (manifest,) = index["manifests"]
    ref = manifest.get("annotations", {}).get("org.opencontainers.image.ref.name", "")
    return ArchivedImage(ref=ref, digest=manifest["digest"])


def listed_digest(listing: str, ref: str) -> str | None:
    """The digest `ctr images ls` shows for ``ref`` (columns REF TYPE DIGEST ...), if any."""
    for line in listing.splitlines()[1:]:
        columns = line.split()
        if len(columns) >= 3 and columns[0] == ref:
            return columns[2]
    return None


def _ctr(address: Path, *args: str) -> list[str]:
    return ["ctr", "--address", str(address), "--namespace", CONTAINERD_NAMESPACE, *args]


def containerd_digest(ref: str, address: Path) -> str | None:
    """The digest containerd at ``address`` holds for ``ref`` in kubelet's namespace."""
    if shutil.which("ctr") is None:
        raise MissingPrerequisite("`ctr` is not on PATH; install Debian `containerd`")
    if not address.is_socket():
        raise MissingPrerequisite(f"containerd is not running: no socket at {address}")
    result = subprocess.run(
        _ctr(address, "images", "ls", f"name=={ref}"), capture_output=True, text=True
    )
    if result.returncode != 0:
        raise CommandFailed(f"ctr images ls at {address} failed: {result.stderr.strip()}")
    return listed_digest(result.stdout, ref)


def load_into_containerd(archive: Path, ref: str, address: Path) -> bool:
    """Import an OCI archive into containerd (namespace k8s.io) unless it already holds it.

    Skipped when containerd lists ``ref`` with the archive's manifest digest; returns whether
    it imported. The archive must carry ``ref`` as its name (exports from here do).
    """
    archived = read_archive(archive)
    if archived.ref != ref:
        raise CommandFailed(f"{archive} holds {archived.ref or 'an unnamed image'}, not {ref}")
    if containerd_digest(ref, address) == archived.digest:
        return False
    run_logged(
        _ctr(address, "images", "import", str(archive)),
        label=f"loading {ref} into containerd",
        log_path=archive.with_name(archive.name.removesuffix(".oci.tar") + ".import.log"),
    )
    loaded = containerd_digest(ref, address)
    if loaded != archived.digest:
        raise CommandFailed(f"after import containerd lists {ref} as {loaded}, not {archived}")
    return True


def prune_containerd(address: Path, prefix: str, keep: set[str]) -> list[str]:
    """Remove the images under `prefix` that containerd at `address` holds beyond `keep` and
    no container (running or stopped) was made from; return their refs.

    kubelet's image garbage collection is off on the local node (an imported image cannot be
    pulled back), so without this every build of the tree stays in containerd for good.
    """
    listed = subprocess.run(_ctr(address, "images", "ls", "-q"), capture_output=True, text=True)
    containers = subprocess.run(_ctr(address, "containers", "ls"), capture_output=True, text=True)
    if listed.returncode != 0 or containers.returncode != 0:
        raise CommandFailed(
            f"ctr at {address} failed: {(listed.stderr + containers.stderr)[-500:]}"
        )
    # `containers ls`: a header, then CONTAINER IMAGE RUNTIME per line.
    used = {line.split()[1] for line in containers.stdout.splitlines()[1:] if line.split()}
    stale = [
        ref
        for ref in listed.stdout.split()
        if ref.startswith(prefix) and ref not in keep and ref not in used
    ]
    if stale:
        subprocess.run(_ctr(address, "images", "rm", *stale), capture_output=True, check=True)
    return stale
