"""Images built here: the operator, API and worker images from the project's own Dockerfiles,
on a Debian base made with debootstrap, and the pod sandbox (pause) image.

No registry is reachable from the machines we develop on, so nothing is pulled. The base comes
from Debian packages (`debian_base`) and is passed to the Dockerfiles as ``BASE_IMAGE``; CI and
users build the same files with their digest-pinned default. Every image is tagged with a hash
of its inputs and exported once to an OCI archive, which is the cache: `ensure_images` builds
only what has no archive yet, so `annostack dev up` costs seconds when the tree did not change.
`load_into_containerd` puts an archive into a node's containerd.

Under ``<home>/images``: ``archives/<image>-<hash>.oci.tar``; ``base/<suite>-<hash>.packages``
(the Debian package versions of a base); ``containers/`` (buildah's configuration and
storage, see `containers`); ``logs/``; ``work/`` (a rootfs or a Go build while it is made).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from annostack.devstack.builds import MissingPrerequisite
from annostack.devstack.console import run_logged, say
from annostack.devstack.containers import (
    REPOSITORY,
    BuildMount,
    ContainerTools,
    bud_argv,
    load_into_containerd,
    prune_containerd,
)
from annostack.devstack.debian_base import (
    SOURCE_DATE_EPOCH,
    DebianBase,
    ensure_base,
    host_mirrors,
    remove_tree,
)
from annostack.devstack.fingerprints import file_entry, fingerprint, recipe_entries
from annostack.devstack.settings import DevStackSettings

__all__ = ["BuiltImage", "ImageSet", "ensure_images", "load_into_containerd"]

ROOT = Path(__file__).resolve().parents[2]
PAUSE_RECIPE = Path(__file__).parent / "recipes" / "pause"

# The Dockerfiles' build context: these files and trees, less what .dockerignore drops.
CONTEXT_FILES = ("pyproject.toml", "uv.lock", "README.md", ".dockerignore")
CONTEXT_TREES = ("annostack", "operator", "apps", "workers")
IGNORED_DIRS = frozenset({"__pycache__"})
IGNORED_SUFFIXES = (".pyc",)
KEPT_BUILDS = 2  # of each image: the current one and the one before it


def _context_files(top: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        dirnames[:] = [name for name in dirnames if name not in IGNORED_DIRS]
        found += [here / name for name in filenames if not name.endswith(IGNORED_SUFFIXES)]
        # os.walk lists a symlink to a directory among the directories and does not enter it.
        found += [here / name for name in dirnames if (here / name).is_symlink()]
    return sorted(found)


def context_fingerprint(root: Path = ROOT) -> str:
    """Hash of everything the Dockerfiles COPY: the same for the three images."""
    entries = [file_entry(root / name, root) for name in CONTEXT_FILES]
    for tree in CONTEXT_TREES:
        entries += [file_entry(path, root) for path in _context_files(root / tree)]
    return fingerprint(entries)


@dataclass(frozen=True)
class ProjectImage:
    """One of annostack's images and the Dockerfile it is built from."""

    name: str
    folder: str

    @property
    def dockerfile(self) -> Path:
        return ROOT / self.folder / "Dockerfile"

    def fingerprint(self, context: str, base_ref: str) -> str:
        return fingerprint(
            [
                ("image", self.name.encode()),
                ("context", context.encode()),
                ("base", base_ref.encode()),
            ]
        )


PROJECT_IMAGES = (
    ProjectImage("operator", "operator"),
    ProjectImage("api", "apps"),
    ProjectImage("worker", "workers"),
)


@dataclass(frozen=True)
class BuiltImage:
    """An image built here: the name a Pod spec uses and the OCI archive that holds it."""

    name: str
    ref: str
    archive: Path


@dataclass(frozen=True)
class ImageSet:
    """The images the platform runs on the local node (pause is containerd's sandbox_image)."""

    operator: BuiltImage
    api: BuiltImage
    worker: BuiltImage
    pause: BuiltImage

    def __iter__(self) -> Iterator[BuiltImage]:
        return iter((self.operator, self.api, self.worker, self.pause))

    def load_into_containerd(self, address: Path) -> None:
        """Load the four, then drop from containerd the builds the cache no longer keeps."""
        for image in self:
            load_into_containerd(image.archive, image.ref, address)
        archives = self.operator.archive.parent.glob("*.oci.tar")
        kept = {_ref_of(archive) for archive in archives} | {image.ref for image in self}
        if removed := prune_containerd(address, REPOSITORY + "/", kept):
            say(f"  removed {len(removed)} earlier builds from the node's containerd")


def ensure_images(settings: DevStackSettings) -> ImageSet:
    """Build whatever image has no archive for its current inputs; return all four."""
    if not all(image.dockerfile.exists() for image in PROJECT_IMAGES):
        raise MissingPrerequisite(f"images are built from a source checkout; none at {ROOT}")
    tools = ContainerTools(settings)
    tools.prepare()
    started = time.time()
    with _exclusive(tools.home / "build.lock"):
        base = DebianBase(mirrors=host_mirrors())
        context = context_fingerprint()
        builder_key = fingerprint([("context", context.encode()), ("base", base.ref.encode())])
        builder_ref = f"{REPOSITORY}/builder:dev-{builder_key}"
        images = ImageSet(
            pause=_ensure_pause(tools),
            **_ensure_project_images(tools, base, context, builder_ref),
        )
        if newly_built := [image for image in images if image.archive.stat().st_mtime > started]:
            say(f"  built {', '.join(image.name for image in newly_built)}")
            _forget_replaced(tools, images, base, builder_ref)
    return images


