"""refiner_node: refines each initial pose on its RGB-D bundle, touch and hand state.

Subscribes `estimator/initial_pose` (PoseStamped, reliable), `rgbd/bundle` (rgbd_node),
`tactile/array` (tactile_node), `hand/joint_states` (joint_state_node), the hand base pose and
the object id (config/topics.yaml), `estimator/source`; the hand base pose comes from tf2 where
tf2_ros is importable and holds it (tf_hand_pose.py), else from its topic. Each initial pose is matched with the
bundle of its stamp and the touch, joints and hand pose nearest to it (within
`sync_tolerance_s`), then refined by core.pipeline.FrameRefiner on `device` in a worker thread
(callbacks stay responsive; `queue_size` initial poses wait, the oldest is dropped).

Publishes `refiner/pose` (PoseStamped, reliable), `refiner/diagnostics`
(RefinementDiagnostics), /diagnostics, `refiner/markers` (MarkerArray: the object mesh at
the initial pose in red and the refined pose in green, taxels in contact as spheres) and
`refiner/overlay` (sensor_msgs/Image rgb8: the colour image with the initial outline in red and
the refined one in green; only while subscribed, at most every `overlay_period_s`). A
missing input degrades the refinement (labelled in the status); an unusable one (NaN pose,
unknown object, no bundle) is reported and nothing is published. A NaN pose is never
published.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
from geometry_msgs.msg import Point, PoseStamped
from sensor_msgs.msg import Image
from std_msgs.msg import ColorRGBA, String
from visualization_msgs.msg import Marker, MarkerArray

from tactile_pose_refiner.core.geometry import pose_fields_to_matrix
from tactile_pose_refiner.core.resources import ResourceError, load_config
from tactile_pose_refiner.core.scene.skin import contact_positions
from tactile_pose_refiner.msg import RefinementDiagnostics
from tactile_pose_refiner.nodes.common import (
    CATALOG_PARAMETER,
    LATCHED,
    OUTPUT_QOS,
    RELIABLE_INPUTS,
    SILENCE_WATCHDOG,
    GraphNode,
    ParameterError,
    default_topic,
    object_catalog,
    run_node,
    stale_by,
)
from tactile_pose_refiner.nodes.conversions import image_msg, matrix_to_pose_msg, stamp_ns
from tactile_pose_refiner.nodes.frame_inputs import NO_CAMERA, SYNC_TOLERANCE, FrameInputs, InputError, WorkQueue
from tactile_pose_refiner.nodes.tf_hand_pose import PARAMETERS as TF_PARAMETERS
from tactile_pose_refiner.nodes.tf_hand_pose import TfHandPose
from tactile_pose_refiner.nodes.track_mode import PARAMETERS as TRACK_PARAMETERS
from tactile_pose_refiner.nodes.track_mode import TrackMode

if TYPE_CHECKING:
    from tactile_pose_refiner.core.pipeline import FrameRefiner

MODES = ("refine", "track")
# The paper's four sources keep their fixed fields for one release (RefinementDiagnostics.msg).
DEPRECATED_SOURCE_FIELDS = ("physics", "render", "depth", "tactile")

PARAMETERS = {
    **CATALOG_PARAMETER,
    **RELIABLE_INPUTS,
    **SILENCE_WATCHDOG,
    "device": ("cpu", "compute device of the refinement: cpu, cuda or auto (cuda without CUDA: cpu, labelled)"),
    "variant": ("ours", "refiner variant of config/refiner.yaml (ours, ours_paper, no_render, physics, ...)"),
    "iterations": (
        0,
        "iterations of a whole schedule per frame; 0: config/refiner.yaml's (a polish runs polish.iterations)",
    ),
    **SYNC_TOLERANCE,
    **TF_PARAMETERS,
    "input_wait_s": (2.0, "how long after an initial pose its bundle, touch and joints may arrive [s]"),
    "camera_off_variant": (
        "touch_only",
        "variant refining an initial pose whose RGB-D bundle never came (touch, hand, physics); empty: none",
    ),
    "queue_size": (1, "initial poses waiting while a refinement runs (oldest dropped); 0: all"),
    "max_age_s": (0.0, "drop initial poses older than this against the node clock [s]; 0: off"),
    "torch_threads": (1, "torch CPU threads (the refiner's tensors are small: 1 is fastest on 2 cores)"),
    "overlay_period_s": (0.2, "refiner/overlay: at most one image per this period, only while subscribed [s]"),
    "mode": (
        "refine",
        "refine: each initial pose refined in full; track: a pose on every camera frame (track_mode.py)",
    ),
    **TRACK_PARAMETERS,
}


def hand_usable(posed) -> bool:
    from tactile_pose_refiner.core.scene.hand import HandUnusable

    return not isinstance(posed, HandUnusable)


class RefinerNode(GraphNode):
    """The refinement's modules (torch, Open3D, Warp: ~3 s to import) load after the node has
    subscribed, in the methods that use them: a restarted node's discovery and first inputs
    overlap the loading instead of following it."""

    def __init__(self) -> None:
        super().__init__("refiner_node", PARAMETERS)
        self._check_parameters()
        self.started_ns = self.get_clock().now().nanoseconds
        self.catalog = object_catalog(self.params["catalog"])
        self.refiners: dict[str, FrameRefiner] = {}
        self.initial_source = "unknown (no estimator/source message)"
        self.initial_poses = 0
        self.tracking: TrackMode | None = None
        self._create_outputs()
        tracks = self.params["mode"] == "track"
        on_bundle = (lambda stamp: self.tracking.on_bundle(stamp)) if tracks else None
        tf_hand = TfHandPose.for_node(self)
        self.frames = FrameInputs(self, self.inputs, on_bundle, tf_hand)
        self.create_subscription(String, "estimator/source", self.on_initial_source, LATCHED)
        self.create_subscription(PoseStamped, "estimator/initial_pose", self.on_initial_pose, 50)
        self._load_refinement()
        hand_topic = self.resolve_topic_name(default_topic("hand_pose"))
        why = "off" if self.params["hand_pose_source"] == "topic" else "tf2_ros not importable"
        self.get_logger().info(
            f"hand base pose: tf2 ({tf_hand.base_frame}) where it holds it, else {hand_topic}"
            if tf_hand
            else f"hand base pose: {hand_topic} (tf2 lookup {why})"
        )
        if tracks:
            self.tracking = TrackMode(self)
            self.queue = self.tracking.queue
            self.get_logger().info("tracking: a pose on every camera frame, started by an initial pose")
            return
        # (initial pose, arrival time) pairs
        self.queue = WorkQueue(self, lambda item: self.refine(*item), self.params["queue_size"])
        self.get_logger().info(f"refining with variant {self.params['variant']} on {self.config['device']}")

    def _check_parameters(self) -> None:
        """A value that cannot work stops the node at once (a typo in mode or variant would
        otherwise refine in another mode, or fail on every frame)."""
        params, variants = self.params, load_config("refiner")["variants"]
        if params["mode"] not in MODES:
            raise ParameterError(f"mode must be one of {', '.join(MODES)}, got {params['mode']!r}")
        named = {"variant": params["variant"]}
        if params["camera_off_variant"]:  # empty: no camera-off refinement
            named["camera_off_variant"] = params["camera_off_variant"]
        for name, variant in named.items():
            if variant not in variants:
                known = ", ".join(variants)
                raise ParameterError(f"{name} must be a variant of config/refiner.yaml ({known}), got {variant!r}")
        if not params["iterations"] >= 0:
            raise ParameterError(f"iterations must be 0 or more, got {params['iterations']}")

    def _load_refinement(self) -> None:
        """Loads what refining needs now, not at the first frame."""
        import torch

        from tactile_pose_refiner.core import overlay, pipeline  # noqa: F401
        from tactile_pose_refiner.core.scene.assets import HandAssets

        if self.params["mode"] == "track":
            from tactile_pose_refiner.core.tracking import tracker  # noqa: F401

        torch.set_num_threads(max(1, self.params["torch_threads"]))
        self.hand = HandAssets.from_config()  # one hand model shared by every object's refiner
        self.config = self._refiner_config()

    def _refiner_config(self) -> dict:
        from tactile_pose_refiner.core.device import resolve_device

        config = load_config("refiner")
        self.device_note = ""
        try:
            config["device"] = resolve_device(self.params["device"])
        except ValueError as exc:
            config["device"] = "cpu"
            self.device_note = f"device {self.params['device']} unusable, ran on cpu"
            self.get_logger().warning(f"{exc}; refining on cpu")
        config["variant"] = self.params["variant"]
        if self.params["iterations"] > 0:
            config["iterations"] = self.params["iterations"]
        return config

    def _create_outputs(self) -> None:
        self.pose_pub = self.create_publisher(PoseStamped, "refiner/pose", OUTPUT_QOS)
        self.result_pub = self.create_publisher(RefinementDiagnostics, "refiner/diagnostics", OUTPUT_QOS)
        self.marker_pub = self.create_publisher(MarkerArray, "refiner/markers", OUTPUT_QOS)
        self.overlay_pub = self.create_publisher(Image, "refiner/overlay", OUTPUT_QOS)
        self.overlay_sent = -np.inf

    # --- callbacks (executor thread) ----------------------------------------------------------
    def on_initial_source(self, msg: String) -> None:
        self.initial_source = msg.data

    def on_initial_pose(self, msg: PoseStamped) -> None:
        self.initial_poses += 1
        stale = stale_by(self, msg.header.stamp, self.params["max_age_s"])
        if stale is not None:
            self.diagnostics.report("warn", f"stale input: initial pose is {stale:.2f} s off the clock")
            return
        if self.tracking:
            self.tracking.on_initial_pose(msg)
            return
        self.queue.put((msg, time.monotonic()))

    def silence_reason(self) -> str | None:
        busy = self.queue.busy_s()
        if busy is not None:
            return f"one frame has been worked on for {busy:.0f} s"
        if self.initial_poses == 0:
            return "no initial pose has come on estimator/initial_pose (is estimator_node running?)"
        return super().silence_reason()

    # --- refinement (worker thread) -------------------------------------------------------------
    def refine(self, initial: PoseStamped, arrived: float) -> None:
        """arrived (time.monotonic): when the initial pose came; its frame's other inputs may
        arrive until input_wait_s later."""
        T_initial = pose_fields_to_matrix(initial.pose)
        if not np.isfinite(T_initial).all() or abs(np.linalg.det(T_initial[:3, :3]) - 1) > 1e-3:
            raise InputError("unusable initial pose: not a finite rigid transform")
        camera_off_variant = self.params["camera_off_variant"]
        stamp, tolerance = stamp_ns(initial.header.stamp), self.params["sync_tolerance_s"]
        deadline = arrived + self.params["input_wait_s"]
        if stamp < self.started_ns:  # latched from before this node listened:
            deadline = time.monotonic()  # what it got is all it will get (a restart waited 2 s here)
        frame, degraded = self.frames.assemble(stamp, tolerance, deadline, camera_optional=bool(camera_off_variant))
        if degraded and self.params["queue_size"] > 0 and self.queue.pending and self.frames.missed(stamp, tolerance):
            # robot mode: a restarted node misses the first frames' inputs (refining one without
            # them took 8 s); the newer initial pose waiting likely has them
            self.diagnostics.report("warn", f"skipped frame: {'; '.join(degraded)}; a newer initial pose waits")
            return
        refiner = self.refiner_for(frame.object_id)
        posed = self.hand.posed(frame)
        variant = camera_off_variant if NO_CAMERA in degraded else None
        refinement = refiner.refine(frame, T_initial, variant, posed=posed, on_iteration=self._stop_when_shutting_down)
        if not np.isfinite(refinement.T).all():
            raise InputError("failed: the refinement produced a non-finite pose (not published)")
        self.publish(initial, frame, refiner, posed, refinement, degraded)
        refiner.remember_hand(frame, refinement, posed)  # for the frames the camera may miss next

    def _stop_when_shutting_down(self, iteration: int, T) -> None:
        """Ends a refinement within an iteration of SIGINT: a worker still in torch or Warp code
        while the interpreter finalises aborts the process."""
        if self.queue.stopping:
            raise InputError("stopped: the node is shutting down")

    def refiner_for(self, object_id: str) -> FrameRefiner:
        from tactile_pose_refiner.core.pipeline import FrameRefiner

        if object_id not in self.refiners:
            try:
                model = self.catalog.load(object_id)
            except ResourceError as exc:
                raise InputError(f"unknown object: {exc}") from exc
            self.get_logger().info(f"building the refiner of {object_id} (once)")
            self.refiners[object_id] = FrameRefiner(model, hand=self.hand, config=self.config)
        return self.refiners[object_id]

    # --- output ---------------------------------------------------------------------------------
    def publish(self, initial, frame, refiner, posed, refinement, degraded) -> None:
        header, T_initial = initial.header, pose_fields_to_matrix(initial.pose)
        self.pose_pub.publish(PoseStamped(header=header, pose=matrix_to_pose_msg(refinement.T)))
        result = self.result_message(header, frame, refiner, posed, T_initial, refinement, degraded)
        self.result_pub.publish(result)
        self.marker_pub.publish(self.markers(header, refiner, T_initial, refinement.T, frame, posed))
        self.publish_overlay(header, frame, [(T_initial, "initial", 1), (refinement.T, "refined", 2)])
        self.diagnostics.report(
            "ok" if result.status == "ok" else "warn",
            f"refined: {result.status}",
            object_id=frame.object_id,
            wall_time_ms=f"{result.wall_time_ms:.0f}",
            start=result.start,
            iv_before_cm3=f"{result.intersection_volume_before_cm3:.2f}",
            iv_after_cm3=f"{result.intersection_volume_after_cm3:.2f}",
        )

    def result_message(self, header, frame, refiner, posed, T_initial, refinement, degraded) -> RefinementDiagnostics:
        d = refinement.diagnostics
        losses, weights = d.final_losses(), d.mean_weights()
        reasons = degraded + ([self.device_note] if self.device_note else [])
        statuses = ([d.status] if d.status != "ok" else []) + [f"degraded: {r}" for r in reasons]
        message = RefinementDiagnostics(
            header=header,
            object_id=frame.object_id,
            initial_pose_source=self.initial_source,
            start=d.start,
            iterations=int(d.iterations),
            checkpoint_iteration=int(d.kept_iteration),
            wall_time_ms=float(d.wall_ms),
            device=refiner.device,
            status="; ".join(statuses) if statuses else RefinementDiagnostics.STATUS_OK,
        )
        message.source_names = list(losses)
        message.source_losses = [float(losses[name]) for name in losses]
        message.source_weights = [float(weights.get(name, np.nan)) for name in losses]
        for source in DEPRECATED_SOURCE_FIELDS:
            setattr(message, f"loss_{source}", float(losses.get(source, np.nan)))
            setattr(message, f"weight_{source}", float(weights.get(source, np.nan)))
        measured = refinement.before is not None and refinement.after is not None
        nan = float("nan")
        message.intersection_volume_before_cm3 = refinement.before.iv_cm3 if measured else nan
        message.intersection_volume_after_cm3 = refinement.after.iv_cm3 if measured else nan
        message.contact_area_before_cm2 = refinement.before.ca_cm2 if measured else nan
        message.contact_area_after_cm2 = refinement.after.ca_cm2 if measured else nan
        message.penetration_depth_max_before_mm = (
            refiner.metrics.penetration_depth_max_mm(T_initial, posed) if measured else nan
        )
        message.penetration_depth_max_after_mm = (
            refiner.metrics.penetration_depth_max_mm(refinement.T, posed) if measured else nan
        )
        correction = posed.correction if hand_usable(posed) else None
        corrected = correction is not None and correction.status == "ok"
        message.hand_correction = "" if correction is None else correction.summary()
        message.hand_correction_shift_mm = correction.base_shift_mm if corrected else nan
        message.hand_correction_turn_deg = correction.base_turn_deg if corrected else nan
        message.hand_correction_joints_rms_deg = correction.joint_change_rms_deg if corrected else nan
        return message

    def markers(self, header, refiner, T_initial, T_refined, frame, posed) -> MarkerArray:
        mesh_uri = refiner.object.model.mesh_path.resolve().as_uri()
        markers = [
            self._mesh_marker(header, 0, "initial", mesh_uri, T_initial, (0.9, 0.2, 0.2, 0.5)),
            self._mesh_marker(header, 1, "refined", mesh_uri, T_refined, (0.2, 0.9, 0.2, 0.8)),
        ]
        contacts = Marker(header=header, ns="contacts", id=2, type=Marker.SPHERE_LIST, action=Marker.ADD)
        contacts.scale.x = contacts.scale.y = contacts.scale.z = 0.006
        contacts.color = ColorRGBA(r=0.2, g=0.4, b=1.0, a=1.0)
        contacts.pose.orientation.w = 1.0
        if hand_usable(posed):  # the taxels the tactile gradient uses, camera frame
            points = contact_positions(
                frame.tactile, self.hand.layout, posed.link_poses, posed.T_frame_base, self.hand.contact_threshold
            )
            contacts.points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in points]
        return MarkerArray(markers=markers + [contacts])

    def publish_overlay(self, header, frame, outlines: list[tuple[np.ndarray, str, int]]) -> None:
        """refiner/overlay for RViz's image display; drawing costs a ray cast per outline, so
        only while someone watches and at most every overlay_period_s."""
        now = time.monotonic()
        if self.overlay_pub.get_subscription_count() == 0 or now - self.overlay_sent < self.params["overlay_period_s"]:
            return
        self.overlay_sent = now
        from tactile_pose_refiner.core.overlay import draw_outlines

        model = self.refiner_for(frame.object_id).object.model
        image, _ = draw_outlines(frame.rgb, model, frame.camera, outlines)
        self.overlay_pub.publish(image_msg(image, "rgb8", header))

    @staticmethod
    def _mesh_marker(header, marker_id, namespace, uri, T, rgba) -> Marker:
        marker = Marker(
            header=header,
            ns=namespace,
            id=marker_id,
            type=Marker.MESH_RESOURCE,
            action=Marker.ADD,
            pose=matrix_to_pose_msg(T),
            mesh_resource=uri,
        )
        marker.scale.x = marker.scale.y = marker.scale.z = 1.0
        marker.color = ColorRGBA(r=rgba[0], g=rgba[1], b=rgba[2], a=rgba[3])
        return marker

    def destroy_node(self) -> None:
        if hasattr(self, "queue"):  # not where the constructor stopped on a bad parameter or config
            self.queue.stop()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(RefinerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
