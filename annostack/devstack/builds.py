"""Obtaining the local stack's servers: Go builds, a Maven classpath, Debian packages.

Recipes live in ``recipes/`` as committed, fully resolved manifests (``go.mod`` + ``go.sum``,
``pom.xml``), so every machine builds the same versions. Outputs are cached under
``~/.cache/annostack`` in a directory named after a hash of the recipe and the toolchain: a
fresh clone (or CI on the same machine) reuses them, and a changed recipe rebuilds by itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from annostack.devstack.console import run_logged, say
from annostack.devstack.settings import DevStackSettings

RECIPES = Path(__file__).parent / "recipes"


class MissingPrerequisite(RuntimeError):
    """A tool the stack needs is not installed and cannot be installed from here."""


@dataclass(frozen=True)
class SourcePatch:
    """A dependency's main package, copied into the recipe's module with one literal change.

    For an upstream default no flag reaches (an address a server binds to). The copy is built
    as `<recipe module>/<into>` from the pinned version's files (the module cache is read-only
    to the go command); a version whose `file` no longer holds `old` exactly once fails the
    build with the file's name instead of building something else.
    """

    module: str
    package: str  # the main package's directory inside the module
    file: str
    old: str
    new: str
    into: str  # directory of the copy inside the recipe's module


@dataclass(frozen=True)
class GoRecipe:
    """A tools module whose `go.mod` pins servers we build from the Go module proxy."""

    name: str
    binaries: Mapping[str, str]  # output file name -> Go package path
    ldflags: str = "-s -w"
    cgo: bool = False
    tags: tuple[str, ...] = field(default=())
    patches: tuple[SourcePatch, ...] = field(default=())

    @property
    def source(self) -> Path:
        return RECIPES / self.name

    def files(self) -> dict[str, bytes]:
        """`go.mod`, `go.sum` and any Go source of the recipe (a custom `main.go`)."""
        return {
            path.name: path.read_bytes()
            for path in sorted(self.source.iterdir())
            if path.name in ("go.mod", "go.sum") or path.suffix == ".go"
        }


KUBERNETES_VERSION = "v1.34.4"
_K8S_VERSION_VARS = " ".join(
    f"-X {pkg}.{key}={value}"
    for pkg in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version")
    for key, value in (
        ("gitVersion", KUBERNETES_VERSION),
        ("gitMajor", "1"),
        ("gitMinor", "34"),
        ("gitTreeState", "clean"),
        ("buildDate", "1970-01-01T00:00:00Z"),
    )
)

KUBERNETES = GoRecipe(
    name="kubernetes",
    binaries={
        "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
        "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
        "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
        "kubelet": "k8s.io/kubernetes/cmd/kubelet",
        "kube-proxy": "k8s.io/kubernetes/cmd/kube-proxy",
    },
    ldflags=f"-s -w {_K8S_VERSION_VARS}",
)
ETCD = GoRecipe(name="etcd", binaries={"etcd": "go.etcd.io/etcd/server/v3"})
# The node's cluster DNS; `main.go` in the recipe picks the plugins (see its comment).
COREDNS = GoRecipe(name="coredns", binaries={"coredns": "annostack.local/coredns-bin"})
# The node's NetworkPolicy engine; `main.go` in the recipe runs it with a kubeconfig.
NETWORK_POLICIES = GoRecipe(
    name="network-policies",
    binaries={"kube-network-policies": "annostack.local/network-policies-bin"},
)
# The optional autoscaler (`keda.py`). Its adapter serves its own /metrics on every address,
# with no flag for it; the patch binds it to loopback like every server of the stack.
KEDA_MODULE = "github.com/kedacore/keda/v2"
KEDA = GoRecipe(
    name="keda",
    binaries={
        "keda-operator": f"{KEDA_MODULE}/cmd/operator",
        "keda-adapter": "annostack.local/keda-bin/adapter",  # cmd/adapter, patched
    },
    ldflags=f"-s -w -X {KEDA_MODULE}/version.Version=v2.21.0",
    patches=(
        SourcePatch(
            KEDA_MODULE,
            package="cmd/adapter",
            file="main.go",
            old='fmt.Sprintf(":%v", metricsAPIServerPort)',
            new='fmt.Sprintf("127.0.0.1:%v", metricsAPIServerPort)',
            into="adapter",
        ),
    ),
)
# Not a server: renders manifests/ for the delivery tests (no kubectl is assumed on a machine).
KUSTOMIZE = GoRecipe(name="kustomize", binaries={"kustomize": "sigs.k8s.io/kustomize/kustomize/v5"})


def _fingerprint(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def _go_version() -> bytes:
    go = shutil.which("go")
    if go is None:
        raise MissingPrerequisite("the Go toolchain (`go`) is not on PATH; install Go >= 1.26")
    return subprocess.run([go, "version"], capture_output=True, check=True).stdout


def ensure_go_binaries(recipe: GoRecipe, settings: DevStackSettings) -> dict[str, Path]:
    """Build the recipe's binaries once; return their paths."""
    files = recipe.files()
    # Contents only, in name order: a recipe of go.mod + go.sum keeps the key it always had.
    key = _fingerprint(
        *files.values(), recipe.ldflags.encode(), _go_version(), *map(repr, recipe.patches)
    )
    out_dir = settings.bin_dir / f"{recipe.name}-{key}"
    paths = {name: out_dir / name for name in recipe.binaries}
    if all(path.exists() for path in paths.values()):
        return paths
    work = settings.build_dir / recipe.name
    work.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (work / name).write_bytes(content)
    staging = out_dir.with_name(out_dir.name + ".partial")
    env = {**os.environ, "CGO_ENABLED": "1" if recipe.cgo else "0"}
    for patch in recipe.patches:
        _copy_patched(patch, work, env)
    for name, package in recipe.binaries.items():
        argv = ["go", "build", "-v", "-trimpath", "-mod=readonly", "-ldflags", recipe.ldflags]
        if recipe.tags:
            argv += ["-tags", ",".join(recipe.tags)]
        run_logged(
            [*argv, "-o", str(staging / name), package],
            label=f"building {name} from the Go module proxy (once per machine; cached)",
            log_path=work / f"build-{name}.log",
            cwd=work,
            env=env,
        )
    # Publish atomically: an interrupted build never leaves a half set of binaries behind.
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    return paths


