"""Classical estimator, no training: hypotheses from FPFH + RANSAC (Open3D) and from a rotation
grid, each polished by the depth + contact ICP, scored on fitness, free space and contacts; the
winner's symmetric equivalent is chosen by colour."""

from __future__ import annotations

import numpy as np
import open3d as o3d
from scipy.spatial.transform import Rotation

from tactile_pose_refiner.core.estimation.base import RegisteringEstimator
from tactile_pose_refiner.core.estimation.inputs import EstimatorInputs
from tactile_pose_refiner.core.estimation.model_cloud import ModelCloud
from tactile_pose_refiner.core.geometry import invert
from tactile_pose_refiner.core.scene.assets import HandAssets

reg = o3d.pipelines.registration
o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)  # RANSAC's fallback notes


class ClassicalEstimator(RegisteringEstimator):
    name = "classical"

    def __init__(self, cloud: ModelCloud, hand: HandAssets, config: dict) -> None:
        super().__init__(cloud, hand, config, config["classical"]["stages"])
        model = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud.points))
        model.normals = o3d.utility.Vector3dVector(cloud.normals)
        self.model_o3d = model.voxel_down_sample(float(config["classical"]["voxel_m"]))
        self.model_features = self._fpfh(self.model_o3d)
        rotations = np.concatenate(
            [Rotation.create_group(group).as_matrix() for group in config["classical"]["rotation_grid"]]
        )
        self.grid = rotations[
            [
                i
                for i in range(len(rotations))  # groups share elements (O and I: T)
                if not any(np.allclose(rotations[i], rotations[j], atol=1e-6) for j in range(i))
            ]
        ]

    def hypotheses(self, inputs: EstimatorInputs, seed: int) -> tuple[list[np.ndarray], dict]:
        return self._ransac(inputs, seed) + self._grid(inputs), {}

    def _grid(self, inputs: EstimatorInputs) -> list[np.ndarray]:
        """Every rotation of the configured groups, each translated so that the centroid of the
        model surface it turns towards the camera lands on the observed points' centroid (the
        camera sees only that side; the model's own centroid lies behind it)."""
        centre = inputs.points.mean(axis=0)
        towards_camera = -centre / np.linalg.norm(centre)
        poses = []
        for rotation in self.grid:
            facing = self.cloud.normals @ (rotation.T @ towards_camera) > 0.0
            visible = self.cloud.points[facing].mean(axis=0) if facing.any() else self.cloud.centroid
            T = np.eye(4)
            T[:3, :3] = rotation
            T[:3, 3] = centre - rotation @ visible
            poses.append(T)
        return poses

    def _ransac(self, inputs: EstimatorInputs, seed: int) -> list[np.ndarray]:
        """FPFH feature matching + RANSAC of the observed cloud onto the model (Open3D)."""
        config = self.config["classical"]
        voxel = float(config["voxel_m"])
        observed = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(inputs.points)).voxel_down_sample(voxel)
        if len(observed.points) < 10:
            return []
        observed.estimate_normals(
            o3d.geometry.KDTreeSearchParamHybrid(radius=voxel * config["normal_radius_voxels"], max_nn=30)
        )
        observed.orient_normals_towards_camera_location(np.zeros(3))
        features = self._fpfh(observed)
        poses = []
        for run in range(int(config["ransac_runs"])):
            o3d.utility.random.seed((seed * 1000 + run) % (1 << 31))
            result = reg.registration_ransac_based_on_feature_matching(
                observed,
                self.model_o3d,
                features,
                self.model_features,
                True,
                3.0 * voxel,
                reg.TransformationEstimationPointToPoint(False),
                3,
                [
                    reg.CorrespondenceCheckerBasedOnEdgeLength(0.9),
                    reg.CorrespondenceCheckerBasedOnDistance(3.0 * voxel),
                ],
                reg.RANSACConvergenceCriteria(int(config["ransac_iterations"]), float(config["ransac_confidence"])),
            )
            if result.fitness > 0:
                poses.append(invert(np.asarray(result.transformation)))  # observed -> model = T_obj_cam
        return poses

    def _fpfh(self, cloud: o3d.geometry.PointCloud):
        config = self.config["classical"]
        return reg.compute_fpfh_feature(
            cloud,
            o3d.geometry.KDTreeSearchParamHybrid(
                radius=float(config["voxel_m"]) * config["fpfh_radius_voxels"], max_nn=100
            ),
        )
