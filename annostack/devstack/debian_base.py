"""The local base image: Debian packages through debootstrap, as a stand-in for
python:3.11-slim-bookworm (no registry is reachable from the machines we develop on).

The recipe is a pinned suite, a package list, the mirrors the host's apt uses and a fixed
SOURCE_DATE_EPOCH; its hash names the image. Reproducible as far as a live mirror allows:
file times are clamped, the tarball is sorted with numeric owners, caches, logs and host files
(hostname, resolv.conf) are removed, machine-id is empty, and the package versions of each
build are written next to it. Slim as Debian's *-slim images: no docs, man pages, locales.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from annostack.devstack.builds import MissingPrerequisite
from annostack.devstack.console import CommandFailed, run_logged, say
from annostack.devstack.containers import REPOSITORY, ContainerTools, bud_argv
from annostack.devstack.fingerprints import fingerprint, recipe_entries

BASE_RECIPE = Path(__file__).parent / "recipes" / "base"

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
                *recipe_entries(BASE_RECIPE),
            ]
        )

    @property
    def ref(self) -> str:
        return f"{REPOSITORY}/base:{self.suite}-{self.fingerprint}"

    def packages_manifest(self, images_home: Path) -> Path:
        """Where the package versions that went into this base are listed."""
        return images_home / "base" / f"{self.suite}-{self.fingerprint}.packages"

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


def ensure_base(tools: ContainerTools, base: DebianBase) -> None:
    """Build the base image into the build storage unless it is there (about two minutes)."""
    if tools.image_exists(base.ref):
        return
    if not KEYRING.is_file():
        raise MissingPrerequisite(
            f"no Debian archive keyring at {KEYRING}; run: apt-get install debian-archive-keyring"
        )
    work = tools.home / "work" / "base"
    rootfs = work / "rootfs"
    remove_tree(work)
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
    manifest = base.packages_manifest(tools.home)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(_package_versions(rootfs))
    _check([
        "tar", "--create", "--file", str(work / "rootfs.tar"), "--directory", str(rootfs),
        "--sort=name", "--numeric-owner", "--format=posix",
        "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
        f"--mtime=@{base.source_date_epoch}", "--clamp-mtime", ".",
    ])  # fmt: skip
    remove_tree(rootfs)
    shutil.copy(BASE_RECIPE / "Containerfile", work / "Containerfile")
    tools.run_logged(
        bud_argv(work / "Containerfile", work, base.ref, timestamp=base.source_date_epoch),
        label=f"building {base.ref} from the rootfs",
        log_name="build-base.log",
    )
    remove_tree(work)
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


def _prune(rootfs: Path, rules: Sequence[tuple[bool, str]]) -> None:
    """Delete what the slim rules would have kept dpkg from installing (files and links)."""
    files = [p for p in (rootfs / "usr" / "share").rglob("*") if p.is_symlink() or not p.is_dir()]
    for path in files:
        if dpkg_excludes("/" + path.relative_to(rootfs).as_posix(), rules):
            path.unlink()


def _slim_rootfs(rootfs: Path, base: DebianBase) -> None:
    slim = (BASE_RECIPE / "dpkg-slim.cfg").read_text()
    _prune(rootfs, parse_dpkg_filters(slim))
    # The same rules for everything the Dockerfiles apt-get install later.
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


def remove_tree(path: Path) -> None:
    """Delete a work directory; first unmount what an interrupted debootstrap left mounted in it
    (its /proc and /sys), so the deletion never reaches into the host's."""
    if not path.exists():
        return
    for point in _mounts_below(path):
        _check(["umount", point])
    if _mounts_below(path):
        raise CommandFailed(f"cannot delete {path}: still mounted {_mounts_below(path)}")
    shutil.rmtree(path)
