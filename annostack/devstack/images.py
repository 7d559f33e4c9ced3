"""Images built here: the operator, API and worker images from the project's own Dockerfiles,
on a Debian base made with debootstrap, and the pod sandbox (pause) image.

No registry is reachable from the machines we develop on, so nothing is pulled. The base comes
from Debian packages (the mirror the host's apt uses, a pinned suite, file times clamped to a
fixed date) and is passed to the Dockerfiles as ``BASE_IMAGE``; CI and users build the same
files with their digest-pinned default. Every image is tagged with a hash of its inputs and
exported once to an OCI archive, which is the cache: `ensure_images` builds only what has no
archive yet, so `annostack dev up` costs nothing when the tree did not change.
`load_into_containerd` puts an archive into a node's containerd.

Under ``<home>/images``: ``archives/<image>-<hash>.oci.tar``; ``base/<suite>-<hash>.packages``
(the Debian package versions of a base); ``containers/`` (buildah's configuration and
storage, see `containers`); ``logs/``; ``work/`` (a rootfs or a Go build while it is made).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from annostack.devstack.builds import MissingPrerequisite
from annostack.devstack.console import CommandFailed, run_logged, say
from annostack.devstack.containers import (
    BuildMount,
    ContainerTools,
    bud_argv,
    load_into_containerd,
)
from annostack.devstack.settings import DevStackSettings

__all__ = ["BuiltImage", "DebianBase", "ImageSet", "ensure_images", "load_into_containerd"]

ROOT = Path(__file__).resolve().parents[2]
RECIPES = Path(__file__).parent / "recipes"
BASE_RECIPE = RECIPES / "base"
PAUSE_RECIPE = RECIPES / "pause"
REPOSITORY = "localhost/annostack"

SUITE = "bookworm"
# What the Dockerfiles use of python:3.11-slim-bookworm: python3 with `python` and `pip` (the
# builder pip-installs uv), Python's headers (the builder compiles python-lzf), CA certificates
# for PyPI, /etc/services and /etc/protocols, time zones. apt, dpkg and the shadow tools
# (groupadd, useradd) come with the minbase variant.
BASE_PACKAGES = (
    "python3", "python3-pip", "python-is-python3", "libpython3-dev",
    "ca-certificates", "netbase", "tzdata",
)  # fmt: skip
# 2025-05-17, Debian 12.11: file times newer than this are clamped to it, image dates set to it.
SOURCE_DATE_EPOCH = 1747440000
# Bump when `_slim_rootfs` changes what it does: it is code, not a recipe file.
ROOTFS_LAYOUT = 1
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")

# The Dockerfiles' build context: these files and trees, less what .dockerignore drops.
CONTEXT_FILES = ("pyproject.toml", "uv.lock", "README.md", ".dockerignore")
CONTEXT_TREES = ("annostack", "operator", "apps", "workers")
IGNORED_DIRS = frozenset({"__pycache__"})
IGNORED_SUFFIXES = (".pyc",)

Entry = tuple[str, bytes]


def fingerprint(entries: Iterable[Entry]) -> str:
    """A short hash of named values (length-prefixed, so no two lists collide)."""
    digest = hashlib.sha256()
    for name, value in entries:
        for part in (name.encode(), value):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return digest.hexdigest()[:12]


def _context_files(top: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        dirnames[:] = [name for name in dirnames if name not in IGNORED_DIRS]
        found += [here / name for name in filenames if not name.endswith(IGNORED_SUFFIXES)]
        # os.walk lists a symlink to a directory among the directories and does not enter it.
        found += [here / name for name in dirnames if (here / name).is_symlink()]
    return sorted(found)


def _file_entry(path: Path, root: Path) -> Entry:
    name = path.relative_to(root).as_posix()
    if path.is_symlink():
        return (f"link {name}", str(path.readlink()).encode())
    executable = "x" if path.stat().st_mode & 0o111 else "-"
    return (f"file {name} {executable}", path.read_bytes())


def context_fingerprint(root: Path = ROOT) -> str:
    """Hash of everything the Dockerfiles COPY: the same for the three images."""
    entries = [_file_entry(root / name, root) for name in CONTEXT_FILES]
    for tree in CONTEXT_TREES:
        entries += [_file_entry(path, root) for path in _context_files(root / tree)]
    return fingerprint(entries)


def _recipe_entries(recipe: Path) -> list[Entry]:
    return [_file_entry(path, recipe) for path in sorted(recipe.iterdir()) if path.is_file()]


@dataclass(frozen=True)
class AptMirrors:
    """Where the base's packages come from (and where apt inside the images looks)."""

    debian: str = "http://deb.debian.org/debian"
    security: str = "http://deb.debian.org/debian-security"


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


