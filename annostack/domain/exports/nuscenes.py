"""nuScenes-devkit tables (`v1.0-annostack/*.json`) of a dataset's 3D boxes and their tracks.

The export is the devkit's metadata folder: the 13 tables `NuScenes(version="v1.0-annostack",
dataroot=...)` loads (docs/schema_nuscenes.md of nutonomy/nuscenes-devkit), with its field
names. The data files are not copied: a `sample_data` names the dataset's own item (its name
in the dataset), so the folder goes next to the dataset's files.

What becomes what:

| annostack                      | nuScenes                                                        |
|--------------------------------|-----------------------------------------------------------------|
| the export                     | one `log` (no vehicle, date or place known) and its `map`       |
| a scene                        | a `scene`                                                       |
| a frame                        | a `sample`, its identity `ego_pose`, a LIDAR_TOP `sample_data`  |
| a calibrated camera of a frame | a `sample_data` of its `sensor`, and a `calibrated_sensor`      |
| a 3D box                       | a `sample_annotation`                                           |
| boxes of one track in a scene  | one `instance`, its annotations linked in frame order           |
| a box without a track          | an `instance` of its own                                        |
| a class (mapped by `classes`)  | a `category`                                                    |

Coordinates and rotations: domain.exports.nuscenes_geometry (boxes stay in the LiDAR frame).

* **Tokens** are 32 hex digits, a hash (BLAKE2b, 16 bytes) of the record's table and of the
  ids it stands for: the scene's row id, the frame's point-cloud item id, the annotation
  source and object id, the track id. The same data gives the same tokens in every export
  (and two datasets of a tenant never share one); nothing depends on the order of a run.
* **Instances** belong to one scene (as in nuScenes: tracks are not followed across scenes)
  and one annotation source (a track id of one source says nothing of another's), and have
  one category: a track whose class changes becomes one instance per class. A second box
  of a track in the same frame gets an instance of its own and is reported.
* **Timestamps** (microseconds) are the frame's own if it has one (UTC when the database
  keeps no zone). Otherwise frame i of the scene of row id s is at s days + i x 0.5 s:
  0.5 s is nuScenes' keyframe rate, and a day per scene gives every scene its own start
  (the devkit's `list_scenes` sorts scenes by it and fails on a tie) and room for 172,800
  frames, without depending on which other scenes are exported.
* **What nuScenes has and annostack does not**: `attribute.json` is empty (nuScenes'
  attributes are a fixed vocabulary; an object's `attributes` are left out and reported);
  `visibility.json` is nuScenes' four levels, which no annotation names (its
  `visibility_token` is "", the schema's "not annotated"); `num_lidar_pts` is Xtreme1's
  kept `pointN` where there is one, else -1 ("not counted": 0 would make the devkit's
  evaluation drop the box as empty); `num_radar_pts` is 0 (there is no radar); the map
  record has no mask file (`filename` ""): the devkit loads it, and masks are not
  annotations. Cameras without calibration get no sample_data (nothing could place them).
  Width and height of an image are its calibration's, else 0.
* **Class to category**: `classes` (class id or name -> category name, e.g. vehicle.car)
  first, else the class's own name (Xtreme1's `className`, else the classId). The mapping's
  categories are written first, in its order, so their `index` is the same in every export;
  others follow as met. An object with no class is skipped (an instance needs a category),
  as is every object that is not a 3D box.

**Bounded memory.** The tables are global (instances span frames, every table is one JSON
array), so each is written record by record to a spool (a temporary file of the caller's)
and the spools become the archive's entries at the end. A record is written once its links
are known: a sample, a camera's sample_data and a track's annotation wait only for the next
one of their chain (`_Chain`), an instance and a scene for the end of their scene. So what
is held is one record per open chain and one small state per track of the current scene,
never the scene's annotations, let alone the dataset's; categories and sensors (a few per
class and camera) are held for the whole export.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import orjson

from annostack.domain.annotations import AnnotationDocument, Box3D, Box3DObject
from annostack.domain.calibration import CameraCalibration, FrameCamera
from annostack.domain.exports.archive import Body
from annostack.domain.exports.coco import class_name
from annostack.domain.exports.kitti import LEVEL
from annostack.domain.exports.nuscenes_geometry import (
    IDENTITY,
    ORIGIN,
    camera_intrinsic,
    camera_pose,
    nuscenes_size,
    yaw_quaternion,
)
from annostack.domain.exports.report import Skip

VERSION = "v1.0-annostack"  # the folder the devkit is pointed at with version=
TABLES = ("attribute", "calibrated_sensor", "category", "ego_pose", "instance", "log", "map",
          "sample", "sample_annotation", "sample_data", "scene", "sensor",
          "visibility")  # fmt: skip
LIDAR = "LIDAR_TOP"
SAMPLE_SPACING = timedelta(microseconds=500_000)  # nuScenes' keyframes come at 2 Hz
SCENE_SPACING = timedelta(days=1)  # between the starts of two scenes without timestamps
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NOT_COUNTED = -1  # num_lidar_pts of a box whose points were not counted
VISIBILITY = [  # nuScenes' own table, tokens included, as tools keyed on them expect
    {"token": str(n), "level": level, "description": f"visibility of whole object is between "
     f"{low} and {high}%"} for n, (level, low, high) in enumerate(
        (("v0-40", 0, 40), ("v40-60", 40, 60), ("v60-80", 60, 80), ("v80-100", 80, 100)), 1)
]  # fmt: skip
Record = dict[str, Any]
TrackKey = tuple[str, str, str]  # source, track id, category token
Spool = Callable[[], IO[bytes]]
NO_CLASS = "the object has no class (a nuScenes instance needs a category)"
TWICE = "a second object of this id in the document: its first is written"


def token(table: str, *ids: object) -> str:
    """32 hex digits naming one record: a hash of its table and the ids it stands for."""
    return hashlib.blake2b(orjson.dumps([table, *ids]), digest_size=16).hexdigest()


LOG, MAP = token("log"), token("map")
LIDAR_SENSOR = token("calibrated_sensor", LIDAR)


def sample_timestamp(when: datetime | None, scene_id: int, index: int) -> int:
    """Microseconds since 1970: the frame's time, else its place on its scene's timeline."""
    if when is None:
        when = EPOCH + scene_id * SCENE_SPACING + index * SAMPLE_SPACING
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True)
class NuScenesFrame:
    """One frame of a scene, as the export needs it (frames come scene by scene, in order)."""

    scene_id: int  # the scene's row id: scene and track tokens are made from it
    scene: str  # the scene's name
    index: int  # the frame's position in its scene
    item_id: int  # its point cloud's item id: sample tokens are made from it
    lidar_file: str  # the point cloud's item name: LIDAR_TOP's filename
    timestamp: datetime | None = None
    cameras: tuple[FrameCamera, ...] = ()


@dataclass(frozen=True)
class FrameOutcome:
    exported: int
    skipped: tuple[Skip, ...]
    lossy: tuple[Skip, ...]


class _Table:
    """One table: a JSON array, written record by record to its spool."""

    def __init__(self, spool: IO[bytes]) -> None:
        self.spool, self.count = spool, 0
        spool.write(b"[")

    def add(self, record: Record) -> None:
        self.spool.write((b"," if self.count else b"") + orjson.dumps(record))
        self.count += 1

    def finish(self) -> IO[bytes]:
        self.spool.write(b"]")
        return self.spool


class _Chain:
    """Records linked by `prev`/`next` in the order appended. Each is written once the next
    one is known, so only the last is held; `close` writes it."""

    def __init__(self, table: _Table) -> None:
        self.table = table
        self.first = self.last = ""
        self.count = 0
        self._waiting: Record | None = None

    def append(self, record: Record) -> None:
        if self._waiting is None:
            self.first = record["token"]
        else:
            self._waiting["next"], record["prev"] = record["token"], self._waiting["token"]
            self.table.add(self._waiting)
        self._waiting, self.last = record, record["token"]
        self.count += 1

    def close(self) -> None:
        if self._waiting is not None:
            self.table.add(self._waiting)
            self._waiting = None


@dataclass
class _Instance:
    token: str
    category: str  # its category's token
    annotations: _Chain

    def record(self) -> Record:
        return {"token": self.token, "category_token": self.category,
                "nbr_annotations": self.annotations.count,
                "first_annotation_token": self.annotations.first,
                "last_annotation_token": self.annotations.last}  # fmt: skip


@dataclass
class _Scene:
    """What the current scene holds until its last frame: its chains and tracks."""

    id: int
    name: str
    samples: _Chain
    channels: dict[str, _Chain] = field(default_factory=dict)  # sample_data, per sensor
    tracks: dict[TrackKey, _Instance] = field(default_factory=dict)
    calibrations: set[str] = field(default_factory=set)  # camera calibrated_sensors written

    @property
    def token(self) -> str:
        return token("scene", self.id)


@dataclass(frozen=True)
class _Sample:
    token: str
    ego_pose: str
    timestamp: int
    item_id: int


class NuScenesWriter:
    """Writes the tables of frames added scene by scene; `close` gives the archive entries.

    `spool()` gives a new writable, readable, seekable file for each table (the caller owns
    and closes them, after the entries are written)."""

    def __init__(self, spool: Spool, classes: Mapping[str, str] | None = None) -> None:
        self.tables = {name: _Table(spool()) for name in TABLES}
        self.classes = classes or {}
        self.categories: dict[str, str] = {}  # name -> token
        self.sensors: set[str] = set()  # channels written
        self.scene: _Scene | None = None
        for category in self.classes.values():
            self._category(category)
        self._sensor(LIDAR, "lidar")
        self.tables["calibrated_sensor"].add(
            _calibrated_sensor(LIDAR_SENSOR, LIDAR, list(ORIGIN), list(IDENTITY), [])
        )

    def add(
        self, frame: NuScenesFrame, documents: Sequence[tuple[str, AnnotationDocument]]
    ) -> FrameOutcome:
        """One frame, with its documents by source; what was not written, and why."""
        scene = self._scene_of(frame)
        sample = self._sample(scene, frame)
        exported, skipped, lossy = 0, [], []
        in_frame: set[TrackKey] = set()  # tracks that have a box in this frame already
        for source, document in documents:
            ids: set[str] = set()
            for obj in document.objects:
                if not isinstance(obj, Box3DObject):
                    skipped.append(Skip(obj.id, obj.type, "nuScenes annotates 3D boxes", True))
                    continue
                name = self._category_of(obj)
                if name is None or obj.id in ids:
                    skipped.append(Skip(obj.id, obj.type, NO_CLASS if name is None else TWICE))
                    continue
                ids.add(obj.id)
                category = self._category(name)
                losses = self._annotate(scene, sample, source, obj, category, in_frame)
                exported += 1
                if losses:
                    lossy.append(Skip(obj.id, obj.type, "; ".join(losses)))
        return FrameOutcome(exported, tuple(skipped), tuple(lossy))

    def close(self) -> list[tuple[str, Body]]:
        """Ends the last scene; each table's entry (its spool, which the archive reads from
        its start)."""
        if self.scene is not None:
            self._end(self.scene)
        self.tables["log"].add({"token": LOG, "logfile": "", "vehicle": "", "date_captured": "",
                                "location": ""})  # fmt: skip
        self.tables["map"].add({"token": MAP, "log_tokens": [LOG], "category": "semantic_prior",
                                "filename": ""})  # fmt: skip
        for record in VISIBILITY:
            self.tables["visibility"].add(record)
        return [(f"{VERSION}/{name}.json", table.finish()) for name, table in self.tables.items()]

    # -- scenes, samples and sensor data ---------------------------------------------------

    def _scene_of(self, frame: NuScenesFrame) -> _Scene:
        if self.scene is not None and self.scene.id == frame.scene_id:
            return self.scene
        if self.scene is not None:
            self._end(self.scene)
        self.scene = _Scene(frame.scene_id, frame.scene, _Chain(self.tables["sample"]))
        return self.scene

    def _end(self, scene: _Scene) -> None:
        scene.samples.close()
        for chain in scene.channels.values():
            chain.close()
        for instance in scene.tracks.values():
            self._finish(instance)
        self.tables["scene"].add({
            "token": scene.token, "log_token": LOG, "nbr_samples": scene.samples.count,
            "first_sample_token": scene.samples.first, "last_sample_token": scene.samples.last,
            "name": scene.name, "description": "",
        })  # fmt: skip

    def _sample(self, scene: _Scene, frame: NuScenesFrame) -> _Sample:
        when = sample_timestamp(frame.timestamp, frame.scene_id, frame.index)
        sample = _Sample(token("sample", frame.item_id), token("ego_pose", frame.item_id), when,
                         frame.item_id)  # fmt: skip
        scene.samples.append({"token": sample.token, "timestamp": when, "prev": "", "next": "",
                              "scene_token": scene.token})  # fmt: skip
        self.tables["ego_pose"].add({"token": sample.ego_pose, "translation": list(ORIGIN),
                                     "rotation": list(IDENTITY), "timestamp": when})  # fmt: skip
        self._sample_data(scene, sample, LIDAR, LIDAR_SENSOR, frame.lidar_file)
        for camera in frame.cameras:
            if camera.calibration is not None:
                sensor = self._camera_sensor(scene, camera.camera, camera.calibration)
                size = (camera.calibration.width or 0, camera.calibration.height or 0)
                self._sample_data(scene, sample, camera.camera, sensor, camera.file_name, size)
        return sample

    def _sample_data(
        self, scene: _Scene, sample: _Sample, channel: str, calibrated_sensor: str,
        file_name: str, size: tuple[int, int] = (0, 0),
    ) -> None:  # fmt: skip
        chain = scene.channels.setdefault(channel, _Chain(self.tables["sample_data"]))
        chain.append({
            "token": token("sample_data", sample.item_id, channel), "sample_token": sample.token,
            "ego_pose_token": sample.ego_pose, "calibrated_sensor_token": calibrated_sensor,
            "timestamp": sample.timestamp, "fileformat": _file_format(file_name),
            "is_key_frame": True, "height": size[1], "width": size[0], "filename": file_name,
            "prev": "", "next": "",
        })  # fmt: skip

    def _camera_sensor(self, scene: _Scene, channel: str, calibration: CameraCalibration) -> str:
        """The calibrated_sensor of a camera in this scene (written once per calibration)."""
        values = calibration.model_dump(mode="json")
        sensor = token("calibrated_sensor", scene.id, channel, values)
        if sensor not in scene.calibrations:
            scene.calibrations.add(sensor)
            self._sensor(channel, "camera")
            translation, rotation = camera_pose(calibration.extrinsics)
            intrinsic = camera_intrinsic(calibration.intrinsics)
            self.tables["calibrated_sensor"].add(
                _calibrated_sensor(sensor, channel, translation, rotation, intrinsic)
            )
        return sensor

    def _sensor(self, channel: str, modality: str) -> None:
        if channel not in self.sensors:
            self.sensors.add(channel)
            self.tables["sensor"].add({"token": token("sensor", channel), "channel": channel,
                                       "modality": modality})  # fmt: skip

    # -- annotations -------------------------------------------------------------------------

    def _annotate(
        self, scene: _Scene, sample: _Sample, source: str, obj: Box3DObject, category: str,
        in_frame: set[TrackKey],
    ) -> list[str]:  # fmt: skip
        """Writes (or chains) one box's annotation; what was lost on the way."""
        annotation = token("sample_annotation", sample.item_id, source, obj.id)
        losses = _losses(obj)
        key = None if obj.track_id is None else (source, str(obj.track_id), category)
        if key in in_frame:
            losses.insert(0, f"track {obj.track_id} has another box in this frame: written as "
                          "an instance of its own")  # fmt: skip
            key = None
        if key is None:
            instance = self._instance(token("instance", annotation), category)
        else:
            in_frame.add(key)
            if key not in scene.tracks:
                scene.tracks[key] = self._instance(token("instance", scene.id, *key), category)
            instance = scene.tracks[key]
        instance.annotations.append(_annotation(annotation, sample.token, instance.token, obj))
        if key is None:
            self._finish(instance)  # complete already: a box of no track is its instance
        return losses

    def _instance(self, instance: str, category: str) -> _Instance:
        return _Instance(instance, category, _Chain(self.tables["sample_annotation"]))

    def _finish(self, instance: _Instance) -> None:
        instance.annotations.close()
        self.tables["instance"].add(instance.record())

    def _category_of(self, obj: Box3DObject) -> str | None:
        extra = obj.model_extra or {}
        for name in (obj.class_id, extra.get("className")):
            if name is not None and str(name) in self.classes:
                return self.classes[str(name)]
        return class_name(obj)

    def _category(self, name: str) -> str:
        """The category's token (its record written when first met)."""
        if name not in self.categories:
            index = len(self.categories)
            self.categories[name] = token("category", name)
            self.tables["category"].add({"token": self.categories[name], "name": name,
                                         "description": "", "index": index})  # fmt: skip
        return self.categories[name]


