"""`annostack dev up | down | status | env`: the local stack as plain processes.

`up` is idempotent: a component that is already running and ready is left alone; one whose
process died is started again on its existing data. Components start as soon as what they
require is ready, so the slow ones (Pulsar, the apiserver) overlap. A component that exits or
does not become ready in time fails `up` with the reason and the end of its log.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from annostack.devstack import processes
from annostack.devstack.components import (
    Component,
    Credentials,
    Etcd,
    KubeApiserver,
    KubeControllerManager,
    MariaDB,
    Redis,
    SeaweedFS,
    StackContext,
)
from annostack.devstack.console import last_lines, say
from annostack.devstack.hoststate import PodNetwork, Sysctls
from annostack.devstack.keda import KedaMetricsAdapter, KedaOperator
from annostack.devstack.node import (
    Containerd,
    CoreDNS,
    Kubelet,
    KubeProxy,
    KubeScheduler,
    NetworkPolicies,
)
from annostack.devstack.pulsar import Pulsar
from annostack.devstack.settings import DevStackSettings
from annostack.devstack.tidb import TiDB

POLL_SECONDS = 0.5
INITIALIZED_MARKER = ".initialized"


class ComponentFailed(RuntimeError):
    """A component could not be started or did not become ready."""


class State(StrEnum):
    READY = "ready"
    STARTING = "running, not ready"
    STOPPED = "stopped"
    OFF = "off"  # an add-on the settings leave off


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    state: State
    pid: int | None
    endpoint: str


class Stack:
    """The set of components for the given settings, in dependency order."""

    def __init__(self, settings: DevStackSettings | None = None) -> None:
        self.settings = settings or DevStackSettings()
        state = self.settings.state_dir
        credentials = Credentials.load_or_create(state / "credentials.json")
        self.ctx = StackContext(self.settings, credentials)
        database: type[Component] = TiDB if self.settings.database == "tidb" else MariaDB
        kinds: list[type[Component]] = [
            Etcd,
            KubeApiserver,
            KubeControllerManager,
            KubeScheduler,
            Containerd,
            CoreDNS,
            Kubelet,
            KubeProxy,
            NetworkPolicies,
            database,
            SeaweedFS,
            Pulsar,
            Redis,
            KedaOperator,
            KedaMetricsAdapter,
        ]
        self.components = [kind(self.ctx) for kind in kinds]
        self.network = PodNetwork(self.settings.node, Sysctls(state / "host-sysctls.json"))

    def _pid_path(self, component: Component) -> Path:
        return self.settings.state_dir / f"{component.name}.pid"

    def _log_path(self, component: Component) -> Path:
        return self.settings.state_dir / "logs" / f"{component.name}.log"

    def _runs(self, component: Component) -> bool:
        """Wanted by the settings, or running anyway (started by `start`, as tests do)."""
        return component.wanted or processes.running(self._pid_path(component)) is not None

    def up(self) -> None:
        for component in self.components:
            if self._runs(component):
                component.prepare()
        self.network.ensure()
        pending = {c.name: c for c in self.components}
        ready: set[str] = set()
        started: dict[str, float] = {}
        while pending:
            for component in list(pending.values()):
                if not set(component.requires) <= ready:
                    continue
                if not self._runs(component):
                    component.ensure_absent()
                    ready.add(component.name)
                    del pending[component.name]
                    continue
                if component.name not in started:
                    started[component.name] = self._ensure_started(component)
                if self._check_ready(component, started[component.name]):
                    component.configure()
                    say(f"  [green]✓[/green] {component.name} ready at {component.endpoint}")
                    ready.add(component.name)
                    del pending[component.name]
            time.sleep(POLL_SECONDS)

    def _ensure_started(self, component: Component) -> float:
        pid_path = self._pid_path(component)
        if processes.running(pid_path) is not None:
            return time.monotonic()
        self._initialize_once(component)
        component.before_start()
        say(f"  starting {component.name} …")
        processes.spawn(
            component.command(),
            pid_path=pid_path,
            log_path=self._log_path(component),
            cwd=component.data,
            env=component.process_env(),
        )
        return time.monotonic()

    def _initialize_once(self, component: Component) -> None:
        marker = component.data / INITIALIZED_MARKER
        if marker.exists():
            return
        # A half-initialised directory from an interrupted run is worth nothing: start over.
        shutil.rmtree(component.data, ignore_errors=True)
        component.data.mkdir(parents=True, mode=0o700)
        component.initialize()
        marker.touch()

    def _check_ready(self, component: Component, since: float) -> bool:
        if component.probe():
            return True
        if processes.running(self._pid_path(component)) is None:
            raise ComponentFailed(
                f"{component.name} exited during start-up; last lines of "
                f"{self._log_path(component)}:\n{last_lines(self._log_path(component))}"
            )
        if time.monotonic() - since > self.settings.startup_timeout:
            raise ComponentFailed(
                f"{component.name} not ready after {self.settings.startup_timeout:.0f}s; "
                f"last lines of {self._log_path(component)}:\n"
                f"{last_lines(self._log_path(component))}"
            )
        return False

    def stop(self, name: str, *, undo: bool = False) -> None:
        """Stop one component's process and nothing else, as a crash would (kubelet's pods
        keep running): what the node-lost tests do. `undo`: also undo what it changed, as
        `down` does (an add-on's API taken out of the cluster)."""
        component = self.component(name)
        processes.stop(self._pid_path(component))
        if undo:
            component.after_stop()

    def start(self, name: str) -> None:
        """Start one component that is not running (as `up` would, an add-on the settings
        leave off too); wait until it is ready and configured."""
        component = self.component(name)
        component.prepare()
        since = self._ensure_started(component)
        while not self._check_ready(component, since):
            time.sleep(POLL_SECONDS)
        component.configure()

    def down(self) -> None:
        for component in reversed(self.components):
            if processes.stop(self._pid_path(component)):
                say(f"  stopped {component.name}")
            component.after_stop()
        self.network.remove()

    def status(self) -> Iterator[ComponentStatus]:
        for component in self.components:
            record = processes.running(self._pid_path(component))
            if record is None:
                state = State.STOPPED if component.wanted else State.OFF
            else:
                state = State.READY if component.probe() else State.STARTING
            yield ComponentStatus(
                component.name, state, record.pid if record else None, component.endpoint
            )

    def client_env(self) -> dict[str, str]:
        """Settings for the operator (and for people: `dev env`), with its identities."""
        env = {"ANNOSTACK_ENVIRONMENT": "dev"}
        for component in self.components:
            env.update(component.client_env())
        return env

    def api_env(self) -> dict[str, str]:
        """Settings for the tenant API: the same servers, the API's own identities."""
        env = self.client_env()
        for component in self.components:
            env.update(component.api_env())
        return env

    def component(self, name: str) -> Component:
        return next(c for c in self.components if c.name == name)
