"""`annostack operator run`: the kopf operator process."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="The operator: reconciles Tenant, Dataset and ProcessingJob resources.")


@app.command()
def run(
    standalone: Annotated[
        bool, typer.Option(help="Skip kopf peering (one replica, development only).")
    ] = False,
    metrics_port: Annotated[int, typer.Option(help="Prometheus /metrics port.")] = 9090,
    health_port: Annotated[int, typer.Option(help="Liveness /healthz port.")] = 8081,
    bind_address: Annotated[str, typer.Option(help="Address for metrics and health.")] = "0.0.0.0",  # noqa: S104
) -> None:
    """Run the operator against the cluster in ANNOSTACK_KUBERNETES__KUBECONFIG (or in-cluster)."""
    from annostack.operator.runner import OperatorOptions
    from annostack.operator.runner import run as run_operator

    run_operator(OperatorOptions(standalone, metrics_port, health_port, bind_address))
