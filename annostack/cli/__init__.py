"""The `annostack` command: one sub-command per process type and per developer task.

Entry points stay thin: they parse arguments and hand off to the layer that does the work.
"""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError

from annostack.cli import api, crds, dev, image, operator, pcd, worker

app = typer.Typer(
    name="annostack",
    help="annostack: multi-tenant data-annotation platform on Kubernetes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain click help: rendering it with rich imports rich and markdown-it, which is most
    # of the start-up time of a command that a person types.
    rich_markup_mode=None,
)
app.add_typer(dev.app, name="dev")
app.add_typer(crds.app, name="crds")
app.add_typer(operator.app, name="operator")
app.add_typer(api.app, name="api")
app.add_typer(pcd.app, name="pcd")
app.add_typer(image.app, name="image")
app.add_typer(worker.app, name="worker")


def main() -> None:
    try:
        app()
    except ValidationError as error:
        if not error.title.endswith("Settings"):
            raise
        # A misconfigured process: one line per problem, saying what to set, no traceback.
        for problem in error.errors():
            where = ".".join(str(part) for part in problem["loc"])
            print(
                f"annostack: {error.title}{' ' + where if where else ''}: {problem['msg']}",
                file=sys.stderr,
            )
        sys.exit(2)