def parse_apt_sources(text: str, *, deb822: bool) -> list[AptSource]:
    """The enabled `deb` entries of a one-line sources.list or a deb822 ``.sources`` file."""
    return _parse_deb822(text) if deb822 else _parse_one_line(text)


def _parse_one_line(text: str) -> list[AptSource]:
    sources = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):  # options such as [arch=amd64 signed-by=...]
            while not words[0].endswith("]"):
                words.pop(0)
            words.pop(0)
        if len(words) >= 2:
            sources.append(AptSource(words[0], (words[1],), tuple(words[2:])))
    return sources


def _parse_deb822(text: str) -> list[AptSource]:
    sources = []
    for paragraph in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in paragraph.splitlines():
            if line.startswith("#") or line[:1].isspace() or ":" not in line:
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled") == "no":
            continue
        suites = tuple(fields.get("suites", "").split())
        components = tuple(fields.get("components", "").split())
        sources += [AptSource(uri, suites, components) for uri in fields["uris"].split()]
    return sources


def mirrors_for(sources: Sequence[AptSource], suite: str) -> AptMirrors:
    """The first Debian archive (a `main` component) serving ``suite`` and its security suite."""
    default = AptMirrors()

    def serving(wanted: str, fallback: str) -> str:
        uris = (s.uri for s in sources if wanted in s.suites and "main" in s.components)
        return next(uris, fallback).rstrip("/")

    return AptMirrors(
        serving(suite, default.debian), serving(f"{suite}-security", default.security)
    )


def host_mirrors(suite: str = SUITE, apt_dir: Path = Path("/etc/apt")) -> AptMirrors:
    """The mirrors the host's own apt uses (deb.debian.org when it names none)."""
    sources: list[AptSource] = []
    for path in [apt_dir / "sources.list", *sorted(apt_dir.glob("sources.list.d/*.list"))]:
        if path.is_file():
            sources += parse_apt_sources(path.read_text(), deb822=False)
    for path in sorted(apt_dir.glob("sources.list.d/*.sources")):
        sources += parse_apt_sources(path.read_text(), deb822=True)
    return mirrors_for(sources, suite)


@dataclass(frozen=True)
class DebianBase:
    """The recipe of the local base image; its hash names the image."""

    mirrors: AptMirrors
    suite: str = SUITE
    packages: tuple[str, ...] = BASE_PACKAGES
    source_date_epoch: int = SOURCE_DATE_EPOCH

    @property
    def fingerprint(self) -> str:
        return fingerprint(
            [
                ("suite", self.suite.encode()),
                ("packages", " ".join(sorted(self.packages)).encode()),
                ("mirror", self.mirrors.debian.encode()),
                ("security mirror", self.mirrors.security.encode()),
                ("epoch", str(self.source_date_epoch).encode()),
                ("layout", str(ROOTFS_LAYOUT).encode()),
                *_recipe_entries(BASE_RECIPE),
            ]
        )

    @property
    def ref(self) -> str:
        return f"{REPOSITORY}/base:{self.suite}-{self.fingerprint}"

    def debootstrap_argv(self, rootfs: Path) -> list[str]:
        return [
            "debootstrap", "--variant=minbase", "--force-check-gpg", f"--keyring={KEYRING}",
            "--components=main", f"--include={','.join(self.packages)}",
            self.suite, str(rootfs), self.mirrors.debian,
        ]  # fmt: skip

    def apt_sources(self) -> str:
        """The images' /etc/apt/sources.list.d/debian.sources, as in Debian's own images."""
        signed_by = "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        return (
            f"Types: deb\nURIs: {self.mirrors.debian}\nSuites: {self.suite} {self.suite}-updates\n"
            f"Components: main\n{signed_by}\n"
            f"Types: deb\nURIs: {self.mirrors.security}\nSuites: {self.suite}-security\n"
            f"Components: main\n{signed_by}"
        )


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
        for image in self:
            load_into_containerd(image.archive, image.ref, address)


