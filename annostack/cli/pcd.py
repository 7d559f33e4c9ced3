"""`annostack pcd`: point-cloud conversion (pure library, no services needed)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Literal

import typer

app = typer.Typer(
    help="Point clouds: PCD (any kind), KITTI .bin, LAS/LAZ and PLY in; standard PCD out."
)
# annostack.domain.rendering.DEFAULT_RANGE_METRES, written out so that `--help` need not import
# numpy and Pillow (a test keeps the two equal).
DEFAULT_RANGE_METRES = 50.0


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
    from annostack.domain.pointclouds import PointCloudError, read_any, write_pcd

    try:
        cloud = read_any(source.read_bytes(), source.name, keep_nan=not drop_nan)
        write_atomically(target, write_pcd(cloud, format))
    except PointCloudError as error:
        typer.echo(f"{source}: {error}", err=True)
        raise typer.Exit(2) from error
    typer.echo(f"{target}: {len(cloud)} points, fields {', '.join(f.name for f in cloud.fields)}")


@app.command()
def render(
    source: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    target: Annotated[Path, typer.Argument(dir_okay=False, help="PNG to write.")],
    size: Annotated[int, typer.Option(help="Width and height in pixels.")] = 1024,
    color: Annotated[Literal["height", "intensity"], typer.Option()] = "height",
    range_metres: Annotated[
        float,
        typer.Option(
            "--range", help="Metres from the centre (sensor, or cloud centre) to each edge."
        ),
    ] = DEFAULT_RANGE_METRES,
) -> None:
    """A square top-down (bird's-eye view) preview PNG; its scale is in its metadata."""
    from annostack.domain.pointclouds import PointCloudError, read_any
    from annostack.domain.rendering import render_bev

    try:
        png = render_bev(read_any(source.read_bytes(), source.name), size, color, range_metres)
        write_atomically(target, png)
    except PointCloudError as error:
        typer.echo(f"{source}: {error}", err=True)
        raise typer.Exit(2) from error


@app.command()
def split(
    source: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    outdir: Annotated[Path, typer.Argument(file_okay=False, help="Directory for the tiles.")],
    tile: Annotated[float, typer.Option(help="Tile edge in metres.")] = 50.0,
    voxel: Annotated[float | None, typer.Option(help="Voxel size for downsampling.")] = None,
    max_points: Annotated[
        int | None, typer.Option(help="Only downsample/split clouds larger than this.")
    ] = None,
) -> None:
    """Spatial tiles (and optional voxel downsampling), with index.json of tiles and bounds."""
    from annostack.domain.pointclouds import PointCloudError, read_any, write_pcd
    from annostack.domain.rendering import split_tiles, tile_index, voxel_downsample

    try:
        cloud = read_any(source.read_bytes(), source.name)
        if max_points is not None and len(cloud) <= max_points:
            typer.echo(f"{source}: {len(cloud)} points, not above {max_points}; nothing to do")
            return
        if voxel is not None:
            cloud = voxel_downsample(cloud, voxel)
        tiles = split_tiles(cloud, tile)
        outdir.mkdir(parents=True, exist_ok=True)
        for meta, part in tiles:
            write_atomically(outdir / f"{meta.name}.pcd", write_pcd(part))
        write_atomically(outdir / "index.json", tile_index([t for t, _ in tiles], tile, voxel))
    except PointCloudError as error:
        typer.echo(f"{source}: {error}", err=True)
        raise typer.Exit(2) from error
    typer.echo(f"{outdir}: {len(tiles)} tiles")
