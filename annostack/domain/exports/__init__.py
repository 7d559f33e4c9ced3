"""Annotation exports and the imports that mirror them: pure conversions, no services.

One module per format, each a set of pure functions of annostack documents (and, for KITTI,
a frame's calibration), plus what every export shares:

| module              | holds                                                              |
|---------------------|--------------------------------------------------------------------|
| `report`            | `ExportReport`: counts per format, objects skipped or exported with loss |
| `archive`           | `write_archive`: (name, body) entries streamed into a zip or tar.gz |
| `kitti_calib`       | KITTI calib matrices (P0-P3, R0_rect, Tr_velo_to_cam), parsed and written |
| `kitti`             | KITTI 3D object labels (`label_2`) from LiDAR boxes, and back       |
| `coco`              | COCO instances JSON for 2D boxes and polygons, written as items stream in |
| `nuscenes`          | nuScenes-devkit tables of 3D boxes and tracks, written as frames come |
| `nuscenes_geometry` | nuScenes' sizes, quaternions and sensor poses of our boxes, cameras |
| `xtreme1`           | Xtreme1 result files to annostack documents and back, losslessly   |
| `imported`          | what the imports share: documents checked, sources named `imported` |

Design decisions shared by all of them:

* **Nothing is dropped silently.** An object a format cannot hold (a 3D box in COCO, a class
  with no KITTI type) is returned as a `Skip` with the reason; the caller adds it to the
  export's `ExportReport`, which lists it (the first few hundred, with the total).
* **Bounded memory.** Converters work one frame (one document) at a time and writers take
  a stream: an export of 100,000 items holds one item, never all of them. Formats whose
  files span items (COCO's one JSON, nuScenes' tables) write them to spools the caller
  gives, which the archive copies in chunks.
* **Deterministic output.** The same documents give the same bytes (fixed archive
  timestamps, ids from positions and item ids), so a re-run export overwrites its archive
  with an identical one.
"""
