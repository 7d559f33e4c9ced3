"""`annostack api run` and `annostack api token`: the tenant API process and its tokens."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="The tenant REST API.")


@app.command()
def run(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",  # noqa: S104
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    gateway: Annotated[
        str, typer.Option(help="user (browsers), open (developer API) or admin.")
    ] = "open",
) -> None:
    """Serve the API with uvicorn (the container's entry point)."""
    import os

    import uvicorn

    from annostack.apps.settings import ApiSettings
    from annostack.settings import Settings

    os.environ["ANNOSTACK_API_GATEWAY"] = gateway  # read by ApiSettings in each worker
    Settings()  # refuse a misconfiguration here, in one line, before uvicorn starts
    api = ApiSettings()
    uvicorn.run(
        "annostack.apps.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,
        access_log=False,  # the app logs every request as JSON with its tenant
        ws_max_size=api.ws_max_size,
    )


@app.command()
def token(
    tenant: Annotated[str, typer.Argument(help="Tenant name.")],
    name: Annotated[str, typer.Option(help="What the token is for.")] = "cli",
) -> None:
    """Create an API token for a tenant and print it (it is shown only this once)."""
    from annostack.adapters.kube import Kube
    from annostack.services.tenancy import TenantDirectory, create_api_token
    from annostack.settings import Settings

    settings = Settings()
    directory = TenantDirectory(Kube(settings.kubernetes), settings.db)
    typer.echo(create_api_token(directory.get(tenant), name))
    directory.close()
