"""What an estimator sees of a frame: the segmented depth points with their colours and the
tactile contact points from forward kinematics, all in the camera frame; never ground truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tactile_pose_refiner.core.frame import Frame
from tactile_pose_refiner.core.scene.assets import HandAssets
from tactile_pose_refiner.core.scene.hand import HandUnusable
from tactile_pose_refiner.core.scene.skin import contact_positions


@dataclass
class EstimatorInputs:
    """points (N, 3) and colours (N, 3) in 0..1 of the object's depth pixels; contacts (K, 3);
    `missing` says which inputs were unusable (shown in the estimate's status)."""

    points: np.ndarray
    colours: np.ndarray
    contacts: np.ndarray
    missing: list[str]

    def subset(self, count: int) -> EstimatorInputs:
        """Every k-th depth point so that about `count` remain (all when count is 0)."""
        if count <= 0 or len(self.points) <= count:
            return self
        step = int(np.ceil(len(self.points) / count))
        return EstimatorInputs(self.points[::step], self.colours[::step], self.contacts, self.missing)


def estimator_inputs(frame: Frame, hand: HandAssets, config: dict, seed: int = 0) -> EstimatorInputs:
    missing = []
    points, colours = _object_pixels(frame)
    if frame.mask is None:
        missing.append("no segmentation mask")
    if len(points) > config["max_observed_points"]:
        chosen = np.sort(np.random.default_rng(seed).choice(len(points), config["max_observed_points"], replace=False))
        points, colours = points[chosen], colours[chosen]
    posed = hand.posed(frame)
    if isinstance(posed, HandUnusable):
        missing.append(f"no contacts: {posed}")
        contacts = np.zeros((0, 3))
    else:
        contacts = contact_positions(
            frame.tactile, hand.layout, posed.link_poses, posed.T_frame_base, hand.contact_threshold
        )[: config["max_contacts"]]
    return EstimatorInputs(points, colours, np.asarray(contacts, dtype=np.float64).reshape(-1, 3), missing)


def _object_pixels(frame: Frame) -> tuple[np.ndarray, np.ndarray]:
    depth = frame.depth_m
    valid = np.isfinite(depth) & (depth > 0)
    if frame.mask is not None:
        valid &= frame.mask > 0
    else:
        valid[:] = False  # without segmentation the object's pixels are unknown
    v, u = np.nonzero(valid)
    points = frame.camera.backproject(np.where(valid, depth, 0.0))
    colours = frame.rgb[v, u].astype(np.float64) / 255.0
    return points, colours
