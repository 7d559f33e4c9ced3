"""The images built here (`annostack dev images`) run, and load into containerd.

Containers run with podman (runc, no network) from the build's own storage; containerd is one
of our own, started for the module with its own root, state and socket and the CRI plugin off,
so the node's containerd is never touched. A cold cache builds everything first (minutes).
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from annostack.devstack.console import CommandFailed
from annostack.devstack.containers import ContainerTools, containerd_digest, read_archive
from annostack.devstack.images import ImageSet, ensure_images, load_into_containerd
from annostack.devstack.settings import DevStackSettings
from tests.support import wait_for

pytestmark = pytest.mark.integration

COMMANDS = {
    "operator": ["operator", "run", "--help"],
    "api": ["api", "run", "--help"],
    "worker": ["worker", "run", "--help"],
}
# Every native library the worker's code path loads: the Pulsar client, the compiled LZF
# (a source-only package the builder compiles), Pillow, numpy; FFmpeg inside PyAV (a WAV's
# waveform) and Arrow (ASCII PCD's CSV reader), which bring their own shared libraries to
# the Debian base; plyfile. The CSV read here is single-threaded: Arrow's thread pool can abort
# the interpreter when it exits within milliseconds of a threaded read (apache/arrow#39862,
# #34314, open upstream); a worker exits only after draining and closing its clients.
WORKER_IMPORTS = (
    "import io, wave, lzf, numpy, PIL.Image, pulsar, plyfile, pyarrow.csv,"
    " annostack.workers.runtime;"
    "from annostack.domain.media import audio_waveform;"
    "data = bytes(range(256)) * 64;"
    "assert lzf.decompress(lzf.compress(data), len(data)) == data;"
    "out = io.BytesIO(); w = wave.open(out, 'wb'); w.setnchannels(1); w.setsampwidth(2);"
    "w.setframerate(8000); w.writeframes(bytes(16000)); w.close();"
    "assert audio_waveform(out.getvalue())[0].sample_rate == 8000;"
    "single = pyarrow.csv.ReadOptions(use_threads=False);"
    "assert pyarrow.csv.read_csv(io.BytesIO(b'x,y\\n1,2\\n'), read_options=single).num_rows == 1;"
    "print('worker libraries ok')"
)


@pytest.fixture(scope="module")
def settings() -> DevStackSettings:
    return DevStackSettings()


@pytest.fixture(scope="module")
def built(pytestconfig: pytest.Config, settings: DevStackSettings) -> ImageSet:
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        return ensure_images(settings)


@pytest.fixture(scope="module")
def tools(built: ImageSet, settings: DevStackSettings) -> ContainerTools:
    return ContainerTools(settings)


def podman(tools: ContainerTools, ref: str, *args: str, entrypoint: str | None = None) -> str:
    result = tools.run(ref, args, entrypoint=entrypoint)
    assert result.exit_code == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("name", COMMANDS)
def test_each_image_runs_its_process_as_uid_10001(
    built: ImageSet, tools: ContainerTools, name: str
) -> None:
    ref = getattr(built, name).ref
    usage = podman(tools, ref, *COMMANDS[name])
    assert f"Usage: annostack {' '.join(COMMANDS[name][:-1])}" in usage
    # sh and id from the Debian base are on PATH, as `kubectl exec` needs them.
    assert podman(tools, ref, "-c", "id -u; id -g", entrypoint="sh").split() == ["10001"] * 2


def test_the_worker_image_loads_the_native_libraries_it_uses(
    built: ImageSet, tools: ContainerTools
) -> None:
    assert "worker libraries ok" in podman(
        tools, built.worker.ref, "-c", WORKER_IMPORTS, entrypoint="python"
    )


def test_the_images_carry_no_build_tools_and_pip_is_usable_in_the_base(
    built: ImageSet, tools: ContainerTools
) -> None:
    """The compiler stays in the builder stage; pip in the base installs (no PEP 668 stop)."""
    check = "import shutil; print(*(shutil.which(tool) for tool in ('gcc', 'pip', 'apt-get')))"
    assert podman(tools, built.api.ref, "-c", check, entrypoint="python").split() == [
        "None",
        "/usr/bin/pip",
        "/usr/bin/apt-get",
    ]
    marker = (
        "import sysconfig, pathlib;"
        "print(pathlib.Path(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED').exists())"
    )
    assert podman(tools, built.api.ref, "-c", marker, entrypoint="python").strip() == "False"


def catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler for the signal (SigCgt in /proc/<pid>/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    (caught,) = [line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")]
    return bool(int(caught, 16) >> (signum - 1) & 1)


def test_the_pause_image_is_unprivileged_and_stops_on_sigterm(
    built: ImageSet, tools: ContainerTools
) -> None:
    inspect = ["podman", "image", "inspect", "--format", "{{.Config.User}}", built.pause.ref]
    assert tools.output(inspect).strip() == "65535:65535"
    name = f"annostack-pause-test-{time.monotonic_ns()}"
    tools.output(tools.run_argv(built.pause.ref, [], name=name))
    try:
        wait_for(lambda: tools.state(name)[0] == "running", 30, "the pause container runs")
        pid = int(tools.output(["podman", "inspect", "--format", "{{.State.Pid}}", name]))
        # PID 1 of a PID namespace drops signals it has no handler for: wait for pause's.
        wait_for(lambda: catches(pid, signal.SIGTERM), 10, "pause handles SIGTERM")
        tools.output(["podman", "kill", "--signal", "TERM", name])
        assert tools.wait(name, timeout=10) == 0, "exits by itself, with 0"
    finally:
        tools.remove_container(name)


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A throwaway containerd (CRI off): its socket."""
    home = tmp_path_factory.mktemp("ctrd")
    socket = home / "containerd.sock"
    config = home / "config.toml"
    config.write_text(
        "version = 2\n"
        f'root = "{home / "root"}"\n'
        f'state = "{home / "state"}"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt",'
        ' "io.containerd.tracing.processor.v1.otlp"]\n'
        f'[grpc]\n  address = "{socket}"\n'
        '[ttrpc]\n  address = ""\n[debug]\n  address = ""\n[metrics]\n  address = ""\n'
    )
    log = (home / "containerd.log").open("w")
    with subprocess.Popen(
        ["containerd", "--config", str(config)], stdout=log, stderr=log
    ) as daemon:
        try:
            wait_for(socket.is_socket, 30, "containerd serves its socket")
            yield socket
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
            log.close()


def test_an_archive_loads_into_containerd_once(built: ImageSet, containerd: Path) -> None:
    pause = built.pause
    digest = read_archive(pause.archive).digest
    assert load_into_containerd(pause.archive, pause.ref, containerd) is True
    assert containerd_digest(pause.ref, containerd) == digest
    assert load_into_containerd(pause.archive, pause.ref, containerd) is False, "already there"
    ctr = ["ctr", "--address", str(containerd), "--namespace", "k8s.io"]
    subprocess.run([*ctr, "images", "rm", pause.ref], check=True, capture_output=True)
    assert containerd_digest(pause.ref, containerd) is None
    assert load_into_containerd(pause.archive, pause.ref, containerd) is True


def test_an_archive_is_not_loaded_under_another_name(built: ImageSet, containerd: Path) -> None:
    with pytest.raises(CommandFailed, match="holds localhost/annostack/pause"):
        load_into_containerd(built.pause.archive, "localhost/annostack/pause:other", containerd)
