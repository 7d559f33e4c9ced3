"""`annostack image`: thumbnails."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from annostack.cli.pcd import write_atomically

app = typer.Typer(help="Images: thumbnails (JPEG draft decoding where it applies).")


@app.command(name="thumbnail")
def make_thumbnail(
    source: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    target: Annotated[Path, typer.Argument(dir_okay=False, help="JPEG to write.")],
    size: Annotated[int, typer.Option(help="Longest edge in pixels.")] = 400,
) -> None:
    """A JPEG thumbnail, aspect ratio kept."""
    from annostack.domain.images import ImageError, thumbnail

    try:
        write_atomically(target, thumbnail(source.read_bytes(), size))
    except ImageError as error:
        typer.echo(f"{source}: {error}", err=True)
        raise typer.Exit(2) from error
