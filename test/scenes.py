"""Test scenes: the stored grasps of test/data/grasps.json (tools/make_test_grasps.py) replayed
by the episode generator into frames with ground truth — real scans, real hand, no grasp search."""
from __future__ import annotations

import json
from functools import lru_cache
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
    return Grasp(np.array(entry["q"]), np.array(entry["T_base_obj"]), entry["fingers_in_contact"],
                 entry["max_penetration_m"])


@lru_cache(maxsize=None)
def frame(object_id: str, seed: int = 0) -> Frame:
    """One frame of the stored grasp of object_id (camera pose drawn from seed)."""
    _, frames = generator().replay(object_id, stored_grasp(object_id), steps=1, seed=seed)
    return next(iter(frames))
