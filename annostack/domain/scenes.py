"""Scenes and frames: which files of an archive (or an S3 prefix) make up which sequence.

A **scene** is an ordered sequence of **frames**; a frame groups one point cloud, zero or more
camera images and their calibration, with its index in the scene. `plan_scenes` reads only
entry names (nothing is opened), so it runs before, during or after the files are stored;
`calibrations_of` then reads the few calibration files a plan names, through a callback.

Layouts understood (an optional root folder, and any folders above a scene, are allowed):

* **Xtreme1**: `[scene_N/]lidar_point_cloud_0/<s>.pcd`, `camera_image_K/<s>.jpg`,
  `camera_config/<s>.json` (calibration), `result/<s>.json` (annotations, imported).
* **KITTI object**: `velodyne/<s>.bin`, `image_2/<s>.png` (and `image_3`), `calib/<s>.txt`,
  `label_2/<s>.txt` (annotations, imported with the frame's calib file, which
  `calibrations_of` hands on read: `FrameCalibration.kitti`).
* **KITTI raw**: `<drive>/velodyne_points/data/<s>.bin`, `<drive>/image_0N/data/<s>.png`,
  `calib_cam_to_cam.txt` and `calib_velo_to_cam.txt` beside the drive folder (or in it). Raw
  drives have no `label_2`: their annotations are a drive's `tracklet_labels.xml`, another
  format, not read.

Frames are matched by file stem and ordered naturally (`2` before `10`); scenes too.

Nothing bad stops the rest: each entry that cannot take its place is a `Problem` with the
reason — a frame without a point cloud, a result or labels whose frame has no point cloud,
two files of one stem in one folder (both left out: which one was meant is not ours to
guess), a second LiDAR, a name that is not UTF-8. Entries that belong to no layout are not
problems: they stay ordinary items.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import PurePosixPath

import orjson

from annostack.domain.calibration import (
    CameraCalibration,
    kitti_object_camera,
    kitti_raw_camera,
    parse_xtreme1_config,
)
from annostack.domain.errors import Invalid
from annostack.domain.kitti_calib import CalibEntries, read_calib

MAX_CALIBRATION_BYTES = 1 * 2**20  # a camera config of 12 cameras is a few KiB
DEFAULT_SCENE = "scene"  # the name of a scene whose files sit at the top of the archive
RAW_CALIB_FILES = ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt")
NUMBER = re.compile(r"([0-9]+)")


class Layout(StrEnum):
    XTREME1 = "xtreme1"
    KITTI_OBJECT = "kitti-object"
    KITTI_RAW = "kitti-raw"


class Role(StrEnum):
    POINT_CLOUD = "point-cloud"
    IMAGE = "image"
    CALIBRATION = "calibration"  # per frame: an Xtreme1 camera config, a KITTI object calib
    RESULT = "result"  # annotations to import (Xtreme1)
    LABEL = "label"  # annotations to import (KITTI object), with the frame's calibration


@dataclass(frozen=True)
class Problem:
    """An entry that could not take its place in a scene, and why."""

    name: str
    reason: str


@dataclass(frozen=True)
class PlannedImage:
    camera: str  # its folder: camera_image_0, image_2, image_02
    name: str


@dataclass(frozen=True)
class PlannedFrame:
    index: int
    stem: str
    point_cloud: str
    images: tuple[PlannedImage, ...] = ()
    calibration: str | None = None
    result: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class PlannedScene:
    name: str
    layout: Layout
    frames: tuple[PlannedFrame, ...]
    calibration: tuple[str, ...] = ()  # scene-wide files (KITTI raw)


@dataclass(frozen=True)
class ScenePlan:
    scenes: tuple[PlannedScene, ...]
    problems: tuple[Problem, ...]


# -- recognising entries -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Placed:
    """One entry's place: its scene (the folders above its layout folder) and slot."""

    scene: str
    layout: Layout
    role: Role
    folder: str  # the sensor folder (lidar_point_cloud_0, camera_image_1, image_02, ...)
    stem: str
    name: str


