"""How long `annostack --help` takes to answer: wall and CPU time of a fresh process.

Best of ROUNDS runs of `.venv/bin/annostack --help`, the console script a person types
(Python start-up, the editable install's finder, typer, every sub-command's module).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench.runner import Figures, benchmark

ROUNDS = 10


def _once(command: list[str]) -> tuple[float, float]:
    before = os.times()
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    wall = time.perf_counter() - started
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu


@benchmark("cli")
def cli_bench() -> Figures:
    script = Path(sys.executable).with_name("annostack")
    runs = [_once([str(script), "--help"]) for _ in range(ROUNDS)]
    python = [_once([sys.executable, "-c", "pass"]) for _ in range(ROUNDS)]
    return {
        "help_wall_seconds": round(min(wall for wall, _ in runs), 3),
        "help_cpu_seconds": round(min(cpu for _, cpu in runs), 3),
        "bare_python_wall_seconds": round(min(wall for wall, _ in python), 3),
        "target_seconds": 0.3,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
