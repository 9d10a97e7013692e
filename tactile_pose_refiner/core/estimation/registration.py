"""Registration shared by the estimators: point-to-plane ICP of the depth points and the contact
points onto the model, a score of how well a pose explains the frame, and the choice among a
symmetric object's equivalent poses by colour.

The ICP is our own (numpy + a KD-tree) because Open3D's registration has no per-point weights:
the few contact points must count as much as `contact_weight` times all the depth points."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from tactile_pose_refiner.core.estimation.inputs import EstimatorInputs
from tactile_pose_refiner.core.estimation.model_cloud import ModelCloud, camera_facing, colour_cost
from tactile_pose_refiner.core.geometry import invert, transform_points
from tactile_pose_refiner.core.scene.camera import PinholeCamera


@dataclass
class Scored:
    """A pose T_cam_obj with its score parts: fitness (share of depth points on the surface),
    free_space (share of the model's camera-facing surface where the scene is seen behind it),
    contacts (share of contacts on the surface; 1 without contacts), total (higher is better)."""

    T: np.ndarray
    fitness: float
    free_space: float
    contacts: float
    total: float

    @property
    def confidence(self) -> float:
        """0..1: all depth points fit, no free-space violation, every contact on the surface."""
        return float(np.clip(self.fitness * (1.0 - self.free_space) * self.contacts, 0.0, 1.0))


class Registration:
    def __init__(self, cloud: ModelCloud, config: dict) -> None:
        self.cloud = cloud
        self.config = config

    def icp(self, inputs: EstimatorInputs, T: np.ndarray, iterations: int) -> np.ndarray:
        """Weighted point-to-plane Gauss-Newton on T_cam_obj; pairs farther than the schedule's
        distance are dropped; a step without enough pairs ends the loop (pose kept)."""
        points = np.vstack([inputs.points, inputs.contacts])
        weights = np.r_[
            np.full(len(inputs.points), 1.0 / max(len(inputs.points), 1)),
            np.full(len(inputs.contacts), float(self.config["contact_weight"]) / max(len(inputs.contacts), 1)),
        ]
        schedule = [float(d) for d in self.config["max_pair_distance_m"]]
        T_obj_cam = invert(T)
        for iteration in range(iterations):
            limit = schedule[min(iteration * len(schedule) // max(iterations, 1), len(schedule) - 1)]
            step = self._step(transform_points(T_obj_cam, points), weights, limit)
            if step is None:
                break
            T_obj_cam = step @ T_obj_cam
        return invert(T_obj_cam)

    def _step(self, local: np.ndarray, weights: np.ndarray, limit: float) -> np.ndarray | None:
        distance, nearest = self.cloud.tree.query(local, distance_upper_bound=limit)
        paired = np.isfinite(distance)
        if paired.sum() < 6:
            return None
        p, w = local[paired], weights[paired]
        n, m = self.cloud.normals[nearest[paired]], self.cloud.points[nearest[paired]]
        jacobian = np.hstack([np.cross(p, n), n])  # d residual / d (omega, v)
        residual = np.einsum("ij,ij->i", n, p - m)
        hessian = jacobian.T @ (w[:, None] * jacobian) + 1e-9 * np.eye(6)
        omega_v = -np.linalg.solve(hessian, jacobian.T @ (w * residual))
        step = np.eye(4)
        step[:3, :3] = Rotation.from_rotvec(omega_v[:3]).as_matrix()
        step[:3, 3] = omega_v[3:]
        return step

    def select(self, inputs: EstimatorInputs, hypotheses: list[np.ndarray], frame, stages: list[dict]) -> Scored:
        """Successive stages: ICP on every candidate, score, keep the best few for the next
        stage. A stage with `jitter_m` also restarts each kept candidate shifted both ways along
        the camera axes: ICP slides into a neighbouring basin when the visible part is
        self-similar (a drill's body seen from the side). A stage's ICP may run on a subset of
        `points` depth points (the many first-stage candidates); the score uses them all."""
        score = lambda T: self.score(inputs, T, frame.camera, frame.depth_m, frame.mask)  # noqa: E731
        candidates = hypotheses
        for stage in stages:
            fitted = inputs.subset(int(stage.get("points", 0)))
            scored = sorted(
                (score(self.icp(fitted, T, int(stage["icp_iterations"]))) for T in candidates), key=lambda s: -s.total
            )[: int(stage["keep"])]
            candidates = [s.T for s in scored]
            for T in candidates[:] if stage.get("jitter_m") else []:
                for shift in np.vstack([np.eye(3), -np.eye(3)]) * float(stage["jitter_m"]):
                    moved = T.copy()
                    moved[:3, 3] += shift
                    candidates.append(moved)
        return scored[0]

    def score(
        self,
        inputs: EstimatorInputs,
        T: np.ndarray,
        camera: PinholeCamera,
        depth_m: np.ndarray,
        mask: np.ndarray | None,
    ) -> Scored:
        config = self.config
        T_obj_cam = invert(T)
        fitness = 0.0
        if len(inputs.points):
            distance, _ = self.cloud.tree.query(transform_points(T_obj_cam, inputs.points))
            fitness = float(np.mean(distance < float(config["inlier_distance_m"])))
        contacts = 1.0
        if len(inputs.contacts):
            distance, _ = self.cloud.tree.query(transform_points(T_obj_cam, inputs.contacts))
            contacts = float(np.mean(distance < float(config["contact_distance_m"])))
        free_space = self._free_space(T, camera, depth_m, mask)
        total = (
            fitness
            - float(config["free_space_weight"]) * free_space
            + float(config["contact_weight_in_score"]) * contacts
        )
        return Scored(T, fitness, free_space, contacts, total)

    def _free_space(self, T: np.ndarray, camera: PinholeCamera, depth_m: np.ndarray, mask: np.ndarray | None) -> float:
        """Share of the camera-facing model samples that land where the camera sees background
        (outside the mask, and nothing in front of the model there) or sees well behind them."""
        points, _, inside, u, v = self._camera_facing(T, camera)
        if not inside.any():
            return 1.0
        observed = depth_m[v, u]
        z = points[inside, 2]
        seen_in_front = (observed > 0) & (observed < z - float(self.config["free_space_margin_m"]))
        off_object = np.zeros_like(seen_in_front) if mask is None else mask[v, u] == 0
        seen_behind = (observed > 0) & (observed > z + float(self.config["free_space_margin_m"]))
        violated = (off_object & ~seen_in_front) | (seen_behind & ~off_object)
        outside = (~inside).sum()  # leaving the image is a violation too
        return float((violated.sum() + outside) / len(inside))

    def _camera_facing(self, T: np.ndarray, camera: PinholeCamera):
        return camera_facing(self.cloud.points, self.cloud.normals, self.cloud.colours, T, camera)

    def by_colour(
        self, T: np.ndarray, camera: PinholeCamera, rgb: np.ndarray, depth_m: np.ndarray
    ) -> tuple[np.ndarray, int]:
        """Among T's symmetric equivalents (T @ S), the one whose texture matches the image best
        (mean colour difference on the pixels where the model's depth matches the scene's);
        returns it and its index in the symmetry group. Geometry cannot tell them apart."""
        if not self.cloud.symmetric:
            return T, 0
        costs = [self._colour_cost(T @ symmetry, camera, rgb, depth_m) for symmetry in self.cloud.symmetries]
        best = int(np.argmin(costs))
        return T @ self.cloud.symmetries[best], best

    def _colour_cost(self, T: np.ndarray, camera: PinholeCamera, rgb: np.ndarray, depth_m: np.ndarray) -> float:
        cloud, tolerance = self.cloud, float(self.config["colour_depth_tolerance_m"])
        return colour_cost(cloud.points, cloud.normals, cloud.colours, T, camera, rgb, depth_m, tolerance)