def _planned(tools: ContainerTools, name: str, key: str) -> BuiltImage:
    archive = tools.home / "archives" / f"{name}-{key}.oci.tar"
    return BuiltImage(name=name, ref=f"{REPOSITORY}/{name}:dev-{key}", archive=archive)


def _go_version() -> bytes:
    if shutil.which("go") is None:
        raise MissingPrerequisite("the Go toolchain (`go`) is not on PATH; install Go >= 1.26")
    return subprocess.run(["go", "version"], capture_output=True, check=True).stdout


def _ensure_pause(tools: ContainerTools) -> BuiltImage:
    image = _planned(
        tools, "pause", fingerprint([*recipe_entries(PAUSE_RECIPE), ("go", _go_version())])
    )
    if image.archive.exists():
        return image
    context = tools.home / "work" / "pause"
    remove_tree(context)
    context.mkdir(parents=True)
    binary = context / "pause"
    run_logged(
        ["go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", str(binary), "."],
        label="building the pause binary (static Go)",
        log_path=tools.log_dir / "pause-go-build.log",
        cwd=PAUSE_RECIPE,
        env={**os.environ, "CGO_ENABLED": "0", "GOWORK": "off"},
    )
    shutil.copy(PAUSE_RECIPE / "Containerfile", context / "Containerfile")
    tools.run_logged(
        bud_argv(context / "Containerfile", context, image.ref, timestamp=SOURCE_DATE_EPOCH),
        label=f"building {image.ref}",
        log_name="build-pause.log",
    )
    tools.export(
        image.ref, image.archive, label=f"exporting {image.ref}", log_name="export-pause.log"
    )
    remove_tree(context)
    return image


def _build_mounts() -> list[BuildMount]:
    """Host paths every RUN step sees (and no layer keeps).

    uv's cache, so a rebuild after a lock change downloads only new wheels; the host's CA
    bundle, so builds trust what the host trusts (e.g. a proxy that inspects TLS) without
    that trust ending up in the images.
    """
    uv_cache = Path(os.environ.get("UV_CACHE_DIR") or Path.home() / ".cache" / "uv").resolve()
    uv_cache.mkdir(parents=True, exist_ok=True)
    mounts = [BuildMount(uv_cache, "/root/.cache/uv", "rw")]
    host_bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if host_bundle.is_file():
        mounts.append(BuildMount(host_bundle, str(host_bundle), "ro"))
    return mounts


def _ensure_project_images(
    tools: ContainerTools, base: DebianBase, context: str, builder_ref: str
) -> dict[str, BuiltImage]:
    planned = {
        p.name: _planned(tools, p.name, p.fingerprint(context, base.ref)) for p in PROJECT_IMAGES
    }
    missing = [p for p in PROJECT_IMAGES if not planned[p.name].archive.exists()]
    if not missing:
        return planned
    ensure_base(tools, base)
    build_args = {"BASE_IMAGE": base.ref}
    mounts = _build_mounts()
    # The three Dockerfiles share their builder stage: build and tag it once, so the three
    # builds below reuse its cached layers and pruning old images never drops them.
    builder = bud_argv(
        missing[0].dockerfile,
        ROOT,
        builder_ref,
        build_args=build_args,
        mounts=mounts,
        target="builder",
    )
    tools.run_logged(
        builder,
        label="building the builder stage the images share (uv sync from uv.lock, the wheel)",
        log_name="build-builder.log",
    )
    for project in missing:
        image = planned[project.name]
        tools.run_logged(
            bud_argv(project.dockerfile, ROOT, image.ref, build_args=build_args, mounts=mounts),
            label=f"building {image.ref} from {project.folder}/Dockerfile",
            log_name=f"build-{project.name}.log",
        )
        label = f"exporting {image.ref}"
        tools.export(image.ref, image.archive, label=label, log_name=f"export-{project.name}.log")
    return planned


def _forget_replaced(
    tools: ContainerTools, images: ImageSet, base: DebianBase, builder_ref: str
) -> None:
    """Delete the archives and tags of earlier builds: a changed uv.lock adds 1.5 GB of layers.

    The newest KEPT_BUILDS builds of each image stay, so two checkouts of different commits
    (a worktree beside main, a branch switched back) do not rebuild each other's images.
    """
    kept = {archive for image in images for archive in _newest_archives(tools, image)}
    current = kept | {base.packages_manifest(tools.home)}
    candidates = [*(tools.home / "archives").glob("*.oci.tar"), *(tools.home / "base").glob("*")]
    stale_files = [path for path in candidates if path not in current]
    for path in stale_files:
        path.unlink()
    keep = {base.ref, builder_ref} | {_ref_of(archive) for archive in kept}
    stale_refs = [ref for ref in tools.refs(REPOSITORY + "/") if ref not in keep]
    if stale_refs:
        tools.remove(stale_refs)
        tools.prune()
    if stale_files or stale_refs:
        say(f"  removed {len(stale_files)} files and {len(stale_refs)} tags of earlier builds")


def _newest_archives(tools: ContainerTools, image: BuiltImage) -> list[Path]:
    """The image's current archive and the newest other ones, up to KEPT_BUILDS in all."""
    others = [
        path
        for path in (tools.home / "archives").glob(f"{image.name}-*.oci.tar")
        if path != image.archive
    ]
    others.sort(key=lambda path: path.stat().st_mtime, reverse=True)
    return [image.archive, *others[: KEPT_BUILDS - 1]]


def _ref_of(archive: Path) -> str:
    """`<name>-<key>.oci.tar` -> the tag `_planned` gave that build."""
    name, _, key = archive.name.removesuffix(".oci.tar").rpartition("-")
    return f"{REPOSITORY}/{name}:dev-{key}"


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """One build at a time per cache: two would fight over the same storage and archives."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another image build to finish ({lock_path}) …")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
