"""Source patches of a Go recipe: a patched copy of the package, never a silent skip."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from annostack.devstack import builds
from annostack.devstack.builds import SourcePatch

MAIN = 'package main\n\nfunc main() { serve(fmt.Sprintf(":%v", port)) }\n'
FLAGS = 'package main\n\nvar port = flag.Int("port", 8080, "")\n'


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A dependency's source as the module cache holds it."""
    source = tmp_path / "modcache" / "example.com" / "server@v1.0.0"
    (source / "cmd" / "server").mkdir(parents=True)
    (source / "cmd" / "server" / "main.go").write_text(MAIN)
    (source / "cmd" / "server" / "flags.go").write_text(FLAGS)
    (source / "cmd" / "server" / "main_test.go").write_text("package main\n")

    def module_dir(work: Path, module: str, env: Mapping[str, str]) -> Path:
        assert module == "example.com/server"
        return source

    monkeypatch.setattr(builds, "_module_dir", module_dir)
    return source


def patch(old: str) -> SourcePatch:
    return SourcePatch(
        "example.com/server", "cmd/server", "main.go", old, '"127.0.0.1:%v"', "server"
    )


def test_the_package_is_copied_with_the_change_and_the_module_left_untouched(
    module: Path, tmp_path: Path
) -> None:
    builds._copy_patched(patch('":%v"'), tmp_path, {})
    copy = tmp_path / "server"
    assert sorted(p.name for p in copy.iterdir()) == ["flags.go", "main.go"]
    assert (copy / "main.go").read_text() == MAIN.replace('":%v"', '"127.0.0.1:%v"')
    assert (copy / "flags.go").read_text() == FLAGS
    assert (module / "cmd" / "server" / "main.go").read_text() == MAIN


@pytest.mark.parametrize("old", ['":%d"', "("], ids=["gone", "ambiguous"])
def test_a_patch_that_no_longer_matches_once_fails_the_build(
    module: Path, tmp_path: Path, old: str
) -> None:
    with pytest.raises(RuntimeError, match="not found exactly once"):
        builds._copy_patched(patch(old), tmp_path, {})
