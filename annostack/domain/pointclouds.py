"""Point clouds: PCD (ascii, binary, binary_compressed), KITTI .bin, LAS/LAZ and PLY (ascii,
binary little- and big-endian) in, PCD out.

A `PointCloud` keeps every field of its source with its exact type, count and order (a numpy
structured array plus the PCD header), so conversion is lossless: nothing is dropped or
widened, NaN points stay unless asked otherwise. Every malformed input is a `PointCloudError`
that says what is wrong; nothing here writes partial output (callers write to a temporary
file and rename).

ASCII is parsed by Arrow's CSV reader (about 4x numpy's `loadtxt`), each column straight into
its field's type; bodies that are not PCL's plain single-space layout fall back to numpy.

binary_compressed layout (PCL's): two little-endian uint32 — compressed and uncompressed
size — then LZF of the points stored field by field ("column-major"): all values of the first
field, then all of the second, and so on.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from typing import Literal

import lzf
import numpy as np

PcdFormat = Literal["ascii", "binary", "binary_compressed"]
MAX_POINTS = 2_000_000_000  # beyond any sensor; a bigger header value is corrupt, not data
MAX_FIELDS = 256
HEADER_LIMIT = 64 * 1024
ARROW_BLOCK = 4 * 2**20  # bytes of text per parse block: a 40 MB cloud is 10 parallel blocks
# Arrow parses blocks on all cores by default; a worker pod limited to one core gets one.
ARROW_THREADS = True
TYPE_CODES = {("F", 4): "<f4", ("F", 8): "<f8", ("U", 1): "u1", ("U", 2): "<u2",
              ("U", 4): "<u4", ("U", 8): "<u8", ("I", 1): "i1", ("I", 2): "<i2",
              ("I", 4): "<i4", ("I", 8): "<i8"}  # fmt: skip
HEADER_KEYS = ("VERSION", "FIELDS", "SIZE", "TYPE", "COUNT", "WIDTH", "HEIGHT", "VIEWPOINT",
               "POINTS", "DATA")  # fmt: skip


class PointCloudError(ValueError):
    """The input is not a valid point cloud; the message says why."""


@dataclass(frozen=True)
class Field:
    name: str
    size: int
    type: str  # F, U or I
    count: int

    @property
    def dtype(self) -> np.dtype[np.generic]:
        base = np.dtype(TYPE_CODES[(self.type, self.size)])
        return np.dtype((base, (self.count,))) if self.count > 1 else base


@dataclass
class PointCloud:
    fields: list[Field]
    points: np.ndarray  # structured, one record per point
    width: int
    height: int = 1
    viewpoint: tuple[float, ...] = (0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def dtype(self) -> np.dtype[np.void]:
        return np.dtype([(f.name, f.dtype) for f in self.fields])

    def __len__(self) -> int:
        return int(self.points.shape[0])


# -- reading PCD ---------------------------------------------------------------------------


def _split_header(data: bytes) -> tuple[dict[str, list[str]], int]:
    header: dict[str, list[str]] = {}
    offset = 0
    while True:
        end = data.find(b"\n", offset)
        if end < 0 or end > HEADER_LIMIT:
            raise PointCloudError("no DATA line in the first 64 KiB: not a PCD file")
        line = data[offset:end].decode("ascii", errors="replace").strip()
        offset = end + 1
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        header[key.upper()] = values
        if key.upper() == "DATA":
            return header, offset


def _int(header: dict[str, list[str]], key: str, limit: int) -> int:
    try:
        value = int(header[key][0])
    except (KeyError, IndexError, ValueError) as error:
        raise PointCloudError(f"header {key} is missing or not an integer") from error
    if not 0 <= value <= limit:
        raise PointCloudError(f"header {key}={value} is out of range (0..{limit})")
    return value


def _fields(header: dict[str, list[str]]) -> list[Field]:
    names = header.get("FIELDS") or header.get("COLUMNS")
    if not names:
        raise PointCloudError("header has no FIELDS")
    if len(names) > MAX_FIELDS:
        raise PointCloudError(f"{len(names)} fields; at most {MAX_FIELDS} are supported")
    sizes = header.get("SIZE", [])
    types = header.get("TYPE", [])
    counts = header.get("COUNT", ["1"] * len(names))
    if not len(names) == len(sizes) == len(types) == len(counts):
        raise PointCloudError("FIELDS, SIZE, TYPE and COUNT have different lengths")
    fields = []
    for name, size, type_, count in zip(names, sizes, types, counts, strict=True):
        if not (size.isdigit() and count.isdigit()):
            raise PointCloudError(f"field {name}: SIZE and COUNT must be integers")
        if (type_.upper(), int(size)) not in TYPE_CODES:
            raise PointCloudError(f"field {name}: unsupported TYPE {type_} with SIZE {size}")
        if not 1 <= int(count) <= 100_000:
            raise PointCloudError(f"field {name}: COUNT {count} is out of range")
        fields.append(Field(name, int(size), type_.upper(), int(count)))
    if len({f.name for f in fields}) != len(fields):
        raise PointCloudError("field names repeat")
    return fields


def read_pcd(data: bytes, keep_nan: bool = True) -> PointCloud:
    """Parse a PCD file of any DATA kind."""
    header, offset = _split_header(data)
    fields = _fields(header)
    width = _int(header, "WIDTH", MAX_POINTS)
    height = _int(header, "HEIGHT", MAX_POINTS) if "HEIGHT" in header else 1
    points = _int(header, "POINTS", MAX_POINTS) if "POINTS" in header else width * height
    if width * height != points:
        raise PointCloudError(f"WIDTH x HEIGHT = {width * height} but POINTS = {points}")
    if points == 0:
        raise PointCloudError("the cloud has zero points")
    viewpoint = _viewpoint(header)
    cloud = PointCloud(fields, np.empty(0), width, height, viewpoint)
    kind = (header["DATA"] or [""])[0].lower()
    body = data[offset:]
    if kind == "ascii":
        cloud.points = _read_ascii(body, cloud.dtype, fields, points)
    elif kind == "binary":
        cloud.points = _read_binary(body, cloud.dtype, points)
    elif kind == "binary_compressed":
        cloud.points = _read_compressed(body, cloud.dtype, fields, points)
    else:
        raise PointCloudError(f"unknown DATA kind {kind!r} (ascii, binary, binary_compressed)")
    return cloud if keep_nan else drop_nan(cloud)


def _viewpoint(header: dict[str, list[str]]) -> tuple[float, ...]:
    values = header.get("VIEWPOINT", ["0", "0", "0", "1", "0", "0", "0"])
    try:
        viewpoint = tuple(float(v) for v in values)
    except ValueError as error:
        raise PointCloudError("VIEWPOINT must be 7 numbers") from error
    if len(viewpoint) != 7:
        raise PointCloudError("VIEWPOINT must be 7 numbers")
    return viewpoint


def _arrow_type(f: Field) -> object:
    import pyarrow as pa

    return {
        ("F", 4): pa.float32(), ("F", 8): pa.float64(), ("U", 1): pa.uint8(),
        ("U", 2): pa.uint16(), ("U", 4): pa.uint32(), ("U", 8): pa.uint64(), ("I", 1): pa.int8(),
        ("I", 2): pa.int16(), ("I", 4): pa.int32(), ("I", 8): pa.int64(),
    }[(f.type, f.size)]  # fmt: skip


def _read_ascii_arrow(
    body: bytes, dtype: np.dtype[np.void], fields: list[Field], points: int
) -> np.ndarray | None:
    """Arrow's CSV reader, each column parsed straight into its own type (float32 text to
    float32 correctly rounded, 64-bit integers exactly). None when the body is not the plain
    single-space layout PCL writes (comments, runs of spaces): then numpy parses it."""
    import pyarrow as pa
    from pyarrow import csv

    names = [f"{f.name}[{i}]" for f in fields for i in range(f.count)]
    types = {f"{f.name}[{i}]": _arrow_type(f) for f in fields for i in range(f.count)}
    try:
        table = csv.read_csv(
            pa.py_buffer(body),
            read_options=csv.ReadOptions(
                column_names=names, block_size=ARROW_BLOCK, use_threads=ARROW_THREADS
            ),
            parse_options=csv.ParseOptions(delimiter=" ", quote_char=False),
            convert_options=csv.ConvertOptions(
                column_types=types, null_values=[], strings_can_be_null=False
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if table.num_rows != points:
        raise PointCloudError(f"ascii data has {table.num_rows} rows; the header says {points}")
    out = np.empty(points, dtype=dtype)
    for f in fields:
        columns = [table.column(f"{f.name}[{i}]").to_numpy() for i in range(f.count)]
        out[f.name] = np.stack(columns, axis=1) if f.count > 1 else columns[0]
    return out


def _read_ascii(
    body: bytes, dtype: np.dtype[np.void], fields: list[Field], points: int
) -> np.ndarray:
    fast = _read_ascii_arrow(body, dtype, fields, points)
    if fast is not None:
        return fast
    columns = sum(f.count for f in fields)
    exact_64bit = any(f.size == 8 and f.type in "UI" for f in fields)
    try:
        if exact_64bit:  # float64 cannot hold every 64-bit integer: parse column by column
            table = np.loadtxt(io.BytesIO(body), dtype=str, ndmin=2, comments="#")
        else:
            table = np.loadtxt(io.BytesIO(body), dtype=np.float64, ndmin=2, comments="#")
    except ValueError as error:
        raise PointCloudError(
            f"ascii data is not numeric or rows differ in length: {error}"
        ) from error
    if table.shape != (points, columns):
        raise PointCloudError(
            f"ascii data has {table.shape[0]} rows of {table.shape[1] if table.ndim == 2 else 0}"
            f" values; the header says {points} points of {columns}"
        )
    out = np.empty(points, dtype=dtype)
    column = 0
    for f in fields:
        values = table[:, column : column + f.count]
        base = np.dtype(TYPE_CODES[(f.type, f.size)])
        out[f.name] = values.astype(base) if f.count > 1 else values[:, 0].astype(base)
        column += f.count
    return out


def _read_binary(body: bytes, dtype: np.dtype[np.void], points: int) -> np.ndarray:
    needed = points * dtype.itemsize
    if len(body) < needed:
        raise PointCloudError(f"binary data is truncated: {len(body)} bytes, need {needed}")
    return np.frombuffer(body, dtype=dtype, count=points).copy()


def _read_compressed(
    body: bytes, dtype: np.dtype[np.void], fields: list[Field], points: int
) -> np.ndarray:
    if len(body) < 8:
        raise PointCloudError("binary_compressed data is truncated before its sizes")
    compressed, uncompressed = struct.unpack("<II", body[:8])
    if uncompressed != points * dtype.itemsize:
        raise PointCloudError(
            f"binary_compressed: {uncompressed} bytes uncompressed, the header implies "
            f"{points * dtype.itemsize}"
        )
    if len(body) < 8 + compressed:
        raise PointCloudError(f"binary_compressed data is truncated: need {compressed} bytes")
    raw = lzf.decompress(body[8 : 8 + compressed], uncompressed)
    if raw is None or len(raw) != uncompressed:
        raise PointCloudError("binary_compressed data is corrupt (LZF did not decompress)")
    out = np.empty(points, dtype=dtype)
    offset = 0
    for f in fields:
        block = points * f.size * f.count
        column = np.frombuffer(
            raw, dtype=np.dtype(TYPE_CODES[(f.type, f.size)]), count=points * f.count, offset=offset
        )
        out[f.name] = column.reshape(points, f.count) if f.count > 1 else column
        offset += block
    return out


def drop_nan(cloud: PointCloud) -> PointCloud:
    """Without points whose x, y or z is NaN (an unorganized cloud of what remains)."""
    mask = np.ones(len(cloud), dtype=bool)
    for axis in ("x", "y", "z"):
        names = cloud.points.dtype.names or ()
        if axis in names and cloud.points.dtype[axis].kind == "f":
            mask &= ~np.isnan(cloud.points[axis])
    kept = cloud.points[mask]
    return PointCloud(cloud.fields, kept, len(kept), 1, cloud.viewpoint)


# -- other inputs ----------------------------------------------------------------------------


def read_kitti_bin(data: bytes) -> PointCloud:
    """KITTI velodyne scans: float32 x, y, z, reflectance per point, no header."""
    if not data or len(data) % 16:
        raise PointCloudError(f"{len(data)} bytes is not a whole number of 16-byte KITTI points")
    fields = [Field(name, 4, "F", 1) for name in ("x", "y", "z", "intensity")]
    dtype = np.dtype([(f.name, "<f4") for f in fields])
    points = np.frombuffer(data, dtype=dtype).copy()
    return PointCloud(fields, points, len(points))


def read_las(data: bytes) -> PointCloud:
    """LAS/LAZ via laspy: x, y, z as float64 (their scaled integers, exactly), then every other
    dimension with its own type."""
    import laspy

    try:
        las = laspy.read(io.BytesIO(data))
    except Exception as error:  # laspy raises several unrelated types for a bad file
        raise PointCloudError(f"not a readable LAS/LAZ file: {error}") from error
    if len(las.points) == 0:
        raise PointCloudError("the cloud has zero points")
    fields = [Field(axis, 8, "F", 1) for axis in ("x", "y", "z")]
    columns: dict[str, np.ndarray] = {a: np.asarray(las[a], dtype=np.float64) for a in "xyz"}
    for name in las.point_format.dimension_names:
        if name.upper() in ("X", "Y", "Z"):
            continue
        values = np.asarray(las[name])
        kind = {"f": "F", "u": "U", "i": "I", "b": "U"}.get(values.dtype.kind)
        if kind is None or values.ndim != 1:
            continue
        values = values.astype(np.uint8) if values.dtype.kind == "b" else values
        fields.append(Field(name, values.dtype.itemsize, kind, 1))
        columns[name] = values
    cloud = PointCloud(fields, np.empty(0), len(las.points))
    points = np.empty(len(las.points), dtype=cloud.dtype)
    for f in fields:
        points[f.name] = columns[f.name]
    cloud.points = points
    return cloud


def read_ply(data: bytes) -> PointCloud:
    """PLY via plyfile: the `vertex` element's scalar properties, each with its own type
    (big-endian files are stored little-endian, as PCD is). Faces and list properties, which
    a point cloud has no use for, are left out."""
    import plyfile

    try:
        ply = plyfile.PlyData.read(io.BytesIO(data))
        vertices = ply["vertex"].data
    except KeyError as error:
        raise PointCloudError("the PLY file has no vertex element") from error
    except Exception as error:  # plyfile raises its own and numpy's errors for a bad file
        raise PointCloudError(f"not a readable PLY file: {error}") from error
    if len(vertices) == 0:
        raise PointCloudError("the cloud has zero points")
    names = vertices.dtype.names or ()
    if not {"x", "y", "z"} <= set(names):
        raise PointCloudError("the PLY vertices have no x, y, z properties")
    fields = []
    for name in names:
        kind = {"f": "F", "u": "U", "i": "I"}.get(vertices.dtype[name].kind)
        if kind is not None and vertices.dtype[name].shape == ():
            fields.append(Field(name, vertices.dtype[name].itemsize, kind, 1))
    cloud = PointCloud(fields, np.empty(0), len(vertices))
    points = np.empty(len(vertices), dtype=cloud.dtype)
    for f in fields:
        points[f.name] = vertices[f.name]
    cloud.points = points
    return cloud


def read_any(data: bytes, name: str, keep_nan: bool = True) -> PointCloud:
    suffix = name.lower().rsplit(".", 1)[-1]
    if suffix == "bin":
        cloud = read_kitti_bin(data)
    elif suffix in ("las", "laz"):
        cloud = read_las(data)
    elif suffix == "ply":
        cloud = read_ply(data)
    else:
        cloud = read_pcd(data)
    return cloud if keep_nan else drop_nan(cloud)


# -- writing PCD -----------------------------------------------------------------------------


def _header(cloud: PointCloud, kind: PcdFormat) -> bytes:
    f = cloud.fields
    lines = [
        "# .PCD v0.7 - Point Cloud Data file format",
        "VERSION 0.7",
        "FIELDS " + " ".join(x.name for x in f),
        "SIZE " + " ".join(str(x.size) for x in f),
        "TYPE " + " ".join(x.type for x in f),
        "COUNT " + " ".join(str(x.count) for x in f),
        f"WIDTH {cloud.width}",
        f"HEIGHT {cloud.height}",
        "VIEWPOINT " + " ".join(f"{v:g}" for v in cloud.viewpoint),
        f"POINTS {len(cloud)}",
        f"DATA {kind}",
    ]
    return ("\n".join(lines) + "\n").encode("ascii")


def write_pcd(cloud: PointCloud, kind: PcdFormat = "binary_compressed") -> bytes:
    """Standard PCD bytes that PCL and open3d read (binary or binary_compressed)."""
    points = np.ascontiguousarray(cloud.points, dtype=cloud.dtype)
    if kind == "binary":
        return _header(cloud, kind) + points.tobytes()
    if kind != "binary_compressed":
        raise PointCloudError(f"writing {kind!r} is not supported (binary, binary_compressed)")
    columns = b"".join(np.ascontiguousarray(points[f.name]).tobytes() for f in cloud.fields)
    # LZF's worst case grows data by 1/16 + a little; give it that room so it never fails.
    packed: bytes | None = lzf.compress(columns, len(columns) + len(columns) // 16 + 64)
    if packed is None:
        raise PointCloudError("LZF compression failed")
    return _header(cloud, kind) + struct.pack("<II", len(packed), len(columns)) + packed
