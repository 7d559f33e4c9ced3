"""The pure parts of the image builds: input hashes, the buildah command, apt and dpkg files."""

from __future__ import annotations

import io
import itertools
import json
import os
import resource
import shutil
import tarfile
from pathlib import Path

import pytest

from annostack.devstack import debian_base, images
from annostack.devstack.containers import BuildMount, bud_argv, listed_digest, read_archive
from annostack.devstack.debian_base import (
    AptMirrors,
    DebianBase,
    dpkg_excludes,
    host_mirrors,
    mirrors_for,
    parse_apt_sources,
    parse_dpkg_filters,
)
from annostack.devstack.images import ProjectImage, context_fingerprint

ROOT = Path(__file__).parents[3]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A miniature build context laid out like the repository."""
    for name in images.CONTEXT_FILES:
        (tmp_path / name).write_text(f"{name}\n")
    for folder in ("operator", "apps", "workers"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "Dockerfile").write_text(f"FROM ${{BASE_IMAGE}} # {folder}\n")
        (tmp_path / folder / "main.py").write_text("print('hi')\n")
    (tmp_path / "annostack").mkdir()
    (tmp_path / "annostack" / "__init__.py").write_text("")
    (tmp_path / "annostack" / "operator").symlink_to("../operator")
    return tmp_path


def _relink(link: Path, target: str) -> None:
    link.unlink()
    link.symlink_to(target)


@pytest.mark.parametrize(
    "change",
    [
        lambda root: (root / "uv.lock").write_text("changed"),
        lambda root: (root / "pyproject.toml").write_text("changed"),
        lambda root: (root / "README.md").write_text("changed"),
        lambda root: (root / "workers" / "Dockerfile").write_text("FROM scratch\n"),
        lambda root: (root / "apps" / "main.py").write_text("print('bye')\n"),
        lambda root: (root / "apps" / "new.py").write_text(""),
        lambda root: (root / "apps" / "main.py").chmod(0o755),
        lambda root: (root / "apps" / "main.py").unlink(),
        lambda root: _relink(root / "annostack" / "operator", "../apps"),
    ],
    ids=[
        "lock", "pyproject", "readme", "dockerfile", "source", "new file", "mode", "removed",
        "symlink",
    ],
)  # fmt: skip
def test_the_context_hash_changes_with_every_input(tree: Path, change: object) -> None:
    before = context_fingerprint(tree)
    assert callable(change)
    change(tree)
    assert context_fingerprint(tree) != before


def test_the_context_hash_ignores_what_dockerignore_drops_and_is_stable(tree: Path) -> None:
    before = context_fingerprint(tree)
    (tree / "apps" / "__pycache__").mkdir()
    (tree / "apps" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0")
    (tree / "workers" / "stale.pyc").write_bytes(b"\0")
    (tree / "docs").mkdir()
    (tree / "docs" / "notes.md").write_text("not in the context")
    assert context_fingerprint(tree) == before


def test_the_symlinked_packages_are_hashed_as_links_not_followed(tree: Path) -> None:
    """annostack/operator -> ../operator: its files count once, under operator/."""
    before = context_fingerprint(tree)
    (tree / "operator" / "main.py").write_text("print('changed')\n")
    assert context_fingerprint(tree) != before
    entries = [
        path.relative_to(tree).as_posix() for path in images._context_files(tree / "annostack")
    ]
    assert entries == ["annostack/__init__.py", "annostack/operator"]


def test_each_image_key_depends_on_its_name_the_context_and_the_base() -> None:
    operator, api = ProjectImage("operator", "operator"), ProjectImage("api", "apps")
    key = operator.fingerprint("ctx", "localhost/annostack/base:bookworm-1")
    assert key != api.fingerprint("ctx", "localhost/annostack/base:bookworm-1")
    assert key != operator.fingerprint("ctx2", "localhost/annostack/base:bookworm-1")
    assert key != operator.fingerprint("ctx", "localhost/annostack/base:bookworm-2")
    assert key == operator.fingerprint("ctx", "localhost/annostack/base:bookworm-1")


def test_the_real_context_hash_is_deterministic() -> None:
    assert context_fingerprint(ROOT) == context_fingerprint(ROOT)


def test_the_base_hash_follows_its_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = DebianBase(mirrors=AptMirrors())
    assert base.ref == f"localhost/annostack/base:bookworm-{base.fingerprint}"
    others = [
        DebianBase(mirrors=AptMirrors(), suite="trixie"),
        DebianBase(mirrors=AptMirrors(), packages=(*base.packages, "curl")),
        DebianBase(mirrors=AptMirrors(debian="http://mirror.example/debian")),
        DebianBase(mirrors=AptMirrors(security="http://mirror.example/debian-security")),
        DebianBase(mirrors=AptMirrors(), source_date_epoch=base.source_date_epoch + 1),
    ]
    assert len({base.fingerprint, *(other.fingerprint for other in others)}) == 6
    reordered = DebianBase(mirrors=AptMirrors(), packages=tuple(reversed(base.packages)))
    assert reordered.fingerprint == base.fingerprint, "debootstrap does not care about order"
    original = base.fingerprint
    recipe = tmp_path / "base"
    shutil.copytree(debian_base.BASE_RECIPE, recipe)
    monkeypatch.setattr(debian_base, "BASE_RECIPE", recipe)
    assert DebianBase(mirrors=AptMirrors()).fingerprint == original
    (recipe / "Containerfile").write_text("FROM scratch\n")
    assert DebianBase(mirrors=AptMirrors()).fingerprint != original


def test_the_build_command_passes_the_base_and_stays_below_the_hard_limits() -> None:
    argv = bud_argv(
        ROOT / "workers" / "Dockerfile",
        ROOT,
        "localhost/annostack/worker:dev-abc",
        build_args={"BASE_IMAGE": "localhost/annostack/base:bookworm-123"},
        mounts=[BuildMount(Path("/cache/uv"), "/root/.cache/uv", "rw")],
        ulimits={"nofile": 20000, "nproc": 4096},
    )
    assert argv[:2] == ["buildah", "bud"]
    assert argv[-1] == str(ROOT)
    pairs = list(itertools.pairwise(argv))
    assert ("--build-arg", "BASE_IMAGE=localhost/annostack/base:bookworm-123") in pairs
    assert ("--file", str(ROOT / "workers" / "Dockerfile")) in pairs
    assert ("--tag", "localhost/annostack/worker:dev-abc") in pairs
    assert ("--network", "host") in pairs
    assert ("--ulimit", "nofile=20000:20000") in pairs
    assert ("--ulimit", "nproc=4096:4096") in pairs
    assert ("--volume", "/cache/uv:/root/.cache/uv:rw") in pairs
    assert {"--layers", "--pull=never", "--force-rm"} <= set(argv)
    assert "--target" not in argv and "--timestamp" not in argv


def test_the_default_ulimits_never_exceed_the_hard_limits() -> None:
    argv = bud_argv(Path("Containerfile"), Path(), "x", target="builder", timestamp=7)
    limits = dict(
        value.split("=") for flag, value in itertools.pairwise(argv) if flag == "--ulimit"
    )
    soft, hard = limits["nofile"].split(":")
    assert soft == hard
    nofile_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert nofile_hard == resource.RLIM_INFINITY or int(hard) <= nofile_hard
    assert limits["nproc"] == "4096:4096" or int(limits["nproc"].split(":")[0]) < 4096
    assert argv[argv.index("--target") + 1] == "builder"
    assert argv[argv.index("--timestamp") + 1] == "7"
    with pytest.raises(AssertionError):
        BuildMount(Path("/x"), "/y", "exec").flag()


DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm-security
Components: main

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main contrib
Enabled: no

Types: deb
URIs: http://security2.example/debian-security
Suites: bookworm-security
Components: main contrib
"""

