"""ICP baselines on a real scan: point-to-plane ICP converges from a small offset, ICP with
checkpointing returns its best-scored iterate, bad input returns the initial pose labelled."""

from __future__ import annotations

import numpy as np

from tactile_pose_refiner.core.baselines import Icp
from tactile_pose_refiner.core.geometry import rotation_about
from tactile_pose_refiner.core.metrics import orientation_error_deg, position_error_cm

from scenes import frame, generator


def start_pose(T_gt: np.ndarray) -> np.ndarray:
    T = T_gt @ rotation_about([0.3, -1.0, 0.5], np.radians(5.0))
    T[:3, 3] += [0.006, -0.004, 0.006]
    return T


def test_icp_converges_from_a_small_offset():
    scene = frame("008_pudding_box")
    icp = Icp(generator().catalog.load("008_pudding_box").geometry)
    result = icp.run(scene.object_points(), start_pose(scene.T_cam_obj), iterations=50)
    assert result.status == "ok"
    assert position_error_cm(result.T, scene.T_cam_obj) < 0.2
    assert orientation_error_deg(result.T, scene.T_cam_obj) < 2.0


def test_icp_with_checkpointing_keeps_the_best_scored_iterate():
    scene = frame("006_mustard_bottle")
    icp = Icp(generator().catalog.load("006_mustard_bottle").geometry)
    # stand-in score with a known minimum; the refiner passes the rendering loss L_DR
    target = start_pose(scene.T_cam_obj)
    target[:3, 3] += [0.0, 0.0, 0.003]
    score = lambda T: position_error_cm(T, target)  # noqa: E731
    result = icp.run(scene.object_points(), start_pose(scene.T_cam_obj), iterations=30, checkpoint=score)
    assert len(result.scores) == 31
    assert result.scores[result.kept] == min(result.scores)
    assert score(result.T) == min(result.scores)


def test_icp_without_depth_returns_the_initial_pose_labelled():
    icp = Icp(generator().catalog.load("008_pudding_box").geometry)
    T = start_pose(frame("008_pudding_box").T_cam_obj)
    result = icp.run(np.full((5, 3), np.nan), T)
    assert result.status.startswith("degraded") and np.array_equal(result.T, T)
