"""`annostack pcd`: point-cloud conversion (pure library, no services needed)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Literal

import typer

from annostack.domain.pointclouds import PointCloudError, read_any, write_pcd

app = typer.Typer(help="Point clouds: PCD (any kind), KITTI .bin and LAS/LAZ in; standard PCD out.")


def write_atomically(path: Path, data: bytes) -> None:
    """Write next to the target and rename: a reader never sees a partial file."""
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(data)
        tmp.flush()
        os.fsync(tmp.fileno())
    Path(tmp.name).replace(path)


@app.command()
def convert(
    source: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="PCD, .bin or LAS/LAZ")
    ],
    target: Annotated[Path, typer.Argument(dir_okay=False, help="The PCD to write.")],
    format: Annotated[
        Literal["binary", "binary_compressed"], typer.Option(help="DATA kind of the output.")
    ] = "binary_compressed",
    drop_nan: Annotated[bool, typer.Option(help="Drop points whose x, y or z is NaN.")] = False,
) -> None:
    """Convert losslessly: every field keeps its name, type and count."""
    try:
        cloud = read_any(source.read_bytes(), source.name, keep_nan=not drop_nan)
        write_atomically(target, write_pcd(cloud, format))
    except PointCloudError as error:
        typer.echo(f"{source}: {error}", err=True)
        raise typer.Exit(2) from error
    typer.echo(f"{target}: {len(cloud)} points, fields {', '.join(f.name for f in cloud.fields)}")
