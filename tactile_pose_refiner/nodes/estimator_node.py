"""estimator_node: the initial object pose the refiner starts from.

mode `ground_truth_noise` (replay and benchmarks only, until the estimator issue lands): the
recorded ground-truth pose moved by the documented noise model of core.initial_noise
(`noise_setting` accurate: PE 0.65 cm / OE 7 deg like the paper's estimator; paper: 2.2 cm /
15 deg), seeded by object and stamp, so a replay gives the same starts as `tpr bench`. The
output says so: `estimator/source` (std_msgs/String, transient local) and /diagnostics.
mode `none`: no estimator on real inputs yet; reported on /diagnostics, nothing published.

Subscribes the ground-truth PoseStamped and the object id (config/topics.yaml). Publishes
`estimator/initial_pose` (PoseStamped, reliable) and `estimator/initial_pose_cov`
(PoseWithCovarianceStamped, the noise model's variances).
"""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped
from std_msgs.msg import String

from tactile_pose_refiner.core.geometry import pose_fields_to_matrix
from tactile_pose_refiner.core.initial_noise import InitialPoseNoise
from tactile_pose_refiner.core.resources import ResourceError
from tactile_pose_refiner.core.scene.objects import ObjectCatalog
from tactile_pose_refiner.nodes.common import (LATCHED, OUTPUT_QOS, RELIABLE_INPUTS, GraphNode,
                                               default_topic, run_node)
from tactile_pose_refiner.nodes.conversions import matrix_to_pose_msg, stamp_ns

PARAMETERS = {
    **RELIABLE_INPUTS,
    "mode": ("ground_truth_noise", "ground_truth_noise (replay/benchmark only) or none"),
    "noise_setting": ("accurate", "noise model of config/bench.yaml: accurate or paper"),
}


class EstimatorNode(GraphNode):
    def __init__(self) -> None:
        super().__init__("estimator_node", PARAMETERS)
        self.catalog = ObjectCatalog.from_config()
        self.pivots: dict[str, np.ndarray] = {}
        self.object_id: str | None = None
        self.pose_pub = self.create_publisher(PoseStamped, "estimator/initial_pose", OUTPUT_QOS)
        self.cov_pub = self.create_publisher(PoseWithCovarianceStamped, "estimator/initial_pose_cov", OUTPUT_QOS)
        self.source_pub = self.create_publisher(String, "estimator/source", LATCHED)
        mode = self.params["mode"]
        if mode == "none":
            self.source = "none: no estimator for real inputs yet (the estimator issue)"
            self.diagnostics.report("warn", f"no initial pose: {self.source}")
        elif mode == "ground_truth_noise":
            try:
                self.noise = InitialPoseNoise(self.params["noise_setting"])
            except ValueError as exc:
                self.get_logger().fatal(str(exc))
                self.finish(2)
                return
            self.source = (f"ground_truth_noise:{self.noise.setting} "
                           "(replay only: the ground truth moved by the noise model)")
            self.create_subscription(String, default_topic("object_id"), self.on_object_id, 10)
            self.create_subscription(PoseStamped, default_topic("ground_truth_pose"),
                                     self.on_ground_truth, self.inputs)
        else:
            self.get_logger().fatal(f"mode must be ground_truth_noise or none, got {mode!r}")
            self.finish(2)
            return
        self.source_pub.publish(String(data=self.source))
        self.get_logger().info(f"initial poses: {self.source}")

    def on_object_id(self, msg: String) -> None:
        self.object_id = msg.data

    def on_ground_truth(self, msg: PoseStamped) -> None:
        if self.object_id is None:
            self.diagnostics.report("warn", "waiting for input: no object id yet")
            return
        pivot = self._pivot(self.object_id)
        T_gt = pose_fields_to_matrix(msg.pose)
        if pivot is None or not np.isfinite(T_gt).all():
            if pivot is not None:
                self.diagnostics.report("error", "unusable ground truth: pose is not finite")
            return
        T0 = self.noise.noisy(T_gt, pivot, f"{self.object_id}/{stamp_ns(msg.header.stamp)}")
        pose = PoseStamped(header=msg.header, pose=matrix_to_pose_msg(T0))
        self.pose_pub.publish(pose)
        self.cov_pub.publish(self._with_covariance(pose))
        self.diagnostics.report("ok", f"initial poses: {self.source}", object_id=self.object_id)

    def _pivot(self, object_id: str) -> np.ndarray | None:
        """Centre of mass of the object (the noise turns about it; RigidBody.from_mesh's
        definition, without importing the physics module); None for an unknown id."""
        if object_id not in self.pivots:
            try:
                model = self.catalog.load(object_id)
            except ResourceError as exc:
                self.diagnostics.report("error", f"unknown object: {exc}")
                return None
            self.pivots[object_id] = np.asarray(model.geometry.convex_hull.center_mass)
        return self.pivots[object_id]

    def _with_covariance(self, pose: PoseStamped) -> PoseWithCovarianceStamped:
        message = PoseWithCovarianceStamped(header=pose.header)
        message.pose.pose = pose.pose
        variances = [self.noise.sigma_m ** 2] * 3 + [self.noise.sigma_rad ** 2] * 3
        message.pose.covariance = np.diag(variances).ravel().tolist()
        return message


def main(args: list[str] | None = None) -> int:
    return run_node(EstimatorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
