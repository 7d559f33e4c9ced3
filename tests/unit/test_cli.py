"""The `annostack` command starts fast: nothing heavy is imported before a command runs."""

from __future__ import annotations

import subprocess
import sys

from annostack.cli import pcd
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