ONE_LINE = """\
# deb http://commented.example/debian bookworm main
deb [arch=amd64 signed-by=/d.gpg] https://download.docker.com/linux/debian bookworm stable
deb [signed-by=/k.gpg] http://one.example/debian bookworm main contrib
"""


def test_apt_sources_in_both_formats_give_the_mirrors_the_host_uses() -> None:
    sources = parse_apt_sources(DEB822, deb822=True)
    assert [s.uri for s in sources] == [
        "http://mirror.example/debian/",
        "http://security2.example/debian-security",
    ]
    assert mirrors_for(sources, "bookworm") == AptMirrors(
        "http://mirror.example/debian", "http://security2.example/debian-security"
    )
    one_line = parse_apt_sources(ONE_LINE, deb822=False)
    assert [(s.uri, s.suites, s.components) for s in one_line] == [
        ("https://download.docker.com/linux/debian", ("bookworm",), ("stable",)),
        ("http://one.example/debian", ("bookworm",), ("main", "contrib")),
    ]
    # Docker's repository serves "bookworm" too, but not Debian's main component.
    assert mirrors_for(one_line, "bookworm").debian == "http://one.example/debian"
    assert mirrors_for([], "bookworm") == AptMirrors()


def test_the_host_mirrors_are_read_from_etc_apt(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    assert host_mirrors("bookworm", tmp_path).debian == "http://mirror.example/debian"
    assert host_mirrors("trixie", tmp_path) == AptMirrors()


def test_the_image_apt_sources_carry_updates_and_security() -> None:
    base = DebianBase(mirrors=AptMirrors("http://m/debian", "http://m/debian-security"))
    parsed = parse_apt_sources(base.apt_sources(), deb822=True)
    assert [(s.uri, s.suites) for s in parsed] == [
        ("http://m/debian", ("bookworm", "bookworm-updates")),
        ("http://m/debian-security", ("bookworm-security",)),
    ]


def test_the_slim_rules_drop_documentation_but_keep_licences() -> None:
    rules = parse_dpkg_filters((debian_base.BASE_RECIPE / "dpkg-slim.cfg").read_text())
    assert dpkg_excludes("/usr/share/doc/python3/README.Debian", rules)
    assert not dpkg_excludes("/usr/share/doc/python3/copyright", rules)
    assert dpkg_excludes("/usr/share/man/man1/python3.1.gz", rules)
    assert dpkg_excludes("/usr/share/locale/de/LC_MESSAGES/apt.mo", rules)
    assert not dpkg_excludes("/usr/share/zoneinfo/Europe/Berlin", rules)
    assert not dpkg_excludes("/usr/lib/python3.11/os.py", rules)


def test_the_debootstrap_command_pins_suite_variant_and_verifies_signatures() -> None:
    base = DebianBase(mirrors=AptMirrors("http://m/debian"))
    argv = base.debootstrap_argv(Path("/work/rootfs"))
    assert argv[-3:] == ["bookworm", "/work/rootfs", "http://m/debian"]
    assert {"--variant=minbase", "--force-check-gpg"} <= set(argv)
    (include,) = [a for a in argv if a.startswith("--include=")]
    assert set(include.removeprefix("--include=").split(",")) == set(base.packages)


def _oci_archive(path: Path, index: dict[str, object]) -> Path:
    data = json.dumps(index).encode()
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("index.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def test_an_archive_names_its_image_and_digest(tmp_path: Path) -> None:
    digest = "sha256:" + "ab" * 32
    annotations = {"org.opencontainers.image.ref.name": "localhost/annostack/pause:dev-1"}
    archive = _oci_archive(
        tmp_path / "pause.oci.tar",
        {"schemaVersion": 2, "manifests": [{"digest": digest, "annotations": annotations}]},
    )
    held = read_archive(archive)
    assert (held.ref, held.digest) == ("localhost/annostack/pause:dev-1", digest)


CTR_LISTING = """\
REF                              TYPE                                       DIGEST                                                                  SIZE     PLATFORMS   LABELS
localhost/annostack/pause:dev-1  application/vnd.oci.image.manifest.v1+json sha256:1111111111111111111111111111111111111111111111111111111111111111 686.9 KiB linux/amd64 -
localhost/annostack/worker:dev-2 application/vnd.oci.image.manifest.v1+json sha256:2222222222222222222222222222222222222222222222222222222222222222 646.8 MiB linux/amd64 -
"""  # noqa: E501


def test_the_digest_containerd_lists_for_a_ref() -> None:
    assert listed_digest(CTR_LISTING, "localhost/annostack/worker:dev-2") == "sha256:" + "2" * 64
    assert listed_digest(CTR_LISTING, "localhost/annostack/worker:dev-3") is None
    assert listed_digest(CTR_LISTING.splitlines()[0], "REF") is None, "the header is no image"


class _Tools:
    """What `_forget_replaced` uses of ContainerTools: the cache folder and the tags."""

    def __init__(self, home: Path, refs: list[str]) -> None:
        self.home = home
        self.tags = refs
        self.removed: list[str] = []

    def refs(self, prefix: str) -> list[str]:
        return [ref for ref in self.tags if ref.startswith(prefix)]

    def remove(self, refs: list[str]) -> None:
        self.removed.extend(refs)

    def prune(self) -> None:
        pass


def test_the_build_before_the_current_one_is_kept_and_older_ones_removed(tmp_path: Path) -> None:
    archives = tmp_path / "archives"
    archives.mkdir()
    (tmp_path / "base").mkdir()
    keys = {"api": ["k1", "k2", "k3"], "operator": ["o1", "o2", "o3"], "worker": ["w1", "w2"]}
    for name, builds in keys.items():
        for age, key in enumerate(reversed(builds)):  # the last key is the newest
            path = archives / f"{name}-{key}.oci.tar"
            path.write_bytes(b"")
            os.utime(path, (1_000_000 - age, 1_000_000 - age))
    (archives / "pause-p1.oci.tar").write_bytes(b"")

    def built(name: str, key: str) -> images.BuiltImage:
        ref = f"{images.REPOSITORY}/{name}:dev-{key}"
        return images.BuiltImage(name, ref, archives / f"{name}-{key}.oci.tar")

    current = images.ImageSet(
        operator=built("operator", "o3"),
        api=built("api", "k1"),  # a checkout back on an old commit: its build is kept as well
        worker=built("worker", "w2"),
        pause=built("pause", "p1"),
    )
    refs = [built(n, k).ref for n, ks in keys.items() for k in ks]
    tools = _Tools(tmp_path, [*refs, f"{images.REPOSITORY}/builder:dev-b0"])
    base = DebianBase(mirrors=AptMirrors())

    images._forget_replaced(tools, current, base, f"{images.REPOSITORY}/builder:dev-b1")  # type: ignore[arg-type]

    left = sorted(path.name for path in archives.iterdir())
    assert left == [
        "api-k1.oci.tar",
        "api-k3.oci.tar",
        "operator-o2.oci.tar",
        "operator-o3.oci.tar",
        "pause-p1.oci.tar",
        "worker-w1.oci.tar",
        "worker-w2.oci.tar",
    ]
    assert sorted(tools.removed) == sorted(
        [built("api", "k2").ref, built("operator", "o1").ref, f"{images.REPOSITORY}/builder:dev-b0"]
    )
