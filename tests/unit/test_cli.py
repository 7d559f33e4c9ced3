"""The `annostack` command starts fast: nothing heavy is imported before a command runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from annostack.cli import dev, pcd
from annostack.domain.rendering import DEFAULT_RANGE_METRES

HEAVY = ("numpy", "PIL", "open3d", "kubernetes", "pulsar", "sqlalchemy", "redis", "rich", "av")


def test_help_imports_none_of_the_heavy_libraries() -> None:
    probe = (
        "import sys, runpy; sys.argv = ['annostack', '--help']\n"
        "try:\n    runpy.run_module('annostack', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        f"print('heavy:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert "Commands:" in result.stdout
    assert result.stdout.splitlines()[-1] == "heavy:", "imported before any command ran"


def test_the_cli_default_range_is_the_renderers() -> None:
    assert pcd.DEFAULT_RANGE_METRES == DEFAULT_RANGE_METRES


def test_dev_env_prints_only_exports_on_stdout_even_while_images_build(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from annostack.devstack import console, stack

    class Building:
        def client_env(self) -> dict[str, str]:
            console.say("building localhost/annostack/api:dev-1 from apps/Dockerfile …")
            return {"ANNOSTACK_ENVIRONMENT": "dev", "KUBECONFIG": "/a b/kubeconfig"}

    monkeypatch.setattr(stack, "Stack", Building)
    monkeypatch.setattr(console.console, "stderr", False)
    dev.env()
    printed = capsys.readouterr()
    assert printed.out == "export ANNOSTACK_ENVIRONMENT=dev\nexport KUBECONFIG='/a b/kubeconfig'\n"
    assert "building localhost/annostack/api" in printed.err