def ensure_images(settings: DevStackSettings) -> ImageSet:
    """Build whatever image has no archive for its current inputs; return all four."""
    if not all(image.dockerfile.exists() for image in PROJECT_IMAGES):
        raise MissingPrerequisite(f"images are built from a source checkout; none at {ROOT}")
    tools = ContainerTools(settings)
    tools.prepare()
    with _exclusive(tools.home / "build.lock"):
        base = DebianBase(mirrors=host_mirrors())
        context = context_fingerprint()
        builder_key = fingerprint([("context", context.encode()), ("base", base.ref.encode())])
        builder_ref = f"{REPOSITORY}/builder:dev-{builder_key}"
        images = ImageSet(
            pause=_ensure_pause(tools),
            **_ensure_project_images(tools, base, context, builder_ref),
        )
        _forget_replaced(tools, images, keep={base.ref, builder_ref})
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
        tools, "pause", fingerprint([*_recipe_entries(PAUSE_RECIPE), ("go", _go_version())])
    )
    if image.archive.exists():
        return image
    context = tools.home / "work" / "pause"
    _remove_tree(context)
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
    _remove_tree(context)
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
    _ensure_base(tools, base)
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


def _ensure_base(tools: ContainerTools, base: DebianBase) -> None:
    if tools.image_exists(base.ref):
        return
    if not KEYRING.is_file():
        raise MissingPrerequisite(
            f"no Debian archive keyring at {KEYRING}; run: apt-get install debian-archive-keyring"
        )
    work = tools.home / "work" / "base"
    rootfs = work / "rootfs"
    _remove_tree(work)
    rootfs.mkdir(parents=True)
    run_logged(
        base.debootstrap_argv(rootfs),
        label=f"debootstrap: Debian {base.suite} minbase + {' '.join(base.packages)}",
        log_path=tools.log_dir / "debootstrap.log",
        env={
            **os.environ, "SOURCE_DATE_EPOCH": str(base.source_date_epoch), "LC_ALL": "C",
            "DEBIAN_FRONTEND": "noninteractive",
        },
    )  # fmt: skip
    _slim_rootfs(rootfs, base)
    manifest = tools.home / "base" / f"{base.suite}-{base.fingerprint}.packages"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(_package_versions(rootfs))
    _check([
        "tar", "--create", "--file", str(work / "rootfs.tar"), "--directory", str(rootfs),
        "--sort=name", "--numeric-owner", "--format=posix",
        "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
        f"--mtime=@{base.source_date_epoch}", "--clamp-mtime", ".",
    ])  # fmt: skip
    _remove_tree(rootfs)
    shutil.copy(BASE_RECIPE / "Containerfile", work / "Containerfile")
    tools.run_logged(
        bud_argv(work / "Containerfile", work, base.ref, timestamp=base.source_date_epoch),
        label=f"building {base.ref} from the rootfs",
        log_name="build-base.log",
    )
    _remove_tree(work)
    say(f"  base image {base.ref}: packages listed in {manifest}")


