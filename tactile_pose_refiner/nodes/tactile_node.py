"""tactile_node: the skin's stream -> stamped TactileArray + contact points in the hand frame.

Subscribes the package's `TactileArray` on `/xela/tactile` (config/topics.yaml), or with
`input_format: xela_vendor` the vendor's headerless `xela_server_ros2/SensStream` on
`/xServTopic` (converted by core.scene.xela; needs the vendor's messages installed), and
`hand/joint_states` (joint_state_node). Publishes `tactile/array` (TactileArray, stamped: a
zero stamp gets the node clock's time) and `tactile/contacts` (PointCloud2 in the hand base
frame: taxels whose force exceeds gamma, placed by forward kinematics at the nearest joint
state; only while subscribed, as RViz does). Inconsistent readings are reported on /diagnostics
and dropped; an empty reading is forwarded (the refiner then runs without touch) and reported
as a warning.
"""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import JointState, PointCloud2
from std_msgs.msg import Header

from tactile_pose_refiner.core.resources import load_config
from tactile_pose_refiner.core.scene.kinematics import HandInputError, HandKinematics
from tactile_pose_refiner.core.scene.skin import SkinLayout, TactileInputError, TactileReading, contact_positions
from tactile_pose_refiner.core.scene.xela import XelaStreamConverter
from tactile_pose_refiner.core.sync import StampedBuffer
from tactile_pose_refiner.msg import TactileArray
from tactile_pose_refiner.nodes.common import (
    OUTPUT_QOS,
    RELIABLE_INPUTS,
    SILENCE_WATCHDOG,
    GraphNode,
    default_topic,
    internal_qos,
    run_node,
    stale_by,
)
from tactile_pose_refiner.nodes.conversions import ns_to_stamp, point_cloud_msg, stamp_ns, tactile_to_msg

PARAMETERS = {
    **RELIABLE_INPUTS,
    **SILENCE_WATCHDOG,
    "input_format": ("tactile_array", "tactile_array (this package) or xela_vendor (SensStream)"),
    "vendor_topic": ("/xServTopic", "topic of the vendor stream (input_format xela_vendor)"),
    "base_frame": ("ah_base_link", "frame id of the contact points (joint_state_node's frame_prefix + the URDF root)"),
    "joint_tolerance_s": (0.05, "largest stamp offset of the joint state used for the contacts [s]"),
    "max_age_s": (0.0, "drop readings older than this against the node clock [s]; 0: off"),
    "force_scale": (0.0, "sensor units -> newtons written into converted vendor readings"),
}


# A reading beyond this many times the sensor's saturation is broken, not a hard press.
FORCE_RANGE_FACTOR = 10.0


