"""Isaac Sim output folder -> rosbag2 episode (same format as `tpr generate`).

A folder as Replicator's BasicWriter writes it is read by io/basic_writer.py. The fallback
layout (N frames, index k zero-padded to 4 digits; one object per folder):

    SRC/camera.json          {"width", "height", "fx", "fy", "cx", "cy", "frame_rate_hz"?,
                              "start_time_s"?}   (pinhole, optical frame: x right, y down, z forward)
    SRC/object.json          {"object_id": "<catalog id>"}
    SRC/rgb/rgb_k.png                           RGB or RGBA, 8 bit
    SRC/depth/distance_to_image_plane_k.npy     (H, W) float, metres; inf/NaN/0 = invalid
    SRC/instance_segmentation/instance_segmentation_k.png   object pixels non-zero (mono)
    SRC/poses/pose_k.json    {"object": 4x4, "hand_base": 4x4}  in the camera frame [m]
    SRC/joints/joints_k.json {"names": [...], "positions": [...]}  (any configured naming)
    SRC/tactile/tactile_k.npy (368, 3) forces in sensor units, taxel order of the layout
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from tactile_pose_refiner.core.frame import Frame
from tactile_pose_refiner.core.scene.assets import skin_layout
from tactile_pose_refiner.core.scene.camera import PinholeCamera, depth_to_millimetres
from tactile_pose_refiner.core.scene.skin import TactileReading


class IsaacImportError(RuntimeError):
    """The folder does not follow the accepted layout; the message names the file."""


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise IsaacImportError(f"cannot read {path}: {exc}") from exc


def load_file(path: Path, loader):
    try:
        return loader(path)
    except Exception as exc:
        raise IsaacImportError(f"cannot read {path}: {exc}") from exc


def isaac_frames(source: str | Path, prim: str | None = None, label: str | None = None) -> Iterator[Frame]:
    """Frames of a BasicWriter folder (io/basic_writer.py; prim / label pick the object's
    instance) or of the layout above."""
    source = Path(source)
    from tactile_pose_refiner.io.basic_writer import basic_writer_frames, is_basic_writer_folder

    if is_basic_writer_folder(source):
        yield from basic_writer_frames(source, prim, label)
        return
    camera_json = read_json(source / "camera.json")
    object_id = read_json(source / "object.json")["object_id"]
    camera = PinholeCamera(
        int(camera_json["width"]),
        int(camera_json["height"]),
        float(camera_json["fx"]),
        float(camera_json["fy"]),
        float(camera_json["cx"]),
        float(camera_json["cy"]),
    )
    rate = float(camera_json.get("frame_rate_hz", 30.0))
    start_ns = int(float(camera_json.get("start_time_s", 1.7e9)) * 1e9)
    skin = skin_layout()
    indices = sorted(p.stem.rsplit("_", 1)[1] for p in (source / "rgb").glob("rgb_*.png"))
    if not indices:
        raise IsaacImportError(f"no frames: {source / 'rgb'} holds no rgb_<k>.png")
    for step, k in enumerate(indices):
        stamp_ns = start_ns + int(round(step * 1e9 / rate))
        rgb = load_file(source / "rgb" / f"rgb_{k}.png", lambda p: np.asarray(Image.open(p).convert("RGB")))
        depth = load_file(source / "depth" / f"distance_to_image_plane_{k}.npy", np.load)
        mask_path = source / "instance_segmentation" / f"instance_segmentation_{k}.png"
        mask = load_file(mask_path, lambda p: np.asarray(Image.open(p).convert("L")))
        poses = read_json(source / "poses" / f"pose_{k}.json")
        joints = read_json(source / "joints" / f"joints_{k}.json")
        forces = load_file(source / "tactile" / f"tactile_{k}.npy", np.load)
        if rgb.shape[:2] != (camera.height, camera.width) or depth.shape != rgb.shape[:2]:
            raise IsaacImportError(f"frame {k}: image sizes differ from camera.json in {source}")
        if forces.shape != (len(skin), 3):
            raise IsaacImportError(f"frame {k}: tactile_{k}.npy has shape {forces.shape}, expected ({len(skin)}, 3)")
        depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0)
        yield Frame(
            stamp_ns=stamp_ns,
            object_id=object_id,
            camera=camera,
            rgb=rgb,
            depth_mm=depth_to_millimetres(depth),
            mask=np.where(mask > 0, 255, 0).astype(np.uint8),
            joint_names=list(joints["names"]),
            joint_positions=np.asarray(joints["positions"], float),
            tactile=TactileReading(skin.links, skin.ids, skin.positions, forces, 0.0, stamp_ns),
            T_cam_base=np.asarray(poses["hand_base"], float),
            T_cam_obj=np.asarray(poses["object"], float),
        )