def _annotation(annotation: str, sample: str, instance: str, obj: Box3DObject) -> Record:
    box = obj.contour
    return {
        "token": annotation, "sample_token": sample, "instance_token": instance,
        "visibility_token": "", "attribute_tokens": [], "translation": list(box.center),
        "size": nuscenes_size(box.size), "rotation": yaw_quaternion(box.rotation[2]),
        "prev": "", "next": "", "num_lidar_pts": lidar_points(box), "num_radar_pts": 0,
    }  # fmt: skip


def lidar_points(box: Box3D) -> int:
    """Xtreme1's count of the box's points (`pointN`) if it was kept, else NOT_COUNTED."""
    count = (box.model_extra or {}).get("pointN")
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        return count
    return NOT_COUNTED


def _losses(obj: Box3DObject) -> list[str]:
    losses = []
    if max(map(abs, obj.contour.rotation[:2])) > LEVEL:
        losses.append("roll and pitch left out: written level, yaw only")
    if obj.attributes:
        losses.append("attributes left out: nuScenes attributes are a fixed set")
    return losses


def _calibrated_sensor(
    sensor: str, channel: str, translation: list[float], rotation: list[float],
    intrinsic: list[list[float]],
) -> Record:  # fmt: skip
    return {"token": sensor, "sensor_token": token("sensor", channel), "translation": translation,
            "rotation": rotation, "camera_intrinsic": intrinsic}  # fmt: skip


def _file_format(file_name: str) -> str:
    """The file's extension, as nuScenes' `fileformat` (pcd, bin, jpg, png...)."""
    base = file_name.rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[-1].lower() if "." in base else ""
