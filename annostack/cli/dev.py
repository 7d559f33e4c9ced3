"""`annostack dev`: the local stack of real servers (see annostack.devstack).

The devstack (and the Kubernetes, Pulsar and SQL clients it pulls in) is imported inside each
command, so `annostack --help` does not pay for it.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
    """Build the images, deploy the operator and the API on the node, make the demo Tenant Ready."""
    from annostack.devstack.builds import MissingPrerequisite
    from annostack.devstack.console import CommandFailed, console
    from annostack.devstack.platform import Platform
    from annostack.devstack.stack import ComponentFailed, Stack
    from annostack.domain.errors import BackendError

    stack = Stack()
    try:
        stack.up()
        annostack = Platform(stack)
        annostack.deploy(annostack.load_images())
        name = annostack.apply_demo()
    except (ComponentFailed, CommandFailed, MissingPrerequisite, BackendError) as error:
        console.print(f"[red]dev platform failed:[/red] {error}")
        raise typer.Exit(1) from error
    _print_status(stack)
    console.print(
        f'Tenant [bold]{name}[/bold] is Ready. Try: eval "$(annostack dev env)"; '
        f"kubectl get tenants,pods -A; T=$(annostack api token {name}); "
        f'curl -H "Authorization: Bearer $T" {annostack.api_url}/v1/datasets'
    )


@app.command()
def images(
    load: Annotated[
        Path | None,
        typer.Option(help="A containerd socket to import the images into (namespace k8s.io)."),
    ] = None,
) -> None:
    """Build the operator, API, worker and pause images here (cached by a hash of the inputs)."""
    from annostack.devstack.builds import MissingPrerequisite
    from annostack.devstack.console import CommandFailed, console
    from annostack.devstack.images import ensure_images
    from annostack.devstack.settings import DevStackSettings

    try:
        built = ensure_images(DevStackSettings())
        if load is not None:
            built.load_into_containerd(load)
    except (CommandFailed, MissingPrerequisite) as error:
        console.print(f"[red]dev images failed:[/red] {error}")
        raise typer.Exit(1) from error
    # Plain lines, not a table: the refs and paths are meant to be copied whole.
    for image in built:
        size = image.archive.stat().st_size / 1e6
        console.print(f"{image.name:<9} {image.ref}  {image.archive} ({size:.0f} MB)")


@app.command()
def down() -> None:
    """Stop the stack and its node, pods included (data is kept for the next `up`)."""
    from annostack.devstack.stack import Stack

    Stack().down()


@app.command()
def status() -> None:
    """Each component's state and endpoint; exit 1 unless all are ready (or off)."""
    from annostack.devstack.stack import Stack, State

    statuses = _print_status(Stack())
    if any(s not in (State.READY, State.OFF) for s in statuses):
        raise typer.Exit(1)


@app.command()
def env() -> None:
    """Print `export` lines that point annostack (and kubectl) at the local stack."""
    from annostack.devstack.console import console
    from annostack.devstack.stack import Stack

    # Only the exports on stdout, for `eval "$(annostack dev env)"`: what building the images
    # for a changed tree prints goes to stderr.
    console.stderr = True
    for key, value in Stack().client_env().items():
        print(f"export {key}={shlex.quote(value)}")


def _print_status(stack: Stack) -> list[State]:
    from rich.table import Table

    from annostack.devstack.console import console
    from annostack.devstack.stack import State

    table = Table("component", "state", "pid", "endpoint")
    states = []
    for item in stack.status():
        colour = {State.READY: "green", State.STARTING: "yellow", State.OFF: "dim"}.get(
            item.state, "red"
        )
        table.add_row(
            item.name, f"[{colour}]{item.state}[/{colour}]", str(item.pid or "-"), item.endpoint
        )
        states.append(item.state)
    console.print(table)
    return states
