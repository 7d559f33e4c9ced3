"""`annostack dev`: the local stack of real servers (see annostack.devstack).

The devstack (and the Kubernetes, Pulsar and SQL clients it pulls in) is imported inside each
command, so `annostack --help` does not pay for it.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from annostack.devstack.stack import Stack, State

app = typer.Typer(
    help="Run the local stack: etcd, kube-apiserver, TiDB/MariaDB, S3, Pulsar, Redis."
)


@app.command()
def up() -> None:
    """Build what is missing (cached), start every component and wait until all are ready."""
    from annostack.devstack.builds import MissingPrerequisite, ensure_kustomize
    from annostack.devstack.console import CommandFailed, console
    from annostack.devstack.stack import ComponentFailed, Stack

    stack = Stack()
    try:
        stack.up()
        # The delivery tests render manifests/ with it; built here so `make test` has it.
        kustomize = ensure_kustomize(stack.settings)
    except (ComponentFailed, CommandFailed, MissingPrerequisite) as error:
        console.print(f"[red]dev up failed:[/red] {error}")
        raise typer.Exit(1) from error
    _print_status(stack)
    console.print(f"kustomize (renders manifests/): {kustomize}")
    console.print('Point a shell at it: [bold]eval "$(annostack dev env)"[/bold]')


@app.command()
def platform() -> None:
    """Install the CRDs, start the operator, make examples/tenant.yaml Ready, start API + worker."""
    from annostack.devstack.builds import MissingPrerequisite
    from annostack.devstack.console import CommandFailed, console
    from annostack.devstack.platform import Platform
    from annostack.devstack.stack import ComponentFailed, Stack
    from annostack.domain.errors import BackendError

    stack = Stack()
    try:
        stack.up()
        annostack = Platform(stack)
        annostack.install()
        annostack.start_operator()
        name = annostack.apply_demo()
        api = annostack.start_api()
        annostack.start_worker(name)
    except (ComponentFailed, CommandFailed, MissingPrerequisite, BackendError) as error:
        console.print(f"[red]dev platform failed:[/red] {error}")
        raise typer.Exit(1) from error
    _print_status(stack)
    console.print(
        f'Tenant [bold]{name}[/bold] is Ready. Try: eval "$(annostack dev env)"; '
        f"kubectl get tenants; T=$(annostack api token {name}); "
        f'curl -H "Authorization: Bearer $T" {api}/v1/datasets'
    )


@app.command()
def down() -> None:
    """Stop the processes `up` and `platform` started (data is kept for the next `up`)."""
    from annostack.devstack.platform import Platform
    from annostack.devstack.stack import Stack

    stack = Stack()
    Platform(stack).stop()
    stack.down()


@app.command()
def status() -> None:
    """Each component's state and endpoint; exit 1 unless all are ready."""
    from annostack.devstack.stack import Stack, State

    statuses = _print_status(Stack())
    if any(s != State.READY for s in statuses):
        raise typer.Exit(1)


@app.command()
def env() -> None:
    """Print `export` lines that point annostack (and kubectl) at the local stack."""
    from annostack.devstack.stack import Stack

    for key, value in Stack().client_env().items():
        print(f"export {key}={shlex.quote(value)}")


def _print_status(stack: Stack) -> list[State]:
    from rich.table import Table

    from annostack.devstack.console import console
    from annostack.devstack.stack import State

    table = Table("component", "state", "pid", "endpoint")
    states = []
    for item in stack.status():
        colour = {State.READY: "green", State.STARTING: "yellow"}.get(item.state, "red")
        table.add_row(
            item.name, f"[{colour}]{item.state}[/{colour}]", str(item.pid or "-"), item.endpoint
        )
        states.append(item.state)
    console.print(table)
    return states
