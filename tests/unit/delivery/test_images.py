"""The Dockerfiles agree with the code and the manifests: pinned bases, an unprivileged user,
health checks on the port each process really serves, the command the Deployments run.

hadolint (run by `make lint`) checks Dockerfile practice; this checks what it cannot know.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from annostack.domain.tenant_stack import WORKER_PORT
from annostack.operator.runner import OperatorOptions
from annostack.workers.settings import WorkerSettings

ROOT = Path(__file__).parents[3]
API_PORT = 8000  # `annostack api run --port 8000` in the Dockerfile and the Deployment

IMAGES = {
    # folder: (port of /healthz, CMD)
    "operator": (OperatorOptions().health_port, ["operator", "run"]),
    "apps": (API_PORT, ["api", "run", "--port", str(API_PORT)]),
    "workers": (WorkerSettings().port, ["worker", "run"]),
}


def dockerfile(folder: str) -> str:
    return (ROOT / folder / "Dockerfile").read_text()


@pytest.mark.parametrize("folder", IMAGES)
def test_every_stage_starts_from_the_base_argument_a_digest_pinned_default(folder: str) -> None:
    """CI builds with the published default; `annostack dev images` passes its local base."""
    text = dockerfile(folder)
    (default,) = re.findall(r"^ARG BASE_IMAGE=(\S+)$", text, flags=re.MULTILINE)
    assert re.search(r"^python:[\w.\-]+@sha256:[0-9a-f]{64}$", default), default
    assert text.index("ARG BASE_IMAGE=") < text.index("\nFROM "), "a global ARG, before FROM"
    bases = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert len(bases) >= 2, "multi-stage: a builder and a runtime stage"
    assert set(bases) == {"${BASE_IMAGE}"}


def test_the_three_images_share_one_builder_stage() -> None:
    """Identical builder stages are built once by `buildah bud --layers` for all three."""
    builders = {
        dockerfile(folder).split(" AS builder\n", 1)[1].split("\nFROM ")[0] for folder in IMAGES
    }
    assert len(builders) == 1


@pytest.mark.parametrize("folder", IMAGES)
def test_the_runtime_stage_runs_unprivileged(folder: str) -> None:
    runtime = dockerfile(folder).rsplit("\nFROM ", 1)[1]
    (user,) = re.findall(r"^USER\s+(\S+)", runtime, flags=re.MULTILINE)
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric non-root uid (runAsNonRoot can check it)"


@pytest.mark.parametrize("folder", IMAGES)
def test_the_health_check_probes_the_port_the_process_serves(folder: str) -> None:
    port, command = IMAGES[folder]
    text = dockerfile(folder)
    (check,) = re.findall(r"^HEALTHCHECK (?:[^\n]*\\\n)*[^\n]*", text, flags=re.MULTILINE)
    assert f"http://127.0.0.1:{port}/healthz" in check
    assert 'ENTRYPOINT ["annostack"]' in text
    assert "CMD " + ", ".join(f'"{c}"' for c in command).join("[]") in text


def test_the_worker_port_is_the_one_the_operator_probes() -> None:
    assert WorkerSettings().port == WORKER_PORT


def test_only_the_worker_image_carries_open3d_runtime_libraries() -> None:
    assert "libgomp1" in dockerfile("workers") and "libusb-1.0-0" in dockerfile("workers")