def parse_dpkg_filters(text: str) -> list[tuple[bool, str]]:
    """(keep?, pattern) for each path-exclude/path-include line of a dpkg.cfg file."""
    rules = []
    for line in text.splitlines():
        match = re.match(r"\s*path-(exclude|include)\s+(\S+)", line)
        if match:
            rules.append((match.group(1) == "include", match.group(2)))
    return rules


def dpkg_excludes(path: str, rules: Sequence[tuple[bool, str]]) -> bool:
    """Whether dpkg would leave ``path`` out: the last rule that matches decides."""
    excluded = False
    for keep, pattern in rules:
        if fnmatchcase(path, pattern):
            excluded = not keep
    return excluded


# Caches and logs that say when and where the rootfs was made, nothing about what it is.
VOLATILE = (
    "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_*",
    "var/log/*.log", "var/log/apt/*", "var/cache/ldconfig/aux-cache", "var/cache/debconf/*-old",
    "var/lib/dpkg/*-old", "etc/hostname", "etc/resolv.conf",
)  # fmt: skip


def _slim_rootfs(rootfs: Path, base: DebianBase) -> None:
    slim = (BASE_RECIPE / "dpkg-slim.cfg").read_text()
    rules = parse_dpkg_filters(slim)
    for path in [
        p for p in (rootfs / "usr" / "share").rglob("*") if not p.is_dir() or p.is_symlink()
    ]:
        if dpkg_excludes("/" + path.relative_to(rootfs).as_posix(), rules):
            path.unlink()
    (rootfs / "etc/dpkg/dpkg.cfg.d/annostack-slim").write_text(slim)
    shutil.copy(BASE_RECIPE / "apt-slim.conf", rootfs / "etc/apt/apt.conf.d/90annostack-slim")
    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(base.apt_sources())
    # A container is not a Debian system pip could break (PEP 668): the builder pip-installs uv.
    for marker in rootfs.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    for pattern in VOLATILE:
        for path in rootfs.glob(pattern):
            path.unlink()
    # Empty, as in Debian's images: each container gets its own (systemd fills it on boot).
    (rootfs / "etc/machine-id").write_text("")


def _package_versions(rootfs: Path) -> str:
    query = [
        "dpkg-query",
        f"--admindir={rootfs / 'var/lib/dpkg'}",
        "-W",
        "-f=${Package} ${Version}\n",
    ]
    return "".join(sorted(_check(query).splitlines(keepends=True)))


def _check(argv: Sequence[str]) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True)
    if result.returncode != 0:
        raise CommandFailed(f"{argv[0]} failed (exit {result.returncode}): {result.stderr.strip()}")
    return result.stdout


def _mounts_below(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


def _remove_tree(path: Path) -> None:
    """Delete a work directory; first unmount what an interrupted debootstrap left mounted in it
    (its /proc and /sys), so the deletion never reaches into the host's."""
    if not path.exists():
        return
    for point in _mounts_below(path):
        _check(["umount", point])
    if _mounts_below(path):
        raise CommandFailed(f"cannot delete {path}: still mounted {_mounts_below(path)}")
    shutil.rmtree(path)


def _forget_replaced(tools: ContainerTools, images: ImageSet, keep: set[str]) -> None:
    """Delete the archives and tags of earlier builds: a rebuild adds ~1.5 GB of layers."""
    current = {image.archive for image in images}
    stale_archives = [a for a in (tools.home / "archives").glob("*.oci.tar") if a not in current]
    for archive in stale_archives:
        archive.unlink()
    keep = keep | {image.ref for image in images}
    stale_refs = [ref for ref in tools.refs(REPOSITORY + "/") if ref not in keep]
    if stale_refs:
        tools.remove(stale_refs)
        tools.prune()
    if stale_archives or stale_refs:
        say(f"  removed {len(stale_archives)} old archives and {len(stale_refs)} old tags")


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
