"""Test scenes: the stored grasps of test/data/grasps.json (tools/make_test_grasps.py) replayed
by the episode generator into frames with ground truth — real scans, real hand, no grasp search."""

from __future__ import annotations

import json
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

from tactile_pose_refiner.core.frame import Frame
from tactile_pose_refiner.sim.episode import EpisodeGenerator
from tactile_pose_refiner.sim.grasp import Grasp

GRASPS = Path(__file__).parent / "data" / "grasps.json"


@lru_cache(maxsize=1)
def generator() -> EpisodeGenerator:
    return EpisodeGenerator()


def stored_grasp(object_id: str) -> Grasp:
    entry = json.loads(GRASPS.read_text())["grasps"][object_id]
    return Grasp(
        np.array(entry["q"]), np.array(entry["T_base_obj"]), entry["fingers_in_contact"], entry["max_penetration_m"]
    )


@cache
def frame(object_id: str, seed: int = 0) -> Frame:
    """One frame of the stored grasp of object_id (camera pose drawn from seed)."""
    _, frames = generator().replay(object_id, stored_grasp(object_id), steps=1, seed=seed)
    return next(iter(frames))


def hand_in_camera(frame_: Frame, spacing: float = 0.003):
    """The hand of a frame, posed in the camera frame (PosedHand)."""
    hand = generator().hand
    return hand.posed(hand.joint_vector(frame_.joint_names, frame_.joint_positions), frame_.T_cam_base, spacing)


def pushed_into_hand(T: np.ndarray, sdf, hand_points: np.ndarray, depth: float) -> np.ndarray:
    """T moved along the object normal at its deepest hand contact until the hand penetrates
    the object `depth` metres (bisection on the SDF)."""
    from tactile_pose_refiner.core.geometry import invert, transform_points

    def penetration(pose):
        return -min(0.0, float(sdf.sample(transform_points(invert(pose), hand_points)).min()))

    local = transform_points(invert(T), hand_points)
    deepest = local[np.argmin(sdf.sample(local))]
    step = 1e-3
    normal = np.array([sdf.sample(deepest + step * e)[0] - sdf.sample(deepest - step * e)[0] for e in np.eye(3)])
    direction = T[:3, :3] @ (normal / np.linalg.norm(normal))
    low, high = 0.0, 0.03
    for _ in range(40):
        middle = (low + high) / 2
        moved = T.copy()
        moved[:3, 3] += middle * direction
        low, high = (middle, high) if penetration(moved) < depth else (low, middle)
    moved = T.copy()
    moved[:3, 3] += low * direction
    return moved
