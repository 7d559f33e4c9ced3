"""Reading pods and running commands in them, as `kubectl get pods` and `kubectl exec` do."""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes import client
from kubernetes.stream import stream


def pods(core: client.CoreV1Api, namespace: str, selector: str) -> list[client.V1Pod]:
    return list(core.list_namespaced_pod(namespace, label_selector=selector).items)


def running_ready(pod: client.V1Pod) -> bool:
    conditions = pod.status.conditions or []
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    return bool(pod.status.phase == "Running" and ready and not pod.metadata.deletion_timestamp)


@dataclass(frozen=True)
class Executed:
    stdout: str
    stderr: str
    exit_code: int | None  # None: still running when the timeout passed


def exec_in(
    core: client.CoreV1Api, pod: str, namespace: str, command: list[str], timeout: float = 60
) -> Executed:
    """`kubectl exec <pod> -- <command>`: apiserver -> kubelet -> the container."""
    session = stream(
        core.connect_get_namespaced_pod_exec,
        pod,
        namespace,
        command=command,
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    try:
        session.run_forever(timeout=timeout)
        stdout, stderr = session.read_stdout(), session.read_stderr()
        code = session.returncode  # None while it still runs (the timeout passed)
    finally:
        session.close()
    return Executed(stdout, stderr, code)


def run_in(core: client.CoreV1Api, pod: str, namespace: str, code: str) -> str:
    """`kubectl exec <pod> -- python -c <code>`; what it printed, stdout then stderr."""
    done = exec_in(core, pod, namespace, ["python", "-c", code])
    return done.stdout + done.stderr
