"""`annostack worker run`: the processing worker (the tenant worker Deployment's command)."""

from __future__ import annotations

import logging
import os

import typer

app = typer.Typer(help="Processing workers.")


@app.command()
def run() -> None:
    """Consume this tenant's topics (connection from ANNOSTACK_TENANT__*, as the Secret sets)."""
    from annostack.domain.tenant_stack import TenantConnection
    from annostack.workers import health
    from annostack.workers.runtime import Worker, install_signal_handlers
    from annostack.workers.settings import WorkerSettings

    logging.basicConfig(
        level=logging.INFO,
        format='{"time":"%(asctime)s","level":"%(levelname)s","message":"%(message)s"}',
    )
    settings = WorkerSettings()
    worker = Worker(TenantConnection.from_env(dict(os.environ)), settings)
    install_signal_handlers(worker)
    server = health.serve(worker, settings.bind_address, settings.port)
    try:
        worker.run()
    finally:
        server.shutdown()
