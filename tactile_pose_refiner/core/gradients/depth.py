"""Mesh-to-depth gradient (paper Eq. 2 on the segmented depth points)."""

from __future__ import annotations

import numpy as np
import torch
import trimesh

from tactile_pose_refiner.core.gradients.base import GradientSource, SourceLoss
from tactile_pose_refiner.core.gradients.pairs import PairSearch, PointMeshDistance, SeenOccluders, finite_points
from tactile_pose_refiner.core.resources import load_config
from tactile_pose_refiner.core.scene.distance import MeshDistance


class DepthSource(GradientSource):
    """Eq. 2 between the object mesh at the pose and the observed object points [mm^2]."""

    name = "depth"

    def __init__(
        self,
        mesh: trimesh.Trimesh,
        points: np.ndarray,
        config: dict | None = None,
        distance: MeshDistance | None = None,
        occluders: trimesh.Trimesh | None = None,
        seed: int = 0,
        seen_occluders: SeenOccluders | None = None,
    ) -> None:
        """mesh: object frame; points (N, 3) and occluders (the hand mesh) in the camera frame;
        seen_occluders: what the depth image shows in front of the object."""
        config = config or load_config("gradients")["depth"]
        dense = finite_points(points)
        rng = np.random.default_rng(seed)
        points = _subset(dense, int(config["max_points"]), rng)
        # The triangle term pairs each triangle with its nearest observed point: among 1500 of
        # the 10^4-10^5 points on a large box it would be mm away at the true pose (the depth loss
        # there: 54 mm^2 on the cracker box) and the term would pull towards denser samples.
        dense = _subset(dense, int(config["max_dense_points"]), rng)
        self.min_points = int(config["min_points"])
        search = PairSearch(
            config["mesh_to_points"],
            config["max_pair_distance_m"],
            config["visibility_refresh_m"],
            np.radians(config["visibility_refresh_deg"]),
            int(config.get("max_triangles", 0)),
            np.radians(float(config.get("max_incidence_deg", 90.0))),
        )
        self.distance = PointMeshDistance(
            mesh, points, search, distance, occluders, dense, config.get("huber_mm"), seen_occluders
        )

    def frozen(self):
        return self.distance.visibility.held()

    def loss(self, rotation: torch.Tensor, translation: torch.Tensor) -> SourceLoss:
        return self.distance.source_loss(rotation, translation, self.min_points, "depth points on the object")


def _subset(points: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """At most `count` of the points (a random subset, in their original order)."""
    if len(points) <= count:
        return points
    return points[np.sort(rng.choice(len(points), count, replace=False))]