_XTREME1 = (
    (re.compile(r"lidar_point_cloud_[0-9]+"), Role.POINT_CLOUD, (".pcd", ".bin", ".ply")),
    (re.compile(r"camera_image_[0-9]+"), Role.IMAGE, (".jpg", ".jpeg", ".png", ".bmp", ".webp")),
    (re.compile(r"camera_config"), Role.CALIBRATION, (".json",)),
    (re.compile(r"result"), Role.RESULT, (".json",)),
)
_KITTI_OBJECT = (
    (re.compile(r"velodyne"), Role.POINT_CLOUD, (".bin",)),
    (re.compile(r"image_[0-9]"), Role.IMAGE, (".png", ".jpg")),
    (re.compile(r"calib"), Role.CALIBRATION, (".txt",)),
    (re.compile(r"label_[0-9]"), Role.LABEL, (".txt",)),
)
_KITTI_RAW = (
    (re.compile(r"velodyne_points"), Role.POINT_CLOUD, (".bin", ".txt")),
    (re.compile(r"image_[0-9]{2}"), Role.IMAGE, (".png", ".jpg")),
)


def _place(name: str) -> _Placed | None:
    path = PurePosixPath(name)
    parts, suffix, stem = path.parts, path.suffix.lower(), path.stem
    if len(parts) >= 3 and parts[-2] == "data":
        found = _slot(_KITTI_RAW, parts[-3], suffix)
        if found is not None and not (found is Role.POINT_CLOUD and suffix == ".txt"):
            return _Placed(_scene_of(parts[:-3]), Layout.KITTI_RAW, found, parts[-3], stem, name)
    if len(parts) < 2:
        return None
    for layout, folders in ((Layout.XTREME1, _XTREME1), (Layout.KITTI_OBJECT, _KITTI_OBJECT)):
        role = _slot(folders, parts[-2], suffix)
        if role is not None:
            return _Placed(_scene_of(parts[:-2]), layout, role, parts[-2], stem, name)
    return None


def _slot(
    folders: tuple[tuple[re.Pattern[str], Role, tuple[str, ...]], ...], folder: str, suffix: str
) -> Role | None:
    for pattern, role, suffixes in folders:
        # fullmatch: `$` would also match before a trailing newline in a folder's name.
        if pattern.fullmatch(folder) and suffix in suffixes:
            return role
    return None


def _scene_of(parts: tuple[str, ...]) -> str:
    return "/".join(parts)


