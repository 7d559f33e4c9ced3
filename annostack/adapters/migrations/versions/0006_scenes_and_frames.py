"""Scenes of a dataset, their frames in order, and each frame's camera images.

Revision ID: 0006
Revises: 0005

* `frames.idx` is the frame's position in its scene (0, 1, ...); (scene_id, idx) is unique, so
  reading a scene's frames in order, or a page of them after a given index, is one range scan
  of that key (keyset pagination, no OFFSET).
* A frame's images are rows of `frame_images`, not a JSON column of `frames`: each names a data
  item (a foreign key the database keeps true, and a join that reads the images' statuses for
  their derived files in the same query), and "which frames show this image" stays a lookup.
  The calibration of a camera rides with its image (`frame_images.calibration`, JSON): a
  frame's calibration is its cameras', so `frames` has no calibration column of its own.
* `frames.point_cloud_item_id` is indexed: saving an annotation finds its frame, and an item
  that is some frame's cloud is not deleted under it.
"""

from alembic import op

revision = "0006"
down_revision = "0005"

SPREAD = "/*T! SHARD_ROW_ID_BITS=4 */"
NONCLUSTERED = "/*T![clustered_index] NONCLUSTERED */"


def upgrade() -> None:
    # Idempotent statements, as in 0001: MySQL and TiDB commit each DDL on its own.
    op.execute(
        f"""CREATE TABLE IF NOT EXISTS scenes (
            id BIGINT NOT NULL AUTO_INCREMENT,
            dataset_id BIGINT NOT NULL,
            name VARCHAR(512) NOT NULL,
            layout VARCHAR(16) NOT NULL COMMENT 'xtreme1, kitti-object, kitti-raw',
            frame_count INT NOT NULL DEFAULT 0,
            created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
            PRIMARY KEY (id) {NONCLUSTERED},
            UNIQUE KEY uq_scenes_dataset_name (dataset_id, name),
            CONSTRAINT fk_scenes_dataset FOREIGN KEY (dataset_id) REFERENCES datasets (id)
        ) {SPREAD}"""
    )
    op.execute(
        f"""CREATE TABLE IF NOT EXISTS frames (
            id BIGINT NOT NULL AUTO_INCREMENT,
            scene_id BIGINT NOT NULL,
            idx INT NOT NULL,
            name VARCHAR(512) NOT NULL COMMENT 'the file stem the frame was matched by',
            timestamp DATETIME(6) NULL,
            point_cloud_item_id BIGINT NOT NULL,
            PRIMARY KEY (id) {NONCLUSTERED},
            UNIQUE KEY uq_frames_scene_idx (scene_id, idx),
            KEY ix_frames_point_cloud (point_cloud_item_id),
            CONSTRAINT fk_frames_scene FOREIGN KEY (scene_id) REFERENCES scenes (id),
            CONSTRAINT fk_frames_point_cloud FOREIGN KEY (point_cloud_item_id)
                REFERENCES data_items (id)
        ) {SPREAD}"""
    )
    op.execute(
        """CREATE TABLE IF NOT EXISTS frame_images (
            frame_id BIGINT NOT NULL,
            camera VARCHAR(64) NOT NULL,
            data_item_id BIGINT NOT NULL,
            calibration JSON NULL COMMENT 'CameraCalibration: intrinsics, extrinsics, size',
            PRIMARY KEY (frame_id, camera),
            KEY ix_frame_images_item (data_item_id),
            CONSTRAINT fk_frame_images_frame FOREIGN KEY (frame_id) REFERENCES frames (id),
            CONSTRAINT fk_frame_images_item FOREIGN KEY (data_item_id) REFERENCES data_items (id)
        )"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE frame_images")
    op.execute("DROP TABLE frames")
    op.execute("DROP TABLE scenes")
