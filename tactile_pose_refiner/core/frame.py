"""One synchronized observation of the scene: what the refiner consumes per frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tactile_pose_refiner.core.scene.camera import PinholeCamera, depth_from_millimetres
from tactile_pose_refiner.core.scene.skin import TactileReading


@dataclass
class Frame:
    """RGB-D + mask + joints + touch (+ ground truth when known), camera frame, metres.

    rgb (H, W, 3) uint8; depth_mm (H, W) uint16 (0 invalid); mask (H, W) uint8 (255 = object,
    None when no segmentation); joint_names/joint_positions as the driver published them;
    T_cam_base: hand base pose; T_cam_obj: ground-truth object pose (None on real data).
    Generated episodes with sensor errors (sim/realism.py) also carry the true hand
    (joint_positions_true with joint_names, T_cam_base_true) and the drawn errors
    (realism); None elsewhere: the observed hand is then the only one known. Episodes with
    balanced forces (`tpr generate --forces balanced`) carry their force model, true mass and
    gravity in the camera frame (dynamics).
    """

    stamp_ns: int
    object_id: str
    camera: PinholeCamera
    rgb: np.ndarray
    depth_mm: np.ndarray
    mask: np.ndarray | None
    joint_names: list[str]
    joint_positions: np.ndarray
    tactile: TactileReading
    T_cam_base: np.ndarray
    T_cam_obj: np.ndarray | None = None
    joint_positions_true: np.ndarray | None = None
    T_cam_base_true: np.ndarray | None = None
    realism: dict | None = None
    dynamics: dict | None = None

    @property
    def depth_m(self) -> np.ndarray:
        return depth_from_millimetres(self.depth_mm)

    def object_points(self) -> np.ndarray:
        """(N, 3) back-projected depth points inside the object mask [m, camera frame]."""
        mask = None if self.mask is None else self.mask > 0
        return self.camera.backproject(self.depth_m, mask)
