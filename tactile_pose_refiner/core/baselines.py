"""Baselines (paper §IV-D): ICP (Open3D point-to-plane on the segmented depth points) and ICP
with checkpointing, which runs ICP for the full number of iterations but keeps the iterate with
the lowest checkpoint score (the rendering loss L_DR)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import open3d as o3d
import trimesh

from tactile_pose_refiner.core.geometry import invert
from tactile_pose_refiner.core.resources import load_config

Score = Callable[[np.ndarray], float]  # pose (4, 4) -> loss (lower is better)


@dataclass
class IcpResult:
    """T: the output pose (4, 4); iterations run; kept: the iteration T comes from (0 = the
    initial pose); scores: checkpoint score per iterate (empty without checkpointing)."""

    T: np.ndarray
    iterations: int
    kept: int
    status: str = "ok"
    scores: list[float] = field(default_factory=list)


class Icp:
    """Point-to-plane ICP of camera-frame points (N, 3) onto one object's surface."""

    def __init__(self, mesh: trimesh.Trimesh, config: dict | None = None, seed: int = 0) -> None:
        self.config = config or load_config("baselines")["icp"]
        points, faces = trimesh.sample.sample_surface(mesh, int(self.config["model_points"]), seed=seed)
        self.model = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
        self.model.normals = o3d.utility.Vector3dVector(mesh.face_normals[faces])
        self.rng = np.random.default_rng(seed)

    def run(
        self,
        observed: np.ndarray,
        T_initial: np.ndarray,
        iterations: int | None = None,
        checkpoint: Score | None = None,
    ) -> IcpResult:
        """ICP from T_initial (T_cam_obj). With `checkpoint`, every iterate is scored and the
        best one is returned (ICP w/ checkpointing); without, the last iterate (plain ICP)."""
        iterations = int(self.config["iterations"] if iterations is None else iterations)
        observed = np.asarray(observed, dtype=np.float64).reshape(-1, 3)
        observed = observed[np.isfinite(observed).all(axis=1)]
        if len(observed) < int(self.config["min_points"]):
            return IcpResult(
                np.array(T_initial, dtype=np.float64), 0, 0, f"degraded: {len(observed)} depth points on the object"
            )
        if len(observed) > self.config["max_observed_points"]:
            observed = observed[self.rng.choice(len(observed), self.config["max_observed_points"], replace=False)]
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(observed))
        T_obj_cam = invert(np.asarray(T_initial, dtype=np.float64))
        if checkpoint is None:  # one call: Open3D stops early once converged
            T_obj_cam = self._icp(cloud, T_obj_cam, iterations)
            return IcpResult(invert(T_obj_cam), iterations, iterations)
        best, best_score, kept, scores = T_obj_cam, checkpoint(invert(T_obj_cam)), 0, []
        scores.append(best_score)
        for iteration in range(1, iterations + 1):
            previous, T_obj_cam = T_obj_cam, self._icp(cloud, T_obj_cam, 1)
            # a converged ICP repeats its iterate: same pose, same score (saves the render)
            scores.append(scores[-1] if np.array_equal(previous, T_obj_cam) else checkpoint(invert(T_obj_cam)))
            if scores[-1] < best_score:
                best, best_score, kept = T_obj_cam, scores[-1], iteration
        return IcpResult(invert(best), iterations, kept, scores=scores)

    def _icp(self, cloud: o3d.geometry.PointCloud, T_obj_cam: np.ndarray, iterations: int) -> np.ndarray:
        result = o3d.pipelines.registration.registration_icp(
            cloud,
            self.model,
            float(self.config["max_correspondence_distance_m"]),
            T_obj_cam,
            o3d.pipelines.registration.TransformationEstimationPointToPlane(),
            o3d.pipelines.registration.ICPConvergenceCriteria(max_iteration=iterations),
        )
        return np.asarray(result.transformation)