def _copy_patched(patch: SourcePatch, work: Path, env: Mapping[str, str]) -> None:
    """Copy the package's Go files into `work/<into>`, `old` replaced by `new` in `file`."""
    source = _module_dir(work, patch.module, env) / patch.package
    target = work / patch.into
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for path in sorted(source.glob("*.go")):
        if path.name.endswith("_test.go"):
            continue
        text = path.read_text()
        if path.name == patch.file:
            if text.count(patch.old) != 1:
                raise RuntimeError(
                    f"{path}: {patch.old!r} not found exactly once; update the patch"
                )
            text = text.replace(patch.old, patch.new)
        (target / path.name).write_text(text)
    if not (target / patch.file).exists():
        raise RuntimeError(f"{source}: no {patch.file}; update the patch")


def _module_dir(work: Path, module: str, env: Mapping[str, str]) -> Path:
    """Where the Go module cache holds `module` at the version the recipe in `work` pins."""
    go = ["go", "mod", "download", "-json", module]
    listing = subprocess.run(go, cwd=work, env=env, capture_output=True, check=True)
    return Path(json.loads(listing.stdout)["Dir"])


def go_module_dir(recipe: GoRecipe, module: str, settings: DevStackSettings) -> Path:
    """The source of a module the recipe pins (files a build ships besides its binaries)."""
    work = settings.build_dir / recipe.name
    work.mkdir(parents=True, exist_ok=True)
    for name, content in recipe.files().items():
        (work / name).write_bytes(content)
    return _module_dir(work, module, os.environ)


def ensure_kustomize(settings: DevStackSettings) -> Path:
    """The kustomize binary, built from the Go module proxy on first use."""
    return ensure_go_binaries(KUSTOMIZE, settings)["kustomize"]


def ensure_pulsar_classpath(settings: DevStackSettings) -> str:
    """Resolve Pulsar's jars from Maven Central once; return the Java classpath."""
    recipe = RECIPES / "pulsar"
    pom = (recipe / "pom.xml").read_bytes()
    maven_settings = (recipe / "maven-settings.xml").read_bytes()
    work = settings.build_dir / "pulsar"
    classpath_file = work / f"classpath-{_fingerprint(pom, maven_settings)}.txt"
    if not classpath_file.exists():
        if shutil.which("mvn") is None:
            raise MissingPrerequisite("Maven (`mvn`) is not on PATH; install Debian `maven`")
        partial = classpath_file.with_suffix(".partial")
        run_logged(
            [
                "mvn",
                "-B",
                "--no-transfer-progress",
                "-s",
                str(recipe / "maven-settings.xml"),
                "-f",
                str(recipe / "pom.xml"),
                "dependency:build-classpath",
                "-Dmdep.includeScope=runtime",
                f"-Dmdep.outputFile={partial}",
            ],
            label="resolving Pulsar's jars from Maven Central (once per machine; cached)",
            log_path=work / "maven.log",
            cwd=recipe,
        )
        partial.rename(classpath_file)
    return classpath_file.read_text().strip()


def ensure_debian_packages(binaries: Mapping[str, str], settings: DevStackSettings) -> None:
    """Install the Debian packages that provide `binaries` (path -> package) if missing."""
    missing = sorted({pkg for binary, pkg in binaries.items() if shutil.which(binary) is None})
    if not missing:
        return
    apt = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise MissingPrerequisite(f"missing Debian packages; run: sudo {' '.join(apt)}")
        apt = ["sudo", *apt]
    say(f"installing Debian packages: {', '.join(missing)}")
    run_logged(
        apt,
        label="apt-get install",
        log_path=settings.build_dir / "apt.log",
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
