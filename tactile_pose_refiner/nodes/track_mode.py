"""refiner_node's `mode: track`: a pose on every camera frame, from the last one.

Each RGB-D bundle is tracked (core.tracking.Tracker) in the worker thread; only the latest
waits while one is tracked. An initial pose (estimator/initial_pose) starts the track, moved by
the hand's motion since its stamp (an estimate takes a while); while the track holds, further
initial poses are ignored. A lost track first restarts itself from its last good pose carried
by the hand (config/tracker.yaml `recovery`: a multi-hypothesis start, kept only where it fits);
after `recover_after_frames` lost frames in a row, or a message on `refiner/reset`, the next
initial pose restarts it. Every tracked frame publishes `refiner/pose`,
`refiner/pose_with_covariance` (the solver's covariance, ROS convention) and
`refiner/diagnostics` whose status says `tracking`, `reinitialised` or `lost (...)`. Given
gravity in the camera frame (`gravity_cam`: the camera is fixed) and calibrated touch,
/diagnostics also carries the held object's mass from the recent tracked frames (core/mass.py
OnlineMass: `mass_kg`, `mass_std_kg`, `mass_status`).
`refiner/needs_estimate` (Bool, latched) says whether an initial pose is wanted: estimator_node
rests while the track holds.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import numpy as np
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped
from std_msgs.msg import Bool, Empty, Header

from tactile_pose_refiner.core.geometry import invert, pose_fields_to_matrix
from tactile_pose_refiner.core.resources import load_config
from tactile_pose_refiner.msg import RefinementDiagnostics
from tactile_pose_refiner.nodes.common import LATCHED, OUTPUT_QOS
from tactile_pose_refiner.nodes.conversions import matrix_to_pose_msg, ns_to_stamp, pose_with_covariance_msg, stamp_ns
from tactile_pose_refiner.nodes.frame_inputs import InputError, WorkQueue

if TYPE_CHECKING:  # imported where used: refiner_node subscribes before loading torch (refiner_node.py)
    from tactile_pose_refiner.core.tracking.tracker import Tracker, TrackResult

PARAMETERS = {
    "recover_after_frames": (15, "track mode: this many lost frames in a row and the next initial pose restarts it"),
    "track_input_wait_s": (0.2, "track mode: how long after a bundle its touch and joints may arrive [s]"),
    "gravity_cam": ("", "track mode: gravity 'x,y,z' [m/s^2], camera frame, for the mass on /diagnostics ('': off)"),
}


class TrackMode:
    def __init__(self, node) -> None:
        self.node = node
        self.trackers: dict[str, Tracker] = {}
        self.masses: dict = {}  # object id -> core.mass.OnlineMass, built on its first tracked frame
        self.tracker: Tracker | None = None
        self.start_request: tuple[int, np.ndarray] | None = None  # (stamp, T_cam_obj) of an initial pose
        self.lock = threading.Lock()
        self.covariance_pub = node.create_publisher(
            PoseWithCovarianceStamped, "refiner/pose_with_covariance", OUTPUT_QOS
        )
        node.create_subscription(Empty, "refiner/reset", self.on_reset, 10)
        # tells estimator_node when an estimate is wanted: on 2 cores it would take a core from tracking
        self.needs_estimate_pub = node.create_publisher(Bool, "refiner/needs_estimate", LATCHED)
        self.announced: bool | None = None
        self.announce()
        self.queue = WorkQueue(node, lambda item: self.track(*item), node.params["queue_size"], report_drops=False)
        self.waiting_reported = False

    # --- callbacks (executor thread) --------------------------------------------------------
    def on_bundle(self, stamp: int) -> None:
        self.queue.put((stamp, time.monotonic()))

    def on_initial_pose(self, msg: PoseStamped) -> None:
        T = pose_fields_to_matrix(msg.pose)
        if not np.isfinite(T).all():
            self.node.diagnostics.report("error", "unusable initial pose: not finite (ignored)")
            return
        with self.lock:
            if self.needs_start():
                self.start_request = (stamp_ns(msg.header.stamp), T)

    def on_reset(self, msg: Empty) -> None:
        with self.lock:
            if self.tracker is not None:
                self.tracker.reset()
            self.start_request = None
        self.announce()
        self.node.diagnostics.report("ok", "track reset: waiting for an initial pose")

    def announce(self) -> None:
        """Publish refiner/needs_estimate when it changes."""
        wanted = self.needs_start()
        if wanted != self.announced:
            self.needs_estimate_pub.publish(Bool(data=wanted))
            self.announced = wanted

    def needs_start(self) -> bool:
        tracker = self.tracker
        return tracker is None or not tracker.started or tracker.lost_frames >= self.node.params["recover_after_frames"]

    # --- tracking (worker thread) ----------------------------------------------------------------
    def track(self, stamp: int, arrived: float) -> None:
        params = self.node.params
        frame, degraded = self.node.frames.assemble(
            stamp, params["sync_tolerance_s"], arrived + params["track_input_wait_s"]
        )
        tracker = self._tracker_for(frame.object_id)
        if not np.isfinite(frame.T_cam_base).all():
            raise InputError("missing input: no hand base pose (the track follows the hand)")
        with self.lock:
            request = self.start_request if self.needs_start() else None
            self.start_request = None
        if request is not None:
            result = tracker.start(frame, self._carried(request, frame))
        elif tracker.recovery_due():  # before the estimator's next pose (seconds on a small CPU)
            result = tracker.recover(frame)
        elif tracker.started:
            result = tracker.step(frame)
        else:
            if not self.waiting_reported:
                self.node.diagnostics.report("warn", "tracking: waiting for an initial pose to start")
                self.waiting_reported = True
            return
        self.waiting_reported = False
        self.publish(frame, result, degraded)
        self.announce()
        if not result.lost:
            self._report_mass(frame, result.T)

    def _tracker_for(self, object_id: str) -> Tracker:
        from tactile_pose_refiner.core.tracking.tracker import Tracker

        if object_id not in self.trackers:
            refiner = self.node.refiner_for(object_id)  # shares the object's assets
            config = {**load_config("tracker"), "device": refiner.device}
            self.trackers[object_id] = Tracker(refiner.object, self.node.hand, config)
        with self.lock:
            self.tracker = self.trackers[object_id]
        return self.tracker

    def _report_mass(self, frame, T_cam_obj: np.ndarray) -> None:
        """The held object's mass on /diagnostics, when an estimate is due."""
        from tactile_pose_refiner.core.mass import OnlineMass, SkinCalibration

        gravity = self._gravity()
        if gravity is None:
            return
        if frame.object_id not in self.masses:
            assets, config = self.node.refiner_for(frame.object_id).object, load_config("mass")
            skin = SkinCalibration.of(frame.dynamics, load_config("tactile"), config)
            hand = self.node.hand
            self.masses[frame.object_id] = OnlineMass(
                assets.body.com, gravity, hand.layout, hand.model.kinematics, skin, config, assets.distance
            )
        estimate = self.masses[frame.object_id].add(frame, T_cam_obj)
        if estimate is None:
            return
        values = {"object_id": frame.object_id, "mass_status": estimate.status}
        if estimate.mass_kg is None:
            self.node.diagnostics.report("ok", f"tracking; mass: {estimate.status}", **values)
            return
        grams = f"{estimate.mass_kg * 1000:.0f} +- {estimate.std_kg * 1000:.0f} g"
        values.update(mass_kg=f"{estimate.mass_kg:.4f}", mass_std_kg=f"{estimate.std_kg:.4f}")
        self.node.diagnostics.report("ok", f"tracking; mass {grams}", **values)

    def _gravity(self) -> np.ndarray | None:
        text = self.node.params["gravity_cam"].strip()
        try:
            gravity = np.array([float(v) for v in text.split(",")]) if text else None
        except ValueError:
            gravity = np.zeros(0)
        if gravity is not None and (gravity.shape != (3,) or not np.isfinite(gravity).all()):
            self.node.diagnostics.report("error", f"config: gravity_cam {text!r} is not 'x,y,z' [m/s^2]; no mass")
            return None
        return gravity

    def _carried(self, request: tuple[int, np.ndarray], frame) -> np.ndarray:
        """The initial pose moved with the hand from its stamp to the frame's (an estimate
        arrives seconds late; the object moved with the hand meanwhile)."""
        stamp, T = request
        then = self.node.frames.hand_pose_at(stamp, frame.camera.frame_id, self.node.params["sync_tolerance_s"])
        return T if then is None else frame.T_cam_base @ invert(then) @ T

    # --- output ------------------------------------------------------------------------------
    def publish(self, frame, result: TrackResult, degraded: list[str]) -> None:
        node = self.node
        header = Header(stamp=ns_to_stamp(frame.stamp_ns), frame_id=frame.camera.frame_id)
        pose = matrix_to_pose_msg(result.T)
        node.pose_pub.publish(PoseStamped(header=header, pose=pose))
        self.covariance_pub.publish(pose_with_covariance_msg(header, pose, result.covariance))
        status = "; ".join([result.status] + [f"degraded: {reason}" for reason in degraded])
        message = RefinementDiagnostics(
            header=header,
            object_id=frame.object_id,
            initial_pose_source=node.initial_source,
            iterations=int(result.iterations),
            wall_time_ms=float(result.ms),
            device=self.tracker.device,
            status=status,
        )
        message.source_names = list(result.stats)
        message.source_losses = [float(stats["rms_mm"]) ** 2 for stats in result.stats.values()]  # mm^2
        node.result_pub.publish(message)
        node.publish_overlay(header, frame, [(result.T, "refined", 2)])
        if result.lost:
            node.diagnostics.report("warn", f"tracking {status}", object_id=frame.object_id)
