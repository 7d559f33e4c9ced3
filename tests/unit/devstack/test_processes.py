from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from annostack.devstack import processes


def test_spawned_process_is_recorded_and_stopped(tmp_path: Path) -> None:
    pid_path = tmp_path / "sleeper.pid"
    record = processes.spawn(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        pid_path=pid_path,
        log_path=tmp_path / "sleeper.log",
        cwd=tmp_path,
    )
    assert processes.running(pid_path) == record
    assert processes.stop(pid_path) is True
    assert processes.running(pid_path) is None
    assert not pid_path.exists()


def test_a_reused_pid_is_not_mistaken_for_ours(tmp_path: Path) -> None:
    # Same PID, different start time: some other process now owns the number.
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as other:
        pid_path = tmp_path / "stale.pid"
        processes.ProcessRecord(other.pid, "1").write(pid_path)
        assert processes.running(pid_path) is None
        assert processes.stop(pid_path) is False
        assert other.poll() is None, "stop() must never signal a process it did not start"
        other.kill()


def test_missing_or_garbled_pid_file_means_not_running(tmp_path: Path) -> None:
    assert processes.running(tmp_path / "absent.pid") is None
    (tmp_path / "garbled.pid").write_text("not a pid")
    assert processes.running(tmp_path / "garbled.pid") is None