def natural_key(text: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key putting `2` before `10` (and `frame2` before `frame10`)."""
    return tuple(
        (0, int(chunk), "") if chunk.isdigit() else (1, 0, chunk)
        for chunk in NUMBER.split(text)
        if chunk
    )


def _utf8(name: str | bytes) -> str | None:
    """The name as text; None if it is not UTF-8 (a tar keeps such bytes as surrogates)."""
    try:
        return name.decode("utf-8") if isinstance(name, bytes) else name.encode().decode()
    except UnicodeError:
        return None


# -- planning ----------------------------------------------------------------------------------


@dataclass
class _Slots:
    """The entries of one scene, by (folder, stem); several in a slot are duplicates."""

    layout: Layout
    entries: dict[tuple[Role, str, str], list[str]] = field(
        default_factory=lambda: defaultdict(list)
    )


def plan_scenes(names: Iterable[str | bytes]) -> ScenePlan:
    """The scenes and frames the entry names describe, and each entry that does not fit."""
    scenes: dict[str, _Slots] = {}
    calibration_dirs: dict[str, list[str]] = defaultdict(list)
    problems: list[Problem] = []
    for raw in names:
        name = _utf8(raw)
        if name is None:
            shown = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else repr(raw)
            problems.append(Problem(shown, "the name is not UTF-8; rename it and import again"))
            continue
        path = PurePosixPath(name)
        if path.name in RAW_CALIB_FILES:
            calibration_dirs[str(path.parent) if path.parent.parts else ""].append(name)
            continue
        placed = _place(name)
        if placed is None:
            continue
        slots = scenes.setdefault(placed.scene, _Slots(placed.layout))
        if slots.layout is not placed.layout:
            problems.append(
                Problem(name, f"mixes {placed.layout} files into a {slots.layout} scene")
            )
            continue
        slots.entries[(placed.role, placed.folder, placed.stem)].append(name)
    planned = []
    for scene in sorted(scenes, key=natural_key):
        built, found = _scene(scene, scenes[scene], calibration_dirs)
        problems.extend(found)
        if built is not None:
            planned.append(built)
    return ScenePlan(tuple(planned), tuple(problems))


def _scene(
    scene: str, slots: _Slots, calibration_dirs: Mapping[str, list[str]]
) -> tuple[PlannedScene | None, list[Problem]]:
    unique, problems = _without_duplicates(slots)
    by_stem: dict[str, dict[tuple[Role, str], str]] = defaultdict(dict)
    for (role, folder, stem), name in unique.items():
        by_stem[stem][(role, folder)] = name
    frames: list[PlannedFrame] = []
    for stem in sorted(by_stem, key=natural_key):
        frame, found = _frame(len(frames), stem, by_stem[stem])
        problems.extend(found)
        if frame is not None:
            frames.append(frame)
    if not frames:
        return None, problems
    name = scene or DEFAULT_SCENE
    calibration = _raw_calibration(scene) if slots.layout is Layout.KITTI_RAW else ()
    files = tuple(f for d in calibration for f in calibration_dirs.get(d, []))
    return PlannedScene(name, slots.layout, tuple(frames), _latest_per_file(files)), problems


def _raw_calibration(scene: str) -> tuple[str, ...]:
    """Where a KITTI raw drive's calib files may be: beside the drive folder, or in it."""
    parent = str(PurePosixPath(scene).parent) if "/" in scene else ""
    return (parent, scene) if parent != scene else (scene,)


def _latest_per_file(files: tuple[str, ...]) -> tuple[str, ...]:
    """One file of each calib name: the one inside the drive wins over the one beside it."""
    chosen = {PurePosixPath(f).name: f for f in files}
    return tuple(chosen[name] for name in RAW_CALIB_FILES if name in chosen)


def _without_duplicates(slots: _Slots) -> tuple[dict[tuple[Role, str, str], str], list[Problem]]:
    unique: dict[tuple[Role, str, str], str] = {}
    problems: list[Problem] = []
    for slot, names in slots.entries.items():
        if len(names) == 1:
            unique[slot] = names[0]
            continue
        others = ", ".join(sorted(names))
        problems.extend(
            Problem(name, f"duplicate stem {slot[2]!r} in {slot[1]}/ ({others}): none is used")
            for name in sorted(names)
        )
    return unique, problems


def _frame(
    index: int, stem: str, files: dict[tuple[Role, str], str]
) -> tuple[PlannedFrame | None, list[Problem]]:
    clouds = sorted((folder for role, folder in files if role is Role.POINT_CLOUD), key=natural_key)
    if not clouds:
        return None, [
            Problem(name, _no_point_cloud(role, stem)) for (role, _), name in files.items()
        ]
    problems = [
        Problem(files[(Role.POINT_CLOUD, extra)], f"frame {stem!r} already has a point cloud "
                f"({files[(Role.POINT_CLOUD, clouds[0])]}); a frame holds one")
        for extra in clouds[1:]
    ]  # fmt: skip
    images = sorted(
        (
            PlannedImage(folder, name)
            for (role, folder), name in files.items()
            if role is Role.IMAGE
        ),
        key=lambda image: natural_key(image.camera),
    )
    frame = PlannedFrame(
        index=index,
        stem=stem,
        point_cloud=files[(Role.POINT_CLOUD, clouds[0])],
        images=tuple(images),
        calibration=_one(files, Role.CALIBRATION),
        result=_one(files, Role.RESULT),
        label=next((n for (r, f), n in sorted(files.items()) if r is Role.LABEL), None),
    )
    return frame, problems


def _one(files: dict[tuple[Role, str], str], role: Role) -> str | None:
    return next((name for (found, _), name in files.items() if found is role), None)


_ANNOTATIONS = {Role.RESULT: "a result", Role.LABEL: "labels"}  # files to import, in a reason


def _no_point_cloud(role: Role, stem: str) -> str:
    if role in _ANNOTATIONS:
        return f"{_ANNOTATIONS[role]} for frame {stem!r}, which has no point cloud: not imported"
    return f"frame {stem!r} has no point cloud: the file is kept, but in no scene"


# -- calibration -------------------------------------------------------------------------------

Read = Callable[[str], bytes]


@dataclass(frozen=True)
class FrameCalibration:
    """The calibration of each camera of a frame that has one, and what could not be read."""

    cameras: dict[str, CameraCalibration]
    problems: tuple[Problem, ...] = ()
    # A KITTI object frame's calib file as read (also when a camera in it is misshapen): what
    # its labels are converted with, so the file is read once. None for the other layouts.
    kitti: CalibEntries | None = None


def calibrations_of(scene: PlannedScene, read: Read) -> list[FrameCalibration]:
    """Each frame's camera calibrations, in frame order; a bad file is a problem, not a stop."""
    if scene.layout is Layout.KITTI_RAW:
        return _raw_calibrations(scene, read)
    return [_frame_calibration(scene.layout, frame, read) for frame in scene.frames]


def _frame_calibration(layout: Layout, frame: PlannedFrame, read: Read) -> FrameCalibration:
    name = frame.calibration
    if name is None:
        return FrameCalibration({})
    try:
        if layout is Layout.XTREME1:
            return _xtreme1_frame(frame, _json(read(name)))
        entries = read_calib(_text(read(name)))
    except Invalid as error:
        return FrameCalibration({}, (_unreadable(name, error),))
    return _kitti_object_frame(frame, name, entries)


def _kitti_object_frame(frame: PlannedFrame, name: str, entries: CalibEntries) -> FrameCalibration:
    """Each camera of a KITTI object frame, and its calib file's entries for its labels."""
    try:
        cameras = {image.camera: _kitti_object(entries, image.camera) for image in frame.images}
    except Invalid as error:
        return FrameCalibration({}, (_unreadable(name, error),), kitti=entries)
    return FrameCalibration(cameras, kitti=entries)


def _unreadable(name: str, error: Invalid) -> Problem:
    return Problem(name, f"not a camera config: {error}")


def _xtreme1_frame(frame: PlannedFrame, document: object) -> FrameCalibration:
    cameras = parse_xtreme1_config(document)
    # Xtreme1 pairs the i-th config with the i-th camera folder, in number order.
    paired = dict(zip((image.camera for image in frame.images), cameras, strict=False))
    if len(cameras) == len(frame.images):
        return FrameCalibration(paired)
    assert frame.calibration is not None
    reason = (
        f"describes {len(cameras)} camera(s) but frame {frame.stem!r} has {len(frame.images)} "
        "image(s); they are paired in camera order, the rest have no calibration"
    )
    return FrameCalibration(paired, (Problem(frame.calibration, reason),))


def _kitti_object(entries: CalibEntries, camera: str) -> CameraCalibration:
    return kitti_object_camera(entries, int(camera.removeprefix("image_")))


def _raw_calibrations(scene: PlannedScene, read: Read) -> list[FrameCalibration]:
    files = {PurePosixPath(name).name: name for name in scene.calibration}
    cameras = sorted({image.camera for frame in scene.frames for image in frame.images})
    missing = [name for name in RAW_CALIB_FILES if name not in files]
    if not cameras:
        return [FrameCalibration({}) for _ in scene.frames]
    if missing:
        reason = f"no {', '.join(missing)} beside or in the drive: its images have no calibration"
        return _once(scene, Problem(scene.name, reason))
    read_files = _raw_calib_files(files, read)
    if isinstance(read_files, Problem):
        return _once(scene, read_files)
    cam_to_cam, velo_to_cam = read_files
    try:
        known = {c: kitti_raw_camera(cam_to_cam, velo_to_cam, int(c[-2:])) for c in cameras}
    except Invalid as error:  # the reason names the entry (R, T: velo_to_cam; the rest: cam_to_cam)
        return _once(scene, Problem(files["calib_cam_to_cam.txt"], f"not a calibration: {error}"))
    return [
        FrameCalibration({image.camera: known[image.camera] for image in frame.images})
        for frame in scene.frames
    ]


def _raw_calib_files(
    files: Mapping[str, str], read: Read
) -> tuple[CalibEntries, CalibEntries] | Problem:
    """A drive's cam_to_cam and velo_to_cam entries, or a problem naming the file that is bad."""
    entries = []
    for name in RAW_CALIB_FILES:  # one at a time, so that the problem names the bad file
        try:
            entries.append(read_calib(_text(read(files[name]))))
        except Invalid as error:
            return Problem(files[name], f"not a calibration: {error}")
    cam_to_cam, velo_to_cam = entries
    return cam_to_cam, velo_to_cam


def _once(scene: PlannedScene, problem: Problem) -> list[FrameCalibration]:
    """No calibration for any frame, and the problem reported once (with the first)."""
    return [FrameCalibration({}, (problem,) if i == 0 else ()) for i, _ in enumerate(scene.frames)]


def _json(body: bytes) -> object:
    if len(body) > MAX_CALIBRATION_BYTES:
        raise Invalid(f"{len(body)} bytes; a camera config is at most 1 MiB")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise Invalid(f"not JSON: {error}") from None


def _text(body: bytes) -> str:
    if len(body) > MAX_CALIBRATION_BYTES:
        raise Invalid(f"{len(body)} bytes; a calib file is at most 1 MiB")
    try:
        return body.decode()
    except UnicodeDecodeError:
        raise Invalid("not UTF-8 text") from None
