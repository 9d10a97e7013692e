"""estimator_node: the initial object pose the refiner starts from.

mode `classical` (default): core.estimation's registration of the segmented depth points and the
tactile contact points onto the object model; needs no training. mode `learned`: the trained
visuo-tactile network (`tpr train-estimator`); an object without a checkpoint falls back to
classical, labelled. Both run on real inputs: `rgbd/bundle`, `tactile/array`,
`hand/joint_states`, the hand base pose and the object id (nodes/frame_inputs.py), one estimate
per bundle in a worker thread (`queue_size` bundles wait). No segmentation or too few depth
points: nothing is published, the reason goes to /diagnostics. No touch or no hand state: the
pose is published from depth alone, labelled degraded.

mode `external`: another estimator's pose (PoseStamped, PoseWithCovarianceStamped or, where
vision_msgs is importable, a Detection3DArray such as Isaac ROS FoundationPose's) on
`external_topic`, in the camera's optical frame, passed on as the initial pose
(nodes/external_pose.py).

mode `ground_truth_noise` (replay and benchmarks only): the recorded ground-truth pose moved by
the noise model of core.initial_noise (`noise_setting` accurate or paper), seeded by object and
stamp, so a replay gives the same starts as `tpr bench`. mode `none`: nothing published.

Publishes `estimator/initial_pose` (PoseStamped, reliable), `estimator/initial_pose_cov`
(PoseWithCovarianceStamped: the noise model's variances, or for an estimator variances that
grow as its confidence falls), `estimator/source` (std_msgs/String, transient local: which
estimator, with any fallback) and the confidence on /diagnostics. A refiner in track mode says
on `refiner/needs_estimate` (Bool, latched) when it needs a start; while it says False the
classical and learned estimators rest.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped
from std_msgs.msg import Bool, Header, String

from tactile_pose_refiner.core.estimation import ESTIMATORS, CheckpointError, make_estimator
from tactile_pose_refiner.core.geometry import pose_fields_to_matrix
from tactile_pose_refiner.core.initial_noise import InitialPoseNoise
from tactile_pose_refiner.core.resources import ResourceError, load_config
from tactile_pose_refiner.core.scene.assets import HandAssets
from tactile_pose_refiner.nodes.common import (
    CATALOG_PARAMETER,
    LATCHED,
    OUTPUT_QOS,
    RELIABLE_INPUTS,
    SILENCE_WATCHDOG,
    GraphNode,
    default_topic,
    object_catalog,
    run_node,
)
from tactile_pose_refiner.nodes.conversions import matrix_to_pose_msg, ns_to_stamp, pose_with_covariance_msg, stamp_ns
from tactile_pose_refiner.nodes.external_pose import external_message_class, external_pose
from tactile_pose_refiner.nodes.frame_inputs import SYNC_TOLERANCE, FrameInputs, InputError, WorkQueue, object_id_qos

PARAMETERS = {
    **CATALOG_PARAMETER,
    **RELIABLE_INPUTS,
    **SILENCE_WATCHDOG,
    "mode": ("classical", "classical, learned, external, ground_truth_noise (replay/benchmark only) or none"),
    "noise_setting": ("accurate", "ground_truth_noise: noise model of config/bench.yaml (accurate or paper)"),
    **SYNC_TOLERANCE,
    "input_wait_s": (1.0, "how long after a bundle its touch and joints may arrive [s]"),
    "queue_size": (1, "bundles waiting while an estimate runs (oldest dropped); 0: all"),
    "min_confidence": (0.0, "estimates below this confidence are reported, not published"),
    "external_topic": ("external/initial_pose", "mode external: another estimator's poses (camera optical frame)"),
    "external_type": (
        "PoseWithCovarianceStamped",
        "mode external: PoseStamped, PoseWithCovarianceStamped or Detection3DArray (vision_msgs, where importable)",
    ),
    "external_class_id": ("", "mode external, Detection3DArray: the object's class id; empty: the object id"),
}
MODES = (*ESTIMATORS, "external", "ground_truth_noise", "none")
# Covariance of an estimate: the noise model's `accurate` spread at confidence 1, growing as 1/c.
BASE_SIGMA_M, BASE_SIGMA_RAD = 0.004, np.radians(4.4)


class EstimatorNode(GraphNode):
    def __init__(self) -> None:
        super().__init__("estimator_node", PARAMETERS)
        self.catalog = object_catalog(self.params["catalog"])
        self.pose_pub = self.create_publisher(PoseStamped, "estimator/initial_pose", OUTPUT_QOS)
        self.cov_pub = self.create_publisher(PoseWithCovarianceStamped, "estimator/initial_pose_cov", OUTPUT_QOS)
        self.source_pub = self.create_publisher(String, "estimator/source", LATCHED)
        mode = self.params["mode"]
        if mode not in MODES:
            self.get_logger().fatal(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
            self.finish(2)
            return
        self.source = mode
        if mode == "none":
            self.source = "none: initial poses come from elsewhere"
            self.diagnostics.report("warn", f"no initial pose: {self.source}")
        elif mode == "ground_truth_noise":
            self._start_noise_mode()
        elif mode == "external":
            self._start_external_mode()
        else:
            self._start_estimator_mode(mode)
        if mode in ESTIMATORS or mode in ("ground_truth_noise", "external"):
            self.publish_source(self.source)
        self.get_logger().info(f"initial poses: {self.source}")

    def silence_reason(self) -> str | None:
        if self.params["mode"] == "none" or not getattr(self, "estimates_wanted", True):
            return None  # nothing to publish, or resting while the refiner's track holds
        busy = self.queue.busy_s() if hasattr(self, "queue") else None
        if busy is not None:
            return f"one estimate has run for {busy:.0f} s"
        return super().silence_reason()

    def publish_source(self, source: str) -> None:
        self.source = source
        self.source_pub.publish(String(data=source))

    # --- estimators on real inputs -----------------------------------------------------------
    def _start_estimator_mode(self, mode: str) -> None:
        self.mode = mode
        self.config = load_config("estimator")
        self.hand = HandAssets.from_config()
        self.estimators: dict = {}
        self.object_sources: dict[str, str] = {}
        self.working_pub = self.create_publisher(Header, "estimator/working_on", OUTPUT_QOS)
        self._listen_to_tracking()
        self.frames = FrameInputs(self, self.inputs, self.on_bundle)
        self.queue = WorkQueue(self, self.estimate, self.params["queue_size"])

    def on_bundle(self, stamp: int) -> None:
        if self.estimates_wanted:
            self.frames.pin(stamp)  # an estimate takes longer than the ring of bundles lasts
            self.queue.put((stamp, time.monotonic()))

    def _listen_to_tracking(self) -> None:
        self.estimates_wanted = True  # until a tracking refiner says its track holds
        self.create_subscription(Bool, "refiner/needs_estimate", self.on_needs_estimate, LATCHED)

    def on_needs_estimate(self, msg: Bool) -> None:
        """A tracking refiner says when it needs a start; while its track holds, no estimates."""
        if msg.data == self.estimates_wanted:
            return
        self.diagnostics.report("ok", "estimating" if msg.data else "resting: the refiner's track holds")
        self.estimates_wanted = msg.data
        if not hasattr(self, "frames"):  # ground_truth_noise: no camera inputs to drop
            return
        if msg.data:  # inputs again
            self.frames = FrameInputs(self, self.inputs, self.on_bundle)
        else:  # resting: no inputs taken (an estimate under way keeps what it has)
            self.frames.close()

    def estimate(self, request) -> None:
        stamp, arrived = request
        self.working_pub.publish(Header(stamp=ns_to_stamp(stamp)))  # the refiner keeps this frame's bundle
        frame, degraded = self.frames.assemble(
            stamp, self.params["sync_tolerance_s"], arrived + self.params["input_wait_s"]
        )
        header = Header(stamp=ns_to_stamp(stamp), frame_id=frame.camera.frame_id)
        estimator = self.estimator_for(frame.object_id)
        if self.object_sources[frame.object_id] != self.source:
            self.publish_source(self.object_sources[frame.object_id])
        result = estimator.estimate(frame)
        if not result.ok:
            raise InputError(f"no estimate: {result.status}")
        if not np.isfinite(result.T).all():
            raise InputError("failed: the estimator produced a non-finite pose (not published)")
        if result.confidence < self.params["min_confidence"]:
            self.diagnostics.report(
                "warn", f"low confidence {result.confidence:.2f}: not published", object_id=frame.object_id
            )
            return
        pose = PoseStamped(header=header, pose=matrix_to_pose_msg(result.T))
        sigma = 1.0 / max(result.confidence, 0.05)
        self.pose_pub.publish(pose)
        self.cov_pub.publish(with_covariance(pose, BASE_SIGMA_M * sigma, BASE_SIGMA_RAD * sigma))
        status = "; ".join(([result.status] if result.status != "ok" else []) + [f"degraded: {d}" for d in degraded])
        self.diagnostics.report(
            "ok" if not status else "warn",
            f"estimated: {status or 'ok'}",
            object_id=frame.object_id,
            source=self.source,
            confidence=f"{result.confidence:.3f}",
            wall_time_ms=f"{result.ms:.0f}",
        )

    def estimator_for(self, object_id: str):
        if object_id not in self.estimators:
            try:
                model = self.catalog.load(object_id)
            except ResourceError as exc:
                raise InputError(f"unknown object: {exc}") from exc
            self.get_logger().info(f"building the {self.mode} estimator of {object_id} (once)")
            try:
                self.estimators[object_id] = make_estimator(self.mode, model, self.hand, self.config)
                self.object_sources[object_id] = self.mode
            except CheckpointError as exc:
                self.diagnostics.report("warn", f"fallback to classical: {exc}", object_id=object_id)
                self.estimators[object_id] = make_estimator("classical", model, self.hand, self.config)
                self.object_sources[object_id] = f"classical (fallback: no learned checkpoint for {object_id})"
        return self.estimators[object_id]

    # --- replay only: the ground truth moved by the noise model ------------------------------
    def _start_noise_mode(self) -> None:
        try:
            self.noise = InitialPoseNoise(self.params["noise_setting"])
        except ValueError as exc:
            self.get_logger().fatal(str(exc))
            self.finish(2)
            return
        self.pivots: dict[str, np.ndarray] = {}
        self.object_id: str | None = None
        self.source = (
            f"ground_truth_noise:{self.noise.setting} (replay only: the ground truth moved by the noise model)"
        )
        self.early_truths: deque = deque(maxlen=30)  # ground truths that came before the object id
        self._listen_to_tracking()
        self.create_subscription(String, default_topic("object_id"), self.on_object_id, object_id_qos(self.inputs))
        self.create_subscription(PoseStamped, default_topic("ground_truth_pose"), self.on_ground_truth, self.inputs)

    def on_object_id(self, msg: String) -> None:
        self.object_id = msg.data
        while self.early_truths:
            self.on_ground_truth(self.early_truths.popleft())

    def on_ground_truth(self, msg: PoseStamped) -> None:
        if self.object_id is None:
            self.early_truths.append(msg)
            self.diagnostics.report("warn", "waiting for input: no object id yet")
            return
        if not self.estimates_wanted:
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
        self.cov_pub.publish(with_covariance(pose, self.noise.sigma_m, self.noise.sigma_rad))
        self.diagnostics.report("ok", f"initial poses: {self.source}", object_id=self.object_id)

    # --- another estimator's poses -----------------------------------------------------------
    def _start_external_mode(self) -> None:
        try:
            message_class = external_message_class(self.params["external_type"])
        except (ValueError, ImportError) as exc:
            self.get_logger().fatal(str(exc))
            self.finish(2)
            return
        self.object_id = None
        topic = self.params["external_topic"]
        self.source = f"external: {self.params['external_type']} on {topic}"
        self.create_subscription(
            String, default_topic("object_id"), self.on_external_object, object_id_qos(self.inputs)
        )
        self.create_subscription(message_class, topic, self.on_external, self.inputs)

    def on_external_object(self, msg: String) -> None:
        self.object_id = msg.data

    def on_external(self, msg) -> None:
        found = external_pose(msg, self.params["external_class_id"] or self.object_id)
        if isinstance(found, str):
            self.diagnostics.report("warn", found)
            return
        pose = PoseStamped(header=found.header, pose=matrix_to_pose_msg(pose_fields_to_matrix(found.pose)))
        self.pose_pub.publish(pose)
        covariance = diagonal_covariance(BASE_SIGMA_M, BASE_SIGMA_RAD) if found.covariance is None else found.covariance
        self.cov_pub.publish(pose_with_covariance_msg(pose.header, pose.pose, covariance))
        score = {} if found.score is None else {"score": f"{found.score:.3f}"}
        self.diagnostics.report("ok", f"initial poses: {self.source}", object_id=self.object_id or "", **score)

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

    def destroy_node(self) -> None:
        if hasattr(self, "queue"):
            self.queue.stop()
        super().destroy_node()


def with_covariance(pose: PoseStamped, sigma_m: float, sigma_rad: float) -> PoseWithCovarianceStamped:
    return pose_with_covariance_msg(pose.header, pose.pose, diagonal_covariance(sigma_m, sigma_rad))


def diagonal_covariance(sigma_m: float, sigma_rad: float) -> np.ndarray:
    return np.diag([sigma_m**2] * 3 + [sigma_rad**2] * 3)


def main(args: list[str] | None = None) -> int:
    return run_node(EstimatorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