class TactileNode(GraphNode):
    def __init__(self) -> None:
        super().__init__("tactile_node", PARAMETERS)
        tactile = load_config("tactile")  # skin layout and gamma as the refiner sees them
        self.kinematics = HandKinematics.from_config()  # numpy FK: this node never needs torch
        # as configured, not placed on the hand's collision meshes (core.scene.assets.skin_layout):
        # those need the hand model's imports; on a vendor mesh hand the contact points drawn in
        # RViz may lie up to a millimetre off, the refiner's own are placed
        self.layout = SkinLayout.from_config(tactile["layout"])
        self.gamma = float(tactile["contact_threshold_units"])
        self.known_ids = set(self.layout.ids.tolist())
        self.max_units = float(tactile["max_units"])
        self.joints = StampedBuffer(200)
        self.unplaced = StampedBuffer(20)  # readings that came before their joint state
        self.array_pub = self.create_publisher(TactileArray, "tactile/array", OUTPUT_QOS)
        self.contacts_pub = self.create_publisher(PointCloud2, "tactile/contacts", OUTPUT_QOS)
        self.create_subscription(JointState, "hand/joint_states", self.on_joint_state, internal_qos(self.inputs))
        if self.params["input_format"] == "xela_vendor":
            self._subscribe_vendor()
        elif self.params["input_format"] == "tactile_array":
            self.create_subscription(TactileArray, default_topic("tactile"), self.on_tactile_array, self.inputs)
        else:
            self.get_logger().fatal(
                f"input_format must be tactile_array or xela_vendor, got {self.params['input_format']!r}"
            )
            self.finish(2)

    def on_joint_state(self, msg: JointState) -> None:
        try:  # a state that cannot place the taxels never enters the buffer
            q = self.kinematics.joint_vector(msg.name, msg.position)
        except HandInputError as exc:
            self.diagnostics.report("error", f"unusable joint state: {exc}")
            return
        self.joints.add(stamp_ns(msg.header.stamp), q)
        waiting = self.unplaced.take_near(stamp_ns(msg.header.stamp), self.params["joint_tolerance_s"])
        for reading in waiting:
            self.publish_contacts(reading)

    def _subscribe_vendor(self) -> None:
        try:
            from xela_server_ros2.msg import SensStream
        except ImportError:
            self.get_logger().fatal(
                "input_format xela_vendor needs the vendor's xela_server_ros2 messages, which are not importable here"
            )
            self.finish(2)
            return
        self.converter = XelaStreamConverter(self.layout, force_scale=self.params["force_scale"])
        self.create_subscription(SensStream, self.params["vendor_topic"], self.on_vendor_stream, self.inputs)

    def on_vendor_stream(self, msg) -> None:
        try:
            reading = self.converter.convert(msg.sensors, self.get_clock().now().nanoseconds)
        except TactileInputError as exc:
            self.diagnostics.report("error", f"unusable tactile reading: {exc}")
            return
        self.forward(reading)

    def on_tactile_array(self, msg: TactileArray) -> None:
        stale = stale_by(self, msg.header.stamp, self.params["max_age_s"])
        if stale is not None and stamp_ns(msg.header.stamp) != 0:
            self.diagnostics.report("warn", f"stale input: tactile reading is {stale:.2f} s off the clock")
            return
        try:
            reading = TactileReading.from_message(msg)
        except TactileInputError as exc:
            self.diagnostics.report("error", f"unusable tactile reading: {exc}")
            return
        if reading.stamp_ns == 0:  # headerless source: stamp on arrival
            reading = TactileReading(
                reading.link_names,
                reading.taxel_ids,
                reading.positions,
                reading.forces,
                reading.force_scale,
                self.get_clock().now().nanoseconds,
            )
        msg.header.stamp, msg.header.frame_id = ns_to_stamp(reading.stamp_ns), self.params["base_frame"]
        self.forward(reading, msg)

    def forward(self, reading: TactileReading, msg: TactileArray | None = None) -> None:
        """Publish a valid reading (`msg`: it came as a TactileArray already, sent on as it is:
        rebuilding 2 x 368 Python point objects cost more than the rest of the node) and its
        contacts."""
        problem = self.implausible(reading)
        if problem is not None:
            self.diagnostics.report("error", f"unusable tactile reading: {problem}")
            return
        unknown = sorted(set(reading.taxel_ids.tolist()) - self.known_ids)
        if unknown:
            self.diagnostics.report("warn", f"tactile reading has taxel ids the layout lacks (skipped): {unknown[:10]}")
        self.array_pub.publish(msg if msg is not None else tactile_to_msg(reading, self.params["base_frame"]))
        if len(reading) == 0:
            self.diagnostics.report("warn", "empty tactile reading: 0 taxels (refining without touch)")
            return
        if self.contacts_pub.get_subscription_count() == 0:  # RViz's: placed only while watched
            self.diagnostics.report("ok", "publishing tactile readings", taxels=len(reading))
            return
        if self.joints.nearest(reading.stamp_ns, self.params["joint_tolerance_s"]) is None:
            self.unplaced.add(reading.stamp_ns, reading)  # placed when its joint state arrives
            return
        self.publish_contacts(reading)

    def implausible(self, reading: TactileReading) -> str | None:
        """Forces far beyond the sensor's range (config/tactile.yaml max_units) are a broken reading."""
        limit = FORCE_RANGE_FACTOR * self.max_units
        if len(reading) and np.abs(reading.forces).max() > limit:
            return f"forces up to {np.abs(reading.forces).max():.3g} units, beyond {limit:g}"
        return None

    def publish_contacts(self, reading: TactileReading) -> None:
        contacts = self.contact_points(reading)
        header = Header(stamp=ns_to_stamp(reading.stamp_ns), frame_id=self.params["base_frame"])
        self.contacts_pub.publish(point_cloud_msg(contacts, header))
        self.diagnostics.report("ok", "publishing tactile readings", taxels=len(reading), in_contact=len(contacts))

    def contact_points(self, reading: TactileReading) -> np.ndarray:
        """(K, 3) taxels in contact in the hand base frame, at the nearest joint state (the
        same placement the tactile gradient uses)."""
        q = self.joints.nearest(reading.stamp_ns, self.params["joint_tolerance_s"])[0]
        link_poses = self.kinematics.link_poses(q)
        return contact_positions(reading, self.layout, link_poses, np.eye(4), self.gamma)


def main(args: list[str] | None = None) -> int:
    return run_node(TactileNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
