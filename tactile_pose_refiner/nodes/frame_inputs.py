"""What the estimator and the refiner share: a core Frame assembled from the graph's topics at one
stamp, and a worker thread that handles one stamped request at a time off the executor.

FrameInputs subscribes `rgbd/bundle` (rgbd_node), `tactile/array` (tactile_node),
`hand/joint_states` (joint_state_node), the hand base pose and the object id
(config/topics.yaml), keeps them by stamp, and builds the Frame nearest to a stamp, waiting a
little for pieces still in flight. A missing piece degrades the frame (listed); a missing or
unusable bundle is an InputError.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from collections.abc import Callable

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import JointState
from std_msgs.msg import Header, String

from tactile_pose_refiner.core.frame import Frame
from tactile_pose_refiner.core.geometry import pose_fields_to_matrix
from tactile_pose_refiner.core.images import ImageInputError, image_from_message
from tactile_pose_refiner.core.scene.camera import PinholeCamera
from tactile_pose_refiner.core.scene.skin import TactileInputError, TactileReading
from tactile_pose_refiner.core.sync import StampedBuffer
from tactile_pose_refiner.msg import RgbdBundle, TactileArray
from tactile_pose_refiner.nodes.common import LATCHED, OUTPUT_QOS, default_topic, internal_qos
from tactile_pose_refiner.nodes.conversions import LazyMessage, camera_from_info, stamp_ns
from tactile_pose_refiner.nodes.tf_hand_pose import TfHandPose

NO_HAND_POSE = np.full((4, 4), np.nan)
NO_CAMERA = "touch_only: no RGB-D bundle"  # a frame assembled without the camera
# The parameter FrameInputs.assemble reads in each node that uses it.
SYNC_TOLERANCE = {"sync_tolerance_s": (0.05, "largest stamp offset of touch, joints and hand pose from the image [s]")}


PINNED_BUNDLES = 3


class InputError(RuntimeError):
    """A frame cannot be used; the message says which input and why."""


class FrameInputs:
    def __init__(self, node, qos, on_bundle: Callable | None = None, tf_hand: TfHandPose | None = None) -> None:
        """Subscribes on `node` with `qos`; on_bundle(stamp_ns) is called after each bundle is kept;
        tf_hand: where the hand base pose is looked up before the hand pose topic."""
        self.tf_hand = tf_hand
        self.bundles, self.tactile = StampedBuffer(30), StampedBuffer(300)
        self.last_camera: PinholeCamera | None = None  # a camera-off frame keeps the last intrinsics
        # bundles the estimator announced it works on (estimator/working_on): an estimate on a
        # loaded robot takes longer than the ring of the last 30 bundles (1 s at 30 Hz) lasts
        self.pinned, self.wanted = StampedBuffer(PINNED_BUNDLES), deque(maxlen=PINNED_BUNDLES)
        self.joints, self.hand_poses = StampedBuffer(300), StampedBuffer(300)
        self.object_id: str | None = None
        keep = lambda buffer: lambda m: buffer.add(stamp_ns(m.header.stamp), m)  # noqa: E731

        def bundle_arrived(data: bytes) -> None:
            bundle = LazyMessage(data, RgbdBundle)
            self.bundles.add(bundle.stamp_ns, bundle)
            if bundle.stamp_ns in self.wanted:  # announced before it arrived here
                self.pinned.add(bundle.stamp_ns, bundle)
            if on_bundle is not None:
                on_bundle(bundle.stamp_ns)

        def tactile_arrived(data: bytes) -> None:
            reading = LazyMessage(data, TactileArray)
            self.tactile.add(reading.stamp_ns, reading)

        internal = internal_qos(qos)
        # the two large inputs come as bytes, deserialised only for the frames worked on
        self.node = node
        self.subscriptions = [
            node.create_subscription(RgbdBundle, "rgbd/bundle", bundle_arrived, internal, raw=True),
            node.create_subscription(Header, "estimator/working_on", self._pin, OUTPUT_QOS),
            node.create_subscription(TactileArray, "tactile/array", tactile_arrived, internal, raw=True),
            node.create_subscription(JointState, "hand/joint_states", keep(self.joints), internal),
            node.create_subscription(PoseStamped, default_topic("hand_pose"), keep(self.hand_poses), qos),
            node.create_subscription(String, default_topic("object_id"), self._on_object_id, object_id_qos(qos)),
        ]

    def close(self) -> None:
        """Unsubscribes (what is kept stays readable): ~120 messages a second at 30 Hz cost a
        resting node ~10 % of a core."""
        for subscription in self.subscriptions:
            self.node.destroy_subscription(subscription)
        self.subscriptions = []

    def _pin(self, header: Header) -> None:
        self.pin(stamp_ns(header.stamp))

    def pin(self, stamp: int) -> None:
        """Keep the bundle of `stamp` while an estimate works on it (longer than the ring lasts)."""
        found = self.bundles.nearest(stamp, 0.0)
        if found is not None:
            self.pinned.add(stamp, found[0])
        else:
            self.wanted.append(stamp)

    def _on_object_id(self, msg: String) -> None:
        self.object_id = msg.data

    def assemble(
        self, stamp: int, tolerance: float, deadline: float, camera_optional: bool = False
    ) -> tuple[Frame, list[str]]:
        """The Frame at `stamp` (ns) and what is missing from it; deadline (time.monotonic):
        until when its pieces may still arrive. camera_optional: without a bundle the frame has
        no image, depth or mask (labelled NO_CAMERA) instead of being an InputError."""
        found = self._wait_for(self.bundles, stamp, tolerance, deadline) or self.pinned.nearest(stamp, tolerance)
        if found is None and not camera_optional:
            raise InputError(f"missing input: no RGB-D bundle within {tolerance} s of stamp {stamp}")
        if not _wait_until(lambda: self.object_id is not None, deadline):
            raise InputError("missing input: no object id received")
        if found is None:
            camera, degraded = self.last_camera or PinholeCamera.from_config(), [NO_CAMERA]
            rgb = np.zeros((camera.height, camera.width, 3), np.uint8)
            depth_mm, mask = np.zeros((camera.height, camera.width), np.uint16), None
        else:
            bundle = found[0].message()
            rgb, depth_mm, mask, camera = self._images(bundle)
            degraded = [] if bundle.status == "ok" else [f"rgbd {bundle.status}"]
        tactile, joints = (self._wait_for(buffer, stamp, tolerance, deadline) for buffer in (self.tactile, self.joints))
        T_cam_base = self._hand_pose(stamp, camera.frame_id, tolerance, deadline)
        reading = self._reading(tactile, degraded)
        if joints is None:
            degraded.append("no joint state")
        if T_cam_base is None:
            degraded.append("no hand base pose")
        frame = Frame(
            stamp_ns=stamp,
            object_id=self.object_id,
            camera=camera,
            rgb=rgb,
            depth_mm=depth_mm,
            mask=mask,
            joint_names=list(joints[0].name) if joints else [],
            joint_positions=np.asarray(joints[0].position) if joints else np.zeros(0),
            tactile=reading,
            T_cam_base=NO_HAND_POSE if T_cam_base is None else T_cam_base,
        )
        return frame, degraded

    def missed(self, stamp: int, tolerance: float) -> bool:
        """Whether an input stream went past `stamp` without a message near it: the frame's piece
        was sent before this node listened (a restart), or lost; a later frame may have them all.
        A stream that never came (the camera off) has not gone past."""
        streams = (self.bundles, self.tactile, self.joints, self.hand_poses)
        return any(stream.settled(stamp) and stream.nearest(stamp, tolerance) is None for stream in streams)

    def _images(self, bundle) -> tuple:
        try:
            rgb = image_from_message(bundle.color, "color")
            depth_mm = image_from_message(bundle.depth, "depth")
            mask = image_from_message(bundle.mask, "mask") if bundle.mask.height else None
            camera = camera_from_info(bundle.camera_info)
        except (ImageInputError, ValueError) as exc:
            raise InputError(f"unusable input: RGB-D bundle: {exc}") from exc
        self.last_camera = camera
        return rgb, depth_mm, mask, camera

    def _hand_pose(self, stamp: int, camera_frame: str, tolerance: float, deadline: float) -> np.ndarray | None:
        """T_camera_base at stamp: from tf2 where it holds it, else from the hand pose topic;
        waits until the deadline for either."""
        if self.tf_hand is not None:
            in_tf = lambda: self.tf_hand.lookup(camera_frame, stamp) is not None  # noqa: E731
            _wait_until(lambda: in_tf() or self.hand_poses.settled(stamp), deadline)
        return self.hand_pose_at(stamp, camera_frame, tolerance, deadline)

    def hand_pose_at(self, stamp: int, camera_frame: str, tolerance: float, deadline: float = 0.0):
        """T_camera_base from tf2 or the topic as it stands (deadline: how long the topic may
        still bring the pose nearest to stamp); None when neither has it."""
        T = self.tf_hand.lookup(camera_frame, stamp) if self.tf_hand is not None else None
        if T is not None:
            return T
        found = self._wait_for(self.hand_poses, stamp, tolerance, deadline)
        return pose_fields_to_matrix(found[0].pose) if found else None

    @staticmethod
    def _wait_for(buffer: StampedBuffer, stamp: int, tolerance: float, deadline: float):
        """The buffer's message nearest to stamp, waiting until the deadline for the nearest to
        be known: until one at or after stamp has arrived (the nodes upstream deliver a frame's
        pieces at slightly different times, and the previous frame's piece is within tolerance
        too: taking it whenever it came first paired images with a stale hand and touch)."""
        _wait_until(lambda: buffer.settled(stamp), deadline)
        return buffer.nearest(stamp, tolerance)

    @staticmethod
    def _reading(found, degraded: list[str]) -> TactileReading:
        empty = TactileReading((), np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3)))
        if found is None:
            degraded.append("no tactile reading")
            return empty
        try:
            reading = TactileReading.from_message(found[0].message())
        except TactileInputError as exc:
            degraded.append(f"tactile unusable ({exc})")
            return empty
        if len(reading) == 0:
            degraded.append("empty tactile reading")
        return reading


def _wait_until(condition: Callable[[], bool], deadline: float) -> bool:
    """Poll `condition` until it holds or time.monotonic() passes deadline; returns it."""
    while not (held := condition()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return held


def object_id_qos(inputs_qos: QoSProfile) -> QoSProfile | int:
    """The object id is set once per task. A replay's publishers are latched: a transient-local
    reader still gets it after a late match. On a robot a volatile reader matches any publisher
    (a transient-local one would not match a volatile `ros2 topic pub`)."""
    return LATCHED if inputs_qos.durability == DurabilityPolicy.TRANSIENT_LOCAL else 10


class WorkQueue:
    """Requests handled one at a time by a worker thread, so callbacks stay responsive.
    `size` requests wait (the oldest is dropped, reported); 0 keeps all. An InputError is
    reported as an error; any other exception is logged with its traceback and reported: a robot
    node keeps running."""

    def __init__(self, node, handle: Callable, size: int, report_drops: bool = True) -> None:
        """report_drops: say so on /diagnostics when a request is dropped (not when only the
        latest camera frame matters, as in tracking)."""
        self.node, self.handle, self.size, self.report_drops = node, handle, size, report_drops
        self.pending: deque = deque()
        self.wake = threading.Condition()
        self.stopping = False
        self.busy_since: float | None = None  # time.monotonic() the request in hand was taken
        self.worker = threading.Thread(target=self._work, name=f"{node.get_name()} worker", daemon=True)
        self.worker.start()

    def put(self, request) -> None:
        with self.wake:
            if self.size > 0 and len(self.pending) >= self.size:
                self.pending.popleft()
                if self.report_drops:
                    self.node.diagnostics.report("warn", "skipped frame: the node is busy (queue full)")
            self.pending.append(request)
            self.wake.notify()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop taking requests and wait (bounded) for the worker: a thread still running while
        the node and rclpy's context are destroyed can crash the process at exit."""
        with self.wake:
            self.stopping = True
            self.wake.notify()
        if self.worker is not threading.current_thread():
            self.worker.join(timeout_s)

    def _work(self) -> None:
        while True:
            with self.wake:
                while not self.pending and not self.stopping:
                    self.wake.wait(0.5)
                if self.stopping:
                    return
                request = self.pending.popleft()
            self.busy_since = time.monotonic()
            try:
                self.handle(request)
            except Exception as exc:  # noqa: BLE001 - a robot node reports and keeps running
                if not self.node.context.ok():
                    return  # cut short by shutdown (SIGINT): nothing to report, nowhere to publish
                if isinstance(exc, InputError):
                    self.node.diagnostics.report("error", str(exc))
                else:
                    self.node.get_logger().error(traceback.format_exc())
                    self.node.diagnostics.report("error", f"failed: {type(exc).__name__}: {exc}")
            finally:
                self.busy_since = None

    def busy_s(self) -> float | None:
        """How long the request in hand has run [s]; None when idle."""
        since = self.busy_since
        return None if since is None else time.monotonic() - since
